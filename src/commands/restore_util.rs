//! What clone_restore and era_restore share: opening the input and the output
//! safely, and progress on a terminal.

use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::util::{check_input_path, same_file, AtomicFile, OutputError};
use crate::io::{is_block_device, FileDevice};
use crate::restore::RestoreError;

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

/// Where a restore or repair writes. A block device is written in place (the
/// restore invalidates its old superblock first, so a failure leaves no valid
/// metadata); a regular file is written as a new file of the same size beside it,
/// which replaces it only by [`RestoreOutput::commit`], so a failure (or a kill)
/// leaves the previous file as it was.
pub struct RestoreOutput {
    dev: FileDevice,
    /// The new file beside a regular-file output; `None` for a block device.
    file: Option<AtomicFile>,
    /// The regular-file output, open for writing and locked while it is replaced.
    _lock: Option<File>,
    path: PathBuf,
}

impl RestoreOutput {
    /// The device to write the metadata to.
    pub fn dev(&self) -> &FileDevice {
        &self.dev
    }

    /// Puts a regular file's new content in place of the old one (synced, then
    /// renamed over it); nothing to do for a block device.
    pub fn commit(self) -> Result<(), OutputError> {
        match self.file {
            None => Ok(()),
            Some(f) => f.commit().map_err(|e| OutputError::file(&self.path, e)),
        }
    }
}

/// Opens the output for writing, exclusively: a block device with `O_EXCL` (so a
/// device in use by a table or a filesystem is refused), a regular file with an
/// exclusive lock, written beside it (see [`RestoreOutput`]). Refuses the input
/// itself, and names a missing output or one of another kind with the phrases of
/// thin-provisioning-tools.
pub fn open_output(output: &Path, input: &Path) -> anyhow::Result<RestoreOutput> {
    if same_file(output, input) {
        bail!(
            "{}: the output is the input file; refusing to overwrite it",
            output.display()
        );
    }
    let meta = match std::fs::metadata(output) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{}: Couldn't find output file (no such file or device; create the file first, e.g. with truncate -s 8M, or name a block device)",
            output.display()
        ),
        Err(e) => return Err(anyhow::Error::new(e).context(output.display().to_string())),
        Ok(m) => m,
    };
    if is_block_device(&meta) {
        let dev = FileDevice::open_write(output).with_context(|| {
            format!(
                "{}: cannot open for writing exclusively (is it in use?)",
                output.display()
            )
        })?;
        return Ok(RestoreOutput {
            dev,
            file: None,
            _lock: None,
            path: output.to_path_buf(),
        });
    }
    if !meta.is_file() {
        bail!(
            "{}: Not a block device or regular file{}",
            output.display(),
            if meta.is_dir() {
                " (it is a directory)"
            } else {
                ""
            }
        );
    }
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(output)
        .with_context(|| format!("{}: cannot open for writing", output.display()))?;
    if let Err(e) = lock.try_lock() {
        bail!(
            "{}: the file is locked by another process ({e}); refusing to write to it",
            output.display()
        );
    }
    let mut file = AtomicFile::create(output).map_err(|e| OutputError::file(output, e))?;
    let dev = file
        .file()
        .set_len(meta.len())
        .and_then(|_| file.file().try_clone())
        .and_then(|f| FileDevice::from_file(f, output))
        .map_err(|e| OutputError::file(output, e))?;
    Ok(RestoreOutput {
        dev,
        file: Some(file),
        _lock: Some(lock),
        path: output.to_path_buf(),
    })
}

/// A restore's error, named after the file it belongs to: a problem of the XML as
/// `INPUT:LINE:COLUMN: what`, anything else (an output too small, a write failure)
/// as the output's.
pub fn restore_error(e: RestoreError, input: &Path, output: &Path) -> anyhow::Error {
    match e {
        RestoreError::Xml(x) => anyhow!("{}:{}:{}: {}", input.display(), x.line, x.column, x.msg),
        e => anyhow::Error::new(e).context(output.display().to_string()),
    }
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
