//! The ordering rules of the persistent-data commit (REPLAY.md §2.6), checked
//! at a flush of the metadata device from what is durable and what was written
//! since the previous flush:
//!
//! * G1 (superblock last): a superblock written since the last flush
//!   references no block also written since then (a power cut could make the
//!   superblock durable without it).
//! * G2 (no overwrite of live blocks): no block reachable from the durable
//!   superblock (or its metadata snapshot) is written.

use std::collections::HashMap;

use super::log::Target;
use crate::pdata::refs::Role;
use crate::sim::MetaImage;

/// Blocks reachable from an image's superblock(s), with their roles; `None`
/// when the image holds no valid metadata.
pub fn reachable(target: Target, img: &MetaImage) -> Option<HashMap<u64, Role>> {
    let refs = match target {
        Target::Clone => {
            crate::clone::check::check(img, &crate::clone::check::CheckOptions::default()).refs
        }
        Target::Era => {
            crate::era::check::check(img, &crate::era::check::CheckOptions::default()).refs
        }
    }?;
    Some(refs.blocks().into_iter().map(|(b, _, r)| (b, r)).collect())
}

/// A block's role, as a phrase.
pub fn role_name(r: Role) -> String {
    match r {
        Role::Superblock => "a superblock".into(),
        Role::SmIndex => "the space map's index".into(),
        Role::SmBitmap => "a space-map bitmap".into(),
        Role::RefCountNode => "a ref-count tree node".into(),
        Role::TreeNode(v) => format!("a B-tree node ({v}-byte values)"),
        Role::ArrayBlock(v) => format!("an array block ({v}-byte values)"),
    }
}

/// G1 and G2 at a flush: `durable` is what the device held durably before
/// it, `written` the blocks written since the previous flush, `landed` the
/// device with all of them. Each finding is an invariant id and what was found.
pub fn at_flush(
    target: Target,
    durable: &MetaImage,
    written: &[u64],
    landed: &MetaImage,
) -> Vec<(&'static str, String)> {
    let live = reachable(target, durable).unwrap_or_default();
    at_point(target, &live, written, landed)
}

/// G1 and G2 at any point of the device's history: `live` is what the durable
/// superblock reaches ([`reachable`] of the durable content), `written` the
/// blocks written (cached or in flight) since the last flush, `landed` the
/// device with all of them.
pub fn at_point(
    target: Target,
    live: &HashMap<u64, Role>,
    written: &[u64],
    landed: &MetaImage,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(&b) = written.iter().find(|&&b| b != 0 && live.contains_key(&b)) {
        out.push((
            "G2",
            format!(
                "block {b}, {} reachable from the durable superblock, is written over",
                role_name(live[&b])
            ),
        ));
    }
    if written.contains(&0) {
        if let Some(reach) = reachable(target, landed) {
            if let Some(&b) = written.iter().find(|&&b| b != 0 && reach.contains_key(&b)) {
                out.push((
                    "G1",
                    format!(
                        "the superblock and block {b}, {} it references, are written in the same flush epoch: a power cut can make the superblock durable without it",
                        role_name(reach[&b])
                    ),
                ));
            }
        }
    }
    out
}
