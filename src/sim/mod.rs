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
/// points inside a commit.
#[derive(Debug, Clone)]
pub struct MetaDev(
    Arc<Mutex<SimDisk<MetaVal>>>,
    Arc<Mutex<Option<Vec<FlushPoint>>>>,
);

/// The metadata device just before a flush: its durable content and the writes
/// in its cache.
#[derive(Debug, Clone)]
pub struct FlushPoint {
    /// Durable blocks.
    pub durable: ExtentMap<MetaVal>,
    /// Cached blocks (the newest write of each).
    pub volatile: ExtentMap<MetaVal>,
}

impl MetaDev {
    /// A device of `nr_blocks` zeroed blocks.
    pub fn new(nr_blocks: u64, writethrough: bool, clock: Clock) -> Self {
        MetaDev(
            Arc::new(Mutex::new(SimDisk::new(nr_blocks, writethrough, clock))),
            Arc::new(Mutex::new(None)),
        )
    }

    /// Starts (or stops) keeping a [`FlushPoint`] at every flush.
    pub fn record_flush_points(&self, on: bool) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = on.then(Vec::new);
    }

    /// The flush points kept since the last call.
    pub fn take_flush_points(&self) -> Vec<FlushPoint> {
        self.1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
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
        self.lock()
            .submit(io)
            .map(|_| ())
            .map_err(|e| io::Error::other(e.to_string()))
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
        if let Some(points) = self.1.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            if !d.volatile().is_empty() {
                points.push(FlushPoint {
                    durable: d.durable().clone(),
                    volatile: d.volatile().clone(),
                });
            }
        }
        let commit = d.volatile().get(0).is_some();
        d.submit(io)
            .map(|_| ())
            .map_err(|e| io::Error::other(e.to_string()))?;
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
