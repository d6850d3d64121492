//! `dmce --completions SHELL [TOOL]`: shell completion scripts, generated from the
//! clap definitions the tools parse their arguments with, so they cannot drift
//! from the options.
//!
//! With a TOOL (a tool's name, or `dmce` for the multi-call binary with the tool
//! as its first argument) the script completes that command alone: the file a
//! distribution installs (`make install` does). Without one, the scripts of every
//! tool and of `dmce` follow one another, for sourcing in a running shell.

use std::ffi::OsString;
use std::io::Write;

use clap_complete::Shell;

use super::{util::say, EXIT_FAILURE, EXIT_OK, TOOLS};

/// The shells completions are generated for, by the name they are asked for by.
pub const SHELLS: &[(&str, Shell)] = &[
    ("bash", Shell::Bash),
    ("zsh", Shell::Zsh),
    ("fish", Shell::Fish),
];

/// The command line of `dmce` itself: each tool is a subcommand.
pub fn dmce_command() -> clap::Command {
    let shells: Vec<&str> = SHELLS.iter().map(|(n, _)| *n).collect();
    clap::Command::new("dmce")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Metadata tools for dm-clone and dm-era, chosen by the first argument or by the name the binary is called by")
        .arg(
            clap::Arg::new("completions")
                .long("completions")
                .value_name("SHELL")
                .value_parser(shells)
                .help("Print the shell completions of TOOL (a tool, or dmce), or of all"),
        )
        .subcommands(TOOLS.iter().map(|t| (t.command)()))
}

/// The completion script of `shell` for `tool` (a tool's name or `dmce`); None
/// when there is no such tool.
pub fn script(shell: Shell, tool: &str) -> Option<Vec<u8>> {
    let mut cmd = if tool == "dmce" {
        dmce_command()
    } else {
        (super::find(tool)?.command)()
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, tool, &mut out);
    Some(out)
}

fn usage_error(text: &str) -> i32 {
    say(&format!(
        "dmce: --completions: {text}\nusage: dmce --completions bash|zsh|fish [TOOL]"
    ));
    EXIT_FAILURE
}

/// Runs `dmce --completions` on the arguments after it.
pub fn run(args: &[OsString]) -> i32 {
    let Some(shell_name) = args.first().map(|a| a.to_string_lossy()) else {
        return usage_error("which shell? bash, zsh or fish");
    };
    let Some(&(_, shell)) = SHELLS.iter().find(|(n, _)| *n == shell_name) else {
        return usage_error(&format!("unknown shell '{shell_name}': bash, zsh or fish"));
    };
    if args.len() > 2 {
        return usage_error("one shell and at most one tool");
    }
    let mut text = Vec::new();
    match args.get(1).map(|a| a.to_string_lossy()) {
        Some(tool) => match script(shell, &tool) {
            Some(s) => text = s,
            None => return usage_error(&format!("unknown tool '{tool}'")),
        },
        None => {
            for name in TOOLS.iter().map(|t| t.name).chain(["dmce"]) {
                text.extend(script(shell, name).unwrap_or_default());
            }
        }
    }
    let mut o = std::io::stdout().lock();
    match o.write_all(&text).and_then(|_| o.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_FAILURE,
        Err(e) => {
            say(&format!("dmce: --completions: standard output: {e}"));
            EXIT_FAILURE
        }
    }
}
