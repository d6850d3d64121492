//! `era_dump --format human`: a summary of era metadata for people, from the same
//! walk as the dump ([`crate::era::dump_out::EraSink`]): geometry, writesets,
//! snapshot, metadata space and how many blocks were last written in each era. Its
//! memory is bounded: the [`LISTED_ERAS`] most recent eras are counted one by one,
//! older ones together.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::era::dump::DumpNotes;
use crate::era::dump_out::{EraDumpHeader, EraSink};
use crate::format::{metadata_space, percent, sectors, summary_line};

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
