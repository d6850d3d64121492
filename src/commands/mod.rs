//! The command-line tools. Each tool parses its arguments with clap, makes one
//! library call and maps the outcome to an exit code; no format logic lives here.
//!
//! The binary is multi-call: the tool is chosen by the basename of `argv[0]` (a
//! symlink named `clone_check`) or, failing that, by the first argument
//! (`dmce clone_check IMG`).

mod clone_check;
mod clone_dump;
mod clone_repair;
mod clone_replay;
mod clone_restore;
mod clone_verify_log;
mod era_check;
mod era_dump;
mod era_invalidate;
mod era_repair;
mod era_replay;
mod era_restore;
mod era_verify_log;
mod replay;
mod restore_util;
mod util;
mod verify_log;

use std::ffi::OsString;
use std::path::Path;

/// Exit status for success.
pub const EXIT_OK: i32 = 0;
/// Exit status for damage, unreadable input or bad usage.
pub const EXIT_FAILURE: i32 = 1;

type ToolFn = fn(Vec<OsString>) -> anyhow::Result<i32>;

/// Every tool, by name.
pub const TOOLS: &[(&str, ToolFn)] = &[
    ("clone_check", clone_check::run),
    ("clone_dump", clone_dump::run),
    ("clone_repair", clone_repair::run),
    ("clone_replay", clone_replay::run),
    ("clone_restore", clone_restore::run),
    ("clone_verify_log", clone_verify_log::run),
    ("era_check", era_check::run),
    ("era_dump", era_dump::run),
    ("era_restore", era_restore::run),
    ("era_invalidate", era_invalidate::run),
    ("era_repair", era_repair::run),
    ("era_replay", era_replay::run),
    ("era_verify_log", era_verify_log::run),
];

fn find(name: &str) -> Option<ToolFn> {
    TOOLS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn usage() -> String {
    let names: Vec<&str> = TOOLS.iter().map(|(n, _)| *n).collect();
    format!(
        "usage: dmce <tool> [ARGS...]   (or call the binary through a link named after the tool)\ntools: {}",
        names.join(", ")
    )
}

/// Writes `text` and a newline to standard output; false when it could not be.
fn print_stdout(text: &str) -> bool {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    writeln!(o, "{text}").and_then(|_| o.flush()).is_ok()
}

/// Runs the tool named by `args` and returns the process exit status.
///
/// Every outcome is an exit status, never a panic: an error the tool returns is
/// printed on one line (unless `-q`) and gives 1; a closed pipe on standard output
/// gives 1 without a word, since the output is incomplete.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let argv0 = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let (name, tool_args) = match find(&argv0) {
        Some(_) => (argv0, args),
        None => match args.get(1).map(|a| a.to_string_lossy().into_owned()) {
            Some(n) if find(&n).is_some() => (n, args[1..].to_vec()),
            Some(n) if n == "--help" || n == "-h" => {
                return if print_stdout(&usage()) {
                    EXIT_OK
                } else {
                    EXIT_FAILURE
                };
            }
            Some(n) if n == "--version" || n == "-V" => {
                return if print_stdout(env!("CARGO_PKG_VERSION")) {
                    EXIT_OK
                } else {
                    EXIT_FAILURE
                };
            }
            Some(n) => {
                util::say(&format!("dmce: unknown tool '{n}'\n{}", usage()));
                return EXIT_FAILURE;
            }
            None => {
                util::say(&usage());
                return EXIT_FAILURE;
            }
        },
    };
    let f = find(&name).expect("tool name checked above");
    util::set_quiet(false);
    match f(tool_args) {
        Ok(code) => code,
        Err(e) => {
            if !util::is_broken_pipe(&e) {
                util::say(&format!("{name}: {}", util::render(&e)));
            }
            EXIT_FAILURE
        }
    }
}
