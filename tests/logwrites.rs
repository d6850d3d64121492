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

/// Runs `*_verify_log --mode MODE` on the logs in `dir`; exit status and stdout.
fn verify(target: &str, mode: &str, dir: &Path) -> (i32, String) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let mut args = vec![
        "--mode".to_string(),
        mode.into(),
        "--meta-log".into(),
        p("meta.log"),
    ];
    if mode == "crash" {
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
        ]);
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = run_tool(&format!("{target}_verify_log"), &args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
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
            let (code, out) = verify(target, mode, &dir);
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

#[test]
fn every_fixed_negative_trace_verifies_clean_in_both_modes() {
    let d = TestDir::new("logwrites-fixed");
    for target in ["clone", "era"] {
        let dir = repo().join("tests/traces").join(target);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if !name.ends_with(".fixed.dmtrace") {
                continue;
            }
            let out = d.path(&name);
            emit(target, &p, &out);
            for mode in ["meta", "crash"] {
                let (code, text) = verify(target, mode, &out);
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
