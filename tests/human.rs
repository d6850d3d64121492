//! `--format human`: the summaries of clone_dump and era_dump give the figures of
//! every fixture, each computed here from another source: geometry, hydrated
//! regions and per-era block counts from the ground truth the kernel lab recorded,
//! writesets from the XML dump, metadata space from the checker's count of the
//! space map's bitmaps (the summary reads the superblock's count).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::golden::json_ranges;
use crate::json::{attr, images};
use crate::kernel_fixtures::eras_from_truth;
use crate::util::{run_tool, TestDir};

/// `n / total` in percent, two decimals, rounded down.
fn pct(n: u64, total: u64) -> String {
    let x = n as u128 * 10_000 / total.max(1) as u128;
    format!("{}.{:02}", x / 100, x % 100)
}

/// A byte count in binary units, two decimals rounded down when not whole.
fn iec(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut k = 0;
    while k + 1 < units.len() && bytes >> (10 * (k + 1)) > 0 {
        k += 1;
    }
    let unit = 1u64 << (10 * k);
    if bytes.is_multiple_of(unit) {
        format!("{} {}", bytes / unit, units[k])
    } else {
        format!(
            "{}.{:02} {}",
            bytes / unit,
            (bytes % unit) as u128 * 100 / unit as u128,
            units[k]
        )
    }
}

fn sectors(n: u64) -> String {
    format!("{n} sectors ({})", iec(n * 512))
}

/// The summary's `label: value` lines, and its per-era rows (`era N:`, `eras A-B:`,
/// `never:`).
fn summary(out: &[u8]) -> (String, BTreeMap<String, String>, Vec<(String, String)>) {
    let text = String::from_utf8(out.to_vec()).unwrap();
    let mut lines = text.lines();
    let title = lines.next().unwrap().to_string();
    let mut fields = BTreeMap::new();
    let mut rows = Vec::new();
    for l in lines {
        if let Some(r) = l.strip_prefix("    ") {
            let (k, v) = r.split_once(':').unwrap();
            rows.push((k.to_string(), v.trim().to_string()));
        } else if let Some((k, v)) = l.trim().split_once(':') {
            if !v.trim().is_empty() {
                fields.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    (title, fields, rows)
}

/// `used/total` from a checker's summary line `... metadata blocks U/T used`.
fn checker_space(tool: &str, img: &Path) -> (u64, u64) {
    let o = run_tool(tool, &[img.to_str().unwrap()]);
    assert!(o.status.success());
    let t = String::from_utf8(o.stderr).unwrap();
    let ut = t.trim().rsplit(' ').nth(1).unwrap();
    let (u, tot) = ut.split_once('/').unwrap();
    (u.parse().unwrap(), tot.parse().unwrap())
}

fn n(v: &Value, keys: &[&str]) -> u64 {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .unwrap_or_else(|| panic!("none of {keys:?} in the truth"))
}

#[test]
fn human_summaries_give_each_fixtures_figures() {
    let dir = TestDir::new("human");
    for (name, img, is_clone, truth) in images() {
        let p = dir.path(&name);
        std::fs::write(&p, &img).unwrap();
        let ps = p.to_str().unwrap();
        if is_clone {
            let o = run_tool("clone_dump", &["--format", "human", ps]);
            assert!(o.status.success());
            // A repairing dump of healthy metadata says the same.
            let r = run_tool("clone_dump", &["--format", "human", "--repair", ps]);
            assert_eq!(r.stdout, o.stdout);
            let (title, f, _) = summary(&o.stdout);
            assert_eq!(title, "dm-clone metadata");
            let rs = n(&truth, &["region_size", "region_size_sectors"]);
            let ts = n(&truth, &["target_size", "target_sectors"]);
            let nr = n(&truth, &["nr_regions"]);
            assert_eq!(f["region size"], sectors(rs), "{name}");
            assert_eq!(f["device size"], sectors(ts), "{name}");
            assert_eq!(f["regions"], nr.to_string());
            let mut runs: Vec<(u64, u64)> = Vec::new();
            let want = truth
                .get("hydrated_ranges")
                .or(truth.get("hydrated_ranges_model"))
                .unwrap();
            for (b, e) in json_ranges(want) {
                match runs.last_mut() {
                    Some(l) if l.1 == b => l.1 = e,
                    _ => runs.push((b, e)),
                }
            }
            let h: u64 = runs.iter().map(|(b, e)| e - b).sum();
            assert_eq!(
                f["hydrated"],
                format!(
                    "{h} of {nr} regions ({}%) in {} range{}",
                    pct(h, nr),
                    runs.len(),
                    if runs.len() == 1 { "" } else { "s" }
                ),
                "{name}"
            );
            let (used, total) = checker_space("clone_check", &p);
            assert!(
                f["metadata space"].starts_with(&format!(
                    "{used} of {total} blocks used ({}%; {} of {})",
                    pct(used, total),
                    iec(used * 4096),
                    iec(total * 4096)
                )),
                "{name}: {}",
                f["metadata space"]
            );
            continue;
        }
        let nb = n(&truth, &["nr_blocks"]);
        let bs = n(&truth, &["block_size", "block_size_sectors"]);
        let snap = truth
            .get("metadata_snap")
            .or(truth.get("metadata_snap_model"))
            .and_then(Value::as_u64);
        let (used, total) = checker_space("era_check", &p);
        let current_root = truth["superblock"]["current_writeset"]["root"]
            .as_u64()
            .unwrap_or(0);
        for view in [false, true].into_iter().filter(|&v| !v || snap.is_some()) {
            let mut args = vec!["--format", "human"];
            if view {
                args.push("--metadata-snapshot");
            }
            args.push(ps);
            let o = run_tool("era_dump", &args);
            assert!(o.status.success());
            // --logical changes nothing here: the summary always folds.
            args.insert(2, "--logical");
            assert_eq!(run_tool("era_dump", &args).stdout, o.stdout);
            let (title, f, rows) = summary(&o.stdout);
            assert_eq!(
                title,
                if view {
                    format!("dm-era metadata snapshot (block {})", snap.unwrap())
                } else {
                    "dm-era metadata".to_string()
                }
            );
            let cur = if view {
                n(&truth, &["snapshot_current_era"])
            } else {
                n(&truth, &["current_era", "current_era_model"])
            };
            assert_eq!(f["block size"], sectors(bs), "{name}");
            assert_eq!(f["blocks"], format!("{nb}, covering {}", sectors(nb * bs)));
            assert_eq!(f["current era"], cur.to_string(), "{name}");
            assert_eq!(
                f["metadata snapshot"],
                snap.map_or("none".to_string(), |s| format!("at block {s}"))
            );
            assert!(f["metadata space"].starts_with(&format!("{used} of {total} blocks used")));
            // The writesets, from the XML dump of the same view.
            let mut xa = vec![ps];
            if view {
                xa.insert(0, "--metadata-snapshot");
            }
            let x = run_tool("era_dump", &xa);
            let mut eras: Vec<u64> = String::from_utf8(x.stdout)
                .unwrap()
                .lines()
                .filter(|l| l.trim_start().starts_with("<writeset "))
                .map(|l| attr(l, "era").unwrap())
                .collect();
            let current = !view && current_root != 0;
            if current {
                assert_eq!(eras.pop(), Some(cur));
            }
            let mut ws = match eras.as_slice() {
                [] => "none archived".to_string(),
                [e] => format!("1 archived (era {e})"),
                [a, .., b] => {
                    assert_eq!(b - a + 1, eras.len() as u64, "contiguous in fixtures");
                    format!("{} archived (eras {a}-{b})", eras.len())
                }
            };
            if current {
                ws += &format!("; a committed current writeset (era {cur})");
            }
            assert_eq!(f["writesets"], ws, "{name}");
            // Blocks per era last written, from the ground truth.
            let key = match (view, truth.get("last_written_era")) {
                (true, _) => "snapshot_last_written_era",
                (false, Some(_)) => "last_written_era",
                (false, None) => "last_written_era_ranges",
            };
            let mut per: BTreeMap<u64, u64> = BTreeMap::new();
            for e in eras_from_truth(&truth[key], nb) {
                *per.entry(e).or_default() += 1;
            }
            let never = per.remove(&0).unwrap_or(0);
            let written = nb - never;
            assert_eq!(
                f["written"],
                format!("{written} of {nb} blocks ({}%)", pct(written, nb)),
                "{name}"
            );
            let mut want: Vec<(String, String)> = per
                .iter()
                .map(|(e, k)| (format!("era {e}"), format!("{k} ({}%)", pct(*k, nb))))
                .collect();
            want.push(("never".into(), format!("{never} ({}%)", pct(never, nb))));
            assert_eq!(rows, want, "{name} snapshot={view}");
        }
    }
}

#[test]
fn human_summary_adds_up_the_oldest_of_many_eras() {
    let dir = TestDir::new("human-eras");
    // 300 blocks over eras 0..=100: block b last written in era b % 101.
    let (nb, cur) = (300u64, 100u64);
    let mut xml = format!(
        "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"{nb}\" current_era=\"{cur}\">\n  <era_array>\n"
    );
    for b in 0..nb {
        xml += &format!("    <era block=\"{b}\" era=\"{}\"/>\n", b % (cur + 1));
    }
    xml += "  </era_array>\n</superblock>\n";
    let (x, img) = (dir.path("in.xml"), dir.path("img"));
    std::fs::write(&x, xml).unwrap();
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let o = run_tool(
        "era_restore",
        &["-q", "-i", x.to_str().unwrap(), "-o", img.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_tool("era_dump", &["--format", "human", img.to_str().unwrap()]);
    let (_, f, rows) = summary(&o.stdout);
    let count = |e: u64| (0..nb).filter(|b| b % (cur + 1) == e).count() as u64;
    // The 64 most recent eras one by one, eras 1-36 together, then the unwritten.
    let listed = 64;
    let oldest_listed = cur - listed + 1;
    let older: u64 = (1..oldest_listed).map(count).sum();
    let mut want = vec![(
        format!("eras 1-{}", oldest_listed - 1),
        format!("{older} ({}%)", pct(older, nb)),
    )];
    for e in oldest_listed..=cur {
        want.push((
            format!("era {e}"),
            format!("{} ({}%)", count(e), pct(count(e), nb)),
        ));
    }
    want.push((
        "never".into(),
        format!("{} ({}%)", count(0), pct(count(0), nb)),
    ));
    assert_eq!(rows, want);
    assert_eq!(
        f["written"],
        format!(
            "{} of {nb} blocks ({}%)",
            nb - count(0),
            pct(nb - count(0), nb)
        )
    );
}
