//! `clone_metadata_size`: the metadata device size a dm-clone target needs.

use std::ffi::OsString;

use clap::Parser;

use super::size_util::{print, size_arg, OutputArgs};
use super::util::parse;
use crate::sizing::{check_clone_regions, clone_metadata_blocks, clone_nr_regions};

/// Print the size of the metadata device a dm-clone target needs: its region
/// bitset and space map as the kernel lays them out, and the room the kernel's
/// copy-on-write commit needs to rewrite all of them at once. clone_restore and
/// clone_repair refuse an output smaller than this. Sizes take a unit suffix
/// (64k, 1t, 1TiB, 1T = 10^12 bytes); without one they are in 512-byte sectors.
#[derive(Parser, Debug)]
#[command(name = "clone_metadata_size", version)]
#[command(group(clap::ArgGroup::new("geometry").required(true).args(["device_size", "nr_regions"])))]
struct Args {
    /// Size of the clone target (the source device).
    #[arg(short = 's', long = "device-size", value_name = "SIZE", value_parser = size_arg, requires = "region_size")]
    device_size: Option<u64>,
    /// Region size of the table (a power of two from 8 sectors = 4 KiB to 1 GiB).
    #[arg(short, long = "region-size", value_name = "SIZE", value_parser = size_arg, requires = "device_size")]
    region_size: Option<u64>,
    /// Number of regions, instead of --device-size and --region-size.
    #[arg(long = "nr-regions", value_name = "NUM", conflicts_with_all = ["device_size", "region_size"])]
    nr_regions: Option<u64>,
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
    let nr_regions = match (a.nr_regions, a.device_size, a.region_size) {
        (Some(n), _, _) => check_clone_regions(n)?,
        (None, Some(dev), Some(rs)) => clone_nr_regions(dev, rs)?,
        _ => anyhow::bail!("give --device-size and --region-size, or --nr-regions"),
    };
    print(
        &clone_metadata_blocks(nr_regions),
        &a.out,
        "use a larger region size",
    )
}
