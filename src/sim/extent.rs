//! A map from half-open unit ranges to values, for device overlays: writing a
//! range replaces what it covers, splitting the extents it cuts.

use std::collections::BTreeMap;

/// A value that covers a run of units and can be cut: `offset(n)` is the value of
/// the same write seen `n` units further in (a stamp names its sector; a metadata
/// block has one unit and ignores it).
pub trait Unit: Clone + PartialEq + std::fmt::Debug {
    /// The value `n` units past the start of this one.
    fn offset(&self, n: u64) -> Self;
}

/// Non-overlapping extents `start..end → (completion seq, value)`.
#[derive(Debug, Clone)]
pub struct ExtentMap<V> {
    map: BTreeMap<u64, (u64, u64, V)>,
}

impl<V: Unit> Default for ExtentMap<V> {
    fn default() -> Self {
        ExtentMap {
            map: BTreeMap::new(),
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
        self.map.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes everything in `start..end`, keeping the parts of cut extents
    /// outside it.
    fn punch(&mut self, start: u64, end: u64) {
        // An extent that starts before `start` and reaches into the range.
        if let Some((&s, &(e, seq, ref v))) = self.map.range(..start).next_back() {
            if e > start {
                let v = v.clone();
                self.map.insert(s, (start, seq, v.clone()));
                if e > end {
                    self.map.insert(end, (e, seq, v.offset(end - s)));
                }
            }
        }
        while let Some(s) = self.map.range(start..end).next().map(|(&s, _)| s) {
            let (e, seq, v) = self.map.remove(&s).expect("found");
            if e > end {
                self.map.insert(end, (e, seq, v.offset(end - s)));
            }
        }
    }

    /// Forgets what was written over `start..end` (back to the base value),
    /// keeping the parts of cut extents outside it.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start < end {
            self.punch(start, end);
        }
    }

    /// Forgets the parts of `start..end` that the write completed as `seq` still
    /// holds.
    pub fn remove_seq(&mut self, start: u64, end: u64, seq: u64) {
        if let Some(&(e, s, _)) = self.map.get(&start) {
            if e == end && s == seq {
                self.map.remove(&start);
                return;
            }
        }
        let mine: Vec<(u64, u64)> = self
            .spans(start, end)
            .filter(|&(_, _, s)| s == seq)
            .map(|(a, b, _)| (a, b))
            .collect();
        for (a, b) in mine {
            self.punch(a, b);
        }
    }

    /// Writes `v` over `start..end`, completed as `seq`.
    pub fn insert(&mut self, start: u64, end: u64, seq: u64, v: V) {
        if start >= end {
            return;
        }
        // The common case of a rewrite of exactly one earlier extent.
        if let Some(slot) = self.map.get_mut(&start) {
            if slot.0 == end {
                *slot = (end, seq, v);
                return;
            }
        }
        self.punch(start, end);
        self.map.insert(start, (end, seq, v));
    }

    /// Writes `v` over the parts of `start..end` whose current value completed
    /// before `seq` (a coherent cache never puts older data over newer).
    pub fn insert_if_newer(&mut self, start: u64, end: u64, seq: u64, v: V) {
        // The common case of exactly one older extent over the range.
        if let Some(slot) = self.map.get_mut(&start) {
            if slot.0 == end && slot.1 <= seq {
                *slot = (end, seq, v);
                return;
            }
        }
        if !self.spans(start, end).any(|(_, _, s)| s > seq) {
            self.insert(start, end, seq, v);
            return;
        }
        let newer: Vec<(u64, u64)> = self
            .extents(start, end)
            .filter(|&(_, _, s, _)| s > seq)
            .map(|(a, b, _, _)| (a, b))
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
        let (&s, (e, seq, v)) = self.map.range(..=u).next_back()?;
        (u < *e).then(|| (*seq, v.offset(u - s)))
    }

    /// The written parts of `start..end`, clipped, without their values:
    /// `(start, end, seq)`.
    fn spans(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        let first = self
            .map
            .range(..start)
            .next_back()
            .filter(|(_, (e, _, _))| *e > start)
            .map(|(&s, _)| s)
            .unwrap_or(start);
        self.map
            .range(first..end)
            .map(move |(&s, &(e, seq, _))| (s.max(start), e.min(end), seq))
    }

    /// The written parts of `start..end`, clipped: `(start, end, seq, value at
    /// start)`.
    pub fn extents(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, u64, V)> + '_ {
        let first = self
            .map
            .range(..start)
            .next_back()
            .filter(|(_, (e, _, _))| *e > start)
            .map(|(&s, _)| s)
            .unwrap_or(start);
        self.map.range(first..end).map(move |(&s, (e, seq, v))| {
            let a = s.max(start);
            (a, (*e).min(end), *seq, v.offset(a - s))
        })
    }

    /// Every extent, by value.
    pub fn into_extents(self) -> impl Iterator<Item = (u64, u64, u64, V)> {
        self.map.into_iter().map(|(s, (e, seq, v))| (s, e, seq, v))
    }

    /// Every extent.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u64, &V)> + '_ {
        self.map.iter().map(|(&s, (e, seq, v))| (s, *e, *seq, v))
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
}
