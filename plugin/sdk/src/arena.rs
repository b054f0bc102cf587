//! The allocator a plugin runs with in the wasm runtime. Every call runs in
//! a fresh instance that is thrown away when it returns, so memory need not
//! be given back: an allocation moves a pointer through a chunk, and a free
//! gives memory back only when it is the latest allocation (parsing and
//! building JSON frees mostly in that order). The general-purpose allocator
//! took a fifth of a get-task-phase call.
//!
//! Chunks, and allocations too large to share one, come from the C
//! library's allocator, which owns the heap: it hands out the heap room the
//! instance starts with before it grows memory, and the host caps growth.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The first chunk fits in the heap room a plugin starts with
/// (`.cargo/config.toml` links 1 MiB).
const CHUNK: usize = 512 << 10;
/// Allocations this large get memory of their own, so a chunk's tail is
/// never wasted on them and their free gives the memory back.
const OWN_MEMORY_FROM: usize = 64 << 10;

pub struct Arena {
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: a wasip2 instance has one thread.
unsafe impl Sync for Arena {}

impl Arena {
    pub const fn new() -> Self {
        Arena {
            next: Cell::new(0),
            end: Cell::new(0),
        }
    }

    /// `layout` from the current chunk, if it fits.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let start = self.next.get().checked_next_multiple_of(layout.align())?;
        let end = start.checked_add(layout.size())?;
        (self.next.get() != 0 && end <= self.end.get()).then(|| {
            self.next.set(end);
            start as *mut u8
        })
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= OWN_MEMORY_FROM {
            return unsafe { System.alloc(layout) };
        }
        if let Some(ptr) = self.bump(layout) {
            return ptr;
        }
        // A new chunk; what is left of the old one stays unused.
        let Ok(chunk) = Layout::from_size_align(CHUNK, 16) else {
            return std::ptr::null_mut();
        };
        let start = unsafe { System.alloc(chunk) };
        if start.is_null() {
            return start;
        }
        self.next.set(start as usize);
        self.end.set(start as usize + CHUNK);
        self.bump(layout).unwrap_or(std::ptr::null_mut())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= OWN_MEMORY_FROM {
            return unsafe { System.dealloc(ptr, layout) };
        }
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let latest = ptr as usize + layout.size() == self.next.get();
        let fits = ptr as usize + new_size <= self.end.get();
        if layout.size() < OWN_MEMORY_FROM && new_size < OWN_MEMORY_FROM && latest && fits {
            // The latest allocation grows or shrinks where it is.
            self.next.set(ptr as usize + new_size);
            return ptr;
        }
        if layout.size() >= OWN_MEMORY_FROM && new_size >= OWN_MEMORY_FROM {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn the_latest_allocation_is_given_back_and_grows_in_place() {
        let arena = Arena::new();
        unsafe {
            let a = arena.alloc(layout(100));
            let b = arena.alloc(layout(24));
            assert!(b as usize >= a as usize + 100, "allocations overlap");
            arena.dealloc(b, layout(24));
            let c = arena.alloc(layout(24));
            assert_eq!(c, b, "the latest allocation's memory is reused");
            let grown = arena.realloc(c, layout(24), 4000);
            assert_eq!(grown, c, "the latest allocation grows where it is");
            // An earlier one moves, keeping its bytes.
            a.write_bytes(7, 100);
            let moved = arena.realloc(a, layout(100), 200);
            assert_ne!(moved, a);
            assert!(
                std::slice::from_raw_parts(moved, 100)
                    .iter()
                    .all(|&x| x == 7)
            );
        }
    }

    #[test]
    fn allocations_are_aligned_and_never_overlap_across_chunks() {
        let arena = Arena::new();
        let mut taken: Vec<(usize, usize)> = Vec::new();
        for i in 0..2_000 {
            let size = 1 + (i * 37) % 3_000;
            let align = 1 << (i % 7);
            let ptr = unsafe { arena.alloc(Layout::from_size_align(size, align).unwrap()) };
            assert!(!ptr.is_null());
            assert_eq!(ptr as usize % align, 0);
            taken.push((ptr as usize, size));
        }
        taken.sort();
        for pair in taken.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "allocations overlap");
        }
    }

    #[test]
    fn large_allocations_get_memory_of_their_own() {
        let arena = Arena::new();
        unsafe {
            let small = arena.alloc(layout(16));
            let large = arena.alloc(layout(OWN_MEMORY_FROM));
            let next = arena.alloc(layout(16));
            assert_eq!(
                next as usize,
                small as usize + 16,
                "the chunk is not spent on it"
            );
            let larger = arena.realloc(large, layout(OWN_MEMORY_FROM), 4 * OWN_MEMORY_FROM);
            assert!(!larger.is_null());
            arena.dealloc(larger, layout(4 * OWN_MEMORY_FROM));
            // A small allocation that grows large moves out of the chunk.
            let grown = arena.realloc(next, layout(16), OWN_MEMORY_FROM);
            assert!(!grown.is_null());
            arena.dealloc(grown, layout(OWN_MEMORY_FROM));
        }
    }
}
