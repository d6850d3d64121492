//! `expect <predicate> ...`: the first argument names the predicate, the others
//! are its keys.

use super::super::parse::{quote, RawStmt};
use super::super::{Loc, Predicate, Target, TraceError, Value};
use super::{target_name, Args};

type Result<T> = std::result::Result<T, TraceError>;

/// `expect <predicate> ...`: the first argument names the predicate.
pub(super) fn predicate(target: Target, s: &RawStmt<'_>) -> Result<Predicate> {
    let names = "hydrated, not-hydrated, read, era=, written-since, meta-check, violation";
    let Some(idx) = s.args.iter().position(|a| !a.key.starts_with("x-")) else {
        return Err(s.err(s.verb_end, format!("`expect` needs a predicate ({names})")));
    };
    let p = &s.args[idx];
    let only = |t: Target| {
        if t == target {
            return Ok(());
        }
        let msg = format!(
            "`expect {}` is a {} predicate; this is a {} trace",
            p.key,
            target_name(t),
            target_name(target)
        );
        Err(s.err(p.key_at, msg))
    };
    let name = format!("expect {}", p.key);
    let args = |allowed: &[&str]| Args::new(s, &name, allowed, Some(idx));
    if p.key != "era" {
        if let Some(v) = &p.value {
            return Err(s.err(
                v.at,
                format!(
                    "the predicate `{}` takes no value, found {}",
                    p.key,
                    quote(v.text)
                ),
            ));
        }
    }
    let set = "a number, range, list or `none`";
    Ok(match p.key {
        "hydrated" | "not-hydrated" => {
            only(Target::Clone)?;
            let a = args(&["regions"])?;
            let r = a.need(a.set("regions")?, "regions", set)?;
            if p.key == "hydrated" {
                Predicate::Hydrated(r)
            } else {
                Predicate::NotHydrated(r)
            }
        }
        "read" => {
            let a = args(&["at", "data"])?;
            let what = "a sector range (`a+n` or `a..b`) or a sector number";
            let (start, end) = a.need(a.span("at", what)?, "at", what)?;
            let data = a.need(a.words("data")?, "data", "one stamp word per sector")?;
            Predicate::Read {
                loc: Loc::Sectors(start, end),
                data,
            }
        }
        "era" => {
            only(Target::Era)?;
            args(&[])?;
            match &p.value {
                Some(v) => match v.value {
                    Value::Num(n) => Predicate::Era(n),
                    _ => {
                        return Err(
                            s.err(v.at, format!("expected a number, found {}", quote(v.text)))
                        )
                    }
                },
                None => {
                    return Err(s.err(
                        p.key_at,
                        "expected `era=` with a number, found a bare `era`",
                    ))
                }
            }
        }
        "written-since" => {
            only(Target::Era)?;
            let a = args(&["era", "exact", "includes"])?;
            let era = a.need(a.num("era")?, "era", "the threshold era")?;
            let (exact, includes) = (a.set("exact")?, a.set("includes")?);
            if exact.is_none() && includes.is_none() {
                return Err(s.err(
                    p.key_at,
                    "`expect written-since` needs `exact=` or `includes=`",
                ));
            }
            Predicate::WrittenSince {
                era,
                exact,
                includes,
            }
        }
        "meta-check" => {
            let a = args(&["ok"])?;
            if !a.flag("ok")? {
                return Err(s.err(p.key_at + p.key.len(), "`expect meta-check` needs `ok`"));
            }
            Predicate::MetaCheckOk
        }
        "violation" => {
            let a = args(&["id"])?;
            Predicate::Violation(a.need(a.text("id")?, "id", "the invariant, such as I2")?)
        }
        _ => {
            return Err(s.err(
                p.key_at,
                format!(
                    "unknown predicate {} (expected one of: {names})",
                    quote(p.key)
                ),
            ))
        }
    })
}
