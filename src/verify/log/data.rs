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

/// One device after its whole log: the last value of every sector it wrote.
#[derive(Debug, Default)]
pub struct DataLog {
    /// Per sector: the value the log left.
    pub last: HashMap<u64, Val>,
    /// Per sector: every value written (for the user stream).
    pub all: HashMap<u64, Vec<Val>>,
    /// Per sector of the user stream: written or discarded before the last
    /// durable point of the log (a flush or FUA entry after it).
    pub acked: HashMap<u64, Val>,
    /// The marks, in order.
    pub marks: Vec<String>,
}

impl DataLog {
    /// Replays `log` whole; `keep_all` keeps every value of every sector.
    pub fn replay<R: LogSource>(log: &Log<R>, keep_all: bool) -> std::io::Result<Self> {
        let s = log.sector_size as u64;
        let per = s / SECTOR;
        let mut d = DataLog::default();
        // Writes since the last flush: acknowledged once a FLUSH follows.
        let mut unflushed: Vec<(u64, Val)> = Vec::new();
        for e in &log.entries {
            if e.is_mark() {
                if let Some(l) = &e.label {
                    d.marks.push(l.clone());
                }
                continue;
            }
            if e.is_flush() {
                for (sec, v) in unflushed.drain(..) {
                    d.acked.insert(sec, v);
                }
            }
            let first = e.sector * per;
            let n = e.nr_sectors * per;
            let mut put = |d: &mut DataLog, sec: u64, v: Val| {
                d.last.insert(sec, v);
                if keep_all {
                    d.all.entry(sec).or_default().push(v);
                    if e.is_fua() {
                        d.acked.insert(sec, v);
                    } else {
                        unflushed.push((sec, v));
                    }
                }
            };
            if e.is_discard() {
                for sec in first..first + n {
                    put(&mut d, sec, Val::Discarded);
                }
            } else if e.is_write() {
                let data = log.payload(e)?;
                for (i, chunk) in data.chunks(SECTOR as usize).enumerate() {
                    put(&mut d, first + i as u64, Val::Data(sector_hash(chunk)));
                }
            }
        }
        Ok(d)
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
