//! Entries numbered by a counter that only grows (the models' bios in flight):
//! a window of slots indexed by number instead of a hash map, since the numbers
//! are dense and mostly leave in the order they came.

use std::collections::VecDeque;
use std::ops::Index;

/// Entries numbered 0, 1, 2, … in the order they were added.
#[derive(Debug, Clone)]
pub struct Numbered<T> {
    /// Number of the first slot.
    base: usize,
    /// Slots from `base` on; `None` once removed. The first slot is never
    /// `None` (removed entries at the front are dropped).
    slots: VecDeque<Option<T>>,
}

impl<T> Default for Numbered<T> {
    fn default() -> Self {
        Numbered {
            base: 0,
            slots: VecDeque::new(),
        }
    }
}

impl<T> Numbered<T> {
    /// Adds `v`; returns its number.
    pub fn push(&mut self, v: T) -> usize {
        self.slots.push_back(Some(v));
        self.base + self.slots.len() - 1
    }

    /// Entry number `n`, unless it was never added or was removed.
    pub fn get(&self, n: &usize) -> Option<&T> {
        self.slots.get(n.checked_sub(self.base)?)?.as_ref()
    }

    /// Entry number `n` for modification.
    pub fn get_mut(&mut self, n: &usize) -> Option<&mut T> {
        self.slots.get_mut(n.checked_sub(self.base)?)?.as_mut()
    }

    /// Takes entry number `n` out.
    pub fn remove(&mut self, n: &usize) -> Option<T> {
        let v = self.slots.get_mut(n.checked_sub(self.base)?)?.take()?;
        while self.slots.front().is_some_and(Option::is_none) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(v)
    }

    /// Forgets every entry; numbering goes on.
    pub fn clear(&mut self) {
        self.base += self.slots.len();
        self.slots.clear();
    }
}

impl<T> Index<&usize> for Numbered<T> {
    type Output = T;
    fn index(&self, n: &usize) -> &T {
        self.get(n).expect("a numbered entry that exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_on_after_removal_and_clear() {
        let mut t = Numbered::default();
        assert_eq!(t.push('a'), 0);
        assert_eq!(t.push('b'), 1);
        assert_eq!(t.push('c'), 2);
        assert_eq!(t.remove(&1), Some('b'));
        assert_eq!(t.remove(&1), None);
        assert_eq!(t[&2], 'c');
        assert_eq!(t.remove(&0), Some('a'));
        assert_eq!(t.get(&0), None);
        *t.get_mut(&2).unwrap() = 'd';
        assert_eq!(t.get(&2), Some(&'d'));
        t.clear();
        assert_eq!(t.get(&2), None);
        assert_eq!(t.push('e'), 3);
        assert_eq!(t[&3], 'e');
        assert_eq!(t.get(&4), None);
    }
}
