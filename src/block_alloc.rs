//! The binary's allocator: the system allocator, with a cache of freed
//! allocations of about one metadata block (a 4 KiB block, alone or behind an
//! `Arc`'s counters). The reference models allocate and free such blocks at every
//! metadata write (copy-on-write, the device overlays); taking them back from a
//! short free list is much cheaper than the general allocator's free and
//! coalescing of page-sized chunks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Every allocation of `MIN..=CLASS` bytes, aligned to at most `ALIGN`, gets a
/// chunk of `CLASS` bytes.
const MIN: usize = 4096;
const CLASS: usize = 4096 + 32;
const ALIGN: usize = 16;
/// Freed chunks kept (4 MiB).
const KEEP: usize = 1024;

/// The system allocator with the block cache.
pub struct BlockAlloc {
    lock: AtomicBool,
    free: std::cell::UnsafeCell<FreeList>,
}

struct FreeList {
    head: *mut u8,
    len: usize,
}

// SAFETY: the free list is only touched with `lock` held.
unsafe impl Sync for BlockAlloc {}

impl BlockAlloc {
    /// An empty cache.
    pub const fn new() -> Self {
        BlockAlloc {
            lock: AtomicBool::new(false),
            free: std::cell::UnsafeCell::new(FreeList {
                head: ptr::null_mut(),
                len: 0,
            }),
        }
    }

    fn in_class(l: Layout) -> bool {
        (MIN..=CLASS).contains(&l.size()) && l.align() <= ALIGN
    }

    fn class() -> Layout {
        Layout::from_size_align(CLASS, ALIGN).expect("valid layout")
    }

    fn with_list<R>(&self, f: impl FnOnce(&mut FreeList) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held.
        let r = f(unsafe { &mut *self.free.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

impl Default for BlockAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: chunks of the class all come from `System` with the class layout and
// go back to it with that layout; a cached chunk holds the next pointer in its
// first bytes and is handed out to one caller at a time.
unsafe impl GlobalAlloc for BlockAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !Self::in_class(l) {
            return System.alloc(l);
        }
        let p = self.with_list(|fl| {
            let p = fl.head;
            if !p.is_null() {
                fl.head = p.cast::<*mut u8>().read();
                fl.len -= 1;
            }
            p
        });
        if p.is_null() {
            System.alloc(Self::class())
        } else {
            p
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if !Self::in_class(l) {
            return System.alloc_zeroed(l);
        }
        let p = self.alloc(l);
        if !p.is_null() {
            p.write_bytes(0, l.size());
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, l.align());
        if !Self::in_class(l) && !Self::in_class(new) {
            return System.realloc(p, l, new_size);
        }
        let q = self.alloc(new);
        if !q.is_null() {
            ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
            self.dealloc(p, l);
        }
        q
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if !Self::in_class(l) {
            return System.dealloc(p, l);
        }
        let kept = self.with_list(|fl| {
            if fl.len >= KEEP {
                return false;
            }
            p.cast::<*mut u8>().write(fl.head);
            fl.head = p;
            fl.len += 1;
            true
        });
        if !kept {
            System.dealloc(p, Self::class());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reused_and_other_sizes_pass_through() {
        let a = BlockAlloc::new();
        let block = Layout::from_size_align(4112, 8).unwrap();
        let small = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: every pointer is freed once, with the layout it was allocated with.
        unsafe {
            let p = a.alloc(block);
            p.write_bytes(7, block.size());
            a.dealloc(p, block);
            let q = a.alloc_zeroed(Layout::from_size_align(4096, 1).unwrap());
            assert_eq!(q, p, "the freed block comes back");
            assert!((0..4096).all(|i| *q.add(i) == 0));
            let r = a.realloc(q, Layout::from_size_align(4096, 1).unwrap(), 8192);
            assert!((0..4096).all(|i| *r.add(i) == 0));
            a.dealloc(r, Layout::from_size_align(8192, 1).unwrap());
            let s = a.alloc(small);
            s.write_bytes(1, small.size());
            a.dealloc(s, small);
        }
    }
}
