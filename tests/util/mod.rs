//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Root of the repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The multi-call binary built for the tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dmce"))
}

/// A fresh temporary directory, removed when dropped.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("dmce-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `dmce <tool> args...`.
pub fn run_tool(tool: &str, args: &[&str]) -> Output {
    Command::new(bin()).arg(tool).args(args).output().unwrap()
}

/// Decompresses a zstd file with the zstd command.
pub fn unzstd(src: &Path, dst: &Path) {
    let st = Command::new("zstd")
        .args(["-dqf", "-o"])
        .arg(dst)
        .arg(src)
        .status()
        .expect("zstd must be installed (see .ci/run)");
    assert!(st.success(), "zstd -d {}", src.display());
}

/// Reads a zstd-compressed image into memory.
pub fn load_zst(src: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-dqc"])
        .arg(src)
        .output()
        .expect("zstd must be installed (see .ci/run)");
    assert!(out.status.success(), "zstd -d {}", src.display());
    out.stdout
}

/// Asserts two texts are equal, printing both on failure.
pub fn assert_text_eq(got: &str, want: &str, what: &str) {
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{what}: output differs from the expected text (first difference at line {})\n--- got ---\n{}\n--- want ---\n{}",
            first + 1,
            got.lines().skip(first.saturating_sub(3)).take(8).collect::<Vec<_>>().join("\n"),
            want.lines().skip(first.saturating_sub(3)).take(8).collect::<Vec<_>>().join("\n"),
        );
    }
}

/// Debian's thin-provisioning-tools 0.9.0 `tool` in /usr/sbin, which must be
/// installed; `None` when DMCE_NO_PEER_TOOLS=1 leaves the interoperability checks out.
pub fn peer(tool: &str) -> Option<String> {
    if std::env::var_os("DMCE_NO_PEER_TOOLS").is_some() {
        return None;
    }
    let p = format!("/usr/sbin/{tool}");
    assert!(
        Path::new(&p).exists(),
        "{p} is missing: install thin-provisioning-tools, or set DMCE_NO_PEER_TOOLS=1 to leave out the interoperability checks"
    );
    Some(p)
}
