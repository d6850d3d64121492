//! `era_repair`: salvage damaged dm-era metadata into a fresh image.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use super::restore_util::open_output;
use super::util::{
    committed_report, live, open_metadata, parse, say, set_quiet, ERA_LIVE_HINT_NO_SNAP,
};
use crate::era::repair::repair;

/// Read what can be read from damaged dm-era metadata and write it as fresh, clean
/// metadata with a rebuilt space map. Writesets and era-array entries are recovered
/// from every readable block; what is lost is filled in so that era_invalidate lists
/// too much rather than too little, and reported on stderr. The input is never
/// written.
#[derive(Parser, Debug)]
#[command(name = "era_repair", version)]
struct Args {
    /// The damaged metadata (device or image file); only read.
    #[arg(short, long, value_name = "DEV")]
    input: PathBuf,
    /// Where to write the repaired metadata (an existing file or device, not the input).
    #[arg(short, long, value_name = "DEV")]
    output: PathBuf,
    /// Print nothing at all, errors included; the exit status tells the outcome.
    #[arg(short, long)]
    quiet: bool,
    /// Read the device even while a target holds it (suspend the target first):
    /// without it, a metadata device in use is refused.
    #[arg(long = "allow-live")]
    allow_live: bool,
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
    let input = open_metadata(
        &a.input,
        "era_restore",
        live(a.allow_live, ERA_LIVE_HINT_NO_SNAP),
    )?;
    let output = open_output(&a.output, &a.input)?;
    let r = repair(&input, output.dev()).with_context(|| {
        format!(
            "repairing {} into {}",
            a.input.display(),
            a.output.display()
        )
    })?;
    output.commit()?;
    for n in &r.notes.skipped {
        say(&format!("era_repair: {}: lost: {n}", a.input.display()));
    }
    let h = r.restored.header;
    Ok(committed_report(
        "era_repair",
        &format!(
            "{}: repaired {} blocks of {} sectors, current era {}, {} writesets{}; metadata blocks {}/{} used",
            a.output.display(),
            h.nr_blocks,
            h.block_size,
            h.current_era,
            r.restored.writesets,
            if r.notes.skipped.is_empty() { ", nothing lost" } else { ", with losses over-reported (see above)" },
            r.summary.blocks_used,
            r.summary.nr_blocks
        ),
    ))
}
