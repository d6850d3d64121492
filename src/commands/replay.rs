//! `clone_replay` and `era_replay`: run a dmtrace through the reference model of
//! the target's commit path and write the metadata image it leaves.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;

use super::util::{print_clap_error, same_file, say, set_quiet, AtomicFile, OutputError};
use crate::model::replay::{replay_observed, ReplayOptions};
use crate::trace::Target;

/// Exit status of a malformed trace or an event the kernel could not produce.
pub const EXIT_TRACE: i32 = 2;

/// Run a dmtrace event trace through the reference model of the kernel's
/// commit path, check its `expect` lines and write the metadata image it leaves.
#[derive(Parser, Debug)]
struct Args {
    /// The trace (dmtrace v1, REPLAY.md §2.2).
    #[arg(required_unless_present = "generate")]
    trace: Option<PathBuf>,
    /// Instead of a trace, run every generated trace of up to --max-ops user
    /// operations on a tiny target, each ending in an enumerated power cut, on
    /// the model of --variant, and print the figures and the first violating
    /// trace, minimised.
    #[arg(long, conflicts_with_all = ["output", "minimize"])]
    generate: bool,
    /// Operations per generated trace, with --generate.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=4))]
    max_ops: u8,
    /// The model variant: with --generate, that of the generated traces
    /// (default fixed); with a trace, the one it runs on instead of its
    /// header's `variant=` (fixed, or the name of a re-introduced kernel bug).
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,
    /// When the trace violates an invariant, print the smallest trace (by
    /// removing statements) that still violates it.
    #[arg(long)]
    minimize: bool,
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
    /// Crash-state tiers to enumerate at each `crash` line: 0 (durable,
    /// all landed, newest superblock only), 1 (+ drop-one/keep-one), 2 (+ subsets),
    /// 3 (+ torn block writes).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    tier: u8,
    /// Random subsets tried by tier 2 when more than 12 writes are pending.
    #[arg(long, value_name = "N", default_value_t = 256)]
    samples: usize,
    /// Seed of those samples.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Where power cuts are explored: `lines` (the trace's `crash` lines),
    /// `statements` (with --generate the default: also after every
    /// statement, without stopping the model, and at every flush of the
    /// metadata device inside one) or `all` (also after every event on the
    /// metadata device: each write's and each flush's issue and completion).
    #[arg(long, value_name = "WHERE", value_parser = ["lines", "statements", "all"])]
    crash_points: Option<String>,
    /// Write into DIR the dm-log-writes logs that log-writes devices under the
    /// model's devices would hold (meta.log, dest.log or origin.log) and the
    /// source's or origin's initial image (source.img, origin.img), for the
    /// *_verify_log tools.
    #[arg(long, value_name = "DIR", conflicts_with = "generate")]
    emit_logwrites: Option<PathBuf>,
}

/// The command line of the tool named `name`.
pub fn command(name: &'static str) -> clap::Command {
    <Args as clap::CommandFactory>::command()
        .name(name)
        .version(env!("CARGO_PKG_VERSION"))
}

/// Runs the tool for `target` (`name` is the tool's name).
pub fn run(name: &'static str, target: Target, args: Vec<OsString>) -> anyhow::Result<i32> {
    let a: Args = match parse_with(command(name), args) {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    set_quiet(a.quiet);
    let mut opts = ReplayOptions::default();
    opts.crash.tier = a.tier;
    opts.crash.samples = a.samples;
    opts.crash.seed = a.seed;
    opts.every_statement = match a.crash_points.as_deref() {
        Some("statements" | "all") => true,
        Some(_) => false,
        None => a.generate,
    };
    opts.every_event = a.crash_points.as_deref() == Some("all");
    if a.generate {
        return generate(name, target, &a, opts);
    }
    let trace_path = a.trace.clone().expect("clap requires a trace");
    let text = match std::fs::read(&trace_path) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("{name}: {}: {e}", trace_path.display()));
            return Ok(EXIT_TRACE);
        }
    };
    let Ok(text) = String::from_utf8(text) else {
        say(&format!(
            "{name}: {}: the trace is not UTF-8 text",
            trace_path.display()
        ));
        return Ok(EXIT_TRACE);
    };
    let mut trace = match crate::trace::parse(&text) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("{name}: {}:{e}", trace_path.display()));
            return Ok(EXIT_TRACE);
        }
    };
    if trace.header.target != target {
        say(&format!(
            "{name}: {}: this is a {} trace; run it with {}",
            trace_path.display(),
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
        if same_file(out, &trace_path) {
            say(&format!(
                "{name}: the output {} is the trace itself",
                out.display()
            ));
            return Ok(EXIT_TRACE);
        }
    }
    if let Some(n) = &a.variant {
        match variant_named(name, target, n) {
            Ok(v) => trace.header.variant = Some(v),
            Err(code) => return Ok(code),
        }
    }
    opts.crash.seed = trace.header.seed.unwrap_or(a.seed);
    opts.emit_logs = a.emit_logwrites.is_some();
    let started = std::time::Instant::now();
    let file = trace_path.file_name().unwrap_or(trace_path.as_os_str());
    let bar = progress_bar(
        a.quiet,
        file.to_string_lossy().into_owned(),
        trace.stmts.len() as u64,
        "statements",
    );
    let replayed = replay_observed(&trace, opts, &mut |p| {
        if let Some(b) = &bar {
            b.set_position(p.done as u64);
            if p.crash.points > 0 {
                b.set_message(format!(
                    "line {}: {} crash points, {} states, {} violations",
                    p.line, p.crash.points, p.crash.states, p.violations
                ));
            } else {
                b.set_message(format!("line {}", p.line));
            }
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let outcome = match replayed {
        Ok(o) => o,
        Err(e) => {
            say(&format!("{name}: {}:{e}", trace_path.display()));
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
                trace_path.display(),
                x.line,
                x.what,
                x.state,
                if x.ok { "ok" } else { "FAILED" },
                x.found
            )
            .map_err(OutputError::stdout)?;
        }
    }
    if !a.quiet {
        for v in &outcome.violations {
            writeln!(out, "{}:{}: violation {v}", trace_path.display(), v.cp)
                .map_err(OutputError::stdout)?;
        }
    }
    if a.minimize {
        if let Some(v) = outcome.violations.first() {
            let min = crate::gen::minimize(&trace, v.id, opts);
            writeln!(out, "# smallest trace that still violates {}:\n{min}", v.id)
                .map_err(OutputError::stdout)?;
        }
    }
    if a.show_status && !a.quiet {
        for (line, s) in &outcome.statuses {
            writeln!(out, "{}:{line}: status: {s}", trace_path.display())
                .map_err(OutputError::stdout)?;
        }
    }
    if let Some(path) = &a.output {
        write_image(path, &outcome.image).map_err(|e| OutputError::file(path, e))?;
    }
    if let Some(dir) = &a.emit_logwrites {
        std::fs::create_dir_all(dir).map_err(|e| OutputError::file(dir, e))?;
        for (file, bytes) in &outcome.logs {
            let path = dir.join(file);
            let mut f = AtomicFile::create(&path).map_err(|e| OutputError::file(&path, e))?;
            bytes
                .write_to(f.file())
                .map_err(|e| OutputError::file(&path, e))?;
            f.commit().map_err(|e| OutputError::file(&path, e))?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if !a.quiet {
        let c = &outcome.crash;
        writeln!(
            out,
            "{name}: {} statements, {} commits, {} expectations, {} failed; {} crash points, {} states, {} distinct metadata views, {} violations; {secs:.2} s{}",
            outcome.events,
            outcome.commits,
            outcome.expects.len(),
            failed,
            c.points,
            c.states,
            c.views,
            outcome.violations.len(),
            if c.states > 0 {
                format!(" ({:.0} states/s)", c.states as f64 / secs.max(1e-6))
            } else {
                String::new()
            }
        )?;
        if c.skipped_sectors > 0 {
            writeln!(
                out,
                "{name}: {} sectors of hydrated regions were not checked (budget)",
                c.skipped_sectors
            )
            .map_err(OutputError::stdout)?;
        }
    }
    out.flush().map_err(OutputError::stdout)?;
    Ok(if failed > 0 || !outcome.violations.is_empty() {
        1
    } else {
        super::EXIT_OK
    })
}

/// A bar of `len` `what` headed `prefix` on standard error, when that is a
/// terminal and the run is not quiet.
fn progress_bar(
    quiet: bool,
    prefix: String,
    len: u64,
    what: &str,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix}}: {{pos}}/{{len}} {what} ({{elapsed}}) {{wide_msg}}"
    )) {
        pb.set_style(style);
    }
    pb.set_prefix(prefix);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(pb)
}

/// `--generate`: the bounded exhaustive generator on one variant.
fn generate(name: &str, target: Target, a: &Args, opts: ReplayOptions) -> anyhow::Result<i32> {
    let variant = match variant_named(name, target, a.variant.as_deref().unwrap_or("fixed")) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    // The length is known once the traces are generated.
    let bar = progress_bar(
        a.quiet,
        format!("{name} --generate, {variant}"),
        0,
        "traces",
    );
    let r = crate::gen::run_observed(target, variant, a.max_ops as usize, opts, &|done, total| {
        if let Some(b) = &bar {
            if done % 64 == 0 || done == total {
                b.set_length(total);
                b.set_position(done);
            }
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut out = std::io::stdout().lock();
    if !a.quiet {
        writeln!(
            out,
            "{name}: variant {variant}: {} traces of up to {} operations ({} refused), {} crash states, {} distinct metadata views, {} violating traces{}, {:.1} s ({:.0} states/s)",
            r.traces,
            a.max_ops,
            r.refused,
            r.states,
            r.views,
            r.violating,
            if r.ids.is_empty() { String::new() } else { format!(" ({})", r.ids.join(", ")) },
            r.seconds,
            r.states as f64 / r.seconds.max(1e-9)
        ).map_err(OutputError::stdout)?;
        if let Some((i, t, vs)) = &r.first {
            let min = crate::gen::minimize(t, r.ids[0], opts);
            writeln!(
                out,
                "first violating trace: number {} of {}",
                i + 1,
                r.traces
            )
            .map_err(OutputError::stdout)?;
            for v in vs {
                writeln!(out, "  {v}").map_err(OutputError::stdout)?;
            }
            writeln!(out, "minimised:\n{min}").map_err(OutputError::stdout)?;
        }
    }
    out.flush().map_err(OutputError::stdout)?;
    Ok(if r.violating > 0 { 1 } else { super::EXIT_OK })
}

/// The variant `--variant` names for `target`, or (an unknown name or one of
/// the other target, said) the exit status.
fn variant_named(name: &str, target: Target, n: &str) -> Result<crate::trace::Variant, i32> {
    use crate::trace::Variant;
    match Variant::from_name(n) {
        Some(v) if v.applies_to(target) => Ok(v),
        found => {
            let what = match (found, target) {
                (None, _) => format!("unknown variant `{n}`"),
                (Some(_), Target::Clone) => format!("`{n}` is a dm-era variant"),
                (Some(_), Target::Era) => format!("`{n}` is a dm-clone variant"),
            };
            say(&format!(
                "{name}: {what}; variants: {}",
                Variant::names_for(target).join(", ")
            ));
            Err(super::EXIT_FAILURE)
        }
    }
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
