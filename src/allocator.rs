//! The binary's global allocator: mimalloc, called the way a C program
//! calls it. (This module belongs to `src/main.rs`, not to the library.)
//!
//! mimalloc rather than glibc's malloc: measured 0.5-1.3 µs less CPU per
//! proxied request in the load bench (glibc's `malloc_consolidate` on
//! hyper's read buffers was the hot spot), RSS flat through a 10-minute
//! nonce soak. See BENCHMARKS.md for the figures and the memory it costs.
//!
//! Why not the `mimalloc` crate's `MiMalloc`: it passes every allocation to
//! `mi_malloc_aligned`, even the ones whose alignment plain `mi_malloc`
//! already gives. In mimalloc 3 that call takes its fast path only while
//! the size class's page has a free block at the right alignment; when
//! the page's free list runs dry, a size whose block is not a power of two
//! (48, 80, 96 bytes...) goes to an over-allocating path that takes a block
//! of a larger size class and never refills its own page's list, so every
//! later allocation of that size takes the slow path too. Under callgrind
//! that cost about 850 instructions a request (4 such allocations a
//! request, about 160 instructions each, against about 20 for `mi_malloc`'s
//! fast path): BENCHMARKS.md, "2026-11-25, 03:50–04:40".
//!
//! So: `mi_malloc`, `mi_zalloc` and `mi_realloc` when their guarantee covers
//! the layout, mimalloc's aligned calls otherwise. This is the test Rust's
//! standard library applies to the system `malloc` (`std::sys::alloc`).
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc's `MI_MAX_ALIGN_SIZE` (`sizeof(max_align_t)`; libmimalloc-sys
/// builds it with the default). Like a C `malloc`, `mi_malloc(size)`
/// returns memory aligned to this for any `size` of at least this (every
/// block of a size class of 16 bytes or more is: mimalloc 3 asserts it in
/// `mi_page_malloc_zero`, src/alloc.c), and at least to the machine word,
/// which covers any smaller size's largest power of two up to 8.
const MALLOC_ALIGN: usize = 16;

/// Whether plain `mi_malloc(size)` is aligned enough for a block of `size`
/// bytes that must be aligned to `align`.
#[inline]
fn malloc_aligns(size: usize, align: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

/// mimalloc as the global allocator.
pub struct Mimalloc;

// SAFETY: every pointer handed out comes from mimalloc, aligned as the
// layout asks (`malloc_aligns`, or mimalloc's aligned calls), and is freed
// or resized only by mimalloc, which finds a block's size class from the
// pointer alone (`mi_free` and `mi_realloc` take any mimalloc pointer,
// however it was allocated).
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation calls take any size and alignment
        // (the alignment is a power of two, as `Layout` guarantees).
        unsafe {
            if malloc_aligns(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if malloc_aligns(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a pointer this allocator returned.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a pointer this allocator returned for
        // `layout`, and a non-zero `new_size`. The new block keeps
        // `layout`'s alignment, so the test is made with the new size.
        unsafe {
            if malloc_aligns(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Gives memory freed on this thread back to the kernel once mimalloc's
/// purge delay has passed (`mi_collect(false)`: not forced, so it costs
/// a walk of the thread's heap and nothing when there is nothing to give
/// back). mimalloc otherwise purges freed pages only when a later
/// allocation happens to take the path that does it, which, after a burst
/// of connections has closed, may be many seconds of traffic later, or
/// never while the gateway is idle. Called by the gateway's housekeeping
/// task every 5 s (see `portcullis::server::set_collector`).
pub fn collect() {
    // SAFETY: `mi_collect` takes no pointer and may be called at any time
    // from any thread.
    unsafe { mi::mi_collect(false) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIGNS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 4096];

    fn sizes() -> impl Iterator<Item = usize> {
        (1..=300).chain([
            511,
            512,
            1000,
            1024,
            1025,
            4095,
            4096,
            8192,
            10_000,
            70_000,
            3 << 20,
        ])
    }

    #[test]
    fn every_layout_is_aligned_writable_and_freed() {
        for align in ALIGNS {
            for size in sizes() {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero-sized layout; the block is written
                // within its size and freed with the same layout.
                unsafe {
                    let p = Mimalloc.alloc(layout);
                    assert!(!p.is_null(), "size {size} align {align}");
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xa5, size);
                    Mimalloc.dealloc(p, layout);
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_reused() {
        for align in ALIGNS {
            for size in sizes().take_while(|&s| s <= 70_000) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: as above; the dirty block is freed first so that
                // the zeroed one may well reuse it.
                unsafe {
                    let dirty = Mimalloc.alloc(layout);
                    dirty.write_bytes(0xff, size);
                    Mimalloc.dealloc(dirty, layout);
                    let p = Mimalloc.alloc_zeroed(layout);
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    let bytes = std::slice::from_raw_parts(p, size);
                    assert!(bytes.iter().all(|&b| b == 0), "size {size} align {align}");
                    Mimalloc.dealloc(p, layout);
                }
            }
        }
    }

    #[test]
    fn realloc_keeps_the_alignment_and_the_contents() {
        for align in ALIGNS {
            for (from, to) in [
                (8, 24),
                (24, 8),
                (16, 4096),
                (4096, 12),
                (100, 70_000),
                (70_000, 40),
            ] {
                let layout = Layout::from_size_align(from, align).unwrap();
                // SAFETY: the block is written within its size, resized to
                // a non-zero size, read within the smaller of the two, and
                // freed with the layout of its new size.
                unsafe {
                    let p = Mimalloc.alloc(layout);
                    for i in 0..from {
                        *p.add(i) = i as u8;
                    }
                    let q = Mimalloc.realloc(p, layout, to);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "{from} -> {to}, align {align}");
                    for i in 0..from.min(to) {
                        assert_eq!(
                            *q.add(i),
                            i as u8,
                            "{from} -> {to}, align {align}, byte {i}"
                        );
                    }
                    Mimalloc.dealloc(q, Layout::from_size_align(to, align).unwrap());
                }
            }
        }
    }
}
