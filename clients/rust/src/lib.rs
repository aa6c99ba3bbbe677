//! The Rust client of the psst agent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), psst_client::Error> {
//! let mut psst = psst_client::Client::connect_default().await?;
//! let secret = psst.get("sm:prod/db#password").await?;
//! let password: &[u8] = secret.value();
//! # Ok(()) }
//! ```
//!
//! The socket is `$PSST_SOCKET`, else `/run/psst/psst.sock`. Connecting retries for a few seconds
//! while the agent starts. Errors keep the gRPC code: see [`ErrorKind`].
//!
//! Before anything is sent, the client checks who serves the socket: the server's uid, from the
//! kernel (`SO_PEERCRED`), must be the expected one — the socket file's owner unless
//! [`ConnectOptions::expected_server_uid`] (or `$PSST_EXPECTED_UID`) names another. A process
//! that took the socket's place (a stale path re-bound by another user, a proxy run by someone
//! else) gets no request, so no value written with `put` reaches it.
#![forbid(unsafe_code)]

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use hyper_util::rt::TokioIo;
use psst_proto::v1::{self as pb, admin_client::AdminClient, secrets_client::SecretsClient};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use zeroize::Zeroizing;

pub use psst_proto::v1 as proto;
pub use tonic::Code;
/// The gRPC health types `health()` returns.
pub mod proto_health {
    pub use tonic_health::pb::health_check_response::ServingStatus;
}

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/psst/psst.sock";
/// The environment variable naming the socket.
pub const SOCKET_ENV: &str = "PSST_SOCKET";
/// How long `connect` keeps retrying while the agent is not up yet.
pub const DEFAULT_STARTUP_WAIT: Duration = Duration::from_secs(5);
/// The environment variable naming the uid the agent must run as (see [`ConnectOptions`]).
pub const EXPECTED_UID_ENV: &str = "PSST_EXPECTED_UID";

/// How to reach the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    pub socket: PathBuf,
    /// How long to keep retrying while nothing listens on the socket yet.
    pub startup_wait: Duration,
    /// The uid the server must run as; `None`: the socket file's owner.
    pub expected_server_uid: Option<u32>,
}

impl ConnectOptions {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            startup_wait: DEFAULT_STARTUP_WAIT,
            expected_server_uid: None,
        }
    }

    /// `$PSST_SOCKET` and `$PSST_EXPECTED_UID`, else the defaults. A `$PSST_EXPECTED_UID` that
    /// is not a number is an error rather than no check.
    pub fn from_env() -> Result<Self, Error> {
        let mut options = Self::new(socket_path());
        if let Some(text) = std::env::var_os(EXPECTED_UID_ENV).filter(|v| !v.is_empty()) {
            let uid = text
                .to_str()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| {
                    Error::new(
                        Code::InvalidArgument,
                        format!(
                            "${EXPECTED_UID_ENV} is not a uid: {}",
                            text.to_string_lossy()
                        ),
                    )
                })?;
            options.expected_server_uid = Some(uid);
        }
        Ok(options)
    }
}

/// The server on the socket is not who it should be: nothing was sent to it.
#[derive(Debug)]
struct UnexpectedServer(String);

impl fmt::Display for UnexpectedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnexpectedServer {}

/// Connects to `socket` and checks the server's uid before anything is sent on the stream.
async fn connect_checked(socket: &Path, expected: Option<u32>) -> std::io::Result<UnixStream> {
    use std::os::unix::fs::MetadataExt;
    let stream = UnixStream::connect(socket).await?;
    let server_uid = stream.peer_cred()?.uid();
    let (expected, why) = match expected {
        Some(uid) => (uid, "as configured"),
        // Read after connecting: the owner of the socket that answered, not of an earlier one.
        None => (std::fs::metadata(socket)?.uid(), "the socket file's owner"),
    };
    if server_uid != expected {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            UnexpectedServer(format!(
                "refusing to talk to the server on {}: it runs as uid {server_uid}, but the agent \
                 must run as uid {expected} ({why}; set --expect-uid or ${EXPECTED_UID_ENV} if \
                 the agent runs as another user)",
                socket.display()
            )),
        ));
    }
    Ok(stream)
}

/// The socket path from `$PSST_SOCKET`, else the default.
pub fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// A connection to the agent. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    secrets: SecretsClient<Channel>,
    admin: AdminClient<Channel>,
    health: HealthClient<Channel>,
}

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The reference or request is malformed.
    InvalidArgument,
    /// The policy does not grant this to the calling process.
    PermissionDenied,
    NotFound,
    /// The agent (or its backend) cannot be reached; worth retrying.
    Unavailable,
    /// The agent could not identify the calling process.
    Unauthenticated,
    /// The agent cannot do it as configured (backend not enabled, its own credentials refused).
    FailedPrecondition,
    ResourceExhausted,
    Other,
}

/// A failed call: the gRPC code and the agent's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: Code,
    message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn kind(&self) -> ErrorKind {
        match self.code {
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::NotFound => ErrorKind::NotFound,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::FailedPrecondition => ErrorKind::FailedPrecondition,
            Code::ResourceExhausted => ErrorKind::ResourceExhausted,
            _ => ErrorKind::Other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", code_name(self.code), self.message)
    }
}

impl std::error::Error for Error {}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::new(status.code(), status.message())
    }
}

/// The gRPC code in the form grpcurl and the docs print it: `NOT_FOUND`, `PERMISSION_DENIED`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A secret as the agent served it. The value is wiped from memory when this is dropped, and
/// `Debug` does not print it.
pub struct Secret {
    pub reference: String,
    value: Zeroizing<Vec<u8>>,
    pub version_id: String,
    pub stages: Vec<String>,
    pub created_at: Option<SystemTime>,
    pub cache: CacheInfo,
}

/// How the agent's cache served a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheInfo {
    pub hit: bool,
    pub stale: bool,
    pub fetched_at: Option<SystemTime>,
    pub expires_at: Option<SystemTime>,
}

impl Secret {
    /// A secret with no stages, creation time or cache information: for tests and fakes of
    /// code that takes secrets.
    pub fn new(
        reference: impl Into<String>,
        value: Vec<u8>,
        version_id: impl Into<String>,
    ) -> Self {
        Self {
            reference: reference.into(),
            value: Zeroizing::new(value),
            version_id: version_id.into(),
            stages: Vec::new(),
            created_at: None,
            cache: CacheInfo::default(),
        }
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    pub fn into_value(self) -> Zeroizing<Vec<u8>> {
        self.value
    }

    fn from_proto(s: pb::Secret) -> Self {
        let cache = s.cache.unwrap_or_default();
        Self {
            value: Zeroizing::new(s.value.to_vec()),
            reference: s.reference,
            version_id: s.version_id,
            stages: s.stages,
            created_at: s.created_at.and_then(time),
            cache: CacheInfo {
                hit: cache.hit,
                stale: cache.stale,
                fetched_at: cache.fetched_at.and_then(time),
                expires_at: cache.expires_at.and_then(time),
            },
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("reference", &self.reference)
            .field(
                "value",
                &format_args!("<redacted {} bytes>", self.value.len()),
            )
            .field("version_id", &self.version_id)
            .field("stages", &self.stages)
            .field("cache", &self.cache)
            .finish()
    }
}

/// A listed secret: metadata only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMetadata {
    pub reference: String,
    pub version_id: String,
    pub updated_at: Option<SystemTime>,
}

/// The version a `put` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The new version as a reference, e.g. `local:demo/db?version=2`.
    pub reference: String,
    pub version_id: String,
    pub created_at: Option<SystemTime>,
}

fn time(t: prost_types::Timestamp) -> Option<SystemTime> {
    SystemTime::try_from(t).ok()
}

impl Client {
    /// Connects to `$PSST_SOCKET`, else the default socket, checking the server's uid against
    /// `$PSST_EXPECTED_UID`, else the socket's owner.
    pub async fn connect_default() -> Result<Self, Error> {
        Self::connect_with(&ConnectOptions::from_env()?).await
    }

    /// Connects to the agent's socket, retrying for [`DEFAULT_STARTUP_WAIT`] while it is not
    /// there yet.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, Error> {
        Self::connect_with_wait(socket, DEFAULT_STARTUP_WAIT).await
    }

    pub async fn connect_with_wait(
        socket: impl AsRef<Path>,
        wait: Duration,
    ) -> Result<Self, Error> {
        let mut options = ConnectOptions::new(socket.as_ref());
        options.startup_wait = wait;
        Self::connect_with(&options).await
    }

    pub async fn connect_with(options: &ConnectOptions) -> Result<Self, Error> {
        let deadline = Instant::now() + options.startup_wait;
        let mut delay = Duration::from_millis(20);
        loop {
            match Self::connect_once(&options.socket, options.expected_server_uid).await {
                Ok(client) => return Ok(client),
                // Only an agent that is not there yet is waited for; the wrong server is not.
                Err(e)
                    if e.kind() == ErrorKind::Unavailable && Instant::now() + delay < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect_once(socket: &Path, expected_uid: Option<u32>) -> Result<Self, Error> {
        let path = socket.to_owned();
        // The URI is required by the API but unused: the connector below dials the socket.
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        connect_checked(&path, expected_uid).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| {
                if let Some(unexpected) = find_source::<UnexpectedServer>(&e) {
                    return Error::new(Code::FailedPrecondition, unexpected.to_string());
                }
                Error::new(
                    Code::Unavailable,
                    format!(
                        "cannot connect to the psst agent at {}: {}",
                        socket.display(),
                        source_chain(&e)
                    ),
                )
            })?;
        Ok(Self {
            secrets: SecretsClient::new(channel.clone()),
            admin: AdminClient::new(channel.clone()),
            health: HealthClient::new(channel.clone()),
            channel,
        })
    }

    /// The connection itself, for calls the typed methods do not cover (the CLI's `psst call`
    /// sends any method the agent serves through it).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub async fn get(&mut self, reference: &str) -> Result<Secret, Error> {
        let secret = self
            .secrets
            .get_secret(pb::GetSecretRequest {
                reference: reference.to_owned(),
            })
            .await?
            .into_inner();
        Ok(Secret::from_proto(secret))
    }

    /// One result per reference, in order. The outer error is for the call as a whole.
    pub async fn batch_get<S: AsRef<str>>(
        &mut self,
        references: &[S],
    ) -> Result<Vec<Result<Secret, Error>>, Error> {
        let response = self
            .secrets
            .batch_get_secrets(pb::BatchGetSecretsRequest {
                references: references.iter().map(|r| r.as_ref().to_owned()).collect(),
            })
            .await?
            .into_inner();
        Ok(response
            .results
            .into_iter()
            .map(|r| match r.result {
                Some(pb::batch_get_result::Result::Secret(s)) => Ok(Secret::from_proto(s)),
                Some(pb::batch_get_result::Result::Error(e)) => {
                    Err(Error::new(Code::from(e.code), e.message))
                }
                None => Err(Error::new(
                    Code::Internal,
                    "the agent sent an empty batch result",
                )),
            })
            .collect())
    }

    pub async fn list(&mut self, prefix: &str) -> Result<Vec<SecretMetadata>, Error> {
        let response = self
            .secrets
            .list_secrets(pb::ListSecretsRequest {
                prefix: prefix.to_owned(),
            })
            .await?
            .into_inner();
        Ok(response
            .secrets
            .into_iter()
            .map(|m| SecretMetadata {
                reference: m.reference,
                version_id: m.version_id,
                updated_at: m.updated_at.and_then(time),
            })
            .collect())
    }

    pub async fn put(&mut self, reference: &str, value: &[u8]) -> Result<Written, Error> {
        let response = self
            .secrets
            .put_secret(pb::PutSecretRequest {
                reference: reference.to_owned(),
                value: bytes::Bytes::copy_from_slice(value),
            })
            .await?
            .into_inner();
        Ok(Written {
            reference: response.reference,
            version_id: response.version_id,
            created_at: response.created_at.and_then(time),
        })
    }

    pub async fn whoami(&mut self) -> Result<pb::WhoAmIResponse, Error> {
        Ok(self
            .secrets
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner())
    }

    /// Follows secrets: each reference's current secret first, then one event per change. The
    /// returned [`Watch`] reconnects by itself when the agent restarts (or the stream breaks)
    /// and resumes from the versions it has delivered, so no version is delivered twice.
    pub fn watch<S: AsRef<str>>(&self, references: &[S]) -> Watch {
        Watch {
            client: self.clone(),
            references: references.iter().map(|r| r.as_ref().to_owned()).collect(),
            known: std::collections::HashMap::new(),
            stream: None,
            ready: std::collections::VecDeque::new(),
            failed: None,
            retry_for: DEFAULT_STARTUP_WAIT,
        }
    }

    /// Rotates a secret (see `RotateSecret`): a generated value becomes the current version.
    pub async fn rotate(
        &mut self,
        reference: &str,
        generator: Option<pb::GeneratorOptions>,
        json_key: Option<&str>,
    ) -> Result<pb::RotateSecretResponse, Error> {
        Ok(self
            .secrets
            .rotate_secret(pb::RotateSecretRequest {
                reference: reference.to_owned(),
                generator,
                json_key: json_key.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner())
    }

    /// A random value from the agent's CSPRNG, generated as `options` say. Nothing is stored.
    pub async fn generate(
        &mut self,
        options: pb::GeneratorOptions,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let response = self
            .secrets
            .generate_password(pb::GeneratePasswordRequest {
                options: Some(options),
            })
            .await?
            .into_inner();
        Ok(Zeroizing::new(response.value.to_vec()))
    }

    /// Admin: the agent's counters.
    pub async fn stats(&mut self) -> Result<pb::StatsResponse, Error> {
        Ok(self.admin.stats(pb::StatsRequest {}).await?.into_inner())
    }

    /// Admin: drops cached values of one reference (`prefix` empty) or under a prefix.
    pub async fn invalidate(&mut self, reference: &str, prefix: &str) -> Result<u64, Error> {
        Ok(self
            .admin
            .invalidate_cache(pb::InvalidateCacheRequest {
                reference: reference.to_owned(),
                prefix: prefix.to_owned(),
            })
            .await?
            .into_inner()
            .invalidated)
    }

    /// Admin: reloads the agent's policy file; returns the number of rules now in force.
    pub async fn reload_policy(&mut self) -> Result<u32, Error> {
        Ok(self
            .admin
            .reload_policy(pb::ReloadPolicyRequest {})
            .await?
            .into_inner()
            .rules)
    }

    /// The agent's gRPC health: `Serving` when it answers requests.
    pub async fn health(&mut self) -> Result<ServingStatus, Error> {
        let response = self
            .health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?
            .into_inner();
        Ok(response.status())
    }
}

/// What a [`Watch`] yields.
#[derive(Debug)]
pub struct WatchEvent {
    pub reference: String,
    pub kind: pb::watch_event::Kind,
    /// For `Current` and `NewVersion`.
    pub secret: Option<Secret>,
    pub previous_version_id: String,
    pub pending_version_id: String,
}

/// A watch that survives agent restarts: see [`Client::watch`].
pub struct Watch {
    client: Client,
    references: Vec<String>,
    // Reference → the version id last delivered: sent on reconnect so nothing repeats.
    known: std::collections::HashMap<String, String>,
    stream: Option<tonic::Streaming<pb::WatchEvent>>,
    // Events already received and coalesced, not yet handed out.
    ready: std::collections::VecDeque<pb::WatchEvent>,
    // An error met while draining, handed out after the events before it.
    failed: Option<Error>,
    retry_for: Duration,
}

impl Watch {
    /// The next event. Errors other than UNAVAILABLE (denied, not found, invalid) end the
    /// watch; UNAVAILABLE (the agent restarting) is retried for a while, then returned.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, Error>> {
        if let Some(event) = self.ready.pop_front() {
            return Some(Ok(self.deliver(event)));
        }
        if let Some(error) = self.failed.take() {
            return Some(Err(error));
        }
        let deadline_after_failure = self.retry_for;
        let mut failing_since: Option<Instant> = None;
        let mut delay = Duration::from_millis(50);
        loop {
            if self.stream.is_none() {
                let request = pb::WatchSecretsRequest {
                    references: self.references.clone(),
                    known_versions: self.known.clone(),
                };
                match self.client.secrets.watch_secrets(request).await {
                    Ok(response) => self.stream = Some(response.into_inner()),
                    Err(status) => {
                        let error = Error::from(status);
                        if error.kind() != ErrorKind::Unavailable {
                            return Some(Err(error));
                        }
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > deadline_after_failure {
                            return Some(Err(error));
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let stream = self.stream.as_mut().expect("connected above");
            match stream.message().await {
                Ok(Some(event)) => {
                    // Whatever else has already arrived is folded in: a reader that fell behind
                    // gets the newest version, not every version in between.
                    let mut batch = vec![event];
                    loop {
                        match futures_util::FutureExt::now_or_never(stream.message()) {
                            Some(Ok(Some(more))) => batch.push(more),
                            Some(Ok(None)) => {
                                self.stream = None;
                                break;
                            }
                            Some(Err(status)) => {
                                self.stream = None;
                                let error = Error::from(status);
                                if !is_broken_connection(&error) {
                                    self.failed = Some(error);
                                }
                                break;
                            }
                            None => break,
                        }
                    }
                    self.ready.extend(coalesce(batch));
                    let first = self.ready.pop_front().expect("at least one event");
                    return Some(Ok(self.deliver(first)));
                }
                Ok(None) => self.stream = None,
                Err(status) => {
                    self.stream = None;
                    let error = Error::from(status);
                    if !is_broken_connection(&error) {
                        return Some(Err(error));
                    }
                }
            }
        }
    }

    fn deliver(&mut self, event: pb::WatchEvent) -> WatchEvent {
        if let Some(secret) = &event.secret {
            self.known
                .insert(event.reference.clone(), secret.version_id.clone());
        }
        // Deleted: a secret created again while disconnected comes back as CURRENT.
        if event.kind() == pb::watch_event::Kind::Deleted {
            self.known.remove(&event.reference);
        }
        WatchEvent {
            kind: event.kind(),
            reference: event.reference,
            secret: event.secret.map(Secret::from_proto),
            previous_version_id: event.previous_version_id,
            pending_version_id: event.pending_version_id,
        }
    }
}

/// A broken connection (the agent restarting) shows as UNAVAILABLE, or as UNKNOWN, INTERNAL or
/// CANCELLED when the stream is reset: reconnect and resume.
fn is_broken_connection(error: &Error) -> bool {
    matches!(
        error.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

/// Folds events that arrived together: a later version of a reference replaces that reference's
/// latest undelivered event when both carry a version (keeping the earlier one's previous
/// version: what the reader last had). It never jumps over a DELETED or PENDING_VERSION event,
/// so the reader sees them in order.
fn coalesce(batch: Vec<pb::WatchEvent>) -> Vec<pb::WatchEvent> {
    use pb::watch_event::Kind;
    let carries_value = |e: &pb::WatchEvent| matches!(e.kind(), Kind::Current | Kind::NewVersion);
    let mut out: Vec<pb::WatchEvent> = Vec::with_capacity(batch.len());
    for mut event in batch {
        let latest = out.iter().rposition(|o| o.reference == event.reference);
        match latest {
            Some(i) if carries_value(&out[i]) && carries_value(&event) => {
                event.previous_version_id = std::mem::take(&mut out[i].previous_version_id);
                if out[i].kind() == Kind::Current {
                    event.set_kind(Kind::Current);
                }
                out[i] = event;
            }
            _ => out.push(event),
        }
    }
    out
}

fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(e);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        // An io::Error hides its custom payload from `source()`.
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<T>())
        {
            return Some(inner);
        }
        current = error.source();
    }
    None
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print_their_value() {
        let secret = Secret::from_proto(pb::Secret {
            reference: "local:a".into(),
            value: bytes::Bytes::from_static(b"topsecret"),
            ..Default::default()
        });
        let printed = format!("{secret:?}");
        assert!(!printed.contains("topsecret"), "{printed}");
        assert!(printed.contains("<redacted 9 bytes>"));
        assert_eq!(secret.value_str(), Some("topsecret"));
    }

    #[test]
    fn errors_keep_their_code() {
        let e = Error::from(tonic::Status::permission_denied("no"));
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "PERMISSION_DENIED: no");
    }

    fn event(
        reference: &str,
        kind: pb::watch_event::Kind,
        version: &str,
        previous: &str,
    ) -> pb::WatchEvent {
        pb::WatchEvent {
            reference: reference.into(),
            kind: kind as i32,
            secret: (!version.is_empty()).then(|| pb::Secret {
                version_id: version.into(),
                ..Default::default()
            }),
            previous_version_id: previous.into(),
            ..Default::default()
        }
    }

    #[test]
    fn folding_keeps_the_newest_version_and_the_order_of_deletions() {
        use pb::watch_event::Kind::*;
        let folded = coalesce(vec![
            event("a", NewVersion, "2", "1"),
            event("b", Current, "7", ""),
            event("a", NewVersion, "3", "2"),
            event("a", NewVersion, "4", "3"),
        ]);
        let got: Vec<_> = folded
            .iter()
            .map(|e| {
                (
                    e.reference.as_str(),
                    e.kind(),
                    e.secret.as_ref().unwrap().version_id.as_str(),
                    e.previous_version_id.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("a", NewVersion, "4", "1"), ("b", Current, "7", "")]);

        // A version after a deletion is not folded over it.
        let folded = coalesce(vec![
            event("a", Current, "1", ""),
            event("a", Deleted, "", ""),
            event("a", NewVersion, "2", ""),
        ]);
        let kinds: Vec<_> = folded.iter().map(|e| e.kind()).collect();
        assert_eq!(kinds, [Current, Deleted, NewVersion]);
    }

    #[tokio::test]
    async fn connecting_to_nothing_is_unavailable_after_the_wait() {
        let dir = std::env::temp_dir().join(format!("psst-client-test-{}", std::process::id()));
        let started = Instant::now();
        let err = Client::connect_with_wait(dir.join("none.sock"), Duration::from_millis(200))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("none.sock"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
