//! `WatchSecrets` in the core: the current secret first, then one event per change, from the
//! watch hub's latest-value channels. The stream ends with PERMISSION_DENIED when a policy
//! reload takes the `watch` grant away, and with UNAVAILABLE when the agent shuts down.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use futures::{FutureExt, Stream};
use tokio::sync::watch;

use super::{denied, select_json_key, Agent, Error, ServedSecret};
use crate::{
    audit::Outcome, identity::Caller, policy::Operation, reference::SecretRef, rotation::WatchState,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Current,
    NewVersion,
    PendingVersion,
    Deleted,
}

/// One event of a watch stream.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// The reference as the caller wrote it.
    pub reference: String,
    pub kind: EventKind,
    /// For `Current` and `NewVersion`.
    pub secret: Option<ServedSecret>,
    pub previous_version_id: String,
    pub pending_version_id: String,
    pub observed_at: SystemTime,
}

/// What one stream has told its caller about one reference so far.
struct Seen {
    text: String,
    reference: SecretRef,
    started: bool,
    version: Option<String>,
    pending: Option<String>,
}

impl Agent {
    /// Opens a watch on `texts`. Every reference is parsed and authorized (`watch`) before the
    /// stream starts; `known` maps references to version ids the caller already has (resuming).
    pub fn watch(
        self: &Arc<Self>,
        caller: &Caller,
        texts: &[String],
        known: &HashMap<String, String>,
    ) -> Result<impl Stream<Item = Result<WatchEvent, Error>> + Send + 'static, Error> {
        if texts.is_empty() {
            return Err(Error::InvalidArgument(
                "watch at least one reference".into(),
            ));
        }
        if texts.len() > self.limits.max_batch {
            return Err(Error::InvalidArgument(format!(
                "a watch follows at most {} references, got {}",
                self.limits.max_batch,
                texts.len()
            )));
        }
        let mut seen = Vec::with_capacity(texts.len());
        for text in texts {
            let reference = SecretRef::parse(text)?;
            if reference.selector().is_some() {
                return Err(Error::InvalidArgument(format!(
                    "a watch follows the current version: drop the selector from '{text}'"
                )));
            }
            self.backend(reference.backend())?;
            // A watch is recorded when it is granted (it may stay open for days).
            self.authorize(caller, Operation::Watch, &reference, text)?
                .finish(Outcome::Done);
            seen.push(Seen {
                text: text.clone(),
                version: known.get(text).cloned(),
                reference,
                started: false,
                pending: None,
            });
        }
        let keys: Vec<SecretRef> = seen
            .iter()
            .map(|s| {
                let role = self.role_for(caller, s.reference.backend());
                s.reference.without_key().read_as(role)
            })
            .collect();
        let agent = Arc::clone(self);
        let caller = caller.clone();
        Ok(async_stream::try_stream! {
            // The first reads go out as batch calls; the pollers then find the values cached.
            agent.prefetch(&keys).await;
            let mut receivers: Vec<watch::Receiver<Arc<WatchState>>> =
                keys.iter().map(|key| agent.hub.subscribe(key)).collect();
            let mut policy_changes = agent.policy.changes();
            let mut shutdown = agent.hub.shutdown_signal();
            loop {
                if *shutdown.borrow_and_update() {
                    Err(shutting_down())?;
                }
                for (rx, seen) in receivers.iter_mut().zip(seen.iter_mut()) {
                    let state = Arc::clone(&rx.borrow_and_update());
                    for event in events(seen, &state)? {
                        yield event;
                    }
                }
                let any_changed = futures::future::select_all(receivers.iter_mut().map(|rx| Box::pin(rx.changed())));
                let wake = tokio::select! {
                    (changed, _, _) = any_changed => if changed.is_ok() { Wake::Changed } else { Wake::Closed },
                    _ = policy_changes.changed() => Wake::PolicyReloaded,
                    _ = shutdown.changed() => Wake::Closed,
                };
                match wake {
                    Wake::Changed => {}
                    Wake::Closed => Err(shutting_down())?,
                    Wake::PolicyReloaded => {
                        let policy = agent.policy.current();
                        if let Some(revoked) = seen.iter().find(|s| {
                            !policy.decide(&caller, Operation::Watch, s.reference.backend(), s.reference.policy_name()).is_allowed()
                        }) {
                            agent.audit.deny(&caller, Operation::Watch, &revoked.text);
                            Err(denied(Operation::Watch, &revoked.text))?;
                        }
                    }
                }
            }
        })
    }
}

impl Agent {
    /// Reads the current versions of a watch's secrets into the cache, one batch call per backend
    /// and role (`GetParameters`, `BatchGetSecretValue`) where a watch follows several, instead
    /// of one read per secret by each poller: what a host (or a fleet) starting its watches costs.
    /// Failures are left to the pollers, which read again and retry.
    async fn prefetch(&self, keys: &[SecretRef]) {
        let mut groups: Vec<Vec<SecretRef>> = Vec::new();
        for key in keys {
            match groups
                .iter_mut()
                .find(|g| g[0].backend() == key.backend() && g[0].role() == key.role())
            {
                Some(group) if !group.contains(key) => group.push(key.clone()),
                Some(_) => {}
                None => groups.push(vec![key.clone()]),
            }
        }
        let batches = groups
            .into_iter()
            .filter(|g| g.len() > 1)
            .filter_map(|group| {
                let configured = self.backends.resolve(group[0].backend(), group[0].role())?;
                let backend = Arc::clone(&configured.backend);
                let fetch_many: crate::cache::FetchMany = Box::new(move |keys: Vec<SecretRef>| {
                    async move { backend.fetch_many(&keys).await }.boxed()
                });
                Some(async move {
                    self.cache
                        .get_many(&group, configured.ttl, fetch_many)
                        .await;
                })
            });
        futures::future::join_all(batches).await;
    }
}

/// Why a watch stream woke up.
enum Wake {
    Changed,
    PolicyReloaded,
    /// The agent is shutting down (or the hub went away with it).
    Closed,
}

fn shutting_down() -> Error {
    Error::Unavailable(
        "the agent is shutting down: reconnect and resume with known_versions".into(),
    )
}

/// The events that bring one caller from what it has seen to `state`. Only the newest state is
/// ever compared, so a slow reader gets one event to the newest version, not one per rotation.
fn events(seen: &mut Seen, state: &WatchState) -> Result<Vec<WatchEvent>, Error> {
    if !state.loaded {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    let event = |seen: &Seen, kind, secret| WatchEvent {
        reference: seen.text.clone(),
        kind,
        secret,
        previous_version_id: String::new(),
        pending_version_id: String::new(),
        observed_at: SystemTime::now(),
    };
    match (&state.secret, seen.started) {
        (None, false) => {
            return Err(Error::NotFound(format!(
                "secret {} not found",
                seen.reference.without_key()
            )));
        }
        (None, true) => {
            if seen.version.take().is_some() {
                events.push(event(seen, EventKind::Deleted, None));
            }
        }
        (Some(secret), started) => {
            let version = &secret.version_id;
            if seen.version.as_ref() != Some(version) {
                // A resumed watch whose version changed meanwhile gets the change as a new
                // version: the caller had the previous one.
                let kind = if started || seen.version.is_some() {
                    EventKind::NewVersion
                } else {
                    EventKind::Current
                };
                let served = served(&seen.reference, secret)?;
                let mut e = event(seen, kind, Some(served));
                e.previous_version_id = seen.version.clone().unwrap_or_default();
                events.push(e);
                seen.version = Some(version.clone());
            }
            seen.started = true;
        }
    }
    if state.pending != seen.pending {
        if let Some(pending) = &state.pending {
            let mut e = event(seen, EventKind::PendingVersion, None);
            e.pending_version_id = pending.clone();
            e.previous_version_id = seen.version.clone().unwrap_or_default();
            events.push(e);
        }
        seen.pending = state.pending.clone();
    }
    Ok(events)
}

fn served(
    reference: &SecretRef,
    secret: &Arc<crate::cache::CachedSecret>,
) -> Result<ServedSecret, Error> {
    let value = match reference.key() {
        None => Arc::clone(&secret.value),
        Some(key) => Arc::new(select_json_key(reference, &secret.value, key)?),
    };
    Ok(ServedSecret {
        reference: reference.clone(),
        secret: Arc::clone(secret),
        value,
        hit: true,
        stale: false,
    })
}
