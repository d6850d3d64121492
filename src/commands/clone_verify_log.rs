//! `clone_verify_log`: verify dm-clone's kernel from dm-log-writes logs.

use std::ffi::OsString;

/// The command-line definition (for `--help` and shell completions).
pub fn command() -> clap::Command {
    super::verify_log::clone_command()
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    super::verify_log::run_clone(args)
}
