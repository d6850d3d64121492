//! Stage 2: a generic statement to a typed [`Event`], checking per verb and per
//! target which keys are allowed and which are required.

mod args;
mod expect;

use args::Args;

use super::parse::{quote, RawStmt};
use super::{
    CacheMode, CloneMsg, Config, CrashMode, Data, Event, Header, Init, Loc, Outcome, Target,
    TraceError, Value, Variant, WaitFor,
};

type Result<T> = std::result::Result<T, TraceError>;

/// Verbs of both targets.
const COMMON: &[&str] = &[
    "config",
    "write",
    "discard",
    "flush",
    "read",
    "complete",
    "tick",
    "worker",
    "suspend",
    "resume",
    "status",
    "remove",
    "crash",
    "recover",
    "reload",
    "mark",
    "expect",
    "commit.meta",
    "commit.super",
];

/// dm-clone verbs.
const CLONE: &[&str] = &[
    "msg",
    "wait",
    "hydrate.start",
    "hydrate.done",
    "commit",
    "commit.pre",
    "commit.flush-dest",
];

/// dm-era verbs.
const ERA: &[&str] = &[
    "checkpoint",
    "snap.take",
    "snap.drop",
    "worker.mark",
    "worker.commit",
    "worker.submit",
    "digest.step",
];

pub(super) fn target_name(t: Target) -> &'static str {
    match t {
        Target::Clone => "dm-clone",
        Target::Era => "dm-era",
    }
}

/// The header's keys (the stage-1 statement of the header line, verb `dmtrace`).
pub(super) fn header(target: Target, s: &RawStmt<'_>) -> Result<Header> {
    let args = Args::new(s, "dmtrace", &["variant", "expect", "seed", "kernel"], None)?;
    for a in args.all() {
        if a.value.is_none() {
            return Err(s.err(
                a.key_at,
                format!(
                    "expected `{}=` with a value, found a bare `{}`",
                    a.key, a.key
                ),
            ));
        }
    }
    let variant = match args.word("variant", "a variant name")? {
        None => None,
        Some((w, v)) => match Variant::from_name(w) {
            Some(x) if x.applies_to(target) => Some(x),
            found => {
                let what = if found.is_some() {
                    format!("variant {} is not a {} bug", quote(w), target_name(target))
                } else {
                    format!("unknown variant {}", quote(w))
                };
                return Err(s.err(
                    v.at,
                    format!(
                        "{what} (expected one of: {})",
                        Variant::names_for(target).join(", ")
                    ),
                ));
            }
        },
    };
    let expect = match args.word("expect", "`ok`, `refused` or `violation:<ID>`")? {
        None => None,
        Some(("ok", _)) => Some(Outcome::Ok),
        Some(("refused", _)) => Some(Outcome::Refused),
        Some((w, v)) => match w.strip_prefix("violation:") {
            Some(id) if !id.is_empty() => Some(Outcome::Violation(id.to_string())),
            _ => return Err(args.kind(v, "`ok`, `refused` or `violation:<ID>`")),
        },
    };
    Ok(Header {
        target,
        variant,
        expect,
        seed: args.num("seed")?,
        kernel: args.text("kernel")?,
        extra: args.extra()?,
    })
}

/// Lowers one statement of a `target` trace.
pub(super) fn lower(target: Target, s: &RawStmt<'_>) -> Result<Event> {
    let v = s.verb;
    let owner = if CLONE.contains(&v) {
        Some(Target::Clone)
    } else if ERA.contains(&v) {
        Some(Target::Era)
    } else {
        None
    };
    match owner {
        Some(t) if t != target => {
            let msg = format!(
                "{} is a {} verb; this is a {} trace",
                quote(v),
                target_name(t),
                target_name(target)
            );
            return Err(s.err(s.verb_at, msg));
        }
        None if !COMMON.contains(&v) => {
            let own = if target == Target::Clone { CLONE } else { ERA };
            let all: Vec<&str> = COMMON.iter().chain(own).copied().collect();
            let msg = format!(
                "unknown verb {} (expected one of: {})",
                quote(v),
                all.join(", ")
            );
            return Err(s.err(s.verb_at, msg));
        }
        _ => {}
    }
    let clone = target == Target::Clone;
    let loc_keys: &[&str] = if clone {
        &["at", "region"]
    } else {
        &["at", "block"]
    };
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        loc_keys.iter().chain(extra).copied().collect()
    };
    let bare = |event: Event| Args::new(s, v, &[], None).map(|_| event);
    match v {
        "config" => config(target, s),
        "write" => {
            let a = Args::new(
                s,
                v,
                &with(&["fua", "preflush", "data", "id", "async"]),
                None,
            )?;
            Ok(Event::Write {
                loc: loc(&a, clone)?,
                fua: a.flag("fua")?,
                preflush: a.flag("preflush")?,
                data: data(&a)?,
                id: a.text("id")?,
                is_async: a.flag("async")?,
            })
        }
        "discard" => {
            let a = Args::new(s, v, &with(&["id", "async"]), None)?;
            Ok(Event::Discard {
                loc: loc(&a, clone)?,
                id: a.text("id")?,
                is_async: a.flag("async")?,
            })
        }
        "flush" => {
            let a = Args::new(s, v, &["id", "async"], None)?;
            Ok(Event::Flush {
                id: a.text("id")?,
                is_async: a.flag("async")?,
            })
        }
        "read" => {
            let a = Args::new(s, v, &with(&["expect"]), None)?;
            Ok(Event::Read {
                loc: loc(&a, clone)?,
                expect: a.words("expect")?,
            })
        }
        "complete" => {
            let a = Args::new(s, v, &["id"], None)?;
            Ok(Event::Complete {
                id: a.need(a.text("id")?, "id", "the I/O to complete")?,
            })
        }
        "tick" => Ok(Event::Tick {
            ms: Args::new(s, v, &["ms"], None)?.num("ms")?,
        }),
        "worker" => bare(Event::Worker),
        "suspend" => bare(Event::Suspend),
        "resume" => bare(Event::Resume),
        "remove" => bare(Event::Remove),
        "recover" => bare(Event::Recover),
        "reload" => bare(Event::Reload),
        "status" => Ok(Event::Status {
            noflush: Args::new(s, v, &["noflush"], None)?.flag("noflush")?,
        }),
        "crash" => crash(s),
        "mark" => {
            let a = Args::new(s, v, &["label"], None)?;
            Ok(Event::Mark {
                label: a.need(a.text("label")?, "label", "a word or number")?,
            })
        }
        "expect" => Ok(Event::Expect(expect::predicate(target, s)?)),
        "commit.meta" => bare(Event::CommitMeta),
        "commit.super" => bare(Event::CommitSuper),
        "msg" => msg(s),
        "wait" => {
            let a = Args::new(s, v, &["hydrated"], None)?;
            let what = "a number or `all`";
            let val = a.need(a.value("hydrated", what)?, "hydrated", what)?;
            Ok(Event::Wait(match &val.value {
                Value::Num(n) => WaitFor::Count(*n),
                Value::Word(w) if w == "all" => WaitFor::All,
                _ => return Err(a.kind(val, what)),
            }))
        }
        "hydrate.start" => {
            let a = Args::new(s, v, &["region"], None)?;
            let what = "a region number or range";
            let (start, end) = a.need(a.span("region", what)?, "region", what)?;
            Ok(Event::HydrateStart { start, end })
        }
        "hydrate.done" => {
            let a = Args::new(s, v, &["region"], None)?;
            Ok(Event::HydrateDone {
                region: a.need(a.num("region")?, "region", "a region number")?,
            })
        }
        "commit" => bare(Event::Commit),
        "commit.pre" => bare(Event::CommitPre),
        "commit.flush-dest" => bare(Event::CommitFlushDest),
        "checkpoint" => bare(Event::Checkpoint),
        "snap.take" => bare(Event::SnapTake),
        "snap.drop" => bare(Event::SnapDrop),
        "worker.mark" => bare(Event::WorkerMark),
        "worker.commit" => bare(Event::WorkerCommit),
        "worker.submit" => bare(Event::WorkerSubmit),
        _ => {
            debug_assert_eq!(v, "digest.step");
            Ok(Event::DigestStep {
                n: Args::new(s, v, &["n"], None)?.num("n")?,
            })
        }
    }
}

/// Exactly one of `at=`, `region=` (clone), `block=` (era).
fn loc(a: &Args<'_, '_>, clone: bool) -> Result<Loc> {
    let keys = if clone {
        ["at", "region"]
    } else {
        ["at", "block"]
    };
    let mut given = a.all().iter().filter(|x| keys.contains(&x.key));
    let Some(first) = given.next() else {
        return Err(a.missing(&format!("a location, `at=` or `{}=`", keys[1])));
    };
    if let Some(second) = given.next() {
        let msg = format!(
            "a second location `{}=`: `{}=` is already given",
            second.key, first.key
        );
        return Err(a.err(second.key_at, msg));
    }
    let what = match first.key {
        "at" => "a sector range (`a+n` or `a..b`) or a sector number",
        "region" => "a region number or range",
        _ => "an era block number or range",
    };
    let (start, end) = a.need(a.span(first.key, what)?, first.key, what)?;
    Ok(match first.key {
        "at" => Loc::Sectors(start, end),
        "region" => Loc::Regions(start, end),
        _ => Loc::Blocks(start, end),
    })
}

/// `data=stamp|zero|byte:0xNN`.
fn data(a: &Args<'_, '_>) -> Result<Option<Data>> {
    let what = "`stamp`, `zero` or `byte:0xNN`";
    let Some((w, v)) = a.word("data", what)? else {
        return Ok(None);
    };
    let byte = |h: &str| {
        (1..=2)
            .contains(&h.len())
            .then(|| u8::from_str_radix(h, 16).ok())
            .flatten()
    };
    match w {
        "stamp" => Ok(Some(Data::Stamp)),
        "zero" => Ok(Some(Data::Zero)),
        _ => match w.strip_prefix("byte:0x").and_then(byte) {
            Some(b) => Ok(Some(Data::Byte(b))),
            None => Err(a.kind(v, what)),
        },
    }
}

fn crash(s: &RawStmt<'_>) -> Result<Event> {
    let a = Args::new(s, "crash", &["mode"], None)?;
    let what = "`enumerate`, `durable`, `all-landed` or `state:<id>`";
    let mode = match a.word("mode", what)? {
        None | Some(("enumerate", _)) => CrashMode::Enumerate,
        Some(("durable", _)) => CrashMode::Durable,
        Some(("all-landed", _)) => CrashMode::AllLanded,
        Some((w, v)) => match w.strip_prefix("state:") {
            Some(id) if !id.is_empty() => CrashMode::State(id.to_string()),
            _ => return Err(a.kind(v, what)),
        },
    };
    Ok(Event::Crash { mode })
}

fn config(target: Target, s: &RawStmt<'_>) -> Result<Event> {
    const COMMON: &[&str] = &[
        "size",
        "logical_block",
        "meta_block",
        "meta_size",
        "dest_init",
        "source_init",
        "discard_zeroes",
        "cache",
        "meta_cache",
        "dest_cache",
    ];
    const CLONE: &[&str] = &[
        "region",
        "hydration",
        "threshold",
        "batch",
        "discard_passdown",
    ];
    const ERA: &[&str] = &["block", "start_era"];
    let own = if target == Target::Clone { CLONE } else { ERA };
    let allowed: Vec<&str> = COMMON.iter().chain(own).copied().collect();
    let a = Args::new(s, "config", &allowed, None)?;
    let init = [("stamp", Init::Stamp), ("zero", Init::Zero)];
    let cache = [
        ("volatile", CacheMode::Volatile),
        ("writethrough", CacheMode::Writethrough),
    ];
    let on_off = [("on", true), ("off", false)];
    let logical_block = a.num("logical_block")?;
    if let (Some(n), Some(v)) = (logical_block, a.value("logical_block", "")?) {
        if n != 512 && n != 4096 {
            return Err(a.kind(v, "`512` or `4096`"));
        }
    }
    Ok(Event::Config(Config {
        size: a.num("size")?,
        logical_block,
        meta_block: a.num("meta_block")?,
        meta_size: a.num("meta_size")?,
        dest_init: a.choice("dest_init", &init)?,
        source_init: a.choice("source_init", &init)?,
        discard_zeroes: a.flag("discard_zeroes")?,
        cache: a.choice("cache", &cache)?,
        meta_cache: a.choice("meta_cache", &cache)?,
        dest_cache: a.choice("dest_cache", &cache)?,
        region: a.num("region")?,
        hydration: a.choice("hydration", &on_off)?,
        threshold: a.num("threshold")?,
        batch: a.num("batch")?,
        discard_passdown: a.choice("discard_passdown", &on_off)?,
        block: a.num("block")?,
        start_era: a.num("start_era")?,
        extra: a.extra()?,
    }))
}

/// `msg`: exactly one message.
fn msg(s: &RawStmt<'_>) -> Result<Event> {
    let names = [
        "enable_hydration",
        "disable_hydration",
        "hydration_threshold",
        "hydration_batch_size",
    ];
    let a = Args::new(s, "msg", &names, None)?;
    let (first, rest) = match a.all() {
        [] => {
            let msg = format!("`msg` needs a message ({})", names.join(", "));
            return Err(s.err(s.verb_end, msg));
        }
        [first, rest @ ..] => (first, rest),
    };
    if let Some(second) = rest.first() {
        return Err(s.err(
            second.key_at,
            format!(
                "`msg` takes one message, found a second, {}",
                quote(second.key)
            ),
        ));
    }
    let m = match first.key {
        "enable_hydration" | "disable_hydration" => {
            a.flag(first.key)?;
            if first.key == "enable_hydration" {
                CloneMsg::EnableHydration
            } else {
                CloneMsg::DisableHydration
            }
        }
        "hydration_threshold" => {
            CloneMsg::HydrationThreshold(a.need(a.num(first.key)?, first.key, "a number")?)
        }
        _ => CloneMsg::HydrationBatchSize(a.need(a.num(first.key)?, first.key, "a number")?),
    };
    Ok(Event::Msg(m))
}
