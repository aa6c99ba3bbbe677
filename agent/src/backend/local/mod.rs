//! The local encrypted store: the zero-setup default backend (`local:`).
//!
//! Layout under the store directory (mode 0700):
//!
//! ```text
//! master.key                          32 random bytes, mode 0600, created on first run
//! secrets/<name>/@versions/<n>.psst   version n of secret <name>, encrypted
//! ```
//!
//! Each version is sealed with AES-256-GCM under its own random data key, and the data key is
//! sealed under the master key (envelope encryption: one key per version limits what one leaked
//! data key exposes). Both seals bind the secret's name and version as associated data, so a file
//! copied to another name or version fails to open. Files are written to a temporary name, synced,
//! then hard-linked into place, which fails if the version exists: a crash mid-write leaves at
//! most a stray temporary file, never a torn version, and two writers never share a version.
//!
//! File format, version 1:
//!
//! ```text
//! "PSST" | 0x01 | created_at: u64 BE unix millis | key nonce (12) | sealed data key (48)
//!        | value nonce (12) | sealed value (len + 16)
//! ```

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Key, Nonce,
};
use async_trait::async_trait;
use zeroize::Zeroizing;

use anyhow::Context;
use serde::Deserialize;

use super::{
    registry::{self, BackendSettings, BackendType, BuildContext, Dev, DevContext, Registered},
    Backend, BackendError, Fetched, Listed, VersionState, Written,
};
use crate::{
    config::DEFAULT_LOCAL_DIR,
    reference::{BackendKind, SecretRef, Selector},
    secret::SecretValue,
};

/// `local:`, in the registry.
pub(crate) const KIND: BackendKind = BackendKind::new(&TYPE);
static TYPE: Registered = Registered(&LocalType);

struct LocalType;

impl BackendType for LocalType {
    fn prefix(&self) -> &'static str {
        "local"
    }

    // Local names become directories: keep them to a portable, traversal-free set.
    fn check_name(&self, name: &str) -> Result<(), &'static str> {
        for segment in name.split('/') {
            if segment.is_empty() {
                return Err("has an empty path segment (leading, trailing or double '/')");
            }
            if segment == "." || segment == ".." {
                return Err("may not contain '.' or '..' segments");
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err("may only use letters, digits, '-', '_', '.' and '/'");
            }
        }
        Ok(())
    }

    // The store's names are file paths: no step outside.
    fn check_list_prefix(&self, prefix: &str) -> Result<(), &'static str> {
        registry::no_dot_segments(prefix)
    }

    fn parse(&self, table: toml::Value) -> Result<Arc<dyn BackendSettings>, String> {
        registry::parse_table::<LocalConfig>(table)
    }

    fn dev(&self, context: &DevContext<'_>) -> Dev {
        Dev::On(Arc::new(LocalConfig {
            dir: context.state_dir.join("store"),
            ttl: context.ttl,
        }))
    }
}

/// The keys of `[[backend]] type = "local"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalConfig {
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_dir() -> PathBuf {
    DEFAULT_LOCAL_DIR.into()
}

fn default_ttl() -> Duration {
    crate::agent::DEFAULT_TTL
}

impl BackendSettings for LocalConfig {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn problems(&self) -> Vec<String> {
        if self.dir.is_absolute() {
            return Vec::new();
        }
        vec![format!(
            "dir must be an absolute path, got {}",
            self.dir.display()
        )]
    }

    fn build(&self, _context: &BuildContext) -> anyhow::Result<Arc<dyn Backend>> {
        let store = LocalStore::open(&self.dir)
            .with_context(|| format!("opening the local store at {}", self.dir.display()))?;
        Ok(Arc::new(store))
    }
}

const MAGIC: &[u8; 4] = b"PSST";
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const SEALED_KEY_LEN: usize = KEY_LEN + TAG_LEN;
const MIN_FILE_LEN: usize = HEADER_LEN + NONCE_LEN + SEALED_KEY_LEN + NONCE_LEN + TAG_LEN;
const MASTER_KEY_FILE: &str = "master.key";
const SECRETS_DIR: &str = "secrets";
const VERSIONS_DIR: &str = "@versions";
const VERSION_SUFFIX: &str = ".psst";

/// The local encrypted store. Cheap to clone: file work runs on the blocking pool with a clone.
#[derive(Clone)]
pub(crate) struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    master: Aes256Gcm,
    // One writer at a time in this process; the hard link guards against other processes.
    write_lock: Mutex<()>,
    reads: AtomicU64,
}

impl LocalStore {
    /// Opens the store at `root`, creating the directory and the master key on first use.
    pub(crate) fn open(root: impl Into<PathBuf>) -> Result<Self, BackendError> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join(SECRETS_DIR))
            .map_err(|e| io_error(&root, "create the store directory", e))?;
        let master = load_or_create_master_key(&root.join(MASTER_KEY_FILE))?;
        Ok(Self {
            inner: Arc::new(Inner {
                master: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&master[..])),
                root,
                write_lock: Mutex::new(()),
                reads: AtomicU64::new(0),
            }),
        })
    }

    /// How many secret versions this store has read from disk.
    #[cfg(test)]
    fn reads(&self) -> u64 {
        self.inner.reads.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn secret_dir(&self, name: &str) -> PathBuf {
        // Names are validated by `SecretRef` (no '..', no empty or '@' segments), so they map to
        // a directory inside `secrets/` and never onto `@versions`.
        self.root.join(SECRETS_DIR).join(name).join(VERSIONS_DIR)
    }

    fn read_version(&self, name: &str, version: Option<u64>) -> Result<Fetched, BackendError> {
        let dir = self.secret_dir(name);
        let version = match version {
            Some(v) => v,
            None => latest_version(&dir)?
                .ok_or_else(|| BackendError::NotFound(format!("secret local:{name} not found")))?,
        };
        let path = dir.join(format!("{version}{VERSION_SUFFIX}"));
        let sealed = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound(format!(
                    "secret local:{name} has no version {version}"
                )))
            }
            Err(e) => return Err(io_error(&path, "read", e)),
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        let (created_at, value) = self.open_sealed(name, version, &sealed)?;
        Ok(Fetched {
            value,
            version_id: version.to_string(),
            stages: Vec::new(),
            created_at: Some(created_at),
            canonical_name: None,
            alias: None,
            aws: None,
        })
    }

    fn seal(
        &self,
        name: &str,
        version: u64,
        created_at: SystemTime,
        value: &SecretValue,
    ) -> Result<Vec<u8>, BackendError> {
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut key_nonce = [0u8; NONCE_LEN];
        let mut value_nonce = [0u8; NONCE_LEN];
        for buf in [&mut data_key[..], &mut key_nonce[..], &mut value_nonce[..]] {
            getrandom::fill(buf).map_err(|e| BackendError::Internal(format!("os rng: {e}")))?;
        }
        let millis = created_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut out = Vec::with_capacity(MIN_FILE_LEN + value.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_V1);
        out.extend_from_slice(&millis.to_be_bytes());
        let header = out.clone();

        let key_aad = aad(b"key", name, version, &header);
        let sealed_key = self
            .master
            .encrypt(
                Nonce::from_slice(&key_nonce),
                Payload {
                    msg: &data_key[..],
                    aad: &key_aad,
                },
            )
            .map_err(|_| BackendError::Internal("sealing the data key failed".into()))?;
        let value_aad = aad(b"value", name, version, &header);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key[..]));
        let sealed_value = cipher
            .encrypt(
                Nonce::from_slice(&value_nonce),
                Payload {
                    msg: value.expose(),
                    aad: &value_aad,
                },
            )
            .map_err(|_| BackendError::Internal("sealing the value failed".into()))?;
        out.extend_from_slice(&key_nonce);
        out.extend_from_slice(&sealed_key);
        out.extend_from_slice(&value_nonce);
        out.extend_from_slice(&sealed_value);
        Ok(out)
    }

    fn open_sealed(
        &self,
        name: &str,
        version: u64,
        sealed: &[u8],
    ) -> Result<(SystemTime, SecretValue), BackendError> {
        let corrupt = |why: &str| {
            BackendError::Corrupt(format!(
                "local:{name} version {version} cannot be opened: {why}"
            ))
        };
        if sealed.len() < MIN_FILE_LEN || &sealed[..4] != MAGIC {
            return Err(corrupt("not a psst file"));
        }
        if sealed[4] != FORMAT_V1 {
            return Err(corrupt("unknown format version"));
        }
        let header = &sealed[..HEADER_LEN];
        let millis = u64::from_be_bytes(sealed[5..HEADER_LEN].try_into().expect("8 bytes"));
        let mut at = HEADER_LEN;
        let mut take = |n: usize| {
            let part = &sealed[at..at + n];
            at += n;
            part
        };
        let key_nonce = take(NONCE_LEN);
        let sealed_key = take(SEALED_KEY_LEN);
        let value_nonce = take(NONCE_LEN);
        let sealed_value = &sealed[at..];

        let data_key = Zeroizing::new(
            self.master
                .decrypt(
                    Nonce::from_slice(key_nonce),
                    Payload {
                        msg: sealed_key,
                        aad: &aad(b"key", name, version, header),
                    },
                )
                .map_err(|_| corrupt("the data key does not authenticate (tampered, moved, or another master key)"))?,
        );
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key[..]));
        let value = cipher
            .decrypt(
                Nonce::from_slice(value_nonce),
                Payload {
                    msg: sealed_value,
                    aad: &aad(b"value", name, version, header),
                },
            )
            .map_err(|_| corrupt("the value does not authenticate (tampered or moved)"))?;
        Ok((
            UNIX_EPOCH + Duration::from_millis(millis),
            SecretValue::new(value),
        ))
    }

    fn write_version(&self, name: &str, value: &SecretValue) -> Result<Written, BackendError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.secret_dir(name);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error(&dir, "create", e))?;
        let mut version = latest_version(&dir)?.unwrap_or(0) + 1;
        let created_at = SystemTime::now();
        loop {
            let sealed = self.seal(name, version, created_at, value)?;
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .permissions(fs::Permissions::from_mode(0o600))
                .tempfile_in(&dir)
                .map_err(|e| io_error(&dir, "create a temporary file in", e))?;
            let mut file = tmp.as_file();
            file.write_all(&sealed)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(tmp.path(), "write", e))?;
            let target = dir.join(format!("{version}{VERSION_SUFFIX}"));
            match fs::hard_link(tmp.path(), &target) {
                Ok(()) => break,
                // Another process wrote this version first: take the next one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => version += 1,
                Err(e) => return Err(io_error(&target, "link", e)),
            }
        }
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&dir, "sync", e))?;
        Ok(Written {
            version_id: version.to_string(),
            created_at: Some(created_at),
        })
    }

    fn list_names(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let base = self.root.join(SECRETS_DIR);
        let mut found = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&dir, "list", e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error(&dir, "list", e))?;
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if entry.file_name() == VERSIONS_DIR {
                    let Some(version) = latest_version(&path)? else {
                        continue;
                    };
                    let name = dir
                        .strip_prefix(&base)
                        .expect("walk stays under base")
                        .to_string_lossy()
                        .into_owned();
                    if name.starts_with(prefix) {
                        let updated_at =
                            fs::metadata(path.join(format!("{version}{VERSION_SUFFIX}")))
                                .and_then(|m| m.modified())
                                .ok();
                        found.push(Listed {
                            name,
                            version_id: version.to_string(),
                            updated_at,
                        });
                    }
                } else {
                    stack.push(path);
                }
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}

#[async_trait]
impl Backend for LocalStore {
    fn kind(&self) -> BackendKind {
        KIND
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError> {
        let version = match reference.selector() {
            None => None,
            Some(Selector::Version(v)) => Some(v.parse::<u64>().map_err(|_| {
                BackendError::InvalidArgument(format!("local versions are numbers, not '{v}'"))
            })?),
            Some(other) => {
                return Err(BackendError::InvalidArgument(format!(
                    "the local store has no {other} selector"
                )))
            }
        };
        let name = reference.name().to_owned();
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.read_version(&name, version)).await
    }

    async fn versions(&self, reference: &SecretRef) -> Result<VersionState, BackendError> {
        let dir = self.inner.secret_dir(reference.name());
        let current = blocking(move || latest_version(&dir)).await?;
        Ok(VersionState {
            current: current.map(|v| v.to_string()),
            pending: None,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let prefix = prefix.to_owned();
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.list_names(&prefix)).await
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        let name = name.to_owned();
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.write_version(&name, &value)).await
    }
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackendError::Internal(format!("store task failed: {e}")))?
}

fn aad(purpose: &[u8], name: &str, version: u64, header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + name.len() + header.len());
    aad.extend_from_slice(b"psst-local/");
    aad.extend_from_slice(purpose);
    aad.push(0);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn latest_version(dir: &Path) -> Result<Option<u64>, BackendError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(dir, "list", e)),
    };
    let mut latest = None;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list", e))?;
        let name = entry.file_name();
        let version = name
            .to_str()
            .and_then(|n| n.strip_suffix(VERSION_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok());
        latest = latest.max(version);
    }
    Ok(latest)
}

fn load_or_create_master_key(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, BackendError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    match fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let mode = fs::metadata(path)
                .map_err(|e| io_error(path, "stat", e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(BackendError::Internal(format!(
                    "master key {} is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
            if bytes.len() != KEY_LEN {
                return Err(BackendError::Corrupt(format!(
                    "master key {} is {} bytes, expected {KEY_LEN}",
                    path.display(),
                    bytes.len()
                )));
            }
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            getrandom::fill(&mut key[..])
                .map_err(|e| BackendError::Internal(format!("os rng: {e}")))?;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io_error(path, "create", e))?;
            file.write_all(&key[..])
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(path, "write", e))?;
            Ok(key)
        }
        Err(e) => Err(io_error(path, "read", e)),
    }
}

/// A failure of the store's files. The path goes to the agent's log only: callers learn what
/// failed (e.g. "no space left on device"), never where the store lives.
fn io_error(path: &Path, action: &str, e: io::Error) -> BackendError {
    tracing::warn!(path = %path.display(), error = %e, "local store: cannot {action}");
    BackendError::Unavailable(format!(
        "the local store cannot {action} a secret's files: {e}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> SecretRef {
        SecretRef::parse(text).unwrap()
    }

    #[tokio::test]
    async fn versions_round_trip_and_nothing_plain_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let w1 = store
            .put("app/db", SecretValue::from_slice(b"first-plaintext"))
            .await
            .unwrap();
        let w2 = store
            .put("app/db", SecretValue::from_slice(b"second-plaintext"))
            .await
            .unwrap();
        assert_eq!((w1.version_id.as_str(), w2.version_id.as_str()), ("1", "2"));

        let current = store.fetch(&r("local:app/db")).await.unwrap();
        assert_eq!(current.value.expose(), b"second-plaintext");
        assert_eq!(current.version_id, "2");
        let first = store.fetch(&r("local:app/db?version=1")).await.unwrap();
        assert_eq!(first.value.expose(), b"first-plaintext");
        assert_eq!(store.reads(), 2);

        for entry in walk(dir.path()) {
            let bytes = fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(9).any(|w| w == b"plaintext"),
                "{} holds plaintext",
                entry.display()
            );
        }
        let key_mode = fs::metadata(dir.path().join(MASTER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn missing_secrets_and_versions_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.fetch(&r("local:nope")).await,
            Err(BackendError::NotFound(_))
        ));
        store
            .put("yes", SecretValue::from_slice(b"v"))
            .await
            .unwrap();
        let err = store.fetch(&r("local:yes?version=7")).await.unwrap_err();
        assert!(
            matches!(&err, BackendError::NotFound(m) if m.contains("no version 7")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn tampered_or_moved_files_do_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store
            .put("a", SecretValue::from_slice(b"value-a"))
            .await
            .unwrap();
        store
            .put("b", SecretValue::from_slice(b"value-b"))
            .await
            .unwrap();
        let file_a = dir.path().join("secrets/a/@versions/1.psst");
        let file_b = dir.path().join("secrets/b/@versions/1.psst");

        // Moving a's file over b's must not make b read as a's value.
        fs::copy(&file_a, &file_b).unwrap();
        let err = store.fetch(&r("local:b")).await.unwrap_err();
        assert!(matches!(err, BackendError::Corrupt(_)), "{err}");
        assert!(!err.to_string().contains("value-a"));

        let mut bytes = fs::read(&file_a).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&file_a, &bytes).unwrap();
        assert!(matches!(
            store.fetch(&r("local:a")).await,
            Err(BackendError::Corrupt(_))
        ));

        fs::write(&file_a, b"short").unwrap();
        assert!(matches!(
            store.fetch(&r("local:a")).await,
            Err(BackendError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn another_master_key_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        LocalStore::open(dir.path())
            .unwrap()
            .put("a", SecretValue::from_slice(b"v"))
            .await
            .unwrap();
        let key = dir.path().join(MASTER_KEY_FILE);
        fs::remove_file(&key).unwrap();
        let reopened = LocalStore::open(dir.path()).unwrap();
        assert!(matches!(
            reopened.fetch(&r("local:a")).await,
            Err(BackendError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn a_world_readable_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        LocalStore::open(dir.path()).unwrap();
        let key = dir.path().join(MASTER_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("readable by others"), "{err}");
    }

    #[tokio::test]
    async fn concurrent_writers_never_share_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let writes = (0..20).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put("race", SecretValue::new(vec![i]))
                    .await
                    .unwrap()
                    .version_id
            })
        });
        let mut versions: Vec<u64> = Vec::new();
        for w in writes {
            versions.push(w.await.unwrap().parse().unwrap());
        }
        versions.sort();
        assert_eq!(versions, (1..=20).collect::<Vec<_>>());
        // A second store on the same directory (another process) continues the sequence.
        let other = LocalStore::open(dir.path()).unwrap();
        let w = other
            .put("race", SecretValue::from_slice(b"x"))
            .await
            .unwrap();
        assert_eq!(w.version_id, "21");
    }

    #[tokio::test]
    async fn a_stray_temporary_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store
            .put("a", SecretValue::from_slice(b"v1"))
            .await
            .unwrap();
        // What a crash between write and link leaves behind.
        fs::write(
            dir.path().join("secrets/a/@versions/.tmp-crash"),
            b"garbage",
        )
        .unwrap();
        let got = store.fetch(&r("local:a")).await.unwrap();
        assert_eq!(
            (got.value.expose(), got.version_id.as_str()),
            (&b"v1"[..], "1")
        );
        let listed = store.list("").await.unwrap();
        assert_eq!(listed.len(), 1);
    }

    #[tokio::test]
    async fn lists_by_prefix_with_current_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        for name in ["demo/a", "demo/b", "demo/b", "demo/sub/c", "other/d"] {
            store
                .put(name, SecretValue::from_slice(b"v"))
                .await
                .unwrap();
        }
        let listed = store.list("demo/").await.unwrap();
        let got: Vec<_> = listed
            .iter()
            .map(|l| (l.name.as_str(), l.version_id.as_str()))
            .collect();
        assert_eq!(got, [("demo/a", "1"), ("demo/b", "2"), ("demo/sub/c", "1")]);
        assert_eq!(store.list("").await.unwrap().len(), 4);
        assert!(store.list("zzz").await.unwrap().is_empty());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
