//! The writer: logs as the kernel writes them (super rewritten after every FUA
//! and MARK entry, `dm-log-writes-end` at close).

use std::io::{self, Seek, SeekFrom, Write};

use super::{max_label, DISCARD, END_MARK, FLUSH, FUA, HEADER, MAGIC, MARK, VERSION};

/// Writes a version-1 log.
pub struct LogWriter<W: Write + Seek> {
    out: W,
    sector_size: u32,
    /// Entries written.
    entries: u64,
    /// Entries the super was last written with.
    in_super: u64,
}

impl<W: Write + Seek> LogWriter<W> {
    /// Starts a log of `sector_size`-byte sectors on `out`.
    pub fn new(mut out: W, sector_size: u32) -> io::Result<Self> {
        assert!(super::SECTOR_SIZES.contains(&sector_size));
        out.seek(SeekFrom::Start(0))?;
        let mut w = LogWriter {
            out,
            sector_size,
            entries: 0,
            in_super: 0,
        };
        w.write_super()?;
        w.out.seek(SeekFrom::Start(sector_size as u64))?;
        Ok(w)
    }

    /// The sector size.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn write_super(&mut self) -> io::Result<()> {
        let mut s = vec![0u8; self.sector_size as usize];
        s[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        s[8..16].copy_from_slice(&VERSION.to_le_bytes());
        s[16..24].copy_from_slice(&self.entries.to_le_bytes());
        s[24..28].copy_from_slice(&self.sector_size.to_le_bytes());
        let here = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&s)?;
        self.out.seek(SeekFrom::Start(here))?;
        self.in_super = self.entries;
        Ok(())
    }

    fn entry(
        &mut self,
        sector: u64,
        nr_sectors: u64,
        flags: u64,
        label: &[u8],
        payload: &[u8],
    ) -> io::Result<()> {
        let mut h = vec![0u8; self.sector_size as usize];
        h[0..8].copy_from_slice(&sector.to_le_bytes());
        h[8..16].copy_from_slice(&nr_sectors.to_le_bytes());
        h[16..24].copy_from_slice(&flags.to_le_bytes());
        h[24..32].copy_from_slice(&(label.len() as u64).to_le_bytes());
        h[HEADER..HEADER + label.len()].copy_from_slice(label);
        self.out.write_all(&h)?;
        self.out.write_all(payload)?;
        self.entries += 1;
        if flags & (FUA | MARK) != 0 {
            self.write_super()?;
        }
        Ok(())
    }

    /// A write of `data` (whole sectors) at `sector`, with extra `flags` (FUA,
    /// METADATA, FLUSH for a flush with data).
    pub fn write(&mut self, sector: u64, data: &[u8], flags: u64) -> io::Result<()> {
        let s = self.sector_size as usize;
        if data.is_empty() || !data.len().is_multiple_of(s) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a logged write is whole {s}-byte sectors"),
            ));
        }
        self.entry(sector, (data.len() / s) as u64, flags, &[], data)
    }

    /// A discard of `nr_sectors` at `sector`.
    pub fn discard(&mut self, sector: u64, nr_sectors: u64) -> io::Result<()> {
        self.entry(sector, nr_sectors, DISCARD, &[], &[])
    }

    /// An empty flush.
    pub fn flush(&mut self) -> io::Result<()> {
        self.entry(0, 0, FLUSH, &[], &[])
    }

    /// A mark (the label is cut to what a sector holds, as the kernel does).
    pub fn mark(&mut self, label: &str) -> io::Result<()> {
        let l = label.as_bytes();
        let l = &l[..l.len().min(max_label(self.sector_size))];
        self.entry(0, 0, MARK, l, &[])
    }

    /// Closes the log as `dmsetup remove` does: the end mark, the super.
    pub fn close(mut self) -> io::Result<W> {
        self.mark(END_MARK)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Stops without closing, as a power cut leaves a log: the super keeps the
    /// count of its last update.
    pub fn cut(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// Entries written so far, and the count the super holds.
    pub fn counts(&self) -> (u64, u64) {
        (self.entries, self.in_super)
    }
}
