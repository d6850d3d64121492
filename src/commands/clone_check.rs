//! `clone_check`: validate dm-clone metadata.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::format::ReportFormat;

use super::util::{
    live, open_metadata, parse, report_check, report_check_json, set_quiet, spinner,
    CLONE_LIVE_HINT,
};
use crate::clone::{check, CheckOptions};

/// Check dm-clone metadata: superblock, region bitset and every space-map
/// reference count. Exits 0 when clean, 1 when damaged or unreadable.
#[derive(Parser, Debug)]
#[command(name = "clone_check", version)]
struct Args {
    /// Metadata device or image file.
    input: PathBuf,
    /// Print nothing at all, errors included; the exit status tells the outcome.
    #[arg(short, long)]
    quiet: bool,
    /// Check the superblock only.
    #[arg(long = "super-block-only")]
    super_block_only: bool,
    /// Exit 0 when only non-fatal problems (warnings, such as leaked blocks) are found.
    #[arg(long = "ignore-non-fatal-errors")]
    ignore_non_fatal_errors: bool,
    /// Region size of the table (sectors); a mismatch is an error.
    #[arg(long = "region-size", value_name = "SECTORS")]
    region_size: Option<u64>,
    /// Target length of the table (sectors); a mismatch is an error.
    #[arg(long = "target-size", value_name = "SECTORS")]
    target_size: Option<u64>,
    /// Output format: one line per finding and a summary on standard error (the
    /// default), or one JSON document on standard output with the verdict, every
    /// finding and the metadata's figures.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ReportFormat::Text)]
    format: ReportFormat,
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
    let dev = open_metadata(
        &a.input,
        "clone_restore",
        live(a.allow_live, CLONE_LIVE_HINT),
    )?;
    let opts = CheckOptions {
        superblock_only: a.super_block_only,
        region_size: a.region_size,
        target_size: a.target_size,
    };
    let pb = spinner(a.quiet, format!("checking {}", a.input.display()));
    let out = check(&dev, &opts);
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if a.format == ReportFormat::Json {
        return Ok(report_check_json(
            &out.report,
            a.quiet,
            a.ignore_non_fatal_errors,
            |w| out.write_json(w, &opts, a.ignore_non_fatal_errors),
        )?);
    }
    let summary = match &out.superblock {
        Some(sb) if a.super_block_only => format!(
            "{}: clone superblock OK: region size {} sectors, target size {} sectors, {} regions",
            a.input.display(),
            sb.region_size,
            sb.target_size,
            sb.nr_regions()
        ),
        Some(sb) => format!(
            "{}: clone metadata OK: region size {} sectors, target size {} sectors, {} regions, {} hydrated; metadata blocks {}/{} used",
            a.input.display(),
            sb.region_size,
            sb.target_size,
            sb.nr_regions(),
            out.hydrated,
            out.space_map.used,
            out.space_map.nr_blocks
        ),
        None => String::new(),
    };
    Ok(report_check(
        &out.report,
        &a.input,
        a.quiet,
        a.ignore_non_fatal_errors,
        &summary,
    )?)
}
