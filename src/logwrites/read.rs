//! The reader (REPLAY.md §1.2, "reader rules").

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{
    max_label, DISCARD, END_MARK, FLUSH, FUA, HEADER, KNOWN_FLAGS, MAGIC, MARK, METADATA,
    SECTOR_SIZES, VERSION,
};

/// Where a log's bytes come from.
pub trait LogSource {
    /// Its length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Fills `buf` from byte `off`; `buf` lies inside the source.
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
}

impl LogSource for File {
    fn size(&self) -> io::Result<u64> {
        let m = self.metadata()?;
        if m.file_type().is_file() {
            Ok(m.len())
        } else {
            // A block device: its size is where a seek to the end lands.
            use std::io::Seek;
            let mut f = self.try_clone()?;
            f.seek(io::SeekFrom::End(0))
        }
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, off)
    }
}

impl LogSource for Vec<u8> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let off = usize::try_from(off).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = off
            .checked_add(buf.len())
            .and_then(|end| self.get(off..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// One entry of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its number, from 0.
    pub index: u64,
    /// Byte offset of its header in the log.
    pub pos: u64,
    /// First sector on the logged device, in the log's sector size.
    pub sector: u64,
    /// Length in the log's sector size (0 for a pure FLUSH and a MARK).
    pub nr_sectors: u64,
    /// FLUSH, FUA, DISCARD, MARK, METADATA.
    pub flags: u64,
    /// A MARK's label.
    pub label: Option<String>,
}

impl Entry {
    /// A flush (with or without data).
    pub fn is_flush(&self) -> bool {
        self.flags & FLUSH != 0
    }
    /// A FUA write.
    pub fn is_fua(&self) -> bool {
        self.flags & FUA != 0
    }
    /// A discard.
    pub fn is_discard(&self) -> bool {
        self.flags & DISCARD != 0
    }
    /// A mark.
    pub fn is_mark(&self) -> bool {
        self.flags & MARK != 0
    }
    /// A write carrying data (a flush may carry data too).
    pub fn is_write(&self) -> bool {
        !self.is_mark() && !self.is_discard() && self.nr_sectors > 0
    }
    /// The flags as text: `FLUSH|FUA`, `WRITE` when none is set.
    pub fn flag_names(&self) -> String {
        let names = [
            (FLUSH, "FLUSH"),
            (FUA, "FUA"),
            (DISCARD, "DISCARD"),
            (MARK, "MARK"),
            (METADATA, "METADATA"),
        ];
        let v: Vec<&str> = names
            .iter()
            .filter(|(f, _)| self.flags & f != 0)
            .map(|(_, n)| *n)
            .collect();
        if v.is_empty() {
            "WRITE".into()
        } else {
            v.join("|")
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {} ({}", self.index, self.flag_names())?;
        if let Some(l) = &self.label {
            write!(f, " {l:?}")?;
        } else if self.nr_sectors > 0 {
            write!(f, " sectors {}+{}", self.sector, self.nr_sectors)?;
        }
        write!(f, ")")
    }
}

/// Why a log cannot be read.
#[derive(Debug)]
pub enum LogError {
    /// Reading failed.
    Io(io::Error),
    /// The super is not a version-1 dm-log-writes super.
    Super(String),
    /// An entry the super counts is malformed.
    Entry {
        /// Its number.
        index: u64,
        /// Byte offset of its header.
        pos: u64,
        /// What is wrong.
        what: String,
    },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io(e) => write!(f, "{e}"),
            LogError::Super(w) => write!(f, "{w}"),
            LogError::Entry { index, pos, what } => {
                write!(f, "entry {index} (byte {pos}): {what}")
            }
        }
    }
}

impl std::error::Error for LogError {}

impl From<io::Error> for LogError {
    fn from(e: io::Error) -> Self {
        LogError::Io(e)
    }
}

/// A log: its super's fields, its entries (payloads stay in the source) and
/// what the reader noticed.
#[derive(Debug)]
pub struct Log<R> {
    src: R,
    /// Sector size of the logged device.
    pub sector_size: u32,
    /// `nr_entries` as the super says.
    pub nr_entries: u64,
    /// The valid entries, in log order.
    pub entries: Vec<Entry>,
    /// The log ends with `dm-log-writes-end` (the device was removed cleanly).
    pub closed: bool,
    /// Remarks: a lagging `nr_entries`, a truncated tail, unknown flags.
    pub notes: Vec<String>,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Why the entry at a position is not one, or `Ok(None)` at the end of the log.
enum Bad {
    /// The log's end: an all-zero header, or the file ends.
    End(String),
    /// Something malformed.
    Malformed(String),
}

impl<R: LogSource> Log<R> {
    /// Reads the super and every entry of `src`.
    pub fn open(src: R) -> Result<Self, LogError> {
        let len = src.size()?;
        if len < HEADER as u64 {
            return Err(LogError::Super(format!(
                "not a dm-log-writes log: {len} bytes, too short for its super"
            )));
        }
        let mut sup = [0u8; HEADER];
        src.read_exact_at(&mut sup, 0)?;
        let magic = u64_at(&sup, 0);
        if magic != MAGIC {
            return Err(LogError::Super(format!(
                "not a dm-log-writes log: magic is {magic:#018x}, expected {MAGIC:#018x}"
            )));
        }
        let version = u64_at(&sup, 8);
        if version != VERSION {
            return Err(LogError::Super(format!(
                "dm-log-writes log version {version}; only version {VERSION} is known"
            )));
        }
        let nr_entries = u64_at(&sup, 16);
        let sector_size = u32::from_le_bytes([sup[24], sup[25], sup[26], sup[27]]);
        if !SECTOR_SIZES.contains(&sector_size) {
            return Err(LogError::Super(format!(
                "the super's sector size is {sector_size}; expected one of 512, 1024, 2048, 4096"
            )));
        }
        let mut log = Log {
            src,
            sector_size,
            nr_entries,
            entries: Vec::new(),
            closed: false,
            notes: Vec::new(),
        };
        log.scan(len)?;
        Ok(log)
    }

    fn scan(&mut self, len: u64) -> Result<(), LogError> {
        let s = self.sector_size as u64;
        let mut pos = s;
        let mut sector = vec![0u8; s as usize];
        let mut index = 0u64;
        loop {
            let counted = index < self.nr_entries;
            let entry = self.entry_at(&mut sector, index, pos, len);
            let (e, next) = match entry {
                Ok(x) => x,
                Err(Bad::End(why)) => {
                    if counted {
                        self.notes.push(format!(
                            "the super counts {} entries but the log holds {index}: {why}",
                            self.nr_entries
                        ));
                    }
                    break;
                }
                Err(Bad::Malformed(what)) if counted => {
                    return Err(LogError::Entry { index, pos, what });
                }
                Err(Bad::Malformed(_)) => break,
            };
            if !counted && e.flags & !KNOWN_FLAGS != 0 {
                // Past the counted entries an unknown flag means stale bytes.
                break;
            }
            if e.flags & !KNOWN_FLAGS != 0 {
                self.notes.push(format!(
                    "entry {index}: unknown flag bits {:#x} ignored",
                    e.flags & !KNOWN_FLAGS
                ));
            }
            let end = e.label.as_deref() == Some(END_MARK);
            self.entries.push(e);
            index += 1;
            pos = next;
            if end {
                self.closed = true;
                break;
            }
        }
        let n = self.entries.len() as u64;
        if n > self.nr_entries {
            self.notes.push(format!(
                "the super counts {} entries; {} more valid ones follow (nr_entries lags: the log was not closed)",
                self.nr_entries,
                n - self.nr_entries
            ));
        }
        if !self.closed {
            self.notes.push(format!(
                "the log has no `{END_MARK}` mark: it was not closed"
            ));
        }
        Ok(())
    }

    /// The entry at `pos` and the position of the next one.
    fn entry_at(
        &self,
        sector: &mut [u8],
        index: u64,
        pos: u64,
        len: u64,
    ) -> Result<(Entry, u64), Bad> {
        let s = self.sector_size as u64;
        if pos.checked_add(s).is_none_or(|end| end > len) {
            return Err(Bad::End(if pos >= len {
                "the log ends".into()
            } else {
                format!("its header at byte {pos} is cut off by the end of the log ({len} bytes)")
            }));
        }
        self.src
            .read_exact_at(sector, pos)
            .map_err(|e| Bad::Malformed(format!("cannot read its header: {e}")))?;
        let start = u64_at(sector, 0);
        let nr_sectors = u64_at(sector, 8);
        let flags = u64_at(sector, 16);
        let data_len = u64_at(sector, 24);
        if flags == 0 && nr_sectors == 0 {
            return Err(Bad::End(format!("entry {index} at byte {pos} is empty")));
        }
        let mark = flags & MARK != 0;
        let mut label = None;
        let pad_from;
        if mark {
            let max = max_label(self.sector_size) as u64;
            if data_len > max {
                return Err(Bad::Malformed(format!(
                    "a MARK label of {data_len} bytes; at most {max} fit in a {s}-byte sector"
                )));
            }
            if nr_sectors != 0 || start != 0 {
                return Err(Bad::Malformed(format!(
                    "a MARK with sector {start} and {nr_sectors} sectors; a mark has neither"
                )));
            }
            let l = &sector[HEADER..HEADER + data_len as usize];
            label = Some(String::from_utf8_lossy(l).into_owned());
            pad_from = HEADER + data_len as usize;
        } else {
            if data_len != 0 {
                return Err(Bad::Malformed(format!(
                    "data_len is {data_len} on a non-MARK entry (inline payloads are not supported)"
                )));
            }
            if nr_sectors == 0 && flags & FLUSH == 0 {
                return Err(Bad::Malformed(format!(
                    "a {} of 0 sectors",
                    if flags & DISCARD != 0 {
                        "discard"
                    } else {
                        "write"
                    }
                )));
            }
            pad_from = HEADER;
        }
        if let Some(i) = sector[pad_from..].iter().position(|&b| b != 0) {
            return Err(Bad::Malformed(format!(
                "byte {} of the entry's sector is {:#04x}; the padding after the header is zero",
                pad_from + i,
                sector[pad_from + i]
            )));
        }
        if start.checked_add(nr_sectors).is_none() {
            return Err(Bad::Malformed(format!(
                "sectors {start}+{nr_sectors} overflow"
            )));
        }
        let payload = if flags & DISCARD != 0 || mark {
            0
        } else {
            nr_sectors.checked_mul(s).ok_or_else(|| {
                Bad::Malformed(format!("a payload of {nr_sectors} sectors overflows"))
            })?
        };
        let next = (pos + s).checked_add(payload);
        match next {
            Some(n) if n <= len => Ok((
                Entry {
                    index,
                    pos,
                    sector: start,
                    nr_sectors,
                    flags,
                    label,
                },
                n,
            )),
            _ => Err(Bad::End(format!(
                "entry {index} at byte {pos} needs {payload} bytes of payload; the log ends at byte {len}"
            ))),
        }
    }

    /// The payload of entry `e` (empty for marks, discards and pure flushes).
    pub fn payload(&self, e: &Entry) -> io::Result<Vec<u8>> {
        if !e.is_write() {
            return Ok(Vec::new());
        }
        let s = self.sector_size as u64;
        let mut buf = vec![0u8; (e.nr_sectors * s) as usize];
        self.src.read_exact_at(&mut buf, e.pos + s)?;
        Ok(buf)
    }

    /// Checks every entry's range against a device of `bytes` bytes.
    pub fn check_bounds(&self, bytes: u64) -> Result<(), LogError> {
        let s = self.sector_size as u64;
        for e in &self.entries {
            if e.nr_sectors == 0 {
                continue;
            }
            let end = (e.sector + e.nr_sectors).saturating_mul(s);
            if end > bytes {
                return Err(LogError::Entry {
                    index: e.index,
                    pos: e.pos,
                    what: format!(
                        "sectors {}+{} end at byte {end}, past the device's {bytes} bytes",
                        e.sector, e.nr_sectors
                    ),
                });
            }
        }
        Ok(())
    }
}
