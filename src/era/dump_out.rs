//! The formats of `era_dump`: the walk of [`crate::era::dump`] hands the header,
//! each writeset a 64-bit word at a time and the era array a block of entries at a
//! time to an [`EraSink`], which writes them as they come.
//!
//! * [`XmlSink`]: the XML of thin-provisioning-tools 0.9.0 (the default).
//! * [`JsonSink`]: the same content as JSON, writesets and the era array as runs;
//!   documented in era_dump(8):
//!
//!   ```text
//!   {
//!     "format": "era_dump",
//!     "version": 1,
//!     "view": "live",
//!     "metadata_snapshot": null,
//!     "block_size": 128,
//!     "nr_blocks": 16,
//!     "current_era": 4,
//!     "logical": false,
//!     "writesets": [
//!       {
//!         "era": 3,
//!         "nr_bits": 16,
//!         "current": false,
//!         "set": [
//!           {"begin":1,"end":2}
//!         ]
//!       }
//!     ],
//!     "era_array": [
//!       {"begin":0,"end":1,"era":0},
//!       {"begin":1,"end":16,"era":1}
//!     ],
//!     "skipped": []
//!   }
//!   ```
//!
//! * [`HumanSink`]: a summary for people: geometry, writesets, snapshot, metadata
//!   space and how many blocks were last written in each era. Its memory is bounded:
//!   the [`LISTED_ERAS`] most recent eras are counted one by one, older ones together.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::era::dump::DumpNotes;
use crate::format::{metadata_space, percent, sectors, summary_line};
use crate::json::JsonOut;
use crate::xml::XmlOut;

/// What the dump starts with.
#[derive(Debug, Clone, Default)]
pub struct EraDumpHeader {
    /// Origin block size in sectors.
    pub block_size: u32,
    /// Origin blocks tracked.
    pub nr_blocks: u64,
    /// The current era of the superblock dumped.
    pub current_era: u64,
    /// `Some(block)` when the dump is of the metadata snapshot at that block.
    pub view: Option<u64>,
    /// Where the live superblock says a metadata snapshot is, if it holds one.
    pub metadata_snap: Option<u64>,
    /// The eras of the writeset tree's entries, ascending.
    pub archived: Vec<u64>,
    /// Whether a committed current writeset is dumped (live metadata only).
    pub current_writeset: bool,
    /// Whether the writesets are folded into the era array.
    pub logical: bool,
    /// Metadata blocks in use, as the live space map records it.
    pub metadata_used: u64,
    /// Metadata blocks the live space map tracks.
    pub metadata_blocks: u64,
}

/// Receives an era dump, in this order: `begin`, each writeset (`writeset_begin`,
/// its words in order, `writeset_end`), `era_array_begin`, the era array's entries
/// in block order, `era_array_end`, `end`.
pub trait EraSink {
    /// The header.
    fn begin(&mut self, h: &EraDumpHeader) -> io::Result<()>;
    /// A writeset of `nr_bits` bits begins; `current` for the superblock's current
    /// writeset.
    fn writeset_begin(&mut self, era: u64, nr_bits: u64, current: bool) -> io::Result<()>;
    /// Word `wi` of the writeset: bits `64 * wi ..` of which the low `nbits` count.
    fn writeset_word(&mut self, wi: u64, word: u64, nbits: u64) -> io::Result<()>;
    /// The writeset ends.
    fn writeset_end(&mut self) -> io::Result<()>;
    /// The era array begins.
    fn era_array_begin(&mut self) -> io::Result<()>;
    /// Entries of origin blocks `first ..`.
    fn eras(&mut self, first: u64, eras: &[u64]) -> io::Result<()>;
    /// The era array ends.
    fn era_array_end(&mut self) -> io::Result<()>;
    /// The end of the dump, with the decisions of a repairing dump: writes what
    /// remains and flushes.
    fn end(&mut self, notes: &DumpNotes) -> io::Result<()>;
}

/// The XML of thin-provisioning-tools 0.9.0's era_dump.
pub struct XmlSink<W: Write> {
    x: Option<XmlOut<W>>,
}

impl<W: Write> XmlSink<W> {
    /// Writes to `w`.
    pub fn new(w: W) -> Self {
        XmlSink {
            x: Some(XmlOut::new(w)),
        }
    }

    fn x(&mut self) -> &mut XmlOut<W> {
        self.x.as_mut().expect("the sink is not used after end()")
    }
}

impl<W: Write> EraSink for XmlSink<W> {
    fn begin(&mut self, h: &EraDumpHeader) -> io::Result<()> {
        let x = self.x();
        x.s("<superblock uuid=\"\" block_size=\"")?;
        x.n(h.block_size as u64)?;
        x.s("\" nr_blocks=\"")?;
        x.n(h.nr_blocks)?;
        x.s("\" current_era=\"")?;
        x.n(h.current_era)?;
        x.s("\">\n")
    }

    fn writeset_begin(&mut self, era: u64, nr_bits: u64, _current: bool) -> io::Result<()> {
        let x = self.x();
        x.s("  <writeset era=\"")?;
        x.n(era)?;
        x.s("\" nr_bits=\"")?;
        x.n(nr_bits)?;
        x.s("\">\n")
    }

    fn writeset_word(&mut self, wi: u64, word: u64, nbits: u64) -> io::Result<()> {
        let x = self.x();
        for j in 0..nbits {
            x.s("    <bit block=\"")?;
            x.n(wi * 64 + j)?;
            x.s(if word >> j & 1 == 1 {
                "\" value=\"true\"/>\n"
            } else {
                "\" value=\"false\"/>\n"
            })?;
        }
        Ok(())
    }

    fn writeset_end(&mut self) -> io::Result<()> {
        self.x().s("  </writeset>\n")
    }

    fn era_array_begin(&mut self) -> io::Result<()> {
        self.x().s("  <era_array>\n")
    }

    fn eras(&mut self, first: u64, eras: &[u64]) -> io::Result<()> {
        let x = self.x();
        for (j, e) in eras.iter().enumerate() {
            x.s("    <era block=\"")?;
            x.n(first + j as u64)?;
            x.s("\" era=\"")?;
            x.n(*e)?;
            x.s("\"/>\n")?;
        }
        Ok(())
    }

    fn era_array_end(&mut self) -> io::Result<()> {
        self.x().s("  </era_array>\n")
    }

    fn end(&mut self, _notes: &DumpNotes) -> io::Result<()> {
        let mut x = self.x.take().expect("end() is called once");
        x.s("</superblock>\n")?;
        x.finish()?.flush()
    }
}

/// The dump as a JSON document.
pub struct JsonSink<W: Write> {
    j: Option<JsonOut<W>>,
    /// First bit of the run of set bits being read, in the open writeset.
    bits_run: Option<u64>,
    nr_bits: u64,
    /// First block and era of the run of equal eras being read.
    era_run: Option<(u64, u64)>,
}

impl<W: Write> JsonSink<W> {
    /// Writes to `w`.
    pub fn new(w: W) -> Self {
        JsonSink {
            j: Some(JsonOut::new(w)),
            bits_run: None,
            nr_bits: 0,
            era_run: None,
        }
    }

    fn j(&mut self) -> &mut JsonOut<W> {
        self.j.as_mut().expect("the sink is not used after end()")
    }

    fn era_run(&mut self, b: u64, e: u64, era: u64) -> io::Result<()> {
        let j = self.j();
        j.begin_object(true)?;
        j.field_num("begin", b)?;
        j.field_num("end", e)?;
        j.field_num("era", era)?;
        j.end()
    }
}

impl<W: Write> EraSink for JsonSink<W> {
    fn begin(&mut self, h: &EraDumpHeader) -> io::Result<()> {
        let j = self.j();
        j.begin_object(false)?;
        j.field_str("format", "era_dump")?;
        j.field_num("version", 1)?;
        j.field_str(
            "view",
            if h.view.is_some() {
                "metadata-snapshot"
            } else {
                "live"
            },
        )?;
        j.key("metadata_snapshot")?;
        j.opt_num(h.metadata_snap)?;
        j.field_num("block_size", h.block_size as u64)?;
        j.field_num("nr_blocks", h.nr_blocks)?;
        j.field_num("current_era", h.current_era)?;
        j.field_bool("logical", h.logical)?;
        j.key("writesets")?;
        j.begin_array(false)
    }

    fn writeset_begin(&mut self, era: u64, nr_bits: u64, current: bool) -> io::Result<()> {
        self.bits_run = None;
        self.nr_bits = nr_bits;
        let j = self.j();
        j.begin_object(false)?;
        j.field_num("era", era)?;
        j.field_num("nr_bits", nr_bits)?;
        j.field_bool("current", current)?;
        j.key("set")?;
        j.begin_array(false)
    }

    fn writeset_word(&mut self, wi: u64, word: u64, nbits: u64) -> io::Result<()> {
        let base = wi * 64;
        let all = if nbits >= 64 {
            u64::MAX
        } else {
            (1u64 << nbits) - 1
        };
        let word = word & all;
        // Whole words first: nothing to look at bit by bit.
        if word == 0 {
            if let Some(b) = self.bits_run.take() {
                self.j().range(b, base)?;
            }
            return Ok(());
        }
        if word == all {
            self.bits_run.get_or_insert(base);
            return Ok(());
        }
        for k in 0..nbits {
            if word >> k & 1 == 1 {
                self.bits_run.get_or_insert(base + k);
            } else if let Some(b) = self.bits_run.take() {
                self.j().range(b, base + k)?;
            }
        }
        Ok(())
    }

    fn writeset_end(&mut self) -> io::Result<()> {
        if let Some(b) = self.bits_run.take() {
            let end = self.nr_bits;
            self.j().range(b, end)?;
        }
        let j = self.j();
        j.end()?;
        j.end()
    }

    fn era_array_begin(&mut self) -> io::Result<()> {
        let j = self.j();
        j.end()?;
        j.key("era_array")?;
        j.begin_array(false)
    }

    fn eras(&mut self, first: u64, eras: &[u64]) -> io::Result<()> {
        for (k, &era) in eras.iter().enumerate() {
            let b = first + k as u64;
            match self.era_run {
                Some((_, e)) if e == era => {}
                Some((start, e)) => {
                    self.era_run(start, b, e)?;
                    self.era_run = Some((b, era));
                }
                None => self.era_run = Some((b, era)),
            }
        }
        // The run is closed at the next different era or at the end of the array,
        // whose length the last call tells.
        self.nr_bits = first + eras.len() as u64;
        Ok(())
    }

    fn era_array_end(&mut self) -> io::Result<()> {
        if let Some((start, e)) = self.era_run.take() {
            let end = self.nr_bits;
            self.era_run(start, end, e)?;
        }
        self.j().end()
    }

    fn end(&mut self, notes: &DumpNotes) -> io::Result<()> {
        let mut j = self.j.take().expect("end() is called once");
        j.key("skipped")?;
        j.begin_array(false)?;
        for n in &notes.skipped {
            j.str(n)?;
        }
        j.end()?;
        j.end()?;
        j.finish()?.flush()
    }
}

/// Eras the summary counts one by one (the most recent ones); older eras are added
/// up together, so that the summary's memory does not grow with the number of eras.
pub const LISTED_ERAS: usize = 64;

/// Blocks per era last written in, with a bounded number of eras kept apart.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EraCounts {
    /// Blocks never written (era 0).
    pub never: u64,
    /// Blocks per era, for the most recent eras (at most [`LISTED_ERAS`]).
    pub recent: BTreeMap<u64, u64>,
    /// Blocks of eras older than those in `recent`, and the lowest and highest of
    /// those eras.
    pub older: Option<(u64, u64, u64)>,
}

impl EraCounts {
    /// Counts `n` blocks of `era`.
    pub fn add(&mut self, era: u64, n: u64) {
        if era == 0 {
            self.never += n;
            return;
        }
        if let Some((lo, hi, c)) = self.older.as_mut() {
            if era <= *hi {
                *lo = (*lo).min(era);
                *c += n;
                return;
            }
        }
        *self.recent.entry(era).or_default() += n;
        if self.recent.len() > LISTED_ERAS {
            let (e, c) = self.recent.pop_first().expect("not empty");
            let o = self.older.get_or_insert((e, e, 0));
            o.0 = o.0.min(e);
            o.1 = o.1.max(e);
            o.2 += c;
        }
    }

    /// Blocks written at least once.
    pub fn written(&self) -> u64 {
        self.recent.values().sum::<u64>() + self.older.map_or(0, |o| o.2)
    }
}

/// A summary for people.
pub struct HumanSink<W: Write> {
    out: W,
    header: EraDumpHeader,
    counts: EraCounts,
}

impl<W: Write> HumanSink<W> {
    /// Writes to `w`.
    pub fn new(w: W) -> Self {
        HumanSink {
            out: w,
            header: EraDumpHeader::default(),
            counts: EraCounts::default(),
        }
    }
}

/// `1-5, 7` for ascending eras.
fn era_ranges(eras: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < eras.len() {
        let mut k = i;
        while k + 1 < eras.len() && eras[k].checked_add(1) == Some(eras[k + 1]) {
            k += 1;
        }
        parts.push(if k == i {
            eras[i].to_string()
        } else {
            format!("{}-{}", eras[i], eras[k])
        });
        i = k + 1;
    }
    const SHOWN: usize = 8;
    if parts.len() > SHOWN {
        let more = parts.len() - SHOWN;
        parts.truncate(SHOWN);
        parts.push(format!("and {more} more runs"));
    }
    parts.join(", ")
}

impl<W: Write> EraSink for HumanSink<W> {
    fn begin(&mut self, h: &EraDumpHeader) -> io::Result<()> {
        self.header = h.clone();
        Ok(())
    }

    fn writeset_begin(&mut self, _: u64, _: u64, _: bool) -> io::Result<()> {
        Ok(())
    }

    fn writeset_word(&mut self, _: u64, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }

    fn writeset_end(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn era_array_begin(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn eras(&mut self, _first: u64, eras: &[u64]) -> io::Result<()> {
        // Runs of one era are counted at once: most blocks share few eras.
        let mut k = 0;
        while k < eras.len() {
            let mut m = k + 1;
            while m < eras.len() && eras[m] == eras[k] {
                m += 1;
            }
            self.counts.add(eras[k], (m - k) as u64);
            k = m;
        }
        Ok(())
    }

    fn era_array_end(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn end(&mut self, notes: &DumpNotes) -> io::Result<()> {
        let h = &self.header;
        let c = &self.counts;
        let n = h.nr_blocks;
        let mut o = io::BufWriter::new(&mut self.out);
        match h.view {
            Some(s) => writeln!(o, "dm-era metadata snapshot (block {s})")?,
            None => writeln!(o, "dm-era metadata")?,
        }
        summary_line(&mut o, "block size", sectors(h.block_size as u64))?;
        summary_line(
            &mut o,
            "blocks",
            format!(
                "{n}, covering {}",
                sectors(n.saturating_mul(h.block_size as u64))
            ),
        )?;
        summary_line(&mut o, "current era", h.current_era)?;
        let mut ws = if h.archived.is_empty() {
            "none archived".to_string()
        } else {
            format!(
                "{} archived (era{} {})",
                h.archived.len(),
                if h.archived.len() == 1 { "" } else { "s" },
                era_ranges(&h.archived)
            )
        };
        if h.current_writeset {
            ws += &format!("; a committed current writeset (era {})", h.current_era);
        }
        summary_line(&mut o, "writesets", ws)?;
        summary_line(
            &mut o,
            "metadata snapshot",
            h.metadata_snap
                .map_or("none".to_string(), |s| format!("at block {s}")),
        )?;
        summary_line(
            &mut o,
            "metadata space",
            metadata_space(h.metadata_used, h.metadata_blocks),
        )?;
        let written = c.written();
        summary_line(
            &mut o,
            "written",
            format!("{written} of {n} blocks ({}%)", percent(written, n)),
        )?;
        if !notes.skipped.is_empty() {
            summary_line(
                &mut o,
                "damage",
                format!(
                    "{} repair decision{} (see standard error); unreadable eras are counted as recent",
                    notes.skipped.len(),
                    if notes.skipped.len() == 1 { "" } else { "s" }
                ),
            )?;
        }
        writeln!(o, "  blocks by the era they were last written in:")?;
        let row = |o: &mut io::BufWriter<&mut W>, label: String, k: u64| {
            writeln!(o, "    {label:<18}{k} ({}%)", percent(k, n))
        };
        if let Some((lo, hi, k)) = c.older {
            row(&mut o, format!("eras {lo}-{hi}:"), k)?;
        }
        for (&era, &k) in &c.recent {
            row(&mut o, format!("era {era}:"), k)?;
        }
        row(&mut o, "never:".to_string(), c.never)?;
        o.flush()?;
        drop(o);
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn era_counts_keep_the_recent_eras_apart_and_add_up_the_older() {
        let mut c = EraCounts::default();
        for era in (0..200u64).rev() {
            c.add(era, era + 1);
        }
        c.add(3, 10);
        assert_eq!(c.never, 1);
        assert_eq!(c.recent.len(), LISTED_ERAS);
        assert_eq!(
            *c.recent.first_key_value().unwrap().0,
            200 - LISTED_ERAS as u64
        );
        let (lo, hi, k) = c.older.unwrap();
        assert_eq!((lo, hi), (1, 199 - LISTED_ERAS as u64));
        // Eras 1..=hi hold era + 1 blocks each; era 3 got 10 more.
        assert_eq!(k, (1..=hi).map(|e| e + 1).sum::<u64>() + 10);
        assert_eq!(c.written() + c.never, (1..=200u64).sum::<u64>() + 10);
    }

    #[test]
    fn era_ranges_are_runs() {
        assert_eq!(era_ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(era_ranges(&[4]), "4");
        assert_eq!(
            era_ranges(&[u64::MAX - 1, u64::MAX]),
            format!("{}-{}", u64::MAX - 1, u64::MAX)
        );
        assert_eq!(era_ranges(&[u64::MAX, 0]), format!("{}, 0", u64::MAX));
        let many: Vec<u64> = (0..20).map(|i| i * 2).collect();
        assert!(era_ranges(&many).ends_with("and 12 more runs"));
    }
}
