//! `clone_verify_log` and `era_verify_log`: verify a real kernel from the
//! dm-log-writes logs of its devices.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser};

use super::util::{parse_command, say, set_quiet, OutputError};
use crate::crash::Options;
use crate::logwrites::{Log, LogSource};
use crate::verify::log::{self as vlog, data::Image, LogViolation, Summary, Target, VerifyError};

/// Exit status of an unreadable log or input.
pub const EXIT_UNREADABLE: i32 = 2;

/// Options both tools share.
#[derive(Args, Debug)]
struct Common {
    /// What to verify: `meta` (the metadata log alone: every durable point and
    /// the crash states of the epoch before it), `crash` (a capture cut by a
    /// power failure: every log replayed whole), `conformance` (the reference
    /// model replays the user log; its committed images are compared with the
    /// kernel's).
    #[arg(long, value_name = "MODE", value_parser = ["meta", "crash", "conformance"])]
    mode: String,
    /// The dm-log-writes log of the metadata device.
    #[arg(long, value_name = "FILE")]
    meta_log: PathBuf,
    /// The metadata device's content when logging began (default: zeroes).
    #[arg(long, value_name = "IMG")]
    meta_base: Option<PathBuf>,
    /// The dm-log-writes log of a log-writes device on top of the target (the
    /// user's I/O).
    #[arg(long, value_name = "FILE")]
    user_log: Option<PathBuf>,
    /// Crash-state tiers per epoch in `meta` mode: 0 (durable, all landed,
    /// newest superblock only), 1 (+ drop-one/keep-one), 2 (+ subsets), 3 (+
    /// torn block writes).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    tier: u8,
    /// Random subsets tried by tier 2 when more than 12 writes are pending.
    #[arg(long, value_name = "N", default_value_t = 64)]
    samples: usize,
    /// Seed of those samples.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// The reference model's variant in `conformance` mode: fixed, or the
    /// kernel bug the captured kernel has (e.g. discard-first-block-only for
    /// dm-era on 6.1).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "fixed",
        value_parser = clap::builder::PossibleValuesParser::new(
            crate::trace::Variant::ALL.iter().map(|(_, n)| *n)
        )
    )]
    variant: String,
    /// Print nothing at all, errors included; the exit status is the verdict.
    #[arg(short, long)]
    quiet: bool,
}

/// Verify dm-clone's kernel from dm-log-writes logs of its devices.
#[derive(Parser, Debug)]
struct CloneArgs {
    #[command(flatten)]
    common: Common,
    /// The dm-log-writes log of the destination device (crash mode).
    #[arg(long, value_name = "FILE", requires = "source")]
    dest_log: Option<PathBuf>,
    /// The source device's content (crash mode).
    #[arg(long, value_name = "IMG", requires = "dest_log")]
    source: Option<PathBuf>,
}

/// Verify dm-era's kernel from dm-log-writes logs of its devices.
#[derive(Parser, Debug)]
struct EraArgs {
    #[command(flatten)]
    common: Common,
    /// The dm-log-writes log of the origin device (crash mode).
    #[arg(long, value_name = "FILE", requires = "origin")]
    origin_log: Option<PathBuf>,
    /// The origin device's content when logging began (crash mode).
    #[arg(long, value_name = "IMG", requires = "origin_log")]
    origin: Option<PathBuf>,
}

fn command<P: Parser>(name: &'static str) -> clap::Command {
    P::command().name(name).version(env!("CARGO_PKG_VERSION"))
}

/// The command line of `clone_verify_log`.
pub fn clone_command() -> clap::Command {
    command::<CloneArgs>("clone_verify_log")
}

/// The command line of `era_verify_log`.
pub fn era_command() -> clap::Command {
    command::<EraArgs>("era_verify_log")
}

/// `clone_verify_log`.
pub fn run_clone(args: Vec<OsString>) -> anyhow::Result<i32> {
    let name = "clone_verify_log";
    let a: CloneArgs = match parse_command(clone_command(), args) {
        Ok(a) => a,
        Err(c) => return Ok(c),
    };
    let data = a.dest_log.zip(a.source);
    run(name, Target::Clone, &a.common, data)
}

/// `era_verify_log`.
pub fn run_era(args: Vec<OsString>) -> anyhow::Result<i32> {
    let name = "era_verify_log";
    let a: EraArgs = match parse_command(era_command(), args) {
        Ok(a) => a,
        Err(c) => return Ok(c),
    };
    let data = a.origin_log.zip(a.origin);
    run(name, Target::Era, &a.common, data)
}

/// A log file whose reads move a progress bar (when there is one): the
/// offset read last, over the file's size. The log's index is read first from
/// start to end, then the verification reads the entries in order.
struct Watched {
    file: File,
    bar: Option<indicatif::ProgressBar>,
}

impl LogSource for Watched {
    fn size(&self) -> std::io::Result<u64> {
        self.file.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        if let Some(b) = &self.bar {
            b.set_position(off + buf.len() as u64);
        }
        LogSource::read_exact_at(&self.file, buf, off)
    }
}

/// The progress bars of a run's logs, on standard error when that is a
/// terminal and the run is not quiet.
struct Bars(Option<indicatif::MultiProgress>);

impl Bars {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        Bars((!quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new))
    }

    fn open_log(&self, path: &Path) -> Result<Log<Watched>, VerifyError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| VerifyError::Input(format!("{name}: {e}")))?;
        let bar = match &self.0 {
            Some(m) => {
                let len = file.size().unwrap_or(0);
                let b = m.add(indicatif::ProgressBar::new(len));
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix}: {msg} {bytes}/{total_bytes} ({elapsed})",
                ) {
                    b.set_style(style);
                }
                let file_name = path.file_name().unwrap_or(path.as_os_str());
                b.set_prefix(file_name.to_string_lossy().into_owned());
                b.set_message("indexing");
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                Some(b)
            }
            None => None,
        };
        let log = Log::open(Watched {
            file,
            bar: bar.clone(),
        })
        .map_err(vlog::log_err(&name))?;
        if let Some(b) = bar {
            b.set_position(0);
            b.set_message("verifying");
        }
        Ok(log)
    }

    fn clear(&self) {
        if let Some(m) = &self.0 {
            let _ = m.clear();
        }
    }
}

fn run(
    name: &str,
    target: Target,
    c: &Common,
    data: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<i32> {
    set_quiet(c.quiet);
    let mut out = std::io::stdout().lock();
    let mut failed: Option<std::io::Error> = None;
    let mut print = |v: LogViolation| {
        if !c.quiet && failed.is_none() {
            if let Err(e) = writeln!(out, "{name}: {v}") {
                failed = Some(e);
            }
        }
    };
    let bars = Bars::new(c.quiet);
    let result = verify(name, target, c, data, &bars, &mut print);
    bars.clear();
    if let Some(e) = failed {
        return Err(OutputError::stdout(e).into());
    }
    let sum = match result {
        Ok(s) => s,
        Err(e) => {
            say(&format!("{name}: {e}"));
            return Ok(EXIT_UNREADABLE);
        }
    };
    for w in &sum.warnings {
        say(&format!("{name}: warning: {w}"));
    }
    if !c.quiet {
        writeln!(out, "{name}: {} mode: {sum}", c.mode).map_err(OutputError::stdout)?;
        out.flush().map_err(OutputError::stdout)?;
    }
    Ok(if sum.violations > 0 {
        1
    } else {
        super::EXIT_OK
    })
}

fn verify(
    name: &str,
    target: Target,
    c: &Common,
    data: Option<(PathBuf, PathBuf)>,
    bars: &Bars,
    out: &mut dyn FnMut(LogViolation),
) -> Result<Summary, VerifyError> {
    let meta = bars.open_log(&c.meta_log)?;
    let (base_blocks, base) = match &c.meta_base {
        Some(p) => {
            let (n, m) = vlog::read_base(p)?;
            (Some(n), m)
        }
        None => (None, Default::default()),
    };
    let nr = vlog::meta_nr_blocks(&meta, base_blocks);
    vlog::check_meta_log(&meta, nr, &c.meta_log.display().to_string())?;
    let opts = Options {
        tier: c.tier,
        samples: c.samples,
        seed: c.seed,
        atomic_unit: meta.sector_size as usize,
    };
    let user = c
        .user_log
        .as_deref()
        .map(|p| bars.open_log(p))
        .transpose()?;
    match c.mode.as_str() {
        "meta" => vlog::meta::verify(target, &meta, nr, base, opts, out),
        "crash" => {
            let (dlog, img) = data.ok_or_else(|| {
                VerifyError::Input(format!(
                    "{name}: crash mode needs {}",
                    match target {
                        Target::Clone => "--dest-log FILE --source IMG",
                        Target::Era => "--origin-log FILE --origin IMG",
                    }
                ))
            })?;
            let dlog = bars.open_log(&dlog)?;
            let img = Image::open(&img)?;
            let st = vlog::MetaState::new(nr, base);
            vlog::crash::verify(
                target,
                vlog::crash::CrashInputs {
                    meta: (&meta, st),
                    data: &dlog,
                    image: &img,
                    user: user.as_ref(),
                },
                out,
            )
        }
        _ => {
            let user = user.ok_or_else(|| {
                VerifyError::Input(format!("{name}: conformance mode needs --user-log FILE"))
            })?;
            // clap admits only the names of `Variant::ALL`.
            let variant = crate::trace::Variant::from_name(&c.variant).unwrap_or_default();
            let st = vlog::MetaState::new(nr, base);
            vlog::conformance::verify(target, &meta, st, &user, variant, out)
        }
    }
}
