//! Simulated devices for the reference models (REPLAY.md §2.3).
//!
//! * [`SimDisk`] is a device with a volatile write cache, FLUSH and FUA.
//! * The metadata device holds real 4 KiB blocks ([`MetaVal`]). [`MetaDev`] is a
//!   shared handle to it that implements [`BlockDevice`], so the project's own
//!   transaction manager writes the models' metadata onto it; [`MetaImage`] is a
//!   frozen view (durable, all landed, …) that implements [`BlockDevice`] too, so
//!   the production checkers and dumpers read model images.
//! * Data devices hold stamps ([`DataVal`]): which write (or which device's
//!   initial content) a sector holds, never the bytes.

mod disk;
mod extent;
mod inflight;
mod logrec;

pub use disk::{Clock, DiskError, DiskStats, Io, IoKind, SimDisk};
pub use extent::{ExtentMap, Unit};
pub use inflight::InFlight;
pub use logrec::{LogEvent, LogRec};

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::{out_of_range, zeroed_shared_block, Block, BlockDevice};

/// A new shared sequence clock.
pub fn new_clock() -> Clock {
    Arc::new(AtomicU64::new(0))
}

/// A metadata block's content.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaVal(pub Arc<Block>);

impl Unit for MetaVal {
    fn offset(&self, _n: u64) -> Self {
        self.clone()
    }
}

/// Where a sector's content came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The initial content of the device numbered `dev` (each model numbers its
    /// devices).
    Init(u8),
    /// User write number `n` (the model keeps the names).
    User(u32),
    /// Zeroes.
    Zero,
    /// A byte pattern.
    Byte(u8),
    /// Discarded: undefined content.
    Discarded,
}

/// A data sector's stamp: its origin and, for stamped origins, the sector of the
/// virtual device it was written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataVal {
    /// Origin.
    pub origin: Origin,
    /// Sector of the stamp (meaningful for `Init` and `User`).
    pub sector: u64,
}

impl Unit for DataVal {
    fn offset(&self, n: u64) -> Self {
        DataVal {
            origin: self.origin,
            sector: self.sector + n,
        }
    }
}

/// The metadata device of a simulation, shared between the model's transaction
/// manager and whoever inspects it. Writes complete at once (dm-bufio waits for
/// them); a flush is an empty PREFLUSH issued and completed.
///
/// With recording on, the device keeps, at every flush it is asked for, the
/// state just before the flush (what is durable, what is cached): the crash
/// points inside a commit. With event recording on, it also keeps its state
/// after every event (each write's issue and completion, each flush's issue and
/// completion): the crash points of `--crash-points all`.
#[derive(Debug, Clone)]
pub struct MetaDev(Arc<Mutex<SimDisk<MetaVal>>>, Arc<Mutex<Recorder>>);

/// What a [`MetaDev`] keeps of its history, when asked.
#[derive(Debug, Default)]
struct Recorder {
    flushes: Option<Vec<FlushPoint>>,
    events: Option<EventRec>,
}

/// The event points kept since the last take, and the device's state at the
/// last event (so an event that changes nothing is not kept).
#[derive(Debug, Default)]
struct EventRec {
    points: Vec<EventPoint>,
    /// Events seen since the last take (kept or not): the next one's ordinal
    /// is this plus one.
    seen: usize,
    /// The state at the last event (or when recording started); only its
    /// state is compared.
    last: Option<EventPoint>,
}

/// The metadata device just before a flush: its durable content and the writes
/// in its cache.
#[derive(Debug, Clone)]
pub struct FlushPoint {
    /// Durable blocks.
    pub durable: ExtentMap<MetaVal>,
    /// Cached blocks (the newest write of each).
    pub volatile: ExtentMap<MetaVal>,
}

/// An event on the metadata device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaEvent {
    /// A block write was issued (`fua`: with REQ_FUA).
    WriteIssued {
        /// The block.
        block: u64,
        /// REQ_FUA.
        fua: bool,
    },
    /// A block write completed (a FUA write is durable from here on).
    WriteCompleted {
        /// The block.
        block: u64,
        /// REQ_FUA.
        fua: bool,
    },
    /// An empty PREFLUSH was issued: it covers the writes cached now.
    FlushIssued,
    /// That flush completed: what it covers is durable.
    FlushCompleted,
}

impl std::fmt::Display for MetaEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fua = |x: bool| if x { " (FUA)" } else { "" };
        match *self {
            MetaEvent::WriteIssued { block, fua: x } => {
                write!(f, "write of block {block}{} issued", fua(x))
            }
            MetaEvent::WriteCompleted { block, fua: x } => {
                write!(f, "write of block {block}{} completed", fua(x))
            }
            MetaEvent::FlushIssued => write!(f, "flush issued"),
            MetaEvent::FlushCompleted => write!(f, "flush completed"),
        }
    }
}

/// The metadata device just after an event: its durable content, the writes
/// in its cache and those in flight. Blocks are shared with the device, never
/// copied.
#[derive(Debug, Clone)]
pub struct EventPoint {
    /// The event, and its ordinal (from 1) among the events since the points
    /// were last taken.
    pub event: MetaEvent,
    /// That ordinal.
    pub ordinal: usize,
    /// Durable blocks.
    pub durable: ExtentMap<MetaVal>,
    /// Cached blocks (the newest completed write of each).
    pub volatile: ExtentMap<MetaVal>,
    /// Block writes in flight, in issue order: `(block, content)`.
    pub inflight: Vec<(u64, MetaVal)>,
    /// Issue seqs of those writes (to compare states).
    inflight_seqs: Vec<u64>,
}

impl EventPoint {
    fn of(d: &SimDisk<MetaVal>, event: MetaEvent, ordinal: usize) -> Self {
        let (inflight, inflight_seqs) = d
            .inflight()
            .filter_map(|(seq, io)| io.val.as_ref().map(|v| ((io.start, v.clone()), seq)))
            .unzip();
        EventPoint {
            event,
            ordinal,
            durable: d.durable().clone(),
            volatile: d.volatile().clone(),
            inflight,
            inflight_seqs,
        }
    }

    /// True when the device held the same writes at both points (the same
    /// crash states).
    pub fn same_state(&self, other: &EventPoint) -> bool {
        self.inflight_seqs == other.inflight_seqs
            && self.durable.same_writes(&other.durable)
            && self.volatile.same_writes(&other.volatile)
    }
}

impl MetaDev {
    /// A device of `nr_blocks` zeroed blocks.
    pub fn new(nr_blocks: u64, writethrough: bool, clock: Clock) -> Self {
        MetaDev(
            Arc::new(Mutex::new(SimDisk::new(nr_blocks, writethrough, clock))),
            Arc::new(Mutex::new(Recorder::default())),
        )
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.1.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts (or stops) keeping a [`FlushPoint`] at every flush.
    pub fn record_flush_points(&self, on: bool) {
        self.recorder().flushes = on.then(Vec::new);
    }

    /// The flush points kept since the last call.
    pub fn take_flush_points(&self) -> Vec<FlushPoint> {
        self.recorder()
            .flushes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Starts (or stops) keeping an [`EventPoint`] after every event on the
    /// device. A point whose state equals the one before it (the device's
    /// state when recording started, for the first) is not kept, though it
    /// counts in the ordinals.
    pub fn record_event_points(&self, on: bool) {
        let start = on.then(|| {
            let d = self.lock();
            EventRec {
                points: Vec::new(),
                seen: 0,
                last: Some(EventPoint::of(&d, MetaEvent::FlushCompleted, 0)),
            }
        });
        self.recorder().events = start;
    }

    /// The event points kept since the last call, in order; the ordinals start
    /// again from 1 after it.
    pub fn take_event_points(&self) -> Vec<EventPoint> {
        match self.recorder().events.as_mut() {
            Some(r) => {
                r.seen = 0;
                std::mem::take(&mut r.points)
            }
            None => Vec::new(),
        }
    }

    /// True when the device holds now what it held at `p`.
    pub fn is_current(&self, p: &EventPoint) -> bool {
        let d = self.lock();
        p.same_state(&EventPoint::of(&d, p.event, 0))
    }

    /// True when event points are being kept.
    fn recording_events(&self) -> bool {
        self.recorder().events.is_some()
    }

    /// Keeps the state of `d` just after `event`, unless it is the state of
    /// the point before.
    fn event(&self, d: &SimDisk<MetaVal>, event: MetaEvent) {
        let mut rec = self.recorder();
        let Some(r) = rec.events.as_mut() else {
            return;
        };
        r.seen += 1;
        let p = EventPoint::of(d, event, r.seen);
        if r.last.as_ref().is_some_and(|l| l.same_state(&p)) {
            return;
        }
        r.last = Some(p.clone());
        r.points.push(p);
    }

    /// Issues `io`, then completes it, keeping the event points around both.
    fn issue_complete(&self, d: &mut SimDisk<MetaVal>, io: Io<MetaVal>) -> Result<(), DiskError> {
        let (issued, completed) = match io.kind {
            IoKind::Flush => (MetaEvent::FlushIssued, MetaEvent::FlushCompleted),
            _ => (
                MetaEvent::WriteIssued {
                    block: io.start,
                    fua: io.fua,
                },
                MetaEvent::WriteCompleted {
                    block: io.start,
                    fua: io.fua,
                },
            ),
        };
        let seq = d.issue(io)?;
        self.event(d, issued);
        d.complete(seq)?;
        self.event(d, completed);
        Ok(())
    }

    /// Submits `io`: at once, or through its issue and completion when event
    /// points are kept.
    fn submit(&self, d: &mut SimDisk<MetaVal>, io: Io<MetaVal>) -> io::Result<()> {
        let r = if self.recording_events() {
            self.issue_complete(d, io)
        } else {
            d.submit(io).map(|_| ())
        };
        r.map_err(|e| io::Error::other(e.to_string()))
    }

    /// The device, locked.
    pub fn lock(&self) -> MutexGuard<'_, SimDisk<MetaVal>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What survives a power cut for sure.
    pub fn durable_image(&self) -> MetaImage {
        let d = self.lock();
        MetaImage::new(d.nr_units(), d.durable().clone())
    }

    /// Every completed write, as reads see it.
    pub fn landed_image(&self) -> MetaImage {
        let d = self.lock();
        MetaImage::new(d.nr_units(), d.landed().clone())
    }
}

impl BlockDevice for MetaDev {
    fn nr_blocks(&self) -> u64 {
        self.lock().nr_units()
    }

    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()> {
        let d = self.lock();
        if b >= d.nr_units() {
            return Err(out_of_range(b, d.nr_units()));
        }
        match d.read(b) {
            Some(v) => buf.copy_from_slice(&v.0[..]),
            None => buf.fill(0),
        }
        Ok(())
    }

    fn write(&self, b: u64, buf: &Block) -> io::Result<()> {
        self.write_shared(b, &Arc::new(*buf))
    }

    fn read_shared(&self, b: u64) -> io::Result<Arc<Block>> {
        let d = self.lock();
        if b >= d.nr_units() {
            return Err(out_of_range(b, d.nr_units()));
        }
        Ok(d.read(b).map_or_else(zeroed_shared_block, |v| v.0))
    }

    fn write_shared(&self, b: u64, buf: &Arc<Block>) -> io::Result<()> {
        let io = Io {
            kind: IoKind::Write,
            start: b,
            end: b + 1,
            val: Some(MetaVal(buf.clone())),
            fua: false,
        };
        let mut d = self.lock();
        self.submit(&mut d, io)
    }

    fn flush(&self) -> io::Result<()> {
        let io = Io {
            kind: IoKind::Flush,
            start: 0,
            end: 0,
            val: None,
            fua: false,
        };
        let mut d = self.lock();
        if let Some(points) = self.recorder().flushes.as_mut() {
            if !d.volatile().is_empty() {
                points.push(FlushPoint {
                    durable: d.durable().clone(),
                    volatile: d.volatile().clone(),
                });
            }
        }
        let commit = d.volatile().get(0).is_some();
        self.submit(&mut d, io)?;
        if commit {
            COMMITS.with(|c| {
                if let Some(v) = c.borrow_mut().as_mut() {
                    v.push(MetaImage::new(d.nr_units(), d.durable().clone()));
                }
            });
        }
        Ok(())
    }
}

thread_local! {
    static COMMITS: std::cell::RefCell<Option<Vec<MetaImage>>> =
        const { std::cell::RefCell::new(None) };
}

/// Starts keeping, on this thread, the durable image of every metadata device
/// after each flush that made a superblock write durable (every commit, the
/// ones a model makes while it is being created included).
pub fn record_commits() {
    COMMITS.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

/// Stops keeping commits and returns those kept since [`record_commits`].
pub fn take_commits() -> Vec<MetaImage> {
    COMMITS.with(|c| c.borrow_mut().take().unwrap_or_default())
}

/// A power cut on a metadata device and a data device: either only what is
/// durable survives, or every completed write reached the media.
pub fn power_cut(meta: &MetaDev, data: &mut SimDisk<DataVal>, all_landed: bool) {
    if all_landed {
        meta.lock().crash_all_landed();
        data.crash_all_landed();
    } else {
        meta.lock().crash_durable();
        data.crash_durable();
    }
}

/// A frozen metadata image: blocks over a zeroed base. Writes are refused.
#[derive(Debug, Clone)]
pub struct MetaImage {
    nr_blocks: u64,
    blocks: ExtentMap<MetaVal>,
}

impl MetaImage {
    /// An image of `nr_blocks` holding `blocks`.
    pub fn new(nr_blocks: u64, blocks: ExtentMap<MetaVal>) -> Self {
        MetaImage { nr_blocks, blocks }
    }

    /// The written blocks, in block order.
    pub fn blocks(&self) -> impl Iterator<Item = (u64, &Block)> + '_ {
        self.blocks
            .iter()
            .flat_map(|(s, e, _, v)| (s..e).map(move |b| (b, &*v.0)))
    }

    /// Writes the image to `out` (a regular file), sized to the device.
    pub fn write_to(&self, out: &mut std::fs::File) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        out.set_len(self.nr_blocks * crate::io::BLOCK_SIZE as u64)?;
        for (b, blk) in self.blocks() {
            out.seek(SeekFrom::Start(b * crate::io::BLOCK_SIZE as u64))?;
            out.write_all(blk)?;
        }
        out.sync_all()
    }
}

impl BlockDevice for MetaImage {
    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()> {
        if b >= self.nr_blocks {
            return Err(out_of_range(b, self.nr_blocks));
        }
        match self.blocks.get(b) {
            Some((_, v)) => buf.copy_from_slice(&v.0[..]),
            None => buf.fill(0),
        }
        Ok(())
    }

    fn read_shared(&self, b: u64) -> io::Result<Arc<Block>> {
        if b >= self.nr_blocks {
            return Err(out_of_range(b, self.nr_blocks));
        }
        Ok(self
            .blocks
            .get(b)
            .map_or_else(zeroed_shared_block, |(_, v)| v.0))
    }

    fn write(&self, _b: u64, _buf: &Block) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a crash image is read-only",
        ))
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(v: u8) -> Arc<Block> {
        Arc::new([v; crate::io::BLOCK_SIZE])
    }

    /// What a point holds, by block: `(durable, cached, in flight)`, each the
    /// first byte of the block's content.
    type Summary = (Vec<(u64, u8)>, Vec<(u64, u8)>, Vec<(u64, u8)>);

    fn summary(p: &EventPoint) -> Summary {
        let map = |m: &ExtentMap<MetaVal>| -> Vec<(u64, u8)> {
            m.iter().map(|(s, _, _, v)| (s, v.0[0])).collect()
        };
        (
            map(&p.durable),
            map(&p.volatile),
            p.inflight.iter().map(|(b, v)| (*b, v.0[0])).collect(),
        )
    }

    #[test]
    fn event_points_follow_every_device_event_and_skip_unchanged_states() {
        let dev = MetaDev::new(8, false, new_clock());
        dev.write(3, &blk(9)).unwrap(); // before recording: durable after the flush
        dev.flush().unwrap();
        dev.record_event_points(true);
        // A commit: two blocks, a flush, the superblock, a flush; then a flush
        // of an empty cache.
        dev.write(1, &blk(1)).unwrap();
        dev.write(2, &blk(2)).unwrap();
        dev.flush().unwrap();
        dev.write(0, &blk(7)).unwrap();
        dev.flush().unwrap();
        dev.flush().unwrap();
        let points = dev.take_event_points();
        let got: Vec<(usize, MetaEvent, Summary)> = points
            .iter()
            .map(|p| (p.ordinal, p.event, summary(p)))
            .collect();
        let w = |block| MetaEvent::WriteIssued { block, fua: false };
        let c = |block| MetaEvent::WriteCompleted { block, fua: false };
        let d3 = vec![(3, 9)];
        let d123 = vec![(1, 1), (2, 2), (3, 9)];
        let want: Vec<(usize, MetaEvent, Summary)> = vec![
            (1, w(1), (d3.clone(), vec![], vec![(1, 1)])),
            (2, c(1), (d3.clone(), vec![(1, 1)], vec![])),
            (3, w(2), (d3.clone(), vec![(1, 1)], vec![(2, 2)])),
            (4, c(2), (d3.clone(), vec![(1, 1), (2, 2)], vec![])),
            // 5: the flush's issue changes nothing: not kept.
            (6, MetaEvent::FlushCompleted, (d123.clone(), vec![], vec![])),
            (7, w(0), (d123.clone(), vec![], vec![(0, 7)])),
            (8, c(0), (d123.clone(), vec![(0, 7)], vec![])),
            // 9: the flush's issue.
            (
                10,
                MetaEvent::FlushCompleted,
                (vec![(0, 7), (1, 1), (2, 2), (3, 9)], vec![], vec![]),
            ),
            // 11 and 12: the flush of an empty cache changes nothing.
        ];
        assert_eq!(got, want);
        // The blocks are the device's, shared.
        assert!(Arc::ptr_eq(
            &points[0].inflight[0].1 .0,
            &dev.lock().durable().get(1).unwrap().1 .0
        ));
        // Ordinals start again after a take; nothing changed since the last
        // point, so a flush of the empty cache keeps nothing.
        dev.flush().unwrap();
        dev.write(5, &blk(5)).unwrap();
        let again = dev.take_event_points();
        assert_eq!(
            again
                .iter()
                .map(|p| (p.ordinal, p.event))
                .collect::<Vec<_>>(),
            vec![(3, w(5)), (4, c(5))]
        );
        assert!(dev.is_current(&again[1]) && !dev.is_current(&again[0]));
        // Without recording, nothing is kept.
        dev.record_event_points(false);
        dev.write(6, &blk(6)).unwrap();
        assert!(dev.take_event_points().is_empty());
    }
}
