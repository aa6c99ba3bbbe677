//! The audit journal: a ring of record bytes in a shared memory map of a file.
//!
//! A record is copied into the map before its response is sent, with no system call: the
//! kernel owns the map's pages, so what was copied survives the process being killed
//! (`SIGKILL`, an abort, the OOM killer) and is written to the audit sink by the next start.
//! The writer thread (`super::Trail`) copies what is pending to the sink in batches and then
//! marks it consumed. Like any write without `fsync`, it does not survive the machine losing power.
//!
//! Layout: a 4 KiB header (magic, capacity, `head` = bytes ever appended, `tail` = bytes ever
//! consumed, both growing forever) and `capacity` bytes of ring. `head` is stored after the bytes
//! it covers are copied: a record half-copied when the process died is not replayed, and its
//! response was never sent. `tail` is stored after the sink accepted the bytes, so a crash
//! between the two replays that batch again: records are written at least once.

use std::{
    fs::File,
    io,
    os::{
        fd::AsFd,
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    path::Path,
    sync::atomic::{fence, AtomicU64, Ordering},
};

use memmap2::MmapRaw;
use nix::fcntl::{Flock, FlockArg};

const MAGIC: u64 = u64::from_le_bytes(*b"PSSTAJ01");
const HEADER: usize = 4096;
const MAGIC_AT: usize = 0;
const CAPACITY_AT: usize = 8;
const HEAD_AT: usize = 16;
const TAIL_AT: usize = 24;

/// The ring's size: about 2,500 records, tens of milliseconds of the busiest load this agent
/// serves; when it is full the request that found it full writes the pending records itself.
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 20;

/// The ring is full: the caller writes what is pending to the sink, then appends again.
#[derive(Debug)]
pub(super) struct Full;

pub(super) struct Journal {
    map: MmapRaw,
    capacity: u64,
    /// Held for the map's life: one agent per journal.
    _lock: Flock<File>,
}

impl Journal {
    /// Opens (creating, mode 0600) the journal at `path`: refused when it is not a regular file
    /// of this user that no one else can read or write (a link planted in its place is not
    /// followed), or when another process holds it. What an earlier run left pending stays
    /// pending, for the first `pending` to return.
    pub(super) fn open(path: &Path, capacity: usize) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "owned by uid {} with mode {:o}: it must belong to the agent's user and be \
                 readable by no one else",
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                io::Error::other("another psstd holds it")
            } else {
                io::Error::from(errno)
            }
        })?;
        let len = (HEADER + capacity) as u64;
        if meta.len() != len {
            file.set_len(0)?;
            file.set_len(len)?;
        }
        // Every page of the ring gets its disk (or tmpfs) blocks now: a store into the map must
        // never be the first to need one, or a full file system would kill the agent (SIGBUS).
        nix::fcntl::posix_fallocate(file.as_fd(), 0, len as nix::libc::off_t)
            .map_err(io::Error::from)?;
        let map = memmap2::MmapOptions::new().populate().map_raw(&*file)?;
        let journal = Self {
            map,
            capacity: capacity as u64,
            _lock: file,
        };
        let (tail, head) = (journal.tail(), journal.head());
        let valid = journal.word(MAGIC_AT).load(Ordering::Relaxed) == MAGIC
            && journal.word(CAPACITY_AT).load(Ordering::Relaxed) == capacity as u64
            && tail <= head
            && head - tail <= capacity as u64;
        if !valid {
            // New, resized or damaged: start empty (a damaged ring cannot be trusted to hold
            // whole records).
            journal.word(HEAD_AT).store(0, Ordering::Relaxed);
            journal.word(TAIL_AT).store(0, Ordering::Relaxed);
            journal
                .word(CAPACITY_AT)
                .store(capacity as u64, Ordering::Relaxed);
            journal.word(MAGIC_AT).store(MAGIC, Ordering::Release);
        }
        Ok(journal)
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at + 8 <= HEADER && at.is_multiple_of(8));
        // SAFETY: the map is page-aligned and at least HEADER bytes long, so `at` (a multiple of
        // 8 inside the header) is an aligned u64 that lives as long as `self`. Every access to
        // the header words goes through atomics; the file is this process's alone (flock, mode
        // 0600, owned by the agent's user).
        unsafe { &*(self.map.as_mut_ptr().add(at) as *const AtomicU64) }
    }

    fn head(&self) -> u64 {
        self.word(HEAD_AT).load(Ordering::Acquire)
    }

    fn tail(&self) -> u64 {
        self.word(TAIL_AT).load(Ordering::Acquire)
    }

    /// Bytes appended and not yet consumed.
    pub(super) fn pending_bytes(&self) -> u64 {
        self.head() - self.tail()
    }

    /// Copies `line` into the ring. Callers serialize appends (one appender at a time); a
    /// consumer may run at the same time.
    pub(super) fn append(&self, line: &[u8]) -> Result<(), Full> {
        let head = self.word(HEAD_AT).load(Ordering::Relaxed);
        let len = line.len() as u64;
        if head - self.tail() + len > self.capacity {
            return Err(Full);
        }
        let at = (head % self.capacity) as usize;
        let first = line.len().min(self.capacity as usize - at);
        // SAFETY: both ranges are inside the ring (at + first <= capacity, the rest starts at
        // 0 and is shorter than capacity), and they lie in [head, tail + capacity): bytes no
        // consumer reads (a consumer reads only [tail, head)) and no other appender writes.
        unsafe {
            let ring = self.map.as_mut_ptr().add(HEADER);
            std::ptr::copy_nonoverlapping(line.as_ptr(), ring.add(at), first);
            std::ptr::copy_nonoverlapping(line.as_ptr().add(first), ring, line.len() - first);
        }
        // The bytes first, then the position that publishes them (to the consumer, and to the
        // next start after a crash).
        self.word(HEAD_AT).store(head + len, Ordering::Release);
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// The bytes appended and not consumed, oldest first (two slices when they wrap), and the
    /// position after them. Callers serialize consumers; the slices stay valid until `consume`.
    pub(super) fn pending(&self) -> ([&[u8]; 2], u64) {
        let (tail, head) = (self.tail(), self.head());
        let at = (tail % self.capacity) as usize;
        let len = (head - tail) as usize;
        let first = len.min(self.capacity as usize - at);
        // SAFETY: [tail, head) was published by `append` (Release/Acquire on head) and is not
        // written again until `consume` moves tail past it, which only this consumer does.
        let slices = unsafe {
            let ring = self.map.as_mut_ptr().add(HEADER) as *const u8;
            [
                std::slice::from_raw_parts(ring.add(at), first),
                std::slice::from_raw_parts(ring, len - first),
            ]
        };
        (slices, head)
    }

    /// Marks `n` more bytes as written to the sink.
    pub(super) fn consume(&self, n: u64) {
        let tail = self.word(TAIL_AT).load(Ordering::Relaxed);
        debug_assert!(tail + n <= self.head());
        self.word(TAIL_AT).store(tail + n, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(journal: &Journal) -> Vec<u8> {
        let ([a, b], _) = journal.pending();
        let out = [a, b].concat();
        journal.consume(out.len() as u64);
        out
    }

    #[test]
    fn records_wrap_around_the_ring_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), 100).unwrap();
        let mut written = Vec::new();
        for i in 0..40 {
            let line = format!("record {i:02}\n");
            journal.append(line.as_bytes()).unwrap();
            if i % 3 == 2 {
                written.extend(drain(&journal));
            }
        }
        written.extend(drain(&journal));
        let expected: String = (0..40).map(|i| format!("record {i:02}\n")).collect();
        assert_eq!(String::from_utf8(written).unwrap(), expected);
    }

    #[test]
    fn a_full_ring_refuses_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j"), 16).unwrap();
        journal.append(b"0123456789\n").unwrap();
        assert!(journal.append(b"abcdef\n").is_err());
        assert_eq!(drain(&journal), b"0123456789\n");
        journal.append(b"abcdef\n").unwrap();
        assert_eq!(drain(&journal), b"abcdef\n");
    }

    #[test]
    fn what_a_killed_process_left_pending_is_there_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path, 64).unwrap();
        journal.append(b"written\n").unwrap();
        drain(&journal);
        journal.append(b"pending one\n").unwrap();
        journal.append(b"pending two\n").unwrap();
        // Dropped without consuming: what a crash leaves (the map's pages are the file's).
        drop(journal);
        let again = Journal::open(&path, 64).unwrap();
        assert_eq!(drain(&again), b"pending one\npending two\n");
        drop(again);
        let empty = Journal::open(&path, 64).unwrap();
        assert_eq!(empty.pending_bytes(), 0);
    }

    #[test]
    fn a_second_holder_a_planted_link_and_a_readable_file_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let held = Journal::open(&path, 64).unwrap();
        let second = Journal::open(&path, 64).err().expect("held by another");
        assert!(second.to_string().contains("another psstd"), "{second}");
        drop(held);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"not a journal").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(Journal::open(&link, 64).is_err(), "a link is not followed");
        assert_eq!(std::fs::read(&target).unwrap(), b"not a journal");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = Journal::open(&path, 64).err().expect("readable by others");
        assert!(
            open.to_string().contains("readable by no one else"),
            "{open}"
        );
    }

    #[test]
    fn a_damaged_header_starts_an_empty_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path, 64).unwrap();
        journal.append(b"record\n").unwrap();
        // head far beyond tail + capacity: not a ring this code wrote.
        journal.word(HEAD_AT).store(1 << 40, Ordering::Relaxed);
        drop(journal);
        let again = Journal::open(&path, 64).unwrap();
        assert_eq!(again.pending_bytes(), 0);
    }
}
