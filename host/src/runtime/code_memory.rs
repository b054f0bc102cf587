//! Where a sealed artifact's code runs from. `Component::deserialize`
//! copies the artifact into a fresh mapping of 4 KiB pages, and faulting in
//! those pages is most of a `.cwasm` swap (1,500 of them for a 6 MB
//! artifact). Here the host copies it once, into memory it maps itself and
//! asks to back with huge pages, and wasmtime runs the code in place
//! (`deserialize_raw`).
//!
//! Wasmtime cannot free memory it does not own, so this module frees it,
//! from the engine's code-memory hook: wasmtime unpublishes a component's
//! code when the code's last user drops it, and that is when its buffer is
//! unmapped (wasmtime unmaps its own mappings itself). The hook also
//! publishes every engine's code (W^X: RX for text, as wasmtime does itself
//! on x86-64, the only architecture that takes this path; elsewhere
//! artifacts are deserialized by copy).

use wasmtime::Engine;
use wasmtime::component::Component;

/// Deserialize a sealed artifact's bytes (already verified).
///
/// # Safety
/// As [`Component::deserialize`]: the bytes must be an artifact this
/// host's engine produced.
pub(super) unsafe fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if let Ok(buffer) = host::Buffer::copy_of(artifact) {
        return unsafe { host::deserialize(engine, buffer) };
    }
    unsafe { Component::deserialize(engine, artifact) }
}

/// The engine configuration that lets [`deserialize`] run code in place.
pub(super) fn configure(config: &mut wasmtime::Config) {
    // Unpublishing must be the code's last use of its memory: wasmtime
    // deregisters native unwind info after it, so there must be none (its
    // own traces do without).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    config
        .native_unwind_info(false)
        .with_custom_code_memory(Some(std::sync::Arc::new(host::Hook)));
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    let _ = config;
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod host {
    use std::collections::BTreeMap;
    use std::ffi::c_void;
    use std::ptr::NonNull;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use rustix::mm::{self, MapFlags, MprotectFlags, ProtFlags};
    use wasmtime::Engine;
    use wasmtime::component::Component;

    /// A transparent huge page on x86-64.
    const HUGE_PAGE: usize = 2 << 20;

    /// Buffers whose code wasmtime may be running, by start address.
    static LIVE: Mutex<BTreeMap<usize, Buffer>> = Mutex::new(BTreeMap::new());

    /// Buffer ids: a freed buffer's address can come back for the next one.
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    /// An anonymous mapping holding one artifact at a huge-page boundary.
    pub(super) struct Buffer {
        pub(super) id: u64,
        mapping: *mut c_void,
        mapped: usize,
        start: *mut u8,
        len: usize,
    }

    // SAFETY: the buffer is plain memory; it is only written before
    // wasmtime sees it, and unmapped once (on drop).
    unsafe impl Send for Buffer {}

    impl Buffer {
        pub(super) fn copy_of(bytes: &[u8]) -> rustix::io::Result<Self> {
            let len = bytes.len().max(1);
            let mapped = len.div_ceil(HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE;
            // SAFETY: a fresh private anonymous mapping, owned by the Buffer.
            let mapping = unsafe {
                mm::mmap_anonymous(
                    std::ptr::null_mut(),
                    mapped,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE,
                )
            }?;
            let start = mapping
                .cast::<u8>()
                .wrapping_add((mapping as usize).next_multiple_of(HUGE_PAGE) - mapping as usize);
            let buffer = Buffer {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                mapping,
                mapped,
                start,
                len: bytes.len(),
            };
            // Only advice: with huge pages off it is 4 KiB pages as before.
            // SAFETY: the range lies inside the mapping.
            let _ = unsafe {
                mm::madvise(
                    start.cast(),
                    len.next_multiple_of(HUGE_PAGE),
                    mm::Advice::LinuxHugepage,
                )
            };
            // SAFETY: `start..start + len` lies inside the writable mapping,
            // which nothing else refers to yet.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, bytes.len());
                // Read-only from here on; the hook makes the text executable.
                mm::mprotect(start.cast(), len, MprotectFlags::READ)?;
            }
            Ok(buffer)
        }

        #[cfg(test)]
        pub(super) fn is_live(id: u64) -> bool {
            LIVE.lock().unwrap().values().any(|buffer| buffer.id == id)
        }

        #[cfg(test)]
        pub(super) fn holds(id: u64, address: *const u8) -> bool {
            let live = LIVE.lock().unwrap();
            live.values()
                .any(|buffer| buffer.id == id && buffer.contains(address as usize))
        }

        fn contains(&self, address: usize) -> bool {
            (self.start as usize..self.start as usize + self.len).contains(&address)
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            // SAFETY: the mapping is ours, and no code runs from it any more
            // (wasmtime unpublished it, or never published it).
            let _ = unsafe { mm::munmap(self.mapping, self.mapped) };
        }
    }

    /// # Safety
    /// As [`Component::deserialize`].
    pub(super) unsafe fn deserialize(
        engine: &Engine,
        buffer: Buffer,
    ) -> wasmtime::Result<Component> {
        let (start, id) = (buffer.start as usize, buffer.id);
        let memory = NonNull::slice_from_raw_parts(
            NonNull::new(buffer.start).expect("mmap returned a mapping"),
            buffer.len,
        );
        LIVE.lock().unwrap().insert(start, buffer);
        // SAFETY: the bytes are an artifact of this engine (the caller's
        // promise), and the buffer stays mapped and unwritten until the
        // hook sees wasmtime unpublish the code in it.
        let component = unsafe { Component::deserialize_raw(engine, memory) };
        if component.is_err() {
            // Nothing runs from it: wasmtime dropped what it had made. If it
            // had published the code, unpublishing freed the buffer already,
            // and another load may have the address now: only this id goes.
            let mut live = LIVE.lock().unwrap();
            let ours = live.get(&start).is_some_and(|buffer| buffer.id == id);
            let freed = ours.then(|| live.remove(&start));
            drop(live);
            drop(freed);
        }
        component
    }

    /// The engine's code-memory hook.
    pub(super) struct Hook;

    impl wasmtime::CustomCodeMemory for Hook {
        fn required_alignment(&self) -> usize {
            rustix::param::page_size()
        }

        fn publish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
            // SAFETY: wasmtime hands over the page-aligned text of code it
            // has finished writing.
            unsafe {
                mm::mprotect(
                    ptr as *mut c_void,
                    len,
                    MprotectFlags::READ | MprotectFlags::EXEC,
                )
            }?;
            Ok(())
        }

        /// Called when the code's last user is gone. Wasmtime unmaps its
        /// own mappings next; a host buffer is unmapped here.
        fn unpublish_executable(&self, ptr: *const u8, _len: usize) -> wasmtime::Result<()> {
            let mut live = LIVE.lock().unwrap();
            let owner = live
                .range(..=ptr as usize)
                .next_back()
                .filter(|(_, buffer)| buffer.contains(ptr as usize))
                .map(|(start, _)| *start);
            let freed = owner.and_then(|start| live.remove(&start));
            // Unmapped outside the lock, which other loads wait on.
            drop(live);
            drop(freed);
            Ok(())
        }
    }
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn engine(pool: wasmtime::PoolingAllocationConfig) -> Engine {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        configure(&mut config);
        Engine::new(&config).unwrap()
    }

    fn spark_artifact(engine: &Engine) -> Vec<u8> {
        let wasm = std::fs::read(crate::testkit::component_path("spark")).unwrap();
        engine.precompile_component(&wasm).unwrap()
    }

    /// The code runs from the host's buffer, which is unmapped when the
    /// code's last user drops it.
    #[test]
    fn a_buffer_lives_as_long_as_its_code() {
        let engine = engine(Default::default());
        let buffer = host::Buffer::copy_of(&spark_artifact(&engine)).unwrap();
        let id = buffer.id;
        let component = unsafe { host::deserialize(&engine, buffer) }.unwrap();
        let code = component.image_range().start;
        assert!(host::Buffer::holds(id, code), "runs from the host's buffer");
        drop(component);
        assert!(!host::Buffer::is_live(id), "given back");
    }

    /// An artifact wasmtime refuses leaves no buffer behind, whether it is
    /// refused before its code is published (damaged) or after (made for
    /// larger pool limits than this engine's).
    #[test]
    fn a_refused_artifact_leaves_no_buffer() {
        let engine = engine(Default::default());
        let artifact = spark_artifact(&engine);
        let mut small = wasmtime::PoolingAllocationConfig::new();
        small.max_memory_size(1 << 16);
        let small = self::engine(small);
        for (engine, bytes) in [
            (&engine, &artifact[..artifact.len() / 2]),
            (&small, &artifact[..]),
        ] {
            let buffer = host::Buffer::copy_of(bytes).unwrap();
            let id = buffer.id;
            let refused = unsafe { host::deserialize(engine, buffer) };
            assert!(refused.is_err());
            assert!(!host::Buffer::is_live(id));
        }
    }
}
