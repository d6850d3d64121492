//! Tests of the `dmtrace` parser and printer: the examples of REPLAY.md §2.2,
//! every verb and predicate, lexical details; errors in `errors`, round trips in
//! `prop`.

mod errors;
mod prop;

use super::*;

/// Parses `text`, failing the test with the error.
fn ok(text: &str) -> Trace {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The event of one statement after a `target` header.
fn ev(target: &str, stmt: &str) -> Event {
    let t = ok(&format!("dmtrace 1 {target}\n{stmt}\n"));
    assert_eq!(t.stmts.len(), 1, "{stmt}");
    t.stmts.into_iter().next().unwrap().event
}

fn clone(stmt: &str) -> Event {
    ev("clone", stmt)
}

fn era(stmt: &str) -> Event {
    ev("era", stmt)
}

fn set(r: &[(u64, u64)]) -> Ranges {
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
        assert_eq!(
            ok(&format!("dmtrace 1 clone variant={name}"))
                .header
                .variant,
            Some(*v)
        );
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

#[test]
fn config() {
    let all = "config size=1024 logical_block=4096 meta_block=8 meta_size=0x1000 dest_init=zero \
               source_init=stamp discard_zeroes cache=volatile meta_cache=writethrough dest_cache=volatile";
    let common = Config {
        size: Some(1024),
        logical_block: Some(4096),
        meta_block: Some(8),
        meta_size: Some(4096),
        dest_init: Some(Init::Zero),
        source_init: Some(Init::Stamp),
        discard_zeroes: true,
        cache: Some(CacheMode::Volatile),
        meta_cache: Some(CacheMode::Writethrough),
        dest_cache: Some(CacheMode::Volatile),
        ..Config::default()
    };
    let c = clone(&format!(
        "{all} region=16 hydration=on threshold=4 batch=2 discard_passdown=off x-a=b"
    ));
    let want = Config {
        region: Some(16),
        hydration: Some(true),
        threshold: Some(4),
        batch: Some(2),
        discard_passdown: Some(false),
        extra: vec![("x-a".into(), Value::Word("b".into()))],
        ..common.clone()
    };
    assert_eq!(c, Event::Config(want));
    let e = era(&format!("{all} block=64 start_era=3"));
    assert_eq!(
        e,
        Event::Config(Config {
            block: Some(64),
            start_era: Some(3),
            ..common
        })
    );
    assert_eq!(clone("config"), Event::Config(Config::default()));
    assert_eq!(
        clone("config logical_block=512"),
        Event::Config(Config {
            logical_block: Some(512),
            ..Config::default()
        })
    );
}

fn write(loc: Loc) -> Event {
    Event::Write {
        loc,
        fua: false,
        preflush: false,
        data: None,
        id: None,
        is_async: false,
    }
}

#[test]
fn user_io() {
    assert_eq!(clone("write at=7"), write(Loc::Sectors(7, 8)));
    assert_eq!(clone("write at=7..9"), write(Loc::Sectors(7, 9)));
    assert_eq!(clone("write region=3"), write(Loc::Regions(3, 4)));
    assert_eq!(clone("write region=3+2"), write(Loc::Regions(3, 5)));
    assert_eq!(era("write block=3..6"), write(Loc::Blocks(3, 6)));
    assert_eq!(
        clone("write preflush async at=0+8 fua data=byte:0x5A id=0x10 x-note=ignored"),
        Event::Write {
            loc: Loc::Sectors(0, 8),
            fua: true,
            preflush: true,
            data: Some(Data::Byte(0x5a)),
            id: Some("0x10".into()),
            is_async: true,
        }
    );
    for (d, want) in [
        ("stamp", Data::Stamp),
        ("zero", Data::Zero),
        ("byte:0x0", Data::Byte(0)),
        ("byte:0xff", Data::Byte(255)),
    ] {
        let Event::Write { data, .. } = clone(&format!("write at=0 data={d}")) else {
            panic!()
        };
        assert_eq!(data, Some(want));
    }
    assert_eq!(
        era("discard block=2 id=d async"),
        Event::Discard {
            loc: Loc::Blocks(2, 3),
            id: Some("d".into()),
            is_async: true
        }
    );
    assert_eq!(
        clone("discard at=0+8"),
        Event::Discard {
            loc: Loc::Sectors(0, 8),
            id: None,
            is_async: false
        }
    );
    assert_eq!(
        clone("flush"),
        Event::Flush {
            id: None,
            is_async: false
        }
    );
    assert_eq!(
        era("flush async id=7"),
        Event::Flush {
            id: Some("7".into()),
            is_async: true
        }
    );
    assert_eq!(
        clone("read at=0+2"),
        Event::Read {
            loc: Loc::Sectors(0, 2),
            expect: None
        }
    );
    assert_eq!(
        clone("read region=1 expect=src,w1,7,dest:3"),
        Event::Read {
            loc: Loc::Regions(1, 2),
            expect: Some(["src", "w1", "7", "dest:3"].map(String::from).to_vec())
        }
    );
    assert_eq!(
        era("read block=0 expect=zero"),
        Event::Read {
            loc: Loc::Blocks(0, 1),
            expect: Some(vec!["zero".into()])
        }
    );
    assert_eq!(clone("complete id=w1"), Event::Complete { id: "w1".into() });
}

#[test]
fn control_verbs() {
    for target in ["clone", "era"] {
        let e = |s: &str| ev(target, s);
        assert_eq!(e("tick"), Event::Tick { ms: None });
        assert_eq!(e("tick ms=250"), Event::Tick { ms: Some(250) });
        assert_eq!(e("worker"), Event::Worker);
        assert_eq!(e("suspend"), Event::Suspend);
        assert_eq!(e("resume"), Event::Resume);
        assert_eq!(e("remove"), Event::Remove);
        assert_eq!(e("recover"), Event::Recover);
        assert_eq!(e("status"), Event::Status { noflush: false });
        assert_eq!(e("status noflush"), Event::Status { noflush: true });
        assert_eq!(
            e("crash"),
            Event::Crash {
                mode: CrashMode::Enumerate
            }
        );
        assert_eq!(
            e("crash mode=enumerate"),
            Event::Crash {
                mode: CrashMode::Enumerate
            }
        );
        assert_eq!(
            e("crash mode=durable"),
            Event::Crash {
                mode: CrashMode::Durable
            }
        );
        assert_eq!(
            e("crash mode=all-landed"),
            Event::Crash {
                mode: CrashMode::AllLanded
            }
        );
        assert_eq!(
            e("crash mode=state:17-3"),
            Event::Crash {
                mode: CrashMode::State("17-3".into())
            }
        );
        assert_eq!(
            e("mark label=phase-2"),
            Event::Mark {
                label: "phase-2".into()
            }
        );
        assert_eq!(
            e("mark label=1_0"),
            Event::Mark {
                label: "1_0".into()
            }
        );
        assert_eq!(e("commit.meta"), Event::CommitMeta);
        assert_eq!(e("commit.super"), Event::CommitSuper);
    }
}

#[test]
fn clone_verbs() {
    assert_eq!(
        clone("msg enable_hydration"),
        Event::Msg(CloneMsg::EnableHydration)
    );
    assert_eq!(
        clone("msg disable_hydration"),
        Event::Msg(CloneMsg::DisableHydration)
    );
    assert_eq!(
        clone("msg hydration_threshold=8"),
        Event::Msg(CloneMsg::HydrationThreshold(8))
    );
    assert_eq!(
        clone("msg hydration_batch_size=0x2"),
        Event::Msg(CloneMsg::HydrationBatchSize(2))
    );
    assert_eq!(clone("wait hydrated=3"), Event::Wait(WaitFor::Count(3)));
    assert_eq!(clone("wait hydrated=all"), Event::Wait(WaitFor::All));
    assert_eq!(
        clone("hydrate.start region=4"),
        Event::HydrateStart { start: 4, end: 5 }
    );
    assert_eq!(
        clone("hydrate.start region=4..7"),
        Event::HydrateStart { start: 4, end: 7 }
    );
    assert_eq!(
        clone("hydrate.done region=4"),
        Event::HydrateDone { region: 4 }
    );
    assert_eq!(clone("commit"), Event::Commit);
    assert_eq!(clone("commit.pre"), Event::CommitPre);
    assert_eq!(clone("commit.flush-dest"), Event::CommitFlushDest);
}

#[test]
fn era_verbs() {
    assert_eq!(era("checkpoint"), Event::Checkpoint);
    assert_eq!(era("snap.take"), Event::SnapTake);
    assert_eq!(era("snap.drop"), Event::SnapDrop);
    assert_eq!(era("worker.mark"), Event::WorkerMark);
    assert_eq!(era("worker.commit"), Event::WorkerCommit);
    assert_eq!(era("worker.submit"), Event::WorkerSubmit);
    assert_eq!(era("digest.step"), Event::DigestStep { n: None });
    assert_eq!(era("digest.step n=100"), Event::DigestStep { n: Some(100) });
}

#[test]
fn predicates() {
    let p = |target: &str, s: &str| match ev(target, &format!("expect {s}")) {
        Event::Expect(p) => p,
        e => panic!("{e:?}"),
    };
    assert_eq!(
        p("clone", "hydrated regions=0"),
        Predicate::Hydrated(set(&[(0, 1)]))
    );
    assert_eq!(
        p("clone", "hydrated regions=2..4"),
        Predicate::Hydrated(set(&[(2, 4)]))
    );
    assert_eq!(
        p("clone", "hydrated regions=1,3..5,9"),
        Predicate::Hydrated(set(&[(1, 2), (3, 5), (9, 10)]))
    );
    assert_eq!(
        p("clone", "not-hydrated regions=none"),
        Predicate::NotHydrated(set(&[]))
    );
    assert_eq!(
        p("era", "read at=8 data=b"),
        Predicate::Read {
            loc: Loc::Sectors(8, 9),
            data: vec!["b".into()]
        }
    );
    assert_eq!(p("era", "era=4"), Predicate::Era(4));
    assert_eq!(
        p("era", "written-since era=2 exact=7,9"),
        Predicate::WrittenSince {
            era: 2,
            exact: Some(set(&[(7, 8), (9, 10)])),
            includes: None
        }
    );
    assert_eq!(
        p("era", "written-since includes=none exact=1+2 era=0"),
        Predicate::WrittenSince {
            era: 0,
            exact: Some(set(&[(1, 3)])),
            includes: Some(set(&[]))
        }
    );
    for target in ["clone", "era"] {
        assert_eq!(p(target, "meta-check ok"), Predicate::MetaCheckOk);
        assert_eq!(
            p(target, "violation id=G3"),
            Predicate::Violation("G3".into())
        );
    }
}
