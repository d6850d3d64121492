//! `era_dump`: era metadata as XML, compatible with thin-provisioning-tools.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use super::util::{dump_error, live, open_metadata, open_output, parse, say, ERA_LIVE_HINT};
use crate::era::{dump_as, DumpOptions};
use crate::format::DumpFormat;

/// Dump dm-era metadata as XML (the format of thin-provisioning-tools' era_dump),
/// including a committed current writeset left by a crash.
#[derive(Parser, Debug)]
#[command(name = "era_dump", version)]
struct Args {
    /// Metadata device or image file.
    input: PathBuf,
    /// Write the dump to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Fold the writesets into the era array: one era per block, the last one it was
    /// written in.
    #[arg(long)]
    logical: bool,
    /// Dump the metadata snapshot (taken with `dmsetup message DEV 0
    /// take_metadata_snap`) instead of the live superblock; usable while the target
    /// runs.
    #[arg(long = "metadata-snapshot")]
    metadata_snapshot: bool,
    /// Dump what can be read from damaged metadata: unreadable writeset bits are
    /// dumped as set and unreadable era-array entries as the current era, so that
    /// nothing written is lost; each such decision is reported on stderr.
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
        "era_restore",
        live(a.allow_live || a.metadata_snapshot, ERA_LIVE_HINT),
    )?;
    let mut out = open_output(a.output.as_deref(), &a.input)?;
    let notes = dump_as(
        &dev,
        out.writer(),
        DumpOptions {
            logical: a.logical,
            metadata_snapshot: a.metadata_snapshot,
            repair: a.repair,
        },
        a.format,
    )
    .map_err(|e| dump_error(e, &a.input, &out))?;
    out.finish()?;
    for n in &notes.skipped {
        say(&format!("era_dump: {}: skipped: {n}", a.input.display()));
    }
    Ok(super::EXIT_OK)
}
