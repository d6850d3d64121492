//! Malformed traces: each error's exact line, column and message.

use super::super::{parse, TraceError};

/// The error of `text`, which must not parse.
fn err(text: &str) -> TraceError {
    match parse(text) {
        Ok(t) => panic!("parsed: {t:?}\n{text}"),
        Err(e) => e,
    }
}

/// Asserts that `text` fails at `line:col` with a message containing `msg`.
#[track_caller]
fn fails(text: &str, line: usize, col: usize, msg: &str) {
    let e = err(text);
    assert_eq!((e.line, e.col), (line, col), "{e}\n{text}");
    assert!(e.msg.contains(msg), "{e:?} lacks {msg:?}");
}

/// Asserts that statement `stmt` on line 3 of a `target` trace fails at `col`.
#[track_caller]
fn fails_at(target: &str, stmt: &str, col: usize, msg: &str) {
    fails(
        &format!("dmtrace 1 {target}\n# setup\n{stmt}\n"),
        3,
        col,
        msg,
    );
}

#[test]
#[rustfmt::skip]
fn unknown_verbs_and_keys() {
    fails_at("clone", "  frobnicate x=1", 3, "unknown verb `frobnicate` (expected one of: config, write");
    fails_at("era", "commit.pre", 1, "`commit.pre` is a dm-clone verb; this is a dm-era trace");
    fails_at("era", "@10 hydrate.done region=1", 5, "`hydrate.done` is a dm-clone verb");
    fails_at("clone", "snap.take", 1, "`snap.take` is a dm-era verb; this is a dm-clone trace");
    fails_at("clone", "write at=0 sizzle=1", 12, "unknown key `sizzle` for `write` (expected one of: at, region,");
    fails_at("era", "write region=1", 7, "unknown key `region` for `write`");
    fails_at("clone", "write block=1", 7, "unknown key `block`");
    fails_at("era", "config region=8", 8, "unknown key `region` for `config`");
    fails_at("clone", "config block=8", 8, "unknown key `block` for `config`");
    fails_at("clone", "worker now", 8, "`worker` takes no arguments, found `now`");
    fails_at("clone", "msg hydrate_everything", 5, "unknown key `hydrate_everything` for `msg`");
    fails_at("clone", "expect melted regions=0", 8, "unknown predicate `melted`");
    fails_at("era", "expect hydrated regions=0", 8, "`expect hydrated` is a dm-clone predicate");
    fails_at("clone", "expect era=1", 8, "`expect era` is a dm-era predicate");
    fails_at("era", "expect era=1 exact=2", 14, "`expect era` takes no arguments");
}

#[test]
#[rustfmt::skip]
fn duplicate_and_missing_keys() {
    fails_at("clone", "write at=0 id=a id=b", 17, "duplicate key `id` (first given at column 12)");
    fails_at("era", "expect written-since era=1 exact=2 era=3", 36, "duplicate key `era`");
    fails_at("era", "config x-a=1 x-a=2", 14, "duplicate key `x-a`");
    fails_at("clone", "complete", 1, "`complete` needs `id=`");
    fails_at("clone", "  @5 mark", 6, "`mark` needs `label=`");
    fails_at("clone", "write fua", 1, "`write` needs a location, `at=` or `region=`");
    fails_at("era", "discard id=1", 1, "`discard` needs a location, `at=` or `block=`");
    fails_at("clone", "wait", 1, "`wait` needs `hydrated=`");
    fails_at("clone", "hydrate.start", 1, "`hydrate.start` needs `region=`");
    fails_at("clone", "expect read data=a", 1, "`expect read` needs `at=`");
    fails_at("clone", "expect read at=0", 1, "`expect read` needs `data=`");
    fails_at("clone", "expect hydrated", 1, "`expect hydrated` needs `regions=`");
    fails_at("era", "expect written-since exact=1", 1, "`expect written-since` needs `era=`");
    fails_at("era", "expect written-since era=1", 8, "needs `exact=` or `includes=`");
    fails_at("era", "expect meta-check", 18, "`expect meta-check` needs `ok`");
    fails_at("era", "expect violation", 1, "`expect violation` needs `id=`");
    fails_at("era", "expect x-a=1", 7, "`expect` needs a predicate");
    fails_at("clone", "msg", 4, "`msg` needs a message");
    fails_at("clone", "msg enable_hydration disable_hydration", 22, "`msg` takes one message");
    fails_at("clone", "write at=0 region=1", 12, "a second location `region=`: `at=` is already given");
}

#[test]
#[rustfmt::skip]
fn wrong_values() {
    fails_at("clone", "tick ms=abc", 9, "expected a number, found `abc`");
    fails_at("clone", "tick ms=12abc", 9, "expected a number, found `12abc`");
    fails_at("clone", "tick ms=0x12g", 9, "expected a number, found `0x12g`");
    fails_at("clone", "tick ms=1..2", 9, "expected a number, found `1..2`");
    fails_at("clone", "tick ms", 6, "expected `ms=` with a number, found a bare `ms`");
    fails_at("clone", "write at=0 fua=1", 16, "`fua` is a flag and takes no value, found `1`");
    fails_at("clone", "flush id=", 10, "expected a value (number, range, list or word), found the end of the line");
    fails_at("clone", "flush id= x", 10, "expected a value (number, range, list or word), found a space");
    fails_at("clone", "flush id=#c", 10, "found a comment");
    fails_at("clone", "flush id=1,", 10, "expected a value (number, range, list or word), found `1,`");
    fails_at("clone", "flush id=a+b", 10, "found `a+b`");
    fails_at("clone", "flush id=1..2", 10, "expected a word or number, found `1..2`");
    fails_at("clone", "write at=abc", 10, "expected a sector range (`a+n` or `a..b`) or a sector number, found `abc`");
    fails_at("clone", "write at=3+0", 10, "expected a non-empty range, found `3+0`");
    fails_at("clone", "write at=18446744073709551615", 10, "expected a number below 2^64-1");
    fails_at("clone", "write at=0 data=byte:0x100", 17, "expected `stamp`, `zero` or `byte:0xNN`, found `byte:0x100`");
    fails_at("clone", "write at=0 data=byte:5", 17, "found `byte:5`");
    fails_at("clone", "config logical_block=1024", 22, "expected `512` or `4096`, found `1024`");
    fails_at("clone", "config hydration=yes", 18, "expected `on` or `off`, found `yes`");
    fails_at("clone", "config cache=1", 14, "expected `volatile` or `writethrough`, found `1`");
    fails_at("clone", "config x-flag", 8, "expected `x-flag=` with a value");
    fails_at("clone", "crash mode=state:", 12, "found `state:`");
    fails_at("clone", "wait hydrated=most", 15, "expected a number or `all`, found `most`");
    fails_at("clone", "hydrate.done region=1..3", 21, "expected a number, found `1..3`");
    fails_at("clone", "expect hydrated regions=1,none", 27, "expected a number or range, found `none`");
    fails_at("clone", "expect hydrated regions=some", 25, "expected a number, a range, a list of them, or `none`");
    fails_at("clone", "read at=0+2 expect=a,3..4", 22, "expected a word, found `3..4`");
    fails_at("era", "expect era=now", 12, "expected a number, found `now`");
    fails_at("clone", "expect meta-check=ok", 19, "the predicate `meta-check` takes no value");
}

#[test]
#[rustfmt::skip]
fn numbers_and_ranges() {
    fails_at("clone", "tick ms=18446744073709551616", 9, "number `18446744073709551616` does not fit in 64 bits");
    fails_at("clone", "tick ms=0x1_0000_0000_0000_0000", 9, "expected a number");
    fails_at("clone", "tick ms=0x10000000000000000", 9, "number `0x10000000000000000` does not fit in 64 bits");
    fails_at("clone", "write at=0..99999999999999999999", 13, "does not fit in 64 bits");
    fails_at("clone", "write at=99999999999999999999+1", 10, "does not fit in 64 bits");
    fails_at("clone", "write at=18446744073709551615+1", 10, "range `18446744073709551615+1` ends past 2^64");
    fails_at("clone", "expect hydrated regions=1,99999999999999999999", 27, "does not fit in 64 bits");
    fails_at("clone", "write at=5..3", 10, "range `5..3` ends before it starts");
    fails_at("clone", "expect hydrated regions=0,5..3,9", 27, "range `5..3` ends before it starts");
    fails_at("clone", "@99999999999999999999 tick", 2, "does not fit in 64 bits");
    fails_at("clone", "@0x10 tick", 2, "expected a time in decimal milliseconds after `@`, found `0x10`");
    fails_at("clone", "@5", 3, "expected a verb after the time, found the end of the line");
    fails_at("clone", "@5tick", 2, "found `5tick`");
}

#[test]
#[rustfmt::skip]
fn syntax() {
    fails_at("clone", "write! at=0", 6, "expected a space, a comment or the end of the line, found `!`");
    fails_at("clone", "write 5", 7, "expected an argument `name` or `name=value`, found `5`");
    fails_at("clone", "write at=0 fua!", 15, "expected `=`, a space, a comment or the end of the line, found `!`");
    fails_at("clone", "commit.", 7, "found `.`");
    fails_at("clone", "5 tick", 1, "expected a verb, found `5`");
    fails_at("clone", "tick\u{b}ms=1", 5, "found `\\u{b}ms=1`");
    fails_at("clone", "mark label=a\u{1b}[2Jb", 12, "found `a\\u{1b}[2Jb`");
    fails_at("clone", "tick ms=1\rworker", 9, "found `1\\rworker`");
    fails_at("clone", "mark label=\u{202e}abc", 12, "found `\\u{202e}abc`");
    // Columns count characters, not bytes.
    fails_at("clone", "mark label=ééé", 12, "found `ééé`");
    fails("dmtrace 1 clone\nworker\n# é\n\té ↯ tick x", 4, 2, "expected a verb, found `é`");
    let e = err("dmtrace 1 clone\nmark label=\u{7}\u{9b}");
    assert!(!e.to_string().chars().any(|c| c.is_control()), "{e}");
    let verbs = "config, write, discard, flush, read, complete, tick, worker, suspend, resume, status, remove, \
                 crash, recover, reload, mark, expect, commit.meta, commit.super, msg, wait, hydrate.start, hydrate.done, \
                 commit, commit.pre, commit.flush-dest";
    let e = err("dmtrace 1 clone\nfrob\n");
    assert_eq!(e.to_string(), format!("2:1: unknown verb `frob` (expected one of: {verbs})"));
}

#[test]
#[rustfmt::skip]
fn headers() {
    let want = "expected the header `dmtrace 1 <clone|era>`";
    fails("", 1, 1, "found the end of the input");
    fails("# only\n\n", 1, 1, "found the end of the input");
    fails("\n# c\nconfig size=1\n", 3, 1, &format!("{want}, found `config`"));
    fails("dmtracer 1 clone", 1, 1, &format!("{want}, found `dmtracer`"));
    fails("dmtrace 2 clone", 1, 9, "unsupported dmtrace version `2`: this reads version 1");
    fails("dmtrace 01 clone", 1, 9, "unsupported dmtrace version `01`");
    fails("dmtrace v1 clone", 1, 9, "expected the format version `1`, found `v1`");
    fails("dmtrace 1", 1, 10, "expected the target `clone` or `era`, found the end of the line");
    fails("dmtrace 1 cloned", 1, 11, "expected the target `clone` or `era`, found `cloned`");
    fails("dmtrace 1 clone colour=red", 1, 17, "unknown key `colour` for `dmtrace` (expected one of: variant, expect,");
    fails("dmtrace 1 clone variant=buggy", 1, 25, "unknown variant `buggy` (expected one of: fixed, commit-");
    fails("dmtrace 1 clone expect=fail", 1, 24, "expected `ok`, `refused` or `violation:<ID>`, found `fail`");
    fails("dmtrace 1 clone expect=violation:", 1, 24, "found `violation:`");
    fails("dmtrace 1 clone seed=x", 1, 22, "expected a number, found `x`");
    fails("dmtrace 1 clone seed=1 seed=2", 1, 24, "duplicate key `seed`");
    fails("dmtrace 1 clone seed", 1, 17, "expected `seed=` with a value, found a bare `seed`");
    fails("dmtrace 1 era x-a", 1, 15, "expected `x-a=` with a value");
    fails("  dmtrace 1 era kernel=1..2", 1, 24, "expected a word or number, found `1..2`");
}

/// Long lines and many lines parse in linear time (a quadratic parser would take
/// minutes here).
#[test]
fn long_input() {
    let n = 200_000;
    let keys: String = (0..n).map(|k| format!(" x-{k}={k}")).collect();
    let t = parse(&format!("dmtrace 1 clone\nconfig{keys}\n")).unwrap();
    let super::Event::Config(c) = &t.stmts[0].event else {
        panic!()
    };
    assert_eq!(c.extra.len(), n);
    let list: Vec<String> = (0..n).map(|k| k.to_string()).collect();
    let t = parse(&format!(
        "dmtrace 1 clone\nexpect hydrated regions={}\n",
        list.join(",")
    ))
    .unwrap();
    assert_eq!(t.stmts.len(), 1);
    let word = "a".repeat(1_000_000);
    assert_eq!(
        parse(&format!("dmtrace 1 clone\nmark label={word}\n"))
            .unwrap()
            .stmts
            .len(),
        1
    );
    let digits = "1".repeat(1_000_000);
    assert!(parse(&format!("dmtrace 1 clone\nmark label={digits}\n")).is_err());
    let lines = "worker\n".repeat(n);
    assert_eq!(
        parse(&format!("dmtrace 1 era\n{lines}"))
            .unwrap()
            .stmts
            .len(),
        n
    );
}
