//! dm-log-writes verification: logs the reference model emits for the
//! historical bugs are caught by `*_verify_log`, and those of the fixed model
//! pass; unreadable logs give exit 2 naming the entry.

use std::path::Path;

use crate::util::{repo, run_tool, TestDir};

/// Replays `trace` with `--emit-logwrites` into `dir`.
fn emit(target: &str, trace: &Path, dir: &Path) {
    let o = run_tool(
        &format!("{target}_replay"),
        &[
            "-q",
            trace.to_str().unwrap(),
            "--emit-logwrites",
            dir.to_str().unwrap(),
        ],
    );
    assert!(o.status.code().is_some(), "{}", trace.display());
}

/// (target, negative trace, mode, invariant its buggy logs must show)
const CAUGHT: &[(&str, &str, &str, &str)] = &[
    ("clone", "neg-commit-before-dest-flush", "crash", "I2"),
    ("clone", "neg-flush-after-commit", "crash", "I2"),
    ("clone", "neg-live-bitmap-commit", "crash", "I2"),
    ("clone", "neg-sb-before-meta-flush", "meta", "I1"),
    ("clone", "neg-sb-before-meta-flush", "meta", "G1"),
    ("era", "neg-sm-root-before-precommit", "meta", "E1"),
    ("era", "neg-sm-root-before-precommit", "crash", "E1"),
    ("era", "neg-stale-digest-cache", "meta", "E3"),
    ("era", "neg-discard-first-block-only", "crash", "E2"),
];

#[test]
fn emitted_logs_of_buggy_variants_are_caught_and_fixed_ones_pass() {
    let d = TestDir::new("logwrites-neg");
    for &(target, name, mode, id) in CAUGHT {
        for (suffix, buggy) in [("", true), (".fixed", false)] {
            let trace = repo()
                .join("tests/traces")
                .join(target)
                .join(format!("{name}{suffix}.dmtrace"));
            let dir = d.path(&format!("{name}{suffix}"));
            if !dir.exists() {
                emit(target, &trace, &dir);
            }
            let (code, out) = run_mode(target, mode, &dir);
            if buggy {
                assert_eq!(code, 1, "{name} {mode}: the checker lost power\n{out}");
                assert!(
                    out.lines()
                        .any(|l| l.starts_with(&format!("{target}_verify_log: {id} at entry"))),
                    "{name} {mode}: no {id}\n{out}"
                );
            } else {
                assert_eq!(
                    code, 0,
                    "{name}{suffix} {mode}: the fixed model fires\n{out}"
                );
            }
        }
    }
}

/// EB4 in the metadata log alone: the old table's late write-back lands over
/// blocks live in the new table's committed metadata, which a later flush makes
/// visible to the log (the negative trace itself ends in a power cut before it).
#[test]
fn late_write_back_after_a_reload_is_caught_in_meta_mode() {
    let d = TestDir::new("logwrites-eb4");
    let neg = repo().join("tests/traces/era/neg-commit-before-worker-stop.dmtrace");
    let text = std::fs::read_to_string(&neg).unwrap();
    let text = text.replace("crash ", "write block=3\nflush\ncrash ");
    for (variant, buggy) in [("commit-before-worker-stop", true), ("fixed", false)] {
        let text = text.replace(
            "variant=commit-before-worker-stop expect=violation:E1",
            &format!("variant={variant}"),
        );
        let trace = d.path(&format!("{variant}.dmtrace"));
        std::fs::write(&trace, &text).unwrap();
        let dir = d.path(variant);
        emit("era", &trace, &dir);
        let (code, out) = run_mode("era", "meta", &dir);
        if buggy {
            assert_eq!(code, 1, "{out}");
            assert!(out.contains("era_verify_log: G2 at entry"), "{out}");
        } else {
            assert_eq!(code, 0, "{out}");
        }
    }
}

#[test]
fn every_fixed_negative_trace_verifies_clean_in_both_modes() {
    let d = TestDir::new("logwrites-fixed");
    for target in ["clone", "era"] {
        let dir = repo().join("tests/traces").join(target);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            // A refused table has no logs; 1 GiB regions beyond sector 2^32
            // would make logs and a source image of gigabytes.
            if !name.ends_with(".fixed.dmtrace")
                || std::fs::read_to_string(&p)
                    .unwrap()
                    .contains("expect=refused")
                || name.starts_with("neg-region-shift-32bit")
            {
                continue;
            }
            let out = d.path(&name);
            emit(target, &p, &out);
            for mode in ["meta", "crash"] {
                let (code, text) = run_mode(target, mode, &out);
                assert_eq!(code, 0, "{name} {mode}\n{text}");
                assert!(
                    text.contains(&format!("{mode} mode: entries: metadata log")),
                    "{text}"
                );
            }
            n += 1;
        }
        assert!(n >= 4, "{target}: {n} fixed traces");
    }
}

#[test]
fn unreadable_logs_exit_2_naming_what_is_wrong() {
    let d = TestDir::new("logwrites-bad");
    let trace = repo().join("tests/traces/clone/neg-commit-before-dest-flush.fixed.dmtrace");
    let dir = d.path("ok");
    emit("clone", &trace, &dir);
    let mut log = std::fs::read(dir.join("meta.log")).unwrap();
    // The super counts 5 entries (as after a FUA or a mark), and entry 1's
    // padding gets a stray byte.
    log[16..24].copy_from_slice(&5u64.to_le_bytes());
    let second = 512 + 512 + 4096;
    log[second + 40] = 0x5a;
    let bad = d.path("bad.log");
    std::fs::write(&bad, &log).unwrap();
    for (file, want) in [
        (
            bad.to_str().unwrap().to_string(),
            "entry 1 (byte 5120): byte 40 of the entry's sector is 0x5a",
        ),
        (
            dir.join("source.img").to_str().unwrap().to_string(),
            "not a dm-log-writes log: magic is",
        ),
        (
            d.path("missing.log").to_str().unwrap().to_string(),
            "No such file",
        ),
    ] {
        let o = run_tool("clone_verify_log", &["--mode", "meta", "--meta-log", &file]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want) && err.contains(&file), "{err}");
    }
    let o = run_tool(
        "clone_verify_log",
        &[
            "--mode",
            "crash",
            "--meta-log",
            dir.join("meta.log").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("crash mode needs --dest-log FILE --source IMG"));
}

/// The lab's captures of the real kernel (`fixtures/kernel-logs/`), gunzipped
/// into `d`; the case names.
fn kernel_logs(d: &TestDir) -> Vec<String> {
    kernel_logs_in(d, "fixtures/kernel-logs")
}

/// The captures in `dir` of the repository, gunzipped into `d`; the case names.
fn kernel_logs_in(d: &TestDir, dir: &str) -> Vec<String> {
    let root = repo().join(dir);
    let mut cases = Vec::new();
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if !p.is_dir() {
            continue;
        }
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let out = d.path(&name);
        std::fs::create_dir_all(&out).unwrap();
        for f in std::fs::read_dir(&p).unwrap() {
            let f = f.unwrap().path();
            let fname = f.file_name().unwrap().to_str().unwrap().to_string();
            if let Some(stem) = fname.strip_suffix(".gz") {
                let o = std::process::Command::new("gzip")
                    .args(["-dc", f.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "gzip -dc {}", f.display());
                std::fs::write(out.join(stem), o.stdout).unwrap();
            }
        }
        cases.push(name);
    }
    cases.sort();
    cases
}

/// Runs `*_verify_log --mode MODE` on the logs in `dir` (crash mode with the
/// user log); exit status and output.
fn run_mode(target: &str, mode: &str, dir: &Path) -> (i32, String) {
    run_mode_on(target, mode, dir, None)
}

/// [`run_mode`] with `--variant NAME` (conformance).
fn run_mode_on(target: &str, mode: &str, dir: &Path, variant: Option<&str>) -> (i32, String) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let mut args = vec![
        "--mode".to_string(),
        mode.into(),
        "--meta-log".into(),
        p("meta.log"),
    ];
    match mode {
        "crash" => {
            let (l, i) = if target == "clone" {
                ("dest", "source")
            } else {
                ("origin", "origin")
            };
            args.extend([
                format!("--{l}-log"),
                p(&format!("{l}.log")),
                format!("--{i}"),
                p(&format!("{i}.img")),
                "--user-log".into(),
                p("top.log"),
            ]);
        }
        "conformance" => args.extend(["--user-log".into(), p("top.log")]),
        _ => {}
    }
    if let Some(v) = variant {
        args.extend(["--variant".into(), v.into()]);
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = run_tool(&format!("{target}_verify_log"), &args);
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `committed images compared: N, logically equal: L, byte-identical: B`.
fn compared(out: &str) -> (usize, usize, usize) {
    let num = |key: &str| -> usize {
        let at = out
            .find(key)
            .unwrap_or_else(|| panic!("no `{key}` in\n{out}"))
            + key.len();
        out[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        num("committed images compared: "),
        num("logically equal: "),
        num("byte-identical: "),
    )
}

#[test]
fn kernel_captures_verify_in_every_mode() {
    let d = TestDir::new("kernel-logs");
    let cases = kernel_logs(&d);
    assert!(cases.len() >= 6, "{cases:?}");
    for case in &cases {
        let target = if case.starts_with("era") {
            "era"
        } else {
            "clone"
        };
        let dir = d.path(case);
        let json = std::fs::read_to_string(
            repo()
                .join("fixtures/kernel-logs")
                .join(case)
                .join("case.json"),
        )
        .unwrap();
        let power_cut = json.contains("\"power_cut\": true");

        // meta: clean, except dm-era's format, which writes its superblock in
        // the same flush as the blocks it references (write_superblock() calls
        // dm_tm_commit() without dm_tm_pre_commit()).
        let (code, out) = run_mode(target, "meta", &dir);
        let ids: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{target}_verify_log: ")))
            .filter(|l| l.contains(" at entry "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        if target == "era" {
            assert_eq!(
                (code, ids.clone()),
                (1, vec!["E1", "G1"]),
                "{case} meta\n{out}"
            );
            assert!(
                out.contains("G1 at entry 6: the superblock (entry 5)"),
                "{case}\n{out}"
            );
        } else {
            assert_eq!(code, 0, "{case} meta\n{out}");
        }

        if power_cut {
            let (code, out) = run_mode(target, "crash", &dir);
            if case.ends_with("-buggy") {
                assert_eq!(code, 1, "{case} crash\n{out}");
                let lost: Vec<&str> = out
                    .lines()
                    .filter(|l| l.contains("I2 at entry") && l.contains("lost hydration"))
                    .map(|l| {
                        l.split("region ")
                            .nth(1)
                            .unwrap()
                            .split(' ')
                            .next()
                            .unwrap()
                    })
                    .collect();
                assert_eq!(lost, ["10", "20", "62", "140"], "{case}\n{out}");
            } else {
                assert_eq!(code, 0, "{case} crash\n{out}");
            }
        }

        // Conformance runs as case.json expects them: `conformance` on the
        // fixed model, `conformance:VARIANT` with --variant VARIANT.
        let cj: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut runs: Vec<(Option<String>, i64)> = cj["expect"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| {
                let (mode, variant) = k
                    .split_once(':')
                    .map_or((k.as_str(), None), |(m, x)| (m, Some(x.to_string())));
                (mode == "conformance").then(|| (variant, v["exit"].as_i64().unwrap()))
            })
            .collect();
        runs.sort();
        if case == "era-checkpoints-snap" {
            // Its discard spans era blocks 93..=97; the 6.1 kernel marked only
            // block 93 (HAZARDS H-E7).
            assert_eq!(
                runs,
                [(None, 1), (Some("discard-first-block-only".into()), 0)],
                "{case}"
            );
        } else {
            assert_eq!(runs, [(None, 0)], "{case}");
        }
        for (variant, exit) in runs {
            let (code, out) = run_mode_on(target, "conformance", &dir, variant.as_deref());
            assert_eq!(code, exit as i32, "{case} conformance {variant:?}\n{out}");
            let (n, logical, bytes) = compared(&out);
            assert!(n > 0, "{case}\n{out}");
            if exit == 1 {
                // Every commit from the discard on differs from the fixed
                // model, in the discard's blocks after the first.
                let lines: Vec<&str> = out
                    .lines()
                    .filter(|l| l.starts_with("era_verify_log: conformance at entry "))
                    .collect();
                assert_eq!(lines.len(), n - logical, "{case}\n{out}");
                assert!(lines.len() >= 10, "{case}\n{out}");
                for l in &lines {
                    assert!(
                        l.contains(
                            "blocks 94..=97: never written in the kernel, era 3 in the model"
                        ),
                        "{case}: {l}"
                    );
                }
            } else if case == "clone-bg-hydration" {
                // Two commits fall inside a batch of background copies, which the
                // model completes at one moment.
                assert!(logical + 2 >= n && bytes >= 5, "{case}\n{out}");
            } else {
                assert_eq!((logical, bytes), (n, n), "{case}\n{out}");
            }
        }
    }
}

/// A capture made on a loaded host, where the kernel's background copies ran
/// far ahead of a user write that needed a copy: its commits conform, the one
/// between the two writes as background copies and user regions each
/// bracketed by the model (`fixtures/kernel-logs-loaded/README.md`).
#[test]
fn background_copies_ahead_of_a_user_write_conform() {
    let d = TestDir::new("kernel-logs-loaded");
    assert_eq!(
        kernel_logs_in(&d, "fixtures/kernel-logs-loaded"),
        ["clone-bg-hydration", "era-powercut-early-superblock"]
    );
    let dir = d.path("clone-bg-hydration");
    let (code, out) = run_mode("clone", "meta", &dir);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run_mode("clone", "conformance", &dir);
    assert_eq!(code, 0, "{out}");
    assert_eq!(compared(&out).0, 11, "{out}");
    assert!(
        out.contains("kernel commit 4 (entry 39): its hydrated set lies between two states"),
        "{out}"
    );
}

#[test]
fn a_first_superblock_that_completes_before_its_trees_is_compared_at_its_flush() {
    // Formatting, the kernel's first superblock write completed before the
    // era array's index it references: the commit as logged does not dump.
    let d = TestDir::new("kernel-logs-early-superblock");
    kernel_logs_in(&d, "fixtures/kernel-logs-loaded");
    let dir = d.path("era-powercut-early-superblock");
    let (code, out) = run_mode("era", "meta", &dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("G1 at entry 6: the superblock (entry 4)"),
        "{out}"
    );
    let (code, out) = run_mode("era", "conformance", &dir);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("kernel commit 0 (entry 4) does not dump: its superblock completed before blocks it references (--mode meta reports G1); compared as the flush at entry 6 leaves it"),
        "{out}"
    );
    assert_eq!(compared(&out), (14, 14, 14), "{out}");
}

#[test]
fn era_conformance_needs_no_checkpoint_labels() {
    // Captures made by others may label the mark after a checkpoint as they
    // like: the checkpoints are then inferred from the kernel's eras.
    let d = TestDir::new("kernel-logs-relabel");
    kernel_logs(&d);
    let dir = d.path("era-checkpoints-snap");
    for f in ["meta.log", "top.log"] {
        let path = dir.join(f);
        let mut b = std::fs::read(&path).unwrap();
        let log = dmce::logwrites::Log::open(b.clone()).unwrap();
        let mut n = 0;
        for e in &log.entries {
            if e.label.as_deref() == Some("msg:checkpoint") {
                let at = e.pos as usize + 32;
                b[at..at + 14].copy_from_slice(b"phase-ended-ok");
                n += 1;
            }
        }
        assert!(n >= 2, "{f}: {n} checkpoint marks");
        std::fs::write(&path, b).unwrap();
    }
    // The capture's kernel (6.1) marks only the first block of its discard.
    let (code, out) = run_mode_on("era", "conformance", &dir, Some("discard-first-block-only"));
    assert_eq!(code, 0, "{out}");
    let (n, logical, bytes) = compared(&out);
    assert_eq!((logical, bytes), (n, n), "{out}");
}

#[test]
fn a_log_that_starts_on_a_formatted_device_needs_its_base() {
    // The kernel log of clone-partial-flush split at its first quiescent mark:
    // what came before becomes the base image, what follows a new log.
    use dmce::logwrites::{Log, LogWriter, FLUSH, FUA};
    let d = TestDir::new("kernel-logs-base");
    kernel_logs(&d);
    let src = d.path("clone-partial-flush").join("meta.log");
    let log = Log::open(std::fs::read(&src).unwrap()).unwrap();
    let s = log.sector_size as usize;
    let cut = log
        .entries
        .iter()
        .position(|e| e.label.as_deref() == Some("q1"))
        .expect("a q1 mark");
    let mut base = vec![0u8; 4 << 20];
    let mut rest = LogWriter::new(std::io::Cursor::new(Vec::new()), log.sector_size).unwrap();
    for (i, e) in log.entries.iter().enumerate() {
        let data = log.payload(e).unwrap();
        if i < cut {
            if e.is_write() {
                let at = e.sector as usize * s;
                base[at..at + data.len()].copy_from_slice(&data);
            }
            continue;
        }
        if let Some(l) = &e.label {
            if l != dmce::logwrites::END_MARK {
                rest.mark(l).unwrap();
            }
        } else if e.is_discard() {
            rest.discard(e.sector, e.nr_sectors).unwrap();
        } else if e.is_write() {
            rest.write(e.sector, &data, e.flags & (FUA | FLUSH))
                .unwrap();
        } else {
            rest.flush().unwrap();
        }
    }
    let dir = d.path("split");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("base.img"), &base).unwrap();
    std::fs::write(dir.join("meta.log"), rest.close().unwrap().into_inner()).unwrap();
    let meta = dir.join("meta.log");
    let meta = meta.to_str().unwrap();
    let base_path = dir.join("base.img");
    let with = run_tool(
        "clone_verify_log",
        &[
            "--mode",
            "meta",
            "--meta-log",
            meta,
            "--meta-base",
            base_path.to_str().unwrap(),
        ],
    );
    let out = String::from_utf8_lossy(&with.stdout);
    assert_eq!(with.status.code(), Some(0), "{out}");
    assert!(out.contains("violations: 0"), "{out}");
    // Without the base the first commit's blocks are missing.
    let without = run_tool("clone_verify_log", &["--mode", "meta", "--meta-log", meta]);
    assert_eq!(
        without.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&without.stdout)
    );
}

#[test]
fn the_model_conforms_to_itself_on_every_lab_trace() {
    // The logs the model emits for every kernel-lab trace, verified against
    // the model: the conversion of the user log, the messages its marks
    // announce and the placement of commits reproduce every committed image
    // byte for byte.
    let d = TestDir::new("logwrites-self");
    let dir = repo().join("tests/traces/kernel");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("dmtrace") {
            continue;
        }
        let name = p.file_stem().unwrap().to_str().unwrap().to_string();
        if name.ends_with("-millions") {
            continue; // the same paths, only larger
        }
        let target = if name.starts_with("era") {
            "era"
        } else {
            "clone"
        };
        let out = d.path(&name);
        emit(target, &p, &out);
        // The logs come from the trace's variant (the era traces': the 6.1
        // kernel's, HAZARDS H-E7); the model they are verified against is the
        // same.
        let t = dmce::trace::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let variant = t.header.variant.unwrap_or_default();
        let (code, text) = run_mode_on(target, "conformance", &out, Some(variant.name()));
        assert_eq!(code, 0, "{name}\n{text}");
        let (k, logical, bytes) = compared(&text);
        assert!(k > 0 && logical == k && bytes == k, "{name}\n{text}");
        n += 1;
    }
    assert!(n >= 12, "{n} traces");
}

/// Re-stamps dm-era superblock writes of the metadata log at `path` before
/// the mark `before` (or in the whole log), each changed by `f`: the last one
/// when `last`, else all.
fn forge_era_superblocks(
    path: &Path,
    before: Option<&str>,
    last: bool,
    f: impl Fn(&mut dmce::era::superblock::EraSuperblock),
) {
    use dmce::era::superblock::EraSuperblock;
    let mut b = std::fs::read(path).unwrap();
    let log = dmce::logwrites::Log::open(b.clone()).unwrap();
    let ss = log.sector_size as u64;
    let end = before.map_or(log.entries.len(), |l| {
        (log.entries.iter())
            .position(|e| e.label.as_deref() == Some(l))
            .expect("the mark")
    });
    let mut writes = (log.entries[..end].iter().rev())
        .filter(|e| e.is_write() && e.sector == 0 && e.nr_sectors * ss >= 4096)
        .take(if last { 1 } else { usize::MAX })
        .peekable();
    assert!(writes.peek().is_some(), "no superblock write");
    for e in writes {
        let at = (e.pos + ss) as usize;
        let mut blk = [0u8; 4096];
        blk.copy_from_slice(&b[at..at + 4096]);
        let mut sb = EraSuperblock::decode(&blk);
        f(&mut sb);
        b[at..at + 4096].copy_from_slice(&sb.encode(0));
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_forged_era_in_a_capture_is_a_finding_not_a_memory_blowup() {
    // The superblock the kernel committed last before the mark `q4`,
    // re-stamped with an era three billion checkpoints on: conformance infers
    // unannounced checkpoints from the eras of consecutive marks, and must not
    // make one trace line per claimed checkpoint.
    let d = TestDir::new("kernel-logs-forged-era");
    kernel_logs(&d);
    let dir = d.path("era-checkpoints-snap");
    forge_era_superblocks(&dir.join("meta.log"), Some("q4"), true, |sb| {
        sb.current_era += 3_000_000_000
    });
    let (code, out) = run_mode_on("era", "conformance", &dir, Some("discard-first-block-only"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no state of the model holds the same metadata"),
        "{out}"
    );
}

#[test]
fn kernel_commits_that_do_not_dump_do_not_conform() {
    // The superblocks committed before the mark `q2` re-stamped with 2^32 - 16
    // origin blocks: those commits do not dump, and none can be compared with
    // the model's; the later ones still make the model's devices.
    let d = TestDir::new("kernel-logs-forged-size");
    kernel_logs(&d);
    let dir = d.path("era-powercut");
    let meta = dir.join("meta.log");
    let original = std::fs::read(&meta).unwrap();
    let forge = |sb: &mut dmce::era::superblock::EraSuperblock| sb.nr_blocks = 0xffff_fff0;
    forge_era_superblocks(&meta, Some("q2"), false, forge);
    let (code, out) = run_mode("era", "conformance", &dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "conformance at entry 5: kernel commit 0: its metadata does not dump (metadata is damaged: block 0: superblock: nr_blocks 4294967280"
        ),
        "{out}"
    );
    // The meta mode says the same of the log alone.
    let (code, out) = run_mode("era", "meta", &dir);
    assert_eq!(code, 1, "{out}");
    // With every superblock forged there is nothing to build the model from.
    std::fs::write(&meta, original).unwrap();
    forge_era_superblocks(&meta, None, false, forge);
    let (code, out) = run_mode("era", "conformance", &dir);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("holds no valid superblock"), "{out}");
}
