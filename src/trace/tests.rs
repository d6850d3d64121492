//! Tests of the `dmtrace` parser and printer: the examples of REPLAY.md §2.2,
//! every verb and predicate, lexical details; errors in `errors`, round trips in
//! `prop`.

mod errors;
mod prop;
mod verbs;

use super::*;

/// Parses `text`, failing the test with the error.
pub(super) fn ok(text: &str) -> Trace {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The event of one statement after a `target` header.
pub(super) fn ev(target: &str, stmt: &str) -> Event {
    let t = ok(&format!("dmtrace 1 {target}\n{stmt}\n"));
    assert_eq!(t.stmts.len(), 1, "{stmt}");
    t.stmts.into_iter().next().unwrap().event
}

pub(super) fn clone(stmt: &str) -> Event {
    ev("clone", stmt)
}

pub(super) fn era(stmt: &str) -> Event {
    ev("era", stmt)
}

pub(super) fn set(r: &[(u64, u64)]) -> Ranges {
    Ranges(r.to_vec())
}

/// The examples of REPLAY.md §2.2, as written there.
pub(super) const EXAMPLES: &[&str] = &[
    "dmtrace 1 clone
# happy path: partial write hydrates region 0, user flush commits
config size=64 region=8 hydration=off
write at=1+1 id=w1            # unhydrated: kcopyd copy src->dest, then w1 -> dest
flush id=f1                   # metadata changed: commit (pre, dest flush, meta, super), then complete f1
crash                         # enumerate all crash states here
expect hydrated regions=0
expect read at=0+8 data=src,w1,src,src,src,src,src,src
",
    "dmtrace 1 clone variant=commit-before-dest-flush expect=violation:I2
# CB1: periodic commit without dest flush
config size=64 region=8 hydration=off
hydrate.start region=0
hydrate.done region=0         # copy completed into dest cache (volatile)
@1000 tick                    # periodic commit (buggy: no commit.flush-dest)
crash                         # meta durable, dest copy dropped -> region 0 = dest_init garbage
",
    "dmtrace 1 clone variant=live-bitmap-commit expect=violation:I2
# CB3: region hydrated after the dest flush gets into the same transaction
config size=128 region=8 hydration=off
hydrate.start region=0
hydrate.done region=0
hydrate.start region=1
commit.pre
commit.flush-dest
hydrate.done region=1         # completes after the dest flush
commit.meta
commit.super                  # fixed: only region 0 committed; buggy: 0 and 1
crash
",
    "dmtrace 1 era variant=incore-bit-before-commit expect=violation:E2
# EB1: second write passes through before the commit is durable
config size=1024 block=8
write block=3 id=a async      # deferred
worker.mark                   # buggy: in-core bit set here
commit.meta
write block=3 id=b            # buggy: passes through, completes on origin
crash                         # before commit.super: block 3 in no writeset, yet b reached origin
# no `expect` line: E2 fires on its own; with variant=fixed, b stays deferred and nothing fires
",
    "dmtrace 1 era
# EB2 path (fixed model): crash with an unarchived current writeset, then recover
config size=1024 block=8 start_era=1
write block=5 id=a
checkpoint                    # era 1 archived, era 2 current
write block=7 id=b            # recorded in era 2 current writeset (committed)
crash mode=durable
recover                       # preresume: archive era 2, start era 3
expect written-since era=2 includes=7
",
];

#[test]
fn every_example_parses_and_round_trips() {
    for text in EXAMPLES {
        let mut t = ok(text);
        let again = ok(&t.to_string());
        t.renumber();
        assert_eq!(again, t, "{text}");
    }
}

#[test]
fn first_example_in_full() {
    let t = ok(EXAMPLES[0]);
    let h = &t.header;
    assert_eq!(
        (h.target, h.variant, &h.expect, h.seed, &h.kernel),
        (Target::Clone, None, &None, None, &None)
    );
    let lines: Vec<usize> = t.stmts.iter().map(|s| s.line).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8]);
    let config = Config {
        size: Some(64),
        region: Some(8),
        hydration: Some(false),
        ..Config::default()
    };
    let stamps = ["src", "w1", "src", "src", "src", "src", "src", "src"]
        .map(String::from)
        .to_vec();
    let events: Vec<Event> = t.stmts.into_iter().map(|s| s.event).collect();
    assert_eq!(
        events,
        [
            Event::Config(config),
            Event::Write {
                loc: Loc::Sectors(1, 2),
                fua: false,
                preflush: false,
                data: None,
                id: Some("w1".into()),
                is_async: false
            },
            Event::Flush {
                id: Some("f1".into()),
                is_async: false
            },
            Event::Crash {
                mode: CrashMode::Enumerate
            },
            Event::Expect(Predicate::Hydrated(set(&[(0, 1)]))),
            Event::Expect(Predicate::Read {
                loc: Loc::Sectors(0, 8),
                data: stamps
            }),
        ]
    );
}

#[test]
fn headers() {
    let h = ok("dmtrace 1 era variant=stale-digest-cache expect=ok seed=0x10 kernel=6.8.0-rc1 x-by=me x-n=1..4\n").header;
    assert_eq!(h.target, Target::Era);
    assert_eq!(h.variant, Some(Variant::StaleDigestCache));
    assert_eq!(h.expect, Some(Outcome::Ok));
    assert_eq!(h.seed, Some(16));
    assert_eq!(h.kernel.as_deref(), Some("6.8.0-rc1"));
    assert_eq!(
        h.extra,
        [
            ("x-by".into(), Value::Word("me".into())),
            ("x-n".into(), Value::Range(1, 4))
        ]
    );
    let h =
        ok("# leading comment\n\n  dmtrace\t1 clone expect=violation:I7 kernel=6   # trailing\n")
            .header;
    assert_eq!(h.expect, Some(Outcome::Violation("I7".into())));
    assert_eq!(h.kernel.as_deref(), Some("6"));
    for (v, name) in Variant::ALL {
        for (target, t) in [(Target::Clone, "clone"), (Target::Era, "era")] {
            let text = format!("dmtrace 1 {t} variant={name}\n");
            if v.applies_to(target) {
                assert_eq!(ok(&text).header.variant, Some(*v));
            } else {
                let e = crate::trace::parse(&text).unwrap_err();
                assert!(e.msg.contains("is not a"), "{e}");
            }
        }
    }
}

#[test]
fn lexical_details() {
    let t = ok("\u{feff}dmtrace 1 clone\r\n\r\n\t# only a comment\r\n\t@5 tick\r\n");
    assert_eq!(
        t.stmts,
        [Stmt {
            line: 4,
            time: Some(5),
            event: Event::Tick { ms: None }
        }]
    );
    let t = ok("dmtrace 1 clone\n\n   \t \n#c\n\t@1_000\ttick\tms=0x1F # c\nworker#no space needed\n@0 worker");
    assert_eq!(
        t.stmts[0],
        Stmt {
            line: 5,
            time: Some(1000),
            event: Event::Tick { ms: Some(31) }
        }
    );
    assert_eq!(
        t.stmts[1],
        Stmt {
            line: 6,
            time: None,
            event: Event::Worker
        }
    );
    assert_eq!(
        t.stmts[2],
        Stmt {
            line: 7,
            time: Some(0),
            event: Event::Worker
        }
    );
    assert_eq!(
        clone("tick ms=1_000_000"),
        Event::Tick {
            ms: Some(1_000_000)
        }
    );
    assert_eq!(
        clone("tick ms=0xFFFFffffFFFFffff"),
        Event::Tick { ms: Some(u64::MAX) }
    );
    assert_eq!(
        clone("tick ms=18_446_744_073_709_551_615"),
        Event::Tick { ms: Some(u64::MAX) }
    );
    assert_eq!(
        clone("tick ms=0x000000000000000000001"),
        Event::Tick { ms: Some(1) }
    );
}

/// What the header's `x-` keys hold for `v`.
fn value(v: &str) -> Value {
    let mut h = ok(&format!("dmtrace 1 era x-v={v}")).header;
    h.extra.pop().unwrap().1
}

#[test]
fn values_are_classified_by_whole_token() {
    use Value::*;
    assert_eq!(value("12"), Num(12));
    assert_eq!(value("0x1f"), Num(31));
    assert_eq!(value("1_2"), Num(12));
    assert_eq!(value("3..5"), Range(3, 5));
    assert_eq!(value("3+5"), Range(3, 8));
    assert_eq!(value("3..3"), Range(3, 3));
    assert_eq!(
        value("1,2..4,a"),
        List(vec![Num(1), Range(2, 4), Word("a".into())])
    );
    assert_eq!(value("0x1,0x2"), List(vec![Num(1), Num(2)]));
    for w in [
        "12abc",
        "0x",
        "0xg",
        "0x1_0",
        "_1",
        "1..2..3",
        "1.5",
        "a..b",
        "state:x/y.z",
        "-1",
        "0x1..0x2",
    ] {
        assert_eq!(value(w), Word(w.into()), "{w}");
    }
}
