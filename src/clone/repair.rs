//! clone_repair (CLONE.md §11): salvage damaged clone metadata into a fresh image.
//!
//! Structure around an intact bitset (space map, index nodes) is rebuilt exactly. A
//! lost part of the bitset cannot be guessed: marking a region unhydrated loses user
//! writes, marking it hydrated exposes destination data that may never have been
//! copied. Without an operator's policy the repair refuses and names the affected
//! region ranges.

use crate::clone::dump::{dump_with, survey, CloneDumpNotes};
use crate::clone::restore::restore;
use crate::clone::xml::CloneHeader;
use crate::io::BlockDevice;
use crate::repair::{pipe_through, probe, RepairError};
use crate::restore::RestoreSummary;

/// What to do with regions whose state is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LostRegions {
    /// Refuse to repair (the default).
    #[default]
    Refuse,
    /// Take them as hydrated (served from the destination).
    AssumeHydrated,
    /// Take them as not hydrated (read from the source, copied again).
    AssumeUnhydrated,
}

/// What a repair did.
#[derive(Debug)]
pub struct CloneRepair {
    /// The geometry restored.
    pub header: CloneHeader,
    /// Output figures.
    pub summary: RestoreSummary,
    /// Regions whose state was lost (filled in by the policy) and the damage found.
    pub notes: CloneDumpNotes,
}

/// Repairs the clone metadata on `input` into `output`.
pub fn repair<D: BlockDevice>(
    input: &dyn BlockDevice,
    output: D,
    policy: LostRegions,
) -> Result<CloneRepair, RepairError> {
    probe(input)?;
    // First pass: what is lost? Nothing is written before the policy is settled.
    let first = survey(input).map_err(RepairError::Unsalvageable)?;
    if !first.unreadable.is_empty() && policy == LostRegions::Refuse {
        return Err(RepairError::Unreadable(first.unreadable));
    }
    let hydrated = policy == LostRegions::AssumeHydrated;
    let (header, summary, notes) = pipe_through(
        |w| dump_with(input, w, true, hydrated),
        |r| restore(r, output, None),
    )?;
    Ok(CloneRepair {
        header,
        summary,
        notes,
    })
}
