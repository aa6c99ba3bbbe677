//! The composition root: builds transport, identity, policy, cache and backends from the config,
//! wires them into the gRPC server, and runs it until `shutdown` resolves.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use psst_proto::v1::{admin_server::AdminServer, secrets_server::SecretsServer};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tonic::service::Routes;

use crate::{
    admission::{Admission, AdmissionLimits},
    agent::{Agent, Limits},
    api::{AdminApi, SecretsApi},
    audit::{AuditFile, Sink, Trail, TrailSettings, JOURNAL_CAPACITY},
    backend::{
        aws::role::{RoleSessions, RoleSettings},
        registry::BuildContext,
        Backends,
    },
    cache::{CacheSettings, SecretCache},
    config::Config,
    http_api,
    identity::{Attestors, IdentityResolver, ProcResolver},
    lifecycle, metrics,
    policy::PolicySource,
    reference::MAX_REFERENCE_LEN,
    rotation::{
        feed::{Feed, FeedStatus},
        FeedPolling, WatchSettings,
    },
    server, transport,
};

/// The gRPC health service name that reports the change feed.
pub const FEED_HEALTH_SERVICE: &str = "psst.feed";

/// Builds the configured backends, each by its type (`backend/registry.rs`).
pub fn build_backends(config: &Config) -> anyhow::Result<Backends> {
    let mut backends = Backends::default();
    let context = BuildContext {
        max_value_bytes: config.limits.max_value_bytes,
    };
    for backend in &config.backends {
        backends.insert(backend.build(&context)?, backend.ttl());
    }
    for (kind, why) in &config.dev_off {
        backends.off(*kind, why.clone());
    }
    let roles = RoleSessions::new(RoleSettings::new(&config.aws_roles));
    Ok(backends.with_roles(Arc::new(roles)))
}

/// The admission bounds: the configured ones, with the connection total capped by the
/// open-file limit (raised to its hard limit first), so the agent never runs out of
/// descriptors for its own files because of callers.
fn admission_limits(config: &Config) -> AdmissionLimits {
    // Two descriptors a connection until its caller is identified: the socket and its pidfd.
    let fits = usize::try_from(lifecycle::raise_fd_limit() / 2).unwrap_or(usize::MAX);
    let max_connections = config.connections.max.min(fits);
    if max_connections < config.connections.max {
        tracing::warn!(
            configured = config.connections.max,
            max_connections,
            "the open-file limit allows fewer connections than connections.max: raise LimitNOFILE"
        );
    }
    AdmissionLimits {
        max_connections,
        max_connections_per_uid: config.connections.max_per_uid.min(max_connections),
        connections_per_second_per_uid: config.connections.per_second_per_uid,
        connection_burst_per_uid: config.connections.burst_per_uid,
        requests_in_flight_per_uid: config.limits.requests_in_flight_per_uid,
        requests_per_second_per_uid: config.limits.requests_per_second_per_uid,
        request_burst_per_uid: config.limits.request_burst_per_uid,
        body_bytes_in_flight: config.limits.body_bytes_in_flight,
        body_bytes_in_flight_per_uid: config.limits.body_bytes_in_flight_per_uid,
    }
}

fn connection_settings(config: &Config) -> server::ConnectionSettings {
    let c = &config.connections;
    server::ConnectionSettings {
        max_streams: c.max_streams,
        handshake_timeout: c.handshake_timeout,
        idle_timeout: c.idle_timeout,
        keepalive_interval: c.keepalive_interval,
        keepalive_timeout: c.keepalive_timeout,
        max_age: c.max_age,
        max_age_grace: c.max_age_grace,
        body_timeout: config.limits.body_timeout,
    }
}

/// Runs the agent until `shutdown` resolves, then drains for at most the grace period.
/// `on_ready` is called once every listener is bound and requests are served (where systemd is
/// told `READY=1`); `psstd --dev` prints its banner there, so the banner never precedes a
/// refusal to start.
pub async fn run(
    config: Config,
    policy: Arc<PolicySource>,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    // Everything that listens is bound before the socket apps use: once that socket accepts,
    // the agent is fully up.
    let metrics_listener = match config.metrics.listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the metrics listener {address}"))?,
        ),
        None => None,
    };
    let http = config.http.clone();
    let token = match http.tcp_listen {
        Some(_) => Some(http_api::Token::load(&http).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let tcp_listener = match http.tcp_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the HTTP listener {address}"))?,
        ),
        None => None,
    };
    let http_shared = (http.unix || tcp_listener.is_some())
        .then(|| Arc::new(http_api::HttpShared::new(&http, token)));
    let bound = transport::bind(&config.server)?;
    let trail = start_audit_trail(&config, bound.path.as_deref())?;
    let backends = build_backends(&config)?;
    let cache = SecretCache::new(CacheSettings {
        max_bytes: config.cache.max_bytes,
        negative_ttl: config.cache.negative_ttl,
        max_stale: config.cache.max_stale,
        ttl_jitter: config.cache.ttl_jitter,
        stale_deadline: config.cache.stale_deadline,
    });
    let limits = Limits {
        max_value_bytes: config.limits.max_value_bytes,
        max_batch: config.limits.max_batch,
    };
    let feed_status = config
        .feed
        .enabled()
        .then(|| Arc::new(FeedStatus::new(config.feed.heartbeat)));
    let watch = WatchSettings {
        interval: config.watch.interval,
        jitter: config.watch.jitter,
        feed: feed_status.as_ref().map(|status| FeedPolling {
            status: Arc::clone(status),
            healthy_interval: config.feed.healthy_interval,
            spread: config.feed.spread,
        }),
    };
    let agent = Arc::new(Agent::new(
        backends,
        Arc::clone(&policy),
        cache,
        limits,
        watch,
        Arc::clone(&trail),
    ));
    let resolver: Arc<dyn IdentityResolver> = Arc::new(ProcResolver::new(
        "/proc",
        config.identity.nss_timeout,
        Attestors::from_config(&config.identity).map_err(anyhow::Error::msg)?,
    ));
    let admission = Admission::new(admission_limits(&config));

    let max_message = config.server.max_message_bytes;
    let secrets = SecretsServer::new(SecretsApi::new(Arc::clone(&agent)))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let admin = AdminServer::new(AdminApi::new(Arc::clone(&agent)))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SecretsServer<SecretsApi>>()
        .await;
    // grpcurl 1.8 and older tools speak only v1alpha; newer ones try v1 first.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(psst_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // The feed's health as a service of its own: SERVING while events arrive, NOT_SERVING
    // while watched secrets are polled at watch.interval because the feed failed.
    let feed_health = feed_status.as_ref().map(|status| {
        let mut healthy = status.subscribe();
        let reporter = health_reporter.clone();
        tokio::spawn(async move {
            loop {
                let serving = if *healthy.borrow_and_update() {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                reporter
                    .set_service_status(FEED_HEALTH_SERVICE, serving)
                    .await;
                if healthy.changed().await.is_err() {
                    return;
                }
            }
        })
    });
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let routes = Routes::new(secrets)
        .add_service(admin)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .prepare();
    let shared = Arc::new(server::Shared {
        agent: Arc::clone(&agent),
        routes,
        resolver,
        admission,
        settings: connection_settings(&config),
        max_message,
        max_list_request: config.limits.max_batch * (MAX_REFERENCE_LEN + 8) + 64,
        identity_timeout: config.identity.timeout,
        http: http_shared,
    });
    let http_address = tcp_listener.as_ref().and_then(|l| l.local_addr().ok());
    let server = server::serve(
        transport::Acceptor::new(bound.listener),
        tcp_listener,
        shared,
        async {
            stop_rx.await.ok();
        },
    );
    let feed = feed_status.map(|status| Feed::start(&config.feed, agent.hub().clone(), status));
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve(
            listener,
            Arc::clone(agent.metrics()),
            config.metrics.max_connections,
        ))
    });
    // SIGHUP's default action ends the process: take it over before the first connection.
    let hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let mut server = tokio::spawn(server);
    let watcher = tokio::spawn(watch_policy(
        Arc::clone(&policy),
        Arc::clone(agent.audit_trail()),
        config.policy.watch_interval,
        hangup,
    ));

    for (kind, why) in &config.dev_off {
        tracing::info!(backend = %kind, "{why}");
    }
    tracing::info!(
        socket = %bound.path.as_deref().map_or("(systemd socket)".into(), |p| p.display().to_string()),
        backends = ?agent_backends(&config),
        policy_rules = policy.current().rule_count(),
        http_unix = config.http.unix,
        http_tcp = %http_address.map_or("off".into(), |a| a.to_string()),
        "psstd ready"
    );
    lifecycle::notify(sd_notify::NotifyState::Ready);
    on_ready();

    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            watcher.abort();
            trail.close();
            result.context("the server task failed")?;
            anyhow::bail!("the server stopped accepting connections");
        }
    }
    lifecycle::notify(sd_notify::NotifyState::Stopping);
    watcher.abort();
    health_reporter
        .set_not_serving::<SecretsServer<SecretsApi>>()
        .await;
    // The server closes its listener, then ends the watch streams, then drains.
    let _ = stop_tx.send(());
    let grace = config.server.grace_period;
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result.context("the server task failed while draining")?,
        Err(_) => {
            tracing::warn!(grace = ?grace, "grace period over: closing the connections still open");
            server.abort();
        }
    }
    if let Some(task) = metrics_server {
        task.abort();
    }
    if let Some(task) = feed_health {
        task.abort();
    }
    if let Some(feed) = feed {
        feed.stop().await;
    }
    if let Some(path) = &bound.path {
        let _ = std::fs::remove_file(path);
    }
    // Last: every request that got an answer has its record written.
    trail.close();
    tracing::info!("psstd stopped");
    Ok(())
}

/// The audit trail as `[audit]` and `[log]` say, its journal beside the socket unless told
/// otherwise (with systemd's socket: in `$RUNTIME_DIRECTORY`).
fn start_audit_trail(
    config: &Config,
    socket: Option<&std::path::Path>,
) -> anyhow::Result<Arc<Trail>> {
    let audit = &config.audit;
    if !audit.enabled {
        return Ok(Trail::off());
    }
    let (json, sink) = match &audit.file {
        Some(path) => (
            true,
            Sink::File(
                AuditFile::open(path)
                    .with_context(|| format!("opening audit file {}", path.display()))?,
            ),
        ),
        None => (
            config.log.format == crate::config::LogFormat::Json,
            Sink::Stderr,
        ),
    };
    let runtime_dir = std::env::var_os("RUNTIME_DIRECTORY").map(|dirs| {
        // systemd lists one directory per RuntimeDirectory= entry, separated by ':'.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        std::path::PathBuf::from(first)
    });
    Trail::start(TrailSettings {
        json,
        sink,
        journal: audit.journal_path(socket, runtime_dir.as_deref()),
        journal_capacity: JOURNAL_CAPACITY,
        flush_interval: audit.flush_interval,
        fail_closed: audit.fail_closed,
    })
}

fn agent_backends(config: &Config) -> Vec<&'static str> {
    config.backends.iter().map(|b| b.kind().prefix()).collect()
}

/// SIGHUP also reopens `audit.file`, so logrotate can move it away (`postrotate`: send SIGHUP).
fn reopen_audit_file(trail: &Trail) {
    match trail.reopen() {
        Some(Ok(())) => tracing::info!("SIGHUP: audit file reopened"),
        Some(Err(e)) => {
            tracing::error!(error = %e, "SIGHUP: cannot reopen the audit file; still writing the old one")
        }
        None => {}
    }
}

/// Reloads the policy on SIGHUP and when its file changes. A broken file is logged and the
/// policy in force stays.
/// Without a policy file, SIGHUP is taken and ignored.
async fn watch_policy(
    policy: Arc<PolicySource>,
    trail: Arc<Trail>,
    interval: Duration,
    mut hangup: Signal,
) {
    if policy.path().is_none() {
        while hangup.recv().await.is_some() {
            reopen_audit_file(&trail);
            tracing::info!("SIGHUP: no policy file to reload");
        }
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            _ = hangup.recv() => {
                reopen_audit_file(&trail);
                tracing::info!("SIGHUP: reloading the policy");
                policy.reload()
            }
            _ = tick.tick() => policy.reload_if_changed(),
        };
        match result {
            Ok(true) => tracing::info!(rules = policy.current().rule_count(), "policy reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "policy not reloaded; the previous policy stays in force")
            }
        }
    }
}
