//! `era_metadata_size`: the metadata device size a dm-era target needs.

use std::ffi::OsString;

use clap::Parser;

use super::size_util::{print, size_arg, OutputArgs};
use super::util::parse;
use crate::sizing::{check_era_blocks, era_metadata_blocks, era_nr_blocks};

/// Print the size of the metadata device a dm-era target needs: its era array,
/// the current writeset and the archived ones waiting to be digested, a metadata
/// snapshot's copies of them, the space map, and the room the kernel's
/// copy-on-write commit needs to rewrite the whole era array at once. era_restore
/// and era_repair refuse an output smaller than this. Sizes take a unit suffix
/// (64k, 1t, 1TiB, 1T = 10^12 bytes); without one they are in 512-byte sectors.
#[derive(Parser, Debug)]
#[command(name = "era_metadata_size", version)]
#[command(group(clap::ArgGroup::new("geometry").required(true).args(["device_size", "nr_blocks"])))]
struct Args {
    /// Size of the era target (the origin device).
    #[arg(short = 's', long = "device-size", value_name = "SIZE", value_parser = size_arg, requires = "block_size")]
    device_size: Option<u64>,
    /// Block size of the table (a multiple of 8 sectors = 4 KiB).
    #[arg(short, long = "block-size", value_name = "SIZE", value_parser = size_arg, requires = "device_size")]
    block_size: Option<u64>,
    /// Number of origin blocks, instead of --device-size and --block-size.
    #[arg(long = "nr-blocks", value_name = "NUM", conflicts_with_all = ["device_size", "block_size"])]
    nr_blocks: Option<u64>,
    /// Archived writesets that may wait to be digested at the same time (each
    /// checkpoint archives one; the kernel digests them one after the other in
    /// the background).
    #[arg(short, long, value_name = "NUM", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    writesets: u64,
    #[command(flatten)]
    out: OutputArgs,
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
    let nr_blocks = match (a.nr_blocks, a.device_size, a.block_size) {
        (Some(n), _, _) => check_era_blocks(n)?,
        (None, Some(dev), Some(bs)) => era_nr_blocks(dev, bs)?,
        _ => anyhow::bail!("give --device-size and --block-size, or --nr-blocks"),
    };
    print(
        &era_metadata_blocks(nr_blocks, a.writesets),
        &a.out,
        "use a larger block size or allow fewer writesets",
    )
}
