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
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<i32> {
    let a: Args = match parse(args) {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let dev = open_metadata(&a.input, "clone_restore")?;
    let out = open_output(a.output.as_deref(), &a.input)?;
    dump(&dev, out).with_context(|| format!("{}", a.input.display()))?;
    Ok(super::EXIT_OK)
}
