//! `clone_dump`: the committed hydration state as XML.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use super::util::{dump_error, live, open_metadata, open_output, parse, say, CLONE_LIVE_HINT};
use crate::clone::dump_as;
use crate::format::DumpFormat;

/// Dump dm-clone metadata as XML: the superblock's geometry and the half-open,
/// sorted, maximal ranges of hydrated regions.
#[derive(Parser, Debug)]
#[command(name = "clone_dump", version)]
struct Args {
    /// Metadata device or image file.
    input: PathBuf,
    /// Write the dump to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Dump what can be read from damaged metadata; regions whose bits cannot be read
    /// are left out (shown as not hydrated) and listed on stderr.
    #[arg(short, long)]
    repair: bool,
    /// Output format: the XML (the default), the same content as JSON, or a summary
    /// for people (geometry, counts, metadata space).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = DumpFormat::Xml)]
    format: DumpFormat,
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
    let dev = open_metadata(
        &a.input,
        "clone_restore",
        live(a.allow_live, CLONE_LIVE_HINT),
    )?;
    let mut out = open_output(a.output.as_deref(), &a.input)?;
    let notes = dump_as(&dev, out.writer(), a.repair, a.format)
        .map_err(|e| dump_error(e, &a.input, &out))?;
    out.finish()?;
    for f in &notes.findings {
        say(&format!("clone_dump: {}: {f}", a.input.display()));
    }
    for (b, e) in &notes.unreadable {
        say(&format!(
            "clone_dump: {}: skipped: regions {b}..{e} are unreadable and dumped as not hydrated",
            a.input.display()
        ));
    }
    Ok(super::EXIT_OK)
}
