//! Command-line behaviour of every tool: dispatch, help, and the error paths.

use crate::util::{bin, run_tool, TestDir};
use std::process::Command;

const TOOLS: &[&str] = &["clone_check", "clone_dump", "era_check", "era_dump"];

#[test]
fn every_tool_has_help_and_version() {
    for t in TOOLS {
        let o = run_tool(t, &["--help"]);
        assert_eq!(o.status.code(), Some(0), "{t} --help");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{t} --help"
        );
        let o = run_tool(t, &["--version"]);
        assert_eq!(o.status.code(), Some(0), "{t} --version");
    }
}

#[test]
fn missing_input_is_one_clear_line() {
    for t in TOOLS {
        let o = run_tool(t, &["/nonexistent/meta.img"]);
        assert_eq!(o.status.code(), Some(1), "{t}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.lines().count(), 1, "{t}: {e}");
        assert!(
            e.contains("/nonexistent/meta.img") && e.contains("No such file"),
            "{t}: {e}"
        );
    }
}
