//! Per-workload AWS identity (`identity.rs` says what STS is told about a caller, `backend.rs`
//! is a backend as a session reads it): a caller that the policy maps to an IAM role (`[[role]]`) reads
//! `ssm:`, `sm:` and `s3:` under that role, so IAM enforces and CloudTrail records the workload,
//! not the agent.
//!
//! The agent assumes the role with STS `AssumeRole`, using its own credentials, once per
//! [`AssumedRole`] (role + the session identity derived from the caller). [`RoleSessions`] keeps
//! those sessions: concurrent first uses wait for one `AssumeRole`; a session used within its
//! refresh window is refreshed in the background while its credentials still work; a refused
//! `AssumeRole` is remembered for `retry_denied_after`, so a denied caller cannot make the agent
//! call STS in a loop. Each session builds its own SDK clients of the AWS backends
//! ([`Backend::under_role`]) sharing the agent's rate limits, and `backend.rs` wraps them so
//! AWS refusing the role is `RoleDenied` (the caller's `PERMISSION_DENIED`, naming the role).
//!
//! The cache key carries the `AssumedRole` (`SecretRef::read_as`): a value read under one role
//! and session identity is never served to a caller reading under another.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant, SystemTime},
};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_credential_types::{
    provider::{error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider},
    Credentials,
};
use aws_sdk_sts::types::Tag;
use tokio::sync::OnceCell;

mod backend;
mod identity;

pub(crate) use identity::{session_identity, SessionIdentity};

use self::backend::RoleBackend;
use super::classify;
use crate::{
    backend::{
        guard::{CallGuard, Limits},
        Backend, BackendError,
    },
    config::AwsRolesConfig,
    reference::BackendKind,
};

const SERVICE: &str = "STS";
/// A failed background refresh is tried again no sooner than this, while the credentials held
/// still work.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

/// A role as one caller reads under it: everything that goes into `AssumeRole` and so decides
/// what IAM allows. Equal values may share credentials and cached secrets; nothing else may.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssumedRole {
    pub arn: String,
    pub external_id: Option<String>,
    pub identity: SessionIdentity,
}

impl fmt::Display for AssumedRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (session {})", self.arn, self.identity.name)
    }
}

/// `[aws_roles]`: how roles are assumed.
#[derive(Clone, Debug)]
pub struct RoleSettings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub session_duration: Duration,
    pub refresh_ahead: Duration,
    pub retry_denied_after: Duration,
    pub max_sessions: u64,
    pub timeout: Duration,
    pub limits: Limits,
}

impl RoleSettings {
    pub fn new(config: &AwsRolesConfig) -> Self {
        Self {
            region: config.region.clone(),
            endpoint: config.endpoint.clone(),
            session_duration: config.session_duration,
            refresh_ahead: config.refresh_ahead,
            retry_denied_after: config.retry_denied_after,
            max_sessions: config.max_sessions,
            timeout: config.timeout,
            limits: Limits {
                rate_limit: config.rate_limit,
                burst: config.rate_limit,
                max_wait: config.max_wait,
                max_attempts: config.max_attempts,
            },
        }
    }
}

/// What assuming a role costs, per role ARN (for `Stats` and metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleUsage {
    pub arn: String,
    /// Live sessions (session identities) of this role.
    pub sessions: u64,
    pub assume_calls: u64,
    pub assume_failures: u64,
    /// Backend calls made under the role, and how many failed.
    pub backend_calls: u64,
    pub backend_errors: u64,
    /// Cache entries read under the role, and their bytes (filled in by the agent's `Stats`).
    pub cache_entries: u64,
    pub cache_bytes: u64,
}

#[derive(Default)]
struct Counters {
    assume_calls: AtomicU64,
    assume_failures: AtomicU64,
    backend_calls: AtomicU64,
    backend_errors: AtomicU64,
}

/// The sessions of every role in use, bounded by `max_sessions` and dropped after a session
/// duration without use.
pub struct RoleSessions {
    shared: Arc<Shared>,
    sessions: moka::sync::Cache<Arc<AssumedRole>, Arc<RoleSession>>,
}

struct Shared {
    settings: RoleSettings,
    client: OnceCell<aws_sdk_sts::Client>,
    guard: CallGuard,
    // One entry per role ARN named in a policy: bounded by the policy, not by callers.
    counters: Mutex<BTreeMap<String, Arc<Counters>>>,
}

impl RoleSessions {
    pub fn new(settings: RoleSettings) -> Self {
        Self {
            sessions: moka::sync::Cache::builder()
                .max_capacity(settings.max_sessions)
                .time_to_idle(settings.session_duration)
                .build(),
            shared: Arc::new(Shared {
                guard: CallGuard::new(SERVICE, settings.limits),
                settings,
                client: OnceCell::new(),
                counters: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The backend `base` under `role`: `None` when `base` cannot read under an IAM role.
    pub fn backend(
        &self,
        role: &Arc<AssumedRole>,
        base: &Arc<dyn Backend>,
    ) -> Option<Arc<dyn Backend>> {
        let session = self.session(role);
        let inner = session.inner_backend(base)?;
        Some(Arc::new(RoleBackend { session, inner }))
    }

    /// Credentials for `role`, assuming it if needed.
    pub async fn credentials(&self, role: &Arc<AssumedRole>) -> Result<Credentials, BackendError> {
        self.session(role).credentials().await
    }

    fn session(&self, role: &Arc<AssumedRole>) -> Arc<RoleSession> {
        self.sessions.get_with_by_ref(role, || {
            Arc::new(RoleSession {
                role: Arc::clone(role),
                counters: self.shared.counters_of(&role.arn),
                shared: Arc::clone(&self.shared),
                state: Mutex::new(State::Empty),
                assuming: tokio::sync::Mutex::new(()),
                refreshing: AtomicBool::new(false),
                backends: Mutex::new(HashMap::new()),
            })
        })
    }

    /// Per role ARN: sessions and calls, sorted by ARN.
    pub fn usage(&self) -> Vec<RoleUsage> {
        let mut sessions: BTreeMap<String, u64> = BTreeMap::new();
        for (role, _) in self.sessions.iter() {
            *sessions.entry(role.arn.clone()).or_default() += 1;
        }
        let counters = self.shared.counters.lock().expect("counters lock");
        counters
            .iter()
            .map(|(arn, c)| RoleUsage {
                arn: arn.clone(),
                sessions: sessions.get(arn).copied().unwrap_or(0),
                assume_calls: c.assume_calls.load(Ordering::Relaxed),
                assume_failures: c.assume_failures.load(Ordering::Relaxed),
                backend_calls: c.backend_calls.load(Ordering::Relaxed),
                backend_errors: c.backend_errors.load(Ordering::Relaxed),
                ..RoleUsage::default()
            })
            .collect()
    }
}

impl Shared {
    fn counters_of(&self, arn: &str) -> Arc<Counters> {
        let mut counters = self.counters.lock().expect("counters lock");
        Arc::clone(counters.entry(arn.to_owned()).or_default())
    }

    /// The STS client, on the agent's own credentials (the standard chain).
    async fn client(&self) -> &aws_sdk_sts::Client {
        self.client
            .get_or_init(|| async {
                let s = &self.settings;
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(s.timeout)
                            .operation_attempt_timeout(s.timeout)
                            .build(),
                    );
                if let Some(region) = &s.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint) = &s.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                aws_sdk_sts::Client::new(&loader.load().await)
            })
            .await
    }
}

/// One role session: its credentials, and the SDK clients that use them.
struct RoleSession {
    role: Arc<AssumedRole>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    state: Mutex<State>,
    /// Held while `AssumeRole` is in flight: the callers behind it wait, then use its result.
    assuming: tokio::sync::Mutex<()>,
    /// A background refresh is running.
    refreshing: AtomicBool,
    /// The AWS backends' clients under this session, by kind.
    backends: Mutex<HashMap<BackendKind, Arc<dyn Backend>>>,
}

enum State {
    Empty,
    Ready {
        credentials: Credentials,
        expires: Instant,
        refresh_at: Instant,
    },
    /// STS refused: the same answer until `until`, without asking again.
    Refused {
        error: BackendError,
        until: Instant,
    },
}

impl RoleSession {
    fn inner_backend(self: &Arc<Self>, base: &Arc<dyn Backend>) -> Option<Arc<dyn Backend>> {
        let mut backends = self.backends.lock().expect("backends lock");
        if let Some(backend) = backends.get(&base.kind()) {
            return Some(Arc::clone(backend));
        }
        // A weak reference: the session owns these clients, and they must not keep it alive.
        let provider = SharedCredentialsProvider::new(SessionCredentials(Arc::downgrade(self)));
        let backend = base.under_role(provider)?;
        backends.insert(base.kind(), Arc::clone(&backend));
        Some(backend)
    }

    /// Working credentials: the ones held while they last (refreshing them in the background
    /// once inside the refresh window), else a new `AssumeRole` shared by everyone waiting.
    async fn credentials(self: &Arc<Self>) -> Result<Credentials, BackendError> {
        if let Some(held) = self.held(Instant::now()) {
            return held;
        }
        let _assuming = self.assuming.lock().await;
        // Whoever held the lock before may have just assumed the role (or been refused).
        if let Some(held) = self.held(Instant::now()) {
            return held;
        }
        self.assume().await
    }

    /// What the session holds now, if it answers the request: credentials still valid, or a
    /// refusal still in force. Starts a background refresh inside the refresh window.
    fn held(self: &Arc<Self>, now: Instant) -> Option<Result<Credentials, BackendError>> {
        let state = self.state.lock().expect("state lock");
        match &*state {
            State::Ready {
                credentials,
                expires,
                refresh_at,
            } if now < *expires => {
                if now >= *refresh_at && !self.refreshing.swap(true, Ordering::AcqRel) {
                    let session = Arc::clone(self);
                    tokio::spawn(async move { session.refresh().await });
                }
                Some(Ok(credentials.clone()))
            }
            State::Refused { error, until } if now < *until => Some(Err(error.clone())),
            _ => None,
        }
    }

    async fn refresh(self: Arc<Self>) {
        let _assuming = self.assuming.lock().await;
        if let Err(e) = self.assume().await {
            tracing::warn!(role = %self.role, error = %e, "refreshing role credentials failed");
            // Keep the credentials that still work, and try again on a later use.
            if let State::Ready { refresh_at, .. } = &mut *self.state.lock().expect("state lock") {
                *refresh_at = Instant::now() + REFRESH_RETRY;
            }
        }
        self.refreshing.store(false, Ordering::Release);
    }

    /// One `AssumeRole` (through the STS guard: rate limit, retries of transient failures).
    /// Called with `assuming` held.
    async fn assume(&self) -> Result<Credentials, BackendError> {
        let settings = &self.shared.settings;
        let role = &self.role;
        let client = self.shared.client().await;
        let duration = i32::try_from(settings.session_duration.as_secs()).unwrap_or(i32::MAX);
        let what = format!("role {}", role.arn);
        let asked = Instant::now();
        let output = self
            .shared
            .guard
            .call(|| {
                self.counters.assume_calls.fetch_add(1, Ordering::Relaxed);
                let mut request = client
                    .assume_role()
                    .role_arn(&role.arn)
                    .role_session_name(&role.identity.name)
                    .source_identity(&role.identity.name)
                    .duration_seconds(duration)
                    .set_external_id(role.external_id.clone());
                for (key, value) in &role.identity.tags {
                    request = request.tags(
                        Tag::builder()
                            .key(key)
                            .value(value)
                            .build()
                            .expect("key and value set"),
                    );
                }
                let what = &what;
                async move {
                    request
                        .send()
                        .await
                        .map_err(|e| role_error(what, classify(SERVICE, what, e)))
                }
            })
            .await
            .map_err(|e| match e {
                // The guard's own refusal (STS's circuit is open) names the role too.
                BackendError::Unavailable(m) if !m.starts_with("cannot assume") => {
                    role_error(&what, BackendError::Unavailable(m))
                }
                other => other,
            });
        let credentials = output.and_then(|output| {
            let c = output.credentials.ok_or_else(|| {
                BackendError::Internal(format!("{SERVICE} returned no credentials for {what}"))
            })?;
            let expiry = SystemTime::try_from(*c.expiration()).map_err(|_| {
                BackendError::Internal(format!("{SERVICE} returned a bad expiry for {what}"))
            })?;
            Ok(Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                Some(expiry),
                "psst-assumed-role",
            ))
        });
        let mut state = self.state.lock().expect("state lock");
        match credentials {
            Ok(credentials) => {
                let lifetime = credentials
                    .expiry()
                    .and_then(|e| e.duration_since(SystemTime::now()).ok())
                    .unwrap_or_default();
                // Refresh ahead by `refresh_ahead`, but never in the first half of a session.
                let ahead = settings.refresh_ahead.min(lifetime / 2);
                *state = State::Ready {
                    credentials: credentials.clone(),
                    expires: asked + lifetime,
                    refresh_at: asked + lifetime - ahead,
                };
                tracing::debug!(role = %role, lifetime = ?lifetime, "assumed role");
                Ok(credentials)
            }
            Err(error) => {
                self.counters
                    .assume_failures
                    .fetch_add(1, Ordering::Relaxed);
                if !error.is_transient() {
                    // A refusal is not asked again until retry_denied_after; an outage is, on
                    // the next use (the guard already retried and rate-limits every attempt).
                    *state = State::Refused {
                        error: error.clone(),
                        until: Instant::now() + settings.retry_denied_after,
                    };
                }
                Err(error)
            }
        }
    }
}

/// STS's answer to `AssumeRole`, as the caller's error: a refusal names the role.
fn role_error(what: &str, error: BackendError) -> BackendError {
    match error {
        BackendError::AgentDenied(m) if m.contains("AccessDenied") => BackendError::RoleDenied(
            format!("AWS STS refused to let the agent assume {what}: {m}"),
        ),
        BackendError::Unavailable(m) => {
            BackendError::Unavailable(format!("cannot assume {what}: {m}"))
        }
        other => other,
    }
}

/// The SDK clients of a session read its credentials through this.
#[derive(Debug)]
struct SessionCredentials(Weak<RoleSession>);

impl fmt::Debug for RoleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleSession")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl ProvideCredentials for SessionCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let session = self
                .0
                .upgrade()
                .ok_or_else(|| CredentialsError::not_loaded("the role session was dropped"))?;
            session
                .credentials()
                .await
                .map_err(|e| CredentialsError::provider_error(e.to_string()))
        })
    }
}
