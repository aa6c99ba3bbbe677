//! The managing side of the core: rotation, generated values, and the Admin service's
//! invalidation, stats and policy reload.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Agent, Error};
use crate::{
    audit::Outcome,
    backend::aws::role::{AssumedRole, RoleUsage},
    identity::Caller,
    policy::Operation,
    reference::{self, BackendKind, SecretRef},
    rotation::generate::{self, GeneratorOptions},
    secret::SecretValue,
};

/// What `rotate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// The new current version as a reference (empty when the backend rotates by itself).
    pub reference: String,
    pub version_id: String,
    pub previous_version_id: String,
    /// The backend runs the rotation (a Secrets Manager rotation Lambda).
    pub delegated: bool,
}

/// The agent's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub cache_entries: u64,
    pub cache_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub stale_served: u64,
    pub watchers: u64,
    pub rotations_seen: u64,
    pub policy_rules: u32,
    /// Per enabled backend: name, calls, errors.
    pub backends: Vec<(BackendKind, u64, u64)>,
    /// Per IAM role callers read under: sessions, STS and backend calls, cache use.
    pub roles: Vec<RoleUsage>,
}

impl Agent {
    /// Rotates a secret: the backend's own rotation when it has one, else a generated value
    /// (or, with `json_key`, the current JSON value with that key regenerated) written as the
    /// new current version.
    pub async fn rotate(
        &self,
        caller: &Caller,
        text: &str,
        options: &GeneratorOptions,
        json_key: Option<&str>,
    ) -> Result<Rotated, Error> {
        let reference = SecretRef::parse(text)?;
        if reference.selector().is_some() || reference.key().is_some() {
            return Err(Error::InvalidArgument(format!(
                "rotate makes a new current version: '{text}' must not have a ?selector or #key (use json_key)"
            )));
        }
        let scope = self.authorize(caller, Operation::Rotate, &reference, text)?;
        let role = self.role_for(caller, reference.backend());
        let result = self
            .rotate_allowed(&reference, role.as_ref(), options, json_key)
            .await;
        scope.finish(super::done_or_failed(&result));
        result
    }

    async fn rotate_allowed(
        &self,
        reference: &SecretRef,
        role: Option<&Arc<AssumedRole>>,
        options: &GeneratorOptions,
        json_key: Option<&str>,
    ) -> Result<Rotated, Error> {
        let kind = reference.backend();
        let configured = self.backend_as(kind, role)?;
        let backend = &configured.backend;
        let from_backend = |e: crate::backend::BackendError| Error::from_backend(kind, &e);
        let previous = backend
            .versions(reference)
            .await
            .map_err(from_backend)?
            .current;
        if json_key.is_none()
            && backend
                .start_managed_rotation(reference.name())
                .await
                .map_err(from_backend)?
        {
            self.invalidate_secret(reference).await;
            return Ok(Rotated {
                reference: String::new(),
                version_id: String::new(),
                previous_version_id: previous.unwrap_or_default(),
                delegated: true,
            });
        }
        let generated =
            generate::generate(options).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let value = match json_key {
            None => generated,
            Some(key) => {
                let current = backend.fetch(reference).await.map_err(from_backend)?;
                replace_json_key(reference, &current.value, key, &generated)?
            }
        };
        let written = backend
            .rotate(reference.name(), value)
            .await
            .map_err(from_backend)?;
        self.invalidate_secret(reference).await;
        Ok(Rotated {
            reference: reference.at_version(written.version_id.clone()).to_string(),
            version_id: written.version_id,
            previous_version_id: previous.unwrap_or_default(),
            delegated: false,
        })
    }

    /// A generated value; nothing is stored. Any identified caller may ask.
    pub fn generate(&self, options: &GeneratorOptions) -> Result<SecretValue, Error> {
        generate::generate(options).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// Drops cached values: of one reference, or of every cached reference under a prefix whose
    /// secret the caller's `admin` grant covers. Returns how many entries went.
    pub async fn invalidate(
        &self,
        caller: &Caller,
        reference: &str,
        prefix: &str,
    ) -> Result<u64, Error> {
        match (reference.is_empty(), prefix.is_empty()) {
            (false, true) => {
                let reference = SecretRef::parse(reference)?;
                let text = reference.to_string();
                let scope = self.authorize(caller, Operation::Admin, &reference, &text)?;
                let count = self.invalidate_secret(&reference).await;
                scope.finish(Outcome::Done);
                Ok(count)
            }
            (true, false) => {
                let (kind, name_prefix) = reference::parse_prefix(prefix)?;
                let policy = self.policy.current();
                if !policy.grants_any(caller, Operation::Admin, kind) {
                    self.audit.deny(caller, Operation::Admin, prefix);
                    return Err(super::denied(Operation::Admin, prefix));
                }
                let scope = self.audit_trail_works(self.audit.scope(
                    caller,
                    Operation::Admin,
                    prefix,
                    "(per-entry)".into(),
                ))?;
                let count = self
                    .cache
                    .invalidate_where(|key| {
                        key.backend() == kind
                            && key.name().starts_with(name_prefix)
                            && policy
                                .decide(caller, Operation::Admin, kind, key.policy_name())
                                .is_allowed()
                    })
                    .await;
                scope.finish(Outcome::Done);
                Ok(count)
            }
            _ => Err(Error::InvalidArgument(
                "give exactly one of reference and prefix".into(),
            )),
        }
    }

    pub fn stats(&self, caller: &Caller) -> Result<Stats, Error> {
        self.require_admin(caller, "stats")?;
        let (cache_entries, cache_bytes) = self.cache.usage();
        let counters = self.cache.counters();
        let backends = self
            .backends
            .kinds()
            .map(|kind| {
                let (calls, errors) = self.metrics.backend_totals(kind);
                (kind, calls, errors)
            })
            .collect();
        let mut roles = self.backends.roles().map(|r| r.usage()).unwrap_or_default();
        let by_role = self.cache.usage_by_role();
        for role in &mut roles {
            (role.cache_entries, role.cache_bytes) =
                by_role.get(&role.arn).copied().unwrap_or_default();
        }
        Ok(Stats {
            cache_entries,
            cache_bytes,
            cache_hits: counters.hits,
            cache_misses: counters.misses,
            stale_served: counters.stale,
            watchers: self.hub.watchers(),
            rotations_seen: self.hub.rotations_seen(),
            policy_rules: self.policy.current().rule_count() as u32,
            backends,
            roles,
        })
    }

    /// Reloads the policy file now. Returns the number of rules in force.
    pub fn reload_policy(&self, caller: &Caller) -> Result<usize, Error> {
        self.require_admin(caller, "reload-policy")?;
        match self.policy.reload() {
            Ok(true) => Ok(self.policy.current().rule_count()),
            Ok(false) => Err(Error::FailedPrecondition(
                "the policy did not come from a file (dev mode): nothing to reload".into(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "policy not reloaded; the previous policy stays in force");
                Err(Error::FailedPrecondition(format!(
                    "policy not reloaded, the previous one stays in force: {}",
                    e.reason()
                )))
            }
        }
    }

    fn require_admin(&self, caller: &Caller, what: &str) -> Result<(), Error> {
        if self
            .policy
            .current()
            .grants_anywhere(caller, Operation::Admin)
        {
            self.audit_trail_works(self.audit.scope(
                caller,
                Operation::Admin,
                what,
                "(any admin grant)".into(),
            ))?
            .finish(Outcome::Done);
            Ok(())
        } else {
            self.audit.deny(caller, Operation::Admin, what);
            Err(super::denied(Operation::Admin, what))
        }
    }
}

/// The JSON object `current` with `key` set to `generated`; every other key kept.
fn replace_json_key(
    reference: &SecretRef,
    current: &SecretValue,
    key: &str,
    generated: &SecretValue,
) -> Result<SecretValue, Error> {
    let mut object: Map<String, Value> =
        serde_json::from_slice(current.expose()).map_err(|_| {
            Error::InvalidArgument(format!(
                "{reference} is not a JSON object, so json_key cannot rotate a key of it"
            ))
        })?;
    let text = String::from_utf8(generated.expose().to_vec())
        .map_err(|_| Error::Internal("generated text".into()))?;
    object.insert(key.to_owned(), Value::String(text));
    let bytes = serde_json::to_vec(&object).map_err(|e| Error::Internal(e.to_string()))?;
    // The parsed copies held plaintext too; clear the strings before they are dropped.
    for value in object.values_mut() {
        if let Value::String(s) = value {
            zeroize::Zeroize::zeroize(s);
        }
    }
    Ok(SecretValue::new(bytes))
}
