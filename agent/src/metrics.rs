//! Prometheus metrics: counted where things happen (decisions, backend calls and their latency),
//! read at scrape time where they already exist (cache and watch counters), and served in the
//! text exposition format on their own listener (`[metrics] listen`, off by default). Names and
//! labels never carry a value; secret names are not labels either (unbounded cardinality).

use std::{
    convert::Infallible,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming, server::conn::http1, service::service_fn, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::{
    audit::{AuditHealth, Decided, Observer},
    backend::aws::role::{RoleSessions, RoleUsage},
    backend::{guard::CircuitState, Backends},
    cache::SecretCache,
    identity::Frontend,
    policy::Operation,
    reference::BackendKind,
    rotation::{
        feed::{FeedStatus, OUTCOMES},
        WatchHub,
    },
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: &'static str,
}

/// A role ARN named in the policy: bounded by the policy, not by callers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    operation: &'static str,
    decision: &'static str,
}

/// A request to the HTTP front door: bounded labels (two front doors, five routes, a few
/// statuses).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    frontend: &'static str,
    route: &'static str,
    status: u16,
}

/// The allocator's own figures: bytes in live allocations, and bytes it holds free (freed by the
/// process, not returned to the kernel). What tells a leak (in use grows) from allocator retention
/// (free grows, in use does not).
#[derive(Clone, Copy, Debug)]
pub struct HeapUsage {
    pub in_use: u64,
    pub free: u64,
}

static HEAP_PROBE: OnceLock<fn() -> HeapUsage> = OnceLock::new();

/// Installs the function that reads the allocator's figures: the binary that chose the allocator
/// provides it (`main.rs`, glibc's `mallinfo2`); without one, the `heap_*` gauges are left out.
pub fn set_heap_probe(probe: fn() -> HeapUsage) {
    let _ = HEAP_PROBE.set(probe);
}

type Histograms = Family<BackendLabel, Histogram, fn() -> Histogram>;

/// The agent's metrics registry and the instruments the request path updates.
pub struct Metrics {
    registry: Registry,
    backend_calls: Family<BackendLabel, Counter>,
    backend_errors: Family<BackendLabel, Counter>,
    backend_latency: Histograms,
    decisions: Family<DecisionLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    fast_path: Counter,
}

impl Metrics {
    pub fn new(
        cache: Arc<SecretCache>,
        hub: WatchHub,
        backends: Backends,
        roles: Option<Arc<RoleSessions>>,
        audit: Arc<AuditHealth>,
    ) -> Self {
        let mut registry = Registry::with_prefix("psst");
        let backend_calls = Family::<BackendLabel, Counter>::default();
        let backend_errors = Family::<BackendLabel, Counter>::default();
        // 0.5 ms to about 8 s: a cached local read to a slow, retried AWS call.
        let backend_latency: Histograms =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 15)));
        let decisions = Family::<DecisionLabels, Counter>::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let fast_path = Counter::default();
        registry.register(
            "grpc_fast_path_answers",
            "GetSecret requests answered by the unary fast path (agent/src/server/fast.rs); the \
             rest of the gRPC requests went through h2",
            fast_path.clone(),
        );
        registry.register(
            "http_requests",
            "Requests to the AWS agents' HTTP API, by front door (http_unix, http_tcp), route and status",
            http_requests.clone(),
        );
        registry.register(
            "backend_calls",
            "Backend reads, by backend",
            backend_calls.clone(),
        );
        registry.register(
            "backend_errors",
            "Backend reads that failed (not counting NOT_FOUND), by backend",
            backend_errors.clone(),
        );
        registry.register(
            "backend_latency_seconds",
            "Time of backend reads, retries and rate-limit waits included, by backend",
            backend_latency.clone(),
        );
        registry.register(
            "policy_decisions",
            "Policy decisions, by operation and decision (allow or deny)",
            decisions.clone(),
        );
        registry.register_collector(Box::new(Snapshot {
            cache,
            hub,
            backends,
            roles,
            audit,
        }));
        Self {
            registry,
            backend_calls,
            backend_errors,
            backend_latency,
            decisions,
            http_requests,
            fast_path,
        }
    }

    /// A `GetSecret` answered by the unary fast path.
    pub fn fast_path_answer(&self) {
        self.fast_path.inc();
    }

    pub fn http_request(&self, frontend: Frontend, route: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                frontend: frontend.as_str(),
                route,
                status,
            })
            .inc();
    }

    pub fn backend_call(&self, kind: BackendKind, elapsed: Duration, failed: bool) {
        let label = BackendLabel {
            backend: kind.prefix(),
        };
        self.backend_calls.get_or_create(&label).inc();
        // Created at zero with the first call, so dashboards see the series before an error.
        let errors = self.backend_errors.get_or_create(&label);
        if failed {
            errors.inc();
        }
        self.backend_latency
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    fn decision(&self, operation: Operation, allowed: bool) {
        self.decisions
            .get_or_create(&DecisionLabels {
                operation: operation.as_str(),
                decision: if allowed { "allow" } else { "deny" },
            })
            .inc();
    }

    /// (calls, errors) of one backend so far.
    pub fn backend_totals(&self, kind: BackendKind) -> (u64, u64) {
        let label = BackendLabel {
            backend: kind.prefix(),
        };
        (
            self.backend_calls.get_or_create(&label).get(),
            self.backend_errors.get_or_create(&label).get(),
        )
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

/// Values that already live elsewhere, read at scrape time.
impl Observer for Metrics {
    /// Every decided operation, counted by operation and decision.
    fn decided(&self, event: &Decided<'_>) {
        self.decision(event.operation, event.rule.is_some());
    }
}

struct Snapshot {
    cache: Arc<SecretCache>,
    hub: WatchHub,
    backends: Backends,
    roles: Option<Arc<RoleSessions>>,
    audit: Arc<AuditHealth>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitLabels {
    backend: &'static str,
    service: &'static str,
    state: &'static str,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (entries, bytes) = self.cache.usage();
        let counters = self.cache.counters();
        for (name, help, value) in [
            (
                "cache_entries",
                "Cached secret versions (and remembered NOT_FOUNDs)",
                entries,
            ),
            ("cache_bytes", "Weight of the cache in bytes", bytes),
            (
                "watchers",
                "Open watches, over all secrets",
                self.hub.watchers(),
            ),
            (
                "audit_failing",
                "1 while audit records cannot be written (with audit.fail_closed, requests are refused)",
                u64::from(self.audit.failing()),
            ),
            (
                "watched_secrets",
                "Secrets with at least one watcher",
                self.hub.watched_secrets() as u64,
            ),
        ] {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Some(heap) = HEAP_PROBE.get().map(|probe| probe()) {
            for (name, help, value) in [
                (
                    "heap_in_use_bytes",
                    "Bytes in live heap allocations (the allocator's count)",
                    heap.in_use,
                ),
                (
                    "heap_free_bytes",
                    "Bytes the allocator holds free: freed by the agent, not returned to the kernel",
                    heap.free,
                ),
            ] {
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
            }
        }
        for (name, help, value) in [
            (
                "cache_hits",
                "Reads answered from the cache without a backend call",
                counters.hits,
            ),
            (
                "cache_misses",
                "Reads that waited for a backend call",
                counters.misses,
            ),
            (
                "cache_stale_served",
                "Reads answered with a stale value while the backend failed",
                counters.stale,
            ),
            (
                "audit_write_failures",
                "Writes of audit records that failed (full disk, read-only file system); records in the journal are written again",
                self.audit.failures(),
            ),
            (
                "rotations_detected",
                "New versions found by change detection",
                self.hub.rotations_seen(),
            ),
            (
                "version_polls",
                "Version polls sent to backends by change detection",
                self.hub.polls(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        // One series per state, 1 for the current one (the Prometheus way to show an enum).
        let mut circuit = encoder.encode_descriptor(
            "backend_circuit",
            "Circuit breaker of each remote service a backend calls: 1 for its current state \
             (closed: calls flow; open: calls fail at once; half_open: one probe is out)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (kind, configured) in self.backends.iter() {
            for (service, current) in configured.backend.circuits() {
                for state in CircuitState::ALL {
                    let labels = CircuitLabels {
                        backend: kind.prefix(),
                        service,
                        state: state.as_str(),
                    };
                    let gauge = ConstGauge::new(i64::from(state == current));
                    gauge.encode(circuit.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(roles) = &self.roles {
            encode_roles(&mut encoder, roles.usage(), &self.cache)?;
        }
        if let Some(feed) = self.hub.feed() {
            encode_feed(&mut encoder, feed)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The change feed: its health and what arrived (only with `[feed]` configured).
fn encode_feed(encoder: &mut DescriptorEncoder, feed: &FeedStatus) -> Result<(), std::fmt::Error> {
    let healthy = ConstGauge::new(i64::from(feed.is_healthy()));
    healthy.encode(encoder.encode_descriptor(
        "feed_healthy",
        "1 while the change feed delivers (watched secrets polled at feed.healthy_interval); \
         0 while it fails and they are polled at watch.interval",
        None,
        healthy.metric_type(),
    )?)?;
    let mut messages = encoder.encode_descriptor(
        "feed_messages",
        "Messages from the change feed's queue, by outcome (change, heartbeat, ignored: a known \
         event that changes nothing, unknown, malformed); all are deleted after handling",
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (outcome, count) in OUTCOMES.iter().zip(feed.messages()) {
        ConstCounter::new(count).encode(messages.encode_family(&OutcomeLabel { outcome })?)?;
    }
    for (name, help, value) in [
        (
            "feed_receive_errors",
            "Receives from the change feed's queue that failed",
            feed.receive_errors(),
        ),
        (
            "feed_fallbacks",
            "Times the change feed failed and polling went back to watch.interval",
            feed.fallbacks(),
        ),
        (
            "feed_wakes",
            "Watch pollers woken by change events",
            feed.wakes(),
        ),
    ] {
        let counter = ConstCounter::new(value);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

/// What reading under each IAM role costs: sessions, STS and backend calls, cache use.
fn encode_roles(
    encoder: &mut DescriptorEncoder,
    mut usage: Vec<RoleUsage>,
    cache: &SecretCache,
) -> Result<(), std::fmt::Error> {
    let by_role = cache.usage_by_role();
    for role in &mut usage {
        (role.cache_entries, role.cache_bytes) =
            by_role.get(&role.arn).copied().unwrap_or_default();
    }
    let label = |r: &RoleUsage| RoleLabel {
        role: r.arn.clone(),
    };
    type Field = fn(&RoleUsage) -> u64;
    let gauges: [(&str, &str, Field); 3] = [
        (
            "role_sessions",
            "Live sessions (caller identities) per IAM role",
            |r| r.sessions,
        ),
        (
            "role_cache_entries",
            "Cache entries read under each IAM role",
            |r| r.cache_entries,
        ),
        (
            "role_cache_bytes",
            "Weight in bytes of the cache entries read under each IAM role",
            |r| r.cache_bytes,
        ),
    ];
    for (name, help, field) in gauges {
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
        for r in &usage {
            ConstGauge::new(field(r) as i64).encode(family.encode_family(&label(r))?)?;
        }
    }
    let counters: [(&str, &str, Field); 4] = [
        (
            "role_assume_calls",
            "STS AssumeRole attempts per IAM role",
            |r| r.assume_calls,
        ),
        (
            "role_assume_failures",
            "STS AssumeRole calls that failed, per IAM role",
            |r| r.assume_failures,
        ),
        (
            "role_backend_calls",
            "Backend calls made under each IAM role",
            |r| r.backend_calls,
        ),
        (
            "role_backend_errors",
            "Backend calls under each IAM role that failed (not NOT_FOUND)",
            |r| r.backend_errors,
        ),
    ];
    for (name, help, field) in counters {
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
        for r in &usage {
            ConstCounter::new(field(r)).encode(family.encode_family(&label(r))?)?;
        }
    }
    Ok(())
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    max_connections: usize,
) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "metrics listening");
    }
    // The listener is isolated from the socket: a few connections at most, each bounded in
    // time, and accept errors never end it (out of descriptors: wait, then go on).
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Over the cap: close at once rather than hold a descriptor for a scraper.
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request: Request<Incoming>| {
                let response = if request.uri().path() == "/metrics" {
                    Response::builder()
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(Full::new(Bytes::from(metrics.render())))
                } else {
                    Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::new(Bytes::from_static(b"not found: try /metrics\n")))
                };
                async move { Ok::<_, Infallible>(response.expect("a valid response")) }
            });
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let served = tokio::time::timeout(METRICS_CONNECTION_LIFETIME, connection).await;
            if let Ok(Err(e)) = served {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

/// Time a metrics client has to send its request head.
const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a metrics connection stays open, scrapes included (keep-alive scrapers reconnect).
const METRICS_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
