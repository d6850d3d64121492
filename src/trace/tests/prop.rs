//! Property tests: every valid trace prints to text that parses back to it, and
//! no input makes the parser panic.

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::super::*;

/// Numbers, often small, sometimes near `u64::MAX`.
fn num() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..100u64, 1 => any::<u64>()]
}

/// A non-empty half-open span.
fn span() -> BoxedStrategy<(u64, u64)> {
    prop_oneof![
        (0..1000u64, 1..20u64).prop_map(|(a, n)| (a, a + n)),
        (0..u64::MAX - 1).prop_flat_map(|a| (Just(a), a + 1..=u64::MAX)),
    ]
    .boxed()
}

/// A possibly empty half-open span.
fn any_span() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![span(), (0..u64::MAX).prop_map(|a| (a, a))]
}

fn ranges() -> impl Strategy<Value = Ranges> {
    vec(any_span(), 0..5).prop_map(Ranges)
}

/// A word that parses as a word: it starts with a letter, or digits run into
/// letters.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z][a-zA-Z0-9_:/.-]{0,8}",
        "[0-9]{1,3}[g-wyz][a-z0-9._]{0,3}"
    ]
}

/// How an `id=` or stamp may be spelt: a word or a number.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![word(), "[0-9][0-9_]{0,6}", "0x[0-9a-fA-F]{1,8}"]
}

fn value() -> impl Strategy<Value = Value> {
    let item = prop_oneof![
        num().prop_map(Value::Num),
        any_span().prop_map(|(a, b)| Value::Range(a, b)),
        word().prop_map(Value::Word),
    ];
    prop_oneof![item.clone(), vec(item, 2..5).prop_map(Value::List)]
}

/// `x-` keys and values, each key once.
fn extra() -> impl Strategy<Value = Vec<(String, Value)>> {
    vec(("x-[a-z0-9_-]{0,5}", value()), 0..3).prop_map(|mut kv| {
        let mut seen = std::collections::HashSet::new();
        kv.retain(|(k, _)| seen.insert(k.clone()));
        kv
    })
}

fn header(target: Target) -> impl Strategy<Value = Header> {
    let own: Vec<Variant> = Variant::ALL
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| v.applies_to(target))
        .collect();
    let variant = of(prop::sample::select(own));
    let outcome = of(prop_oneof![
        Just(Outcome::Ok),
        Just(Outcome::Refused),
        "[A-Z][0-9]{1,2}".prop_map(Outcome::Violation)
    ]);
    (variant, outcome, of(num()), of(text()), extra()).prop_map(
        move |(variant, expect, seed, kernel, extra)| Header {
            target,
            variant,
            expect,
            seed,
            kernel,
            extra,
        },
    )
}

fn config(target: Target) -> impl Strategy<Value = Config> {
    let init = || of(prop_oneof![Just(Init::Stamp), Just(Init::Zero)]);
    let cache = || {
        of(prop_oneof![
            Just(CacheMode::Volatile),
            Just(CacheMode::Writethrough)
        ])
    };
    let common = (
        (
            of(num()),
            of(prop_oneof![Just(512u64), Just(4096)]),
            of(num()),
            of(num()),
        ),
        (init(), init(), any::<bool>()),
        (cache(), cache(), cache()),
        extra(),
    );
    let clone = (
        of(num()),
        of(any::<bool>()),
        of(num()),
        of(num()),
        of(any::<bool>()),
    );
    let era = (of(num()), of(num()));
    (common, clone, era).prop_map(move |(c, cl, e)| {
        let (
            (size, logical_block, meta_block, meta_size),
            (dest_init, source_init, discard_zeroes),
            caches,
            extra,
        ) = c;
        let (cache, meta_cache, dest_cache) = caches;
        let mut config = Config {
            size,
            logical_block,
            meta_block,
            meta_size,
            dest_init,
            source_init,
            discard_zeroes,
            cache,
            meta_cache,
            dest_cache,
            extra,
            ..Config::default()
        };
        if target == Target::Clone {
            (
                config.region,
                config.hydration,
                config.threshold,
                config.batch,
                config.discard_passdown,
            ) = cl;
        } else {
            (config.block, config.start_era) = e;
        }
        config
    })
}

fn loc(target: Target) -> impl Strategy<Value = Loc> {
    let (a, b) = (span(), span());
    let own = if target == Target::Clone {
        a.prop_map(|(a, b)| Loc::Regions(a, b)).boxed()
    } else {
        a.prop_map(|(a, b)| Loc::Blocks(a, b)).boxed()
    };
    prop_oneof![b.prop_map(|(a, b)| Loc::Sectors(a, b)), own]
}

fn predicate(target: Target) -> BoxedStrategy<Predicate> {
    let common = prop_oneof![
        (span(), vec(text(), 1..5)).prop_map(|((a, b), data)| Predicate::Read {
            loc: Loc::Sectors(a, b),
            data
        }),
        Just(Predicate::MetaCheckOk),
        text().prop_map(Predicate::Violation),
    ];
    match target {
        Target::Clone => prop_oneof![
            common,
            ranges().prop_map(Predicate::Hydrated),
            ranges().prop_map(Predicate::NotHydrated),
        ]
        .boxed(),
        Target::Era => prop_oneof![
            common,
            num().prop_map(Predicate::Era),
            (num(), of(ranges()), ranges()).prop_map(|(era, exact, inc)| Predicate::WrittenSince {
                era,
                includes: if exact.is_none() { Some(inc) } else { None },
                exact,
            }),
            (num(), ranges(), ranges()).prop_map(|(era, exact, inc)| Predicate::WrittenSince {
                era,
                exact: Some(exact),
                includes: Some(inc)
            }),
        ]
        .boxed(),
    }
}

fn event(target: Target) -> BoxedStrategy<Event> {
    let id = || of(text());
    let common = prop_oneof![
        config(target).prop_map(Event::Config),
        (
            loc(target),
            any::<[bool; 3]>(),
            of(prop_oneof![
                Just(Data::Stamp),
                Just(Data::Zero),
                any::<u8>().prop_map(Data::Byte)
            ]),
            id()
        )
            .prop_map(|(loc, [fua, preflush, is_async], data, id)| Event::Write {
                loc,
                fua,
                preflush,
                data,
                id,
                is_async
            }),
        (loc(target), id(), any::<bool>()).prop_map(|(loc, id, is_async)| Event::Discard {
            loc,
            id,
            is_async
        }),
        (id(), any::<bool>()).prop_map(|(id, is_async)| Event::Flush { id, is_async }),
        (loc(target), of(vec(text(), 1..4))).prop_map(|(loc, expect)| Event::Read { loc, expect }),
        text().prop_map(|id| Event::Complete { id }),
        of(num()).prop_map(|ms| Event::Tick { ms }),
        any::<bool>().prop_map(|noflush| Event::Status { noflush }),
        prop_oneof![
            Just(CrashMode::Enumerate),
            Just(CrashMode::Durable),
            Just(CrashMode::AllLanded),
            "[a-z0-9_.:-]{1,6}".prop_map(CrashMode::State)
        ]
        .prop_map(|mode| Event::Crash { mode }),
        text().prop_map(|label| Event::Mark { label }),
        predicate(target).prop_map(Event::Expect),
        prop::sample::select(vec![
            Event::Worker,
            Event::Suspend,
            Event::Resume,
            Event::Remove,
            Event::Recover,
            Event::Reload,
            Event::CommitMeta,
            Event::CommitSuper
        ]),
    ];
    match target {
        Target::Clone => prop_oneof![
            common,
            prop_oneof![
                Just(CloneMsg::EnableHydration),
                Just(CloneMsg::DisableHydration),
                num().prop_map(CloneMsg::HydrationThreshold),
                num().prop_map(CloneMsg::HydrationBatchSize),
            ]
            .prop_map(Event::Msg),
            prop_oneof![Just(WaitFor::All), num().prop_map(WaitFor::Count)].prop_map(Event::Wait),
            span().prop_map(|(start, end)| Event::HydrateStart { start, end }),
            num().prop_map(|region| Event::HydrateDone { region }),
            prop::sample::select(vec![
                Event::Commit,
                Event::CommitPre,
                Event::CommitFlushDest
            ]),
        ]
        .boxed(),
        Target::Era => prop_oneof![
            common,
            of(num()).prop_map(|n| Event::DigestStep { n }),
            prop::sample::select(vec![
                Event::Checkpoint,
                Event::SnapTake,
                Event::SnapDrop,
                Event::WorkerMark,
                Event::WorkerCommit,
                Event::WorkerSubmit
            ]),
        ]
        .boxed(),
    }
}

fn trace() -> impl Strategy<Value = Trace> {
    prop_oneof![Just(Target::Clone), Just(Target::Era)].prop_flat_map(|target| {
        let stmt = (of(num()), event(target)).prop_map(|(time, event)| Stmt {
            line: 0,
            time,
            event,
        });
        (header(target), vec(stmt, 0..12)).prop_map(|(header, stmts)| {
            let mut t = Trace { header, stmts };
            t.renumber();
            t
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_traces_parse_back(t in trace()) {
        let text = t.to_string();
        prop_assert_eq!(parse(&text), Ok(t), "{}", text);
    }

    #[test]
    fn printed_text_is_a_fixed_point(t in trace()) {
        let text = t.to_string();
        prop_assert_eq!(parse(&text).map(|t| t.to_string()), Ok(text));
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse(&s);
        let _ = parse(&format!("dmtrace 1 clone\n{s}"));
    }

    #[test]
    fn edited_traces_never_panic(t in trace(), at in any::<prop::sample::Index>(), junk in "[ -~\t\n]{0,4}") {
        let mut text = t.to_string();
        let mut cut = at.index(text.len() + 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.insert_str(cut, &junk);
        if let Ok(u) = parse(&text) {
            // Whatever parses prints to text that parses to the same trace.
            let mut again = parse(&u.to_string()).expect("printed trace parses");
            let mut u = u;
            u.renumber();
            again.renumber();
            prop_assert_eq!(again, u);
        }
    }
}
