//! dm-clone's background hydration: the regions user I/O touched, and
//! whether a kernel commit's hydrated set lies between two states of the
//! model.

use crate::clone::superblock as csb;
use crate::logwrites::{Log, LogSource};
use crate::model::bits::Bits;
use crate::sim::MetaImage;

/// The regions a user write or discard touched, in a device of `sb`'s
/// geometry.
fn touched_regions<R: LogSource>(user: &Log<R>, sb: &csb::CloneSuperblock) -> Bits {
    let per = user.sector_size as u64 / 512;
    let rs = sb.region_size.max(1);
    let nr = sb.nr_regions();
    let mut touched = Bits::new(nr);
    for e in &user.entries {
        if e.nr_sectors > 0 && !e.is_mark() {
            let a = e.sector.saturating_mul(per) / rs;
            let b = e
                .sector
                .saturating_add(e.nr_sectors)
                .saturating_mul(per)
                .div_ceil(rs);
            touched.set_range(a, b);
        }
    }
    touched
}

/// The regions user I/O touched, in the geometry of the last kernel commit
/// whose hydrated set reads, and whether the kernel hydrated any other
/// region (background hydration was on); `None` when no commit's set reads.
pub(super) fn user_regions<R: LogSource>(
    kernel: &[(u64, MetaImage)],
    user: &Log<R>,
) -> Option<(Bits, bool)> {
    let (sb, hydrated) = last_hydrated(kernel)?;
    let touched = touched_regions(user, &sb);
    let background = !hydrated.is_subset(&touched);
    Some((touched, background))
}

/// The superblock and hydrated set of the last kernel commit that has them
/// (a superblock whose hydrated set reads is one whose geometry is sound).
fn last_hydrated(kernel: &[(u64, MetaImage)]) -> Option<(csb::CloneSuperblock, Bits)> {
    kernel.iter().rev().find_map(|(_, img)| {
        let sb = csb::read(img).ok()?.0;
        Some((sb, crate::verify::image_hydrated(img).ok()?))
    })
}

/// Whether a kernel commit's hydrated set lies between two consecutive
/// states of one pass of the model, apart and together: its regions no user
/// I/O touched (background hydration's) between two states' such regions,
/// and its regions user I/O touched between two states' such regions. The
/// kernel's copies run at their own pace beside the user's I/O, so the two
/// parts need not be bracketed at the same moment of the model.
pub(super) fn between(k: &Bits, passes: &[Vec<Bits>], touched: &Bits) -> bool {
    // `a ⊆ b` over the regions user I/O touched (`user`) or did not.
    let subset = |a: &Bits, b: &Bits, user: bool| a.is_subset_where(b, touched, user);
    let within = |user: bool| {
        passes.iter().any(|p| {
            p.windows(2)
                .any(|w| subset(&w[0], k, user) && subset(k, &w[1], user))
        })
    };
    within(false) && within(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(runs: &[(u64, u64)]) -> Bits {
        let mut b = Bits::new(4096);
        for &(x, y) in runs {
            for r in x..y {
                b.set(r);
            }
        }
        b
    }

    /// A capture under load: the kernel's copies ran ahead of a user write
    /// that needed a copy of its own (region 3750), so its commit holds
    /// region 1125, written whole, and copies the model made only after
    /// both writes.
    #[test]
    fn background_copies_and_user_writes_are_bracketed_apart() {
        let touched = bits(&[(12, 13), (1125, 1126), (3750, 3751)]);
        let pass = vec![
            bits(&[]),
            bits(&[(12, 13)]),
            bits(&[(0, 32)]),
            bits(&[(0, 32), (1125, 1126), (3750, 3751)]),
            bits(&[(0, 564), (1125, 1126), (3750, 3751)]),
            bits(&[(0, 4096)]),
        ];
        let passes = [pass];
        let kernel = bits(&[(0, 544), (1125, 1126)]);
        assert!(between(&kernel, &passes, &touched));
        // Judged together, no two states bracket it.
        assert!(!between(&kernel, &passes, &Bits::new(0)));
        // A user-written region the model hydrates only with the other one.
        let late = bits(&[(0, 544), (3750, 3751)]);
        let strict = [vec![
            bits(&[(0, 32)]),
            bits(&[(0, 32), (1125, 1126)]),
            bits(&[(0, 600), (1125, 1126), (3750, 3751)]),
        ]];
        assert!(!between(&late, &strict, &touched));
        // Background copies out of order: region 700 without those before it.
        let gap = bits(&[(0, 32), (700, 701), (1125, 1126)]);
        assert!(!between(&gap, &passes, &touched));
        // Every region no model state holds.
        assert!(!between(&bits(&[(0, 4096)]), &[vec![bits(&[])]], &touched));
    }
}
