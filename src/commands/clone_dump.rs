//! `clone_dump`: the committed hydration state as XML.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use super::util::{open_metadata, open_output, parse};
use crate::clone::dump;

/// Dump dm-clone metadata as XML: the superblock's geometry and the half-open,
/// sorted, maximal ranges of hydrated regions.
#[derive(Parser, Debug)]
#[command(name = "clone_dump", version)]
struct Args {
    /// Metadata device or image file.
    input: PathBuf,
    /// Write the XML to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Dump what can be read from damaged metadata; regions whose bits cannot be read
    /// are left out (shown as not hydrated) and listed on stderr.
    #[arg(long)]
    repair: bool,
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    let a: Args = match parse(args) {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let dev = open_metadata(&a.input, "clone_restore")?;
    let out = open_output(a.output.as_deref(), &a.input)?;
    let notes = dump(&dev, out, a.repair).with_context(|| format!("{}", a.input.display()))?;
    for f in &notes.findings {
        eprintln!("clone_dump: {f}");
    }
    for (b, e) in &notes.unreadable {
        eprintln!(
            "clone_dump: skipped: regions {b}..{e} are unreadable and dumped as not hydrated"
        );
    }
    Ok(super::EXIT_OK)
}
