//! I/Os in flight, by issue seq (on a device, or in a model that owns them).
//!
//! Issue seqs only grow, so entries are appended in order and found by binary
//! search; a completed entry leaves a hole that is dropped once it reaches the
//! front (devices mostly complete in issue order) or when holes outnumber the
//! live entries. Cheaper than an ordered map for the many short-lived bios of a
//! replay, with the same iteration order.

use std::collections::VecDeque;

/// Entries keyed by strictly increasing seqs.
#[derive(Debug, Clone)]
pub struct InFlight<T> {
    slots: VecDeque<(u64, Option<T>)>,
    live: usize,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight {
            slots: VecDeque::new(),
            live: 0,
        }
    }
}

impl<T> InFlight<T> {
    /// Adds `v` as `seq`, which must be larger than every seq added before.
    pub fn push(&mut self, seq: u64, v: T) {
        debug_assert!(self.slots.back().is_none_or(|&(s, _)| s < seq));
        self.slots.push_back((seq, Some(v)));
        self.live += 1;
    }

    /// Takes the entry of `seq` out.
    pub fn remove(&mut self, seq: u64) -> Option<T> {
        let i = match self.slots.front() {
            // Mostly completed in issue order.
            Some(&(s, _)) if s == seq => 0,
            _ => self.slots.binary_search_by_key(&seq, |&(s, _)| s).ok()?,
        };
        let v = self.slots[i].1.take()?;
        self.live -= 1;
        while self.slots.front().is_some_and(|(_, v)| v.is_none()) {
            self.slots.pop_front();
        }
        while self.slots.back().is_some_and(|(_, v)| v.is_none()) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.live + 64 {
            self.slots.retain(|(_, v)| v.is_some());
        }
        Some(v)
    }

    /// Every entry, by seq.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        self.slots
            .iter()
            .filter_map(|(s, v)| v.as_ref().map(|v| (*s, v)))
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.live = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_in_any_order_keeps_the_seq_order() {
        let mut f = InFlight::default();
        for s in [3u64, 5, 8, 13, 21] {
            f.push(s, s * 10);
        }
        assert_eq!(f.remove(8), Some(80));
        assert_eq!(f.remove(8), None);
        assert_eq!(f.remove(4), None);
        assert_eq!(f.remove(3), Some(30));
        let left: Vec<_> = f.iter().map(|(s, &v)| (s, v)).collect();
        assert_eq!(left, vec![(5, 50), (13, 130), (21, 210)]);
        for s in 22..500 {
            f.push(s, s);
            assert_eq!(f.remove(s), Some(s));
        }
        assert_eq!(f.iter().count(), 3);
        assert!(f.slots.len() <= 2 * 3 + 64);
        f.clear();
        assert_eq!(f.iter().count(), 0);
    }
}
