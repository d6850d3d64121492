//! A map from half-open unit ranges to values, for device overlays: writing a
//! range replaces what it covers, splitting the extents it cuts.
//!
//! The extents are kept in a vector sorted by start (and so by end, as they do
//! not overlap): lookups are binary searches, and the replay's usual pattern, a
//! run of writes each replacing exactly one extent next to the one written
//! before, is found through a cursor without searching at all.

/// A value that covers a run of units and can be cut: `offset(n)` is the value of
/// the same write seen `n` units further in (a stamp names its sector; a metadata
/// block has one unit and ignores it).
pub trait Unit: Clone + PartialEq + std::fmt::Debug {
    /// The value `n` units past the start of this one.
    fn offset(&self, n: u64) -> Self;
}

/// One extent: `start..end`, the completion seq that wrote it, its value at
/// `start`.
#[derive(Debug, Clone)]
struct Ext<V> {
    start: u64,
    end: u64,
    seq: u64,
    val: V,
}

/// Non-overlapping extents `start..end → (completion seq, value)`.
#[derive(Debug, Clone)]
pub struct ExtentMap<V> {
    exts: Vec<Ext<V>>,
    /// Index of the extent touched last (a hint; may be out of range).
    cursor: usize,
}

impl<V: Unit> Default for ExtentMap<V> {
    fn default() -> Self {
        ExtentMap {
            exts: Vec::new(),
            cursor: 0,
        }
    }
}

impl<V: Unit> ExtentMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.exts.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.exts.is_empty()
    }

    /// Index of the first extent ending after `u` (the one holding `u`, if any).
    fn first_after(&self, u: u64) -> usize {
        self.exts.partition_point(|x| x.end <= u)
    }

    /// Index of the extent that is exactly `start..end`, looked for at the
    /// cursor and just after it first.
    fn exact(&self, start: u64, end: u64) -> Option<usize> {
        let hit = |i: usize| {
            self.exts
                .get(i)
                .is_some_and(|x| x.start == start && x.end == end)
        };
        let c = self.cursor;
        if hit(c) {
            return Some(c);
        }
        if hit(c + 1) {
            return Some(c + 1);
        }
        let i = self.first_after(start);
        hit(i).then_some(i)
    }

    /// Replaces everything in `start..end` by `with` (sorted, inside the
    /// range), keeping the parts of cut extents outside it.
    fn splice(&mut self, start: u64, end: u64, with: Option<Ext<V>>) {
        let i = self.first_after(start);
        let j = i + self.exts[i..].partition_point(|x| x.start < end);
        let mut pieces: Vec<Ext<V>> = Vec::with_capacity(3);
        if i < j {
            let first = &self.exts[i];
            if first.start < start {
                pieces.push(Ext {
                    start: first.start,
                    end: start,
                    seq: first.seq,
                    val: first.val.clone(),
                });
            }
        }
        let at = i + pieces.len();
        pieces.extend(with);
        if i < j {
            let last = &self.exts[j - 1];
            if last.end > end {
                pieces.push(Ext {
                    start: end,
                    end: last.end,
                    seq: last.seq,
                    val: last.val.offset(end - last.start),
                });
            }
        }
        self.cursor = at;
        if pieces.len() == j - i {
            for (k, p) in pieces.into_iter().enumerate() {
                self.exts[i + k] = p;
            }
        } else {
            self.exts.splice(i..j, pieces);
        }
    }

    /// Forgets what was written over `start..end` (back to the base value),
    /// keeping the parts of cut extents outside it.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start < end {
            self.splice(start, end, None);
        }
    }

    /// Forgets the parts of `start..end` that the write completed as `seq` still
    /// holds.
    pub fn remove_seq(&mut self, start: u64, end: u64, seq: u64) {
        if let Some(i) = self.exact(start, end) {
            if self.exts[i].seq == seq {
                self.exts.remove(i);
                self.cursor = i;
                return;
            }
        }
        let mine: Vec<(u64, u64)> = self
            .spans(start, end)
            .filter(|&(_, _, s)| s == seq)
            .map(|(a, b, _)| (a, b))
            .collect();
        for (a, b) in mine {
            self.splice(a, b, None);
        }
    }

    /// Writes `v` over `start..end`, completed as `seq`.
    pub fn insert(&mut self, start: u64, end: u64, seq: u64, v: V) {
        if start >= end {
            return;
        }
        // The common case of a rewrite of exactly one earlier extent.
        if let Some(i) = self.exact(start, end) {
            let x = &mut self.exts[i];
            x.seq = seq;
            x.val = v;
            self.cursor = i;
            return;
        }
        self.splice(
            start,
            end,
            Some(Ext {
                start,
                end,
                seq,
                val: v,
            }),
        );
    }

    /// Writes `v` over the parts of `start..end` whose current value completed
    /// before `seq` (a coherent cache never puts older data over newer).
    pub fn insert_if_newer(&mut self, start: u64, end: u64, seq: u64, v: V) {
        if start >= end {
            return;
        }
        // The common case of exactly one older extent over the range.
        if let Some(i) = self.exact(start, end) {
            let x = &mut self.exts[i];
            if x.seq <= seq {
                x.seq = seq;
                x.val = v;
                self.cursor = i;
                return;
            }
        }
        let newer: Vec<(u64, u64)> = self
            .spans(start, end)
            .filter(|&(_, _, s)| s > seq)
            .map(|(a, b, _)| (a, b))
            .collect();
        if newer.is_empty() {
            self.insert(start, end, seq, v);
            return;
        }
        let mut at = start;
        for (a, b) in newer {
            if a > at {
                self.insert(at, a, seq, v.offset(at - start));
            }
            at = b;
        }
        if at < end {
            self.insert(at, end, seq, v.offset(at - start));
        }
    }

    /// The value at unit `u` and the seq that wrote it.
    pub fn get(&self, u: u64) -> Option<(u64, V)> {
        let x = self.exts.get(self.first_after(u))?;
        (x.start <= u).then(|| (x.seq, x.val.offset(u - x.start)))
    }

    /// The extents overlapping `start..end`.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Ext<V>> + '_ {
        self.exts[self.first_after(start)..]
            .iter()
            .take_while(move |x| x.start < end)
    }

    /// The written parts of `start..end`, clipped, without their values:
    /// `(start, end, seq)`.
    fn spans(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.overlapping(start, end)
            .map(move |x| (x.start.max(start), x.end.min(end), x.seq))
    }

    /// The written parts of `start..end`, clipped: `(start, end, seq, value at
    /// start)`.
    pub fn extents(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, u64, V)> + '_ {
        self.overlapping(start, end).map(move |x| {
            let a = x.start.max(start);
            (a, x.end.min(end), x.seq, x.val.offset(a - x.start))
        })
    }

    /// Every extent, by value.
    pub fn into_extents(self) -> impl Iterator<Item = (u64, u64, u64, V)> {
        self.exts
            .into_iter()
            .map(|x| (x.start, x.end, x.seq, x.val))
    }

    /// Every extent.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u64, &V)> + '_ {
        self.exts.iter().map(|x| (x.start, x.end, x.seq, &x.val))
    }

    /// True when both maps hold the same writes: the same extents, each from
    /// the same completion seq (a seq names one write, so the values agree
    /// without comparing them).
    pub fn same_writes(&self, other: &Self) -> bool {
        self.exts.len() == other.exts.len()
            && self
                .exts
                .iter()
                .zip(&other.exts)
                .all(|(a, b)| (a.start, a.end, a.seq) == (b.start, b.end, b.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct S(u64);
    impl Unit for S {
        fn offset(&self, n: u64) -> Self {
            S(self.0 + n)
        }
    }

    #[test]
    fn overwrite_splits_and_offsets() {
        let mut m = ExtentMap::new();
        m.insert(0, 10, 1, S(100));
        m.insert(3, 5, 2, S(200));
        assert_eq!(m.get(2), Some((1, S(102))));
        assert_eq!(m.get(3), Some((2, S(200))));
        assert_eq!(m.get(4), Some((2, S(201))));
        assert_eq!(m.get(5), Some((1, S(105))));
        assert_eq!(m.get(10), None);
        assert_eq!(m.len(), 3);
        m.insert(0, 20, 3, S(0));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn insert_if_newer_keeps_newer_parts() {
        let mut m = ExtentMap::new();
        m.insert(4, 6, 9, S(500));
        m.insert_if_newer(0, 10, 5, S(0));
        assert_eq!(m.get(3), Some((5, S(3))));
        assert_eq!(m.get(4), Some((9, S(500))));
        assert_eq!(m.get(6), Some((5, S(6))));
        let ext: Vec<_> = m.extents(2, 8).map(|(a, b, s, _)| (a, b, s)).collect();
        assert_eq!(ext, vec![(2, 4, 5), (4, 6, 9), (6, 8, 5)]);
    }

    /// Random writes, conditional writes and removals against a map of one
    /// value per unit.
    #[test]
    fn matches_a_per_unit_model() {
        let mut m = ExtentMap::new();
        let mut units: Vec<Option<(u64, S)>> = vec![None; 66];
        let mut x = 7u64;
        for seq in 1..5000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = x >> 20;
            let a = r % 60;
            let b = a + 1 + (r >> 8) % 6;
            let s = if (r >> 12).is_multiple_of(3) {
                seq / 2
            } else {
                seq
            };
            match (r >> 16) % 5 {
                0 => {
                    m.remove(a, b);
                    units[a as usize..b as usize].fill(None);
                }
                1 => {
                    m.insert_if_newer(a, b, s, S(a * 1000));
                    for u in a..b {
                        let slot = &mut units[u as usize];
                        if slot.as_ref().is_none_or(|(q, _)| *q <= s) {
                            *slot = Some((s, S(a * 1000 + u - a)));
                        }
                    }
                }
                2 => {
                    let held = m.get(a).map(|(q, _)| q).unwrap_or(0);
                    m.remove_seq(a, b, held);
                    for u in a..b {
                        if units[u as usize].as_ref().is_some_and(|(q, _)| *q == held) {
                            units[u as usize] = None;
                        }
                    }
                }
                _ => {
                    m.insert(a, b, s, S(a * 1000));
                    for u in a..b {
                        units[u as usize] = Some((s, S(a * 1000 + u - a)));
                    }
                }
            }
            let ext: Vec<_> = m.iter().map(|(a, b, _, _)| (a, b)).collect();
            assert!(ext.iter().all(|&(a, b)| a < b), "op {seq}: {ext:?}");
            assert!(
                ext.windows(2).all(|w| w[0].1 <= w[1].0),
                "op {seq}: {ext:?}"
            );
            for u in 0..66u64 {
                assert_eq!(m.get(u), units[u as usize].clone(), "op {seq} unit {u}");
            }
        }
    }
}
