//! A plain in-core bitmap (the kernel's `unsigned long *` bitmaps).

/// A fixed-size bitmap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bits {
    words: Vec<u64>,
    len: u64,
}

impl Bits {
    /// `len` clear bits.
    pub fn new(len: u64) -> Self {
        Bits {
            words: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }

    /// Number of bits.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when it has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `i` (false past the end).
    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.words[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Sets bit `i`; returns its old value.
    pub fn set(&mut self, i: u64) -> bool {
        let old = self.get(i);
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        old
    }

    /// Clears bit `i`.
    pub fn clear(&mut self, i: u64) {
        self.words[(i / 64) as usize] &= !(1 << (i % 64));
    }

    /// Word `w`.
    pub fn word(&self, w: u64) -> u64 {
        self.words[w as usize]
    }

    /// Clears every bit.
    pub fn clear_all(&mut self) {
        self.words.fill(0);
    }

    /// The first set bit at or after `from` (`len` if none).
    pub fn next_set(&self, from: u64) -> u64 {
        self.next(from, false)
    }

    /// The first clear bit at or after `from` (`len` if none).
    pub fn next_clear(&self, from: u64) -> u64 {
        self.next(from, true)
    }

    fn next(&self, from: u64, clear: bool) -> u64 {
        let mut i = from;
        while i < self.len {
            let w = self.words[(i / 64) as usize];
            let w = if clear { !w } else { w } >> (i % 64);
            if w != 0 {
                return (i + w.trailing_zeros() as u64).min(self.len);
            }
            i = (i / 64 + 1) * 64;
        }
        self.len
    }

    /// Number of set bits.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// True when every bit is set.
    pub fn full(&self) -> bool {
        self.next_clear(0) == self.len
    }

    /// Sets bits `a..b`, clipped to the length.
    pub fn set_range(&mut self, a: u64, b: u64) {
        let b = b.min(self.len);
        let mut i = a;
        while i < b {
            let start = i - i % 64;
            let (lo, hi) = (i - start, (b - start).min(64));
            let ones = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1 << (hi - lo)) - 1) << lo
            };
            self.words[(start / 64) as usize] |= ones;
            i = start + hi;
        }
    }

    /// Word `w`, clear past the end.
    fn word_or_clear(&self, w: usize) -> u64 {
        self.words.get(w).copied().unwrap_or(0)
    }

    /// True when every bit set here is set in `other` (bits past a bitmap's
    /// end count as clear).
    pub fn is_subset(&self, other: &Bits) -> bool {
        // Every bit of an empty mask is clear.
        self.is_subset_where(other, &Bits::default(), false)
    }

    /// True when every bit set here whose bit in `mask` is `in_mask` is set
    /// in `other` (bits past a bitmap's end count as clear).
    pub fn is_subset_where(&self, other: &Bits, mask: &Bits, in_mask: bool) -> bool {
        (self.words.iter().enumerate()).all(|(w, &a)| {
            let m = mask.word_or_clear(w);
            let m = if in_mask { m } else { !m };
            a & m & !other.word_or_clear(w) == 0
        })
    }

    /// Runs of set bits as half-open ranges.
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut i = self.next_set(0);
        while i < self.len {
            let e = self.next_clear(i);
            out.push((i, e));
            i = self.next_set(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_find_count_runs() {
        let mut b = Bits::new(130);
        assert_eq!(b.next_set(0), 130);
        b.set(3);
        b.set(64);
        b.set(65);
        b.set(129);
        assert_eq!(b.next_set(4), 64);
        assert_eq!(b.next_clear(64), 66);
        assert_eq!(b.count(), 4);
        assert_eq!(b.runs(), vec![(3, 4), (64, 66), (129, 130)]);
        assert!(!b.full());
        for i in 0..130 {
            b.set(i);
        }
        assert!(b.full());
        assert_eq!(b.next_clear(0), 130);
    }

    #[test]
    fn ranges_and_subsets_agree_with_single_bits() {
        let set = |runs: &[(u64, u64)], len| {
            let mut b = Bits::new(len);
            for &(x, y) in runs {
                b.set_range(x, y);
            }
            b
        };
        for (x, y) in [
            (0, 0),
            (0, 1),
            (3, 64),
            (0, 64),
            (63, 65),
            (5, 200),
            (64, 128),
            (190, 999),
        ] {
            let b = set(&[(x, y)], 200);
            let want: Vec<(u64, u64)> = (x < y.min(200))
                .then_some((x, y.min(200)))
                .into_iter()
                .collect();
            assert_eq!(b.runs(), want, "set_range({x}, {y})");
        }
        let a = set(&[(10, 20), (100, 130)], 200);
        let b = set(&[(0, 25), (100, 120)], 200);
        let mask = set(&[(120, 200)], 200);
        assert!(!a.is_subset(&b));
        assert!(a.is_subset(&set(&[(0, 200)], 200)));
        // Bits 120..130 are the only ones of `a` outside `b`: all in the mask.
        assert!(a.is_subset_where(&b, &mask, false));
        assert!(!a.is_subset_where(&b, &mask, true));
        // A shorter mask or other reads as clear past its end.
        assert!(a.is_subset_where(&b, &Bits::new(0), true));
        assert!(!a.is_subset_where(&Bits::new(0), &Bits::new(0), false));
        assert!(Bits::new(0).is_subset(&Bits::new(0)));
    }
}
