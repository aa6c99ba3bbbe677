//! Rotation: change detection and the push to watchers, and generated values.
//!
//! Each watched secret has one poller, however many callers watch it: every interval (with
//! jitter) it asks the backend for the secret's versions with its cheapest metadata call
//! (`Backend::versions`); on a change it refreshes the cached value and publishes the new state
//! on a `tokio::sync::watch` channel. That channel holds only the newest state, so a slow watcher
//! never builds a backlog: it skips straight to the latest. When the last watcher goes, the poller
//! stops.
//!
//! With a change feed (`feed.rs`: AWS change events from SQS), an event invalidates the matching
//! cache entries and wakes the matching pollers at once; while the feed is healthy, pollers wait
//! `feed.healthy_interval` instead of `watch.interval`, and when it fails they return to
//! `watch.interval` (each within one interval, at a random point, so a fleet does not poll in
//! step).

pub(crate) mod feed;
pub(crate) mod generate;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    sync::{watch, Notify},
    time::Instant,
};

use self::feed::{Change, FeedStatus};
use crate::{
    backend::{BackendError, Backends},
    cache::{jittered, CacheError, CachedSecret, SecretCache},
    reference::SecretRef,
};

/// How often watched secrets are polled, and how much of the interval is random.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    pub interval: Duration,
    pub jitter: f64,
    /// The change feed, when one is configured: while it is healthy, pollers wait
    /// `healthy_interval` instead of `interval`.
    pub feed: Option<FeedPolling>,
}

/// How the change feed slows polling.
#[derive(Clone, Debug)]
pub struct FeedPolling {
    pub status: Arc<FeedStatus>,
    pub healthy_interval: Duration,
    /// A poller woken by an event checks after a random delay up to this long, so a large fleet
    /// does not call a backend with a low quota (Parameter Store: 40/s) all in the same second.
    pub spread: Duration,
}

/// What the watchers of one secret see: its current version, and any pending one.
#[derive(Debug, Default)]
pub struct WatchState {
    /// False until the first read finished.
    pub loaded: bool,
    /// The current version; None when the secret does not exist.
    pub secret: Option<Arc<CachedSecret>>,
    pub pending: Option<String>,
}

impl WatchState {
    pub fn version_id(&self) -> Option<&str> {
        self.secret.as_ref().map(|s| s.version_id.as_str())
    }
}

/// Cheap to clone: clones share the pollers.
#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    backends: Backends,
    cache: Arc<SecretCache>,
    settings: WatchSettings,
    watched: Mutex<HashMap<SecretRef, Poller>>,
    shutdown: watch::Sender<bool>,
    polls: AtomicU64,
    rotations_seen: AtomicU64,
}

/// One watched secret: its watchers' channel, and the bell the change feed rings.
struct Poller {
    tx: watch::Sender<Arc<WatchState>>,
    wake: Arc<Notify>,
}

impl WatchHub {
    pub fn new(backends: Backends, cache: Arc<SecretCache>, settings: WatchSettings) -> Self {
        Self {
            inner: Arc::new(HubInner {
                backends,
                cache,
                settings,
                watched: Mutex::new(HashMap::new()),
                shutdown: watch::Sender::new(false),
                polls: AtomicU64::new(0),
                rotations_seen: AtomicU64::new(0),
            }),
        }
    }

    /// Follows `key` (a reference without selector or `#key`), starting its poller if it is the
    /// first watcher.
    pub fn subscribe(&self, key: &SecretRef) -> watch::Receiver<Arc<WatchState>> {
        let mut watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(poller) = watched.get(key) {
            return poller.tx.subscribe();
        }
        let (tx, rx) = watch::channel(Arc::new(WatchState::default()));
        let wake = Arc::new(Notify::new());
        watched.insert(
            key.clone(),
            Poller {
                tx: tx.clone(),
                wake: Arc::clone(&wake),
            },
        );
        tokio::spawn(poll(Arc::clone(&self.inner), key.clone(), tx, wake));
        rx
    }

    /// A change event from the feed: drops the cached values of the secret it names (every
    /// spelling, every role) and wakes its pollers, which check its versions now and push only
    /// if the current version really changed. Returns how many pollers were woken. The event
    /// itself carries nothing into the cache: it can only cause a re-read.
    pub async fn changed(&self, change: &Change) -> usize {
        self.inner
            .cache
            .invalidate_where(|key| change.names(key))
            .await;
        let watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
        let mut woken = 0;
        for (key, poller) in watched.iter() {
            if change.names(key) {
                // A stored permit: a poller busy with a check runs another one right after.
                poller.wake.notify_one();
                woken += 1;
            }
        }
        woken
    }

    /// The change feed's status, when one is configured.
    pub fn feed(&self) -> Option<&Arc<FeedStatus>> {
        self.inner.settings.feed.as_ref().map(|f| &f.status)
    }

    /// Tells every watch stream to end (the agent is shutting down).
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Open watches, over all secrets.
    pub fn watchers(&self) -> u64 {
        let watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.values().map(|p| p.tx.receiver_count() as u64).sum()
    }

    /// Secrets with at least one watcher.
    pub fn watched_secrets(&self) -> usize {
        self.inner
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// New versions detected since start.
    pub fn rotations_seen(&self) -> u64 {
        self.inner.rotations_seen.load(Ordering::Relaxed)
    }

    /// Version polls sent to backends since start.
    pub fn polls(&self) -> u64 {
        self.inner.polls.load(Ordering::Relaxed)
    }
}

/// The poller of one secret: loads it, then checks its versions every interval (or at once, when
/// the change feed rings `wake`) until nobody watches it any more or the agent stops.
async fn poll(
    hub: Arc<HubInner>,
    key: SecretRef,
    tx: watch::Sender<Arc<WatchState>>,
    wake: Arc<Notify>,
) {
    // A key read under a role is polled under that role: its watchers' role.
    let Some(configured) = hub.backends.resolve(key.backend(), key.role()) else {
        return;
    };
    let mut shutdown = hub.shutdown.subscribe();
    let mut feed_healthy = hub.settings.feed.as_ref().map(|f| f.status.subscribe());
    let mut state = Arc::new(WatchState::default());
    // A failed check is retried at watch.interval even while the feed is healthy: the event
    // that woke it (if any) has been consumed.
    let mut failed = false;
    // The first wait is anywhere in the interval, so pollers started together (a fleet
    // restarting at once, a thousand watches opened at start) do not poll in step ever after.
    let mut jitter = 1.0;
    loop {
        if !state.loaded {
            match read(&hub, &configured, &key).await {
                Ok(secret) => {
                    state = Arc::new(after(&hub, &state, secret, None));
                    tx.send_replace(Arc::clone(&state));
                }
                Err(e) => {
                    tracing::debug!(reference = %key, error = %e, "watch: first read failed; retrying")
                }
            }
        }
        let slow = !failed
            && feed_healthy
                .as_mut()
                .is_some_and(|h| *h.borrow_and_update());
        let interval = match (&hub.settings.feed, slow) {
            (Some(feed), true) => feed.healthy_interval,
            _ => hub.settings.interval,
        };
        let period_start = Instant::now();
        let wait_jitter = jitter;
        let mut deadline = period_start + jittered(interval, wait_jitter);
        jitter = hub.settings.jitter;
        let mut slowed = slow;
        let woken = loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break false,
                () = wake.notified() => break true,
                changed = async {
                    match feed_healthy.as_mut() {
                        Some(h) => h.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if changed.is_err() {
                        feed_healthy = None;
                    }
                    let healthy = feed_healthy.as_mut().is_some_and(|h| *h.borrow_and_update());
                    if slowed && !healthy {
                        // The feed failed: back to watch.interval, the next check at a random
                        // point within one interval so a fleet falling back together spreads out.
                        deadline = deadline.min(Instant::now() + jittered(hub.settings.interval, 1.0));
                        slowed = false;
                    } else if !slowed && healthy && !failed {
                        // The feed started working (at start, or back after a failure): this
                        // wait becomes a slow one too.
                        if let Some(feed) = &hub.settings.feed {
                            deadline = period_start + jittered(feed.healthy_interval, wait_jitter);
                            slowed = true;
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        };
        if woken {
            if let Some(feed) = hub.settings.feed.as_ref().filter(|f| !f.spread.is_zero()) {
                tokio::select! {
                    () = tokio::time::sleep(jittered(feed.spread, 1.0)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
        {
            // Checked under the lock subscribers take, so none can join a poller that is leaving.
            let mut watched = hub.watched.lock().unwrap_or_else(|p| p.into_inner());
            if tx.receiver_count() == 0 {
                if watched.get(&key).is_some_and(|p| p.tx.same_channel(&tx)) {
                    watched.remove(&key);
                }
                return;
            }
        }
        if !state.loaded {
            continue;
        }
        if woken && !configured.backend.has_pending_versions() {
            // The event dropped the cached value: read it (one call) and compare versions.
            match read(&hub, &configured, &key).await {
                Ok(secret) => {
                    failed = false;
                    let current = secret.as_ref().map(|s| s.version_id.as_str());
                    if current != state.version_id() {
                        state = Arc::new(after(&hub, &state, secret, None));
                        tx.send_replace(Arc::clone(&state));
                    }
                }
                Err(e) => {
                    tracing::debug!(reference = %key, error = %e, "watch: reading after a change event failed");
                    failed = true;
                }
            }
            continue;
        }
        hub.polls.fetch_add(1, Ordering::Relaxed);
        let versions = match configured.backend.versions(&key).await {
            Ok(versions) => versions,
            Err(e) => {
                tracing::debug!(reference = %key, error = %e, "watch: version poll failed");
                failed = true;
                continue;
            }
        };
        failed = false;
        let next = if versions.current.as_deref() != state.version_id() {
            if versions.current.is_none() {
                Some(WatchState {
                    loaded: true,
                    secret: None,
                    pending: None,
                })
            } else {
                // A new version: refresh the cached value for readers too, then publish it.
                let alias = configured.backend.cache_key(&key);
                hub.cache.invalidate_secret(&key, alias.as_ref()).await;
                match read(&hub, &configured, &key).await {
                    Ok(secret) => Some(after(&hub, &state, secret, versions.pending.clone())),
                    Err(e) => {
                        tracing::debug!(reference = %key, error = %e, "watch: reading the new version failed");
                        failed = true;
                        None
                    }
                }
            }
        } else if versions.pending != state.pending {
            Some(WatchState {
                loaded: true,
                secret: state.secret.clone(),
                pending: versions.pending.clone(),
            })
        } else {
            None
        };
        if let Some(next) = next {
            state = Arc::new(next);
            tx.send_replace(Arc::clone(&state));
        }
    }
}

/// The state that follows `state` once `secret` was read: a rotation seen when one version
/// replaced another.
fn after(
    hub: &HubInner,
    state: &WatchState,
    secret: Option<Arc<CachedSecret>>,
    pending: Option<String>,
) -> WatchState {
    if state.secret.is_some() && secret.is_some() {
        hub.rotations_seen.fetch_add(1, Ordering::Relaxed);
    }
    WatchState {
        loaded: true,
        secret,
        pending,
    }
}

/// The current value through the cache (None: the secret does not exist).
async fn read(
    hub: &HubInner,
    configured: &crate::backend::Configured,
    key: &SecretRef,
) -> Result<Option<Arc<CachedSecret>>, Arc<BackendError>> {
    let fetch = || {
        let backend = Arc::clone(&configured.backend);
        let key = key.clone();
        async move { backend.fetch(&key).await }
    };
    let served = hub.cache.get(key, configured.ttl, fetch).await;
    match served {
        Ok(served) => Ok(Some(served.secret)),
        Err(CacheError::NotFound(_)) => Ok(None),
        Err(CacheError::Backend(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{backend::memory::MemoryBackend, cache::CacheSettings};

    fn hub(backend: &MemoryBackend, status: Arc<FeedStatus>) -> WatchHub {
        hub_with_spread(backend, status, Duration::ZERO)
    }

    fn hub_with_spread(
        backend: &MemoryBackend,
        status: Arc<FeedStatus>,
        spread: Duration,
    ) -> WatchHub {
        let mut backends = Backends::default();
        backends.insert(Arc::new(backend.clone()), Duration::from_secs(3600));
        let cache = Arc::new(SecretCache::new(CacheSettings {
            max_bytes: 1 << 20,
            negative_ttl: Duration::from_secs(5),
            max_stale: Duration::ZERO,
            ttl_jitter: 0.0,
            stale_deadline: crate::config::DEFAULT_STALE_DEADLINE,
        }));
        WatchHub::new(
            backends,
            cache,
            WatchSettings {
                interval: Duration::from_secs(60),
                jitter: 0.0,
                feed: Some(FeedPolling {
                    status,
                    healthy_interval: Duration::from_secs(3600),
                    spread,
                }),
            },
        )
    }

    async fn next_version(
        rx: &mut watch::Receiver<Arc<WatchState>>,
        within: Duration,
    ) -> Option<String> {
        tokio::time::timeout(within, rx.changed())
            .await
            .ok()?
            .ok()?;
        let version = rx.borrow_and_update().version_id().map(str::to_owned);
        version
    }

    #[tokio::test(start_paused = true)]
    async fn events_wake_pollers_a_healthy_feed_slows_them_and_a_failing_one_brings_them_back() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("a", b"v1");
        let status = Arc::new(FeedStatus::new(Duration::from_secs(24 * 3600)));
        status.received(true);
        let hub = hub(&backend, Arc::clone(&status));
        let mut rx = hub.subscribe(&SecretRef::parse("local:a").unwrap());
        let within = Duration::from_secs(1);
        assert_eq!(next_version(&mut rx, within).await.as_deref(), Some("1"));

        // An event for another secret wakes nothing; one for this secret is seen at once.
        backend.insert("a", b"v2");
        let other = Change {
            backend: crate::backend::local::KIND,
            names: vec!["b".into()],
        };
        assert_eq!(hub.changed(&other).await, 0);
        let this = Change {
            backend: crate::backend::local::KIND,
            names: vec!["a".into()],
        };
        assert_eq!(hub.changed(&this).await, 1);
        assert_eq!(next_version(&mut rx, within).await.as_deref(), Some("2"));
        // The same event again: checked, nothing new to push.
        let fetches = backend.fetches();
        hub.changed(&this).await;
        assert_eq!(next_version(&mut rx, within).await, None);
        assert_eq!(backend.fetches(), fetches + 1, "the woken poller read once");

        // A change without an event: the feed is healthy, so the next poll is an hour away.
        backend.insert("a", b"v3");
        assert_eq!(next_version(&mut rx, Duration::from_secs(600)).await, None);
        // The feed fails: polling returns to the 60 s interval at once.
        status.received(false);
        assert_eq!(
            next_version(&mut rx, Duration::from_secs(61))
                .await
                .as_deref(),
            Some("3")
        );
        assert_eq!(hub.rotations_seen(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn woken_pollers_spread_their_checks_over_feed_spread() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        let status = Arc::new(FeedStatus::new(Duration::from_secs(24 * 3600)));
        status.received(true);
        let spread = Duration::from_secs(10);
        let hub = hub_with_spread(&backend, Arc::clone(&status), spread);
        let mut receivers = Vec::new();
        for i in 0..20 {
            backend.insert(&format!("s{i}"), b"v1");
            let mut rx = hub.subscribe(&SecretRef::parse(&format!("local:s{i}")).unwrap());
            assert!(next_version(&mut rx, Duration::from_secs(1))
                .await
                .is_some());
            receivers.push(rx);
        }
        let started = Instant::now();
        for i in 0..20 {
            backend.insert(&format!("s{i}"), b"v2");
            hub.changed(&Change {
                backend: crate::backend::local::KIND,
                names: vec![format!("s{i}")],
            })
            .await;
        }
        let mut latest = Duration::ZERO;
        for rx in &mut receivers {
            assert_eq!(
                next_version(rx, spread + Duration::from_millis(100))
                    .await
                    .as_deref(),
                Some("2"),
                "every woken poller checks within the spread"
            );
            latest = latest.max(started.elapsed());
        }
        // Twenty uniform delays all under half the spread: one chance in a million.
        assert!(
            latest > spread / 2,
            "checks were spread out: last at {latest:?}"
        );
    }
}
