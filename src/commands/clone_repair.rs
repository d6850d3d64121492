//! `clone_repair`: salvage damaged dm-clone metadata into a fresh image.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use super::restore_util::open_output;
use super::util::{committed_report, live, open_metadata, parse, say, set_quiet, CLONE_LIVE_HINT};
use crate::clone::repair::{repair, LostRegions};

/// Read what can be read from damaged dm-clone metadata and write it as fresh, clean
/// metadata with a rebuilt space map. A region whose hydration state is unreadable
/// cannot be guessed; unless a policy is given the repair refuses and lists those
/// regions. The input is never written.
#[derive(Parser, Debug)]
#[command(name = "clone_repair", version)]
struct Args {
    /// The damaged metadata (device or image file); only read.
    #[arg(short, long, value_name = "DEV")]
    input: PathBuf,
    /// Where to write the repaired metadata (an existing file or device, not the input).
    #[arg(short, long, value_name = "DEV")]
    output: PathBuf,
    /// Take regions whose state is lost as hydrated: they are served from the
    /// destination. Only after verifying that the destination holds their data.
    #[arg(long = "assume-hydrated", conflicts_with = "assume_unhydrated")]
    assume_hydrated: bool,
    /// Take regions whose state is lost as not hydrated: they are read from the source
    /// and copied again, losing writes made to them since they were hydrated.
    #[arg(long = "assume-unhydrated")]
    assume_unhydrated: bool,
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
    let policy = if a.assume_hydrated {
        LostRegions::AssumeHydrated
    } else if a.assume_unhydrated {
        LostRegions::AssumeUnhydrated
    } else {
        LostRegions::Refuse
    };
    let input = open_metadata(
        &a.input,
        "clone_restore",
        live(a.allow_live, CLONE_LIVE_HINT),
    )?;
    let output = open_output(&a.output, &a.input)?;
    let r = repair(&input, output.dev(), policy).with_context(|| {
        format!(
            "repairing {} into {}",
            a.input.display(),
            a.output.display()
        )
    })?;
    output.commit()?;
    for f in &r.notes.findings {
        say(&format!("clone_repair: {}: {f}", a.input.display()));
    }
    {
        let lost: u64 = r.notes.unreadable.iter().map(|(b, e)| e - b).sum();
        for (b, e) in &r.notes.unreadable {
            say(&format!(
                "clone_repair: {}: lost: regions {b}..{e}, taken as {}",
                a.input.display(),
                if a.assume_hydrated {
                    "hydrated"
                } else {
                    "not hydrated"
                }
            ));
        }
        let h = r.header;
        Ok(committed_report(
            "clone_repair",
            &format!(
            "{}: repaired {} regions of {} sectors ({} with a lost state); metadata blocks {}/{} used",
            a.output.display(),
            h.nr_regions,
            h.region_size,
            lost,
            r.summary.blocks_used,
            r.summary.nr_blocks
        ),
        ))
    }
}
