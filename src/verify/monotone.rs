//! The invariants between crash points (REPLAY.md §2.6): what one durable view
//! holds, every later state must still hold.
//!
//! * I4 (dm-clone): no region is lost: the hydrated set of the durable view at
//!   one crash point is contained in the hydrated set of every state at a later
//!   one.
//! * E3 (dm-era): for consecutive durable views and every threshold era `e`
//!   (the newest 256 below the current era, on a long-lived target),
//!   `written_since(v1, e) ⊆ written_since(v2, e)` (what digestion moves from a
//!   writeset into the era array must not be lost on the way).
//! * E4 (dm-era): the current era never decreases.
//! * G3 (both): the superblock's bytes from 512 on never change, so a torn
//!   superblock write leaves the old or the new first sector over an identical
//!   tail.

use crate::era::invalidate::{invalidate, InvalidateOptions};
use crate::era::superblock as esb;
use crate::model::bits::Bits;
use crate::sim::MetaImage;
use crate::verify::{image_hydrated, Violation};

/// Threshold eras below the current one that E3 compares at most.
const E3_ERAS: u32 = 256;

/// What the last durable view held.
#[derive(Debug, Clone, Default)]
pub struct Monotone {
    hydrated: Option<Bits>,
    era: Option<u32>,
    /// `written_since` of the last durable view, per threshold era (in
    /// order), as runs.
    since: Vec<(u32, Vec<(u64, u64)>)>,
    /// Bytes 512.. of the last durable superblock.
    sb_tail: Option<Vec<u8>>,
}

impl Monotone {
    /// G3 between the last durable superblock and the one of `img` (crash point
    /// `cp`); then `img`'s becomes the last.
    pub fn superblock(&mut self, img: &MetaImage, cp: usize) -> Option<Violation> {
        use crate::io::BlockDevice;
        let mut b = [0u8; crate::io::BLOCK_SIZE];
        img.read(0, &mut b).ok()?;
        if b.iter().all(|&x| x == 0) {
            return None;
        }
        let tail = b[512..].to_vec();
        let before = self.sb_tail.replace(tail.clone())?;
        let at = before.iter().zip(&tail).position(|(x, y)| x != y)?;
        Some(Violation {
            id: "G3",
            cp,
            state: "durable".into(),
            what: format!(
                "superblock byte {} changed between two commits: a torn superblock write could mix them",
                512 + at
            ),
        })
    }

    /// I4 on a state of crash point `cp` whose hydrated set is `now`.
    pub fn clone_state(&self, now: &Bits, cp: usize, state: &str) -> Option<Violation> {
        let before = self.hydrated.as_ref()?;
        let lost = before
            .runs()
            .into_iter()
            .flat_map(|(a, b)| a..b)
            .find(|&r| !now.get(r))?;
        Some(Violation {
            id: "I4",
            cp,
            state: state.to_string(),
            what: format!(
                "region {lost} was hydrated in an earlier durable state and is not any more"
            ),
        })
    }

    /// Remembers the durable view of a clone crash point.
    pub fn clone_durable(&mut self, img: &MetaImage) {
        if let Ok(h) = image_hydrated(img) {
            self.hydrated = Some(h);
        }
    }

    /// E3 and E4 between the last durable view and `img`, the durable view of
    /// crash point `cp`; then `img` becomes the last one.
    pub fn era_durable(&mut self, img: &MetaImage, cp: usize) -> Vec<Violation> {
        let Ok((sb, _)) = esb::read_at(img, 0) else {
            return Vec::new();
        };
        let v = |id, what| Violation {
            id,
            cp,
            state: "durable".into(),
            what,
        };
        let mut out = Vec::new();
        if let Some(prev) = self.era {
            if sb.current_era < prev {
                out.push(v(
                    "E4",
                    format!(
                        "the current era went back from {prev} to {}",
                        sb.current_era
                    ),
                ));
            }
        }
        // Each threshold walks the whole metadata: the newest E3_ERAS below
        // the current era are compared (every one on all but a long-lived
        // target), not one per era a superblock claims.
        let top = sb.current_era.max(self.era.unwrap_or(0)).saturating_add(1);
        let mut since = Vec::new();
        for e in top.saturating_sub(E3_ERAS)..=top {
            let Ok(inv) = invalidate(
                img,
                InvalidateOptions {
                    written_since: e,
                    metadata_snapshot: false,
                },
            ) else {
                return out;
            };
            let prev =
                (self.since.binary_search_by_key(&e, |p| p.0).ok()).map(|i| &self.since[i].1);
            if let Some(prev) = prev {
                if let Some(b) = prev
                    .iter()
                    .flat_map(|&(a, b)| a..b)
                    .find(|&b| !inv.contains(b))
                {
                    out.push(v(
                        "E3",
                        format!("block {b} was written since era {e} in the previous durable state and is not any more"),
                    ));
                }
            }
            since.push((e, inv.runs().collect()));
        }
        self.since = since;
        self.era = Some(sb.current_era);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{ExtentMap, MetaVal};
    use std::sync::Arc;

    fn image(sb: [u8; 4096]) -> MetaImage {
        let mut m = ExtentMap::new();
        m.insert(0, 1, 1, MetaVal(Arc::new(sb)));
        MetaImage::new(4, m)
    }

    #[test]
    fn g3_fires_when_the_superblock_tail_changes() {
        let mut mono = Monotone::default();
        let mut sb = [0u8; 4096];
        sb[0] = 1;
        assert!(mono.superblock(&image(sb), 1).is_none());
        sb[100] = 7; // the first sector may change
        assert!(mono.superblock(&image(sb), 2).is_none());
        sb[600] = 9;
        let v = mono.superblock(&image(sb), 3).expect("tail changed");
        assert_eq!(v.id, "G3");
        assert!(v.what.contains("byte 600"));
    }
}
