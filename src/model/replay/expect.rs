//! Checking `expect` predicates: on the live model, or on a metadata image (a
//! crash state, or what `remove` left), with the production checkers, dumpers
//! and `era_invalidate`.

use super::*;

/// The stamp words of `expect read` / `read expect=`.
pub(super) fn stamp_name<'a>(v: DataVal, name: impl Fn(u32) -> Option<&'a str>) -> String {
    match v.origin {
        Origin::Init(0) => "src".into(),
        Origin::Init(_) => "dest".into(),
        Origin::User(n) => name(n).unwrap_or("?").to_string(),
        Origin::Zero => "zero".into(),
        Origin::Byte(b) => format!("byte:0x{b:02x}"),
        Origin::Discarded => "discarded".into(),
    }
}

pub(super) fn clone_read(m: &CloneModel, s: u64, e: u64) -> Vec<String> {
    (s..e)
        .map(|x| {
            let h = m.is_hydrated_in_core(m.region_of(x)).unwrap_or(false);
            stamp_name(m.read_sector(x, h), |n| m.user_name(n))
        })
        .collect()
}

/// `expect read` on a crash state: hydrated (per the crash image's bitset)
/// sectors read the destination as the crash left it, others the source.
pub(super) fn crash_read(
    m: &CloneModel,
    meta: &MetaImage,
    dest: &ExtentMap<DataVal>,
    loc: &Loc,
    want: &[String],
) -> Result<(bool, String), String> {
    let (s, e) = clone_sectors(m, loc).map_err(|e| e.to_string())?;
    let bits = crate::verify::image_hydrated(meta)?;
    let found: Vec<String> = (s..e)
        .map(|x| {
            let v = if bits.get(m.region_of(x)) {
                dest.get(x)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| m.dest_base(x))
            } else {
                m.read_sector(x, false)
            };
            stamp_name(v, |n| m.user_name(n))
        })
        .collect();
    Ok((found == want, found.join(",")))
}

pub(super) fn hydrated_check(
    runs: &[(u64, u64)],
    want: &Ranges,
    hydrated: bool,
    is_h: impl Fn(u64) -> bool,
) -> (bool, String) {
    let bad: Vec<u64> = want
        .iter()
        .filter(|&r| is_h(r) != hydrated)
        .take(8)
        .collect();
    let found = format!("hydrated {}", Ranges(runs.to_vec()));
    (
        bad.is_empty(),
        if bad.is_empty() {
            found
        } else {
            format!("{found} (regions {bad:?} differ)")
        },
    )
}

pub(super) fn check_clone_live(m: &CloneModel, p: &Predicate) -> Result<(bool, String), String> {
    let runs = m.in_core_hydrated().unwrap_or_default();
    let is_h = |r: u64| m.is_hydrated_in_core(r).unwrap_or(false);
    match p {
        Predicate::Hydrated(w) => Ok(hydrated_check(&runs, w, true, is_h)),
        Predicate::NotHydrated(w) => Ok(hydrated_check(&runs, w, false, is_h)),
        Predicate::Read { loc, data } => {
            let (s, e) = clone_sectors(m, loc).map_err(|e| e.to_string())?;
            let found = clone_read(m, s, e);
            Ok((&found == data, found.join(",")))
        }
        _ => check_on_image(Target::Clone, &m.meta_image(), p),
    }
}

pub(super) fn check_on_image(
    target: Target,
    img: &MetaImage,
    p: &Predicate,
) -> Result<(bool, String), String> {
    match (p, target) {
        (Predicate::MetaCheckOk, Target::Clone) => {
            let o = crate::clone::check::check(img, &Default::default());
            Ok(report_verdict(&o.report))
        }
        (Predicate::MetaCheckOk, Target::Era) => {
            let o = crate::era::check::check(img, &Default::default());
            Ok(report_verdict(&o.report))
        }
        (Predicate::Hydrated(w) | Predicate::NotHydrated(w), Target::Clone) => {
            let bits = crate::verify::image_hydrated(img)?;
            let runs = bits.runs();
            Ok(hydrated_check(
                &runs,
                w,
                matches!(p, Predicate::Hydrated(_)),
                |r| bits.get(r),
            ))
        }
        (Predicate::Era(e), Target::Era) => {
            let (s, _) = esb::read_at(img, 0).map_err(|e| e.to_string())?;
            Ok((
                s.current_era as u64 == *e,
                format!("era {} (superblock)", s.current_era),
            ))
        }
        (
            Predicate::WrittenSince {
                era,
                exact,
                includes,
            },
            Target::Era,
        ) => {
            let inv = invalidate(
                img,
                InvalidateOptions {
                    written_since: (*era).min(u32::MAX as u64) as u32,
                    metadata_snapshot: false,
                },
            )
            .map_err(|e| e.to_string())?;
            let runs: Vec<(u64, u64)> = inv.runs().collect();
            let mut ok = true;
            if let Some(x) = exact {
                let mut want: Vec<u64> = x.iter().collect();
                want.sort_unstable();
                want.dedup();
                let got: Vec<u64> = runs.iter().flat_map(|&(a, b)| a..b).collect();
                ok &= want == got;
            }
            if let Some(x) = includes {
                ok &= x.iter().all(|b| inv.contains(b));
            }
            Ok((ok, format!("written since {era}: {}", Ranges(runs))))
        }
        (Predicate::Violation(id), _) => Err(format!(
            "expect violation id={id} needs crash-state enumeration, which this replay does not run"
        )),
        (p, t) => Err(format!("{p} is not a {t:?} predicate")),
    }
}

pub(super) fn report_verdict(r: &crate::report::Report) -> (bool, String) {
    match r.first_error() {
        None => (true, "metadata checks clean".into()),
        Some(f) => (false, format!("{f}")),
    }
}
