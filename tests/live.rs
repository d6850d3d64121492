//! Live metadata: a block device held exclusively (as a device-mapper table holds
//! its metadata device) is refused by every tool that reads metadata, unless it is
//! read through a metadata snapshot or `--allow-live` is given.

use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use crate::util::{load_zst, repo, run_tool, TestDir};

/// A loop device over a file, detached when dropped.
pub struct Loop(pub String);

impl Loop {
    /// Attaches `file`; `None` when no loop device can be had (not root).
    pub fn new(file: &std::path::Path) -> Option<Loop> {
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()?;
        if !o.status.success() {
            return None;
        }
        Some(Loop(String::from_utf8(o.stdout).ok()?.trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn live_metadata_is_refused_unless_a_snapshot_or_allow_live() {
    let d = TestDir::new("live");
    let (era, clone) = (d.path("era.img"), d.path("clone.img"));
    std::fs::write(
        &era,
        load_zst(&repo().join("fixtures/samples/era-b-eras/metadata.img.zst")),
    )
    .unwrap();
    std::fs::copy(
        repo().join("fixtures/samples/clone-b-partial/metadata.img"),
        &clone,
    )
    .unwrap();
    let (Some(el), Some(cl)) = (Loop::new(&era), Loop::new(&clone)) else {
        eprintln!("live: no loop device (not root?); skipped");
        return;
    };
    let out = d.path("out.img");
    std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    let (e, c, o) = (el.0.as_str(), cl.0.as_str(), out.to_str().unwrap());
    let pack = d.path("p.pack");
    let p = pack.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["era_check", e],
        vec!["era_dump", e],
        vec!["era_invalidate", "--written-since", "1", e],
        vec!["era_repair", "-i", e, "-o", o],
        vec!["era_metadata_pack", "-i", e, "-o", p],
        vec!["clone_check", c],
        vec!["clone_dump", c],
        vec!["clone_repair", "-i", c, "-o", o],
        vec!["clone_metadata_pack", "-i", c, "-o", p],
    ];
    // Not held: read as usual.
    for args in &cases {
        let r = run_tool(args[0], &args[1..]);
        assert_eq!(
            r.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    // Held exclusively, as a table holds it.
    let hold = |p: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(p)
            .unwrap()
    };
    let (_he, _hc) = (hold(e), hold(c));
    for args in &cases {
        let r = run_tool(args[0], &args[1..]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        assert!(r.stdout.is_empty(), "{args:?}");
        assert!(
            err.contains("in use") && err.contains("suspend") && err.contains("--allow-live"),
            "{args:?}: {err}"
        );
        let no_snapshot = ["era_repair", "era_metadata_pack"];
        if !no_snapshot.contains(&args[0]) && args[0].starts_with("era") {
            assert!(err.contains("--metadata-snapshot"), "{args:?}: {err}");
        }
        let mut allowed = args.clone();
        allowed.push("--allow-live");
        let r = run_tool(allowed[0], &allowed[1..]);
        assert_eq!(
            r.status.code(),
            Some(0),
            "{allowed:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    // Through a metadata snapshot the device is read, and the sample holds none.
    for args in [
        vec!["era_check", "-m", e],
        vec!["era_dump", "--metadata-snapshot", e],
        vec![
            "era_invalidate",
            "--written-since",
            "1",
            "--metadata-snapshot",
            e,
        ],
    ] {
        let r = run_tool(args[0], &args[1..]);
        let all =
            String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        assert!(
            all.contains("no metadata snapshot") && !all.contains("in use"),
            "{args:?}: {all}"
        );
    }
}

#[test]
fn era_check_reads_a_metadata_snapshot() {
    let d = TestDir::new("live-snap");
    let img = d.path("snap.img");
    std::fs::write(
        &img,
        load_zst(&repo().join("fixtures/kernel/era-snapshot/metadata.img.zst")),
    )
    .unwrap();
    let r = run_tool("era_check", &["-m", img.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{out}");
    assert!(
        out.contains("era metadata snapshot OK") && out.contains("current era 3"),
        "{out}"
    );
}
