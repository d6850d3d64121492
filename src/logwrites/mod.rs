//! dm-log-writes logs, version 1 (REPLAY.md §1.1, §1.2).
//!
//! A log is what the kernel's `log-writes` target recorded of one device: every
//! write, discard and flush in the order they became durable (a write is logged
//! when a flush covering it completes; a FUA write at its completion), and the
//! marks userspace sent. All integers are little-endian; `S` is the super's
//! sector size (the logical block size of the logged device).
//!
//! * Super (one `S`-byte sector at byte 0): magic `0x006a736677736872`,
//!   version 1, `nr_entries` (the entries logged when the super was last
//!   written: after every FUA and MARK entry and at teardown), sector size, then
//!   4 bytes the kernel never initialises (ignored).
//! * Entries from byte `S` on, each starting on an `S` boundary: `sector`,
//!   `nr_sectors` (in `S` units), `flags`, `data_len` (a MARK's label length),
//!   the label, zero padding to `S`, then `nr_sectors · S` bytes of payload
//!   (none for a DISCARD).
//!
//! [`read`] reads a log without trusting it: every field is bounds-checked, a
//! malformed entry is an error naming it, a lagging `nr_entries` is scanned past
//! up to the first entry that is not valid, and a truncated tail ends the log
//! with a note. [`write`] writes logs (the models emit them, the tests build
//! hostile ones with it).

pub mod read;
pub mod write;

#[cfg(test)]
mod tests;

pub use read::{Entry, Log, LogError, LogSource};
pub use write::LogWriter;

/// The super's magic number.
pub const MAGIC: u64 = 0x006a_7366_7773_6872;
/// The format version this reader knows.
pub const VERSION: u64 = 1;
/// `REQ_PREFLUSH`: logged at flush completion, after the writes it covers.
pub const FLUSH: u64 = 0x01;
/// `REQ_FUA`: logged at the write's completion.
pub const FUA: u64 = 0x02;
/// A discard: no payload.
pub const DISCARD: u64 = 0x04;
/// A mark sent with `dmsetup message DEV 0 mark LABEL`.
pub const MARK: u64 = 0x08;
/// `REQ_META` (informational).
pub const METADATA: u64 = 0x10;
/// Every flag the format defines.
pub const KNOWN_FLAGS: u64 = 0x1f;
/// The mark the kernel appends when the log-writes device is removed.
pub const END_MARK: &str = "dm-log-writes-end";
/// The sector sizes a log may have.
pub const SECTOR_SIZES: [u32; 4] = [512, 1024, 2048, 4096];
/// Size of an entry header.
pub const HEADER: usize = 32;

/// The longest MARK label a log of sector size `s` can hold (the kernel keeps
/// `s - 32 - 1` bytes of the message).
pub fn max_label(s: u32) -> usize {
    s as usize - HEADER - 1
}
