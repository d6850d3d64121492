//! `--format json`: every tool's JSON parses (serde_json) and says what the same
//! tool's XML or text says, on every kernel-made fixture and on damaged images: the
//! same geometry, the same hydrated ranges, the same writesets and eras, the same
//! blocks to invalidate, the same findings and verdict.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dmce::io::{MemDevice, BLOCK_SIZE};
use dmce::pdata::checksum::{stamp, BlockKind};
use dmce::pdata::refs::Role;
use dmce::report::Part;
use serde_json::Value;

use crate::golden::json_ranges;
use crate::kernel_fixtures::fixtures;
use crate::util::{bin, load_zst, repo, run_tool, TestDir};

/// Every fixture image: kernel-made cases and the samples, as (name, image, is
/// clone, truth).
pub fn images() -> Vec<(String, Vec<u8>, bool, Value)> {
    let mut out = Vec::new();
    for (dir, truth) in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let img = load_zst(&dir.join("metadata.img.zst"));
        out.push((name, img, truth["kind"] == "clone", truth));
    }
    for s in ["clone-b-partial", "era-b-eras"] {
        let dir = repo().join("fixtures/samples").join(s);
        let truth: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth.json")).unwrap())
                .unwrap();
        let img = load_zst(&dir.join("metadata.img.zst"));
        out.push((s.to_string(), img, truth["kind"] == "clone", truth));
    }
    out
}

/// Runs `dmce tool args...`, handing every line of standard output to `line` as it
/// comes (the XML of the large fixtures is not kept); returns the exit code and
/// standard error.
pub fn run_lines(tool: &str, args: &[&str], mut line: impl FnMut(&str)) -> (i32, String) {
    let mut child = Command::new(bin())
        .arg(tool)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        line(&l.unwrap());
    }
    let st = child.wait().unwrap();
    (st.code().unwrap(), t.join().unwrap())
}

/// Standard output of a run as JSON, with the exit code.
pub fn run_json(tool: &str, args: &[&str]) -> (Value, i32, String) {
    let o = run_tool(tool, args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{tool} {args:?}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    (
        v,
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The number in `name="N"` of an XML line.
pub fn attr(line: &str, name: &str) -> Option<u64> {
    let pat = format!(" {name}=\"");
    let rest = &line[line.find(&pat)? + pat.len()..];
    rest[..rest.find('"')?].parse().ok()
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not an unsigned number"))
}

/// Half-open ranges of a JSON array of `{"begin", "end"}`, checked sorted, non-empty
/// and maximal (no two touch).
fn ranges(v: &Value) -> Vec<(u64, u64)> {
    let r: Vec<(u64, u64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (u(&o["begin"]), u(&o["end"])))
        .collect();
    for w in r.windows(2) {
        assert!(w[0].1 < w[1].0, "ranges not sorted and maximal: {r:?}");
    }
    assert!(r.iter().all(|(b, e)| b < e), "empty range in {r:?}");
    r
}

/// Appends block `b` to ascending maximal runs.
fn push_run(runs: &mut Vec<(u64, u64)>, b: u64) {
    match runs.last_mut() {
        Some(l) if l.1 == b => l.1 += 1,
        _ => runs.push((b, b + 1)),
    }
}

/// A writeset: era, nr_bits and the runs of set bits.
pub type Writeset = (u64, u64, Vec<(u64, u64)>);

/// An era dump, from either format: header, writesets (era, nr_bits, set runs) and
/// the era array as runs (begin, end, era).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EraDoc {
    pub header: (u64, u64, u64),
    pub writesets: Vec<Writeset>,
    pub eras: Vec<(u64, u64, u64)>,
}

/// Builds an [`EraDoc`] from the lines of the XML.
#[derive(Default)]
pub struct EraXml {
    pub doc: EraDoc,
    next_bit: u64,
    next_block: u64,
}

impl EraXml {
    pub fn line(&mut self, l: &str) {
        let t = l.trim_start();
        if t.starts_with("<superblock ") {
            self.doc.header = (
                attr(t, "block_size").unwrap(),
                attr(t, "nr_blocks").unwrap(),
                attr(t, "current_era").unwrap(),
            );
        } else if t.starts_with("<writeset ") {
            self.doc.writesets.push((
                attr(t, "era").unwrap(),
                attr(t, "nr_bits").unwrap(),
                Vec::new(),
            ));
            self.next_bit = 0;
        } else if t.starts_with("<bit ") {
            let b = attr(t, "block").unwrap();
            assert_eq!(b, self.next_bit, "bits in order, none left out");
            self.next_bit += 1;
            if t.contains("value=\"true\"") {
                push_run(&mut self.doc.writesets.last_mut().unwrap().2, b);
            }
        } else if t.starts_with("<era ") {
            let (b, e) = (attr(t, "block").unwrap(), attr(t, "era").unwrap());
            assert_eq!(b, self.next_block, "era entries in order, none left out");
            self.next_block += 1;
            match self.doc.eras.last_mut() {
                Some(r) if r.2 == e => r.1 += 1,
                _ => self.doc.eras.push((b, b + 1, e)),
            }
        }
    }
}

/// The [`EraDoc`] of an era_dump JSON document (runs checked maximal).
pub fn era_doc_from_json(v: &Value) -> EraDoc {
    let mut doc = EraDoc {
        header: (
            u(&v["block_size"]),
            u(&v["nr_blocks"]),
            u(&v["current_era"]),
        ),
        ..Default::default()
    };
    for w in v["writesets"].as_array().unwrap() {
        let set = ranges(&w["set"]);
        assert!(set.last().is_none_or(|r| r.1 <= u(&w["nr_bits"])));
        doc.writesets.push((u(&w["era"]), u(&w["nr_bits"]), set));
    }
    let mut next = 0;
    for r in v["era_array"].as_array().unwrap() {
        let (b, e, era) = (u(&r["begin"]), u(&r["end"]), u(&r["era"]));
        assert_eq!(b, next, "era runs cover every block in order");
        assert!(b < e);
        if let Some(last) = doc.eras.last() {
            assert_ne!(last.2, era, "era runs are maximal");
        }
        doc.eras.push((b, e, era));
        next = e;
    }
    assert_eq!(next, doc.header.1, "era runs end at nr_blocks");
    doc
}

fn write_img(dir: &TestDir, name: &str, img: &[u8]) -> PathBuf {
    let p = dir.path(name);
    std::fs::write(&p, img).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Checks `clone_dump ARGS` in JSON against its XML; returns the JSON.
fn clone_dump_agrees(img: &Path, args: &[&str]) -> Value {
    let mut xa = args.to_vec();
    xa.push(s(img));
    let mut hdr = None;
    let mut xml_ranges = Vec::new();
    let (code, xml_err) = run_lines("clone_dump", &xa, |l| {
        if l.starts_with("<superblock ") {
            hdr = Some((
                attr(l, "region_size").unwrap(),
                attr(l, "target_size").unwrap(),
                attr(l, "nr_regions").unwrap(),
            ));
        } else if l.trim_start().starts_with("<hydrated ") {
            xml_ranges.push((attr(l, "begin").unwrap(), attr(l, "end").unwrap()));
        }
    });
    assert_eq!(code, 0, "{img:?} {args:?}: {xml_err}");
    xa.splice(0..0, ["--format", "json"]);
    let (v, code, err) = run_json("clone_dump", &xa);
    assert_eq!(code, 0);
    assert_eq!(err, xml_err, "the same notes on standard error");
    assert_eq!(v["format"], "clone_dump");
    assert_eq!(v["version"], 1);
    assert_eq!(
        Some((
            u(&v["region_size"]),
            u(&v["target_size"]),
            u(&v["nr_regions"])
        )),
        hdr,
        "{img:?} {args:?}"
    );
    assert_eq!(ranges(&v["hydrated"]), xml_ranges, "{img:?} {args:?}");
    v
}

/// Checks `era_dump ARGS` in JSON against its XML; returns the JSON.
fn era_dump_agrees(img: &Path, args: &[&str]) -> Value {
    let mut xa = args.to_vec();
    xa.push(s(img));
    let mut x = EraXml::default();
    let (code, xml_err) = run_lines("era_dump", &xa, |l| x.line(l));
    assert_eq!(code, 0, "{img:?} {args:?}: {xml_err}");
    xa.splice(0..0, ["--format", "json"]);
    let (v, code, err) = run_json("era_dump", &xa);
    assert_eq!(code, 0);
    assert_eq!(err, xml_err, "the same notes on standard error");
    assert_eq!(v["format"], "era_dump");
    assert_eq!(v["version"], 1);
    assert_eq!(era_doc_from_json(&v), x.doc, "{img:?} {args:?}");
    // --logical folds the writesets; a repairing dump may have to fold them too.
    if args.contains(&"--logical") {
        assert_eq!(v["logical"], true);
    } else if !args.contains(&"--repair") {
        assert_eq!(v["logical"], false);
    }
    if v["logical"] == true {
        assert!(x.doc.writesets.is_empty());
    }
    assert_eq!(
        v["view"],
        if args.contains(&"--metadata-snapshot") {
            "metadata-snapshot"
        } else {
            "live"
        }
    );
    v
}

#[test]
fn dump_json_says_what_the_xml_says_on_every_fixture() {
    let dir = TestDir::new("json-dumps");
    for (name, img, is_clone, truth) in images() {
        let p = write_img(&dir, &name, &img);
        if is_clone {
            for args in [&[][..], &["--repair"]] {
                let v = clone_dump_agrees(&p, args);
                let want = truth
                    .get("hydrated_ranges")
                    .or(truth.get("hydrated_ranges_model"))
                    .unwrap();
                assert_eq!(ranges(&v["hydrated"]), json_ranges(want), "{name}");
                assert_eq!(v["unreadable"], serde_json::json!([]));
                assert_eq!(v["findings"], serde_json::json!([]));
            }
            continue;
        }
        let snap = truth
            .get("metadata_snap")
            .or(truth.get("metadata_snap_model"))
            .and_then(Value::as_u64);
        let mut modes: Vec<Vec<&str>> = vec![vec![], vec!["--logical"], vec!["--repair"]];
        if snap.is_some() {
            modes.push(vec!["--metadata-snapshot"]);
            modes.push(vec!["--metadata-snapshot", "--logical"]);
        }
        for args in modes {
            let v = era_dump_agrees(&p, &args);
            assert_eq!(v["metadata_snapshot"].as_u64(), snap, "{name}");
            assert_eq!(v["skipped"], serde_json::json!([]));
            // Only the live superblock's committed current writeset is "current",
            // and it is the last writeset.
            let current_root = truth["superblock"]["current_writeset"]["root"]
                .as_u64()
                .unwrap_or(0);
            let ws = v["writesets"].as_array().unwrap();
            for (i, w) in ws.iter().enumerate() {
                let want = current_root != 0
                    && !args.contains(&"--metadata-snapshot")
                    && i + 1 == ws.len();
                assert_eq!(w["current"], want, "{name} {args:?} writeset {i}");
            }
        }
    }
}

/// The live blocks of an image and their roles, from the checker's walk.
fn live_blocks(img: &[u8], is_clone: bool) -> Vec<(u64, Role)> {
    let dev = MemDevice::from_bytes(img);
    let refs = if is_clone {
        dmce::clone::check(&dev, &Default::default()).refs
    } else {
        dmce::era::check(&dev, &Default::default()).refs
    };
    refs.unwrap()
        .blocks()
        .into_iter()
        .map(|(b, _, r)| (b, r))
        .collect()
}

fn zeroed(img: &[u8], b: u64) -> Vec<u8> {
    let mut v = img.to_vec();
    v[b as usize * BLOCK_SIZE..(b as usize + 1) * BLOCK_SIZE].fill(0);
    v
}

fn flipped(img: &[u8], b: u64) -> Vec<u8> {
    let mut v = img.to_vec();
    v[b as usize * BLOCK_SIZE + 200] ^= 0x5a;
    v
}

const DAMAGED: [&str; 4] = ["clone-partial", "era-crash", "era-snapshot", "era-eras"];

/// Every damaged variant of the fixtures in [`DAMAGED`]: each live block zeroed, and
/// one byte of it flipped; with the block and its role.
fn damaged_images() -> Vec<(String, Vec<u8>, bool, u64, Role)> {
    let mut out = Vec::new();
    for (name, img, is_clone, _) in images() {
        if !DAMAGED.contains(&name.as_str()) {
            continue;
        }
        for (b, role) in live_blocks(&img, is_clone) {
            out.push((format!("{name}-z{b}"), zeroed(&img, b), is_clone, b, role));
            out.push((format!("{name}-f{b}"), flipped(&img, b), is_clone, b, role));
        }
    }
    out
}

#[test]
fn repairing_dumps_of_damaged_images_agree_in_json_and_xml() {
    let dir = TestDir::new("json-repair");
    let mut with_notes = 0;
    for (name, img, is_clone, _, _) in damaged_images() {
        let p = write_img(&dir, "img", &img);
        if is_clone {
            // The superblock itself refuses even a repairing dump: nothing to compare.
            if run_tool("clone_dump", &["--repair", s(&p)]).status.code() != Some(0) {
                continue;
            }
            let v = clone_dump_agrees(&p, &["--repair"]);
            let (_, _, err) = run_json("clone_dump", &["--format", "json", "--repair", s(&p)]);
            // Each finding and each unreadable range is on standard error too.
            for f in v["findings"].as_array().unwrap() {
                assert!(err.contains(&finding_text(f)), "{name}: {f} not in {err}");
            }
            for (b, e) in ranges(&v["unreadable"]) {
                assert!(err.contains(&format!("regions {b}..{e} are unreadable")));
            }
            with_notes += usize::from(!v["findings"].as_array().unwrap().is_empty());
        } else {
            if run_tool("era_dump", &["--repair", s(&p)]).status.code() != Some(0) {
                continue;
            }
            let v = era_dump_agrees(&p, &["--repair"]);
            let (_, _, err) = run_json("era_dump", &["--format", "json", "--repair", s(&p)]);
            let skipped: Vec<String> = err
                .lines()
                .filter_map(|l| l.split_once(": skipped: ").map(|x| x.1.to_string()))
                .collect();
            let json: Vec<String> = v["skipped"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            assert_eq!(json, skipped, "{name}");
            with_notes += usize::from(!json.is_empty());
        }
    }
    assert!(
        with_notes > 20,
        "only {with_notes} repairing dumps had notes"
    );
}

#[test]
fn invalidate_json_lists_the_blocks_the_xml_lists() {
    for (name, img, is_clone, truth) in images() {
        if is_clone {
            continue;
        }
        let dir = TestDir::new("json-inv");
        let p = write_img(&dir, &name, &img);
        let cur = truth
            .get("current_era")
            .or(truth.get("current_era_model"))
            .and_then(Value::as_u64)
            .unwrap();
        let snap = truth
            .get("metadata_snap")
            .or(truth.get("metadata_snap_model"))
            .and_then(Value::as_u64)
            .is_some();
        let mut nonempty = 0;
        for view in [false, true].into_iter().filter(|&v| !v || snap) {
            for n in 0..=cur + 1 {
                let n = n.to_string();
                let mut args = vec!["--written-since", n.as_str()];
                if view {
                    args.push("--metadata-snapshot");
                }
                args.push(s(&p));
                let mut xml = Vec::new();
                let (code, _) = run_lines("era_invalidate", &args, |l| {
                    if let Some(b) = attr(l, "block") {
                        xml.push((b, b + 1));
                    } else if let (Some(b), Some(e)) = (attr(l, "begin"), attr(l, "end")) {
                        xml.push((b, e));
                    }
                });
                assert_eq!(code, 0);
                args.splice(0..0, ["--format", "json"]);
                let (v, code, _) = run_json("era_invalidate", &args);
                assert_eq!(code, 0);
                assert_eq!(v["format"], "era_invalidate");
                assert_eq!(ranges(&v["blocks"]), xml, "{name} {args:?}");
                assert_eq!(u(&v["count"]), xml.iter().map(|(b, e)| e - b).sum::<u64>());
                assert_eq!(v["written_since"].as_u64(), n.parse().ok());
                assert_eq!(v["view"], if view { "metadata-snapshot" } else { "live" });
                assert_eq!(v["over_reported"], serde_json::json!([]));
                assert_eq!(v["findings"], serde_json::json!([]));
                // Since era 0 every block is listed, written or not.
                if n != "0" {
                    nonempty += usize::from(!xml.is_empty());
                }
            }
        }
        let written = truth
            .get("written_blocks")
            .or(truth.get("written_blocks_count"))
            .and_then(Value::as_u64)
            .unwrap();
        assert_eq!(nonempty > 0, written > 0, "{name}");
    }
}

/// The text line clone_check/era_check print for a JSON finding.
fn finding_text(f: &Value) -> String {
    let block = match f["block"].as_u64() {
        Some(b) => format!("block {b}: "),
        None => {
            assert!(f["block"].is_null());
            String::new()
        }
    };
    format!(
        "{}: {block}{}: {} [{}]",
        f["severity"].as_str().unwrap(),
        f["where"].as_str().unwrap(),
        f["message"].as_str().unwrap(),
        f["code"].as_str().unwrap()
    )
}

/// The part a finding's words name: a cross-check of the stable id against the
/// text, which the tools never parse.
fn part_named_by(place: &str) -> &'static [&'static str] {
    if place.contains("space-map") || place.contains("space map") {
        &["space-map"]
    } else if place.contains("snapshot superblock") {
        &["snapshot-superblock"]
    } else if place.starts_with("superblock") {
        &["superblock"]
    } else if place.contains("region bitset") {
        &["region-bitset"]
    } else if place.contains("current writeset") {
        &["current-writeset"]
    } else if place.contains("writeset of era") {
        &["writeset", "current-writeset"]
    } else if place.contains("writeset tree") {
        &["writeset-tree"]
    } else if place.contains("era array") {
        &["era-array"]
    } else {
        &[]
    }
}

/// Runs a checker in both formats (and quietly) and checks that the JSON says what
/// the text says; returns the JSON.
fn checker_agrees(tool: &str, args: &[&str]) -> Value {
    let text = run_tool(tool, args);
    let code = text.status.code().unwrap();
    // The text report is on standard error, each line naming the input.
    let input = format!("{}: ", args.last().unwrap());
    let text = String::from_utf8(text.stderr).unwrap();
    assert!(text.lines().all(|l| l.starts_with(&input)), "{text}");
    let text = text.replace(&format!("\n{input}"), "\n");
    let text = text.strip_prefix(&input).unwrap_or(&text);
    let mut ja = vec!["--format", "json"];
    ja.extend_from_slice(args);
    let (v, jcode, _) = run_json(tool, &ja);
    assert_eq!(jcode, code, "{tool} {args:?}: the same exit status");
    assert_eq!(u(&v["exit_status"]), code as u64);
    assert_eq!(v["format"], tool);
    assert_eq!(v["version"], 1);
    let findings = v["findings"].as_array().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), findings.len() + 1, "{tool} {args:?}: {text}");
    for (f, l) in findings.iter().zip(&lines) {
        assert_eq!(&finding_text(f), l, "{tool} {args:?}");
        let id = f["structure"].as_str().unwrap();
        assert!(
            Part::ALL.iter().any(|p| p.id() == id),
            "unknown structure {id}"
        );
        let named = part_named_by(f["where"].as_str().unwrap());
        assert!(named.contains(&id), "{f}: its words name {named:?}");
    }
    let count = |sev: &str| findings.iter().filter(|f| f["severity"] == sev).count() as u64;
    let (errors, warnings) = (count("error"), count("warning"));
    assert_eq!(u(&v["errors"]), errors);
    assert_eq!(u(&v["warnings"]), warnings);
    let verdict = match (errors, warnings) {
        (0, 0) => "clean",
        (0, _) => "warnings",
        _ => "errors",
    };
    assert_eq!(v["verdict"], verdict);
    let last = lines.last().copied().unwrap_or("");
    if code == 0 {
        // The summary line holds the figures of "metadata".
        let m = &v["metadata"];
        for k in [
            "block_size",
            "nr_blocks",
            "region_size",
            "target_size",
            "nr_regions",
        ] {
            if let Some(n) = m[k].as_u64() {
                assert!(last.contains(&format!(" {n} ")), "{last} lacks {k} {n}");
            }
        }
        if let Some(h) = m["hydrated"].as_u64() {
            assert!(last.contains(&format!("{h} hydrated")), "{last}");
        }
        if m["metadata_blocks"].is_object() {
            let (used, total) = (
                u(&m["metadata_blocks"]["used"]),
                u(&m["metadata_blocks"]["total"]),
            );
            assert!(last.ends_with(&format!("metadata blocks {used}/{total} used")));
        }
        if let Some(e) = m["current_era"].as_u64() {
            assert!(last.contains(&format!("current era {e}")));
        }
    } else {
        assert!(
            last.starts_with(&format!("{errors} error(s), {warnings} warning(s)")),
            "{last}"
        );
    }
    // Quiet: nothing at all, the same status.
    let mut qa = vec!["-q"];
    qa.extend_from_slice(&ja);
    let q = run_tool(tool, &qa);
    assert_eq!(q.status.code(), Some(code));
    assert!(q.stdout.is_empty() && q.stderr.is_empty());
    v
}

#[test]
fn checker_json_says_what_the_text_says_on_fixtures() {
    let dir = TestDir::new("json-check");
    for (name, img, is_clone, truth) in images() {
        let p = write_img(&dir, &name, &img);
        let tool = if is_clone { "clone_check" } else { "era_check" };
        let v = checker_agrees(tool, &[s(&p)]);
        assert_eq!(v["verdict"], "clean", "{name}");
        let m = &v["metadata"];
        if is_clone {
            let want = truth
                .get("hydrated_ranges")
                .or(truth.get("hydrated_ranges_model"))
                .unwrap();
            let h: u64 = json_ranges(want).iter().map(|(b, e)| e - b).sum();
            assert_eq!(u(&m["hydrated"]), h, "{name}");
            assert_eq!(m["nr_regions"], truth["nr_regions"]);
            let sb = checker_agrees(tool, &["--super-block-only", s(&p)]);
            assert!(sb["metadata"]["hydrated"].is_null());
            assert!(sb["metadata"]["metadata_blocks"].is_null());
        } else {
            assert_eq!(m["nr_blocks"], truth["nr_blocks"]);
            let snap = truth
                .get("metadata_snap")
                .or(truth.get("metadata_snap_model"))
                .and_then(Value::as_u64);
            assert_eq!(m["metadata_snapshot"].as_u64(), snap, "{name}");
            assert_eq!(m["view"], "live");
            if let Some(s53) = snap {
                let sv = checker_agrees(tool, &["-m", s(&p)]);
                assert_eq!(sv["metadata"]["view"], "metadata-snapshot");
                assert_eq!(sv["metadata"]["snapshot_location"], s53);
                assert_eq!(sv["metadata"]["current_era"], truth["snapshot_current_era"]);
            }
            checker_agrees(tool, &["--super-block-only", s(&p)]);
        }
    }
}

#[test]
fn checker_json_says_what_the_text_says_on_damaged_images() {
    let dir = TestDir::new("json-check-damage");
    let mut by_part = std::collections::BTreeMap::<String, usize>::new();
    let mut codes_seen =
        std::collections::BTreeMap::<&str, std::collections::BTreeSet<String>>::new();
    for (name, img, is_clone, b, role) in damaged_images() {
        let p = write_img(&dir, "img", &img);
        let tool = if is_clone { "clone_check" } else { "era_check" };
        let v = checker_agrees(tool, &[s(&p)]);
        assert_eq!(v["verdict"], "errors", "{name}");
        assert_eq!(v["exit_status"], 1);
        // The damaged block is named, under the part its role belongs to.
        let at: Vec<&Value> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["block"] == b)
            .collect();
        let want: &[&str] = match role {
            Role::Superblock if b == 0 => &["superblock"],
            Role::Superblock => &["snapshot-superblock"],
            // The overflow tree is the only one with 4-byte values.
            Role::SmIndex | Role::SmBitmap | Role::RefCountNode | Role::TreeNode(4) => {
                &["space-map"]
            }
            _ if is_clone => &["region-bitset"],
            _ => &["writeset-tree", "writeset", "current-writeset", "era-array"],
        };
        if !at.is_empty() {
            assert!(
                at.iter()
                    .any(|f| want.contains(&f["structure"].as_str().unwrap())),
                "{name}: {at:?} not in {want:?}"
            );
        }
        for f in v["findings"].as_array().unwrap() {
            codes_seen
                .entry(tool)
                .or_default()
                .insert(f["code"].as_str().unwrap().to_string());
            *by_part
                .entry(f["structure"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        if name.starts_with("era-snapshot") {
            // Through the snapshot, damage to the snapshot's trees is found too.
            checker_agrees(tool, &["-m", s(&p)]);
        }
    }
    // Every part of both targets showed up in some finding.
    for p in Part::ALL {
        assert!(
            by_part.contains_key(p.id()),
            "no finding in {}: {by_part:?}",
            p.id()
        );
    }
    // Every code found is documented in the checker's CODES.
    for (tool, codes) in codes_seen {
        let page = std::fs::read_to_string(repo().join("man").join(format!("{tool}.8"))).unwrap();
        let sec = &page[page.find(".SH CODES").unwrap()..];
        let sec = &sec[..sec[1..].find(".SH ").unwrap()];
        for c in codes {
            let troff = format!(".B {}\n", c.replace('-', "\\-"));
            assert!(sec.contains(&troff), "man/{tool}.8: CODES lacks {c}");
        }
    }
}

#[test]
fn warnings_only_give_the_verdict_warnings_and_ignore_non_fatal_exits_0() {
    let dir = TestDir::new("json-warn");
    for (name, img, is_clone, _) in images() {
        if name != "clone-partial" && name != "era-eras" {
            continue;
        }
        // A non-zero byte in the superblock's zero padding, checksum fixed up.
        let mut img = img;
        img[3000] = 0x42;
        let kind = if is_clone {
            BlockKind::CloneSuperblock
        } else {
            BlockKind::EraSuperblock
        };
        let sb: &mut [u8; BLOCK_SIZE] = (&mut img[..BLOCK_SIZE]).try_into().unwrap();
        stamp(sb, 0, kind);
        let p = write_img(&dir, &name, &img);
        let tool = if is_clone { "clone_check" } else { "era_check" };
        let v = checker_agrees(tool, &[s(&p)]);
        assert_eq!(v["verdict"], "warnings");
        assert_eq!(v["exit_status"], 1);
        assert_eq!(v["findings"][0]["code"], "sb-padding");
        assert_eq!(v["findings"][0]["structure"], "superblock");
        assert_eq!(v["findings"][0]["block"], 0);
        let v = checker_agrees(tool, &["--ignore-non-fatal-errors", s(&p)]);
        assert_eq!(v["verdict"], "warnings");
        assert_eq!(v["exit_status"], 0);
    }
}

#[test]
fn unformatted_and_foreign_metadata_are_findings_in_json() {
    let dir = TestDir::new("json-unformatted");
    let zero = write_img(&dir, "zero", &vec![0u8; 16 * BLOCK_SIZE]);
    for tool in ["clone_check", "era_check"] {
        let v = checker_agrees(tool, &[s(&zero)]);
        assert_eq!(v["findings"][0]["code"], "sb-unformatted");
        assert!(v["metadata"].is_null());
    }
    let era = images().into_iter().find(|i| i.0 == "era-eras").unwrap().1;
    let era = write_img(&dir, "era", &era);
    let v = checker_agrees("clone_check", &[s(&era)]);
    assert_eq!(v["findings"][0]["code"], "sb-magic");
    assert_eq!(v["findings"][0]["structure"], "superblock");
}

/// The text of the first `.nf` ... `.fi` block of a man page's JSON OUTPUT section,
/// with troff's escapes undone.
fn man_json_example(tool: &str) -> Value {
    let page = std::fs::read_to_string(repo().join("man").join(format!("{tool}.8"))).unwrap();
    let sec = &page[page
        .find(".SH JSON OUTPUT")
        .unwrap_or_else(|| panic!("man/{tool}.8 has no JSON OUTPUT"))..];
    let body = &sec[sec.find(".nf\n").unwrap() + 4..];
    let body = &body[..body.find(".fi\n").unwrap()];
    let text = body.replace("\\-", "-").replace("\\e", "\\");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("man/{tool}.8: example: {e}"))
}

/// The keys of an object, and of the first element of each array of objects inside
/// it, recursively: the shape of a document.
fn shape(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(format!("{path}.{k}"));
                shape(x, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            if let Some(x) = a.iter().find(|x| x.is_object()) {
                shape(x, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn man_page_json_examples_parse_and_have_the_shape_of_the_output() {
    let dir = TestDir::new("json-man");
    let all = images();
    let img = |name: &str| {
        let i = all.iter().find(|i| i.0 == name).unwrap();
        write_img(&dir, name, &i.1)
    };
    let (clone, era_crash, era_snap) = (img("clone-partial"), img("era-crash"), img("era-eras"));
    // A damaged clone image, so that findings are present.
    let dmg = {
        let i = all.iter().find(|i| i.0 == "clone-partial").unwrap();
        let b = live_blocks(&i.1, true)
            .into_iter()
            .find(|(_, r)| matches!(r, Role::TreeNode(8)))
            .unwrap()
            .0;
        write_img(&dir, "dmg", &flipped(&i.1, b))
    };
    let cases: [(&str, Vec<&str>); 5] = [
        ("clone_dump", vec![s(&clone)]),
        ("era_dump", vec![s(&era_crash)]),
        ("era_invalidate", vec!["--written-since", "2", s(&era_snap)]),
        ("clone_check", vec![s(&dmg)]),
        ("era_check", vec![s(&era_snap)]),
    ];
    for (tool, args) in cases {
        let example = man_json_example(tool);
        let mut a = vec!["--format", "json"];
        a.extend(args);
        let (real, _, _) = run_json(tool, &a);
        let (mut want, mut got) = (Vec::new(), Vec::new());
        shape(&example, "", &mut want);
        shape(&real, "", &mut got);
        assert_eq!(want, got, "man/{tool}.8: the example's keys");
        assert_eq!(example["format"], tool);
    }
}
