//! `era_verify_log`: verify dm-era's kernel from dm-log-writes logs.

use std::ffi::OsString;

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    super::verify_log::run_era(args)
}
