//! What the tools share: opening inputs with clear errors, outputs, argument
//! parsing, printing findings, and the rules every line a tool prints follows:
//!
//! * a failure to write the tool's own output (standard output, an `-o` file) is an
//!   [`OutputError`]: it is never blamed on the input, never panics, and never turns
//!   a failure into exit 0;
//! * `-q` silences everything, errors included ([`set_quiet`]);
//! * text that may hold bytes taken from the input is escaped ([`escape`]) before it
//!   reaches a terminal.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use clap::Parser;

use crate::io::{FileDevice, BLOCK_SIZE};
use crate::report::{Report, Severity};
use crate::xml_reader::looks_like_xml;

static QUIET: AtomicBool = AtomicBool::new(false);

/// Makes the tool print nothing at all from now on, errors included (`-q`).
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

/// True when the tool was asked to print nothing.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writing the tool's own output failed: standard output, or the file named by
/// `-o`. Not the input's fault; the tool exits 1 (a closed pipe silently).
#[derive(Debug)]
pub struct OutputError {
    /// `standard output`, or the output file.
    pub what: String,
    /// The failure.
    pub source: io::Error,
}

impl OutputError {
    /// An error writing standard output.
    pub fn stdout(source: io::Error) -> Self {
        OutputError {
            what: "standard output".to_string(),
            source,
        }
    }

    /// An error writing standard error (a checker's report).
    pub fn stderr(source: io::Error) -> Self {
        OutputError {
            what: "standard error".to_string(),
            source,
        }
    }

    /// An error writing the file `path`.
    pub fn file(path: &Path, source: io::Error) -> Self {
        OutputError {
            what: path.display().to_string(),
            source,
        }
    }

    /// True when the reader of a pipe went away (`| head`): nothing to say, but the
    /// output is incomplete and the tool fails.
    pub fn is_broken_pipe(&self) -> bool {
        self.source.kind() == io::ErrorKind::BrokenPipe
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.what, self.source)
    }
}

// The io::Error is part of the message, not a separate cause to print again.
impl std::error::Error for OutputError {}

/// True when the error chain holds a broken pipe on the tool's output.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<OutputError>()
            .is_some_and(OutputError::is_broken_pipe)
            || c.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The text of an error and its causes on one line, each cause once: a cause whose
/// text the line already holds (an `io::Error` a wrapper already printed) is left
/// out.
pub fn render(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for c in e.chain() {
        let t = c.to_string();
        if t.is_empty() || line.contains(&t) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&t);
    }
    line
}

/// Escapes what must not reach a terminal raw: control characters (C0 but tab and
/// newline, DEL, C1), so that escape sequences taken from an input are shown, not
/// obeyed. Printable text, including non-ASCII letters, is kept.
pub fn escape(s: &str) -> Cow<'_, str> {
    let bad = |c: char| (c.is_control() && c != '\n' && c != '\t') || c == '\u{fffd}';
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\u{fffd}' {
            out.push_str("\\ufffd");
        } else if bad(c) {
            let n = c as u32;
            if n < 0x100 {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes one line to standard error, escaped, unless quiet. Never panics: when
/// standard error itself cannot be written there is nowhere left to say so.
pub fn say(line: &str) {
    if quiet() {
        return;
    }
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{}", escape(line));
    let _ = e.flush();
}

/// Writes one line to standard output, escaped, unless quiet.
pub fn out_line(line: &str) -> Result<(), OutputError> {
    if quiet() {
        return Ok(());
    }
    let mut o = io::stdout().lock();
    writeln!(o, "{}", escape(line))
        .and_then(|_| o.flush())
        .map_err(OutputError::stdout)
}

/// Prints the report line of a restore or repair that has committed. Its exit status
/// stays 0 when the line cannot be written: the output holds the new metadata, which
/// is what the status tells; the failure is said on standard error if possible.
pub fn committed_report(tool: &str, line: &str) -> i32 {
    if let Err(e) = out_line(line) {
        if !e.is_broken_pipe() {
            say(&format!(
                "{tool}: the metadata was written and committed, but its report was not: {e}"
            ));
        }
    }
    super::EXIT_OK
}

/// Parses arguments; `--help` and `--version` print and give `Err(0)` (or `Err(1)`
/// when they cannot be printed), usage errors print and give `Err(1)`.
pub fn parse<P: Parser>(args: Vec<OsString>) -> Result<P, i32> {
    P::try_parse_from(args).map_err(print_clap_error)
}

/// Parses arguments with `cmd`, a tool's command line built from `P` under the
/// tool's own name (for tools that share their arguments), as [`parse`] does.
pub fn parse_command<P: Parser>(cmd: clap::Command, args: Vec<OsString>) -> Result<P, i32> {
    let m = cmd.try_get_matches_from(args).map_err(print_clap_error)?;
    <P as clap::FromArgMatches>::from_arg_matches(&m).map_err(print_clap_error)
}

/// Prints a clap outcome (help, version, usage error) and gives the exit status.
pub fn print_clap_error(e: clap::Error) -> i32 {
    // The version alone, as thin-provisioning-tools prints it.
    let text = if e.kind() == clap::error::ErrorKind::DisplayVersion {
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    } else {
        e.render().to_string()
    };
    let printed = if e.use_stderr() {
        let mut err = io::stderr().lock();
        write!(err, "{text}").and_then(|_| err.flush())
    } else {
        let mut out = io::stdout().lock();
        write!(out, "{text}").and_then(|_| out.flush())
    };
    if e.use_stderr() || printed.is_err() {
        super::EXIT_FAILURE
    } else {
        super::EXIT_OK
    }
}

/// How a tool may read metadata that a running target may be changing.
#[derive(Debug, Clone, Copy)]
pub enum Live {
    /// A block device held by someone else (a device-mapper table holds its
    /// metadata device exclusively) is refused; the text says what to do instead.
    Refuse(&'static str),
    /// Read it anyway: through a metadata snapshot, or on the user's explicit word.
    Allow,
}

/// What to do instead of reading live dm-era metadata.
pub const ERA_LIVE_HINT: &str = "take a metadata snapshot (dmsetup message <era device> 0 take_metadata_snap) and pass --metadata-snapshot, or suspend the target (dmsetup suspend <era device>) and pass --allow-live";
/// What to do instead of reading live dm-era metadata, for a tool that cannot read
/// a snapshot.
pub const ERA_LIVE_HINT_NO_SNAP: &str =
    "suspend the target (dmsetup suspend <era device>) and pass --allow-live, or remove it first";
/// What to do instead of reading live dm-clone metadata.
pub const CLONE_LIVE_HINT: &str =
    "suspend the target (dmsetup suspend <clone device>) and pass --allow-live, or remove it first";

/// The choice of [`Live`] for a tool's flags: a snapshot or `--allow-live` allows.
pub fn live(allowed: bool, hint: &'static str) -> Live {
    if allowed {
        Live::Allow
    } else {
        Live::Refuse(hint)
    }
}

/// Opens a metadata image for reading, with one clear line for each way it can be
/// unusable: missing, unreadable, in use by a running target (unless `live`
/// allows), too small, or XML given where metadata belongs.
pub fn open_metadata(path: &Path, restore_tool: &str, live: Live) -> anyhow::Result<FileDevice> {
    check_input_path(path, true)?;
    let dev = match live {
        Live::Allow => FileDevice::open_read(path),
        Live::Refuse(_) => FileDevice::open_read_exclusive(path),
    };
    let dev = match (dev, live) {
        (Err(e), Live::Refuse(hint)) if e.raw_os_error() == Some(libc::EBUSY) => bail!(
            "{}: the device is in use (by a running target?): its metadata may change while it is read; {hint}",
            path.display()
        ),
        (r, _) => r.with_context(|| format!("{}", path.display()))?,
    };
    check_input(&dev, restore_tool)?;
    Ok(dev)
}

/// Refuses an input that does not exist or cannot hold metadata (a directory; for
/// a metadata input, anything but a regular file or a block device), with the key
/// phrases of thin-provisioning-tools ("Couldn't find input file", "Not a block
/// device or regular file") and the cause.
pub fn check_input_path(path: &Path, metadata: bool) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{}: Couldn't find input file (No such file or directory)",
            path.display()
        ),
        Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
        Ok(m) if m.is_dir() => bail!(
            "{}: Not a block device or regular file (it is a directory)",
            path.display()
        ),
        Ok(m) if metadata && !m.is_file() && !crate::io::is_block_device(&m) => {
            bail!("{}: Not a block device or regular file", path.display())
        }
        Ok(_) => Ok(()),
    }
}

/// Refuses an opened input that is XML or too small to hold a superblock.
pub fn check_input(dev: &FileDevice, restore_tool: &str) -> anyhow::Result<()> {
    let path = dev.path();
    let mut head = [0u8; 512];
    let n = read_up_to(dev.file(), &mut head).with_context(|| format!("{}", path.display()))?;
    if looks_like_xml(&head[..n]) {
        bail!(
            "{}: This looks like XML.  This tool only supports the binary metadata format. (To turn XML into metadata use {restore_tool}.)",
            path.display()
        );
    }
    if dev.size_bytes() < BLOCK_SIZE as u64 {
        bail!(
            "{}: Metadata device/file too small.  Is this binary metadata? ({} bytes; the superblock alone needs {BLOCK_SIZE})",
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

/// A file written in full or not at all: the bytes go to a new file beside it,
/// which replaces it by a rename only once everything is written and synced. A run
/// that fails (or is killed) leaves the previous file as it was. A path that exists
/// and is not a regular file (`/dev/null`, a pipe, a terminal) is written directly.
pub struct AtomicFile {
    file: File,
    /// The temporary file; `None` when writing directly.
    tmp: Option<std::path::PathBuf>,
    path: std::path::PathBuf,
}

impl AtomicFile {
    /// Starts writing `path`. A symbolic link is followed: the file it names is
    /// the one replaced, and the link stays.
    pub fn create(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let resolved;
        let path = if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            resolved = std::fs::canonicalize(path)?;
            resolved.as_path()
        } else {
            path
        };
        let existing = std::fs::metadata(path).ok();
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            return Ok(AtomicFile {
                file,
                tmp: None,
                path: path.to_path_buf(),
            });
        }
        let base = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let tmp = dir_of(path).join(format!(
            ".{}.{}.tmp",
            base.to_string_lossy(),
            std::process::id()
        ));
        // Readable too: a restore reads back blocks it has written.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Some(m) = existing {
            // The replacement keeps the owner (when allowed: as root) and the mode.
            let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
            let _ = file.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777));
        }
        Ok(AtomicFile {
            file,
            tmp: Some(tmp),
            path: path.to_path_buf(),
        })
    }

    /// The file being written.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the new file and puts it in place of the old one.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        let r = self
            .file
            .sync_all()
            .and_then(|_| std::fs::rename(&tmp, &self.path));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r?;
        if let Ok(d) = File::open(dir_of(&self.path)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

enum Sink {
    Stdout(io::StdoutLock<'static>),
    File(io::BufWriter<AtomicFile>),
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Where a dump goes: standard output, or the file `-o` names (replaced only when
/// the dump succeeds, see [`AtomicFile`]).
pub struct Output {
    sink: Sink,
    what: Option<std::path::PathBuf>,
}

impl Output {
    /// The writer.
    pub fn writer(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(o) => o,
            Sink::File(f) => f,
        }
    }

    /// The error for a failure to write this output.
    pub fn error(&self, e: io::Error) -> OutputError {
        match &self.what {
            None => OutputError::stdout(e),
            Some(p) => OutputError::file(p, e),
        }
    }

    /// Flushes the output; a file is put in place.
    pub fn finish(self) -> Result<(), OutputError> {
        let what = self.what;
        let err = |e| match &what {
            None => OutputError::stdout(e),
            Some(p) => OutputError::file(p, e),
        };
        match self.sink {
            Sink::Stdout(mut o) => o.flush().map_err(err),
            Sink::File(f) => f
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(AtomicFile::commit)
                .map_err(err),
        }
    }
}

/// Turns a dump's error into the tool's: damage is the input's (named), a write
/// failure the output's.
pub fn dump_error(e: crate::report::DumpError, input: &Path, out: &Output) -> anyhow::Error {
    match e {
        crate::report::DumpError::Io(e) => out.error(e).into(),
        e => anyhow::Error::new(e).context(input.display().to_string()),
    }
}

/// Opens the dump output: stdout, or `path` (written beside and renamed over it on
/// success). Refuses to overwrite the input.
pub fn open_output(path: Option<&Path>, input: &Path) -> anyhow::Result<Output> {
    match path {
        None => Ok(Output {
            sink: Sink::Stdout(io::stdout().lock()),
            what: None,
        }),
        Some(p) => {
            if same_file(p, input) {
                bail!(
                    "{}: the output is the input; refusing to overwrite it",
                    p.display()
                );
            }
            let f = AtomicFile::create(p).map_err(|e| OutputError::file(p, e))?;
            Ok(Output {
                sink: Sink::File(io::BufWriter::with_capacity(1 << 16, f)),
                what: Some(p.to_path_buf()),
            })
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

/// Writes a check's JSON document (unless quiet) with `write` and returns the exit
/// status of the check: as [`report_check`], the verdict survives an output failure.
pub fn report_check_json(
    report: &Report,
    quiet: bool,
    ignore_non_fatal: bool,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<i32, OutputError> {
    if !quiet {
        write(&mut io::stdout().lock()).map_err(OutputError::stdout)?;
    }
    Ok(if report.passes(ignore_non_fatal) {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}

/// Prints findings (one line each, naming the input) and the verdict's summary on
/// standard error, as thin-provisioning-tools' checkers do (standard output is
/// left to `--format json`), and returns the exit status of the check. The verdict
/// survives an output failure: a report that cannot be written makes the tool exit
/// 1, even for clean metadata.
pub fn report_check(
    report: &Report,
    input: &Path,
    quiet: bool,
    ignore_non_fatal: bool,
    summary: &str,
) -> Result<i32, OutputError> {
    let errors = report.count(Severity::Error);
    let warnings = report.count(Severity::Warning);
    let failed = !report.passes(ignore_non_fatal);
    if !quiet {
        let input = input.display();
        let mut err = io::stderr().lock();
        let mut w = || -> io::Result<()> {
            for f in report.findings() {
                writeln!(err, "{}", escape(&format!("{input}: {f}")))?;
            }
            if failed {
                writeln!(
                    err,
                    "{}",
                    escape(&format!(
                        "{input}: {errors} error(s), {warnings} warning(s){}",
                        if errors == 0 {
                            " (non-fatal; --ignore-non-fatal-errors accepts them)"
                        } else {
                            ""
                        }
                    ))
                )?;
            } else {
                writeln!(err, "{}", escape(summary))?;
            }
            err.flush()
        };
        w().map_err(OutputError::stderr)?;
    }
    Ok(if failed {
        super::EXIT_FAILURE
    } else {
        super::EXIT_OK
    })
}
