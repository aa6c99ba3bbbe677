//! The Rust client of the psst agent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), psst_client::Error> {
//! let psst = psst_client::Client::connect_default().await?;
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
#![warn(missing_docs, unreachable_pub)]

mod deadline;
mod grpc;
mod source;
mod watch;

pub use source::{Source, SourceStatus};

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub use watch::{Watch, WatchEvent, MAX_RECONNECT_DELAY};

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use hyper_util::rt::TokioIo;
use psst_proto::v1::{self as pb, secrets_client::SecretsClient};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
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
/// How long one call may take, retries included, unless [`ConnectOptions::call_timeout`] says
/// otherwise. Watches are not calls: they stay open.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The agent's Unix socket.
    pub socket: PathBuf,
    /// How long to keep retrying while nothing listens on the socket yet.
    pub startup_wait: Duration,
    /// The uid the server must run as; `None`: the socket file's owner.
    pub expected_server_uid: Option<u32>,
    /// The deadline of each unary call.
    pub call_timeout: Duration,
}

impl ConnectOptions {
    /// Options for the agent at `socket`, with the default waits and the socket owner as the expected server.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            startup_wait: DEFAULT_STARTUP_WAIT,
            expected_server_uid: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
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

/// A connection to the agent. Cheap to clone: clones share one connection, and every method
/// takes `&self`, so one client (or its clones) serves any number of tasks.
///
/// Unary calls go over one HTTP/2 connection with gRPC's framing done by the client (`grpc.rs`);
/// watches go through a tonic [`Channel`] that connects when first used, with the same check of
/// the server's uid.
#[derive(Clone)]
pub struct Client {
    connection: Arc<grpc::Connection>,
    channel: Channel,
    call_timeout: Duration,
    secrets: SecretsClient<Channel>,
}

/// The unary methods, as `grpc.rs` sends them: the URI's authority is unused on the socket.
mod method {
    pub(crate) const GET_SECRET: &str = "http://localhost/psst.v1.Secrets/GetSecret";
    pub(crate) const BATCH_GET_SECRETS: &str = "http://localhost/psst.v1.Secrets/BatchGetSecrets";
    pub(crate) const LIST_SECRETS: &str = "http://localhost/psst.v1.Secrets/ListSecrets";
    pub(crate) const PUT_SECRET: &str = "http://localhost/psst.v1.Secrets/PutSecret";
    pub(crate) const WHO_AM_I: &str = "http://localhost/psst.v1.Secrets/WhoAmI";
    pub(crate) const ROTATE_SECRET: &str = "http://localhost/psst.v1.Secrets/RotateSecret";
    pub(crate) const GENERATE_PASSWORD: &str = "http://localhost/psst.v1.Secrets/GeneratePassword";
    pub(crate) const STATS: &str = "http://localhost/psst.v1.Admin/Stats";
    pub(crate) const INVALIDATE_CACHE: &str = "http://localhost/psst.v1.Admin/InvalidateCache";
    pub(crate) const RELOAD_POLICY: &str = "http://localhost/psst.v1.Admin/ReloadPolicy";
    pub(crate) const HEALTH_CHECK: &str = "http://localhost/grpc.health.v1.Health/Check";
}

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The reference or request is malformed.
    InvalidArgument,
    /// The policy does not grant this to the calling process.
    PermissionDenied,
    /// The secret (or that version of it) does not exist.
    NotFound,
    /// The agent (or its backend) cannot be reached; worth retrying.
    Unavailable,
    /// The agent could not identify the calling process.
    Unauthenticated,
    /// The agent cannot do it as configured (backend not enabled, its own credentials refused).
    FailedPrecondition,
    /// A limit of the agent was reached (this caller's share of connections, requests or bytes); retry later.
    ResourceExhausted,
    /// Any other failure; `Error::code` has the gRPC code.
    Other,
}

/// A failed call: the gRPC code and the agent's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: Code,
    message: String,
}

impl Error {
    /// An error with this gRPC code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// What went wrong, as the agent (or the client) said it; never contains a value.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What kind of failure this is, from the code.
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
    /// The reference as the agent resolved it.
    pub reference: String,
    value: Zeroizing<Vec<u8>>,
    /// The version served.
    pub version_id: String,
    /// The backend's stages or labels on that version (e.g. `AWSCURRENT`).
    pub stages: Vec<String>,
    /// When the version was created, where the backend says.
    pub created_at: Option<SystemTime>,
    /// How the agent's cache served it.
    pub cache: CacheInfo,
}

/// How the agent's cache served a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// Served from the cache without a backend call.
    pub hit: bool,
    /// Served past its TTL because the backend was unreachable.
    pub stale: bool,
    /// When the agent read the value from its backend.
    pub fetched_at: Option<SystemTime>,
    /// When the cached value's TTL ends.
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

    /// The value's bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// The value, taking it out of the secret (still wiped when dropped).
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
    /// The secret's reference.
    pub reference: String,
    /// Its current version.
    pub version_id: String,
    /// When it last changed, where the backend says.
    pub updated_at: Option<SystemTime>,
}

/// What a `rotate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// The new current version as a reference with a version selector.
    pub reference: String,
    /// The new current version.
    pub version_id: String,
    /// The version that was current before.
    pub previous_version_id: String,
    /// The backend runs the rotation itself (a Secrets Manager rotation Lambda): the new version
    /// appears when it finishes, and watchers see it then.
    pub delegated: bool,
}

/// The version a `put` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The new version as a reference, e.g. `local:demo/db?version=2`.
    pub reference: String,
    /// The version's id.
    pub version_id: String,
    /// When the version was created, where the backend says.
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

    /// `connect`, retrying for `wait` instead of the default.
    pub async fn connect_with_wait(
        socket: impl AsRef<Path>,
        wait: Duration,
    ) -> Result<Self, Error> {
        let mut options = ConnectOptions::new(socket.as_ref());
        options.startup_wait = wait;
        Self::connect_with(&options).await
    }

    /// Connects as `options` say: the server's uid is checked before anything is sent.
    pub async fn connect_with(options: &ConnectOptions) -> Result<Self, Error> {
        let deadline = Instant::now() + options.startup_wait;
        let mut delay = Duration::from_millis(20);
        loop {
            match Self::connect_once(&options.socket, options.expected_server_uid).await {
                Ok(mut client) => {
                    client.call_timeout = options.call_timeout;
                    return Ok(client);
                }
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
        let connection = grpc::Connection::connect(socket, expected_uid)
            .await
            .map_err(grpc::Failure::into_error)?;
        let path = socket.to_owned();
        // The URI is required by the API but unused: the connector below dials the socket.
        let channel = Endpoint::from_static("http://localhost").connect_with_connector_lazy(
            tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        connect_checked(&path, expected_uid).await?,
                    ))
                }
            }),
        );
        Ok(Self {
            connection,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            secrets: SecretsClient::new(channel.clone()),
            channel,
        })
    }

    /// The connection itself, for calls the typed methods do not cover (the CLI's `psst call`
    /// sends any method the agent serves through it).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Runs one unary call within the call timeout. A call that failed before it reached the
    /// agent (nothing listening: the agent restarting) is tried again within the same deadline,
    /// whatever the method: the agent never saw it, so nothing happens twice.
    async fn unary<Q: prost::Message, R: prost::Message + Default>(
        &self,
        uri: &'static str,
        request: &Q,
    ) -> Result<R, Error> {
        let body = grpc::encode(request);
        let deadline = Instant::now() + self.call_timeout;
        let mut delay = Duration::from_millis(20);
        loop {
            match self
                .connection
                .deadlines
                .run(deadline, self.connection.call(uri, body.clone()))
                .await
            {
                Some(Ok(response)) => return Ok(response),
                Some(Err(grpc::Failure::NeverReached(_))) if Instant::now() + delay < deadline => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Some(Err(failure)) => return Err(failure.into_error()),
                None => {
                    return Err(Error::new(
                        Code::DeadlineExceeded,
                        format!(
                            "the agent did not answer within {}ms",
                            self.call_timeout.as_millis()
                        ),
                    ))
                }
            }
        }
    }

    /// The secret `reference` names (e.g. `local:demo/db?version=2#password`).
    pub async fn get(&self, reference: &str) -> Result<Secret, Error> {
        let secret: pb::Secret = self
            .unary(
                method::GET_SECRET,
                &pb::GetSecretRequest {
                    reference: reference.to_owned(),
                },
            )
            .await?;
        Ok(Secret::from_proto(secret))
    }

    /// One result per reference, in order. The outer error is for the call as a whole.
    pub async fn batch_get<S: AsRef<str>>(
        &self,
        references: &[S],
    ) -> Result<Vec<Result<Secret, Error>>, Error> {
        let references: Vec<String> = references.iter().map(|r| r.as_ref().to_owned()).collect();
        let response: pb::BatchGetSecretsResponse = self
            .unary(
                method::BATCH_GET_SECRETS,
                &pb::BatchGetSecretsRequest { references },
            )
            .await?;
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

    /// The secrets under `prefix` (`local:demo/`) the caller may list: metadata, no values.
    pub async fn list(&self, prefix: &str) -> Result<Vec<SecretMetadata>, Error> {
        let response: pb::ListSecretsResponse = self
            .unary(
                method::LIST_SECRETS,
                &pb::ListSecretsRequest {
                    prefix: prefix.to_owned(),
                },
            )
            .await?;
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

    /// Writes `value` as the new current version of the secret `reference` names.
    pub async fn put(&self, reference: &str, value: &[u8]) -> Result<Written, Error> {
        let response: pb::PutSecretResponse = self
            .unary(
                method::PUT_SECRET,
                &pb::PutSecretRequest {
                    reference: reference.to_owned(),
                    // Wiped when the request has been framed.
                    value: bytes::Bytes::from_owner(Zeroizing::new(value.to_vec())),
                },
            )
            .await?;
        Ok(Written {
            reference: response.reference,
            version_id: response.version_id,
            created_at: response.created_at.and_then(time),
        })
    }

    /// How the agent sees this process and what the policy grants it.
    pub async fn whoami(&self) -> Result<Identity, Error> {
        let response: pb::WhoAmIResponse =
            self.unary(method::WHO_AM_I, &pb::WhoAmIRequest {}).await?;
        Ok(Identity::from_proto(response))
    }

    /// Follows secrets: each reference's current secret first, then one event per change. The
    /// returned [`Watch`] is a [`futures_util::Stream`] that reconnects for as long as it is
    /// open (the agent restarting, the stream breaking), resuming from the versions it has
    /// delivered so no version is delivered twice. See [`Watch`].
    pub fn watch<S: AsRef<str>>(&self, references: &[S]) -> Watch {
        Watch::new(
            self.clone(),
            references.iter().map(|r| r.as_ref().to_owned()).collect(),
        )
    }

    /// Rotates a secret (see `RotateSecret`): a generated value becomes the current version.
    pub async fn rotate(
        &self,
        reference: &str,
        generator: Option<pb::GeneratorOptions>,
        json_key: Option<&str>,
    ) -> Result<Rotated, Error> {
        let response: pb::RotateSecretResponse = self
            .unary(
                method::ROTATE_SECRET,
                &pb::RotateSecretRequest {
                    reference: reference.to_owned(),
                    generator,
                    json_key: json_key.unwrap_or_default().to_owned(),
                },
            )
            .await?;
        Ok(Rotated {
            reference: response.reference,
            version_id: response.version_id,
            previous_version_id: response.previous_version_id,
            delegated: response.delegated,
        })
    }

    /// A random value from the agent's CSPRNG, generated as `options` say. Nothing is stored.
    pub async fn generate(
        &self,
        options: pb::GeneratorOptions,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let response: pb::GeneratePasswordResponse = self
            .unary(
                method::GENERATE_PASSWORD,
                &pb::GeneratePasswordRequest {
                    options: Some(options),
                },
            )
            .await?;
        Ok(Zeroizing::new(response.value.to_vec()))
    }

    /// Admin: the agent's counters.
    pub async fn stats(&self) -> Result<pb::StatsResponse, Error> {
        self.unary(method::STATS, &pb::StatsRequest {}).await
    }

    /// Admin: drops cached values of one reference (`prefix` empty) or under a prefix.
    pub async fn invalidate(&self, reference: &str, prefix: &str) -> Result<u64, Error> {
        let response: pb::InvalidateCacheResponse = self
            .unary(
                method::INVALIDATE_CACHE,
                &pb::InvalidateCacheRequest {
                    reference: reference.to_owned(),
                    prefix: prefix.to_owned(),
                },
            )
            .await?;
        Ok(response.invalidated)
    }

    /// Admin: reloads the agent's policy file; returns the number of rules now in force.
    pub async fn reload_policy(&self) -> Result<u32, Error> {
        let response: pb::ReloadPolicyResponse = self
            .unary(method::RELOAD_POLICY, &pb::ReloadPolicyRequest {})
            .await?;
        Ok(response.rules)
    }

    /// The agent's gRPC health: `Serving` when it answers requests.
    pub async fn health(&self) -> Result<ServingStatus, Error> {
        let response: HealthCheckResponse = self
            .unary(
                method::HEALTH_CHECK,
                &HealthCheckRequest {
                    service: String::new(),
                },
            )
            .await?;
        Ok(response.status())
    }
}

/// How the agent sees the calling process, and what the policy grants it (`whoami`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    /// The calling process as the agent identified it.
    pub caller: Caller,
    /// What the policy grants, by operation.
    pub grants: Vec<Grant>,
    /// The policy rules that matched.
    pub matched_rules: Vec<String>,
    /// The IAM role the caller reads AWS under (a `[[role]]` mapping), if any.
    pub aws_role: Option<pb::AwsRole>,
}

/// The calling process as the kernel and /proc describe it, and as the configured platform
/// attestors (Kubernetes, ECS, Docker) found it. Empty strings: not known.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Caller {
    /// The caller's user id (from the kernel).
    pub uid: u32,
    /// The caller's group id (from the kernel).
    pub gid: u32,
    /// 0 when the process is not visible to the agent (another PID namespace).
    pub pid: i32,
    /// The user name, where it resolves.
    pub user: String,
    /// The group name, where it resolves.
    pub group: String,
    /// The supplementary group ids.
    pub supplementary_gids: Vec<u32>,
    /// The executable's path, where the agent can see it.
    pub executable: String,
    /// The process's cgroup path.
    pub cgroup: String,
    /// The container id, from the cgroup path.
    pub container_id: String,
    /// The Kubernetes pod UID, from the cgroup path.
    pub pod_uid: String,
    /// The systemd unit, from the cgroup path.
    pub systemd_unit: String,
    /// "process" when identified from /proc, "uid" when only uid and gid are known.
    pub identity_source: String,
    /// The caller's pod, when the agent's Kubernetes attestor found it.
    pub kubernetes: Option<pb::KubernetesWorkload>,
    /// The caller's ECS task, when the agent's ECS attestor found it.
    pub ecs: Option<pb::EcsWorkload>,
    /// The caller's Docker container, when the agent's Docker attestor found it.
    pub container: Option<pb::ContainerWorkload>,
    /// Why a configured attestor could not say who the caller is.
    pub attestation_failures: Vec<String>,
}

/// One operation the policy grants, on these patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The operation (`read`, `list`, `write`, `watch`, `rotate`, `admin`).
    pub operation: String,
    /// The reference patterns it is granted on.
    pub patterns: Vec<String>,
}

impl Identity {
    fn from_proto(response: pb::WhoAmIResponse) -> Self {
        let c = response.caller.unwrap_or_default();
        Identity {
            caller: Caller {
                uid: c.uid,
                gid: c.gid,
                pid: c.pid,
                user: c.user,
                group: c.group,
                supplementary_gids: c.supplementary_gids,
                executable: c.executable,
                cgroup: c.cgroup,
                container_id: c.container_id,
                pod_uid: c.pod_uid,
                systemd_unit: c.systemd_unit,
                identity_source: c.identity_source,
                kubernetes: c.kubernetes,
                ecs: c.ecs,
                container: c.container,
                attestation_failures: c.attestation_failures,
            },
            grants: response
                .grants
                .into_iter()
                .map(|g| Grant {
                    operation: g.operation,
                    patterns: g.patterns,
                })
                .collect(),
            matched_rules: response.matched_rules,
            aws_role: response.aws_role,
        }
    }
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
