//! The allocator of a plugin compiled to wasm.
//!
//! Every call runs in a fresh instance that the host throws away after it,
//! so nothing has to be given back to the host: blocks are taken from the
//! top of linear memory, which grows only once the call has used what the
//! module started with. (Rust's default allocator grows it on every
//! instance's first allocation, and each growth costs the host a change of
//! page protections.) Freed small blocks are kept by power-of-two size and
//! taken again, so a call that churns through temporaries reuses their
//! memory; a freed large block is reclaimed when it is the latest one (a
//! growing buffer grows in place). A call is still bounded by the host's
//! per-call memory limit, and running out is the same trap.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::Cell;

const PAGE: usize = 65536;
/// Small blocks: 16 bytes to 64 KiB, by powers of two.
const MIN_CLASS: usize = 16;
const CLASSES: usize = 13;
const MAX_CLASS: usize = MIN_CLASS << (CLASSES - 1);
/// Small blocks are aligned to this (and larger alignments are large).
const SMALL_ALIGN: usize = 16;

unsafe extern "C" {
    /// Where the linker put the start of the heap.
    static __heap_base: u8;
}

pub struct Arena {
    /// The first byte never handed out (0: not started).
    top: Cell<usize>,
    /// Per size class, the latest freed block (0: none); each free block
    /// holds the address of the one freed before it.
    free: [Cell<usize>; CLASSES],
}

// SAFETY: a plugin instance runs one thread (wasm32 without atomics).
unsafe impl Sync for Arena {}

/// The size class of a small allocation (`None`: large).
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_CLASS || layout.align() > SMALL_ALIGN {
        return None;
    }
    let size = layout.size().max(MIN_CLASS).next_power_of_two();
    Some((size / MIN_CLASS).trailing_zeros() as usize)
}

impl Arena {
    pub const fn new() -> Self {
        Arena {
            top: Cell::new(0),
            free: [const { Cell::new(0) }; CLASSES],
        }
    }

    fn top(&self) -> usize {
        match self.top.get() {
            0 => &raw const __heap_base as usize,
            top => top,
        }
    }

    /// Move the top to `end`, growing memory past its current end.
    fn reach(&self, end: usize) -> bool {
        let limit = wasm32::memory_size(0) * PAGE;
        if end > limit && wasm32::memory_grow(0, (end - limit).div_ceil(PAGE)) == usize::MAX {
            return false;
        }
        self.top.set(end);
        true
    }

    /// `size` fresh bytes aligned to `align`, from the top.
    fn take(&self, size: usize, align: usize) -> *mut u8 {
        let Some(start) = self.top().checked_next_multiple_of(align) else {
            return core::ptr::null_mut();
        };
        match start.checked_add(size) {
            Some(end) if self.reach(end) => start as *mut u8,
            _ => core::ptr::null_mut(),
        }
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return self.take(layout.size(), layout.align());
        };
        let head = self.free[class].get();
        if head == 0 {
            return self.take(MIN_CLASS << class, SMALL_ALIGN);
        }
        // SAFETY: `head` is a block freed into this class; it holds the next.
        self.free[class].set(unsafe { *(head as *const usize) });
        head as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of(layout) {
            Some(class) => {
                // SAFETY: the block is ours again and holds at least 16 bytes.
                unsafe { *(ptr as *mut usize) = self.free[class].get() };
                self.free[class].set(ptr as usize);
            }
            None if ptr as usize + layout.size() == self.top() => self.top.set(ptr as usize),
            None => {}
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (both): as `GlobalAlloc::realloc` requires of its caller.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // Still fits its block.
            (Some(old), Some(new)) if new <= old => return ptr,
            // The latest large block grows or shrinks where it is.
            (None, None) if ptr as usize + layout.size() == self.top() => {
                return match (ptr as usize).checked_add(new_size) {
                    Some(end) if self.reach(end) => ptr,
                    _ => core::ptr::null_mut(),
                };
            }
            _ => {}
        }
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
