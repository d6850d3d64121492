//! `era_check`: validate dm-era metadata.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::format::ReportFormat;

use super::util::{
    live, open_metadata, parse, report_check, report_check_json, set_quiet, spinner, ERA_LIVE_HINT,
};
use crate::era::{check, CheckOptions};

/// Check dm-era metadata: superblock, writesets, era array, metadata snapshot and
/// every space-map reference count. Exits 0 when clean, 1 when damaged or unreadable.
#[derive(Parser, Debug)]
#[command(name = "era_check", version)]
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
    /// Check the metadata snapshot (taken with `dmsetup message DEV 0
    /// take_metadata_snap`) and the trees it references instead of the live
    /// metadata; usable while the target runs.
    #[arg(short = 'm', long = "metadata-snapshot")]
    metadata_snapshot: bool,
    /// Block size of the table (sectors); a mismatch is an error.
    #[arg(long = "block-size", value_name = "SECTORS")]
    block_size: Option<u32>,
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
        "era_restore",
        live(a.allow_live || a.metadata_snapshot, ERA_LIVE_HINT),
    )?;
    let opts = CheckOptions {
        superblock_only: a.super_block_only,
        block_size: a.block_size,
        metadata_snapshot: a.metadata_snapshot,
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
        Some(sb) => {
            let eras = match (out.archived_eras.first(), out.archived_eras.last()) {
                (Some(lo), Some(hi)) if lo == hi => format!("archived era {lo}"),
                (Some(lo), Some(hi)) => format!("archived eras {lo}..{hi}"),
                _ => "no archived eras".to_string(),
            };
            let mut s = format!(
                "{}: era {} OK: block size {} sectors, {} blocks, current era {}",
                a.input.display(),
                match (a.metadata_snapshot, a.super_block_only) {
                    (true, true) => "metadata snapshot superblock",
                    (true, false) => "metadata snapshot",
                    (false, true) => "superblock",
                    (false, false) => "metadata",
                },
                sb.data_block_size,
                sb.nr_blocks,
                sb.current_era
            );
            if a.metadata_snapshot && !a.super_block_only {
                s += &format!(", {eras}");
            } else if !a.super_block_only {
                s += &format!(
                    ", {eras}{}{}; metadata blocks {}/{} used",
                    if sb.current_writeset.root != 0 {
                        ", a committed current writeset"
                    } else {
                        ""
                    },
                    if sb.metadata_snap != 0 {
                        format!(", metadata snapshot at block {}", sb.metadata_snap)
                    } else {
                        String::new()
                    },
                    out.space_map.used,
                    out.space_map.nr_blocks
                );
            }
            s
        }
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
