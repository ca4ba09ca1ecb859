//! A global allocator that counts, for measuring what a call costs in heap allocations
//! (`chat-bench allocations` reads the counts through `/metrics`). Compiled only with the
//! `count-allocations` feature, which no normal build turns on: the counting is two atomic
//! additions per allocation, shared by every core, which a production server should not pay.
//!
//! Counts are of the process, not of one server: the tests run many servers in one process,
//! so a figure is only meaningful for a binary serving alone, as the benchmark runs it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting each block it hands out.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

#[global_allocator]
static COUNTING: Counting = Counting;

fn count(size: usize) {
    // Relaxed: each counter is read on its own, as a running total; no other memory is
    // published through it.
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are the caller's; counting touches no memory the blocks use.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }

    /// A growth or shrink counts as one allocation of the new size: it is a call into
    /// malloc that may move the block, as heaptrack counts it too.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations (`alloc`, `alloc_zeroed` and `realloc` calls) and bytes asked for since the
/// process started.
pub fn totals() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}
