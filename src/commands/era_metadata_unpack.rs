//! `era_metadata_unpack`: unpack a pack of dm-era metadata into an image.

use std::ffi::OsString;

use crate::trace::Target;

/// The command-line definition (for `--help` and shell completions).
pub fn command() -> clap::Command {
    super::metadata_pack::unpack_command(Target::Era)
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    super::metadata_pack::run_unpack(Target::Era, args)
}
