//! Where the policy in force lives, and how it is replaced.
//!
//! Requests read the current policy lock-free (`ArcSwap`). A reload parses the whole file first
//! and swaps only a valid policy in: a broken file is reported and the previous policy stays.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use arc_swap::{ArcSwap, Guard};

use super::{Policy, PolicyError};

/// The policy in force and, when it came from a file, how to reload it.
pub struct PolicySource {
    path: Option<PathBuf>,
    current: ArcSwap<Policy>,
    // Bumped on every swap, so long-lived streams can re-check their grants.
    generation: tokio::sync::watch::Sender<u64>,
    // What the file looked like when last read, to notice edits without re-parsing.
    stamp: Mutex<Option<FileStamp>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl PolicySource {
    /// A policy that never changes (dev mode).
    pub fn fixed(policy: Policy) -> Self {
        Self {
            path: None,
            current: ArcSwap::from_pointee(policy),
            generation: tokio::sync::watch::Sender::new(0),
            stamp: Mutex::new(None),
        }
    }

    /// Loads the policy file; fails if it is not valid.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, PolicyError> {
        let path = path.into();
        let stamp = stamp(&path);
        let policy = Policy::from_file(&path)?;
        Ok(Self {
            path: Some(path),
            current: ArcSwap::from_pointee(policy),
            generation: tokio::sync::watch::Sender::new(0),
            stamp: Mutex::new(stamp),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The policy in force. Cheap: no lock, no allocation.
    pub fn current(&self) -> Guard<Arc<Policy>> {
        self.current.load()
    }

    /// Changes whenever a new policy is swapped in.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads the file and swaps the new policy in if it is valid. Returns whether the policy
    /// came from a file (and so was reloaded).
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let new_stamp = stamp(path);
        // Record the stamp even when the file is broken, so a broken file is reported once and
        // not on every poll; fixing it changes the stamp again.
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = new_stamp;
        let policy = Policy::from_file(path)?;
        self.current.store(Arc::new(policy));
        self.generation.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// Reloads when the file changed since it was last read (mtime, size, inode: a ConfigMap
    /// update swaps a symlink, which changes the inode).
    pub fn reload_if_changed(&self) -> Result<bool, PolicyError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let seen = *self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if stamp(path) == seen {
            return Ok(false);
        }
        self.reload()
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
    })
}
