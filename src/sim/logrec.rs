//! What a dm-log-writes device under a simulated device would log
//! (REPLAY.md §1.1): a FUA write at its completion; any other write or discard
//! when a flush issued after its completion completes, before that flush's own
//! entry; marks when sent. A power cut loses what was not logged yet.

use std::collections::HashMap;

/// One entry of a simulated log.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent<V> {
    /// A write of `val` over `start..end`.
    Write {
        /// First unit.
        start: u64,
        /// One past the last.
        end: u64,
        /// The value (at `start`).
        val: V,
        /// REQ_FUA.
        fua: bool,
    },
    /// A discard of `start..end`.
    Discard {
        /// First unit.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// A flush's completion.
    Flush,
    /// A mark.
    Mark(String),
}

/// The recorder a [`super::SimDisk`] keeps when asked to.
#[derive(Debug)]
pub struct LogRec<V> {
    /// Entries logged, in order.
    pub logged: Vec<LogEvent<V>>,
    /// Completed writes no flush has covered yet.
    unflushed: Vec<LogEvent<V>>,
    /// Per flush in flight (by issue seq): the writes it covers.
    covers: HashMap<u64, Vec<LogEvent<V>>>,
}

impl<V> Default for LogRec<V> {
    fn default() -> Self {
        LogRec {
            logged: Vec::new(),
            unflushed: Vec::new(),
            covers: HashMap::new(),
        }
    }
}

impl<V> LogRec<V> {
    /// A write or discard completed.
    pub fn completed(&mut self, ev: LogEvent<V>, fua: bool) {
        if fua {
            self.logged.push(ev);
        } else {
            self.unflushed.push(ev);
        }
    }

    /// A flush was issued as `seq`: it covers what completed before.
    pub fn flush_issued(&mut self, seq: u64) {
        let cover = std::mem::take(&mut self.unflushed);
        self.covers.insert(seq, cover);
    }

    /// The flush issued as `seq` completed.
    pub fn flush_completed(&mut self, seq: u64) {
        let cover = self.covers.remove(&seq).unwrap_or_default();
        self.logged.extend(cover);
        self.logged.push(LogEvent::Flush);
    }

    /// A power cut: nothing more reaches the log.
    pub fn crash(&mut self) {
        self.unflushed.clear();
        self.covers.clear();
    }

    /// The device is removed: what is left goes to the log (the destructor's
    /// splice), then the end mark.
    pub fn close(&mut self) {
        let rest = std::mem::take(&mut self.unflushed);
        self.logged.extend(rest);
        for (_, c) in std::mem::take(&mut self.covers) {
            self.logged.extend(c);
        }
        self.logged
            .push(LogEvent::Mark(crate::logwrites::END_MARK.to_string()));
    }
}
