//! era_repair (ERA.md §12.4): salvage what can be read from damaged era metadata
//! into a fresh image. A repairing dump feeds era_restore: unreadable writeset bits
//! become set, unreadable era-array entries become the current era, lost writesets
//! raise every block to the highest era that may have been lost. era_invalidate on
//! the result therefore over-reports, never under-reports. A healthy image repairs to
//! one that dumps identically.

use crate::era::dump::{dump, DumpNotes, DumpOptions};
use crate::era::restore::{restore, EraRestored};
use crate::io::BlockDevice;
use crate::repair::{pipe_through, probe, RepairError};
use crate::restore::RestoreSummary;

/// What a repair did.
#[derive(Debug)]
pub struct EraRepair {
    /// What was restored.
    pub restored: EraRestored,
    /// Output figures.
    pub summary: RestoreSummary,
    /// What could not be read and how it was filled in.
    pub notes: DumpNotes,
}

/// Repairs the era metadata on `input` into `output`.
pub fn repair<D: BlockDevice>(
    input: &dyn BlockDevice,
    output: D,
) -> Result<EraRepair, RepairError> {
    probe(input)?;
    let opts = DumpOptions {
        repair: true,
        ..Default::default()
    };
    let (restored, summary, notes) =
        pipe_through(|w| dump(input, w, opts), |r| restore(r, output, None))?;
    Ok(EraRepair {
        restored,
        summary,
        notes,
    })
}
