//! What clone_metadata_size and era_metadata_size share: sizes with units on the
//! command line, the output options, and printing the figure.

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::util::out_line;
use crate::io::BLOCK_SIZE;
use crate::pdata::space_map::MAX_METADATA_BLOCKS;
use crate::sizing::render::{render, Form};
use crate::sizing::units::{parse_size, Unit};
use crate::sizing::Sizing;

/// A size argument: `NUMBER[UNIT]`, sectors without a unit.
pub fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s, Unit::Sector)
}

/// The `--unit` argument.
pub fn unit_arg(s: &str) -> Result<Unit, String> {
    s.parse()
}

/// `--numeric-only`'s optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NumericForm {
    /// The number and the unit's letter (`64.68m`).
    Short,
    /// The number and the unit's long name (`64.68mebibytes`).
    Long,
}

/// The output options both tools take.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Print the size in UNIT: b (bytes), s (sectors), k, m, g, t, p, e (KiB,
    /// MiB, ... binary), K, M, G, T, P, E (kB, MB, ... decimal), or a long name
    /// (kibibyte, megabyte, ...). A size that is not a whole number of UNIT is
    /// rounded up to two decimals.
    #[arg(short, long, value_name = "UNIT", default_value = "sector", value_parser = unit_arg)]
    unit: Unit,
    /// Print the number alone; `=short` appends the unit's letter, `=long` its
    /// name.
    #[arg(
        short = 'n',
        long = "numeric-only",
        value_name = "FORM",
        num_args = 0..=1,
        require_equals = true
    )]
    numeric_only: Option<Option<NumericForm>>,
    /// Also print the figure in 4096-byte metadata blocks and its parts.
    #[arg(short, long)]
    verbose: bool,
}

/// Prints `sizing` as `out` asks, or fails when the kernel cannot address it.
pub fn print(sizing: &Sizing, out: &OutputArgs, hint: &str) -> anyhow::Result<i32> {
    if !sizing.addressable() {
        bail!(
            "the worst case needs {} metadata blocks ({} bytes), more than the {MAX_METADATA_BLOCKS} blocks ({} bytes) the kernel's metadata space map addresses; {hint}",
            sizing.blocks,
            sizing.blocks * BLOCK_SIZE as u64,
            MAX_METADATA_BLOCKS * BLOCK_SIZE as u64
        );
    }
    let form = match out.numeric_only {
        None => Form::Full,
        Some(None) => Form::Numeric,
        Some(Some(NumericForm::Short)) => Form::Short,
        Some(Some(NumericForm::Long)) => Form::Long,
    };
    for line in render(sizing, out.unit, form, out.verbose).lines() {
        out_line(line)?;
    }
    Ok(super::EXIT_OK)
}
