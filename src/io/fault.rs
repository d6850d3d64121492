//! A fault-injecting device for crash tests: the N-th write or flush fails once,
//! or the device stops for good at that operation (every later write and flush
//! fails, as when the disk or the machine goes away).
//!
//! It can also model a volatile write cache: it remembers what every block held
//! before it was written since the last successful flush, and
//! [`FaultDevice::lose_unflushed`] puts those contents back, giving the image a
//! power failure would leave if none of the un-flushed writes had reached the
//! media (PERSISTENT-DATA.md §3, §11 T4).

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

use super::{Block, BlockDevice, BLOCK_SIZE};

/// What happens at the chosen operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Only that operation fails; later ones succeed.
    FailOnce,
    /// That operation and every later write or flush fail.
    Stop,
}

#[derive(Debug, Default)]
struct State {
    /// Writes and flushes issued so far (1-based numbering of the next one is `ops + 1`).
    ops: u64,
    writes: u64,
    flushes: u64,
    stopped: bool,
    /// Contents before the first un-flushed write of each block.
    before: HashMap<u64, Box<Block>>,
}

/// Wraps a device and injects one fault at the `fail_at`-th write or flush
/// (counting both kinds together, from 1). `fail_at = 0` never fails.
#[derive(Debug)]
pub struct FaultDevice<D: BlockDevice> {
    inner: D,
    fail_at: u64,
    mode: FaultMode,
    state: Mutex<State>,
}

impl<D: BlockDevice> FaultDevice<D> {
    /// A device that fails (per `mode`) at operation `fail_at` (1-based; 0 = never).
    pub fn new(inner: D, fail_at: u64, mode: FaultMode) -> Self {
        FaultDevice {
            inner,
            fail_at,
            mode,
            state: Mutex::new(State::default()),
        }
    }

    /// A device that never fails, for counting the operations of a job.
    pub fn counting(inner: D) -> Self {
        Self::new(inner, 0, FaultMode::FailOnce)
    }

    /// Writes and flushes issued so far, the failed ones included.
    pub fn ops(&self) -> u64 {
        self.state.lock().expect("lock").ops
    }

    /// Writes issued so far.
    pub fn writes(&self) -> u64 {
        self.state.lock().expect("lock").writes
    }

    /// Flushes issued so far.
    pub fn flushes(&self) -> u64 {
        self.state.lock().expect("lock").flushes
    }

    /// True once a fault has fired.
    pub fn fired(&self) -> bool {
        let s = self.state.lock().expect("lock");
        self.fail_at != 0 && s.ops >= self.fail_at
    }

    /// Undoes every write that no successful flush covered: the image a power
    /// failure leaves when the volatile cache is lost.
    pub fn lose_unflushed(&self) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        for (b, data) in s.before.drain() {
            self.inner.write(b, &data)?;
        }
        Ok(())
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Unwraps the device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Counts one operation; `Err` when it must fail.
    fn tick(&self, s: &mut State, what: &str) -> io::Result<()> {
        s.ops += 1;
        let fail = s.stopped || (self.fail_at != 0 && s.ops == self.fail_at);
        if fail {
            if self.mode == FaultMode::Stop {
                s.stopped = true;
            }
            return Err(io::Error::other(format!(
                "injected fault: {what} (operation {})",
                s.ops
            )));
        }
        Ok(())
    }
}

impl<D: BlockDevice> BlockDevice for FaultDevice<D> {
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }

    fn read(&self, b: u64, buf: &mut Block) -> io::Result<()> {
        self.inner.read(b, buf)
    }

    fn write(&self, b: u64, buf: &Block) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.writes += 1;
        self.tick(&mut s, &format!("write of block {b}"))?;
        if let std::collections::hash_map::Entry::Vacant(e) = s.before.entry(b) {
            let mut old = Box::new([0u8; BLOCK_SIZE]);
            self.inner.read(b, &mut old)?;
            e.insert(old);
        }
        self.inner.write(b, buf)
    }

    fn flush(&self) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.flushes += 1;
        self.tick(&mut s, "flush")?;
        self.inner.flush()?;
        s.before.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;

    #[test]
    fn fails_once_or_for_good() {
        let d = FaultDevice::new(MemDevice::new(4), 2, FaultMode::FailOnce);
        let b = [1u8; BLOCK_SIZE];
        assert!(d.write(0, &b).is_ok());
        assert!(d.write(1, &b).is_err());
        assert!(d.flush().is_ok());
        let d = FaultDevice::new(MemDevice::new(4), 2, FaultMode::Stop);
        assert!(d.write(0, &b).is_ok());
        assert!(d.flush().is_err());
        assert!(d.write(1, &b).is_err());
        assert!(d.flush().is_err());
        assert_eq!(d.ops(), 4);
    }

    #[test]
    fn losing_the_cache_restores_unflushed_blocks() {
        let d = FaultDevice::counting(MemDevice::new(4));
        d.write(0, &[1u8; BLOCK_SIZE]).unwrap();
        d.flush().unwrap();
        d.write(0, &[2u8; BLOCK_SIZE]).unwrap();
        d.write(0, &[3u8; BLOCK_SIZE]).unwrap();
        d.write(1, &[4u8; BLOCK_SIZE]).unwrap();
        d.lose_unflushed().unwrap();
        let mut b = [0u8; BLOCK_SIZE];
        d.read(0, &mut b).unwrap();
        assert_eq!(b[0], 1);
        d.read(1, &mut b).unwrap();
        assert_eq!(b[0], 0);
    }
}
