//! The process's allocator: the system's, except for blocks that must be aligned beyond
//! what `malloc` aligns every block to.
//!
//! Those (tokio's tasks and its sockets' reactor registrations are aligned to 128-byte
//! cache lines) would go to `posix_memalign`, and glibc before 2.38 serves each such
//! request from a fresh block larger by the alignment, never from one freed by an
//! earlier aligned request. A server that opens many connections at once allocates a
//! task and a registration for each and frees them when it parks the connection; the
//! freed blocks stay as holes that the next aligned requests do not use, and the heap,
//! and the process's RSS, stay as large as if they were still held. Here such a block
//! is carved from a plain `malloc` block larger by the alignment, with the offset kept
//! just before it: the next request of the same size reuses a freed one.

use std::alloc::{GlobalAlloc, Layout, System};

/// What every `malloc` block is aligned to on the platforms the server runs on (Rust's
/// `System` asks `posix_memalign` only for more).
const MALLOC_ALIGN: usize = 16;

/// The system allocator, with aligned blocks carved from plain ones.
pub struct Allocator;

/// The plain block an aligned block of `layout` is carved from: larger by the
/// alignment, so that an aligned address with room for the offset before it is inside.
fn outer(layout: Layout) -> Option<Layout> {
    let size = layout.size().checked_add(layout.align())?;
    Layout::from_size_align(size, std::mem::align_of::<usize>()).ok()
}

// SAFETY (for the whole impl): blocks of at most `MALLOC_ALIGN` are the system's own,
// passed through unchanged. An aligned block is inside its plain block: the plain
// block is at least `usize`-aligned, so the first aligned address after its start is
// between `usize` bytes and `align` bytes in, which leaves room for the offset right
// before it and for `size` bytes after it (the plain block is `size + align` long).
// `dealloc` and `realloc` are given the layout the block was allocated with, so they
// take the same path and find the offset where `alloc` wrote it.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { System.alloc(layout) };
        }
        unsafe { carve(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { System.alloc_zeroed(layout) };
        }
        unsafe { carve(layout, true) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { System.dealloc(ptr, layout) };
        }
        let Some(outer) = outer(layout) else {
            // Never: `alloc` returned null for such a layout.
            return;
        };
        unsafe {
            let offset = ptr.cast::<usize>().sub(1).read_unaligned();
            System.dealloc(ptr.sub(offset), outer);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        unsafe {
            let new = carve(new_layout, false);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// An aligned block carved from a plain one, the offset from the plain block's start
/// written just before it; null if there is no memory.
unsafe fn carve(layout: Layout, zeroed: bool) -> *mut u8 {
    let Some(outer) = outer(layout) else {
        return std::ptr::null_mut();
    };
    unsafe {
        let plain = if zeroed {
            System.alloc_zeroed(outer)
        } else {
            System.alloc(outer)
        };
        if plain.is_null() {
            return plain;
        }
        let offset = layout.align() - (plain as usize & (layout.align() - 1));
        let block = plain.add(offset);
        block.cast::<usize>().sub(1).write_unaligned(offset);
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A freed aligned block is what the next request of its size gets (the system's
    /// cache of freed blocks hands the same one back), where glibc's `posix_memalign`
    /// (before 2.38) carves every request from fresh memory.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_freed_aligned_block_is_reused_by_the_next_of_its_size() {
        let layout = Layout::from_size_align(256, 128).unwrap();
        unsafe {
            let first = Allocator.alloc(layout);
            Allocator.dealloc(first, layout);
            let second = Allocator.alloc(layout);
            Allocator.dealloc(second, layout);
            assert_eq!(first, second);
        }
    }

    #[test]
    fn aligned_blocks_are_aligned_hold_their_bytes_and_go_back() {
        for align in [32, 64, 128, 4096] {
            for size in [1, 8, 100, 256, 1000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let block = Allocator.alloc_zeroed(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0);
                    assert!((0..size).all(|at| *block.add(at) == 0));
                    std::ptr::write_bytes(block, 0xab, size);
                    let grown = Allocator.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0);
                    assert!((0..size).all(|at| *grown.add(at) == 0xab));
                    Allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}
