//! The memory-only secret cache, in front of every backend.
//!
//! - **Bounded by bytes** (moka with a weigher); values never leave memory and are zeroized when
//!   the last reference to an evicted entry drops (`SecretValue`). moka's synchronous cache: a
//!   lookup is a plain call, not a future, so a hit costs no async state (the hot path polls its
//!   request's future inline, `agent/src/server/mod.rs`); its housekeeping is short and runs on writes.
//! - **Freshness is ours**, on tokio's clock (so tests pause time): an entry is fresh for its
//!   backend's TTL, then kept up to `max_stale` longer so it can be served, flagged stale, while
//!   the backend is unreachable. moka's own expiry only bounds memory at TTL + `max_stale`.
//! - **Stale while revalidate**: a read of an entry past its TTL (but within `max_stale`) waits
//!   for the refresh at most `stale_deadline`; then it gets the old value, flagged stale, and the
//!   refresh goes on in the background. A backend that hangs or is down costs readers
//!   milliseconds, not its timeouts and retries (and its `CallGuard`'s circuit breaker keeps an
//!   outage to one probe per cooldown).
//! - **Concurrent misses coalesce**: one fetch per key at a time; everyone waiting on it shares
//!   its outcome, success or failure.
//! - **NOT_FOUND is cached briefly** (`negative_ttl`), so a caller polling a missing secret
//!   does not turn into a backend call per request.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use futures::{
    future::{join_all, BoxFuture, Shared},
    FutureExt,
};
use moka::{sync::Cache, Expiry};
use tokio::time::Instant;

use crate::{
    backend::{AwsMetadata, BackendError, Fetched},
    reference::SecretRef,
    secret::SecretValue,
};

/// Fixed per-entry bookkeeping counted against the byte budget besides key and value.
const ENTRY_OVERHEAD_BYTES: u32 = 128;

/// A cached version of a secret.
#[derive(Debug)]
pub struct CachedSecret {
    pub value: Arc<SecretValue>,
    pub version_id: String,
    pub stages: Vec<String>,
    pub created_at: Option<SystemTime>,
    /// The backend's own name for the secret when the reference used another (an ARN).
    pub canonical_name: Option<String>,
    /// Secrets Manager's and Parameter Store's metadata, for the HTTP front door's bodies.
    pub aws: Option<Box<AwsMetadata>>,
    pub fetched_at: SystemTime,
    pub expires_at: SystemTime,
    fresh_until: Instant,
    /// From here on, a read starts a background refresh (refresh ahead).
    refresh_at: Instant,
}

#[cfg(test)]
impl CachedSecret {
    /// An entry as the cache would hold it, for tests of what is made of one.
    pub fn for_test(
        value: SecretValue,
        version_id: &str,
        stages: Vec<String>,
        created_at: Option<SystemTime>,
        aws: Option<Box<AwsMetadata>>,
    ) -> Self {
        let now = Instant::now();
        Self {
            value: Arc::new(value),
            version_id: version_id.to_owned(),
            stages,
            created_at,
            canonical_name: None,
            aws,
            fetched_at: SystemTime::now(),
            expires_at: SystemTime::now(),
            fresh_until: now,
            refresh_at: now,
        }
    }
}

/// A fresh cache entry, found by `SecretCache::fresh`.
pub(crate) struct Fresh {
    entry: Arc<Entry>,
    now: Instant,
}

impl Fresh {
    /// The secret, or None for a remembered "not found".
    pub(crate) fn secret(&self) -> Option<&CachedSecret> {
        match self.entry.as_ref() {
            Entry::Found(secret) => Some(secret),
            Entry::Missing { .. } => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Entry {
    Found(Arc<CachedSecret>),
    Missing {
        message: String,
        fresh_until: Instant,
    },
}

impl Entry {
    fn fresh_until(&self) -> Instant {
        match self {
            Entry::Found(secret) => secret.fresh_until,
            Entry::Missing { fresh_until, .. } => *fresh_until,
        }
    }

    fn weight(&self, key: &SecretRef) -> u32 {
        let payload = match self {
            Entry::Found(s) => {
                s.value.len()
                    + s.version_id.len()
                    + s.stages.iter().map(String::len).sum::<usize>()
                    + s.aws.as_ref().map_or(0, |aws| aws.weight())
            }
            Entry::Missing { message, .. } => message.len(),
        };
        u32::try_from(key.name().len() + payload)
            .unwrap_or(u32::MAX)
            .saturating_add(ENTRY_OVERHEAD_BYTES)
    }
}

/// A secret as served: the entry, and how it was obtained.
#[derive(Debug, Clone)]
pub struct Served {
    pub secret: Arc<CachedSecret>,
    /// Served without a backend call for this request.
    pub hit: bool,
    /// Past its TTL, served because the refresh failed transiently.
    pub stale: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Backend(Arc<BackendError>),
}

#[derive(Clone, Copy, Debug)]
pub struct CacheSettings {
    pub max_bytes: u64,
    pub negative_ttl: Duration,
    pub max_stale: Duration,
    /// Up to this fraction of a TTL is taken off at random, so that values fetched together
    /// (a fleet started together) do not all expire together.
    pub ttl_jitter: f64,
    /// How long a read of a value past its TTL waits for the refresh before it is answered
    /// with the old value, flagged stale.
    pub stale_deadline: Duration,
}

type FetchOutcome = Result<Arc<Entry>, Arc<BackendError>>;
type Pending = Shared<BoxFuture<'static, FetchOutcome>>;
/// One backend call's results: per key, the outcome and another name to file it under.
type BatchOutcome = Shared<BoxFuture<'static, Arc<Vec<(FetchOutcome, Option<String>)>>>>;

/// Fetches a batch of keys in one backend call (or as the backend sees fit), one result per key.
pub(crate) type FetchMany = Box<
    dyn FnOnce(Vec<SecretRef>) -> BoxFuture<'static, Vec<Result<Fetched, BackendError>>> + Send,
>;

pub struct SecretCache {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Cache<SecretRef, Arc<Entry>>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    // Fetches under way, by key, each tagged with an id so only its own fetch removes it.
    inflight: Mutex<HashMap<SecretRef, (u64, Pending)>>,
    next_id: AtomicU64,
    settings: CacheSettings,
}

/// moka keeps an entry until it is neither fresh nor servable stale.
struct KeepWhileServable {
    max_stale: Duration,
}

impl Expiry<SecretRef, Arc<Entry>> for KeepWhileServable {
    fn expire_after_create(
        &self,
        _key: &SecretRef,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(value))
    }

    fn expire_after_update(
        &self,
        _key: &SecretRef,
        value: &Arc<Entry>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.lifetime(value))
    }
}

impl KeepWhileServable {
    fn lifetime(&self, entry: &Entry) -> Duration {
        let fresh_for = entry
            .fresh_until()
            .saturating_duration_since(Instant::now());
        match entry {
            Entry::Found(_) => fresh_for + self.max_stale,
            Entry::Missing { .. } => fresh_for,
        }
    }
}

impl SecretCache {
    pub fn new(settings: CacheSettings) -> Self {
        let entries = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|key: &SecretRef, entry: &Arc<Entry>| entry.weight(key))
            .expire_after(KeepWhileServable {
                max_stale: settings.max_stale,
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                entries,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                stale: AtomicU64::new(0),
                inflight: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                settings,
            }),
        }
    }

    /// Returns the cached secret for `key` if fresh; otherwise runs `fetch` (once, however many
    /// callers ask at the same time) and caches what it returns for about `ttl`.
    pub async fn get<F, Fut>(
        &self,
        key: &SecretRef,
        ttl: Duration,
        fetch: F,
    ) -> Result<Served, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, BackendError>> + Send + 'static,
    {
        // The hot path: a fresh entry, no locks, no allocation.
        let cached = match self.fresh(key) {
            Ok(fresh) => return self.serve_fresh(fresh, key, ttl, fetch),
            Err(cached) => cached,
        };
        let fetch = fetch();
        let fetch_one: FetchMany = Box::new(move |_keys| async move { vec![fetch.await] }.boxed());
        // The miss path's state lives in a box of its own: a hit's future (the one every
        // connection polls inline, `agent/src/server/mod.rs`) stays small, and a small future is
        // cheap to move into place and to wipe when it is freed (`agent/src/main.rs`).
        let mut results =
            Box::pin(self.fetch_missing(std::slice::from_ref(key), vec![cached], ttl, fetch_one))
                .await;
        results.pop().expect("one result per key")
    }

    /// The entry for `key` if it is fresh, as `serve_fresh` takes it; otherwise what the cache
    /// holds (expired, or nothing). Nothing is counted and nothing starts: a caller that finds
    /// the entry fresh but does not serve it leaves no trace.
    pub(crate) fn fresh(&self, key: &SecretRef) -> Result<Fresh, Option<Arc<Entry>>> {
        let cached = self.inner.entries.get(key);
        match cached {
            Some(entry) => {
                let now = Instant::now();
                if entry.fresh_until() > now {
                    Ok(Fresh { entry, now })
                } else {
                    Err(Some(entry))
                }
            }
            None => Err(None),
        }
    }

    /// Serves a fresh entry (`fresh`) as `get` does: counted as a hit, and read near the end of
    /// its TTL, refreshed in the background.
    pub(crate) fn serve_fresh<F, Fut>(
        &self,
        fresh: Fresh,
        key: &SecretRef,
        ttl: Duration,
        fetch: F,
    ) -> Result<Served, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, BackendError>> + Send + 'static,
    {
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        if let Entry::Found(secret) = fresh.entry.as_ref() {
            // Read near the end of its TTL: a hot secret. Refresh it in the background,
            // so its readers never wait for the backend.
            if fresh.now >= secret.refresh_at {
                self.refresh_ahead(key, ttl, fetch);
            }
        }
        served(&fresh.entry, true, false)
    }

    /// A fresh entry for `key` filed after `cached` was read (by a fetch that ended meanwhile).
    fn filed_since(&self, key: &SecretRef, now: Instant) -> Option<Arc<Entry>> {
        self.inner
            .entries
            .get(key)
            .filter(|entry| entry.fresh_until() > now)
    }

    fn refresh_ahead<F, Fut>(&self, key: &SecretRef, ttl: Duration, fetch: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, BackendError>> + Send + 'static,
    {
        let mut inflight = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if inflight.contains_key(key) {
            return;
        }
        let fetch = fetch();
        let fetch_one: FetchMany = Box::new(move |_keys| async move { vec![fetch.await] }.boxed());
        self.start_fetch(&mut inflight, vec![key.clone()], ttl, fetch_one);
        let (_, pending) = inflight.get(key).expect("just filed").clone();
        tokio::spawn(pending);
    }

    /// `get` for many keys: fresh entries are served from the cache, and every missing key that
    /// no other request is already fetching goes to the backend in one `fetch_many` call.
    pub async fn get_many(
        &self,
        keys: &[SecretRef],
        ttl: Duration,
        fetch_many: FetchMany,
    ) -> Vec<Result<Served, CacheError>> {
        let mut cached = Vec::with_capacity(keys.len());
        for key in keys {
            cached.push(self.inner.entries.get(key));
        }
        self.fetch_missing(keys, cached, ttl, fetch_many).await
    }

    async fn fetch_missing(
        &self,
        keys: &[SecretRef],
        cached: Vec<Option<Arc<Entry>>>,
        ttl: Duration,
        fetch_many: FetchMany,
    ) -> Vec<Result<Served, CacheError>> {
        let now = Instant::now();
        // Per key: already answered, or a pending fetch to wait on (and whether we started it).
        let mut answers: Vec<Option<Result<Served, CacheError>>> = Vec::with_capacity(keys.len());
        let mut waits: Vec<Option<(Pending, bool)>> = Vec::with_capacity(keys.len());
        {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut to_fetch: Vec<SecretRef> = Vec::new();
            for (key, entry) in keys.iter().zip(&cached) {
                match entry {
                    Some(entry) if entry.fresh_until() > now => {
                        self.inner.hits.fetch_add(1, Ordering::Relaxed);
                        answers.push(Some(served(entry, true, false)));
                        waits.push(None);
                    }
                    _ => match inflight.get(key) {
                        Some((_, pending)) => {
                            answers.push(None);
                            waits.push(Some((pending.clone(), false)));
                        }
                        None => match self.filed_since(key, now) {
                            // A fetch under way when `cached` was read ended since: it files
                            // its entry before it leaves `inflight`, so the entry is here.
                            Some(entry) => {
                                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                                answers.push(Some(served(&entry, true, false)));
                                waits.push(None);
                            }
                            None => {
                                answers.push(None);
                                if !to_fetch.contains(key) {
                                    to_fetch.push(key.clone());
                                }
                                waits.push(None);
                            }
                        },
                    },
                }
            }
            if !to_fetch.is_empty() {
                let id = self.start_fetch(&mut inflight, to_fetch, ttl, fetch_many);
                for (key, wait) in keys.iter().zip(waits.iter_mut()) {
                    if let (None, Some((owner, pending))) = (&wait, inflight.get(key)) {
                        if *owner == id {
                            *wait = Some((pending.clone(), true));
                        }
                    }
                }
            }
        }

        let mut results = Vec::with_capacity(keys.len());
        let deadline = self.inner.settings.stale_deadline;
        let pending = join_all(waits.into_iter().zip(&cached).map(|(wait, entry)| {
            let servable = entry.as_deref().is_some_and(|e| self.servable_stale(e));
            async move {
                let (pending, started) = wait?;
                if !servable {
                    return Some(Ok((pending.await, started)));
                }
                match tokio::time::timeout(deadline, pending.clone()).await {
                    Ok(outcome) => Some(Ok((outcome, started))),
                    Err(_) => {
                        // The refresh goes on without this reader, and files its result.
                        tokio::spawn(pending);
                        Some(Err(()))
                    }
                }
            }
        }))
        .await;
        for ((answer, outcome), entry) in answers.into_iter().zip(pending).zip(cached) {
            results.push(match (answer, outcome) {
                (Some(answer), _) => answer,
                (None, Some(Ok((outcome, started)))) => {
                    self.settle(outcome, started, entry.as_deref())
                }
                (None, Some(Err(()))) => {
                    self.inner.hits.fetch_add(1, Ordering::Relaxed);
                    self.inner.stale.fetch_add(1, Ordering::Relaxed);
                    served(entry.as_deref().expect("servable"), true, true)
                }
                (None, None) => Err(CacheError::Backend(Arc::new(BackendError::Internal(
                    "no fetch for a missing key".into(),
                )))),
            });
        }
        results
    }

    /// Starts one backend call for `keys` and files a pending fetch per key in `inflight`, where
    /// later requests for those keys find and join it. Returns the fetch's id.
    fn start_fetch(
        &self,
        inflight: &mut HashMap<SecretRef, (u64, Pending)>,
        to_fetch: Vec<SecretRef>,
        ttl: Duration,
        fetch_many: FetchMany,
    ) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let settings = self.inner.settings;
        let batch_keys = to_fetch.clone();
        let batch: BatchOutcome = async move {
            let fetched = fetch_many(batch_keys).await;
            Arc::new(
                fetched
                    .into_iter()
                    .map(|r| to_entry(r, ttl, &settings))
                    .collect(),
            )
        }
        .boxed()
        .shared();
        for (position, key) in to_fetch.into_iter().enumerate() {
            let inner = Arc::clone(&self.inner);
            let batch = batch.clone();
            let stored_key = key.clone();
            let pending: Pending = async move {
                let (outcome, alias) = batch.await.get(position).cloned().unwrap_or_else(|| {
                    (
                        Err(Arc::new(BackendError::Internal(
                            "the backend returned too few results".into(),
                        ))),
                        None,
                    )
                });
                if let Ok(entry) = &outcome {
                    inner.entries.insert(stored_key.clone(), Arc::clone(entry));
                    if let Some(alias) = &alias {
                        inner
                            .entries
                            .insert(stored_key.with_name(alias.clone()), Arc::clone(entry));
                    }
                }
                let mut inflight = inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
                if inflight
                    .get(&stored_key)
                    .is_some_and(|(owner, _)| *owner == id)
                {
                    inflight.remove(&stored_key);
                }
                outcome
            }
            .boxed()
            .shared();
            inflight.insert(key, (id, pending));
        }
        id
    }

    fn settle(
        &self,
        outcome: FetchOutcome,
        started: bool,
        cached: Option<&Entry>,
    ) -> Result<Served, CacheError> {
        let counter = if started {
            &self.inner.misses
        } else {
            &self.inner.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(entry) => served(&entry, !started, false),
            Err(error) => match cached {
                // Backend down or throttled, or the agent's own credentials refused: a value
                // still within max_stale keeps being served, flagged stale.
                Some(entry @ Entry::Found(secret))
                    if error.serves_stale() && self.servable_stale(entry) =>
                {
                    self.inner.stale.fetch_add(1, Ordering::Relaxed);
                    Ok(Served {
                        secret: Arc::clone(secret),
                        hit: true,
                        stale: true,
                    })
                }
                _ => Err(CacheError::Backend(error)),
            },
        }
    }

    /// A value still within `max_stale`: what a reader may get while its refresh fails or hangs.
    fn servable_stale(&self, entry: &Entry) -> bool {
        match entry {
            Entry::Found(secret) => {
                secret.fresh_until + self.inner.settings.max_stale > Instant::now()
            }
            Entry::Missing { .. } => false,
        }
    }

    /// Drops every cached entry of one secret — all versions and stages, under `key`'s name and
    /// under `alias`, another spelling the backend files it under — so the next reads go to the
    /// backend. A new current version moves stages too (AWSPREVIOUS), so no entry is kept.
    pub async fn invalidate_secret(&self, key: &SecretRef, alias: Option<&SecretRef>) -> u64 {
        self.invalidate_where(|k| {
            k.backend() == key.backend()
                && (k.name() == key.name() || alias.is_some_and(|a| k.name() == a.name()))
        })
        .await
    }

    /// Drops every entry whose key matches; returns how many.
    pub async fn invalidate_where(&self, matches: impl Fn(&SecretRef) -> bool) -> u64 {
        let keys: Vec<Arc<SecretRef>> = self
            .inner
            .entries
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, _)| key)
            .collect();
        for key in &keys {
            self.inner.entries.invalidate(key.as_ref());
        }
        keys.len() as u64
    }

    /// Hits, misses and stale answers since start.
    pub fn counters(&self) -> CacheCounters {
        CacheCounters {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            stale: self.inner.stale.load(Ordering::Relaxed),
        }
    }

    /// Entries and their weight in bytes (approximate until moka runs its housekeeping).
    pub fn usage(&self) -> (u64, u64) {
        (
            self.inner.entries.entry_count(),
            self.inner.entries.weighted_size(),
        )
    }

    /// Entries and bytes per IAM role ARN they were read under (`[[role]]`): what reading under
    /// roles costs in memory. The agent's own reads are not listed.
    pub fn usage_by_role(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        let mut usage = std::collections::BTreeMap::<String, (u64, u64)>::new();
        for (key, entry) in self.inner.entries.iter() {
            if let Some(role) = key.role() {
                let slot = usage.entry(role.arn.clone()).or_default();
                slot.0 += 1;
                slot.1 += u64::from(entry.weight(&key));
            }
        }
        usage
    }
}

/// The fraction of its TTL after which a read refreshes an entry in the background.
const REFRESH_AHEAD_AT: f64 = 0.8;

/// `duration` shortened by a random fraction of itself, at most `jitter` (0 to 1).
pub(crate) fn jittered(ttl: Duration, jitter: f64) -> Duration {
    let mut bytes = [0u8; 8];
    // Jitter is not security-sensitive; without randomness the TTL is simply not shortened.
    let unit = match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.0,
    };
    ttl.mul_f64(1.0 - jitter.clamp(0.0, 1.0) * unit)
}

/// The cache entry for a fetch result, and the other name to file it under, if any.
fn to_entry(
    result: Result<Fetched, BackendError>,
    ttl: Duration,
    settings: &CacheSettings,
) -> (FetchOutcome, Option<String>) {
    let now = Instant::now();
    let mut alias = None;
    let entry = match result {
        Ok(mut fetched) => {
            alias = fetched.alias.take();
            let ttl = jittered(ttl, settings.ttl_jitter);
            let fetched_at = SystemTime::now();
            Entry::Found(Arc::new(CachedSecret {
                value: Arc::new(fetched.value),
                version_id: fetched.version_id,
                stages: fetched.stages,
                created_at: fetched.created_at,
                canonical_name: fetched.canonical_name,
                aws: fetched.aws,
                fetched_at,
                expires_at: fetched_at + ttl,
                fresh_until: now + ttl,
                refresh_at: now + ttl.mul_f64(REFRESH_AHEAD_AT),
            }))
        }
        Err(BackendError::NotFound(message)) => Entry::Missing {
            message,
            fresh_until: now + settings.negative_ttl,
        },
        Err(other) => return (Err(Arc::new(other)), None),
    };
    (Ok(Arc::new(entry)), alias)
}

fn served(entry: &Entry, hit: bool, stale: bool) -> Result<Served, CacheError> {
    match entry {
        Entry::Found(secret) => Ok(Served {
            secret: Arc::clone(secret),
            hit,
            stale,
        }),
        Entry::Missing { message, .. } => Err(CacheError::NotFound(message.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{memory::MemoryBackend, Backend};

    const TTL: Duration = Duration::from_secs(60);

    fn cache(max_stale: Duration) -> Arc<SecretCache> {
        Arc::new(SecretCache::new(CacheSettings {
            max_bytes: 1 << 20,
            negative_ttl: Duration::from_secs(5),
            max_stale,
            ttl_jitter: 0.0,
            stale_deadline: STALE_DEADLINE,
        }))
    }

    const STALE_DEADLINE: Duration = Duration::from_millis(20);

    fn r(text: &str) -> SecretRef {
        SecretRef::parse(text).unwrap()
    }

    async fn get(
        cache: &SecretCache,
        backend: &MemoryBackend,
        key: &SecretRef,
    ) -> Result<Served, CacheError> {
        let (backend, owned) = (backend.clone(), key.clone());
        cache
            .get(key, TTL, || async move { backend.fetch(&owned).await })
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn hits_until_the_ttl_ends() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("a", b"v1");
        let cache = cache(Duration::ZERO);
        let key = r("local:a");
        let first = get(&cache, &backend, &key).await.unwrap();
        assert!(!first.hit);
        let second = get(&cache, &backend, &key).await.unwrap();
        assert!(second.hit && !second.stale);
        assert_eq!(backend.fetches(), 1);

        backend.insert("a", b"v2");
        // Before the refresh-ahead point (80% of the TTL), a read is a plain hit.
        tokio::time::advance(TTL.mul_f64(0.75)).await;
        assert_eq!(
            get(&cache, &backend, &key)
                .await
                .unwrap()
                .secret
                .value
                .expose(),
            b"v1"
        );
        tokio::time::advance(TTL.mul_f64(0.25)).await;
        let refreshed = get(&cache, &backend, &key).await.unwrap();
        assert_eq!(refreshed.secret.value.expose(), b"v2");
        assert!(!refreshed.hit);
        assert_eq!(backend.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn hot_entries_are_refreshed_before_they_expire() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("hot", b"v1");
        let cache = cache(Duration::ZERO);
        let key = r("local:hot");
        get(&cache, &backend, &key).await.unwrap();
        backend.insert("hot", b"v2");
        // Read in the last fifth of the TTL: served at once, refreshed behind the reader's back.
        tokio::time::advance(TTL.mul_f64(0.85)).await;
        let read = get(&cache, &backend, &key).await.unwrap();
        assert!(read.hit);
        assert_eq!(read.secret.value.expose(), b"v1");
        while backend.fetches() < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // Past the first TTL the refreshed value is there: no reader waited for the backend.
        tokio::time::advance(TTL.mul_f64(0.2)).await;
        let later = get(&cache, &backend, &key).await.unwrap();
        assert!(later.hit, "served from the refreshed entry");
        assert_eq!(later.secret.value.expose(), b"v2");
        assert_eq!(backend.fetches(), 2);
    }

    #[tokio::test]
    async fn a_hundred_concurrent_misses_make_one_fetch() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("hot", b"value");
        let gate = backend.hold_fetches();
        let cache = cache(Duration::ZERO);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, backend) = (Arc::clone(&cache), backend.clone());
                tokio::spawn(
                    async move { get(&cache, &backend, &r("local:hot")).await.map(|s| s.hit) },
                )
            })
            .collect();
        // Let every task reach the cache before the one fetch completes.
        while backend.fetches() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        let mut misses = 0;
        for task in tasks {
            if !task.await.unwrap().unwrap() {
                misses += 1;
            }
        }
        assert_eq!(backend.fetches(), 1);
        assert_eq!(misses, 1, "exactly one caller did the fetch");
    }

    #[tokio::test]
    async fn concurrent_waiters_share_a_failure() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.set_unavailable(true);
        let gate = backend.hold_fetches();
        let cache = cache(Duration::ZERO);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, backend) = (Arc::clone(&cache), backend.clone());
                tokio::spawn(async move { get(&cache, &backend, &r("local:x")).await.err() })
            })
            .collect();
        while backend.fetches() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        for task in tasks {
            assert!(matches!(task.await.unwrap(), Some(CacheError::Backend(_))));
        }
        assert_eq!(backend.fetches(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn not_found_is_cached_briefly() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        let cache = cache(Duration::ZERO);
        let key = r("local:missing");
        for _ in 0..3 {
            assert!(matches!(
                get(&cache, &backend, &key).await,
                Err(CacheError::NotFound(_))
            ));
        }
        assert_eq!(backend.fetches(), 1);
        backend.insert("missing", b"now here");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(get(&cache, &backend, &key).await.is_ok());
        assert_eq!(backend.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_is_served_while_the_backend_is_down() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("a", b"v1");
        let cache = cache(Duration::from_secs(300));
        let key = r("local:a");
        get(&cache, &backend, &key).await.unwrap();
        backend.set_unavailable(true);
        tokio::time::advance(TTL).await;
        let stale = get(&cache, &backend, &key).await.unwrap();
        assert!(stale.stale && stale.hit);
        assert_eq!(stale.secret.value.expose(), b"v1");

        backend.set_unavailable(false);
        let fresh = get(&cache, &backend, &key).await.unwrap();
        assert!(!fresh.stale && !fresh.hit);
    }

    #[tokio::test(start_paused = true)]
    async fn without_max_stale_an_outage_is_an_error() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("a", b"v1");
        let cache = cache(Duration::ZERO);
        let key = r("local:a");
        get(&cache, &backend, &key).await.unwrap();
        backend.set_unavailable(true);
        tokio::time::advance(TTL).await;
        // moka may still hold the entry until its housekeeping runs; freshness is what counts.
        cache.inner.entries.run_pending_tasks();
        assert!(matches!(
            get(&cache, &backend, &key).await,
            Err(CacheError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn invalidating_a_secret_drops_every_version_of_it_and_nothing_else() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("a", b"v1");
        backend.insert("b", b"other");
        let cache = cache(Duration::ZERO);
        let (current, first, other) = (r("local:a"), r("local:a?version=1"), r("local:b"));
        for key in [&current, &first, &other] {
            get(&cache, &backend, key).await.unwrap();
        }
        assert_eq!(cache.invalidate_secret(&current, None).await, 2);
        assert!(!get(&cache, &backend, &current).await.unwrap().hit);
        assert!(!get(&cache, &backend, &first).await.unwrap().hit);
        assert!(get(&cache, &backend, &other).await.unwrap().hit);
        assert_eq!(backend.fetches(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_refresh_costs_a_reader_the_stale_deadline_only() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("a", b"v1");
        let cache = cache(Duration::from_secs(300));
        let key = r("local:a");
        get(&cache, &backend, &key).await.unwrap();
        backend.insert("a", b"v2");
        let gate = backend.hold_fetches();
        tokio::time::advance(TTL).await;

        let started = Instant::now();
        let read = get(&cache, &backend, &key).await.unwrap();
        assert_eq!(started.elapsed(), STALE_DEADLINE);
        assert!(read.stale && read.hit);
        assert_eq!(read.secret.value.expose(), b"v1");
        // A second reader joins the same refresh, and waits no longer.
        let started = Instant::now();
        assert!(get(&cache, &backend, &key).await.unwrap().stale);
        assert_eq!(started.elapsed(), STALE_DEADLINE);
        assert_eq!(backend.fetches(), 2, "one refresh for both readers");

        // The refresh was left running: once the backend answers, its value is filed.
        gate.add_permits(1);
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let fresh = get(&cache, &backend, &key).await.unwrap();
        assert!(fresh.hit && !fresh.stale);
        assert_eq!(fresh.secret.value.expose(), b"v2");
        assert_eq!(backend.fetches(), 2);
        assert_eq!(cache.counters().stale, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_value_to_fall_back_on_a_reader_waits_for_the_backend() {
        let backend = MemoryBackend::new(crate::backend::local::KIND);
        backend.insert("a", b"v1");
        let cache = cache(Duration::from_secs(300));
        let gate = backend.hold_fetches();
        let reader = {
            let (cache, backend) = (Arc::clone(&cache), backend.clone());
            tokio::spawn(async move { get(&cache, &backend, &r("local:a")).await })
        };
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!reader.is_finished());
        gate.add_permits(1);
        let read = reader.await.unwrap().unwrap();
        assert!(!read.stale && !read.hit);
    }

    /// A backend behind a real `CallGuard` whose every attempt times out after a second, as a
    /// blackholed AWS endpoint does.
    #[tokio::test(start_paused = true)]
    async fn an_outage_costs_readers_milliseconds_and_the_backend_one_probe() {
        use crate::backend::guard::{
            CallGuard, CircuitState, Limits, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_FAILURES,
        };
        let guard = Arc::new(CallGuard::new(
            "test",
            Limits {
                rate_limit: 1000,
                burst: 1000,
                max_wait: Duration::from_secs(1),
                max_attempts: 3,
            },
        ));
        let attempts = Arc::new(AtomicU64::new(0));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cache = cache(Duration::from_secs(300));
        let key = r("local:a");
        let read = |cache: Arc<SecretCache>| {
            let (guard, attempts, up, key) = (
                Arc::clone(&guard),
                Arc::clone(&attempts),
                Arc::clone(&up),
                key.clone(),
            );
            async move {
                cache
                    .get(&key, TTL, move || async move {
                        guard
                            .call(|| {
                                attempts.fetch_add(1, Ordering::SeqCst);
                                let up = up.load(Ordering::SeqCst);
                                async move {
                                    if up {
                                        Ok(Fetched {
                                            value: SecretValue::from_slice(b"v1"),
                                            version_id: "1".into(),
                                            stages: vec![],
                                            created_at: None,
                                            canonical_name: None,
                                            alias: None,
                                            aws: None,
                                        })
                                    } else {
                                        tokio::time::sleep(Duration::from_secs(1)).await;
                                        Err(BackendError::Unavailable("timed out".into()))
                                    }
                                }
                            })
                            .await
                    })
                    .await
            }
        };
        read(Arc::clone(&cache)).await.unwrap();
        up.store(false, Ordering::SeqCst);
        tokio::time::advance(TTL).await;

        // Readers keep coming every 50 ms for ten seconds, through two cooldowns.
        let before = attempts.load(Ordering::SeqCst);
        let mut slowest = Duration::ZERO;
        for _ in 0..200 {
            let started = Instant::now();
            let served = read(Arc::clone(&cache)).await.unwrap();
            slowest = slowest.max(started.elapsed());
            assert!(served.stale);
            assert_eq!(served.secret.value.expose(), b"v1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(slowest <= STALE_DEADLINE, "slowest read {slowest:?}");
        // The first refresh's attempts opened the circuit; then one probe per cooldown.
        let probes = (Duration::from_secs(10).as_secs() / DEFAULT_BREAKER_COOLDOWN.as_secs()) + 1;
        let sent = attempts.load(Ordering::SeqCst) - before;
        assert!(
            sent <= u64::from(DEFAULT_BREAKER_FAILURES) + probes,
            "{sent} attempts during the outage"
        );
        assert_eq!(guard.circuit_state(), CircuitState::Open);

        // Back up: the next probe closes the circuit and a read gets a fresh value.
        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(DEFAULT_BREAKER_COOLDOWN).await;
        let mut fresh = read(Arc::clone(&cache)).await.unwrap();
        for _ in 0..10 {
            if !fresh.stale {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            fresh = read(Arc::clone(&cache)).await.unwrap();
        }
        assert!(!fresh.stale);
        assert_eq!(guard.circuit_state(), CircuitState::Closed);
    }
}
