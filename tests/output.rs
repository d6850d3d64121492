//! Output failures: a closed pipe, a full disk or a closed standard error never
//! changes a verdict, never panics, and never destroys a file the tool was not
//! asked to write; `-V` prints the version as thin-provisioning-tools does.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::{bin, load_zst, repo, TestDir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An era image, a clone image and a file of random-looking bytes in `d`.
fn inputs(d: &TestDir) -> (String, String, String) {
    let era = d.path("era.img");
    std::fs::write(
        &era,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    let clone = d.path("clone.img");
    std::fs::copy(
        repo().join("fixtures/samples/clone-b-partial/metadata.img"),
        &clone,
    )
    .unwrap();
    let junk = d.path("junk.img");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let bytes: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&junk, bytes).unwrap();
    (
        s(&era).to_string(),
        s(&clone).to_string(),
        s(&junk).to_string(),
    )
}

/// Runs `dmce args` with standard output a pipe whose reader is gone before the
/// tool starts (closed first, so that no race lets a write succeed).
fn closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(bin())
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Runs `dmce args` with standard output `/dev/full`.
fn full(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap()
}

/// Runs `dmce args` with standard error `/dev/full`.
fn full_stderr(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .stderr(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap()
}

/// Runs `dmce args` with standard error closed.
fn closed_stderr(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("exec 2>&-; exec \"$0\" \"$@\"")
        .arg(bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_checkers_failure_survives_a_closed_pipe_and_a_full_disk() {
    let d = TestDir::new("out-verdict");
    let (era, clone, junk) = inputs(&d);
    // The text report goes to standard error, JSON to standard output.
    for (args, json) in [
        (vec!["era_check", junk.as_str()], false),
        (vec!["clone_check", junk.as_str()], false),
        (
            vec!["clone_check", "--region-size", "128", clone.as_str()],
            false,
        ),
        (vec!["era_check", "--block-size", "64", era.as_str()], false),
        (vec!["era_check", "--format", "json", junk.as_str()], true),
        (
            vec![
                "clone_check",
                "--format",
                "json",
                "--region-size",
                "128",
                &clone,
            ],
            true,
        ),
    ] {
        let o = closed_pipe(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?} | closed pipe");
        assert_eq!(closed_stderr(&args).status.code(), Some(1), "{args:?} 2>&-");
        let o = full_stderr(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?} 2>/dev/full");
        let o = full(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?} >/dev/full");
        if json {
            assert!(text(&o.stderr).contains("No space left"), "{args:?}");
        }
    }
    // A clean verdict that could not be printed is no clean verdict either.
    // (A closed standard error is not one: the runtime puts /dev/null there.)
    let o = full_stderr(&["era_check", &era]);
    assert_eq!(o.status.code(), Some(1));
    let args = ["era_check", "--format", "json", era.as_str()];
    let o = full(&args);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "era_check: cannot write standard output: No space left on device (os error 28)\n"
    );
    assert_eq!(closed_pipe(&args).status.code(), Some(1));
}

#[test]
fn a_dump_whose_output_fails_exits_1_and_a_closed_pipe_quietly() {
    let d = TestDir::new("out-dump");
    let (era, clone, _) = inputs(&d);
    let mut cases = vec![
        vec![
            "era_invalidate",
            "--written-since",
            "1",
            "--format",
            "json",
            &era,
        ],
        vec!["era_invalidate", "--written-since", "1", &era],
    ];
    for f in ["xml", "json", "human"] {
        cases.push(vec!["era_dump", "--format", f, &era]);
        cases.push(vec!["era_dump", "--format", f, "--logical", &era]);
        cases.push(vec!["clone_dump", "--format", f, &clone]);
    }
    for args in cases {
        let o = closed_pipe(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(o.stderr.is_empty(), "{args:?}: {}", text(&o.stderr));
        let o = full(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = text(&o.stderr);
        assert_eq!(e.matches("No space left").count(), 1, "{e}");
        assert!(
            !e.contains(".img"),
            "an output error is not the input's: {e}"
        );
    }
}

#[test]
fn no_tool_panics_on_an_output_failure() {
    let d = TestDir::new("out-panic");
    let (era, clone, _) = inputs(&d);
    let (exml, cxml) = (d.path("e.xml"), d.path("c.xml"));
    std::fs::write(&exml, run(&["era_dump", &era]).stdout).unwrap();
    std::fs::write(&cxml, run(&["clone_dump", &clone]).stdout).unwrap();
    let img = d.path("out.img");
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["-V"],
        vec!["--help"],
        vec!["era_check", "-V"],
        vec!["era_check", "--help"],
        vec!["clone_replay", "--help"],
        vec!["era_check", "/nonexistent"],
        vec!["era_check", &era],
        vec!["era_dump", &era],
        vec!["era_invalidate", "--written-since", "1", &era],
        vec!["era_restore", "-i", s(&exml), "-o", s(&img)],
        vec!["era_repair", "-i", &era, "-o", s(&img)],
        vec!["clone_restore", "-i", s(&cxml), "-o", s(&img)],
        vec!["clone_repair", "-i", &clone, "-o", s(&img)],
        vec!["thin_check"],
    ];
    for args in &cases {
        for (how, o) in [
            ("closed pipe", closed_pipe(args)),
            (">/dev/full", full(args)),
            ("2>/dev/full", full_stderr(args)),
            ("2>&-", closed_stderr(args)),
        ] {
            let code = o.status.code();
            assert!(
                code == Some(0) || code == Some(1),
                "{args:?} {how}: exit {code:?}: {}",
                text(&o.stderr)
            );
        }
    }
    // Help and version that cannot be written fail.
    assert_eq!(full(&["-V"]).status.code(), Some(1));
    assert_eq!(full(&["era_check", "--help"]).status.code(), Some(1));
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// A restore or repair that committed exits 0 even when its report line cannot be
/// written (the output holds the new metadata), and says so on stderr.
#[test]
fn a_committed_restore_whose_report_fails_exits_0() {
    let d = TestDir::new("out-committed");
    let (era, clone, _) = inputs(&d);
    let (exml, cxml) = (d.path("e.xml"), d.path("c.xml"));
    std::fs::write(&exml, run(&["era_dump", &era]).stdout).unwrap();
    std::fs::write(&cxml, run(&["clone_dump", &clone]).stdout).unwrap();
    let img = d.path("out.img");
    for (args, check) in [
        (
            vec!["era_restore", "-i", s(&exml), "-o", s(&img)],
            "era_check",
        ),
        (vec!["era_repair", "-i", &era, "-o", s(&img)], "era_check"),
        (
            vec!["clone_restore", "-i", s(&cxml), "-o", s(&img)],
            "clone_check",
        ),
        (
            vec!["clone_repair", "-i", &clone, "-o", s(&img)],
            "clone_check",
        ),
    ] {
        std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let o = full(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("written and committed, but its report was not"),
            "{args:?}: {}",
            text(&o.stderr)
        );
        assert_eq!(run(&[check, s(&img)]).status.code(), Some(0), "{args:?}");
        std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let o = closed_pipe(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        assert!(o.stderr.is_empty(), "{args:?}: {}", text(&o.stderr));
        assert_eq!(run(&[check, s(&img)]).status.code(), Some(0), "{args:?}");
    }
}

/// `-o FILE` is written beside FILE and renamed over it: a failed run leaves the
/// previous file, and no temporary file behind.
#[test]
fn a_failed_dump_keeps_the_previous_output_file() {
    let d = TestDir::new("out-atomic");
    let (era, clone, junk) = inputs(&d);
    let out = d.path("good.xml");
    for (tool, good) in [
        (
            vec!["era_dump", era.as_str()],
            vec!["era_dump", junk.as_str()],
        ),
        (
            vec!["clone_dump", clone.as_str()],
            vec!["clone_dump", junk.as_str()],
        ),
        (
            vec!["era_invalidate", "--written-since", "1", era.as_str()],
            vec!["era_invalidate", "--written-since", "1", junk.as_str()],
        ),
    ] {
        let mut a = tool.clone();
        a.extend(["-o", s(&out)]);
        assert_eq!(run(&a).status.code(), Some(0), "{a:?}");
        let before = std::fs::read(&out).unwrap();
        assert!(!before.is_empty());
        let mut b = good.clone();
        b.extend(["-o", s(&out)]);
        let o = run(&b);
        assert_eq!(o.status.code(), Some(1), "{b:?}");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            before,
            "{b:?} destroyed the old file"
        );
        let names: Vec<String> = std::fs::read_dir(d.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
    // A path that is not a regular file is written in place.
    assert_eq!(
        run(&["era_dump", &era, "-o", "/dev/null"]).status.code(),
        Some(0)
    );
}

#[test]
fn version_is_printed_as_thin_provisioning_tools_does() {
    let want = format!("{}\n", env!("CARGO_PKG_VERSION"));
    for args in [
        vec!["-V"],
        vec!["--version"],
        vec!["era_check", "-V"],
        vec!["clone_dump", "--version"],
        vec!["era_replay", "-V"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert_eq!(text(&o.stdout), want, "{args:?}");
    }
}

/// `-q` prints nothing at all, errors included; the status still tells.
#[test]
fn quiet_prints_nothing_even_for_errors() {
    let d = TestDir::new("out-quiet");
    let (era, clone, junk) = inputs(&d);
    let xml = d.path("x.xml");
    std::fs::write(&xml, "<superblock uuid=\"\" block_size=\"128\">\n").unwrap();
    let img = d.path("o.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    for args in [
        vec!["clone_check", "-q", "/nonexistent/meta"],
        vec!["era_check", "-q", s(&xml)],
        vec!["era_check", "-q", &junk],
        vec!["clone_check", "-q", &junk],
        vec!["era_check", "-q", "--block-size", "64", &era],
        vec!["era_restore", "-q", "-i", s(&xml), "-o", s(&img)],
        vec![
            "clone_restore",
            "-q",
            "-i",
            "/nonexistent.xml",
            "-o",
            s(&img),
        ],
        vec!["era_repair", "-q", "-i", &junk, "-o", s(&img)],
        vec!["clone_repair", "-q", "-i", &junk, "-o", s(&img)],
        vec!["era_replay", "-q", "/nonexistent.trace"],
    ] {
        let o = run(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(
            o.stdout.is_empty() && o.stderr.is_empty(),
            "{args:?}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
    }
    let o = run(&["clone_check", "-q", &clone]);
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
}

/// `-r` is `--repair`, as in thin-provisioning-tools.
#[test]
fn dump_r_is_repair() {
    let d = TestDir::new("out-r");
    let (era, clone, _) = inputs(&d);
    assert_eq!(
        run(&["era_dump", "-r", &era]).stdout,
        run(&["era_dump", "--repair", &era]).stdout
    );
    let o = run(&["clone_dump", "-r", &clone]);
    assert_eq!(o.status.code(), Some(0));
}

/// Bytes taken from an input never reach the terminal raw: control characters and
/// escape sequences are shown escaped.
#[test]
fn input_bytes_are_escaped_before_the_terminal() {
    let d = TestDir::new("out-escape");
    let img = d.path("o.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let evil = "\x1b[2J\x1b]0;x\x07\u{9b}31m";
    let cases = [
        ("era_restore", format!("<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"100\" current_era=\"5\">\n  <{evil}/>\n")),
        ("era_restore", format!("<superblock uuid=\"{evil}\" block_size=\"128\" nr_blocks=\"100\" current_era=\"5\" {evil}=\"1\">\n")),
        ("clone_restore", format!("<superblock uuid=\"\" region_size=\"64\" target_size=\"6400\" nr_regions=\"100\">\n  {evil}\n")),
        ("clone_restore", format!("<superblock uuid=\"\" region_size=\"{evil}\" target_size=\"6400\" nr_regions=\"100\">\n")),
    ];
    for (i, (tool, xml)) in cases.iter().enumerate() {
        let p = d.path(&format!("{i}.xml"));
        std::fs::write(&p, xml).unwrap();
        let o = run(&[tool, "-i", s(&p), "-o", s(&img)]);
        assert_eq!(o.status.code(), Some(1), "case {i}");
        let all = [o.stdout, o.stderr].concat();
        assert!(
            !all.iter().any(|&c| c == 0x1b || c == 0x07) && !text(&all).contains('\u{9b}'),
            "case {i}: {:?}",
            text(&all)
        );
    }
    // Binary input given to a replay tool, and a file name with an escape in it.
    let bin_trace = d.path("t\x1b[31m.trace");
    std::fs::write(&bin_trace, b"dmtrace 1 era\n\x1b[2J\x07\x00junk\n").unwrap();
    let o = run(&["era_replay", s(&bin_trace)]);
    let all = [o.stdout, o.stderr].concat();
    assert!(
        !all.iter().any(|&c| c == 0x1b || c == 0x07 || c == 0),
        "{:?}",
        text(&all)
    );
    assert!(text(&all).contains("\\x1b"), "{:?}", text(&all));
}
