//! The ideal-disk oracle (REPLAY.md §2.6): what a plain disk with a volatile
//! cache that got the same user I/O may hold after a power cut. For every sector
//! the allowed values are the last user write acknowledged durable (completed
//! before a user flush that completed, or a FUA write), or the initial content if
//! there is none, plus every later user write (completed or in flight); a
//! discard in that window allows anything.

use crate::sim::{DataVal, Origin};

#[derive(Debug, Clone)]
struct UserOp {
    start: u64,
    end: u64,
    origin: Origin,
    discard: bool,
    fua: bool,
    /// Oracle tick of the completion.
    completed: Option<u64>,
    /// Oracle tick from which it is acknowledged durable.
    acked: Option<u64>,
}

/// What a sector may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A discard makes any content legal.
    Anything,
    /// These values (stamps of the sector).
    Values(Vec<DataVal>),
}

impl Allowed {
    /// True when `v` is allowed.
    pub fn allows(&self, v: &DataVal) -> bool {
        match self {
            Allowed::Anything => true,
            Allowed::Values(vs) => vs.contains(v),
        }
    }
}

/// The user I/O a model received, by user-I/O number.
#[derive(Debug, Clone, Default)]
pub struct Oracle {
    ops: Vec<Option<UserOp>>,
    /// Flushes in flight: user number → tick of issue.
    flushes: Vec<(usize, u64)>,
    /// The writes and discards not yet acknowledged durable (a superset: some
    /// may have been acknowledged by their FUA completion since), so that a
    /// flush looks only at those.
    unacked: Vec<usize>,
    tick: u64,
}

impl Oracle {
    fn next(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn slot(&mut self, u: usize) -> &mut Option<UserOp> {
        if self.ops.len() <= u {
            self.ops.resize(u + 1, None);
        }
        &mut self.ops[u]
    }

    /// User write `u` of `start..end` with payload `origin` was submitted.
    pub fn write(&mut self, u: usize, start: u64, end: u64, origin: Origin, fua: bool) {
        self.unacked.push(u);
        *self.slot(u) = Some(UserOp {
            start,
            end,
            origin,
            discard: false,
            fua,
            completed: None,
            acked: None,
        });
    }

    /// User discard `u` was submitted.
    pub fn discard(&mut self, u: usize, start: u64, end: u64) {
        self.unacked.push(u);
        *self.slot(u) = Some(UserOp {
            start,
            end,
            origin: Origin::Discarded,
            discard: true,
            fua: false,
            completed: None,
            acked: None,
        });
    }

    /// User flush `u` (or the leading flush of a PREFLUSH write) was issued.
    pub fn flush(&mut self, u: usize) {
        let t = self.next();
        self.flushes.push((u, t));
    }

    /// User I/O `u` completed: a FUA write is durable; a flush makes durable
    /// every write that had completed when it was issued.
    pub fn complete(&mut self, u: usize) {
        let t = self.next();
        if let Some(Some(op)) = self.ops.get_mut(u) {
            op.completed = Some(t);
            if op.fua {
                op.acked = Some(t);
            }
        }
        let mut i = 0;
        while i < self.flushes.len() {
            if self.flushes[i].0 == u {
                let (_, issued) = self.flushes.remove(i);
                let ops = &mut self.ops;
                self.unacked.retain(|&w| {
                    let Some(op) = ops[w].as_mut() else {
                        return false;
                    };
                    if op.completed.is_some_and(|c| c < issued) && op.acked.is_none() {
                        op.acked = Some(t);
                    }
                    op.acked.is_none()
                });
            } else {
                i += 1;
            }
        }
    }

    /// A power cut: the flushes in flight never complete, and the writes not
    /// acknowledged durable are settled, landed or not, by the crash state
    /// (REPLAY.md §2.6: a flush after the crash covers only what completes
    /// after it). They stay allowed values, in flight ones as completed at
    /// the cut, but no later flush acknowledges them.
    pub fn crash(&mut self) {
        let t = self.next();
        for &u in &self.unacked {
            if let Some(Some(op)) = self.ops.get_mut(u) {
                op.completed.get_or_insert(t);
            }
        }
        self.unacked.clear();
        self.flushes.clear();
    }

    /// The value user write `op` leaves at sector `s`.
    fn value(op: &UserOp, s: u64) -> DataVal {
        match op.origin {
            Origin::User(_) | Origin::Init(_) => DataVal {
                origin: op.origin,
                sector: s,
            },
            o => DataVal {
                origin: o,
                sector: s,
            },
        }
    }

    /// The values sector `s` may hold after a power cut now; `initial` is the
    /// content before any user write (the source, for dm-clone).
    pub fn allowed(&self, s: u64, initial: DataVal) -> Allowed {
        let mut covering: Vec<(usize, &UserOp)> = self
            .ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|o| (i, o)))
            .filter(|(_, o)| o.start <= s && s < o.end)
            .collect();
        // Completion order; in-flight ones last.
        covering.sort_by_key(|(i, o)| (o.completed.unwrap_or(u64::MAX), *i));
        let last_acked = covering.iter().rposition(|(_, o)| o.acked.is_some());
        let mut vals = Vec::new();
        let from = match last_acked {
            Some(k) => {
                if covering[k].1.discard {
                    return Allowed::Anything;
                }
                vals.push(Self::value(covering[k].1, s));
                k + 1
            }
            None => {
                vals.push(initial);
                0
            }
        };
        for (_, op) in &covering[from..] {
            if op.discard {
                return Allowed::Anything;
            }
            vals.push(Self::value(op, s));
        }
        Allowed::Values(vals)
    }

    /// The last user write acknowledged durable at sector `s`, if any (its
    /// number).
    pub fn acked_write(&self, s: u64) -> Option<usize> {
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|o| (i, o)))
            .filter(|(_, o)| o.start <= s && s < o.end && o.acked.is_some() && !o.discard)
            .max_by_key(|(i, o)| (o.completed, *i))
            .map(|(i, _)| i)
    }

    /// The sectors of every user write and discard, as ranges.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.ops
            .iter()
            .flatten()
            .map(|o| (o.start, o.end))
            .collect()
    }

    /// Sectors written by user writes acknowledged durable, as ranges with the
    /// user number (for I3).
    pub fn acked_ranges(&self) -> Vec<(u64, u64, usize)> {
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|o| (i, o)))
            .filter(|(_, o)| o.acked.is_some() && !o.discard)
            .map(|(i, o)| (o.start, o.end, i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(o: Origin, s: u64) -> DataVal {
        DataVal {
            origin: o,
            sector: s,
        }
    }

    #[test]
    fn unflushed_writes_add_to_the_initial_content() {
        let mut o = Oracle::default();
        let init = v(Origin::Init(0), 3);
        o.write(0, 0, 8, Origin::User(0), false);
        o.complete(0);
        assert_eq!(
            o.allowed(3, init),
            Allowed::Values(vec![init, v(Origin::User(0), 3)])
        );
        // A flush issued after the completion makes it durable.
        o.flush(1);
        o.complete(1);
        assert_eq!(
            o.allowed(3, init),
            Allowed::Values(vec![v(Origin::User(0), 3)])
        );
        assert_eq!(o.acked_write(3), Some(0));
    }

    #[test]
    fn flush_covers_only_writes_completed_at_its_issue_and_fua_is_durable() {
        let mut o = Oracle::default();
        let init = v(Origin::Init(0), 0);
        o.write(0, 0, 1, Origin::User(0), false);
        o.flush(1); // issued before write 0 completed
        o.complete(0);
        o.complete(1);
        assert_eq!(o.acked_write(0), None);
        o.write(2, 0, 1, Origin::User(2), true);
        o.complete(2);
        assert_eq!(
            o.allowed(0, init),
            Allowed::Values(vec![v(Origin::User(2), 0)])
        );
        o.discard(3, 0, 8);
        assert_eq!(o.allowed(0, init), Allowed::Anything);
    }

    #[test]
    fn a_flush_after_a_power_cut_does_not_acknowledge_what_the_cut_lost() {
        let mut o = Oracle::default();
        let init = v(Origin::Init(0), 0);
        o.write(0, 0, 1, Origin::User(0), false);
        o.complete(0);
        o.write(1, 0, 1, Origin::User(1), false); // in flight at the cut
        o.crash();
        o.flush(2);
        o.complete(2);
        assert_eq!(o.acked_write(0), None);
        assert!(o.acked_ranges().is_empty());
        assert_eq!(
            o.allowed(0, init),
            Allowed::Values(vec![init, v(Origin::User(0), 0), v(Origin::User(1), 0)])
        );
        // A write after the cut is acknowledged by a flush as usual, and
        // what the cut settled is no longer a possible value under it.
        o.write(3, 0, 1, Origin::User(3), false);
        o.complete(3);
        o.flush(4);
        o.complete(4);
        assert_eq!(o.acked_write(0), Some(3));
        assert_eq!(
            o.allowed(0, init),
            Allowed::Values(vec![v(Origin::User(3), 0)])
        );
    }
}
