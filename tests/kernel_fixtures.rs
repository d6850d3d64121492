//! Every kernel-made fixture in `fixtures/kernel/` (see its README): it checks clean
//! and dumps to the ground truth recorded when the kernel made it; for era, every
//! `era_invalidate --written-since N` equals the ground truth too.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dmce::era::invalidate::{invalidate, InvalidateOptions};
use dmce::era::DumpOptions;
use dmce::io::MemDevice;
use serde_json::Value;

use crate::golden::{hydrated_ranges, json_ranges};
use crate::util::{load_zst, repo};

/// Every fixture directory with its parsed `truth.json`.
pub fn fixtures() -> Vec<(PathBuf, Value)> {
    let dir = repo().join("fixtures/kernel");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let t = p.join("truth.json");
        if t.exists() {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&t).unwrap()).unwrap();
            out.push((p, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Logical era per block from `{"era": [[b, e], ...]}` (blocks not listed: 0).
pub fn eras_from_truth(v: &Value, nr_blocks: u64) -> Vec<u64> {
    let mut eras = vec![0u64; nr_blocks as usize];
    if let Some(m) = v.as_object() {
        for (era, ranges) in m {
            let era: u64 = era.parse().unwrap();
            for (b, e) in json_ranges(ranges) {
                for x in b..e {
                    eras[x as usize] = eras[x as usize].max(era);
                }
            }
        }
    }
    eras
}

/// `<era block="i" era="e"/>` values of a dump, in order.
fn eras_from_dump(xml: &str) -> Vec<u64> {
    xml.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("<era block=\"")?;
            let e = l.split("era=\"").nth(1)?.split('"').next()?;
            e.parse().ok()
        })
        .collect()
}

fn era_dump(dev: &MemDevice, opts: DumpOptions) -> String {
    let mut out = Vec::new();
    dmce::era::dump(dev, &mut out, opts).unwrap();
    String::from_utf8(out).unwrap()
}

fn check_clone(name: &str, img: &[u8], t: &Value) {
    let dev = MemDevice::from_bytes(img);
    let out = dmce::clone::check(&dev, &Default::default());
    assert!(
        out.report.findings().is_empty(),
        "{name}: {:#?}",
        out.report
    );
    let sb = out.superblock.unwrap();
    assert_eq!(sb.region_size, t["region_size"].as_u64().unwrap(), "{name}");
    assert_eq!(sb.target_size, t["target_size"].as_u64().unwrap(), "{name}");
    assert_eq!(sb.nr_regions(), t["nr_regions"].as_u64().unwrap(), "{name}");
    let mut xml = Vec::new();
    dmce::clone::dump(&dev, &mut xml, false).unwrap();
    let got = hydrated_ranges(&String::from_utf8(xml).unwrap());
    assert_eq!(
        got,
        json_ranges(&t["hydrated_ranges"]),
        "{name}: hydrated ranges"
    );
}

fn check_era(name: &str, img: &[u8], t: &Value) -> usize {
    let dev = MemDevice::from_bytes(img);
    let out = dmce::era::check(&dev, &Default::default());
    assert!(
        out.report.findings().is_empty(),
        "{name}: {:#?}",
        out.report
    );
    let sb = out.superblock.unwrap();
    let nr = t["nr_blocks"].as_u64().unwrap();
    assert_eq!(sb.nr_blocks as u64, nr, "{name}");
    assert_eq!(
        sb.current_era as u64,
        t["current_era"].as_u64().unwrap(),
        "{name}"
    );
    assert_eq!(
        sb.data_block_size as u64,
        t["block_size"].as_u64().unwrap(),
        "{name}"
    );
    let mut views = vec![(false, eras_from_truth(&t["last_written_era"], nr))];
    match t["metadata_snap"].as_u64() {
        Some(s) => {
            assert_eq!(sb.metadata_snap, s, "{name}: snapshot location");
            views.push((true, eras_from_truth(&t["snapshot_last_written_era"], nr)));
        }
        None => assert_eq!(sb.metadata_snap, 0, "{name}"),
    }
    let mut cases = 0;
    for (snap, want) in views {
        let got = eras_from_dump(&era_dump(
            &dev,
            DumpOptions {
                logical: true,
                metadata_snapshot: snap,
                repair: false,
            },
        ));
        assert!(got == want, "{name} (snapshot {snap}): era_dump --logical differs from the ground truth at block {:?}", got.iter().zip(&want).position(|(a, b)| a != b));
        for n in 0..=sb.current_era + 1 {
            let inv = invalidate(
                &dev,
                InvalidateOptions {
                    written_since: n,
                    metadata_snapshot: snap,
                },
            )
            .unwrap();
            assert!(inv.over_reported.is_empty(), "{name}");
            for (b, e) in want.iter().enumerate() {
                assert_eq!(
                    inv.contains(b as u64),
                    *e >= n as u64,
                    "{name} (snapshot {snap}): era_invalidate --written-since {n}, block {b}"
                );
            }
            cases += 1;
        }
    }
    cases
}

#[test]
fn kernel_fixtures_check_clean_and_dump_the_ground_truth() {
    let all = fixtures();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut invalidations = 0;
    for (dir, t) in &all {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let img = load_zst(&dir.join("metadata.img.zst"));
        let kind = t["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "clone" => check_clone(&name, &img, t),
            "era" => invalidations += check_era(&name, &img, t),
            k => panic!("{name}: unknown kind {k}"),
        }
        *counts.entry(kind).or_default() += 1;
    }
    eprintln!("kernel fixtures: {counts:?}, era_invalidate cases: {invalidations}");
    assert!(!all.is_empty(), "no kernel fixtures in fixtures/kernel");
}
