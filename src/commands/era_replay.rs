//! `era_replay`: a dmtrace through the dm-era reference model.

use std::ffi::OsString;

use crate::trace::Target;

/// The command-line definition (for `--help` and shell completions).
pub fn command() -> clap::Command {
    super::replay::command("era_replay")
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    super::replay::run("era_replay", Target::Era, args)
}
