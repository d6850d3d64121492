//! `era_invalidate`: list the origin blocks written since an era.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use super::util::{live, open_metadata, open_output, parse, say, ERA_LIVE_HINT};
use crate::era::invalidate::{invalidate, invalidate_list, InvalidateOptions};
use crate::format::ListFormat;

/// List the origin blocks of a dm-era device written in a given era or later, as the
/// <blocks> XML of thin-provisioning-tools 1.3.3. Blocks recorded only in the
/// committed current writeset (after a crash) are included. Damage is never a reason
/// to list fewer blocks: what cannot be read is listed, and said on stderr.
#[derive(Parser, Debug)]
#[command(name = "era_invalidate", version)]
struct Args {
    /// Metadata device or image file.
    input: PathBuf,
    /// List blocks whose last write happened in this era or later.
    #[arg(long = "written-since", value_name = "ERA")]
    written_since: u32,
    /// Read the metadata snapshot (taken with `dmsetup message DEV 0
    /// take_metadata_snap`) instead of the live superblock; required while the target
    /// is running.
    #[arg(long = "metadata-snapshot")]
    metadata_snapshot: bool,
    /// Write the list to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Output format: the <blocks> XML (the default), or the same list as a JSON
    /// document with the damage found.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ListFormat::Xml)]
    format: ListFormat,
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
    let opts = InvalidateOptions {
        written_since: a.written_since,
        metadata_snapshot: a.metadata_snapshot,
    };
    // The XML is the list alone, read no further than it needs; the JSON also
    // reports the damage, so it walks everything.
    let inv = match a.format {
        ListFormat::Xml => invalidate_list(&dev, opts),
        ListFormat::Json => invalidate(&dev, opts),
    }
    .with_context(|| format!("{}", a.input.display()))?;
    for f in &inv.findings {
        say(&format!("era_invalidate: {}: {f}", a.input.display()));
    }
    for r in &inv.over_reported {
        say(&format!(
            "era_invalidate: {}: over-reporting: {r}",
            a.input.display()
        ));
    }
    let mut out = open_output(a.output.as_deref(), &a.input)?;
    let written = match a.format {
        ListFormat::Xml => inv.write_xml(out.writer()).map(drop),
        ListFormat::Json => inv.write_json(out.writer(), opts).map(drop),
    };
    if let Err(e) = written {
        return Err(out.error(e).into());
    }
    out.finish()?;
    Ok(super::EXIT_OK)
}
