//! `clone_replay`: a dmtrace through the dm-clone reference model.

use std::ffi::OsString;

use crate::trace::Target;

/// The command-line definition (for `--help` and shell completions).
pub fn command() -> clap::Command {
    super::replay::command("clone_replay")
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    super::replay::run("clone_replay", Target::Clone, args)
}
