//! What clone_restore and era_restore share: opening the input and the output
//! safely, and progress on a terminal.

use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::Path;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::util::{check_input_path, same_file};
use crate::io::FileDevice;

/// Inputs at least this large get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

/// Opens the XML input; returns it buffered, with its size.
pub fn open_input(path: &Path) -> anyhow::Result<(BufReader<File>, u64)> {
    check_input_path(path, false)?;
    let f = File::open(path).with_context(|| format!("{}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("{}", path.display()))?;
    Ok((BufReader::with_capacity(1 << 16, f), meta.len()))
}

/// Opens the output for writing, exclusively: a block device with `O_EXCL` (so a
/// device in use by a table or a filesystem is refused), a regular file with an
/// exclusive lock. Refuses the input itself.
pub fn open_output(output: &Path, input: &Path) -> anyhow::Result<FileDevice> {
    if same_file(output, input) {
        bail!(
            "{}: the output is the input file; refusing to overwrite it",
            output.display()
        );
    }
    if !output.exists() {
        bail!(
            "{}: no such file or device (create the file first, e.g. with truncate -s 8M, or name a block device)",
            output.display()
        );
    }
    let dev = FileDevice::open_write(output).with_context(|| {
        format!(
            "{}: cannot open for writing exclusively (is it in use?)",
            output.display()
        )
    })?;
    if dev.file().metadata().map(|m| m.is_file()).unwrap_or(false) {
        if let Err(e) = dev.file().try_lock() {
            bail!(
                "{}: the file is locked by another process ({e}); refusing to write to it",
                output.display()
            );
        }
    }
    Ok(dev)
}

/// Runs `job` with a progress callback (bytes of input read) that drives a bar on a
/// terminal for long inputs, and clears the bar afterwards.
pub fn with_progress<T>(
    total_bytes: u64,
    quiet: bool,
    name: &'static str,
    job: impl FnOnce(&dyn Fn(u64)) -> T,
) -> T {
    let pb = progress_bar(total_bytes, quiet);
    if let Some(pb) = &pb {
        pb.set_message(name);
    }
    let cb = |n: u64| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    };
    let r = job(&cb);
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    r
}

/// A progress bar on stderr for long jobs on a terminal, else nothing.
fn progress_bar(total_bytes: u64, quiet: bool) -> Option<ProgressBar> {
    if quiet || total_bytes < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta} left)")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    Some(pb)
}
