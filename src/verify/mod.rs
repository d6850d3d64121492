//! Invariants checked on every crash state (REPLAY.md §2.6).
//!
//! * I1 / E1: the metadata passes the project's own checker.
//! * I2 (dm-clone): every sector of a region hydrated in the state may only hold,
//!   on the destination, what the ideal-disk oracle allows (the source's content,
//!   an acknowledged write or a later one): anything else is a lost hydration or
//!   stale data. The destination's possible values are computed per sector (its
//!   durable value and every cached or in-flight write after it), so the cost is
//!   states × touched sectors.
//! * I3 (dm-clone): every sector of an acknowledged-durable write is in a region
//!   hydrated in the state (otherwise the read goes to the source: data lost).
//! * I5 (dm-clone): crash refinement: every sector a user write or discard
//!   touched, or the source was sent, reads through the target (the
//!   destination where its region is hydrated in the state, else the source)
//!   a value the oracle allows.
//! * I6 (dm-clone): the source device is never written, discarded or flushed.
//! * I7 (dm-clone, at clean points): after a suspend the durable hydrated set
//!   equals the in-core one.
//! * E2 (dm-era): after the kernel's recovery (open, then preresume's resize and
//!   rollover, run in a copy), `era_invalidate --written-since e` reports every
//!   block written while the user saw era `e`: every era block a write or a
//!   discard overlapped, not only its first (HAZARDS H-E7).

pub mod log;
mod monotone;
pub mod ordering;
#[cfg(test)]
mod tests;

pub use monotone::Monotone;

use std::collections::HashMap;
use std::fmt;

use crate::clone::superblock as csb;
use crate::era::invalidate::{invalidate, InvalidateOptions};
use crate::io::BlockDevice;
use crate::model::bits::Bits;
use crate::model::clone::CloneModel;
use crate::model::era::EraModel;
use crate::model::era_meta::EraMeta;
use crate::model::ModelError;
use crate::pdata::bitset_write::Bitset;
use crate::pdata::tm::TransactionManager;
use crate::sim::{new_clock, DataVal, IoKind, MetaDev, MetaImage, Origin};

/// An invariant that does not hold in a crash state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// I1, I2, I3, E1, E2, ...
    pub id: &'static str,
    /// The crash point (trace line).
    pub cp: usize,
    /// The crash-state id.
    pub state: String,
    /// What was found.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, crash state {}: {}",
            self.id, self.cp, self.state, self.what
        )
    }
}

/// The committed hydrated set of a dm-clone image.
pub fn image_hydrated(img: &MetaImage) -> Result<Bits, String> {
    let (s, _) = csb::read(img).map_err(|e| e.to_string())?;
    // The bitmap is sized by the superblock, which a log or image may forge
    // with a valid checksum: it is allocated only when the kernel could have
    // made it and the device could hold its bitset.
    if let Some(e) = s.regions_error(img.nr_blocks()) {
        return Err(format!("superblock: {e}"));
    }
    let n = s.nr_regions();
    let mut tm = TransactionManager::open(img.clone(), &s.sm_root).map_err(|e| e.to_string())?;
    let bs = Bitset::open(s.bitset_root, n);
    let mut bits = Bits::new(n);
    for w in 0..n.div_ceil(64) {
        let word = bs.word(&mut tm, w).map_err(|e| e.to_string())?;
        for i in 0..64 {
            if word >> i & 1 == 1 && w * 64 + i < n {
                bits.set(w * 64 + i);
            }
        }
    }
    Ok(bits)
}

/// What `disk` may hold at sector `s` after a power cut: its durable value
/// (`base` where it was never written), plus its cached value when newer, plus
/// every write or discard in flight over `s`.
fn possible(disk: &crate::sim::SimDisk<DataVal>, s: u64, base: DataVal) -> Vec<DataVal> {
    let (dseq, dval) = disk.durable().get(s).unwrap_or((0, base));
    let mut out = vec![dval];
    let at = |io: &crate::sim::Io<DataVal>| {
        let v = io.val.expect("writes carry a value");
        match v.origin {
            Origin::Init(_) | Origin::User(_) => DataVal {
                origin: v.origin,
                sector: v.sector + (s - io.start),
            },
            o => DataVal {
                origin: o,
                sector: s,
            },
        }
    };
    if let Some((c, v)) = disk.volatile().get(s) {
        if c > dseq {
            out.push(v);
        }
    }
    for (_, io) in disk.inflight() {
        if io.kind != IoKind::Flush && io.start <= s && s < io.end {
            out.push(at(io));
        }
    }
    out
}

/// Sectors checked per crash point at most (I2/I3), to bound the work on huge
/// devices; what is left is said in the summary.
const SECTOR_BUDGET: u64 = 1 << 22;

/// Checks dm-clone's invariants on crash states of a model at its crash point.
pub struct CloneChecker<'m> {
    m: &'m CloneModel,
    /// Per sector: the first destination value the oracle does not allow.
    bad: HashMap<u64, Option<DataVal>>,
    /// Sectors not checked for lack of budget.
    pub skipped: u64,
    /// The hydrated set of the last state checked, when its metadata was valid.
    pub hydrated: Option<Bits>,
    /// [`CloneChecker::touched`], computed at the first state that needs it
    /// (the model does not change between the states of a crash point).
    touched: Option<Vec<(u64, u64)>>,
}

impl<'m> CloneChecker<'m> {
    /// A checker for `m` as it is at the crash (before its in-core state is
    /// dropped).
    pub fn new(m: &'m CloneModel) -> Self {
        CloneChecker {
            m,
            bad: HashMap::new(),
            skipped: 0,
            hydrated: None,
            touched: None,
        }
    }

    /// What the destination may hold at sector `s` after the power cut.
    fn dest_possible(&self, s: u64) -> Vec<DataVal> {
        possible(&self.m.dest, s, self.m.dest_base(s))
    }

    fn bad_value(&mut self, s: u64) -> Option<DataVal> {
        if let Some(b) = self.bad.get(&s) {
            return *b;
        }
        let allowed = self.m.oracle.allowed(s, self.m.source_base(s));
        let b = self
            .dest_possible(s)
            .into_iter()
            .find(|v| !allowed.allows(v));
        self.bad.insert(s, b);
        b
    }

    /// I5 for a sector of a region not hydrated in the state: the read goes to
    /// the source, whose possible values must be allowed.
    fn bad_source_value(&self, s: u64) -> Option<DataVal> {
        let allowed = self.m.oracle.allowed(s, self.m.source_base(s));
        possible(&self.m.source, s, self.m.source_base(s))
            .into_iter()
            .find(|v| !allowed.allows(v))
    }

    /// The sectors a crash may have changed the reading of: those of every user
    /// write and discard, and every range the source was sent.
    fn touched(&self) -> Vec<(u64, u64)> {
        let mut r = self.m.oracle.ranges();
        let src = &self.m.source;
        r.extend(src.landed().iter().map(|(a, b, _, _)| (a, b)));
        r.extend(src.inflight().map(|(_, io)| (io.start, io.end)));
        r.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (a, b) in r {
            match out.last_mut() {
                Some(l) if a <= l.1 => l.1 = l.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    fn describe(&self, v: DataVal) -> String {
        match v.origin {
            Origin::Init(crate::model::clone::DEST) => {
                "dest holds its initial content: lost hydration".into()
            }
            Origin::Init(_) => format!("dest holds source sector {} (misplaced copy)", v.sector),
            Origin::User(n) => format!(
                "dest holds write {} that an acknowledged write replaced (stale data)",
                self.m.user_name(n).unwrap_or("?")
            ),
            Origin::Discarded => "dest holds discarded data".into(),
            Origin::Zero => "dest holds zeroes".into(),
            Origin::Byte(b) => format!("dest holds byte 0x{b:02x}"),
        }
    }

    fn describe_source(&self, v: DataVal) -> String {
        match v.origin {
            Origin::Discarded => "the source holds discarded data".into(),
            Origin::Zero => "the source holds zeroes".into(),
            Origin::Init(_) => format!(
                "the source holds its initial content (sector {}), which an acknowledged write replaced",
                v.sector
            ),
            Origin::User(n) => format!(
                "the source holds write {}",
                self.m.user_name(n).unwrap_or("?")
            ),
            Origin::Byte(b) => format!("the source holds byte 0x{b:02x}"),
        }
    }

    /// I1, I2, I3, I5 and I6 on the state `img` (id `state`) of crash point
    /// `cp`.
    pub fn check(&mut self, img: &MetaImage, cp: usize, state: &str) -> Vec<Violation> {
        let v = |id, what| Violation {
            id,
            cp,
            state: state.to_string(),
            what,
        };
        let c = crate::clone::check::check(
            img,
            &crate::clone::check::CheckOptions {
                region_size: Some(self.m.region_size()),
                target_size: Some(self.m.size()),
                ..Default::default()
            },
        );
        self.hydrated = None;
        if let Some(f) = c.report.first_error() {
            return vec![v("I1", format!("metadata invalid: {f}"))];
        }
        let h = match image_hydrated(img) {
            Ok(h) => h,
            Err(e) => return vec![v("I1", format!("metadata unreadable: {e}"))],
        };
        self.hydrated = Some(h.clone());
        let mut out = Vec::new();
        let src = self.m.source.stats();
        if src.writes > 0 || src.flushes > 0 {
            out.push(v(
                "I6",
                format!(
                    "the source device got {} writes or discards and {} flushes",
                    src.writes, src.flushes
                ),
            ));
        }
        let rs = self.m.region_size();
        let mut budget = SECTOR_BUDGET;
        'i2: for (a, b) in h.runs() {
            for r in a..b {
                let end = ((r + 1) * rs).min(self.m.size());
                for s in r * rs..end {
                    if budget == 0 {
                        self.skipped += end - s;
                        continue;
                    }
                    budget -= 1;
                    if let Some(x) = self.bad_value(s) {
                        out.push(v(
                            "I2",
                            format!("region {r} is hydrated; sector {s}: {}", self.describe(x)),
                        ));
                        break 'i2;
                    }
                }
            }
        }
        for (start, end, u) in self.m.oracle.acked_ranges() {
            for s in start..end {
                if self.m.oracle.acked_write(s) != Some(u) {
                    continue;
                }
                let r = self.m.region_of(s);
                if !h.get(r) {
                    out.push(v(
                        "I3",
                        format!(
                            "acknowledged write {} at sector {s} is lost: region {r} is not hydrated, reads go to the source",
                            self.m.user_name(u as u32).unwrap_or("?")
                        ),
                    ));
                    return out;
                }
            }
        }
        // I5: every touched sector reads, through the target, a value the
        // oracle allows. Hydrated regions read the destination, which I2 has
        // checked; the others read the source.
        if !out.iter().any(|x| x.id == "I2") {
            let touched = self.touched.take().unwrap_or_else(|| self.touched());
            'i5: for &(a, b) in &touched {
                for s in a..b.min(self.m.size()) {
                    if budget == 0 {
                        self.skipped += b.min(self.m.size()) - s;
                        continue 'i5;
                    }
                    budget -= 1;
                    let r = self.m.region_of(s);
                    if h.get(r) {
                        continue;
                    }
                    if let Some(x) = self.bad_source_value(s) {
                        out.push(v(
                            "I5",
                            format!(
                                "region {r} is not hydrated, so sector {s} reads from the source: {}",
                                self.describe_source(x)
                            ),
                        ));
                        break 'i5;
                    }
                }
            }
            self.touched = Some(touched);
        }
        out
    }
}

/// I7 at a clean point after `suspend`: the durable hydrated set of `img` equals
/// the model's in-core set.
pub fn clone_suspended(m: &CloneModel, img: &MetaImage, cp: usize) -> Option<Violation> {
    let h = image_hydrated(img).ok()?;
    let core = m.in_core_hydrated()?;
    let durable = h.runs();
    (durable != core).then(|| Violation {
        id: "I7",
        cp,
        state: "suspended".into(),
        what: format!("after suspend the durable hydrated set is {durable:?}, in core {core:?}"),
    })
}

/// I7 after a user flush completed: the durable hydrated set of `img` holds
/// every region that was hydrated in core when the flush was issued (`before`,
/// as runs).
pub fn clone_flushed(img: &MetaImage, before: &[(u64, u64)], cp: usize) -> Option<Violation> {
    let h = image_hydrated(img).ok()?;
    let r = before
        .iter()
        .flat_map(|&(a, b)| a..b)
        .find(|&r| !h.get(r))?;
    Some(Violation {
        id: "I7",
        cp,
        state: "flushed".into(),
        what: format!(
            "region {r} was hydrated in core when the flush was issued, and after the flush completed it is not in the durable metadata"
        ),
    })
}

/// The kernel's recovery of the dm-era metadata `img`, in a copy:
/// `metadata_open`, then preresume's resize to `nr_blocks`, commit, rollover
/// and commit (`era_ctr`, `era_preresume`).
pub fn era_recover(
    img: &MetaImage,
    block_size: u32,
    nr_blocks: u64,
    start_era: u32,
    variant: crate::trace::Variant,
) -> Result<MetaImage, ModelError> {
    let dev = MetaDev::new(img.nr_blocks(), true, new_clock());
    for (b, blk) in img.blocks() {
        dev.write(b, blk).map_err(ModelError::io)?;
    }
    let mut md = EraMeta::open(dev.clone(), block_size, start_era, variant)?;
    md.resize(nr_blocks)?;
    md.commit()?;
    md.rollover()?;
    md.commit()?;
    Ok(dev.durable_image())
}

/// Checks dm-era's invariants on crash states of a model at its crash point.
pub struct EraChecker<'m> {
    m: &'m EraModel,
}

impl<'m> EraChecker<'m> {
    /// A checker for `m` as it is at the crash.
    pub fn new(m: &'m EraModel) -> Self {
        EraChecker { m }
    }

    /// The kernel's recovery of `img` in a copy.
    fn recover(&self, img: &MetaImage) -> Result<MetaImage, ModelError> {
        let cfg = self.m.config();
        era_recover(
            img,
            cfg.block_size as u32,
            cfg.size.div_ceil(cfg.block_size),
            cfg.start_era.wrapping_sub(1),
            self.m.variant(),
        )
    }

    /// E1 and E2 on the state `img` (id `state`) of crash point `cp`.
    pub fn check(&mut self, img: &MetaImage, cp: usize, state: &str) -> Vec<Violation> {
        let v = |id, what| Violation {
            id,
            cp,
            state: state.to_string(),
            what,
        };
        let c = crate::era::check::check(
            img,
            &crate::era::check::CheckOptions {
                block_size: Some(self.m.block_size() as u32),
                ..Default::default()
            },
        );
        if let Some(f) = c.report.first_error() {
            return vec![v("E1", format!("metadata invalid: {f}"))];
        }
        let rec = match self.recover(img) {
            Ok(r) => r,
            // Valid metadata with no room for the recovery's rollover: the
            // kernel refuses to resume the target (ENOSPC from
            // `metadata_era_rollover` in `era_preresume`) until the metadata
            // device grows, and loses nothing. E2 reads the state as it is,
            // its current writeset included (our era_invalidate).
            Err(e) if e.is_no_space() => img.clone(),
            Err(e) => return vec![v("E1", format!("the kernel's recovery fails: {e}"))],
        };
        let mut cache: HashMap<u32, crate::era::invalidate::Invalidation> = HashMap::new();
        for m in self.m.submitted() {
            let era = m.era;
            if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(era) {
                match invalidate(
                    &rec,
                    InvalidateOptions {
                        written_since: era,
                        metadata_snapshot: false,
                    },
                ) {
                    Ok(i) => {
                        e.insert(i);
                    }
                    Err(err) => return vec![v("E1", format!("recovered metadata: {err}"))],
                }
            }
            if let Some(block) = (m.first..m.end).find(|&b| !cache[&era].contains(b)) {
                let what = if m.discard {
                    format!(
                        "discarded (the discard covers blocks {}..={})",
                        m.first,
                        m.end - 1
                    )
                } else {
                    "written".to_string()
                };
                return vec![v(
                    "E2",
                    format!(
                        "block {block} was {what} in era {era}, but after recovery era_invalidate --written-since {era} does not list it"
                    ),
                )];
            }
        }
        Vec::new()
    }
}
