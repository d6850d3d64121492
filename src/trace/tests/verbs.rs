//! Each verb and `expect` predicate, with every key.

use super::super::*;
use super::{clone, era, ev, set};

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
