//! The agent's core: a request from a known caller, checked against policy, served from the cache
//! or a backend. Independent of gRPC: the handlers in `api/` translate to and from protobuf and
//! call these methods, and any other transport could too.
//!
//! Order on every path: parse the reference (INVALID_ARGUMENT) → policy (PERMISSION_DENIED, the
//! same whether or not the secret exists) → cache → backend.

mod manage;
mod watch;

use std::{collections::HashMap, sync::Arc, time::Duration};

pub(crate) use watch::{EventKind, WatchEvent};

use futures::FutureExt;
use serde_json::value::RawValue;

use crate::{
    audit::{Audit, Observer, Outcome, Scope, Trail},
    backend::{
        aws::role::{session_identity, AssumedRole},
        BackendError, Backends, Configured, Listed, Written,
    },
    cache::{CacheError, CachedSecret, FetchMany, SecretCache, Served},
    identity::Caller,
    metrics::Metrics,
    policy::{Grants, Operation, PolicySource, RoleMapping},
    reference::{self, BackendKind, SecretRef},
    rotation::{WatchHub, WatchSettings},
    secret::SecretValue,
};

/// Largest secret value accepted by `put`. Secrets Manager's own limit.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most references in one batch.
pub(crate) const DEFAULT_MAX_BATCH: usize = 100;

/// What went wrong, by the gRPC code it maps to. Messages never contain a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The gRPC code name, for audit records and logs.
    pub fn code_name(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::PermissionDenied(_) => "permission_denied",
            Self::NotFound(_) => "not_found",
            Self::Unavailable(_) => "unavailable",
            Self::FailedPrecondition(_) => "failed_precondition",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Unimplemented(_) => "unimplemented",
            Self::ResourceExhausted(_) => "resource_exhausted",
            Self::DataLoss(_) => "data_loss",
            Self::Internal(_) => "internal",
        }
    }

    fn from_backend(kind: BackendKind, error: &BackendError) -> Self {
        match error {
            BackendError::NotFound(m) => Self::NotFound(m.clone()),
            BackendError::InvalidArgument(m) => Self::InvalidArgument(m.clone()),
            BackendError::AgentDenied(m) => {
                Self::FailedPrecondition(format!("the agent itself was refused by {kind}: {m}"))
            }
            BackendError::RoleDenied(m) => Self::PermissionDenied(m.clone()),
            BackendError::Unavailable(m) => {
                Self::Unavailable(format!("{kind} backend unavailable: {m}"))
            }
            BackendError::Throttled(m) => {
                Self::ResourceExhausted(format!("{kind} backend throttled: {m}"))
            }
            BackendError::Unsupported(m) => Self::Unimplemented(m.clone()),
            BackendError::Corrupt(m) => Self::DataLoss(m.clone()),
            BackendError::Internal(m) => Self::Internal(m.clone()),
        }
    }
}

impl From<reference::ReferenceError> for Error {
    fn from(e: reference::ReferenceError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

/// A secret as served to a caller.
#[derive(Debug, Clone)]
pub struct ServedSecret {
    pub reference: SecretRef,
    pub secret: Arc<CachedSecret>,
    /// The whole value, or the selected JSON key's value.
    pub value: Arc<SecretValue>,
    pub hit: bool,
    pub stale: bool,
}

/// The cache's key for a read of `reference` under `role`, and whether the backend remapped the
/// spelling (an ARN to a name). One copy of the reference on the cached path: the spelling the
/// caller used is made again only when a remapped spelling was not found.
fn cache_key(
    configured: &Configured,
    reference: &SecretRef,
    role: &Option<Arc<AssumedRole>>,
) -> (SecretRef, bool) {
    let own = reference.without_key().with_role(role.clone());
    match configured.backend.cache_key(&own) {
        Some(key) => (key.with_role(role.clone()), true),
        None => (own, false),
    }
}

/// `done`, or the code an operation failed with.
fn done_or_failed<T>(result: &Result<T, Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Failed(e.code_name()),
    }
}

/// A listing entry as served: a reference the caller may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSecret {
    pub reference: String,
    pub listed: Listed,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_value_bytes: usize,
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

pub struct Agent {
    backends: Backends,
    policy: Arc<PolicySource>,
    cache: Arc<SecretCache>,
    limits: Limits,
    hub: WatchHub,
    metrics: Arc<Metrics>,
    audit: Audit,
}

impl Agent {
    pub fn new(
        backends: Backends,
        policy: Arc<PolicySource>,
        cache: SecretCache,
        limits: Limits,
        watch: WatchSettings,
        trail: Arc<Trail>,
    ) -> Self {
        let cache = Arc::new(cache);
        let hub = WatchHub::new(backends.clone(), Arc::clone(&cache), watch);
        let metrics = Arc::new(Metrics::new(
            Arc::clone(&cache),
            hub.clone(),
            backends.clone(),
            backends.roles().cloned(),
            Arc::clone(trail.health()),
        ));
        // The metrics count every decided operation the trail records.
        let audit = Audit::new(trail, vec![Arc::clone(&metrics) as Arc<dyn Observer>]);
        Self {
            metrics,
            audit,
            hub,
            backends,
            policy,
            cache,
            limits,
        }
    }

    pub fn policy(&self) -> &Arc<PolicySource> {
        &self.policy
    }

    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where audit records are written (closed at shutdown, reopened on SIGHUP).
    pub fn audit_trail(&self) -> &Arc<Trail> {
        self.audit.trail()
    }

    /// The watch hub: pollers, and where the change feed delivers.
    pub fn hub(&self) -> &WatchHub {
        &self.hub
    }

    /// Ends every watch stream (with UNAVAILABLE, so clients reconnect): the agent is stopping.
    pub fn shut_down(&self) {
        self.hub.shut_down();
    }

    pub async fn get(&self, caller: &Caller, text: &str) -> Result<ServedSecret, Error> {
        let reference = SecretRef::parse(text)?;
        let scope = self.authorize(caller, Operation::Read, &reference, text)?;
        let role = self.role_for(caller, reference.backend());
        match self.backend_as(reference.backend(), role.as_ref()) {
            Ok(configured) => {
                let (key, remapped) = cache_key(&configured, &reference, &role);
                let mut served = self
                    .cache
                    .get(&key, configured.ttl, || {
                        self.fetch_one(&configured, key.clone())
                    })
                    .await;
                if remapped && matches!(served, Err(CacheError::NotFound(_))) {
                    let own = reference.without_key().with_role(role);
                    if key != own {
                        // Boxed: rare, and kept out of the hot path's future (see `SecretCache::get`).
                        served = Box::pin(self.read_again_as_spelled(&configured, &own)).await;
                    }
                }
                self.finish_read(caller, &reference, scope, served)
            }
            Err(e) => {
                scope.finish(Outcome::Failed(e.code_name()));
                Err(e)
            }
        }
    }

    /// `get` when it can be answered at once: a denial (whatever the cache holds), or an allowed
    /// read from a fresh entry (a value or a remembered "not found"), recorded as `get` records
    /// it. `proceed` is asked before anything is recorded (with the cached secret; None for a
    /// "not found" or a denial) and can decline: the server's fast path declines a reply too
    /// large for the room the caller's flow control leaves, or a request its admission refuses.
    /// None: the read needs more than the cache (a miss, an expired entry, a backend, or an
    /// error `get` words — a bad reference, a backend off), or `proceed` declined; then nothing
    /// was recorded or counted, and the caller goes on with `get`.
    pub(crate) fn get_now(
        &self,
        caller: &Caller,
        text: &str,
        proceed: impl FnOnce(Option<&CachedSecret>) -> bool,
    ) -> Option<Result<ServedSecret, Error>> {
        let reference = SecretRef::parse(text).ok()?;
        // The policy first, as `get` decides it: a denied read is answered here whatever the
        // cache holds or the backend's state, so neither the answer nor the path it takes tells
        // a caller that may not read a secret whether someone read it lately.
        let policy = self.policy.current();
        let decision = policy.decide(
            caller,
            Operation::Read,
            reference.backend(),
            reference.policy_name(),
        );
        if !decision.is_allowed() {
            return proceed(None).then(|| Err(self.refuse(caller, Operation::Read, text)));
        }
        let role = self.role_for(caller, reference.backend());
        let configured = self.backend_as(reference.backend(), role.as_ref()).ok()?;
        let (key, remapped) = cache_key(&configured, &reference, &role);
        let fresh = self.cache.fresh(&key).ok()?;
        // A remapped spelling not found is read again as spelled: `get`'s work.
        if (remapped && fresh.secret().is_none()) || !proceed(fresh.secret()) {
            return None;
        }
        let scope = match self.record_decision(caller, Operation::Read, text, decision) {
            Ok(scope) => scope,
            Err(refused) => return Some(Err(refused)),
        };
        let served = self.cache.serve_fresh(fresh, &key, configured.ttl, || {
            self.fetch_one(&configured, key.clone())
        });
        Some(self.finish_read(caller, &reference, scope, served))
    }

    /// `get`, and when the value came from the cache, the backend read again: the HTTP front
    /// door's `refreshNow`. The first `get` authorizes (and audits) the read, so a caller can
    /// make the agent refresh only what it may read; the backend's `CallGuard` rate limit and
    /// the cache's coalescing bound what repeated refreshes cost.
    pub async fn get_refreshed(&self, caller: &Caller, text: &str) -> Result<ServedSecret, Error> {
        let served = self.get(caller, text).await?;
        if !served.hit {
            return Ok(served);
        }
        self.invalidate_secret(&served.reference).await;
        self.get(caller, text).await
    }

    /// One result per reference, in order; a bad item fails alone. Misses for one backend go to
    /// it together (`Backend::fetch_many`), so Parameter Store and Secrets Manager get batch calls.
    pub async fn batch_get(
        &self,
        caller: &Caller,
        texts: &[String],
    ) -> Result<Vec<Result<ServedSecret, Error>>, Error> {
        if texts.len() > self.limits.max_batch {
            return Err(Error::InvalidArgument(format!(
                "a batch holds at most {} references, got {}",
                self.limits.max_batch,
                texts.len()
            )));
        }
        // Parse and authorize every item first; collect the allowed ones per backend.
        let mut results: Vec<Option<Result<ServedSecret, Error>>> = Vec::with_capacity(texts.len());
        let mut parsed: Vec<Option<(SecretRef, Scope<'_>)>> = Vec::with_capacity(texts.len());
        let mut by_backend: Vec<(BackendKind, Vec<usize>)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let checked = SecretRef::parse(text)
                .map_err(Error::from)
                .and_then(|r| {
                    self.authorize(caller, Operation::Read, &r, text)
                        .map(|scope| (r, scope))
                })
                .and_then(|(r, scope)| match self.backend(r.backend()) {
                    Ok(_) => Ok((r, scope)),
                    Err(e) => {
                        scope.finish(Outcome::Failed(e.code_name()));
                        Err(e)
                    }
                });
            match checked {
                Ok((reference, scope)) => {
                    match by_backend
                        .iter_mut()
                        .find(|(k, _)| *k == reference.backend())
                    {
                        Some((_, items)) => items.push(i),
                        None => by_backend.push((reference.backend(), vec![i])),
                    }
                    parsed.push(Some((reference, scope)));
                    results.push(None);
                }
                Err(e) => {
                    // Recorded where decided (a parse error is not a decision).
                    parsed.push(None);
                    results.push(Some(Err(e)));
                }
            }
        }
        let mut groups = Vec::with_capacity(by_backend.len());
        for (kind, items) in by_backend {
            let role = self.role_for(caller, kind);
            let configured = match self.backend_as(kind, role.as_ref()) {
                Ok(configured) => configured,
                Err(e) => {
                    for i in items {
                        let (_, scope) = parsed[i].take().expect("allowed item");
                        scope.finish(Outcome::Failed(e.code_name()));
                        results[i] = Some(Err(e.clone()));
                    }
                    continue;
                }
            };
            let keys: Vec<SecretRef> = items
                .iter()
                .map(|i| {
                    let key = parsed[*i].as_ref().expect("allowed item").0.without_key();
                    configured
                        .backend
                        .cache_key(&key)
                        .unwrap_or(key)
                        .read_as(role.clone())
                })
                .collect();
            let backend = Arc::clone(&configured.backend);
            let metrics = Arc::clone(&self.metrics);
            let fetch_many: FetchMany = Box::new(move |keys: Vec<SecretRef>| {
                async move {
                    tracing::debug!(count = keys.len(), "backend batch fetch");
                    let started = std::time::Instant::now();
                    let results = backend.fetch_many(&keys).await;
                    let failed = results.iter().any(counts_as_error);
                    metrics.backend_call(kind, started.elapsed(), failed);
                    results
                }
                .boxed()
            });
            groups.push(async move {
                let served = self.cache.get_many(&keys, configured.ttl, fetch_many).await;
                (items, keys, role, configured, served)
            });
        }
        for (items, keys, role, configured, served) in futures::future::join_all(groups).await {
            for ((i, key), mut served) in items.into_iter().zip(keys).zip(served) {
                let (reference, scope) = parsed[i].take().expect("allowed item");
                let own = reference.without_key().read_as(role.clone());
                if key != own && matches!(served, Err(CacheError::NotFound(_))) {
                    served = self.read_again_as_spelled(&configured, &own).await;
                }
                results[i] = Some(self.finish_read(caller, &reference, scope, served));
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every item answered"))
            .collect())
    }

    pub async fn list(&self, caller: &Caller, prefix: &str) -> Result<Vec<ListedSecret>, Error> {
        let (kind, name_prefix) = reference::parse_prefix(prefix)?;
        let policy = self.policy.current();
        if !policy.grants_any(caller, Operation::List, kind) {
            self.audit.deny(caller, Operation::List, prefix);
            return Err(denied(Operation::List, prefix));
        }
        // Allowed to list: each entry is then shown only where a rule allows it.
        let scope = self.audit_trail_works(self.audit.scope(
            caller,
            Operation::List,
            prefix,
            "(per-entry)".into(),
        ))?;
        let role = self.role_for(caller, kind);
        let listed = match self.backend_as(kind, role.as_ref()) {
            Ok(configured) => configured
                .backend
                .list(name_prefix)
                .await
                .map_err(|e| Error::from_backend(kind, &e)),
            Err(e) => Err(e),
        };
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) => {
                scope.finish(Outcome::Failed(e.code_name()));
                return Err(e);
            }
        };
        let visible: Vec<ListedSecret> = listed
            .into_iter()
            .filter(|l| {
                policy
                    .decide(caller, Operation::List, kind, &l.name)
                    .is_allowed()
            })
            .map(|l| ListedSecret {
                reference: format!("{kind}:{}", l.name),
                listed: l,
            })
            .collect();
        scope.finish(Outcome::Done);
        Ok(visible)
    }

    pub async fn put(
        &self,
        caller: &Caller,
        text: &str,
        value: SecretValue,
    ) -> Result<(SecretRef, Written), Error> {
        let reference = SecretRef::parse(text)?;
        if reference.selector().is_some() || reference.key().is_some() {
            return Err(Error::InvalidArgument(format!(
                "put writes a new version of a whole secret: '{text}' must not have a ?selector or #key"
            )));
        }
        let scope = self.authorize(caller, Operation::Write, &reference, text)?;
        let role = self.role_for(caller, reference.backend());
        let result = self.write(&reference, role.as_ref(), value).await;
        scope.finish(done_or_failed(&result));
        result.map(|written| (reference.at_version(written.version_id.clone()), written))
    }

    pub fn whoami(&self, caller: &Caller) -> Grants {
        self.policy.current().grants_for(caller)
    }

    /// The IAM role `caller` reads AWS under, and the `[[role]]` that says so (for `WhoAmI`).
    pub fn aws_role(&self, caller: &Caller) -> Option<(String, AssumedRole)> {
        let policy = self.policy.current();
        let mapping = policy.role_for(caller)?;
        Some((mapping.name.clone(), assumed_role(mapping, caller)))
    }

    /// The IAM role `caller` reads `kind` under: the first `[[role]]` selecting it, for the AWS
    /// backends; None (the agent's own credentials) otherwise.
    fn role_for(&self, caller: &Caller, kind: BackendKind) -> Option<Arc<AssumedRole>> {
        if !kind.reads_under_iam_role() {
            return None;
        }
        let policy = self.policy.current();
        policy
            .role_for(caller)
            .map(|mapping| Arc::new(assumed_role(mapping, caller)))
    }

    /// The backend of `kind` as a read under `role` sees it.
    fn backend_as(
        &self,
        kind: BackendKind,
        role: Option<&Arc<AssumedRole>>,
    ) -> Result<Configured, Error> {
        self.backend(kind)?;
        self.backends.resolve(kind, role).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "the {kind} backend cannot read under an IAM role on this agent"
            ))
        })
    }

    /// Checks policy. A denial is recorded here; an allowed operation gets the scope that
    /// records it when it ends (with the allowing rule).
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        op: Operation,
        reference: &SecretRef,
        text: &'a str,
    ) -> Result<Scope<'a>, Error> {
        let policy = self.policy.current();
        let decision = policy.decide(caller, op, reference.backend(), reference.policy_name());
        self.record_decision(caller, op, text, decision)
    }

    /// `authorize` once the policy has decided: a denial recorded and returned, an allowed
    /// operation's audit scope begun.
    fn record_decision<'a>(
        &'a self,
        caller: &'a Caller,
        op: Operation,
        text: &'a str,
        decision: crate::policy::Decision<'_>,
    ) -> Result<Scope<'a>, Error> {
        match decision {
            crate::policy::Decision::Allow { rule } => {
                self.audit_trail_works(self.audit.scope(caller, op, text, rule.to_owned()))
            }
            crate::policy::Decision::Deny => Err(self.refuse(caller, op, text)),
        }
    }

    /// A denied operation, recorded: the error the caller gets.
    fn refuse(&self, caller: &Caller, op: Operation, text: &str) -> Error {
        self.audit.deny(caller, op, text);
        denied(op, text)
    }

    /// With `audit.fail_closed`, nothing is served while audit records cannot be written: the
    /// records kept meanwhile are tried again first, and the first success ends the refusals.
    /// A refused operation is recorded as `unavailable`.
    fn audit_trail_works<'a>(&self, scope: Scope<'a>) -> Result<Scope<'a>, Error> {
        if !self.audit.refuses_requests() || self.audit.trail().retry() {
            return Ok(scope);
        }
        scope.finish(Outcome::Failed("unavailable"));
        Err(Error::Unavailable(
            "the agent cannot write its audit trail, and refuses requests until it can \
             (audit.fail_closed)"
                .into(),
        ))
    }

    /// A read the backend answered NOT_FOUND under another name it knew the secret by (a Secrets
    /// Manager ARN, which a delete and re-create changes): read again by the caller's own name,
    /// which may now name a new secret. The old values under that name are dropped first, so a
    /// value of the deleted secret is not served stale in its place.
    async fn read_again_as_spelled(
        &self,
        configured: &Configured,
        own: &SecretRef,
    ) -> Result<Served, CacheError> {
        self.cache.invalidate_secret(own, None).await;
        self.cache
            .get(own, configured.ttl, || {
                self.fetch_one(configured, own.clone())
            })
            .await
    }

    /// The backend read behind a cache miss, counted for `Stats`.
    fn fetch_one(
        &self,
        configured: &Configured,
        key: SecretRef,
    ) -> impl std::future::Future<Output = Result<crate::backend::Fetched, BackendError>> + Send + 'static
    {
        let backend = Arc::clone(&configured.backend);
        let metrics = Arc::clone(&self.metrics);
        async move {
            tracing::debug!(reference = %key, "backend fetch");
            let started = std::time::Instant::now();
            let result = backend.fetch(&key).await;
            metrics.backend_call(key.backend(), started.elapsed(), counts_as_error(&result));
            result
        }
    }

    fn backend(&self, kind: BackendKind) -> Result<&Configured, Error> {
        self.backends.get(kind).ok_or_else(|| {
            Error::FailedPrecondition(match self.backends.why_off(kind) {
                Some(why) => format!("the {kind} backend is {why}"),
                None => format!(
                    "the {kind} backend is not enabled on this agent (see [[backend]] in its config)"
                ),
            })
        })
    }

    /// Turns what the cache served into the caller's answer: checks the policy again when the
    /// backend named the secret differently (an ARN resolves to a name), then picks the `#key`.
    /// Records the read in `scope` (as a denial when the backend's own name for the secret is
    /// not allowed; AWS refusing the caller's role is a failure under the allowing rule).
    fn finish_read(
        &self,
        caller: &Caller,
        reference: &SecretRef,
        scope: Scope<'_>,
        served: Result<Served, CacheError>,
    ) -> Result<ServedSecret, Error> {
        let kind = reference.backend();
        let served = match served {
            Ok(served) => served,
            Err(e) => {
                let e = match e {
                    CacheError::NotFound(m) => Error::NotFound(m),
                    CacheError::Backend(e) => Error::from_backend(kind, &e),
                };
                scope.finish(Outcome::Failed(e.code_name()));
                return Err(e);
            }
        };
        if let Some(name) = &served.secret.canonical_name {
            if name != reference.policy_name()
                && !self
                    .policy
                    .current()
                    .decide(caller, Operation::Read, kind, name)
                    .is_allowed()
            {
                scope.deny();
                return Err(denied(Operation::Read, &reference.to_string()));
            }
        }
        let value = match reference.key() {
            None => Arc::clone(&served.secret.value),
            Some(json_key) => match select_json_key(reference, &served.secret.value, json_key) {
                Ok(value) => Arc::new(value),
                Err(e) => {
                    scope.finish(Outcome::Failed(e.code_name()));
                    return Err(e);
                }
            },
        };
        scope.finish(if served.stale {
            Outcome::Stale
        } else if served.hit {
            Outcome::Hit
        } else {
            Outcome::Miss
        });
        Ok(ServedSecret {
            reference: reference.clone(),
            secret: served.secret,
            value,
            hit: served.hit,
            stale: served.stale,
        })
    }

    async fn write(
        &self,
        reference: &SecretRef,
        role: Option<&Arc<AssumedRole>>,
        value: SecretValue,
    ) -> Result<Written, Error> {
        if value.is_empty() {
            return Err(Error::InvalidArgument(
                "empty value: a secret needs at least one byte".into(),
            ));
        }
        if value.len() > self.limits.max_value_bytes {
            return Err(Error::InvalidArgument(format!(
                "value is {} bytes, more than the {} allowed",
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        let kind = reference.backend();
        let configured = self.backend_as(kind, role)?;
        let written = configured
            .backend
            .put(reference.name(), value)
            .await
            .map_err(|e| Error::from_backend(kind, &e))?;
        // The current version changed (and stages with it): the next reads must see it.
        self.invalidate_secret(reference).await;
        Ok(written)
    }

    /// Drops every cached entry of a secret: all versions and stages, every spelling the
    /// backend maps to one key. Returns how many went.
    async fn invalidate_secret(&self, reference: &SecretRef) -> u64 {
        let key = reference.without_key();
        let alias = self
            .backend(reference.backend())
            .ok()
            .and_then(|c| c.backend.cache_key(&key));
        self.cache.invalidate_secret(&key, alias.as_ref()).await
    }
}

/// What a `[[role]]` mapping makes of one caller: the role, assumed as this caller.
fn assumed_role(mapping: &RoleMapping, caller: &Caller) -> AssumedRole {
    AssumedRole {
        arn: mapping.aws_role.clone(),
        external_id: mapping.external_id.clone(),
        identity: session_identity(caller),
    }
}

/// NOT_FOUND is an answer, not a failure of the backend.
fn counts_as_error<T>(result: &Result<T, BackendError>) -> bool {
    matches!(result, Err(e) if !matches!(e, BackendError::NotFound(_)))
}

fn denied(op: Operation, text: &str) -> Error {
    Error::PermissionDenied(format!(
        "permission denied: policy does not grant {op} on {text} to this caller"
    ))
}

/// The value of one top-level key of a JSON object: strings as their text, anything else as
/// its JSON.
fn select_json_key(
    reference: &SecretRef,
    value: &SecretValue,
    key: &str,
) -> Result<SecretValue, Error> {
    let object: HashMap<String, &RawValue> =
        serde_json::from_slice(value.expose()).map_err(|_| {
            Error::InvalidArgument(format!(
                "{} is not a JSON object, so #{key} cannot select from it",
                reference.without_key()
            ))
        })?;
    let raw = object.get(key).ok_or_else(|| {
        Error::NotFound(format!(
            "key '{key}' not found in {}",
            reference.without_key()
        ))
    })?;
    if raw.get().starts_with('"') {
        let text: String = serde_json::from_str(raw.get())
            .map_err(|_| Error::Internal("json string did not decode".into()))?;
        Ok(SecretValue::new(text.into_bytes()))
    } else {
        Ok(SecretValue::from_slice(raw.get().as_bytes()))
    }
}

/// Cache defaults shared by the config and dev mode.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests;
