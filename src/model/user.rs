//! The user I/O both models track: one entry per trace statement that sends
//! I/O (its id, whether the trace completes it, the bios still pending).

use std::collections::HashMap;
use std::ops::{Index, IndexMut};

use crate::model::ModelError;

/// A user I/O: one trace statement, split into bios.
#[derive(Debug, Clone)]
pub struct UserIo {
    /// `id=`, or `io<n>`.
    pub name: String,
    /// Completes only on `complete id=`.
    pub is_async: bool,
    /// Bios not yet completed.
    pub pending: usize,
    /// Data bios held back until the leading flush of a PREFLUSH write completes.
    pub held: Vec<usize>,
    /// Every bio completed.
    pub done: bool,
    /// A bio failed.
    pub error: bool,
}

/// Every user I/O of a trace, by number, with the index of their ids.
#[derive(Debug, Clone, Default)]
pub struct UserIos {
    list: Vec<UserIo>,
    by_name: HashMap<String, usize>,
}

impl UserIos {
    /// A new user I/O; ids must be unique. Only explicit ids are indexed: an
    /// I/O without one is named `io<n>` and found by that number.
    pub fn add(&mut self, name: Option<String>, is_async: bool) -> Result<usize, ModelError> {
        let u = self.list.len();
        let explicit = name.is_some();
        let name = name.unwrap_or_else(|| format!("io{}", u + 1));
        let taken = if explicit {
            self.find(&name).is_ok()
        } else {
            self.by_name.contains_key(&name)
        };
        if taken {
            return Err(ModelError::Trace(format!("id `{name}` is used twice")));
        }
        if explicit {
            self.by_name.insert(name.clone(), u);
        }
        self.list.push(UserIo {
            name,
            is_async,
            pending: 0,
            held: Vec::new(),
            done: false,
            error: false,
        });
        Ok(u)
    }

    /// The number of the I/O with id `name`.
    pub fn find(&self, name: &str) -> Result<usize, ModelError> {
        self.by_name
            .get(name)
            .copied()
            .or_else(|| {
                // `io<n>`: the n-th I/O, when that is its name (it has no id).
                let n: usize = name.strip_prefix("io")?.parse().ok()?;
                let u = n.checked_sub(1)?;
                (self.list.get(u)?.name == name).then_some(u)
            })
            .ok_or_else(|| ModelError::Trace(format!("no I/O with id `{name}`")))
    }

    /// The id of I/O number `n`.
    pub fn name(&self, n: u32) -> Option<&str> {
        self.list.get(n as usize).map(|u| u.name.as_str())
    }

    /// Whether the I/O with id `name` completed.
    pub fn is_done(&self, name: &str) -> Option<bool> {
        self.find(name).ok().map(|u| self.list[u].done)
    }

    /// The number of the newest I/O.
    pub fn last(&self) -> Option<usize> {
        self.list.len().checked_sub(1)
    }

    /// Whether I/O number `u` completed, and with an error.
    pub fn outcome(&self, u: usize) -> Option<(bool, bool)> {
        self.list.get(u).map(|x| (x.done, x.error))
    }

    /// Every I/O.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut UserIo> {
        self.list.iter_mut()
    }
}

impl Index<usize> for UserIos {
    type Output = UserIo;
    fn index(&self, u: usize) -> &UserIo {
        &self.list[u]
    }
}

impl IndexMut<usize> for UserIos {
    fn index_mut(&mut self, u: usize) -> &mut UserIo {
        &mut self.list[u]
    }
}

/// Checks that `start..end` is a non-empty range inside a target of `size`
/// sectors.
pub fn check_range(start: u64, end: u64, size: u64) -> Result<(), ModelError> {
    if start >= end || end > size {
        return Err(ModelError::Trace(format!(
            "sectors {start}..{end} are not inside the target (0..{size})"
        )));
    }
    Ok(())
}
