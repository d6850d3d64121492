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
//! * [`HumanSink`](crate::era::summary::HumanSink) (`summary.rs`): a summary for
//!   people.

use std::io::{self, Write};

use crate::era::dump::DumpNotes;
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
    /// One past the last era-array entry seen.
    array_end: u64,
}

impl<W: Write> JsonSink<W> {
    /// Writes to `w`.
    pub fn new(w: W) -> Self {
        JsonSink {
            j: Some(JsonOut::new(w)),
            bits_run: None,
            nr_bits: 0,
            era_run: None,
            array_end: 0,
        }
    }

    fn j(&mut self) -> &mut JsonOut<W> {
        self.j.as_mut().expect("the sink is not used after end()")
    }

    fn era_run(&mut self, b: u64, e: u64, era: u64) -> io::Result<()> {
        self.j()
            .num_object(&[("begin", b), ("end", e), ("era", era)])
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
        // The run is closed at the next different era or at the end of the array.
        self.array_end = first + eras.len() as u64;
        Ok(())
    }

    fn era_array_end(&mut self) -> io::Result<()> {
        if let Some((start, e)) = self.era_run.take() {
            let end = self.array_end;
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
