//! Expected reference counts, gathered while walking (PERSISTENT-DATA.md §7.5).
//!
//! Counts are per edge: a node reached from two parents (or a parent and a
//! superblock) counts 2, and its children are walked, and counted, once.

use std::collections::HashMap;

/// The role a block was first reached in (rule §10.4: one block, one role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A superblock (live or metadata snapshot).
    Superblock,
    /// Space-map index block.
    SmIndex,
    /// Space-map bitmap.
    SmBitmap,
    /// Node of the space map's overflow ref-count tree.
    RefCountNode,
    /// Node of a B-tree whose leaves hold values of the given size.
    TreeNode(u32),
    /// Array block of the given value size.
    ArrayBlock(u32),
}

/// Outcome of recording one reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// First reference: the caller should read and walk the block.
    First,
    /// Already reached in the same role: counted, do not walk again.
    Again,
    /// Already reached in another role.
    Conflict(Role),
}

/// Expected reference count and role of every reached block.
#[derive(Debug, Default)]
pub struct Refs {
    map: HashMap<u64, (u32, Role)>,
}

impl Refs {
    /// No references.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one reference to `b` in `role`.
    pub fn inc(&mut self, b: u64, role: Role) -> Visit {
        match self.map.get_mut(&b) {
            None => {
                self.map.insert(b, (1, role));
                Visit::First
            }
            Some((n, r)) => {
                *n = n.saturating_add(1);
                if *r == role {
                    Visit::Again
                } else {
                    Visit::Conflict(*r)
                }
            }
        }
    }

    /// Expected count of `b`.
    pub fn count(&self, b: u64) -> u32 {
        self.map.get(&b).map_or(0, |e| e.0)
    }

    /// The role `b` was first reached in.
    pub fn role(&self, b: u64) -> Option<Role> {
        self.map.get(&b).map(|e| e.1)
    }

    /// Number of distinct blocks reached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing was reached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every reached block with its count and role, sorted by block.
    pub fn blocks(&self) -> Vec<(u64, u32, Role)> {
        let mut v: Vec<_> = self.map.iter().map(|(&b, &(n, r))| (b, n, r)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }
}
