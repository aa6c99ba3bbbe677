//! The one type that holds secret bytes.
//!
//! `SecretValue` zeroizes its buffer when dropped and prints a redaction in `Debug` and
//! `Display`, so a value can be passed around, logged by accident or put in an error without
//! leaking. Nothing else in the agent owns plaintext.
//!
//! Its bytes live in an arena of anonymous mappings that are excluded from core dumps
//! (`MADV_DONTDUMP`) and locked in RAM (`mlock`, so never written to swap) once, when the arena
//! grows, not per value: values up to `LARGEST_SLOT` take a slot of the next power of two from a
//! 64 KiB chunk; larger ones get a mapping of their own. A freed slot is wiped and reused; chunks
//! are kept for reuse. If the kernel refuses the lock (RLIMIT_MEMLOCK), one warning says so and
//! values are still kept out of core dumps. Everything else the process frees is wiped by the
//! zeroing allocator `psstd`'s `main.rs` installs.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use memmap2::{Advice, MmapMut};
use zeroize::{Zeroize, Zeroizing};

/// The smallest slot; smaller values share its size.
const SMALLEST_SLOT: usize = 32;
/// Slot sizes are powers of two from `SMALLEST_SLOT` to this; larger values are mapped alone.
pub(crate) const LARGEST_SLOT: usize = 32 * 1024;
const SLOT_CLASSES: usize = (LARGEST_SLOT / SMALLEST_SLOT).trailing_zeros() as usize + 1;
/// What the arena maps at a time for one slot size.
const CHUNK_BYTES: usize = 64 * 1024;

/// Free slots, by size class. A slot is a piece of a chunk that is never unmapped.
static FREE_SLOTS: [Mutex<Vec<&'static mut [u8]>>; SLOT_CLASSES] =
    [const { Mutex::new(Vec::new()) }; SLOT_CLASSES];
static LOCK_WARNED: AtomicBool = AtomicBool::new(false);
static MAP_WARNED: AtomicBool = AtomicBool::new(false);

/// Secret bytes: wiped on drop, never printed, never in a core dump.
pub struct SecretValue {
    storage: Storage,
    len: usize,
}

enum Storage {
    Empty,
    Slot {
        class: usize,
        slot: &'static mut [u8],
    },
    Mapped(MmapMut),
    /// The kernel refused a mapping: an ordinary (wiped) heap buffer.
    Heap(Zeroizing<Vec<u8>>),
}

impl SecretValue {
    /// Takes the bytes into protected memory and wipes `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self::from_slice(&bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        let len = bytes.len();
        let mut storage = allocate(len);
        match &mut storage {
            Storage::Empty => {}
            Storage::Slot { slot, .. } => slot[..len].copy_from_slice(bytes),
            Storage::Mapped(map) => map[..len].copy_from_slice(bytes),
            Storage::Heap(heap) => heap.extend_from_slice(bytes),
        }
        Self { storage, len }
    }

    /// The plaintext. Call sites are the few places that must see it: crypto, JSON key
    /// extraction, and the reply encoder.
    pub fn expose(&self) -> &[u8] {
        match &self.storage {
            Storage::Empty => &[],
            Storage::Slot { slot, .. } => &slot[..self.len],
            Storage::Mapped(map) => &map[..self.len],
            Storage::Heap(heap) => heap,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shares the value as `Bytes` without copying it: the buffer is zeroized when the last
    /// `Bytes` and the last `Arc` are gone.
    pub fn share(self: &Arc<Self>) -> Bytes {
        Bytes::from_owner(Shared(Arc::clone(self)))
    }
}

/// Protected memory for `len` bytes.
fn allocate(len: usize) -> Storage {
    if len == 0 {
        return Storage::Empty;
    }
    if len > LARGEST_SLOT {
        return match map_protected(len) {
            Some(map) => Storage::Mapped(map),
            None => Storage::Heap(Zeroizing::new(Vec::with_capacity(len))),
        };
    }
    let size = len.max(SMALLEST_SLOT).next_power_of_two();
    let class = (size / SMALLEST_SLOT).trailing_zeros() as usize;
    let mut free = FREE_SLOTS[class].lock().unwrap_or_else(|p| p.into_inner());
    if free.is_empty() {
        let Some(chunk) = map_protected(CHUNK_BYTES) else {
            return Storage::Heap(Zeroizing::new(Vec::with_capacity(len)));
        };
        // Chunks live as long as the process: their slots are handed out as 'static.
        let chunk: &'static mut [u8] = &mut Box::leak(Box::new(chunk))[..];
        free.extend(chunk.chunks_exact_mut(size));
    }
    let slot = free.pop().expect("a chunk has slots");
    Storage::Slot { class, slot }
}

/// An anonymous mapping kept out of core dumps and, if the limit allows, locked in RAM.
fn map_protected(len: usize) -> Option<MmapMut> {
    let map = match MmapMut::map_anon(len) {
        Ok(map) => map,
        Err(e) => {
            if !MAP_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot map memory for secret values; using the heap");
            }
            return None;
        }
    };
    if let Err(e) = map.advise(Advice::DontDump) {
        tracing::debug!(error = %e, "MADV_DONTDUMP refused");
    }
    if let Err(e) = map.lock() {
        if !LOCK_WARNED.swap(true, Ordering::Relaxed) {
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
                .map(|(soft, _)| soft.to_string())
                .unwrap_or_else(|_| "unknown".into());
            tracing::warn!(
                error = %e,
                rlimit_memlock_bytes = %limit,
                "cannot lock secret values in memory: they may be written to swap (they are still \
                 kept out of core dumps); raise the memlock limit (systemd: LimitMEMLOCK=) to \
                 about cache.max_bytes"
            );
        }
    }
    Some(map)
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.storage, Storage::Empty) {
            Storage::Empty | Storage::Heap(_) => {}
            Storage::Slot { class, slot } => {
                slot[..self.len].zeroize();
                FREE_SLOTS[class]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(slot);
            }
            Storage::Mapped(mut map) => map[..self.len].zeroize(),
        }
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        Self::from_slice(self.expose())
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretValue {}

struct Shared(Arc<SecretValue>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.expose()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted {} bytes>)", self.len)
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_bytes() {
        let value = SecretValue::from_slice(b"correct horse");
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted 13 bytes>)");
        assert_eq!(format!("{value}"), "<redacted 13 bytes>");
        assert_eq!(value.expose(), b"correct horse");
    }

    #[test]
    fn shared_bytes_outlive_the_arc() {
        let value = Arc::new(SecretValue::from_slice(b"abc"));
        let shared = value.share();
        drop(value);
        assert_eq!(&shared[..], b"abc");
    }

    #[test]
    fn every_size_round_trips_and_slots_are_wiped_for_reuse() {
        for len in [
            0,
            1,
            31,
            32,
            33,
            4095,
            4096,
            LARGEST_SLOT,
            LARGEST_SLOT + 1,
            200_000,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let value = SecretValue::new(bytes.clone());
            assert_eq!(value.expose(), &bytes[..], "{len}");
            assert_eq!(value.len(), len);
            assert_eq!(value.clone(), value);
        }
        // A freed slot comes back wiped: nothing of the old value is left in it.
        let value = SecretValue::from_slice(&[0xAB; 100]);
        let Storage::Slot { class, .. } = value.storage else {
            panic!("a small value takes a slot")
        };
        drop(value);
        let free = FREE_SLOTS[class].lock().unwrap();
        assert!(free.iter().all(|slot| slot.iter().all(|b| *b != 0xAB)));
    }

    #[test]
    fn values_are_kept_out_of_core_dumps() {
        let value = SecretValue::from_slice(b"dontdump-me");
        let address = value.expose().as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        let mut flags = None;
        while let Some(line) = lines.next() {
            let Some((range, _)) = line.split_once(' ') else {
                continue;
            };
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            if (start..end).contains(&address) {
                flags = lines.find(|l| l.starts_with("VmFlags:")).map(str::to_owned);
                break;
            }
        }
        let flags = flags.expect("the value's mapping is in smaps");
        assert!(flags.split_whitespace().any(|f| f == "dd"), "{flags}");
    }
}
