//! The agent's configuration: one TOML file, one typed struct. Every default is a named constant
//! below; unknown keys are rejected; every problem in a file is reported at once.
//!
//! `deploy/config/psstd.toml` documents every key, and a test parses it.

use std::{
    any::Any,
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{de::DeserializeOwned, Deserialize};

use crate::{
    agent,
    backend::{
        registry::{BackendSettings, BuildContext, Dev, DevContext},
        Backend,
    },
    identity::config::IdentityConfig,
    reference::BackendKind,
};

pub const DEFAULT_SOCKET_PATH: &str = "/run/psst/psst.sock";
/// Any local process may connect; the policy decides what it may read.
pub const DEFAULT_SOCKET_MODE: u32 = 0o666;
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_POLICY_FILE: &str = "/etc/psst/policy.toml";
pub const DEFAULT_POLICY_WATCH_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_TTL_JITTER: f64 = 0.1;
/// Audit write failures are counted and logged, and requests are still served.
pub const DEFAULT_AUDIT_FAIL_CLOSED: bool = false;
/// How long audit records may wait in the journal while more arrive.
pub const DEFAULT_AUDIT_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// The audit journal's file name when `audit.journal` does not give a path.
pub const AUDIT_JOURNAL_NAME: &str = "psstd-audit.journal";
/// How long a read of a value past its TTL waits for the refresh before it gets the old value,
/// flagged stale: well under what a caller notices, long enough for a healthy backend on a
/// nearby network to answer.
pub const DEFAULT_STALE_DEADLINE: Duration = Duration::from_millis(25);
/// How often each watched secret's versions are checked.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(60);
/// Dev mode checks more often, so a rotation shows up while you look.
pub const DEV_WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// `psstd --dev`: how long a value stays fresh in the cache, for every backend.
pub const DEV_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_WATCH_JITTER: f64 = 0.2;
pub const DEFAULT_LOCAL_DIR: &str = "/var/lib/psst/store";
/// Per-attempt timeout of an AWS call (connect and answer).
pub const DEFAULT_AWS_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per AWS call, the first included; transient failures are retried with backoff.
pub const DEFAULT_AWS_MAX_ATTEMPTS: u32 = 3;
/// How long a call may wait for the rate limit before it fails as throttled (or is served stale).
pub const DEFAULT_AWS_MAX_WAIT: Duration = Duration::from_secs(2);
/// Requests per second to Parameter Store from one agent. The account's default quota is
/// 40/s for all hosts together: leave room for the fleet.
pub const DEFAULT_SSM_RATE_LIMIT: u32 = 10;
/// Requests per second to Secrets Manager from one agent.
pub const DEFAULT_SM_RATE_LIMIT: u32 = 50;
/// Requests per second to S3, and separately to KMS, from one agent's `s3:` backend. KMS's
/// cryptographic-operation quota is shared by the account: leave room for the fleet.
pub const DEFAULT_S3_RATE_LIMIT: u32 = 50;
/// Per-attempt timeout of a Vault call (connect and answer).
/// One `AssumeRole` per session per hour (STS's default maximum for a role).
pub const DEFAULT_ROLE_SESSION_DURATION: Duration = Duration::from_secs(3600);
pub const DEFAULT_ROLE_REFRESH_AHEAD: Duration = Duration::from_secs(300);
pub const DEFAULT_ROLE_RETRY_DENIED_AFTER: Duration = Duration::from_secs(60);
pub const DEFAULT_ROLE_MAX_SESSIONS: u64 = 1024;
/// STS's own minimum `DurationSeconds`.
pub const STS_MIN_SESSION_DURATION: Duration = Duration::from_secs(900);
/// STS allows far more per account; the agent needs about one call per session per hour.
pub const DEFAULT_STS_RATE_LIMIT: u32 = 10;
pub const DEFAULT_VAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per Vault read, the first included; transient failures are retried with backoff.
pub const DEFAULT_VAULT_MAX_ATTEMPTS: u32 = 3;
/// Requests per second to Vault from one agent (and the burst allowed).
pub const DEFAULT_VAULT_RATE_LIMIT: u32 = 100;
/// Where Vault's AppRole auth method is mounted unless told otherwise.
pub const DEFAULT_VAULT_APPROLE_MOUNT: &str = "approle";
/// Connections open at once from every caller together (also capped by the open-file limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Connections open at once from one uid.
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 256;
/// New connections per second from one uid, and the burst above it: a process that connects
/// and closes in a loop is refused before it costs the agent more than an accept.
pub const DEFAULT_CONNECTIONS_PER_SECOND_PER_UID: u32 = 200;
pub const DEFAULT_CONNECTION_BURST_PER_UID: u32 = 1_000;
/// Streams open at once on one connection (watches included).
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Time a new connection has to send the HTTP/2 preface.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no stream open for this long is closed (GOAWAY); clients reconnect.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// A connection quiet for this long is pinged; one that does not answer within the timeout
/// is closed.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// After this long a connection is asked to go away (GOAWAY) so the client reconnects and is
/// identified again; streams still open then get `max_age_grace` to finish.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(60 * 60);
pub const DEFAULT_MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(5 * 60);
/// Requests (unary calls and streams) in flight at once from one uid.
pub const DEFAULT_REQUESTS_IN_FLIGHT_PER_UID: usize = 512;
/// Requests per second from one uid, and the burst allowed above it.
pub const DEFAULT_REQUESTS_PER_SECOND_PER_UID: u32 = 5_000;
pub const DEFAULT_REQUEST_BURST_PER_UID: u32 = 10_000;
/// Request bytes the agent buffers at once, from every caller and from one uid.
pub const DEFAULT_BODY_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;
pub const DEFAULT_BODY_BYTES_IN_FLIGHT_PER_UID: usize = 8 * 1024 * 1024;
/// Time a caller has to send a whole request body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once to the metrics listener.
pub const DEFAULT_METRICS_MAX_CONNECTIONS: usize = 16;
/// How long a per-host feed queue keeps a message: longer than an agent restart or a short
/// network outage (events sent meanwhile still arrive), short enough that a queue orphaned by a
/// host that never came back holds at most an hour of events (older ones are useless: the agent
/// reads everything afresh at start, and polling covers a feed that failed).
pub const DEFAULT_FEED_RETENTION: Duration = Duration::from_secs(3600);
/// Longest silence (no event, no heartbeat) before the feed counts as failing. The template in
/// deploy/aws/ sends a heartbeat every 5 minutes: three missed in a row.
pub const DEFAULT_FEED_HEARTBEAT: Duration = Duration::from_secs(15 * 60);
/// How often watched secrets are polled while the feed is healthy: the safety net.
pub const DEFAULT_FEED_HEALTHY_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// How long a received message stays hidden from other receives before it comes back if it was
/// not deleted (the agent deletes it right after handing it on).
pub const DEFAULT_FEED_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Long polling: SQS's maximum wait for a message.
pub const DEFAULT_FEED_WAIT_TIME: Duration = Duration::from_secs(20);
/// The AWS agents' HTTP API is served on the Unix socket unless turned off: callers there are
/// identified by peer credentials exactly as gRPC callers are.
pub const DEFAULT_HTTP_UNIX: bool = true;
/// The AWS Secrets Manager Agent's defaults (its `config.rs`): path-style prefix, connections
/// in flight before 429, the headers that carry the SSRF token and the variables it is read from.
pub const DEFAULT_HTTP_PATH_PREFIX: &str = "/v1/";
pub const DEFAULT_HTTP_MAX_CONN: usize = 800;
pub const DEFAULT_HTTP_SSRF_HEADERS: [&str; 2] =
    ["X-Aws-Parameters-Secrets-Token", "X-Vault-Token"];
pub const DEFAULT_HTTP_SSRF_ENV_VARIABLES: [&str; 3] = [
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub connections: ConnectionsConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub policy: PolicyConfig,
    pub cache: CacheConfig,
    pub limits: LimitsConfig,
    pub watch: WatchConfig,
    pub metrics: MetricsConfig,
    /// The change feed (`rotation/feed.rs`); off unless `queue_url` or `create` is set.
    pub feed: FeedConfig,
    /// The AWS agents' HTTP API (`http/`).
    pub http: HttpConfig,
    /// Caller identification and the workload attestors (`identity/config.rs`).
    pub identity: IdentityConfig,
    pub aws_roles: AwsRolesConfig,
    pub backends: Vec<BackendConfig>,
    /// Dev mode only: the backends it left off, and why (in words that say how to turn them on).
    pub dev_off: Vec<(BackendKind, String)>,
}

/// `[aws_roles]`: how the agent assumes the IAM roles `[[role]]` mappings in the policy name.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsRolesConfig {
    /// STS region. Unset: the standard chain (AWS_REGION, the profile, instance metadata).
    pub region: Option<String>,
    /// STS endpoint override (an emulator, a VPC endpoint). Unset: AWS_ENDPOINT_URL or STS's.
    pub endpoint: Option<String>,
    /// `DurationSeconds` of each `AssumeRole`: STS takes 15m to the role's maximum (1h unless
    /// raised). Shorter is accepted only with `endpoint` set (an emulator, for tests).
    #[serde(with = "humantime_serde")]
    pub session_duration: Duration,
    /// A session used this long before it expires is refreshed in the background (at most half
    /// its lifetime before).
    #[serde(with = "humantime_serde")]
    pub refresh_ahead: Duration,
    /// After STS refuses a role (or the agent's credentials), the same answer is given without
    /// asking STS again for this long.
    #[serde(with = "humantime_serde")]
    pub retry_denied_after: Duration,
    /// Sessions (role × caller identity) held at most; the least used go first.
    pub max_sessions: u64,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_attempts: u32,
    /// `AssumeRole` calls per second, at most.
    pub rate_limit: u32,
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for AwsRolesConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            session_duration: DEFAULT_ROLE_SESSION_DURATION,
            refresh_ahead: DEFAULT_ROLE_REFRESH_AHEAD,
            retry_denied_after: DEFAULT_ROLE_RETRY_DENIED_AFTER,
            max_sessions: DEFAULT_ROLE_MAX_SESSIONS,
            timeout: DEFAULT_AWS_TIMEOUT,
            max_attempts: DEFAULT_AWS_MAX_ATTEMPTS,
            rate_limit: DEFAULT_STS_RATE_LIMIT,
            max_wait: DEFAULT_AWS_MAX_WAIT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`GET /metrics`), e.g. "127.0.0.1:9464". Unset: off.
    pub listen: Option<std::net::SocketAddr>,
    /// A `listen` address other than loopback is refused unless this is set.
    pub allow_remote: bool,
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            allow_remote: false,
            max_connections: DEFAULT_METRICS_MAX_CONNECTIONS,
        }
    }
}

/// `[http]`: the AWS Secrets Manager Agent's and the Parameters and Secrets Lambda Extension's
/// HTTP API, a second front door to the same identity → policy → cache path.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Answer HTTP/1.1 on the agent's Unix socket (told from gRPC by the connection preface).
    pub unix: bool,
    /// A TCP address for apps that only speak TCP, e.g. "127.0.0.1:2773". Unset: off.
    pub tcp_listen: Option<std::net::SocketAddr>,
    /// A `tcp_listen` address other than loopback is refused unless this is set.
    pub allow_remote: bool,
    /// Path-style requests: `<path_prefix><secretId>`.
    pub path_prefix: String,
    /// Connections open at once from one uid (gRPC and HTTP); its HTTP requests on more get 429.
    pub max_conn: usize,
    /// Headers any of which may carry the SSRF token (TCP only).
    pub ssrf_headers: Vec<String>,
    /// Variables the token is read from, the first set wins; `file://PATH` reads it from a file.
    pub ssrf_env_variables: Vec<String>,
    /// A file holding the token, read instead of the variables when set.
    pub token_file: Option<PathBuf>,
    /// Also accept psst references (`local:app/db`, `vault:...`) as a secretId or name.
    pub psst_references: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            unix: DEFAULT_HTTP_UNIX,
            tcp_listen: None,
            allow_remote: false,
            path_prefix: DEFAULT_HTTP_PATH_PREFIX.to_owned(),
            max_conn: DEFAULT_HTTP_MAX_CONN,
            ssrf_headers: DEFAULT_HTTP_SSRF_HEADERS.map(str::to_owned).to_vec(),
            ssrf_env_variables: DEFAULT_HTTP_SSRF_ENV_VARIABLES.map(str::to_owned).to_vec(),
            token_file: None,
            psst_references: true,
        }
    }
}

impl HttpConfig {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.path_prefix.starts_with('/') {
            problems.push(format!(
                "http.path_prefix must begin with /, got '{}'",
                self.path_prefix
            ));
        }
        if self.max_conn == 0 {
            problems.push("http.max_conn must be at least 1".into());
        }
        if let Some(address) = self.tcp_listen {
            if !address.ip().is_loopback() && !self.allow_remote {
                problems.push(format!(
                    "http.tcp_listen {address} is not a loopback address: set http.allow_remote = true to take requests from other hosts"
                ));
            }
            if self.ssrf_headers.is_empty() {
                problems.push("http.ssrf_headers must name at least one header".into());
            }
            if let Some(bad) = self
                .ssrf_headers
                .iter()
                .find(|h| http::HeaderName::from_bytes(h.as_bytes()).is_err())
            {
                problems.push(format!("http.ssrf_headers: '{bad}' is not a header name"));
            }
            if self.token_file.is_none() && self.ssrf_env_variables.is_empty() {
                problems.push(
                    "http.ssrf_env_variables must name at least one variable (or set http.token_file)"
                        .into(),
                );
            }
            if let Some(file) = &self.token_file {
                if !file.is_absolute() {
                    problems.push(format!(
                        "http.token_file must be an absolute path, got {}",
                        file.display()
                    ));
                }
            }
        }
        problems
    }
}

/// How many connections the socket takes, and how long each may live.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// From every caller together; also capped by the open-file limit.
    pub max: usize,
    pub max_per_uid: usize,
    /// New connections per second per uid (0: no limit), and the burst above it.
    pub per_second_per_uid: u32,
    pub burst_per_uid: u32,
    pub max_streams: u32,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub max_age_grace: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max: DEFAULT_MAX_CONNECTIONS,
            max_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            per_second_per_uid: DEFAULT_CONNECTIONS_PER_SECOND_PER_UID,
            burst_per_uid: DEFAULT_CONNECTION_BURST_PER_UID,
            max_streams: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_age: DEFAULT_MAX_CONNECTION_AGE,
            max_age_grace: DEFAULT_MAX_CONNECTION_AGE_GRACE,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// How often a watched secret's versions are checked: one metadata call per interval per
    /// secret, however many callers watch it.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Up to this fraction of each interval is taken off at random (0 to 0.5).
    pub jitter: f64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_WATCH_INTERVAL,
            jitter: DEFAULT_WATCH_JITTER,
        }
    }
}

/// `[feed]`: AWS change events from SQS. Topology (a): `create = true` and `topic_arn`, the agent
/// makes, subscribes and on shutdown deletes its own queue; (b): `queue_url`, a queue made for
/// this host.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// (b) The queue to read, e.g. "https://sqs.us-east-1.amazonaws.com/123456789012/psst-web-1".
    pub queue_url: Option<String>,
    /// (a) Make a queue for this host at start and subscribe it to `topic_arn`.
    pub create: bool,
    pub topic_arn: Option<String>,
    /// (a) The queue's name. Unset: `psst-` and the host name.
    pub queue_name: Option<String>,
    /// (a) How long the queue keeps a message (60s to 14 days).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Unset: the standard chain (AWS_REGION, the profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint of SQS and SNS (an emulator). Unset: AWS_ENDPOINT_URL or the services' own.
    pub endpoint: Option<String>,
    /// Longest silence before the feed counts as failing.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Poll interval of watched secrets while the feed is healthy.
    #[serde(with = "humantime_serde")]
    pub healthy_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// Long-poll wait of each receive (1s to 20s).
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    /// A poller woken by an event checks after a random delay up to this long (0: at once), so
    /// a large fleet spreads its re-reads under the backend's quota.
    #[serde(with = "humantime_serde")]
    pub spread: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            queue_url: None,
            create: false,
            topic_arn: None,
            queue_name: None,
            retention: DEFAULT_FEED_RETENTION,
            region: None,
            endpoint: None,
            heartbeat: DEFAULT_FEED_HEARTBEAT,
            healthy_interval: DEFAULT_FEED_HEALTHY_INTERVAL,
            visibility_timeout: DEFAULT_FEED_VISIBILITY_TIMEOUT,
            wait_time: DEFAULT_FEED_WAIT_TIME,
            spread: Duration::ZERO,
        }
    }
}

impl FeedConfig {
    pub fn enabled(&self) -> bool {
        self.queue_url.is_some() || self.create
    }

    fn problems(&self, watch_interval: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem = |p: &str| problems.push(format!("feed: {p}"));
        match (&self.queue_url, self.create) {
            (None, false) => problem(
                "set queue_url (a queue made for this host) or create = true with topic_arn (the agent makes its own)",
            ),
            (Some(_), true) => {
                problem("queue_url and create = true are two topologies: configure one")
            }
            _ => {}
        }
        if self.create && self.topic_arn.is_none() {
            problem("create = true needs topic_arn, the SNS topic the queue subscribes to");
        }
        if !self.create && (self.topic_arn.is_some() || self.queue_name.is_some()) {
            problem("topic_arn and queue_name apply only with create = true");
        }
        if let Some(topic) = &self.topic_arn {
            if !(topic.starts_with("arn:") && topic.split(':').nth(2) == Some("sns")) {
                problem(&format!("topic_arn must be an SNS topic ARN, got {topic}"));
            }
        }
        if let Some(name) = &self.queue_name {
            if !crate::rotation::feed::valid_queue_name(name) {
                problem(&format!(
                    "queue_name '{name}' must be 1 to 80 letters, digits, '-' or '_'"
                ));
            }
        }
        for (key, url) in [("queue_url", &self.queue_url), ("endpoint", &self.endpoint)] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problem(&format!(
                        "{key} must be an http:// or https:// URL, got {url}"
                    ));
                }
            }
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(14 * 24 * 3600))
            .contains(&self.retention)
        {
            problem("retention must be between 60s and 14days (SQS's bounds)");
        }
        if self.heartbeat < Duration::from_secs(1) {
            problem("heartbeat must be at least 1s");
        }
        if self.healthy_interval < watch_interval {
            problem("healthy_interval must be at least watch.interval: the feed only ever slows polling");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(12 * 3600))
            .contains(&self.visibility_timeout)
        {
            problem("visibility_timeout must be between 1s and 12h (SQS's bounds)");
        }
        if self.spread >= self.healthy_interval {
            problem("spread must be shorter than healthy_interval");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(20)).contains(&self.wait_time) {
            problem("wait_time must be between 1s and 20s (SQS's long-poll bounds)");
        }
        problems
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the Unix socket is created (ignored under systemd socket activation).
    pub socket: PathBuf,
    /// Mode of the socket file, e.g. 0o660.
    pub socket_mode: u32,
    /// Group that owns the socket file.
    pub socket_group: Option<String>,
    /// How long shutdown waits for in-flight requests before closing connections.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Largest request or reply, in bytes. Larger requests get RESOURCE_EXHAUSTED / OUT_OF_RANGE.
    pub max_message_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            socket: DEFAULT_SOCKET_PATH.into(),
            socket_mode: DEFAULT_SOCKET_MODE,
            socket_group: None,
            grace_period: DEFAULT_GRACE_PERIOD,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, or per-module directives like `psstd=debug,h2=warn`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_LEVEL.into(),
            format: LogFormat::Plain,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Append audit records as JSON lines to this file instead of the main log.
    pub file: Option<PathBuf>,
    /// Refuse requests (UNAVAILABLE) while audit records cannot be written; every record is then
    /// written before its response is sent.
    pub fail_closed: bool,
    /// The journal records wait in until the writer thread writes them (a shared memory map:
    /// they survive the agent being killed). Default: `psstd-audit.journal` beside the socket;
    /// with systemd's socket, in `$RUNTIME_DIRECTORY`; else none, and each record is written on
    /// its request's path.
    pub journal: Option<PathBuf>,
    /// How long records may wait in the journal while more arrive (the first after a quiet
    /// spell is written at once).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: None,
            fail_closed: DEFAULT_AUDIT_FAIL_CLOSED,
            journal: None,
            flush_interval: DEFAULT_AUDIT_FLUSH_INTERVAL,
        }
    }
}

impl AuditConfig {
    /// Where the journal goes: `journal`, else beside `socket`, else in `runtime_dir`.
    pub fn journal_path(
        &self,
        socket: Option<&Path>,
        runtime_dir: Option<&Path>,
    ) -> Option<PathBuf> {
        self.journal.clone().or_else(|| {
            socket
                .and_then(Path::parent)
                .or(runtime_dir)
                .map(|dir| dir.join(AUDIT_JOURNAL_NAME))
        })
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub file: PathBuf,
    /// How often the file is checked for changes (SIGHUP reloads at once).
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            file: DEFAULT_POLICY_FILE.into(),
            watch_interval: DEFAULT_POLICY_WATCH_INTERVAL,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory budget for cached values and their metadata.
    pub max_bytes: u64,
    /// How long a NOT_FOUND answer is remembered.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How long past its TTL a value is served (flagged stale) while its backend is unreachable.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    /// Up to this fraction of each TTL is taken off at random, so that agents started together
    /// do not refresh together.
    pub ttl_jitter: f64,
    /// How long a read past the TTL waits for the refresh before it is served the old value,
    /// flagged stale (the refresh goes on in the background).
    #[serde(with = "humantime_serde")]
    pub stale_deadline: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            max_stale: DEFAULT_MAX_STALE,
            ttl_jitter: DEFAULT_TTL_JITTER,
            stale_deadline: DEFAULT_STALE_DEADLINE,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_value_bytes: usize,
    pub max_batch: usize,
    pub requests_in_flight_per_uid: usize,
    /// 0: no rate limit.
    pub requests_per_second_per_uid: u32,
    pub request_burst_per_uid: u32,
    pub body_bytes_in_flight: usize,
    pub body_bytes_in_flight_per_uid: usize,
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_value_bytes: agent::DEFAULT_MAX_VALUE_BYTES,
            max_batch: agent::DEFAULT_MAX_BATCH,
            requests_in_flight_per_uid: DEFAULT_REQUESTS_IN_FLIGHT_PER_UID,
            requests_per_second_per_uid: DEFAULT_REQUESTS_PER_SECOND_PER_UID,
            request_burst_per_uid: DEFAULT_REQUEST_BURST_PER_UID,
            body_bytes_in_flight: DEFAULT_BODY_BYTES_IN_FLIGHT,
            body_bytes_in_flight_per_uid: DEFAULT_BODY_BYTES_IN_FLIGHT_PER_UID,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// One `[[backend]]` table: the backend type its `type` names (a prefix in the registry,
/// `backend/registry.rs`) and that type's own settings, read by the type from the table.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    kind: BackendKind,
    settings: Arc<dyn BackendSettings>,
}

impl PartialEq for BackendConfig {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.settings.dyn_eq(&*other.settings as &dyn Any)
    }
}

impl BackendConfig {
    pub fn new(kind: BackendKind, settings: Arc<dyn BackendSettings>) -> Self {
        Self { kind, settings }
    }

    /// Reads one `[[backend]]` table: its `type`, then the rest as that type's settings.
    fn parse(item: &toml::Value) -> Result<Self, String> {
        let Some(table) = item.as_table() else {
            return Err(format!(
                "invalid type: {}, expected a [[backend]] table",
                item.type_str()
            ));
        };
        let mut table = table.clone();
        let kind = match table.remove("type") {
            None => return Err("missing field `type`".into()),
            Some(toml::Value::String(prefix)) => {
                BackendKind::from_prefix(&prefix).ok_or_else(|| {
                    let expected: Vec<String> =
                        BackendKind::all().map(|k| format!("`{k}`")).collect();
                    format!(
                        "unknown variant `{prefix}`, expected one of {}",
                        expected.join(", ")
                    )
                })?
            }
            Some(other) => {
                return Err(format!(
                    "invalid type: {}, expected a backend type such as \"local\"",
                    other.type_str()
                ))
            }
        };
        let settings = kind.ty().parse(toml::Value::Table(table))?;
        Ok(Self { kind, settings })
    }

    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    pub fn ttl(&self) -> Duration {
        self.settings.ttl()
    }

    /// The type's own settings, when they are `T`.
    pub fn settings<T: BackendSettings>(&self) -> Option<&T> {
        (&*self.settings as &dyn Any).downcast_ref()
    }

    /// Builds the backend these settings describe.
    pub fn build(&self, context: &BuildContext) -> anyhow::Result<Arc<dyn Backend>> {
        self.settings.build(context)
    }
}

/// The keys every AWS backend takes. Credentials always come from the standard chain.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsBackendConfig {
    /// Unset: the standard chain (AWS_REGION, the profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint override (an emulator, a VPC endpoint, FIPS). Unset: AWS_ENDPOINT_URL or the
    /// service's public endpoint.
    pub endpoint: Option<String>,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_attempts: u32,
    /// Requests per second this agent sends to the service, at most. Unset: the backend's default.
    pub rate_limit: Option<u32>,
    /// Requests that may go out at once before the rate applies. Unset: equal to rate_limit.
    pub burst: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// KMS key for values the agent writes (SecureString parameters, new secrets).
    pub kms_key_id: Option<String>,
}

impl AwsBackendConfig {
    /// Every problem with the keys, without the `backend `x`: ` in front.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_attempts == 0 {
            problems.push("max_attempts must be at least 1".into());
        }
        if self.rate_limit == Some(0) || self.burst == Some(0) {
            problems.push("rate_limit and burst must be at least 1".into());
        }
        if self.timeout.is_zero() {
            problems.push("timeout must be more than 0".into());
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                problems.push(format!(
                    "endpoint must be an http:// or https:// URL, got {endpoint}"
                ));
            }
        }
        problems
    }
}

impl Default for AwsBackendConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            ttl: agent::DEFAULT_TTL,
            timeout: DEFAULT_AWS_TIMEOUT,
            max_attempts: DEFAULT_AWS_MAX_ATTEMPTS,
            rate_limit: None,
            burst: None,
            max_wait: DEFAULT_AWS_MAX_WAIT,
            kms_key_id: None,
        }
    }
}

/// A config that could not be loaded, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<String>,
}

const SECTIONS: [&str; 14] = [
    "server",
    "connections",
    "log",
    "audit",
    "policy",
    "cache",
    "limits",
    "watch",
    "feed",
    "metrics",
    "http",
    "identity",
    "aws_roles",
    "backend",
];

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: path.display().to_string(),
            problems: vec![format!("cannot read: {e}")],
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            origin: origin.to_owned(),
            problems,
        };
        let table: toml::Table =
            toml::from_str(text).map_err(|e| fail(vec![e.to_string().trim().to_owned()]))?;
        let mut problems = Vec::new();
        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                problems.push(format!(
                    "unknown section `{key}` (expected one of {})",
                    SECTIONS.join(", ")
                ));
            }
        }
        let server: ServerConfig = section(&table, "server", &mut problems);
        let connections: ConnectionsConfig = section(&table, "connections", &mut problems);
        let log: LogConfig = section(&table, "log", &mut problems);
        let audit: AuditConfig = section(&table, "audit", &mut problems);
        let policy: PolicyConfig = section(&table, "policy", &mut problems);
        let cache: CacheConfig = section(&table, "cache", &mut problems);
        let limits: LimitsConfig = section(&table, "limits", &mut problems);
        let watch: WatchConfig = section(&table, "watch", &mut problems);
        let metrics: MetricsConfig = section(&table, "metrics", &mut problems);
        let feed: FeedConfig = section(&table, "feed", &mut problems);
        let feed_present = table.contains_key("feed");
        let http: HttpConfig = section(&table, "http", &mut problems);
        let identity: IdentityConfig = section(&table, "identity", &mut problems);
        let aws_roles: AwsRolesConfig = section(&table, "aws_roles", &mut problems);
        let mut backends = Vec::new();
        match table.get("backend") {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match BackendConfig::parse(item) {
                        Ok(b) => backends.push(b),
                        Err(e) => problems.push(format!("backend #{}: {e}", i + 1)),
                    }
                }
            }
            Some(_) => {
                problems.push("`backend` must be an array of tables: write [[backend]]".into())
            }
        }

        let config = Config {
            server,
            connections,
            log,
            audit,
            policy,
            cache,
            limits,
            watch,
            metrics,
            feed,
            http,
            identity,
            aws_roles,
            backends,
            dev_off: Vec::new(),
        };
        if feed_present {
            problems.extend(config.feed.problems(config.watch.interval));
        }
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(problems))
        }
    }

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.server.socket.is_absolute() {
            problems.push(format!(
                "server.socket must be an absolute path, got {}",
                self.server.socket.display()
            ));
        }
        if self.server.socket_mode > 0o777 {
            problems.push(format!(
                "server.socket_mode {:#o} is not a file mode (write it as 0o660)",
                self.server.socket_mode
            ));
        }
        if self.server.max_message_bytes < 1024 {
            problems.push("server.max_message_bytes must be at least 1024".into());
        }
        if self.limits.max_value_bytes == 0
            || self.limits.max_value_bytes > self.server.max_message_bytes
        {
            problems.push(
                "limits.max_value_bytes must be between 1 and server.max_message_bytes".into(),
            );
        }
        if self.limits.max_batch == 0 {
            problems.push("limits.max_batch must be at least 1".into());
        }
        for (key, value) in [
            ("connections.max", self.connections.max),
            ("connections.max_per_uid", self.connections.max_per_uid),
            (
                "connections.max_streams",
                self.connections.max_streams as usize,
            ),
            (
                "limits.requests_in_flight_per_uid",
                self.limits.requests_in_flight_per_uid,
            ),
            (
                "limits.body_bytes_in_flight",
                self.limits.body_bytes_in_flight,
            ),
            (
                "limits.body_bytes_in_flight_per_uid",
                self.limits.body_bytes_in_flight_per_uid,
            ),
            ("metrics.max_connections", self.metrics.max_connections),
        ] {
            if value == 0 {
                problems.push(format!("{key} must be at least 1"));
            }
        }
        // A request the agent accepts must fit in what one uid may buffer.
        if self.limits.body_bytes_in_flight_per_uid < self.server.max_message_bytes + 5 {
            problems.push(
                "limits.body_bytes_in_flight_per_uid must hold one whole message (server.max_message_bytes)"
                    .into(),
            );
        }
        if self.limits.body_bytes_in_flight < self.limits.body_bytes_in_flight_per_uid {
            problems.push(
                "limits.body_bytes_in_flight must be at least limits.body_bytes_in_flight_per_uid"
                    .into(),
            );
        }
        for (key, value) in [
            (
                "connections.handshake_timeout",
                self.connections.handshake_timeout,
            ),
            ("connections.idle_timeout", self.connections.idle_timeout),
            (
                "connections.keepalive_timeout",
                self.connections.keepalive_timeout,
            ),
            ("connections.max_age", self.connections.max_age),
            ("limits.body_timeout", self.limits.body_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("{key} must be more than 0"));
            }
        }
        if let Some(address) = self.metrics.listen {
            if !address.ip().is_loopback() && !self.metrics.allow_remote {
                problems.push(format!(
                    "metrics.listen {address} is not a loopback address: set metrics.allow_remote = true to serve metrics to other hosts"
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            problems.push(format!(
                "log.level '{}' is not a valid filter: {e}",
                self.log.level
            ));
        }
        if !(0.0..=0.5).contains(&self.cache.ttl_jitter) {
            problems.push(format!(
                "cache.ttl_jitter must be between 0 and 0.5, got {}",
                self.cache.ttl_jitter
            ));
        }
        if self.watch.interval < Duration::from_millis(100) {
            problems.push("watch.interval must be at least 100ms".into());
        }
        if !(0.0..=0.5).contains(&self.watch.jitter) {
            problems.push(format!(
                "watch.jitter must be between 0 and 0.5, got {}",
                self.watch.jitter
            ));
        }
        problems.extend(self.identity.problems());
        problems.extend(self.http.problems());
        if self.audit.fail_closed && !self.audit.enabled {
            problems.push("audit.fail_closed needs audit.enabled".into());
        }
        if self.audit.flush_interval.is_zero()
            || self.audit.flush_interval > Duration::from_secs(3600)
        {
            problems.push("audit.flush_interval must be more than 0 and at most 1h".into());
        }
        let roles = &self.aws_roles;
        if roles.session_duration < STS_MIN_SESSION_DURATION && roles.endpoint.is_none() {
            problems.push(format!(
                "aws_roles.session_duration must be at least {} (STS's minimum), got {}",
                humantime::format_duration(STS_MIN_SESSION_DURATION),
                humantime::format_duration(roles.session_duration)
            ));
        }
        if roles.session_duration < Duration::from_secs(1)
            || roles.session_duration > Duration::from_secs(12 * 3600)
        {
            problems.push("aws_roles.session_duration must be between 1s and 12h".into());
        }
        if roles.refresh_ahead >= roles.session_duration {
            problems.push("aws_roles.refresh_ahead must be shorter than session_duration".into());
        }
        if roles.max_sessions == 0 {
            problems.push("aws_roles.max_sessions must be at least 1".into());
        }
        if roles.rate_limit == 0 || roles.max_attempts == 0 {
            problems.push("aws_roles.rate_limit and max_attempts must be at least 1".into());
        }
        if self.cache.max_bytes == 0 {
            problems.push("cache.max_bytes must be more than 0".into());
        }
        let mut seen = BTreeSet::new();
        for b in &self.backends {
            if !seen.insert(b.kind()) {
                problems.push(format!("backend `{}` is configured twice", b.kind()));
            }
            if b.ttl().is_zero() {
                problems.push(format!("backend `{}`: ttl must be more than 0", b.kind()));
            }
            let kind = b.kind();
            problems.extend(
                b.settings
                    .problems()
                    .into_iter()
                    .map(|p| format!("backend `{kind}`: {p}")),
            );
        }
        if self.backends.is_empty() {
            problems.push(
                "no [[backend]] is configured: add at least one, e.g. type = \"local\"".into(),
            );
        }
        problems
    }

    /// The embedded default (`psstd --dev`): the local store and socket in `state_dir`, a policy
    /// that grants `uid` everything, debug-friendly timings.
    pub fn dev(state_dir: &Path) -> Self {
        Self::dev_with_env(state_dir, |name| std::env::var(name).ok())
    }

    /// `dev` with the environment passed in. Each backend type decides from it whether dev mode
    /// serves it (`BackendType::dev`): the local store always; Vault when the environment names
    /// both a server (VAULT_ADDR or BAO_ADDR) and a token (VAULT_TOKEN or BAO_TOKEN), as `bao
    /// server -dev` prints them; the AWS backends when it holds AWS credentials.
    pub fn dev_with_env(state_dir: &Path, env: impl Fn(&str) -> Option<String>) -> Self {
        let context = DevContext {
            state_dir,
            env: &env,
            ttl: DEV_TTL,
        };
        let (mut backends, mut dev_off) = (Vec::new(), Vec::new());
        for kind in BackendKind::all() {
            match kind.ty().dev(&context) {
                Dev::On(settings) => backends.push(BackendConfig::new(kind, settings)),
                Dev::Off(why) => dev_off.push((kind, why)),
            }
        }
        Config {
            server: ServerConfig {
                socket: state_dir.join("psst.sock"),
                grace_period: Duration::from_secs(2),
                ..ServerConfig::default()
            },
            connections: ConnectionsConfig::default(),
            log: LogConfig::default(),
            audit: AuditConfig::default(),
            policy: PolicyConfig {
                file: PathBuf::new(),
                ..PolicyConfig::default()
            },
            cache: CacheConfig::default(),
            limits: LimitsConfig::default(),
            watch: WatchConfig {
                interval: DEV_WATCH_INTERVAL,
                ..WatchConfig::default()
            },
            metrics: MetricsConfig::default(),
            feed: FeedConfig::default(),
            http: HttpConfig::default(),
            identity: IdentityConfig::default(),
            aws_roles: AwsRolesConfig::default(),
            backends,
            dev_off,
        }
    }
}

fn section<T: DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
    problems: &mut Vec<String>,
) -> T {
    match table.get(name) {
        None => T::default(),
        Some(value) => T::deserialize(value.clone()).unwrap_or_else(|e| {
            problems.push(format!("[{name}]: {}", e.message()));
            T::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{aws::AwsConfig, s3::S3Type, vault::VaultBackendConfig};

    const MINIMAL: &str = "[[backend]]\ntype = \"local\"\n";

    #[test]
    fn defaults_are_the_named_constants() {
        let config = Config::from_toml(MINIMAL, "t").unwrap();
        assert_eq!(config.server.socket, Path::new(DEFAULT_SOCKET_PATH));
        assert_eq!(config.server.socket_mode, DEFAULT_SOCKET_MODE);
        assert_eq!(config.cache.max_stale, DEFAULT_MAX_STALE);
        assert_eq!(config.policy.file, Path::new(DEFAULT_POLICY_FILE));
        assert_eq!(
            config.backends,
            [BackendConfig::new(
                crate::backend::local::KIND,
                Arc::new(crate::backend::local::LocalConfig {
                    dir: DEFAULT_LOCAL_DIR.into(),
                    ttl: agent::DEFAULT_TTL
                })
            )]
        );
    }

    #[test]
    fn parses_every_key() {
        let text = r#"
[server]
socket = "/tmp/x.sock"
socket_mode = 0o660
socket_group = "psst"
grace_period = "3s"
max_message_bytes = 65536

[log]
level = "psstd=debug,info"
format = "json"

[audit]
enabled = false
file = "/var/log/psst/audit.jsonl"

[policy]
file = "/etc/p.toml"
watch_interval = "500ms"

[cache]
max_bytes = 1000
negative_ttl = "1s"
max_stale = "1h"

[limits]
max_value_bytes = 4096
max_batch = 10

[[backend]]
type = "local"
dir = "/srv/psst"
ttl = "1m"
"#;
        let c = Config::from_toml(text, "t").unwrap();
        assert_eq!(c.server.socket_mode, 0o660);
        assert_eq!(c.server.grace_period, Duration::from_secs(3));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.policy.watch_interval, Duration::from_millis(500));
        assert_eq!(c.cache.max_stale, Duration::from_secs(3600));
        assert_eq!(c.limits.max_batch, 10);
        assert_eq!(c.backends[0].ttl(), Duration::from_secs(60));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[server]
socket = "relative.sock"
sokcet_mode = 1

[log]
level = "info,[bad"

[cache]
max_stale = "soon"

[telemetry]
x = 1

[[backend]]
type = "local"
dir = "relative"

[[backend]]
type = "local"

[[backend]]
type = "gcp"
"#;
        let err = Config::from_toml(text, "psstd.toml").unwrap_err();
        let text = err.to_string();
        for expected in [
            "unknown section `telemetry`",
            "[server]: unknown field `sokcet_mode`",
            "[cache]: invalid value",
            "log.level 'info,[bad' is not a valid filter",
            "backend `local`: dir must be an absolute path",
            "backend `local` is configured twice",
            "backend #3: unknown variant `gcp`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(text.starts_with("psstd.toml: "), "{text}");
    }

    #[test]
    fn broken_toml_and_no_backend() {
        assert!(Config::from_toml("[server", "t").is_err());
        let err = Config::from_toml("", "t").unwrap_err().to_string();
        assert!(err.contains("no [[backend]]"), "{err}");
    }

    #[test]
    fn vault_keys_and_their_problems() {
        let text = r#"
[[backend]]
type = "vault"
address = "https://vault.internal:8200"
namespace = "team"
role_id = "r-1"
secret_id_file = "/etc/psst/secret-id"
ca_file = "/etc/psst/vault-ca.pem"
ttl = "2m"
"#;
        let c = Config::from_toml(text, "t").unwrap();
        let Some(vault) = c.backends[0].settings::<VaultBackendConfig>() else {
            panic!("{:?}", c.backends)
        };
        assert_eq!(vault.role_id.as_deref(), Some("r-1"));
        assert_eq!(vault.approle_mount, DEFAULT_VAULT_APPROLE_MOUNT);
        assert_eq!(vault.timeout, DEFAULT_VAULT_TIMEOUT);
        assert_eq!(c.backends[0].kind(), crate::backend::vault::KIND);
        assert_eq!(c.backends[0].ttl(), Duration::from_secs(120));

        let text = r#"
[[backend]]
type = "vault"
address = "vault.internal:8200"
token_file = "relative/token"
role_id = "r-1"
secret_id_file = "/s"
max_attempts = 0
"#;
        let err = Config::from_toml(text, "t").unwrap_err().to_string();
        for expected in [
            "backend `vault`: address must be an http:// or https:// URL",
            "token_file and role_id/secret_id_file are two ways to log in",
            "token_file must be an absolute path",
            "max_attempts must be at least 1",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        let err = Config::from_toml("[[backend]]\ntype = \"vault\"\nrole_id = \"r\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("role_id needs secret_id_file"), "{err}");
        let err = Config::from_toml("[[backend]]\ntype = \"vault\"\ntoken = \"s.x\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `token`"), "{err}");
    }

    #[test]
    fn dev_serves_vault_only_with_an_address_and_a_token() {
        let has_vault = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::dev_with_env(Path::new("/tmp/psst-dev"), |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .backends
            .iter()
            .any(|b| b.kind() == crate::backend::vault::KIND)
        };
        assert!(!has_vault(&[]));
        assert!(!has_vault(&[("VAULT_ADDR", "http://127.0.0.1:8200")]));
        assert!(!has_vault(&[("BAO_TOKEN", "root")]));
        assert!(!has_vault(&[("VAULT_ADDR", ""), ("VAULT_TOKEN", "root")]));
        assert!(has_vault(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN", "root")
        ]));
        assert!(has_vault(&[
            ("BAO_ADDR", "http://127.0.0.1:8200"),
            ("BAO_TOKEN", "root")
        ]));
    }

    #[test]
    fn dev_serves_s3_and_takes_its_write_key_from_the_environment() {
        let s3_key = |key: Option<&str>| {
            let config = Config::dev_with_env(Path::new("/tmp/psst-dev"), |name| match name {
                "PSST_S3_KMS_KEY_ID" => key.map(str::to_owned),
                "AWS_PROFILE" => Some("dev".into()),
                _ => None,
            });
            config.backends.iter().find_map(|b| {
                b.settings::<AwsConfig<S3Type>>()
                    .map(|aws| aws.keys.kms_key_id.clone())
            })
        };
        assert_eq!(s3_key(None), Some(None), "s3: is on, without a write key");
        assert_eq!(s3_key(Some("")), Some(None));
        assert_eq!(
            s3_key(Some("alias/psst")),
            Some(Some("alias/psst".to_owned()))
        );
    }

    #[test]
    fn dev_serves_aws_only_with_credentials_in_the_environment() {
        let aws_on = |vars: &[(&str, &str)]| {
            let config = Config::dev_with_env(Path::new("/tmp/psst-dev"), |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            });
            let on: Vec<&str> = config.backends.iter().map(|b| b.kind().prefix()).collect();
            let off: Vec<&str> = config.dev_off.iter().map(|(k, _)| k.prefix()).collect();
            for (_, why) in &config.dev_off {
                assert!(why.starts_with("off in dev mode: "), "{why}");
            }
            (on, off)
        };
        assert_eq!(
            aws_on(&[]),
            (vec!["local"], vec!["ssm", "sm", "s3", "vault"])
        );
        assert_eq!(
            aws_on(&[("AWS_ACCESS_KEY_ID", "AKIA"), ("HOME", "/nonexistent")]).0,
            ["local"],
            "a key id without its secret is no credentials"
        );
        for vars in [
            &[
                ("AWS_ACCESS_KEY_ID", "AKIA"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
            ][..],
            &[("AWS_PROFILE", "dev")],
            &[("PSST_DEV_AWS", "1")],
        ] {
            assert_eq!(aws_on(vars).0, ["local", "ssm", "sm", "s3"], "{vars:?}");
        }
    }

    #[test]
    fn aws_role_sessions_respect_sts_limits() {
        let local = "[[backend]]\ntype = \"local\"\ndir = \"/var/lib/psst/store\"\n";
        let problems = |text: &str| match Config::from_toml(&format!("{local}{text}"), "t") {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        };
        let defaults = Config::from_toml(local, "t").unwrap().aws_roles;
        assert_eq!(defaults.session_duration, DEFAULT_ROLE_SESSION_DURATION);
        assert_eq!(defaults.refresh_ahead, DEFAULT_ROLE_REFRESH_AHEAD);
        let short = problems("[aws_roles]\nsession_duration = \"5m\"\nrefresh_ahead = \"1m\"\n");
        assert!(
            short
                .iter()
                .any(|p| p.contains("at least 15m (STS's minimum)")),
            "{short:?}"
        );
        // An emulator takes what STS would not: allowed only with an endpoint.
        assert!(problems(
            "[aws_roles]\nendpoint = \"http://127.0.0.1:5000\"\nsession_duration = \"4s\"\nrefresh_ahead = \"2s\"\n"
        )
        .is_empty());
        let all = problems(
            "[aws_roles]\nsession_duration = \"20m\"\nrefresh_ahead = \"20m\"\nmax_sessions = 0\nrate_limit = 0\n",
        );
        for says in [
            "refresh_ahead must be shorter than session_duration",
            "max_sessions must be at least 1",
            "rate_limit and max_attempts must be at least 1",
        ] {
            assert!(all.iter().any(|p| p.contains(says)), "{says}: {all:?}");
        }
        let unknown = problems("[aws_roles]\nwho = 1\n");
        assert!(unknown[0].contains("unknown field `who`"), "{unknown:?}");
    }

    #[test]
    fn the_reference_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/psstd.toml");
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_reference_configs_commented_vault_section_parses_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/psstd.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text
            .find("#[[backend]]\n#type = \"vault\"")
            .expect("a vault section");
        // `#key = value` lines are the config; `# text` lines are its documentation.
        let section: String = text[start..]
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.starts_with(' ') && !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let config = Config::from_toml(&section, "vault section")
            .unwrap_or_else(|e| panic!("{e}\n{section}"));
        let Some(vault) = config.backends[0].settings::<VaultBackendConfig>() else {
            panic!("{section}")
        };
        assert_eq!(vault.approle_mount, DEFAULT_VAULT_APPROLE_MOUNT);
        assert!(vault.role_id.is_some() && vault.secret_id_file.is_some());
        assert!(vault.address.is_some() && vault.ca_file.is_some());
    }

    #[test]
    fn the_reference_configs_commented_feed_section_parses_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/psstd.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("#[feed]").expect("a feed section");
        let end = text.find("[metrics]").expect("the metrics section");
        let mut section: String = text[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.starts_with(' ') && !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        // Both topologies are documented; the parse takes one at a time.
        let (a, b) = (
            section.replace("queue_url = ", "#queue_url = "),
            section
                .lines()
                .filter(|l| {
                    !["create", "topic_arn", "queue_name"]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
        for topology in [a, b] {
            section = format!("{topology}[[backend]]\ntype = \"local\"\ndir = \"/x\"\n");
            let config = Config::from_toml(&section, "feed section")
                .unwrap_or_else(|e| panic!("{e}\n{section}"));
            assert!(config.feed.enabled());
            // The documented values are the defaults.
            assert_eq!(config.feed.retention, DEFAULT_FEED_RETENTION);
            assert_eq!(config.feed.heartbeat, DEFAULT_FEED_HEARTBEAT);
            assert_eq!(config.feed.healthy_interval, DEFAULT_FEED_HEALTHY_INTERVAL);
            assert_eq!(
                config.feed.visibility_timeout,
                DEFAULT_FEED_VISIBILITY_TIMEOUT
            );
            assert_eq!(config.feed.wait_time, DEFAULT_FEED_WAIT_TIME);
        }
    }

    #[test]
    fn feed_keys_and_their_problems() {
        let off = Config::from_toml(MINIMAL, "t").unwrap();
        assert!(!off.feed.enabled(), "no [feed]: no feed");
        let text = format!(
            "[feed]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\nheartbeat = \"5m\"\n{MINIMAL}"
        );
        let config = Config::from_toml(&text, "t").unwrap();
        assert!(config.feed.enabled() && !config.feed.create);
        assert_eq!(config.feed.heartbeat, Duration::from_secs(300));
        for (body, expected) in [
            ("heartbeat = \"5m\"", "feed: set queue_url"),
            (
                "queue_url = \"https://q\"\ncreate = true\ntopic_arn = \"arn:aws:sns:r:1:t\"",
                "two topologies",
            ),
            ("create = true", "create = true needs topic_arn"),
            (
                "queue_url = \"https://q\"\ntopic_arn = \"arn:aws:sns:r:1:t\"",
                "apply only with create = true",
            ),
            (
                "create = true\ntopic_arn = \"arn:aws:sqs:r:1:t\"",
                "topic_arn must be an SNS topic ARN",
            ),
            (
                "create = true\ntopic_arn = \"arn:aws:sns:r:1:t\"\nqueue_name = \"a.b\"",
                "queue_name 'a.b'",
            ),
            ("queue_url = \"sqs.example/q\"", "queue_url must be an http"),
            (
                "queue_url = \"https://q\"\nretention = \"30s\"",
                "retention must be between",
            ),
            (
                "queue_url = \"https://q\"\nhealthy_interval = \"10s\"",
                "healthy_interval must be at least watch.interval",
            ),
            (
                "queue_url = \"https://q\"\nwait_time = \"30s\"",
                "wait_time must be between",
            ),
            (
                "queue_url = \"https://q\"\nvisibility_timeout = \"0s\"",
                "visibility_timeout must be between",
            ),
            (
                "queue_url = \"https://q\"\nheartbeat = \"0s\"",
                "heartbeat must be at least 1s",
            ),
            (
                "queue_url = \"https://q\"\nsecret = \"x\"",
                "unknown field `secret`",
            ),
        ] {
            let err = Config::from_toml(&format!("[feed]\n{body}\n{MINIMAL}"), "t")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{body}: missing {expected:?} in:\n{err}"
            );
        }
    }

    #[test]
    fn the_reference_configs_commented_identity_sections_parse_uncommented() {
        use crate::identity::config::{DockerConfig, EcsConfig, KubernetesConfig};
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/psstd.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text
            .find("#[identity.kubernetes]")
            .expect("a kubernetes section");
        let end = text.find("# One [[backend]]").expect("the backends");
        let section: String = text[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.starts_with(' ') && !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let section = format!("{section}[[backend]]\ntype = \"local\"\ndir = \"/x\"\n");
        let config = Config::from_toml(&section, "identity sections")
            .unwrap_or_else(|e| panic!("{e}\n{section}"));
        // The documented values are the defaults, except the example node name and TLS name.
        let kubernetes = config.identity.kubernetes.expect("[identity.kubernetes]");
        assert_eq!(
            kubernetes,
            KubernetesConfig {
                node_name: Some("node-1".into()),
                tls_server_name: Some("node-1".into()),
                ..KubernetesConfig::default()
            }
        );
        assert_eq!(config.identity.ecs, Some(EcsConfig::default()));
        assert_eq!(config.identity.docker, Some(DockerConfig::default()));
    }

    #[test]
    fn the_reference_configs_http_section_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/psstd.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("[http]").expect("an [http] section");
        let end = text.find("[identity]").expect("the identity section");
        let section: String = text[start..end]
            .lines()
            .map(|l| {
                l.strip_prefix('#')
                    .filter(|c| !c.starts_with(' '))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let section = format!("{section}[[backend]]\ntype = \"local\"\ndir = \"/x\"\n");
        let config = Config::from_toml(&section, "http section")
            .unwrap_or_else(|e| panic!("{e}\n{section}"));
        assert_eq!(
            config.http,
            HttpConfig {
                tcp_listen: Some("127.0.0.1:2773".parse().unwrap()),
                token_file: Some("/var/run/awssmatoken".into()),
                ..HttpConfig::default()
            }
        );
    }

    #[test]
    fn http_problems_are_reported() {
        let base = "[[backend]]\ntype = \"local\"\ndir = \"/x\"\n";
        let problems = |http: &str| {
            Config::from_toml(&format!("[http]\n{http}\n{base}"), "t")
                .err()
                .map(|e| e.problems.join("\n"))
                .unwrap_or_default()
        };
        assert!(problems("tcp_listen = \"0.0.0.0:2773\"").contains("not a loopback address"));
        assert!(problems("tcp_listen = \"0.0.0.0:2773\"\nallow_remote = true").is_empty());
        assert!(problems("path_prefix = \"v1/\"").contains("must begin with /"));
        assert!(problems("max_conn = 0").contains("http.max_conn"));
        assert!(
            problems("tcp_listen = \"127.0.0.1:2773\"\nssrf_headers = [\"bad header\"]")
                .contains("not a header name")
        );
        assert!(
            problems("tcp_listen = \"127.0.0.1:2773\"\nssrf_env_variables = []")
                .contains("http.ssrf_env_variables")
        );
        assert!(
            problems("tcp_listen = \"127.0.0.1:2773\"\ntoken_file = \"rel\"").contains("absolute")
        );
        assert!(problems("port = 1").contains("unknown field"));
    }

    #[test]
    fn the_audit_journal_goes_where_it_is_told_else_beside_the_socket() {
        let local = "[[backend]]\ntype = \"local\"\ndir = \"/tmp/s\"\n";
        let c = Config::from_toml(local, "t").unwrap();
        assert_eq!(c.audit.flush_interval, DEFAULT_AUDIT_FLUSH_INTERVAL);
        let socket = Path::new("/run/psst/psst.sock");
        assert_eq!(
            c.audit
                .journal_path(Some(socket), Some(Path::new("/run/other"))),
            Some(PathBuf::from("/run/psst/psstd-audit.journal"))
        );
        assert_eq!(
            c.audit.journal_path(None, Some(Path::new("/run/other"))),
            Some(PathBuf::from("/run/other/psstd-audit.journal"))
        );
        assert_eq!(c.audit.journal_path(None, None), None, "written in line");
        let c = Config::from_toml(
            &format!("[audit]\njournal = \"/var/lib/psst/j\"\nflush_interval = \"5ms\"\n{local}"),
            "t",
        )
        .unwrap();
        assert_eq!(c.audit.flush_interval, Duration::from_millis(5));
        assert_eq!(
            c.audit.journal_path(Some(socket), None),
            Some(PathBuf::from("/var/lib/psst/j"))
        );
        for bad in ["0s", "2h"] {
            let err = Config::from_toml(
                &format!("[audit]\nflush_interval = \"{bad}\"\n{local}"),
                "t",
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("audit.flush_interval must be more than 0"),
                "{err}"
            );
        }
    }
}
