//! `clone_metadata_pack`, `era_metadata_pack` and their unpack tools: metadata
//! packs for bug reports, in thin-provisioning-tools' `thin_metadata_pack` format.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

use super::util::{
    check_input_path, live, open_metadata, open_output, out_line, parse_command, same_file, say,
    set_quiet, spinner, AtomicFile, OutputError, CLONE_LIVE_HINT, ERA_LIVE_HINT_NO_SNAP,
};
use crate::io::{FileDevice, BLOCK_SIZE};
use crate::pack::{self, PackError, Selection};
use crate::trace::Target;

/// Write the blocks of the metadata that matter into a compressed pack file, for a
/// bug report: the blocks in use when the metadata checks clean, every block that
/// is not all zeroes when it is damaged. The file format is thin_metadata_pack's.
#[derive(Parser, Debug)]
struct PackArgs {
    /// Metadata device or image file to pack; only read.
    #[arg(short, long, value_name = "DEV")]
    input: PathBuf,
    /// The pack file to write (replaced only when the pack is complete).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Print nothing at all, errors included; the exit status tells the outcome.
    #[arg(short, long)]
    quiet: bool,
    /// Pack every block that is not all zeroes, the old copies the kernel leaves in
    /// free space included, so that the image unpacks byte for byte.
    #[arg(long = "all-blocks")]
    all_blocks: bool,
    /// Read the device even while a target holds it (suspend the target first):
    /// without it, a metadata device in use is refused.
    #[arg(long = "allow-live")]
    allow_live: bool,
}

/// Write the metadata image a pack file holds: the original size, the packed blocks
/// in place, every other block zero. Reads packs written by the pack tool and by
/// thin_metadata_pack.
#[derive(Parser, Debug)]
struct UnpackArgs {
    /// The pack file to read.
    #[arg(short, long, value_name = "FILE")]
    input: PathBuf,
    /// The image file to write (created, or replaced once the whole pack is
    /// unpacked), or a block device of at least the image's size.
    #[arg(short, long, value_name = "DEV")]
    output: PathBuf,
    /// Print nothing at all, errors included; the exit status tells the outcome.
    #[arg(short, long)]
    quiet: bool,
}

fn pack_name(t: Target) -> &'static str {
    match t {
        Target::Clone => "clone_metadata_pack",
        Target::Era => "era_metadata_pack",
    }
}

fn unpack_name(t: Target) -> &'static str {
    match t {
        Target::Clone => "clone_metadata_unpack",
        Target::Era => "era_metadata_unpack",
    }
}

/// The command line of a pack tool.
pub fn pack_command(t: Target) -> clap::Command {
    let what = match t {
        Target::Clone => "dm-clone",
        Target::Era => "dm-era",
    };
    <PackArgs as clap::CommandFactory>::command()
        .name(pack_name(t))
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!(
            "Pack {what} metadata into a compressed file for a bug report"
        ))
}

/// The command line of an unpack tool.
pub fn unpack_command(t: Target) -> clap::Command {
    let what = match t {
        Target::Clone => "dm-clone",
        Target::Era => "dm-era",
    };
    <UnpackArgs as clap::CommandFactory>::command()
        .name(unpack_name(t))
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!("Unpack a pack of {what} metadata into an image"))
}

/// A pack tool.
pub fn run_pack(t: Target, args: Vec<OsString>) -> anyhow::Result<i32> {
    let name = pack_name(t);
    let a: PackArgs = match parse_command(pack_command(t), args) {
        Ok(a) => a,
        Err(c) => return Ok(c),
    };
    set_quiet(a.quiet);
    let (restore, hint) = match t {
        Target::Clone => ("clone_restore", CLONE_LIVE_HINT),
        Target::Era => ("era_restore", ERA_LIVE_HINT_NO_SNAP),
    };
    refuse_pack(&a.input, t)?;
    let dev = open_metadata(&a.input, restore, live(a.allow_live, hint))?;
    let mut out = open_output(Some(&a.output), &a.input)?;
    let pb = spinner(a.quiet, format!("{name}: packing {}", a.input.display()));
    let r = pack::pack(&dev, t, a.all_blocks, out.writer());
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let s = match r {
        Ok(s) => s,
        Err(PackError::Write(e)) => return Err(out.error(e).into()),
        Err(e) => return Err(anyhow::Error::new(e).context(a.input.display().to_string())),
    };
    out.finish()?;
    let input = a.input.display();
    if let Selection::Damaged { reason } = &s.selection {
        say(&format!(
            "{name}: {input}: the metadata is damaged ({reason}): every block that is not all zeroes is packed"
        ));
    }
    if !s.unreadable.is_empty() {
        let list: Vec<String> = s.unreadable.iter().take(20).map(u64::to_string).collect();
        say(&format!(
            "{name}: {input}: warning: {} blocks could not be read and are not in the pack: {}{}",
            s.unreadable.len(),
            list.join(", "),
            if s.unreadable.len() > 20 { ", ..." } else { "" }
        ));
    }
    let tail = dev.size_bytes() % BLOCK_SIZE as u64;
    if tail != 0 {
        say(&format!(
            "{name}: {input}: the last {tail} bytes, less than a block, are not in the pack"
        ));
    }
    let what = match s.selection {
        Selection::Used(_) => "the blocks in use",
        Selection::Everything | Selection::Damaged { .. } => "the non-zero blocks",
    };
    report(&format!(
        "{}: packed {} of {} blocks ({what}) into {} bytes",
        a.output.display(),
        s.packed,
        s.nr_blocks,
        s.bytes
    ))
}

/// Refuses a pack given where metadata belongs (a pack may be smaller than a block,
/// which the metadata checks would call too small).
fn refuse_pack(input: &std::path::Path, t: Target) -> anyhow::Result<()> {
    let mut head = [0u8; 8];
    let n = File::open(input)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    if pack::format::is_pack(&head[..n]) {
        bail!(
            "{}: this is a metadata pack, not metadata (unpack it with {})",
            input.display(),
            unpack_name(t)
        );
    }
    Ok(())
}

/// The last line of a tool whose output is complete: a failure to print it is not
/// a failure of the tool, whose output holds what it should.
fn report(line: &str) -> anyhow::Result<i32> {
    if let Err(e) = out_line(line) {
        if !e.is_broken_pipe() {
            say(&format!("{e}"));
        }
    }
    Ok(super::EXIT_OK)
}

/// An unpack tool.
pub fn run_unpack(t: Target, args: Vec<OsString>) -> anyhow::Result<i32> {
    let name = unpack_name(t);
    let a: UnpackArgs = match parse_command(unpack_command(t), args) {
        Ok(a) => a,
        Err(c) => return Ok(c),
    };
    set_quiet(a.quiet);
    let open_input = || -> anyhow::Result<BufReader<File>> {
        check_input_path(&a.input, false)?;
        let f = File::open(&a.input).with_context(|| a.input.display().to_string())?;
        Ok(BufReader::with_capacity(1 << 20, f))
    };
    let mut input = open_input()?;
    if same_file(&a.output, &a.input) {
        bail!(
            "{}: the output is the input; refusing to overwrite it",
            a.output.display()
        );
    }
    let err = |e: PackError| -> anyhow::Error {
        match e {
            PackError::Write(e) => OutputError::file(&a.output, e).into(),
            e => anyhow::Error::new(e).context(a.input.display().to_string()),
        }
    };
    let meta = std::fs::metadata(&a.output).ok();
    let s = if meta.as_ref().is_some_and(crate::io::is_block_device) {
        let dev = FileDevice::open_write(&a.output).with_context(|| {
            format!(
                "{}: cannot open for writing exclusively (is it in use?)",
                a.output.display()
            )
        })?;
        let mut reopen = || -> std::io::Result<Box<dyn Read>> {
            Ok(Box::new(BufReader::with_capacity(
                1 << 20,
                File::open(&a.input)?,
            )))
        };
        pack::unpack_to_device(&mut reopen, t, &dev).map_err(err)?
    } else {
        if meta.is_some_and(|m| !m.is_file()) {
            bail!(
                "{}: not a regular file or a block device; refusing to unpack onto it",
                a.output.display()
            );
        }
        let mut file =
            AtomicFile::create(&a.output).map_err(|e| OutputError::file(&a.output, e))?;
        let s = pack::unpack_to_file(&mut input, t, file.file()).map_err(err)?;
        file.commit().map_err(|e| OutputError::file(&a.output, e))?;
        s
    };
    if let Some(w) = s.warning(t) {
        say(&format!("{name}: {}: warning: {w}", a.input.display()));
    }
    report(&format!(
        "{}: unpacked {} of {} blocks ({} bytes)",
        a.output.display(),
        s.unpacked,
        s.nr_blocks,
        s.nr_blocks * BLOCK_SIZE as u64
    ))
}
