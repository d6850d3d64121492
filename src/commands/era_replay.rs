//! `era_replay`: a dmtrace through the dm-era reference model.

use std::ffi::OsString;

use crate::trace::Target;

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    super::replay::run("era_replay", Target::Era, args)
}
