//! The command-line tools. Each tool parses its arguments with clap, makes one
//! library call and maps the outcome to an exit code; no format logic lives here.
//!
//! The binary is multi-call: the tool is chosen by the basename of `argv[0]` (a
//! symlink named `clone_check`) or, failing that, by the first argument
//! (`dmce clone_check IMG`). `dmce --completions SHELL [TOOL]` prints shell
//! completions generated from the tools' clap definitions (`completions.rs`).

mod clone_check;
mod clone_dump;
mod clone_metadata_pack;
mod clone_metadata_size;
mod clone_metadata_unpack;
mod clone_repair;
mod clone_replay;
mod clone_restore;
mod clone_verify_log;
mod completions;
mod era_check;
mod era_dump;
mod era_invalidate;
mod era_metadata_pack;
mod era_metadata_size;
mod era_metadata_unpack;
mod era_repair;
mod era_replay;
mod era_restore;
mod era_verify_log;
mod metadata_pack;
mod replay;
mod restore_util;
mod size_util;
mod util;
mod verify_log;

use std::ffi::OsString;
use std::path::Path;

/// Exit status for success.
pub const EXIT_OK: i32 = 0;
/// Exit status for damage, unreadable input or bad usage.
pub const EXIT_FAILURE: i32 = 1;

type ToolFn = fn(Vec<OsString>) -> anyhow::Result<i32>;

/// One tool of the multi-call binary.
pub struct Tool {
    /// Its name: the link name or first argument that selects it.
    pub name: &'static str,
    /// Runs it on its arguments (`argv[0]` first) and gives the exit status.
    pub run: ToolFn,
    /// Its command-line definition, the one `run` parses with: for `--help`
    /// text and shell completions.
    pub command: fn() -> clap::Command,
}

macro_rules! tool {
    ($m:ident) => {
        Tool {
            name: stringify!($m),
            run: $m::run,
            command: $m::command,
        }
    };
}

/// Every tool, by name.
pub const TOOLS: &[Tool] = &[
    tool!(clone_check),
    tool!(clone_dump),
    tool!(clone_metadata_pack),
    tool!(clone_metadata_unpack),
    tool!(clone_metadata_size),
    tool!(clone_repair),
    tool!(clone_replay),
    tool!(clone_restore),
    tool!(clone_verify_log),
    tool!(era_check),
    tool!(era_dump),
    tool!(era_restore),
    tool!(era_invalidate),
    tool!(era_metadata_pack),
    tool!(era_metadata_unpack),
    tool!(era_metadata_size),
    tool!(era_repair),
    tool!(era_replay),
    tool!(era_verify_log),
];

/// The tool called `name`.
pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

fn usage() -> String {
    let names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
    format!(
        "usage: dmce <tool> [ARGS...]   (or call the binary through a link named after the tool)\n       dmce --completions bash|zsh|fish [TOOL]   (shell completions, for one tool or all)\n       dmce --help | --version\ntools: {}",
        names.join(", ")
    )
}

/// Writes `text` and a newline to standard output; false when it could not be.
fn print_stdout(text: &str) -> bool {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    writeln!(o, "{text}").and_then(|_| o.flush()).is_ok()
}

/// The exit status of an output that was (`true`) or could not be written.
fn status(written: bool) -> i32 {
    if written {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
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
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned());
    let (tool, tool_args) = if let Some(t) = find(&argv0) {
        (t, args)
    } else if let Some(t) = first.as_deref().and_then(find) {
        (t, args[1..].to_vec())
    } else {
        return match first.as_deref() {
            Some("--help" | "-h") => status(print_stdout(&usage())),
            Some("--version" | "-V") => status(print_stdout(env!("CARGO_PKG_VERSION"))),
            Some("--completions") => completions::run(&args[2..]),
            Some(n) => {
                util::say(&format!("dmce: unknown tool '{n}'\n{}", usage()));
                EXIT_FAILURE
            }
            None => {
                util::say(&usage());
                EXIT_FAILURE
            }
        };
    };
    util::set_quiet(false);
    match (tool.run)(tool_args) {
        Ok(code) => code,
        Err(e) => {
            if !util::is_broken_pipe(&e) {
                util::say(&format!("{}: {}", tool.name, util::render(&e)));
            }
            EXIT_FAILURE
        }
    }
}
