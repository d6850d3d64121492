//! `clone_metadata_pack`: pack dm-clone metadata into a compressed file for a bug report.

use std::ffi::OsString;

use crate::trace::Target;

/// The command-line definition (for `--help` and shell completions).
pub fn command() -> clap::Command {
    super::metadata_pack::pack_command(Target::Clone)
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    super::metadata_pack::run_pack(Target::Clone, args)
}
