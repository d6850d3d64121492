//! `clone_replay` and `era_replay`: run a dmtrace through the reference model of
//! the target's commit path and write the metadata image it leaves.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;

use super::util::{print_clap_error, same_file, say, set_quiet, AtomicFile, OutputError};
use crate::model::replay::replay;
use crate::trace::Target;

/// Exit status of a malformed trace or an event the kernel could not produce.
pub const EXIT_TRACE: i32 = 2;

/// Run a dmtrace event trace through the reference model of the kernel's
/// commit path, check its `expect` lines and write the metadata image it leaves.
#[derive(Parser, Debug)]
struct Args {
    /// The trace (dmtrace v1, REPLAY.md §2.2).
    trace: PathBuf,
    /// Write the metadata image the trace leaves to IMG (created or replaced,
    /// sized to the trace's meta_size).
    #[arg(short, long, value_name = "IMG")]
    output: Option<PathBuf>,
    /// Print nothing at all, errors included; the exit status is the verdict.
    #[arg(short, long)]
    quiet: bool,
    /// Also print the `status` lines the trace asked for.
    #[arg(long)]
    show_status: bool,
}

/// Runs the tool for `target` (`name` is the tool's name).
pub fn run(name: &'static str, target: Target, args: Vec<OsString>) -> anyhow::Result<i32> {
    let cmd = <Args as clap::CommandFactory>::command()
        .name(name)
        .version(env!("CARGO_PKG_VERSION"));
    let a: Args = match parse_with(cmd, args) {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    set_quiet(a.quiet);
    let text = match std::fs::read(&a.trace) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("{name}: {}: {e}", a.trace.display()));
            return Ok(EXIT_TRACE);
        }
    };
    let Ok(text) = String::from_utf8(text) else {
        say(&format!(
            "{name}: {}: the trace is not UTF-8 text",
            a.trace.display()
        ));
        return Ok(EXIT_TRACE);
    };
    let trace = match crate::trace::parse(&text) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("{name}: {}:{e}", a.trace.display()));
            return Ok(EXIT_TRACE);
        }
    };
    if trace.header.target != target {
        say(&format!(
            "{name}: {}: this is a {} trace; run it with {}",
            a.trace.display(),
            if trace.header.target == Target::Clone {
                "dm-clone"
            } else {
                "dm-era"
            },
            if trace.header.target == Target::Clone {
                "clone_replay"
            } else {
                "era_replay"
            }
        ));
        return Ok(EXIT_TRACE);
    }
    if let Some(out) = &a.output {
        if same_file(out, &a.trace) {
            say(&format!(
                "{name}: the output {} is the trace itself",
                out.display()
            ));
            return Ok(EXIT_TRACE);
        }
    }
    let outcome = match replay(&trace) {
        Ok(o) => o,
        Err(e) => {
            say(&format!("{name}: {}:{e}", a.trace.display()));
            return Ok(EXIT_TRACE);
        }
    };
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for x in &outcome.expects {
        if !x.ok {
            failed += 1;
        }
        if !a.quiet {
            writeln!(
                out,
                "{}:{}: expect {} [{}]: {}: {}",
                a.trace.display(),
                x.line,
                x.what,
                x.state,
                if x.ok { "ok" } else { "FAILED" },
                x.found
            )
            .map_err(OutputError::stdout)?;
        }
    }
    if a.show_status && !a.quiet {
        for (line, s) in &outcome.statuses {
            writeln!(out, "{}:{line}: status: {s}", a.trace.display())
                .map_err(OutputError::stdout)?;
        }
    }
    if let Some(path) = &a.output {
        write_image(path, &outcome.image).map_err(|e| OutputError::file(path, e))?;
    }
    if !a.quiet {
        writeln!(
            out,
            "{name}: {} statements, {} commits, {} expectations, {} failed",
            outcome.events,
            outcome.commits,
            outcome.expects.len(),
            failed
        )
        .and_then(|_| out.flush())
        .map_err(OutputError::stdout)?;
    }
    Ok(if failed > 0 { 1 } else { super::EXIT_OK })
}

fn parse_with(cmd: clap::Command, args: Vec<OsString>) -> Result<Args, i32> {
    use clap::FromArgMatches;
    cmd.try_get_matches_from(args)
        .and_then(|m| Args::from_arg_matches(&m))
        .map_err(print_clap_error)
}

/// Writes the image to a new file beside `path`, then renames it over `path`, so
/// a failed run never leaves a half-written image where a good one was.
fn write_image(path: &Path, img: &crate::sim::MetaImage) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    img.write_to(f.file())?;
    f.commit()
}
