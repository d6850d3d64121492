//! Which blocks a pack holds: the blocks the metadata uses when it checks clean
//! (the superblock, and every block the target's structures and the space map
//! reach: exactly the blocks the space map counts), else (or when asked) every
//! block that is not all zeroes.

use super::error::{target_name, PackError};
use super::format::superblock_kind;
use crate::clone::superblock::CLONE_MAGIC;
use crate::era::superblock::ERA_MAGIC;
use crate::io::{zeroed_block, BlockDevice};
use crate::pdata::le64;
use crate::report::Report;
use crate::superblock::{is_zero, MAGIC_OFFSET, SUPERBLOCK_LOCATION};
use crate::trace::Target;

/// The blocks to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The metadata checks clean: the blocks it uses, in order. Blocks left in
    /// free space by earlier transactions are not packed.
    Used(Vec<u64>),
    /// Every block that is not all zeroes, as asked: old copies in free space
    /// included, so that the image unpacks byte for byte.
    Everything,
    /// The metadata is damaged, so its structures cannot be trusted to name every
    /// block that matters: every block that is not all zeroes is packed.
    Damaged {
        /// Why, for the tool's message.
        reason: String,
    },
}

/// The superblock magic of `target`.
pub fn target_magic(target: Target) -> u64 {
    match target {
        Target::Clone => CLONE_MAGIC,
        Target::Era => ERA_MAGIC,
    }
}

/// The pack tool of `target`.
pub fn pack_tool(target: Target) -> &'static str {
    match target {
        Target::Clone => "clone_metadata_pack",
        Target::Era => "era_metadata_pack",
    }
}

/// Refuses metadata that is not `target`'s, then chooses the blocks to pack: with
/// `everything`, every block that is not all zeroes.
pub fn select(
    dev: &dyn BlockDevice,
    target: Target,
    everything: bool,
) -> Result<Selection, PackError> {
    let mut sb = zeroed_block();
    dev.read(SUPERBLOCK_LOCATION, &mut sb)
        .map_err(|source| PackError::ReadBlock {
            block: SUPERBLOCK_LOCATION,
            source,
        })?;
    let name = target_name(target);
    let refuse = |why: String| PackError::NotTarget { target, why };
    if is_zero(&sb[..]) {
        return Err(refuse(format!(
            "not formatted: block 0 is all zeroes, there is no {name} metadata to pack"
        )));
    }
    let magic = le64(&sb[..], MAGIC_OFFSET);
    let expected = target_magic(target);
    if magic != expected {
        return Err(refuse(match superblock_kind(magic) {
            Some(k) => {
                let tool = k
                    .target
                    .map_or("thin_metadata_pack".to_string(), |t| pack_tool(t).into());
                format!("this is {} metadata, not {name} (use {tool})", k.name)
            }
            None => format!(
                "block 0 is not a {name} superblock: bad magic number {magic:#x}, expected {expected:#x}"
            ),
        }));
    }
    if everything {
        return Ok(Selection::Everything);
    }
    let (report, refs, tool) = match target {
        Target::Clone => {
            let o = crate::clone::check(dev, &Default::default());
            (o.report, o.refs, "clone_check")
        }
        Target::Era => {
            let o = crate::era::check(dev, &Default::default());
            (o.report, o.refs, "era_check")
        }
    };
    match refs {
        Some(refs) if report.findings().is_empty() => Ok(Selection::Used(
            refs.blocks().into_iter().map(|(b, _, _)| b).collect(),
        )),
        _ => Ok(Selection::Damaged {
            reason: damage_summary(&report, tool),
        }),
    }
}

fn damage_summary(report: &Report, tool: &str) -> String {
    let n = report.findings().len();
    match report.first_error().or(report.findings().first()) {
        Some(f) => format!(
            "{tool} finds {n} problem{} (the first: {})",
            if n == 1 { "" } else { "s" },
            f.detail()
        ),
        None => format!("{tool} could not walk the metadata"),
    }
}
