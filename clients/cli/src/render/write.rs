//! Writing a rendered file so that no reader ever sees a partial one: a temp file in the
//! destination's directory with the final mode and owner, fsync, rename over the destination,
//! fsync of the directory. Output equal to what is there is not written again.

use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::unistd::{Gid, Uid};
use zeroize::Zeroizing;

/// The mode of a rendered file unless its template says otherwise.
pub const DEFAULT_MODE: u32 = 0o600;

/// Where a rendered file goes and what it looks like there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub path: PathBuf,
    pub mode: u32,
    pub owner: Option<Uid>,
    pub group: Option<Gid>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "{path} is on {filesystem}, not on a tmpfs or ramfs: the secrets would be at rest on disk \
         (put it on a memory filesystem, or pass --allow-disk to accept that)"
    )]
    OnDisk { path: PathBuf, filesystem: String },
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The file did not exist: nothing read it before.
    Created,
    Replaced,
    /// The same bytes were there already (mode and owner corrected in place if needed).
    Unchanged,
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

/// Writes `contents` to the destination unless the same bytes are there.
pub fn write(destination: &Destination, contents: &[u8]) -> Result<Written, WriteError> {
    let path = &destination.path;
    let dir = parent(path);
    let existed = match current_contents(path)? {
        Some(existing) if existing[..] == *contents => {
            fix_metadata(destination)?;
            return Ok(Written::Unchanged);
        }
        Some(_) => true,
        // A symlink or other non-file there is replaced, never followed.
        None => fs::symlink_metadata(path).is_ok(),
    };
    // Created 0600 by tempfile with O_EXCL and a random name: no other user can open it between
    // here and the rename, whatever the final mode is.
    let mut temp = tempfile::Builder::new()
        .prefix(".psst-render-")
        .tempfile_in(&dir)
        .map_err(io(&dir, "creating a temporary file"))?;
    if destination.owner.is_some() || destination.group.is_some() {
        nix::unistd::fchown(temp.as_file(), destination.owner, destination.group)
            .map_err(|e| io(path, "setting the owner")(e.into()))?;
    }
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(destination.mode))
        .map_err(io(path, "setting the mode"))?;
    temp.write_all(contents)
        .map_err(io(path, "writing the temporary file"))?;
    temp.as_file()
        .sync_all()
        .map_err(io(path, "syncing the temporary file"))?;
    temp.persist(path)
        .map_err(|e| io(path, "renaming the temporary file over it")(e.error))?;
    // The rename itself is durable only once the directory is synced.
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir, "syncing the directory"))?;
    Ok(if existed {
        Written::Replaced
    } else {
        Written::Created
    })
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The bytes of the regular file at `path`; `None` when there is none (or a symlink is there).
fn current_contents(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, WriteError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: a symlink; it is replaced by the rename.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Ok(None),
        Err(e) => return Err(io(path, "reading the current file")(e)),
    };
    if !file
        .metadata()
        .map_err(io(path, "reading the current file"))?
        .is_file()
    {
        return Ok(None);
    }
    let mut existing = Zeroizing::new(Vec::new());
    file.read_to_end(&mut existing)
        .map_err(io(path, "reading the current file"))?;
    Ok(Some(existing))
}

fn fix_metadata(destination: &Destination) -> Result<(), WriteError> {
    let path = &destination.path;
    let meta = fs::symlink_metadata(path).map_err(io(path, "reading the current file"))?;
    let owner_differs = destination.owner.is_some_and(|u| u.as_raw() != meta.uid())
        || destination.group.is_some_and(|g| g.as_raw() != meta.gid());
    if owner_differs {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            destination.owner,
            destination.group,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io(path, "setting the owner")(e.into()))?;
    }
    if meta.mode() & 0o7777 != destination.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(destination.mode))
            .map_err(io(path, "setting the mode"))?;
    }
    Ok(())
}

/// Whether the destination's directory is on a memory filesystem; the name of the filesystem
/// type when it is not.
pub fn memory_backed(path: &Path) -> Result<Result<(), String>, WriteError> {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // statfs(2): nix names tmpfs's magic number but not ramfs's.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let dir = parent(path);
    let stat = statfs(&dir).map_err(|e| io(&dir, "checking its filesystem")(e.into()))?;
    let kind = stat.filesystem_type();
    if kind == TMPFS_MAGIC || kind == RAMFS_MAGIC {
        Ok(Ok(()))
    } else {
        Ok(Err(format!("a filesystem of type {:#x}", kind.0)))
    }
}

/// Fails unless the destination is on a memory filesystem or `allow_disk` says that is fine (then
/// warns once).
pub fn check_filesystem(path: &Path, allow_disk: bool) -> Result<(), WriteError> {
    match memory_backed(path)? {
        Ok(()) => Ok(()),
        Err(filesystem) if allow_disk => {
            eprintln!(
                "psst render: warning: {} is on {filesystem}, not on a tmpfs or ramfs: its secrets are at rest on disk",
                path.display()
            );
            Ok(())
        }
        Err(filesystem) => Err(WriteError::OnDisk {
            path: path.to_owned(),
            filesystem,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shm_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("psst-render-unit-")
            .tempdir_in("/dev/shm")
            .expect("/dev/shm")
    }

    fn destination(path: PathBuf, mode: u32) -> Destination {
        Destination {
            path,
            mode,
            owner: None,
            group: None,
        }
    }

    #[test]
    fn writes_replace_and_leave_equal_content_alone() {
        let dir = shm_dir();
        let dest = destination(dir.path().join("app.conf"), 0o640);
        assert_eq!(write(&dest, b"one").unwrap(), Written::Created);
        let inode = fs::metadata(&dest.path).unwrap().ino();
        assert_eq!(write(&dest, b"one").unwrap(), Written::Unchanged);
        assert_eq!(
            fs::metadata(&dest.path).unwrap().ino(),
            inode,
            "not rewritten"
        );
        assert_eq!(write(&dest, b"two").unwrap(), Written::Replaced);
        assert_eq!(fs::read(&dest.path).unwrap(), b"two");
        let meta = fs::metadata(&dest.path).unwrap();
        assert_ne!(meta.ino(), inode, "a new file renamed over the old one");
        assert_eq!(meta.mode() & 0o7777, 0o640);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_changed_mode_is_corrected_without_a_rewrite() {
        let dir = shm_dir();
        let mut dest = destination(dir.path().join("f"), 0o600);
        write(&dest, b"x").unwrap();
        dest.mode = 0o640;
        assert_eq!(write(&dest, b"x").unwrap(), Written::Unchanged);
        assert_eq!(fs::metadata(&dest.path).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_followed() {
        let dir = shm_dir();
        let target = dir.path().join("target");
        fs::write(&target, b"same").unwrap();
        let dest = destination(dir.path().join("link"), 0o600);
        std::os::unix::fs::symlink(&target, &dest.path).unwrap();
        assert_eq!(write(&dest, b"same").unwrap(), Written::Replaced);
        assert!(fs::symlink_metadata(&dest.path).unwrap().is_file());
        assert_eq!(fs::read(&target).unwrap(), b"same");
    }

    #[test]
    fn only_memory_filesystems_pass_unless_disk_is_allowed() {
        let dir = shm_dir();
        assert!(check_filesystem(&dir.path().join("f"), false).is_ok());
        // The crate's own directory is on whatever disk holds the checkout.
        let on_disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("rendered");
        if memory_backed(&on_disk).unwrap().is_err() {
            let err = check_filesystem(&on_disk, false).unwrap_err();
            assert!(err.to_string().contains("--allow-disk"), "{err}");
            assert!(check_filesystem(&on_disk, true).is_ok());
        }
    }
}
