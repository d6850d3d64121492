//! What the tools share: opening inputs with clear errors, outputs, argument
//! parsing, printing findings.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context};
use clap::Parser;

use crate::io::{FileDevice, BLOCK_SIZE};
use crate::report::{Report, Severity};

/// True when the error chain holds a broken pipe (`| head`): end quietly.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    // Library errors expose the io::Error as their source, so the chain holds it.
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Parses arguments; `--help` and `--version` print and give `Err(0)`, usage errors
/// print and give `Err(1)`.
pub fn parse<P: Parser>(args: Vec<OsString>) -> Result<P, i32> {
    P::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            super::EXIT_FAILURE
        } else {
            super::EXIT_OK
        }
    })
}

/// Opens a metadata image for reading, with one clear line for each way it can be
/// unusable: missing, unreadable, too small, or XML given where metadata belongs.
pub fn open_metadata(path: &Path, restore_tool: &str) -> anyhow::Result<FileDevice> {
    let dev = FileDevice::open_read(path).with_context(|| format!("{}", path.display()))?;
    check_input(&dev, restore_tool)?;
    Ok(dev)
}

/// Refuses an opened input that is XML or too small to hold a superblock.
pub fn check_input(dev: &FileDevice, restore_tool: &str) -> anyhow::Result<()> {
    let path = dev.path();
    let mut head = [0u8; 512];
    let n = read_up_to(dev.file(), &mut head).with_context(|| format!("{}", path.display()))?;
    if looks_like_xml(&head[..n]) {
        bail!(
            "{}: this looks like XML, not a metadata image (to turn XML into metadata use {restore_tool})",
            path.display()
        );
    }
    if dev.size_bytes() < BLOCK_SIZE as u64 {
        bail!(
            "{}: too small to hold metadata ({} bytes; the superblock alone needs {BLOCK_SIZE})",
            path.display(),
            dev.size_bytes()
        );
    }
    Ok(())
}

fn read_up_to(mut f: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(0))?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// True when `head` starts (after white space or a byte-order mark) with `<` followed
/// by a name or `?`/`!`: XML, not a superblock.
pub fn looks_like_xml(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut it = head.iter().skip_while(|c| c.is_ascii_whitespace());
    matches!(it.next(), Some(b'<'))
        && matches!(it.next(), Some(c) if c.is_ascii_alphabetic() || *c == b'?' || *c == b'!')
}

/// Opens the dump output: stdout, or `path` created/truncated. Refuses to overwrite
/// the input.
pub fn open_output(path: Option<&Path>, input: &Path) -> anyhow::Result<Box<dyn Write>> {
    match path {
        None => Ok(Box::new(io::stdout().lock())),
        Some(p) => {
            if same_file(p, input) {
                bail!(
                    "{}: the output is the input; refusing to overwrite it",
                    p.display()
                );
            }
            let f = File::create(p).with_context(|| format!("{}", p.display()))?;
            Ok(Box::new(f))
        }
    }
}

/// True when both paths name the same existing file or device.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            (x.dev() == y.dev() && x.ino() == y.ino())
                || (x.rdev() != 0 && x.rdev() == y.rdev() && x.file_type() == y.file_type())
        }
        _ => false,
    }
}

/// A spinner on stderr while a long job runs, when stderr is a terminal and the tool
/// is not quiet. Finish it with `finish_and_clear` before printing results.
pub fn spinner(quiet: bool, msg: String) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(pb)
}

/// Prints findings (one line each) and returns the exit status of a check.
pub fn report_check(
    report: &Report,
    quiet: bool,
    ignore_non_fatal: bool,
    summary: &str,
) -> io::Result<i32> {
    let mut out = io::stdout().lock();
    if !quiet {
        for f in report.findings() {
            writeln!(out, "{f}")?;
        }
    }
    let errors = report.count(Severity::Error);
    let warnings = report.count(Severity::Warning);
    let failed = errors > 0 || (warnings > 0 && !ignore_non_fatal);
    if !quiet {
        if failed {
            writeln!(
                out,
                "{errors} error(s), {warnings} warning(s){}",
                if errors == 0 {
                    " (non-fatal; --ignore-non-fatal-errors accepts them)"
                } else {
                    ""
                }
            )?;
        } else {
            writeln!(out, "{summary}")?;
        }
    }
    out.flush()?;
    Ok(if failed {
        super::EXIT_FAILURE
    } else {
        super::EXIT_OK
    })
}
