//! `era_restore`: write fresh dm-era metadata from era_dump's XML.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use super::restore_util::{open_input, open_output, restore_error, with_progress};
use super::util::{committed_report, parse, set_quiet};
use crate::era::restore::restore;

/// Restore dm-era metadata from era XML (ours, or thin-provisioning-tools'
/// era_dump; <bit> and <marked> writesets). The output is formatted afresh: an
/// image file is written beside it and replaced only when the restore has
/// committed; a block device has its old superblock invalidated first, so a restore
/// that fails leaves no valid metadata behind.
#[derive(Parser, Debug)]
#[command(name = "era_restore", version)]
struct Args {
    /// XML file to read.
    #[arg(short, long, value_name = "FILE")]
    input: PathBuf,
    /// Metadata device or image file to write (it must exist and be large enough).
    #[arg(short, long, value_name = "DEV")]
    output: PathBuf,
    /// Print nothing at all, errors included; the exit status tells the outcome.
    #[arg(short, long)]
    quiet: bool,
}

/// The command-line definition (for `--help` and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    let a: Args = match parse(args) {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    set_quiet(a.quiet);
    let (input, size) = open_input(&a.input)?;
    let dev = open_output(&a.output, &a.input)?;
    let r = with_progress(size, a.quiet, "era_restore", |cb| {
        restore(input, dev.dev(), Some(cb))
    });
    let (e, s) = r.map_err(|e| restore_error(e, &a.input, &a.output))?;
    dev.commit()?;
    Ok(committed_report(
        "era_restore",
        &format!(
            "{}: restored {} blocks of {} sectors, current era {}, {} writesets; metadata blocks {}/{} used",
            a.output.display(),
            e.header.nr_blocks,
            e.header.block_size,
            e.header.current_era,
            e.writesets,
            s.blocks_used,
            s.nr_blocks
        ),
    ))
}
