#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // libFuzzer's main replaces the Rust runtime's, which ignores SIGPIPE:
        // ignore it here too, so a write to a closed pipe (a repair's dump when
        // its restore gives up) is an error, as in the tools, not a fatal signal.
        // SAFETY: setting a signal's disposition to SIG_IGN before any thread runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    },
    |data: &[u8]| {
        dmce::fuzz_support::run("replay", data);
    }
);
