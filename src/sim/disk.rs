//! `SimDisk`: a block device with a volatile write cache (REPLAY.md §2.3).
//!
//! * `issue` puts an I/O in flight; `complete` lands a write in the cache, where
//!   reads see it (newest completion wins) but a power cut may lose it.
//! * A FUA write is durable at completion; older cached writes to the same units
//!   stay cached but can never be applied over it (a coherent cache).
//! * A FLUSH covers exactly the writes that had *completed* when it was issued;
//!   at its completion those become durable, in completion order. Writes that
//!   complete between the flush's issue and completion stay volatile.
//!
//! The volatile cache is kept as an overlay of the newest completed write per
//! unit: an older cached write that a newer one covers can never reach the media
//! on its own any more (any flush issued after the newer completion covers both
//! and applies them in completion order), so only the parts of writes still
//! visible are kept, and memory is bounded by the device, not by the number of
//! writes. A flush records the overlay's extents at its issue (what it covers).
//! * A discard is a write of the caller's "discarded" value.
//! * `writethrough` devices make every completed write durable.
//!
//! Units are whatever the caller uses (metadata blocks, 512-byte sectors); the
//! sequence numbers come from a clock shared by every device of a simulation, so
//! events on different devices are ordered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::extent::{ExtentMap, Unit};
use super::inflight::InFlight;
use super::logrec::{LogEvent, LogRec};

/// What an I/O does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// A write of a value.
    Write,
    /// A discard (a write of the discarded value).
    Discard,
    /// An empty PREFLUSH.
    Flush,
}

/// One I/O to a simulated device.
#[derive(Debug, Clone)]
pub struct Io<V> {
    /// What it does.
    pub kind: IoKind,
    /// First unit.
    pub start: u64,
    /// One past the last unit.
    pub end: u64,
    /// The value written (at `start`); `None` for flushes.
    pub val: Option<V>,
    /// REQ_FUA.
    pub fua: bool,
}

impl<V> Io<V> {
    /// An I/O of `kind`: a flush carries no range or value, only a write can be
    /// FUA.
    pub fn new(kind: IoKind, start: u64, end: u64, val: V, fua: bool) -> Self {
        match kind {
            IoKind::Flush => Io {
                kind,
                start: 0,
                end: 0,
                val: None,
                fua: false,
            },
            _ => Io {
                kind,
                start,
                end,
                val: Some(val),
                fua: fua && kind == IoKind::Write,
            },
        }
    }
}

/// A shared sequence clock.
pub type Clock = Arc<AtomicU64>;

/// Counters of what a device saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Writes and discards issued.
    pub writes: u64,
    /// Flushes issued.
    pub flushes: u64,
    /// FUA writes issued.
    pub fua: u64,
}

/// A simulated device.
#[derive(Debug)]
pub struct SimDisk<V: Unit> {
    nr_units: u64,
    writethrough: bool,
    clock: Clock,
    durable: ExtentMap<V>,
    landed: ExtentMap<V>,
    /// Completed, not yet durable: the newest such write per unit, with its
    /// completion seq.
    volatile: ExtentMap<V>,
    /// Issued, not completed, by issue seq (flushes with their cover: the
    /// volatile extents at their issue).
    inflight: InFlight<(Io<V>, Vec<Cached<V>>)>,
    stats: DiskStats,
    /// What a dm-log-writes device under this one would log, when asked.
    rec: Option<LogRec<V>>,
}

/// A cached extent a flush covers: `(start, end, completion seq, value)`.
type Cached<V> = (u64, u64, u64, V);

/// Why an I/O was refused: the model asked for something a device cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskError {
    /// The range is past the end of the device.
    OutOfRange {
        /// First unit.
        start: u64,
        /// End.
        end: u64,
        /// Device size.
        nr_units: u64,
    },
    /// No such I/O in flight.
    NotInFlight(u64),
}

impl std::fmt::Display for DiskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskError::OutOfRange {
                start,
                end,
                nr_units,
            } => write!(
                f,
                "I/O {start}..{end} past the end of a device of {nr_units} units"
            ),
            DiskError::NotInFlight(s) => write!(f, "I/O {s} is not in flight"),
        }
    }
}

impl std::error::Error for DiskError {}

impl<V: Unit> SimDisk<V> {
    /// A device of `nr_units`, everything at its base value, sharing `clock`.
    pub fn new(nr_units: u64, writethrough: bool, clock: Clock) -> Self {
        SimDisk {
            nr_units,
            writethrough,
            clock,
            durable: ExtentMap::new(),
            landed: ExtentMap::new(),
            volatile: ExtentMap::new(),
            inflight: InFlight::default(),
            stats: DiskStats::default(),
            rec: None,
        }
    }

    /// Starts recording what a dm-log-writes device under this one would log,
    /// as if logging had begun on a zeroed device: what is durable already is
    /// logged first, then a flush.
    pub fn record_log(&mut self) {
        let mut r = LogRec::default();
        // Everything but unit 0 first, then unit 0 (a superblock is written
        // last, after a flush, as a format does).
        let mut first = None;
        for (start, end, _, v) in self.durable.iter() {
            let (start, val) = if start == 0 {
                first = Some(v.clone());
                (1, v.offset(1))
            } else {
                (start, v.clone())
            };
            if start < end {
                r.logged.push(LogEvent::Write {
                    start,
                    end,
                    val,
                    fua: false,
                });
            }
        }
        if !r.logged.is_empty() {
            r.logged.push(LogEvent::Flush);
        }
        if let Some(v) = first {
            r.logged.push(LogEvent::Write {
                start: 0,
                end: 1,
                val: v,
                fua: false,
            });
            r.logged.push(LogEvent::Flush);
        }
        self.rec = Some(r);
    }

    /// Sends a mark to the recorded log.
    pub fn log_mark(&mut self, label: &str) {
        if let Some(r) = &mut self.rec {
            r.logged.push(LogEvent::Mark(label.to_string()));
        }
    }

    /// The recorded log; `close` ends it as `dmsetup remove` does, otherwise
    /// as a power cut leaves it.
    pub fn take_log(&mut self, close: bool) -> Option<Vec<LogEvent<V>>> {
        let mut r = self.rec.take()?;
        if close {
            r.close();
        }
        Some(r.logged)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Size in units.
    pub fn nr_units(&self) -> u64 {
        self.nr_units
    }

    /// I/O counters.
    pub fn stats(&self) -> DiskStats {
        self.stats
    }

    /// Puts `io` in flight; returns its issue seq. A flush records the writes it
    /// covers now.
    pub fn issue(&mut self, io: Io<V>) -> Result<u64, DiskError> {
        self.account(&io)?;
        let cover = if io.kind == IoKind::Flush {
            self.volatile
                .iter()
                .map(|(s, e, seq, v)| (s, e, seq, v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let seq = self.tick();
        if let (Some(r), IoKind::Flush) = (&mut self.rec, io.kind) {
            r.flush_issued(seq);
        }
        self.inflight.push(seq, (io, cover));
        Ok(seq)
    }

    /// Checks the range of `io` and counts it.
    fn account(&mut self, io: &Io<V>) -> Result<(), DiskError> {
        if io.kind == IoKind::Flush {
            self.stats.flushes += 1;
            return Ok(());
        }
        if io.start > io.end || io.end > self.nr_units {
            return Err(DiskError::OutOfRange {
                start: io.start,
                end: io.end,
                nr_units: self.nr_units,
            });
        }
        self.stats.writes += 1;
        if io.fua {
            self.stats.fua += 1;
        }
        Ok(())
    }

    /// Completes the I/O issued as `seq`; returns its completion seq.
    pub fn complete(&mut self, seq: u64) -> Result<u64, DiskError> {
        let (io, cover) = self
            .inflight
            .remove(seq)
            .ok_or(DiskError::NotInFlight(seq))?;
        let cseq = self.tick();
        match io.kind {
            IoKind::Flush => {
                // Completion order is seq order; each unit keeps the newest.
                // The covered extents do not overlap, so each map can take them
                // in its cheapest order: ascending for the durable one (appends
                // or rewrites in place), descending for the cache (removals
                // from the end of its sorted vector, not quadratic shifts).
                for &(s, e, c, _) in cover.iter().rev() {
                    self.volatile.remove_seq(s, e, c);
                }
                for (s, e, c, v) in cover {
                    self.durable.insert_if_newer(s, e, c, v);
                }
                if let Some(r) = &mut self.rec {
                    r.flush_completed(seq);
                }
            }
            IoKind::Write | IoKind::Discard => self.land(io, cseq),
        }
        Ok(cseq)
    }

    /// A write or discard completes as `cseq`.
    fn land(&mut self, io: Io<V>, cseq: u64) {
        let v = io.val.expect("writes carry a value");
        if let Some(r) = &mut self.rec {
            let ev = match io.kind {
                IoKind::Discard => LogEvent::Discard {
                    start: io.start,
                    end: io.end,
                },
                _ => LogEvent::Write {
                    start: io.start,
                    end: io.end,
                    val: v.clone(),
                    fua: io.fua,
                },
            };
            r.completed(ev, io.fua);
        }
        if io.fua || self.writethrough {
            self.durable.insert(io.start, io.end, cseq, v.clone());
        } else {
            self.volatile.insert(io.start, io.end, cseq, v.clone());
        }
        self.landed.insert(io.start, io.end, cseq, v);
    }

    /// Issues and completes `io` at once; returns the completion seq. (The same
    /// as [`issue`](Self::issue) then [`complete`](Self::complete), without the
    /// bookkeeping of an I/O in flight: a flush covers the whole cache.)
    pub fn submit(&mut self, io: Io<V>) -> Result<u64, DiskError> {
        self.account(&io)?;
        self.tick();
        let cseq = self.tick();
        match io.kind {
            IoKind::Flush => {
                for (s, e, c, v) in std::mem::take(&mut self.volatile).into_extents() {
                    self.durable.insert_if_newer(s, e, c, v);
                }
                if let Some(r) = &mut self.rec {
                    r.flush_issued(cseq);
                    r.flush_completed(cseq);
                }
            }
            IoKind::Write | IoKind::Discard => self.land(io, cseq),
        }
        Ok(cseq)
    }

    /// What a read of unit `u` returns now (`None`: the base value).
    pub fn read(&self, u: u64) -> Option<V> {
        self.landed.get(u).map(|(_, v)| v)
    }

    /// What survives a power cut for sure at unit `u`.
    pub fn durable_at(&self, u: u64) -> Option<V> {
        self.durable.get(u).map(|(_, v)| v)
    }

    /// The durable overlay.
    pub fn durable(&self) -> &ExtentMap<V> {
        &self.durable
    }

    /// Everything completed, as reads see it.
    pub fn landed(&self) -> &ExtentMap<V> {
        &self.landed
    }

    /// Completed writes not yet durable: what each unit would get from a flush
    /// now, with the completion seq of the write it comes from.
    pub fn volatile(&self) -> &ExtentMap<V> {
        &self.volatile
    }

    /// I/Os in flight, by issue seq.
    pub fn inflight(&self) -> impl Iterator<Item = (u64, &Io<V>)> + '_ {
        self.inflight.iter().map(|(s, (io, _))| (s, io))
    }

    /// True when a write in flight overlaps `start..end`.
    pub fn inflight_overlaps(&self, start: u64, end: u64) -> bool {
        self.inflight
            .iter()
            .any(|(_, (io, _))| io.kind != IoKind::Flush && io.start < end && start < io.end)
    }

    /// A power cut that keeps only what is durable: the cache and everything in
    /// flight are lost.
    pub fn crash_durable(&mut self) {
        if let Some(r) = &mut self.rec {
            r.crash();
        }
        self.volatile = ExtentMap::new();
        self.inflight.clear();
        self.landed = self.durable.clone();
    }

    /// A power cut after which every completed write reached the media.
    pub fn crash_all_landed(&mut self) {
        if let Some(r) = &mut self.rec {
            r.crash();
        }
        self.volatile = ExtentMap::new();
        self.inflight.clear();
        self.durable = self.landed.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct S(u64);
    impl Unit for S {
        fn offset(&self, n: u64) -> Self {
            S(self.0 + n)
        }
    }

    fn w(start: u64, end: u64, v: u64, fua: bool) -> Io<S> {
        Io {
            kind: IoKind::Write,
            start,
            end,
            val: Some(S(v)),
            fua,
        }
    }

    fn flush() -> Io<S> {
        Io {
            kind: IoKind::Flush,
            start: 0,
            end: 0,
            val: None,
            fua: false,
        }
    }

    fn disk() -> SimDisk<S> {
        SimDisk::new(100, false, Arc::new(AtomicU64::new(0)))
    }

    #[test]
    fn completed_write_is_readable_but_volatile() {
        let mut d = disk();
        let s = d.issue(w(0, 4, 10, false)).unwrap();
        assert_eq!(d.read(1), None, "in flight: not visible");
        d.complete(s).unwrap();
        assert_eq!(d.read(1), Some(S(11)));
        assert_eq!(d.durable_at(1), None);
        d.crash_durable();
        assert_eq!(d.read(1), None);
    }

    #[test]
    fn flush_covers_only_writes_completed_at_issue() {
        let mut d = disk();
        d.submit(w(0, 1, 10, false)).unwrap();
        let late = d.issue(w(1, 2, 20, false)).unwrap();
        let f = d.issue(flush()).unwrap();
        d.complete(late).unwrap(); // completes after the flush was issued
        d.complete(f).unwrap();
        assert_eq!(d.durable_at(0), Some(S(10)));
        assert_eq!(d.durable_at(1), None, "completed after the flush's issue");
        assert_eq!(d.volatile().len(), 1);
        d.submit(flush()).unwrap();
        assert_eq!(d.durable_at(1), Some(S(20)));
    }

    #[test]
    fn fua_is_durable_and_never_overwritten_by_older_cached_data() {
        let mut d = disk();
        d.submit(w(0, 4, 10, false)).unwrap(); // cached
        d.submit(w(2, 3, 99, true)).unwrap(); // FUA over part of it
        assert_eq!(d.durable_at(2), Some(S(99)));
        assert_eq!(d.durable_at(0), None);
        d.submit(flush()).unwrap();
        assert_eq!(d.durable_at(0), Some(S(10)));
        assert_eq!(
            d.durable_at(2),
            Some(S(99)),
            "older cached write applied around it"
        );
        assert_eq!(d.durable_at(3), Some(S(13)));
    }

    #[test]
    fn flush_applies_cover_in_completion_order() {
        let mut d = disk();
        let a = d.issue(w(0, 2, 10, false)).unwrap();
        let b = d.issue(w(0, 2, 20, false)).unwrap();
        d.complete(b).unwrap();
        d.complete(a).unwrap(); // a completes last: it is the newest
        d.submit(flush()).unwrap();
        assert_eq!(d.durable_at(0), Some(S(10)));
        assert_eq!(d.read(0), Some(S(10)));
    }

    #[test]
    fn submit_is_issue_then_complete() {
        let (mut a, mut b) = (disk(), disk());
        let mut x = 1u64;
        let mut held = Vec::new();
        for i in 0..2000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            let r = x >> 33;
            let io = if r.is_multiple_of(7) {
                flush()
            } else {
                let s = r % 90;
                w(s, s + 1 + (r >> 8) % 10, i, (r >> 20).is_multiple_of(5))
            };
            if (r >> 24).is_multiple_of(4) {
                // Leave some I/O in flight on both, completed later.
                held.push((a.issue(io.clone()).unwrap(), b.issue(io).unwrap()));
            } else {
                a.submit(io.clone()).unwrap();
                let s = b.issue(io).unwrap();
                b.complete(s).unwrap();
            }
            if (r >> 28).is_multiple_of(3) {
                if let Some((sa, sb)) = held.pop() {
                    a.complete(sa).unwrap();
                    b.complete(sb).unwrap();
                }
            }
            for u in 0..100 {
                assert_eq!(a.durable_at(u), b.durable_at(u), "op {i} unit {u}");
                assert_eq!(a.read(u), b.read(u));
            }
        }
    }

    #[test]
    fn writethrough_and_range_checks() {
        let mut d = SimDisk::new(8, true, Arc::new(AtomicU64::new(0)));
        d.submit(w(0, 1, 5, false)).unwrap();
        assert_eq!(d.durable_at(0), Some(S(5)));
        assert!(d.issue(w(7, 9, 1, false)).is_err());
        assert!(d.complete(12345).is_err());
        let mut d = disk();
        d.submit(w(0, 1, 5, false)).unwrap();
        d.crash_all_landed();
        assert_eq!(d.durable_at(0), Some(S(5)));
    }
}
