//! Golden outputs on images written by the real kernel: each checks clean, and its
//! dumps equal the ground truth recorded when it was made (and, for era, the output
//! of thin-provisioning-tools 0.9.0 stored beside it).

use std::path::Path;

use dmce::io::MemDevice;
use serde_json::Value;

use crate::util::{assert_text_eq, load_zst, repo, run_tool};

fn sample(name: &str) -> std::path::PathBuf {
    repo().join("fixtures/samples").join(name)
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `<hydrated begin="B" end="E"/>` lines of a clone dump, as pairs.
pub fn hydrated_ranges(xml: &str) -> Vec<(u64, u64)> {
    xml.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("<hydrated begin=\"")?;
            let (b, rest) = l.split_once('"')?;
            let e = rest.strip_prefix(" end=\"")?.split_once('"')?.0;
            Some((b.parse().ok()?, e.parse().ok()?))
        })
        .collect()
}

/// Ranges `[[b, e], ...]` of a JSON ground truth.
pub fn json_ranges(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect()
}

fn clone_dump_string(img: &[u8]) -> String {
    let dev = MemDevice::from_bytes(img);
    let mut out = Vec::new();
    dmce::clone::dump(&dev, &mut out, false).unwrap();
    String::from_utf8(out).unwrap()
}

fn era_dump_string(img: &[u8], logical: bool) -> String {
    let dev = MemDevice::from_bytes(img);
    let mut out = Vec::new();
    dmce::era::dump(
        &dev,
        &mut out,
        dmce::era::DumpOptions {
            logical,
            ..Default::default()
        },
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn kernel_clone_sample_checks_clean_and_dumps_the_model() {
    let dir = sample("clone-b-partial");
    let img = load_zst(&dir.join("metadata.img.zst"));
    let dev = MemDevice::from_bytes(&img);
    let out = dmce::clone::check(&dev, &Default::default());
    assert!(out.report.findings().is_empty(), "{:#?}", out.report);
    assert_eq!(out.hydrated, 51);
    let truth = json(&dir.join("ground-truth.json"));
    let want = json_ranges(&truth["hydrated_ranges_model"]);
    let xml = clone_dump_string(&img);
    assert_eq!(hydrated_ranges(&xml), want);
    assert!(xml.starts_with(
        "<superblock uuid=\"\" region_size=\"64\" target_size=\"131072\" nr_regions=\"2048\">\n"
    ));
    assert!(xml.ends_with("</superblock>\n"));
    // The uncompressed copy used by the README is the same image.
    assert_eq!(std::fs::read(dir.join("metadata.img")).unwrap(), img);
}

#[test]
fn kernel_era_sample_dumps_equal_thin_provisioning_tools_0_9_0() {
    let dir = sample("era-b-eras");
    let img = load_zst(&dir.join("metadata.img.zst"));
    let dev = MemDevice::from_bytes(&img);
    let out = dmce::era::check(&dev, &Default::default());
    assert!(out.report.findings().is_empty(), "{:#?}", out.report);
    let want = std::fs::read_to_string(dir.join("era_dump.xml")).unwrap();
    assert_text_eq(&era_dump_string(&img, false), &want, "era_dump");
    let want = std::fs::read_to_string(dir.join("era_dump_logical.xml")).unwrap();
    assert_text_eq(&era_dump_string(&img, true), &want, "era_dump --logical");
}

#[test]
fn kernel_samples_through_the_binary() {
    let o = run_tool(
        "clone_check",
        &[sample("clone-b-partial/metadata.img").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let s = String::from_utf8_lossy(&o.stderr);
    assert!(
        s.contains("2048 regions, 51 hydrated; metadata blocks 6/2048 used"),
        "{s}"
    );
}

#[test]
fn kernel_era_sample_invalidate_equals_thin_provisioning_tools_0_9_0() {
    let dir = sample("era-b-eras");
    let img = load_zst(&dir.join("metadata.img.zst"));
    let dev = MemDevice::from_bytes(&img);
    for n in 0..=5u32 {
        let inv = dmce::era::invalidate::invalidate(
            &dev,
            dmce::era::invalidate::InvalidateOptions {
                written_since: n,
                metadata_snapshot: false,
            },
        )
        .unwrap();
        assert!(inv.over_reported.is_empty());
        let got = String::from_utf8(inv.write_xml(Vec::new()).unwrap()).unwrap();
        // 0.9.0 writes `end = "N"`; 1.3.3 (our format) writes `end="N"`.
        let want = std::fs::read_to_string(dir.join(format!("era_invalidate_since_{n}.xml")))
            .unwrap()
            .replace("end = \"", "end=\"");
        assert_text_eq(&got, &want, &format!("era_invalidate --written-since {n}"));
    }
}
