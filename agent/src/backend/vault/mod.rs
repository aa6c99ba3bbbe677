//! HashiCorp Vault and OpenBao, KV version 2 (`vault:` references).
//!
//! `vault:MOUNT/PATH` names the secret at PATH in the KV v2 engine mounted at MOUNT. Its value is
//! the JSON object of the version's fields (`{"password":"…","user":"…"}`), so `#field` picks
//! one as it does for any JSON value. `?version=N` reads an older version. Change detection reads
//! the metadata (current version) only; listings walk the metadata tree; writes add a version.
//!
//! Calls go through a `CallGuard` as the AWS backends' do: a rate limit, reads retried on
//! transient failures with backoff, writes only when Vault said it did not act (429). The token is found lazily and kept alive in the background (see `auth`).

mod auth;
mod config;
mod http;

pub(crate) use self::config::{VaultBackendConfig, KIND};

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, OnceLock, Weak},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use hyper::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use self::{
    auth::{Auth, Login},
    http::{classify, encode_path, Reply, VaultHttp},
};
use crate::{
    backend::{
        guard::{CallGuard, Limits},
        Backend, BackendError, Fetched, Listed, VersionState, Written,
    },
    reference::{BackendKind, SecretRef, Selector},
    secret::SecretValue,
};

/// Listing stops with an error past this many secrets: name a narrower prefix.
const MAX_LIST_ENTRIES: usize = 1000;
/// … or past this many directories walked.
const MAX_LIST_DIRS: usize = 200;
/// Metadata reads in flight at once while listing.
const LIST_CONCURRENCY: usize = 8;
/// Reads in flight at once for one batch.
const BATCH_CONCURRENCY: usize = 16;
/// How often the renewer looks again when the token needs no renewal.
const IDLE_RENEWAL_CHECK: Duration = Duration::from_secs(300);

/// The settings of the vault backend, resolved from its config and the environment.
#[derive(Debug)]
pub(crate) struct VaultSettings {
    pub address: String,
    pub namespace: Option<String>,
    pub login: Login,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

impl VaultSettings {
    /// The config's keys, with VAULT_* / BAO_* from `env` where the config leaves them unset.
    pub(crate) fn resolve(
        config: &VaultBackendConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let from_env = |names: [&'static str; 2]| {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.is_empty()).map(|v| (*n, v)))
        };
        let address =
            match &config.address {
                Some(address) => address.clone(),
                None => match from_env(["VAULT_ADDR", "BAO_ADDR"]) {
                    Some((name, address)) => {
                        if !(address.starts_with("http://") || address.starts_with("https://")) {
                            return Err(format!(
                                "{name} must be an http:// or https:// URL, got {address}"
                            ));
                        }
                        address
                    }
                    None => return Err(
                        "no Vault address: set `address` in the vault [[backend]], or VAULT_ADDR"
                            .into(),
                    ),
                },
            };
        let login = match (&config.role_id, &config.secret_id_file, &config.token_file) {
            (Some(role_id), Some(secret_id_file), _) => Login::AppRole {
                mount: config.approle_mount.trim_matches('/').to_owned(),
                role_id: role_id.clone(),
                secret_id_file: secret_id_file.clone(),
            },
            (_, _, Some(path)) => Login::TokenFile(path.clone()),
            _ => match from_env(["VAULT_TOKEN", "BAO_TOKEN"]) {
                Some((_, token)) => Login::Token(SecretValue::new(token.into_bytes())),
                None => {
                    return Err(
                        "no way to log in to Vault: set `token_file`, or `role_id` and \
                                `secret_id_file` (AppRole), or VAULT_TOKEN"
                            .into(),
                    )
                }
            },
        };
        let ca_file = config.ca_file.clone().or_else(|| {
            from_env(["VAULT_CACERT", "BAO_CACERT"]).map(|(_, path)| PathBuf::from(path))
        });
        let namespace = config
            .namespace
            .clone()
            .or_else(|| from_env(["VAULT_NAMESPACE", "BAO_NAMESPACE"]).map(|(_, n)| n));
        Ok(Self {
            address,
            namespace,
            login,
            ca_file,
            timeout: config.timeout,
            max_attempts: config.max_attempts,
        })
    }
}

pub(crate) struct VaultBackend {
    inner: Arc<Inner>,
}

struct Inner {
    http: VaultHttp,
    auth: Auth,
    guard: CallGuard,
    renewer: OnceLock<()>,
}

impl VaultBackend {
    /// Loads the TLS roots; makes no network call.
    pub(crate) fn new(settings: VaultSettings) -> Result<Self, String> {
        let http = VaultHttp::new(
            &settings.address,
            settings.namespace.as_deref(),
            settings.ca_file.as_deref(),
            settings.timeout,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                auth: Auth::new(settings.login),
                guard: CallGuard::new(
                    "Vault",
                    Limits {
                        rate_limit: crate::config::DEFAULT_VAULT_RATE_LIMIT,
                        burst: crate::config::DEFAULT_VAULT_RATE_LIMIT,
                        max_wait: crate::config::DEFAULT_AWS_MAX_WAIT,
                        max_attempts: settings.max_attempts,
                    },
                ),
                renewer: OnceLock::new(),
            }),
        })
    }
}

// === impl Inner ===

impl Inner {
    async fn token(self: &Arc<Self>) -> Result<Arc<SecretValue>, BackendError> {
        let token = self.auth.token(&self.http).await?;
        self.renewer.get_or_init(|| {
            tokio::spawn(keep_token_alive(
                Arc::downgrade(self),
                Arc::clone(&self.auth.changed),
            ));
        });
        Ok(token)
    }

    /// One request with the agent's token. A refused AppRole token is replaced by a new login
    /// and the request sent once more. A non-success answer becomes an error through `error`.
    async fn attempt(
        self: &Arc<Self>,
        method: Method,
        path: &str,
        body: Option<&Zeroizing<Vec<u8>>>,
        error: impl Fn(&Reply) -> BackendError,
    ) -> Result<Reply, BackendError> {
        let mut again = true;
        loop {
            let token = self.token().await?;
            let reply = self
                .http
                .send(method.clone(), path, Some(&token), body.cloned())
                .await?;
            if reply.status.is_success() {
                return Ok(reply);
            }
            if reply.status.as_u16() == 403 && again && self.auth.forget(&token).await {
                again = false;
                continue;
            }
            return Err(error(&reply));
        }
    }

    /// A read: retried on transient failures.
    async fn read(
        self: &Arc<Self>,
        path: &str,
        error: impl Fn(&Reply) -> BackendError,
    ) -> Result<Reply, BackendError> {
        self.guard
            .call(|| self.attempt(Method::GET, path, None, &error))
            .await
    }
}

/// Renews the token as its lease runs down, until the backend is dropped.
async fn keep_token_alive(vault: Weak<Inner>, changed: Arc<tokio::sync::Notify>) {
    loop {
        let due = match vault.upgrade() {
            Some(vault) => vault.auth.next_renewal().await,
            None => return,
        };
        let wait = due.map_or(IDLE_RENEWAL_CHECK, |due| {
            due.saturating_duration_since(std::time::Instant::now())
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = changed.notified() => continue,
        }
        match vault.upgrade() {
            Some(vault) => vault.auth.renew(&vault.http).await,
            None => return,
        }
    }
}

/// `MOUNT/PATH` → (mount, path). The reference parser has already refused empty segments.
fn split_name(name: &str) -> Result<(&str, &str), BackendError> {
    match name.split_once('/') {
        Some((mount, path)) if !mount.is_empty() && !path.is_empty() => Ok((mount, path)),
        _ => Err(BackendError::InvalidArgument(format!(
            "vault:{name} must be MOUNT/PATH, e.g. vault:secret/prod/db"
        ))),
    }
}

/// The API path of a KV v2 secret: `{mount}/{area}/{path}` with `area` "data" or "metadata".
fn kv_path(mount: &str, area: &str, path: &str) -> String {
    let mut segments = vec![mount, area];
    segments.extend(path.split('/').filter(|s| !s.is_empty()));
    encode_path(segments)
}

#[derive(Deserialize)]
struct ReadBody<'a> {
    #[serde(borrow)]
    data: ReadData<'a>,
}

#[derive(Deserialize)]
struct ReadData<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    metadata: VersionMeta,
}

#[derive(Deserialize)]
struct VersionMeta {
    version: u64,
    #[serde(default)]
    created_time: String,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

impl VersionMeta {
    /// Why this version cannot be read, if it cannot.
    fn gone(&self) -> Option<&'static str> {
        if self.destroyed {
            Some("destroyed")
        } else if !self.deletion_time.is_empty() {
            Some("deleted")
        } else {
            None
        }
    }
}

#[derive(Deserialize)]
struct MetadataBody {
    data: SecretMetadata,
}

#[derive(Deserialize)]
struct SecretMetadata {
    current_version: u64,
    #[serde(default)]
    updated_time: String,
    #[serde(default)]
    versions: BTreeMap<String, VersionMeta2>,
}

/// A version as the metadata lists it (no version number inside: it is the key).
#[derive(Deserialize)]
struct VersionMeta2 {
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

#[derive(Deserialize)]
struct ListBody {
    data: ListData,
}

#[derive(Deserialize)]
struct ListData {
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct WriteBody {
    data: WriteData,
}

#[derive(Deserialize)]
struct WriteData {
    version: u64,
    #[serde(default)]
    created_time: String,
}

/// A JSON error without serde_json's message, which can quote the text it choked on (a value).
fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

/// A KV v2 read answer → the version's fields as JSON text, and its metadata.
fn parse_read(reference: &SecretRef, body: &[u8]) -> Result<Fetched, BackendError> {
    let read: ReadBody = serde_json::from_slice(body).map_err(|e| {
        BackendError::Internal(format!(
            "unexpected answer reading {reference} (is the mount a KV version 2 engine?): {}",
            json_error(&e)
        ))
    })?;
    let meta = read.data.metadata;
    if let Some(gone) = meta.gone() {
        return Err(BackendError::NotFound(format!(
            "version {} of {reference} was {gone}",
            meta.version
        )));
    }
    let Some(data) = read.data.data else {
        return Err(BackendError::NotFound(format!(
            "version {} of {reference} has no data",
            meta.version
        )));
    };
    Ok(Fetched {
        value: SecretValue::from_slice(data.get().as_bytes()),
        version_id: meta.version.to_string(),
        stages: Vec::new(),
        created_at: timestamp(&meta.created_time),
        canonical_name: None,
        alias: None,
        aws: None,
    })
}

/// A failed KV v2 read. Vault answers 404 for a deleted or destroyed version too, with its
/// metadata in the body: say which.
fn read_error(reference: &SecretRef, reply: &Reply) -> BackendError {
    if reply.status.as_u16() == 404 {
        if let Ok(read) = serde_json::from_slice::<ReadBody>(&reply.body) {
            let meta = read.data.metadata;
            if let Some(gone) = meta.gone() {
                return BackendError::NotFound(format!(
                    "version {} of {reference} was {gone}",
                    meta.version
                ));
            }
        }
    }
    classify(reply.status, &reply.body, &format!("{reference}"))
}

/// A value the agent writes must be a JSON object: KV v2 stores fields, not bare text.
fn kv_write_body(name: &str, value: &SecretValue) -> Result<Zeroizing<Vec<u8>>, BackendError> {
    let bytes = value.expose();
    let is_object = bytes.trim_ascii_start().first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
    if !is_object {
        return Err(BackendError::InvalidArgument(format!(
            "vault:{name} is a KV version 2 secret, whose value is a JSON object of fields, \
             e.g. {{\"password\":\"…\"}}; the value given is not one"
        )));
    }
    let mut body = Zeroizing::new(Vec::with_capacity(bytes.len() + 10));
    body.extend_from_slice(b"{\"data\":");
    body.extend_from_slice(bytes);
    body.push(b'}');
    Ok(body)
}

#[async_trait]
impl Backend for VaultBackend {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn circuits(&self) -> Vec<(&'static str, crate::backend::guard::CircuitState)> {
        vec![(self.inner.guard.service(), self.inner.guard.circuit_state())]
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError> {
        let (mount, path) = split_name(reference.name())?;
        let mut api_path = kv_path(mount, "data", path);
        if let Some(Selector::Version(version)) = reference.selector() {
            api_path.push_str("?version=");
            api_path.push_str(version);
        }
        let reply = self
            .inner
            .read(&api_path, |reply| read_error(reference, reply))
            .await?;
        parse_read(reference, &reply.body)
    }

    /// KV v2 has no batch read: the secrets are read side by side, a few at a time.
    async fn fetch_many(&self, references: &[SecretRef]) -> Vec<Result<Fetched, BackendError>> {
        // At most BATCH_CONCURRENCY in flight, a new read starting as each one ends; in order.
        let reads: Vec<_> = references.iter().map(|r| self.fetch(r)).collect();
        futures::stream::iter(reads)
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await
    }

    async fn versions(&self, reference: &SecretRef) -> Result<VersionState, BackendError> {
        let (mount, path) = split_name(reference.name())?;
        let what = format!("vault:{}", reference.name());
        let reply = match self
            .inner
            .read(&kv_path(mount, "metadata", path), |reply| {
                classify(reply.status, &reply.body, &what)
            })
            .await
        {
            Ok(reply) => reply,
            Err(BackendError::NotFound(_)) => return Ok(VersionState::default()),
            Err(e) => return Err(e),
        };
        let (current, _) = current_version(&what, &reply.body)?;
        Ok(VersionState {
            current,
            pending: None,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let (mount, rest) = prefix.split_once('/').unwrap_or((prefix, ""));
        if mount.is_empty() {
            return Err(BackendError::InvalidArgument(
                "a vault listing names its mount: vault:MOUNT/ or vault:MOUNT/PREFIX".into(),
            ));
        }
        let names = self.walk(mount, rest).await?;
        let listed: Vec<Option<Listed>> = futures::stream::iter(names)
            .map(|path| async move {
                let name = format!("{mount}/{path}");
                let what = format!("vault:{name}");
                let reply = match self
                    .inner
                    .read(&kv_path(mount, "metadata", &path), |reply| {
                        classify(reply.status, &reply.body, &what)
                    })
                    .await
                {
                    Ok(reply) => reply,
                    // Deleted between the listing and now.
                    Err(BackendError::NotFound(_)) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let (current, updated_at) = current_version(&what, &reply.body)?;
                Ok(current.map(|version_id| Listed {
                    name,
                    version_id,
                    updated_at,
                }))
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(listed.into_iter().flatten().collect())
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        let (mount, path) = split_name(name)?;
        let body = kv_write_body(name, &value)?;
        drop(value);
        let what = format!("vault:{name}");
        let api_path = kv_path(mount, "data", path);
        let error = |reply: &Reply| classify(reply.status, &reply.body, &what);
        // Retried only when Vault said it did not act (429): another attempt after a timeout
        // could add a second version.
        let reply = self
            .inner
            .guard
            .call_write(|| {
                self.inner
                    .attempt(Method::POST, &api_path, Some(&body), &error)
            })
            .await?;
        let written: WriteBody = serde_json::from_slice(&reply.body).map_err(|e| {
            BackendError::Internal(format!(
                "unexpected answer writing {what}: {}",
                json_error(&e)
            ))
        })?;
        Ok(Written {
            version_id: written.data.version.to_string(),
            created_at: timestamp(&written.data.created_time),
        })
    }
}

impl VaultBackend {
    /// The paths (within `mount`) of the secrets whose path starts with `prefix`, walking down
    /// from the directory that holds the prefix.
    async fn walk(&self, mount: &str, prefix: &str) -> Result<Vec<String>, BackendError> {
        let start = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let mut dirs = vec![start.to_owned()];
        let mut walked = 0;
        let mut found = Vec::new();
        let too_many = || {
            BackendError::InvalidArgument(format!(
                "vault:{mount}/{prefix} holds too many secrets to list (over {MAX_LIST_ENTRIES} \
                 secrets or {MAX_LIST_DIRS} directories): list a narrower prefix"
            ))
        };
        while let Some(dir) = dirs.pop() {
            walked += 1;
            if walked > MAX_LIST_DIRS {
                return Err(too_many());
            }
            let what = format!("the listing of vault:{mount}/{dir}");
            let mut api_path = kv_path(mount, "metadata", &dir);
            api_path.push_str("/?list=true");
            let keys = match self
                .inner
                .read(&api_path, |reply| {
                    classify(reply.status, &reply.body, &what)
                })
                .await
            {
                Ok(reply) => {
                    serde_json::from_slice::<ListBody>(&reply.body)
                        .map_err(|e| {
                            BackendError::Internal(format!(
                                "unexpected answer to {what}: {}",
                                json_error(&e)
                            ))
                        })?
                        .data
                        .keys
                }
                // Vault answers 404 for an empty directory.
                Err(BackendError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e),
            };
            for key in keys {
                let path = format!("{dir}{key}");
                if key.ends_with('/') {
                    if path.starts_with(prefix) || prefix.starts_with(&path) {
                        dirs.push(path);
                    }
                } else if path.starts_with(prefix) {
                    found.push(path);
                    if found.len() > MAX_LIST_ENTRIES {
                        return Err(too_many());
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

/// The current version of a secret from its metadata (None when it is deleted or destroyed),
/// and when the secret was last updated.
fn current_version(
    what: &str,
    body: &[u8],
) -> Result<(Option<String>, Option<SystemTime>), BackendError> {
    let metadata: MetadataBody = serde_json::from_slice(body).map_err(|e| {
        BackendError::Internal(format!("unexpected metadata of {what}: {}", json_error(&e)))
    })?;
    let metadata = metadata.data;
    let current = metadata.current_version.to_string();
    let readable = metadata.current_version > 0
        && metadata
            .versions
            .get(&current)
            .is_none_or(|v| v.deletion_time.is_empty() && !v.destroyed);
    Ok((
        readable.then_some(current),
        timestamp(&metadata.updated_time),
    ))
}

#[cfg(test)]
mod tests;
