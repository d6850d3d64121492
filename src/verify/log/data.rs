//! Data devices and the user stream rebuilt from their logs, in 512-byte
//! sectors, as content hashes: what each sector holds after the whole log, and
//! every value a user wrote to it.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::VerifyError;
use crate::logwrites::{Log, LogSource};
use crate::sim::{ExtentMap, Unit};

/// The unit everything here is counted in.
pub const SECTOR: u64 = 512;

/// The hash of one 512-byte sector.
pub fn sector_hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// What the log left in a sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    /// Data with this hash.
    Data(u64),
    /// Discarded: undefined content.
    Discarded,
}

/// A discarded range's mark (discards are kept as ranges: a discard carries no
/// payload, so its length is not bounded by the log's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Disc;

impl Unit for Disc {
    fn offset(&self, _n: u64) -> Self {
        Disc
    }
}

/// One device after its whole log.
#[derive(Debug, Default)]
pub struct DataLog {
    /// Per sector written: the entry of its last write and the data's hash.
    writes: HashMap<u64, (u64, u64)>,
    /// Discarded ranges, by the entry of the last discard.
    discards: ExtentMap<Disc>,
    /// Per sector (user stream): every hash written.
    all: HashMap<u64, Vec<u64>>,
    /// Per sector (user stream): the last write acknowledged durable (a flush
    /// or FUA entry after it), with its entry.
    acked_writes: HashMap<u64, (u64, u64)>,
    /// Acknowledged discards (user stream).
    acked_discards: ExtentMap<Disc>,
    /// The marks, in order.
    pub marks: Vec<String>,
}

/// A range of 512-byte sectors of entry `e`, or an error when it overflows.
fn sectors(e: &crate::logwrites::Entry, per: u64) -> std::io::Result<(u64, u64)> {
    let first = e.sector.checked_mul(per);
    let end = e
        .sector
        .checked_add(e.nr_sectors)
        .and_then(|x| x.checked_mul(per));
    match (first, end) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(std::io::Error::other(format!(
            "{e}: sectors past the end of any device"
        ))),
    }
}

impl DataLog {
    /// Replays `log` whole; `keep_all` keeps every value of every sector and
    /// what was acknowledged (for the user stream).
    pub fn replay<R: LogSource>(log: &Log<R>, keep_all: bool) -> std::io::Result<Self> {
        let per = log.sector_size as u64 / SECTOR;
        let mut d = DataLog::default();
        // Since the last flush: writes and discards a FLUSH will acknowledge.
        let mut unflushed_w: Vec<(u64, u64, u64)> = Vec::new();
        let mut unflushed_d: Vec<(u64, u64, u64)> = Vec::new();
        for e in &log.entries {
            if let Some(l) = &e.label {
                d.marks.push(l.clone());
                continue;
            }
            if e.is_flush() && keep_all {
                for (sec, seq, h) in unflushed_w.drain(..) {
                    d.acked_writes.insert(sec, (seq, h));
                }
                for (a, b, seq) in unflushed_d.drain(..) {
                    d.acked_discards.insert(a, b, seq, Disc);
                }
            }
            let (first, end) = sectors(e, per)?;
            if e.is_discard() {
                d.discards.insert(first, end, e.index, Disc);
                if keep_all {
                    if e.is_fua() {
                        d.acked_discards.insert(first, end, e.index, Disc);
                    } else {
                        unflushed_d.push((first, end, e.index));
                    }
                }
            } else if e.is_write() {
                let data = log.payload(e)?;
                for (i, chunk) in data.chunks(SECTOR as usize).enumerate() {
                    let sec = first + i as u64;
                    let h = sector_hash(chunk);
                    d.writes.insert(sec, (e.index, h));
                    if keep_all {
                        d.all.entry(sec).or_default().push(h);
                        if e.is_fua() {
                            d.acked_writes.insert(sec, (e.index, h));
                        } else {
                            unflushed_w.push((sec, e.index, h));
                        }
                    }
                }
            }
        }
        Ok(d)
    }

    /// What the log left in sector `s` (`None`: never written nor discarded).
    pub fn last(&self, s: u64) -> Option<Val> {
        let w = self.writes.get(&s).copied();
        let dsc = self.discards.get(s).map(|(seq, _)| seq);
        match (w, dsc) {
            (Some((ws, h)), ds) if ds.is_none_or(|ds| ws > ds) => Some(Val::Data(h)),
            (_, Some(_)) => Some(Val::Discarded),
            _ => None,
        }
    }

    /// Sector `s` was discarded at some point of the log.
    pub fn ever_discarded(&self, s: u64) -> bool {
        self.discards.get(s).is_some()
    }

    /// The user stream wrote data hashed `h` to sector `s`.
    pub fn wrote(&self, s: u64, h: u64) -> bool {
        self.all.get(&s).is_some_and(|v| v.contains(&h))
    }

    /// The acknowledged user writes still standing (no acknowledged discard
    /// after them), by sector: sector and data hash.
    pub fn acked(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .acked_writes
            .iter()
            .filter(|(&s, &(seq, _))| {
                self.acked_discards
                    .get(s)
                    .is_none_or(|(dseq, _)| dseq < seq)
            })
            .map(|(&s, &(_, h))| (s, h))
            .collect();
        v.sort_unstable();
        v
    }
}

/// A device image read on demand (the source or the origin before logging).
pub struct Image {
    file: File,
    len: u64,
    name: String,
}

impl Image {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, VerifyError> {
        let err = |e: std::io::Error| VerifyError::Input(format!("{}: {e}", path.display()));
        let file = File::open(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        Ok(Image {
            file,
            len,
            name: path.display().to_string(),
        })
    }

    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.len / SECTOR
    }

    /// The hash of sector `s`.
    pub fn hash(&self, s: u64) -> Result<u64, VerifyError> {
        let mut b = [0u8; SECTOR as usize];
        FileExt::read_exact_at(&self.file, &mut b, s * SECTOR)
            .map_err(|e| VerifyError::Input(format!("{}: sector {s}: {e}", self.name)))?;
        Ok(sector_hash(&b))
    }
}
