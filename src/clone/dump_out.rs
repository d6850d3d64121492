//! The formats of `clone_dump`: the walk of [`crate::clone::dump`] hands the
//! hydrated ranges to a [`CloneSink`], which writes them as they come.
//!
//! * [`XmlSink`]: the XML of CLONE.md §11 (the default).
//! * [`JsonSink`]: the same content as JSON; documented in clone_dump(8):
//!
//!   ```text
//!   {
//!     "format": "clone_dump",
//!     "version": 1,
//!     "region_size": 64,
//!     "target_size": 131072,
//!     "nr_regions": 2048,
//!     "hydrated": [
//!       {"begin":0,"end":1}
//!     ],
//!     "unreadable": [],
//!     "findings": []
//!   }
//!   ```
//!
//! * [`HumanSink`]: a summary for people (geometry, hydrated share, metadata
//!   space), computed from the same ranges.

use std::io::{self, Write};

use crate::clone::dump::CloneDumpNotes;
use crate::clone::superblock::CloneSuperblock;
use crate::format::{metadata_space, percent, sectors, summary_line};
use crate::json::JsonOut;
use crate::report::write_findings_json;
use crate::xml::{XmlOut, MAX_DIGITS};

/// Receives a clone dump: the superblock, the hydrated ranges in ascending order
/// (half-open, maximal), then the notes of a repairing dump.
pub trait CloneSink {
    /// The superblock, before any range.
    fn begin(&mut self, sb: &CloneSuperblock) -> io::Result<()>;
    /// Regions `[begin, end)` are hydrated.
    fn hydrated(&mut self, begin: u64, end: u64) -> io::Result<()>;
    /// The end of the dump: writes what remains and flushes.
    fn end(&mut self, notes: &CloneDumpNotes) -> io::Result<()>;
}

/// The XML of the dump.
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

impl<W: Write> CloneSink for XmlSink<W> {
    fn begin(&mut self, sb: &CloneSuperblock) -> io::Result<()> {
        let x = self.x();
        x.s("<superblock uuid=\"\" region_size=\"")?;
        x.n(sb.region_size)?;
        x.s("\" target_size=\"")?;
        x.n(sb.target_size)?;
        x.s("\" nr_regions=\"")?;
        x.n(sb.nr_regions())?;
        x.s("\">\n")
    }

    fn hydrated(&mut self, b: u64, e: u64) -> io::Result<()> {
        // One test for room for the whole element: its text and two numbers.
        const TEXT: &str = "  <hydrated begin=\"\" end=\"\"/>\n";
        let mut r = self.x().room(TEXT.len() + 2 * MAX_DIGITS)?;
        r.s("  <hydrated begin=\"");
        r.n(b);
        r.s("\" end=\"");
        r.n(e);
        r.s("\"/>\n");
        Ok(())
    }

    fn end(&mut self, _notes: &CloneDumpNotes) -> io::Result<()> {
        let mut x = self.x.take().expect("end() is called once");
        x.s("</superblock>\n")?;
        x.finish()?.flush()
    }
}

/// The dump as a JSON document.
pub struct JsonSink<W: Write> {
    j: Option<JsonOut<W>>,
}

impl<W: Write> JsonSink<W> {
    /// Writes to `w`.
    pub fn new(w: W) -> Self {
        JsonSink {
            j: Some(JsonOut::new(w)),
        }
    }

    fn j(&mut self) -> &mut JsonOut<W> {
        self.j.as_mut().expect("the sink is not used after end()")
    }
}

impl<W: Write> CloneSink for JsonSink<W> {
    fn begin(&mut self, sb: &CloneSuperblock) -> io::Result<()> {
        let j = self.j();
        j.begin_object(false)?;
        j.field_str("format", "clone_dump")?;
        j.field_num("version", 1)?;
        j.field_num("region_size", sb.region_size)?;
        j.field_num("target_size", sb.target_size)?;
        j.field_num("nr_regions", sb.nr_regions())?;
        j.key("hydrated")?;
        j.begin_array(false)
    }

    fn hydrated(&mut self, b: u64, e: u64) -> io::Result<()> {
        self.j().range(b, e)
    }

    fn end(&mut self, notes: &CloneDumpNotes) -> io::Result<()> {
        let mut j = self.j.take().expect("end() is called once");
        j.end()?;
        j.key("unreadable")?;
        j.begin_array(false)?;
        for &(b, e) in &notes.unreadable {
            j.range(b, e)?;
        }
        j.end()?;
        write_findings_json(&mut j, "findings", &notes.findings)?;
        j.end()?;
        j.finish()?.flush()
    }
}

/// A summary for people.
pub struct HumanSink<W: Write> {
    out: W,
    sb: Option<CloneSuperblock>,
    hydrated: u64,
    ranges: u64,
}

impl<W: Write> HumanSink<W> {
    /// Writes to `w`.
    pub fn new(w: W) -> Self {
        HumanSink {
            out: w,
            sb: None,
            hydrated: 0,
            ranges: 0,
        }
    }
}

impl<W: Write> CloneSink for HumanSink<W> {
    fn begin(&mut self, sb: &CloneSuperblock) -> io::Result<()> {
        self.sb = Some(*sb);
        Ok(())
    }

    fn hydrated(&mut self, b: u64, e: u64) -> io::Result<()> {
        self.hydrated += e - b;
        self.ranges += 1;
        Ok(())
    }

    fn end(&mut self, notes: &CloneDumpNotes) -> io::Result<()> {
        let sb = self.sb.expect("begin() comes first");
        let n = sb.nr_regions();
        let mut o = io::BufWriter::new(&mut self.out);
        writeln!(o, "dm-clone metadata")?;
        summary_line(&mut o, "region size", sectors(sb.region_size))?;
        summary_line(&mut o, "device size", sectors(sb.target_size))?;
        summary_line(&mut o, "regions", n)?;
        summary_line(
            &mut o,
            "hydrated",
            format!(
                "{} of {n} regions ({}%) in {} range{}",
                self.hydrated,
                percent(self.hydrated, n),
                self.ranges,
                if self.ranges == 1 { "" } else { "s" }
            ),
        )?;
        let lost: u64 = notes.unreadable.iter().map(|(b, e)| e - b).sum();
        if lost > 0 {
            summary_line(
                &mut o,
                "unreadable",
                format!("{lost} regions, counted as not hydrated"),
            )?;
        }
        summary_line(
            &mut o,
            "metadata space",
            metadata_space(sb.sm_root.nr_allocated, sb.sm_root.nr_blocks),
        )?;
        o.flush()?;
        drop(o);
        self.out.flush()
    }
}
