//! The change feed: AWS change events from an SQS queue, so a rotation reaches this host in
//! seconds and polling becomes the safety net.
//!
//! ```text
//! Parameter Store ─(EventBridge, native)─┐
//! Secrets Manager ─(CloudTrail → EventBridge)─┼─▶ rule ─▶ SNS topic ─▶ SQS queue per host ─▶ psstd
//! S3 ─(EventBridge or S3 notifications)──┘                  (or: one given queue)
//! ```
//!
//! The consumer long-polls the queue (`WaitTimeSeconds` up to 20, batches of 10), and for each
//! message: parses it (an EventBridge event, an S3 notification, either raw or inside an SNS
//! envelope), hands each change to the watch hub — which drops the matching cache entries and
//! wakes the matching pollers, which re-read and push only on a real new version —, and deletes
//! the batch (`DeleteMessageBatch`). Handling is only that hand-over, so a message is deleted
//! right after it; the poller owns the re-read and its retries. Duplicates and events out of
//! order therefore cost one version check each and never an extra push. A woken poller checks
//! with one read where the backend has no pending versions (`Backend::has_pending_versions`:
//! Parameter Store reads the parameter its event dropped from the cache), and after a random
//! delay up to `feed.spread`, so a large fleet can keep its re-reads under a backend's quota.
//!
//! Messages that are not change events — not JSON, an event of an unknown kind, a known kind
//! without the fields it needs — are counted by outcome, logged with their message id and size
//! but never their body, and deleted: they would fail the same way on every delivery, so leaving
//! them to a redrive policy would only bring them back each visibility timeout.
//!
//! An event never carries a value: it names a secret, and the only thing it can cause is a re-read
//! from the backend, with the agent's own credentials and the backend's own answer.
//!
//! Health: the feed is healthy while its last receive succeeded and something well-formed
//! (a change, an ignored event of a known kind, or a heartbeat: EventBridge's "Scheduled Event",
//! which the CloudFormation template in `deploy/aws/` sends every 5 minutes) arrived within
//! `feed.heartbeat`. Healthy, the watch pollers wait `feed.healthy_interval`; otherwise they
//! poll at `watch.interval`, and the `psst_feed_healthy` metric and the gRPC health service
//! `psst.feed` say so.
//!
//! Topology (a), `create = true`: at start the agent makes its own queue (named from the host,
//! retention `feed.retention`), allows only the SNS topic to send to it (queue policy), subscribes
//! it to the topic with raw message delivery, and on a clean shutdown unsubscribes and deletes
//! it. Topology (b): a queue URL the operator made.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use aws_sdk_sns::Client as SnsClient;
use aws_sdk_sqs::{
    error::ProvideErrorMetadata,
    types::{DeleteMessageBatchRequestEntry, QueueAttributeName},
    Client as SqsClient,
};
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use super::WatchHub;
use crate::{
    backend::aws::{classify, AwsSettings},
    config::{AwsBackendConfig, FeedConfig},
    reference::{BackendKind, SecretRef, MAX_REFERENCE_LEN},
};

/// Messages per `ReceiveMessage`: SQS's maximum.
const BATCH: i32 = 10;
/// Longest pause between failed receives (they back off from 1 s).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a clean shutdown waits for the per-host queue to be unsubscribed and deleted.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What one message turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Secrets that may have changed.
    Changes(Vec<Change>),
    /// EventBridge's scheduled event: the path from the rule to this queue works.
    Heartbeat,
    /// An event of a known kind that changes no value (a read, a failed call, S3's test event).
    Ignored,
}

/// Why a message is not a change event (counted; never logged with the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Valid JSON, but no event psst knows.
    Unknown,
    /// Not JSON, or a known kind of event without the fields it must have.
    Malformed(&'static str),
}

/// One secret an event says may have changed, by every spelling the event gives for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub backend: BackendKind,
    pub names: Vec<String>,
}

impl Change {
    /// Whether `key` (a cache key or a watched reference, any selector, any role) names this
    /// secret. Generous on purpose: a false match costs one re-read, a missed one a rotation
    /// seen only by polling.
    pub fn names(&self, key: &SecretRef) -> bool {
        if key.backend() != self.backend {
            return false;
        }
        let name = key.name();
        let ty = self.backend.ty();
        self.names.iter().any(|n| ty.same_secret(n, name))
    }
}

/// Secrets Manager operations (CloudTrail event names) after which a secret's current or pending
/// version, or its existence, may differ.
const SECRET_CHANGES: [&str; 10] = [
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "RotationSucceeded",
    "DeleteSecret",
    "RestoreSecret",
    "CreateSecret",
    "CancelRotateSecret",
    "RotationAbandoned",
];

/// Parses one message body: an EventBridge event or an S3 notification, raw or inside an SNS
/// notification envelope.
pub(crate) fn parse(body: &str) -> Result<Parsed, Rejected> {
    let value: Value = serde_json::from_str(body).map_err(|_| Rejected::Malformed("not JSON"))?;
    let value = match (
        value.get("Type").and_then(Value::as_str),
        value.get("Message"),
    ) {
        (Some("Notification"), Some(Value::String(inner))) => serde_json::from_str(inner)
            .map_err(|_| Rejected::Malformed("an SNS notification whose message is not JSON"))?,
        (Some("Notification"), _) => {
            return Err(Rejected::Malformed("an SNS notification without a message"))
        }
        _ => value,
    };
    if let Some(records) = value.get("Records") {
        return s3_notification(records);
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Parsed::Ignored);
    }
    let (Some(source), Some(kind)) = (
        value.get("source").and_then(Value::as_str),
        value.get("detail-type").and_then(Value::as_str),
    ) else {
        return Err(Rejected::Unknown);
    };
    let detail = value.get("detail").unwrap_or(&Value::Null);
    match (source, kind) {
        ("aws.events", "Scheduled Event") => Ok(Parsed::Heartbeat),
        ("aws.ssm", "Parameter Store Change") => {
            let name = text(detail, "name").ok_or(Rejected::Malformed(
                "a Parameter Store change without a name",
            ))?;
            Ok(change("ssm", vec![name.to_owned()]))
        }
        ("aws.ssm", _) => Ok(Parsed::Ignored),
        (
            "aws.secretsmanager",
            "AWS API Call via CloudTrail" | "AWS Service Event via CloudTrail",
        ) => secrets_manager(detail),
        ("aws.secretsmanager", _) => Ok(Parsed::Ignored),
        ("aws.s3", "Object Created" | "Object Deleted" | "Object Restore Completed") => {
            let bucket = detail.get("bucket").and_then(|b| text(b, "name"));
            let key = detail.get("object").and_then(|o| text(o, "key"));
            match (bucket, key) {
                (Some(bucket), Some(key)) => Ok(change("s3", object_names(bucket, key))),
                _ => Err(Rejected::Malformed("an S3 event without bucket and key")),
            }
        }
        ("aws.s3", _) => Ok(Parsed::Ignored),
        _ => Err(Rejected::Unknown),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_REFERENCE_LEN)
}

/// A change of the backend `prefix` names; ignored when that backend is not compiled in.
fn change(prefix: &str, names: Vec<String>) -> Parsed {
    match BackendKind::from_prefix(prefix) {
        Some(backend) => Parsed::Changes(vec![Change { backend, names }]),
        None => Parsed::Ignored,
    }
}

/// A CloudTrail record of a Secrets Manager call (or of one of its own rotation events).
fn secrets_manager(detail: &Value) -> Result<Parsed, Rejected> {
    let name = detail
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or(Rejected::Malformed("a CloudTrail event without eventName"))?;
    if !SECRET_CHANGES.contains(&name) || detail.get("errorCode").is_some_and(|e| !e.is_null()) {
        // A read, a tag, or a call that failed: nothing changed.
        return Ok(Parsed::Ignored);
    }
    let mut ids = Vec::new();
    let request = detail.get("requestParameters").unwrap_or(&Value::Null);
    let response = detail.get("responseElements").unwrap_or(&Value::Null);
    let additional = detail.get("additionalEventData").unwrap_or(&Value::Null);
    // Before February 2024 some operations reported the ARN as `aRN`.
    for (object, key) in [
        (request, "secretId"),
        (request, "name"),
        (response, "arn"),
        (response, "aRN"),
        (response, "name"),
        (additional, "SecretId"),
        (additional, "secretId"),
    ] {
        if let Some(id) = text(object, key) {
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_owned());
            }
        }
    }
    if ids.is_empty() {
        return Err(Rejected::Malformed(
            "a Secrets Manager event that names no secret",
        ));
    }
    Ok(change("sm", ids))
}

/// S3's own event notifications (`{"Records": [...]}`), whose object keys are URL-encoded.
fn s3_notification(records: &Value) -> Result<Parsed, Rejected> {
    let records = records
        .as_array()
        .ok_or(Rejected::Malformed("Records is not a list"))?;
    let mut changes = Vec::new();
    for record in records {
        if record.get("eventSource").and_then(Value::as_str) != Some("aws:s3") {
            return Err(Rejected::Unknown);
        }
        let s3 = record.get("s3").unwrap_or(&Value::Null);
        let bucket = s3.get("bucket").and_then(|b| text(b, "name"));
        let key = s3.get("object").and_then(|o| text(o, "key"));
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(Rejected::Malformed("an S3 record without bucket and key"));
        };
        let decoded = percent_encoding::percent_decode_str(&key.replace('+', " "))
            .decode_utf8()
            .map_err(|_| Rejected::Malformed("an S3 object key that is not UTF-8"))?
            .into_owned();
        if let Parsed::Changes(change) = change("s3", object_names(bucket, &decoded)) {
            changes.extend(change);
        }
    }
    if changes.is_empty() {
        return Ok(Parsed::Ignored);
    }
    Ok(Parsed::Changes(changes))
}

/// `BUCKET/KEY`, as an `s3:` reference names an object.
fn object_names(bucket: &str, key: &str) -> Vec<String> {
    vec![format!("{bucket}/{key}")]
}

/// The outcomes a message is counted under (`psst_feed_messages{outcome}`).
pub(crate) const OUTCOMES: [&str; 5] = ["change", "heartbeat", "ignored", "unknown", "malformed"];

/// The feed's health and counters: written by the consumer, read by the pollers (through
/// `subscribe`), the metrics and the health service.
#[derive(Debug)]
pub struct FeedStatus {
    heartbeat: Duration,
    healthy: watch::Sender<bool>,
    receiving: AtomicBool,
    last_life: Mutex<Instant>,
    messages: [AtomicU64; OUTCOMES.len()],
    receive_errors: AtomicU64,
    fallbacks: AtomicU64,
    wakes: AtomicU64,
}

impl FeedStatus {
    /// Not healthy until the first receive succeeds; the start counts as a sign of life, so a
    /// new queue has one heartbeat to show it works.
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            heartbeat,
            healthy: watch::Sender::new(false),
            receiving: AtomicBool::new(false),
            last_life: Mutex::new(Instant::now()),
            messages: Default::default(),
            receive_errors: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    pub fn is_healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    /// Messages so far, per outcome in `OUTCOMES` order.
    pub fn messages(&self) -> [u64; OUTCOMES.len()] {
        std::array::from_fn(|i| self.messages[i].load(Ordering::Relaxed))
    }

    pub fn receive_errors(&self) -> u64 {
        self.receive_errors.load(Ordering::Relaxed)
    }

    /// Times the feed went from healthy to failing (polling back to `watch.interval`).
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Pollers woken by change events.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    fn count(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.messages[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn alive(&self) {
        *self.last_life.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    pub(super) fn received(&self, ok: bool) {
        if !ok {
            self.receive_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.receiving.store(ok, Ordering::Relaxed);
        self.evaluate();
    }

    /// Healthy: receiving works and a sign of life came within the heartbeat.
    fn evaluate(&self) {
        let silent = self
            .last_life
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        let receiving = self.receiving.load(Ordering::Relaxed);
        let healthy = receiving && silent < self.heartbeat;
        let was = self.healthy.send_replace(healthy);
        if was && !healthy {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            let reason = if receiving {
                format!(
                    "no event or heartbeat for {}",
                    humantime::format_duration(Duration::from_secs(silent.as_secs()))
                )
            } else {
                "the queue cannot be read".to_owned()
            };
            tracing::warn!(%reason, "change feed failing: watched secrets are polled at watch.interval again");
        } else if !was && healthy {
            tracing::info!("change feed healthy: watch polling slows to feed.healthy_interval");
        }
    }
}

/// The running consumer; `stop` ends it and removes a queue it created.
pub(crate) struct Feed {
    task: JoinHandle<()>,
    watchdog: JoinHandle<()>,
    created: Arc<Mutex<Option<Created>>>,
    clients: Arc<tokio::sync::OnceCell<(SqsClient, SnsClient)>>,
}

/// A per-host queue this agent made (topology a).
#[derive(Clone, Debug)]
struct Created {
    url: String,
    subscription: Option<String>,
}

/// Where the consumer reads from.
#[derive(Clone, Debug)]
enum Queue {
    Given(String),
    Create {
        name: String,
        topic_arn: String,
        retention: Duration,
    },
}

struct Consumer {
    hub: WatchHub,
    status: Arc<FeedStatus>,
    settings: AwsSettings,
    queue: Queue,
    wait_time: Duration,
    visibility_timeout: Duration,
    created: Arc<Mutex<Option<Created>>>,
    clients: Arc<tokio::sync::OnceCell<(SqsClient, SnsClient)>>,
}

impl Feed {
    /// Starts consuming; the first AWS call goes out from the task, never before the agent is
    /// up. `status` is the one the hub's pollers follow.
    pub(crate) fn start(config: &FeedConfig, hub: WatchHub, status: Arc<FeedStatus>) -> Self {
        let aws = AwsBackendConfig {
            region: config.region.clone(),
            endpoint: config.endpoint.clone(),
            // A long poll answers after up to wait_time: the attempt timeout must outlast it.
            timeout: config.wait_time + crate::config::DEFAULT_AWS_TIMEOUT,
            ..AwsBackendConfig::default()
        };
        let queue = match &config.queue_url {
            Some(url) => Queue::Given(url.clone()),
            None => Queue::Create {
                name: config.queue_name.clone().unwrap_or_else(host_queue_name),
                topic_arn: config.topic_arn.clone().unwrap_or_default(),
                retention: config.retention,
            },
        };
        let created = Arc::new(Mutex::new(None));
        let clients = Arc::new(tokio::sync::OnceCell::new());
        let consumer = Consumer {
            hub,
            status: Arc::clone(&status),
            settings: AwsSettings::new("SQS", &aws, 1),
            queue,
            wait_time: config.wait_time,
            visibility_timeout: config.visibility_timeout,
            created: Arc::clone(&created),
            clients: Arc::clone(&clients),
        };
        let task = tokio::spawn(consumer.run());
        let watchdog = tokio::spawn(async move {
            // Silence is noticed within a quarter heartbeat (at most a second late).
            let tick =
                (status.heartbeat / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
            loop {
                tokio::time::sleep(tick).await;
                status.evaluate();
            }
        });
        Self {
            task,
            watchdog,
            created,
            clients,
        }
    }

    /// Stops consuming; a queue the agent created is unsubscribed and deleted (bounded).
    pub(crate) async fn stop(self) {
        self.task.abort();
        self.watchdog.abort();
        let created = self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let (Some(created), Some((sqs, sns))) = (created, self.clients.get()) else {
            return;
        };
        let cleanup = async {
            if let Some(subscription) = &created.subscription {
                if let Err(e) = sns
                    .unsubscribe()
                    .subscription_arn(subscription)
                    .send()
                    .await
                {
                    tracing::warn!(error = %classify("SNS", "the feed subscription", e), "could not unsubscribe the feed queue");
                }
            }
            match sqs.delete_queue().queue_url(&created.url).send().await {
                Ok(_) => tracing::info!(queue = %created.url, "feed queue deleted"),
                Err(e) => {
                    tracing::warn!(queue = %created.url, error = %classify("SQS", "the feed queue", e), "could not delete the feed queue; its retention ages its messages out")
                }
            }
        };
        if tokio::time::timeout(CLEANUP_TIMEOUT, cleanup)
            .await
            .is_err()
        {
            tracing::warn!(
                "deleting the feed queue took too long; its retention ages its messages out"
            );
        }
    }
}

/// `psst-` and the host name, in the characters SQS allows (80 at most).
pub(crate) fn host_queue_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".to_owned());
    sanitize_queue_name(&host)
}

fn sanitize_queue_name(host: &str) -> String {
    let mut name: String = format!("psst-{host}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(80);
    name
}

/// Whether a name is one SQS takes for a standard queue.
pub(crate) fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Consumer {
    async fn clients(&self) -> &(SqsClient, SnsClient) {
        self.clients
            .get_or_init(|| async {
                let config = self.settings.sdk_config().await;
                (SqsClient::new(&config), SnsClient::new(&config))
            })
            .await
    }

    async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let url = match self.queue_url().await {
                Ok(url) => url,
                Err(e) => {
                    tracing::warn!(error = %e, "change feed: cannot set up the queue; retrying");
                    self.status.received(false);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            match self.receive(&url).await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change feed: receiving failed; retrying");
                    self.status.received(false);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The queue to read: the given one, or this host's, made (again) when there is none.
    async fn queue_url(&self) -> Result<String, String> {
        let (name, topic_arn, retention) = match &self.queue {
            Queue::Given(url) => return Ok(url.clone()),
            Queue::Create {
                name,
                topic_arn,
                retention,
            } => (name, topic_arn, retention),
        };
        if let Some(created) = &*self.created.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(created.url.clone());
        }
        let (sqs, sns) = self.clients().await;
        let sqs_error = |e| classify("SQS", "the feed queue", e).to_string();
        // An existing queue of this name (the agent restarted after a crash) is taken over.
        let url = match sqs.get_queue_url().queue_name(name).send().await {
            Ok(found) => found.queue_url.unwrap_or_default(),
            Err(_) => sqs
                .create_queue()
                .queue_name(name)
                .tags("psst:feed", "per-host")
                .send()
                .await
                .map_err(|e| classify("SQS", "the feed queue", e).to_string())?
                .queue_url
                .unwrap_or_default(),
        };
        if url.is_empty() {
            return Err("SQS returned no queue URL".into());
        }
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| classify("SQS", "the feed queue", e).to_string())?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or("SQS returned no queue ARN")?;
        sqs.set_queue_attributes()
            .queue_url(&url)
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                retention.as_secs().to_string(),
            )
            .attributes(QueueAttributeName::Policy, queue_policy(&arn, topic_arn))
            .send()
            .await
            .map_err(sqs_error)?;
        // Remembered before subscribing, so a failed subscription still gets the queue deleted.
        *self.created.lock().unwrap_or_else(|p| p.into_inner()) = Some(Created {
            url: url.clone(),
            subscription: None,
        });
        let subscription = sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(&arn)
            .attributes("RawMessageDelivery", "true")
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| classify("SNS", "the feed topic", e).to_string())?
            .subscription_arn;
        if let Some(created) = &mut *self.created.lock().unwrap_or_else(|p| p.into_inner()) {
            created.subscription = subscription;
        }
        tracing::info!(queue = %url, topic = %topic_arn, "feed queue created and subscribed");
        Ok(url)
    }

    /// One long poll, its messages handed to the hub, and the batch deleted.
    async fn receive(&self, url: &str) -> Result<(), String> {
        let (sqs, _) = self.clients().await;
        // The first receive (and the first after a failure) returns at once, so the feed is
        // known to work without waiting out a long poll; then long polls.
        let wait = if self.status.receiving.load(Ordering::Relaxed) {
            self.wait_time.as_secs() as i32
        } else {
            0
        };
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(wait)
            .visibility_timeout(self.visibility_timeout.as_secs() as i32)
            .send()
            .await;
        let received = match received {
            Ok(received) => received,
            Err(e) => {
                let gone = e.code() == Some("AWS.SimpleQueueService.NonExistentQueue")
                    || e.code() == Some("QueueDoesNotExist")
                    || e.as_service_error()
                        .is_some_and(|s| s.is_queue_does_not_exist());
                if gone && matches!(self.queue, Queue::Create { .. }) {
                    // Someone deleted this host's queue: make it again on the next round.
                    self.created
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                }
                return Err(classify("SQS", "the feed queue", e).to_string());
            }
        };
        self.status.received(true);
        let mut done = Vec::new();
        for message in received.messages.unwrap_or_default() {
            let id = message.message_id.unwrap_or_default();
            let body = message.body.unwrap_or_default();
            self.handle(&id, &body).await;
            if let Some(handle) = message.receipt_handle {
                done.push(handle);
            }
        }
        self.status.evaluate();
        if done.is_empty() {
            return Ok(());
        }
        let entries = done
            .into_iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        match sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) if !out.failed.is_empty() => tracing::warn!(
                failed = out.failed.len(),
                "change feed: some messages were not deleted; they come back after the visibility timeout (harmless)"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %classify("SQS", "the feed queue", e),
                "change feed: deleting a batch failed; its messages come back after the visibility timeout (harmless)"
            ),
        }
        Ok(())
    }

    async fn handle(&self, id: &str, body: &str) {
        match parse(body) {
            Ok(Parsed::Changes(changes)) => {
                self.status.count("change");
                self.status.alive();
                for change in &changes {
                    let woken = self.hub.changed(change).await;
                    self.status.wakes.fetch_add(woken as u64, Ordering::Relaxed);
                    tracing::debug!(backend = %change.backend, woken, "change feed: change event");
                }
            }
            Ok(Parsed::Heartbeat) => {
                self.status.count("heartbeat");
                self.status.alive();
            }
            Ok(Parsed::Ignored) => {
                self.status.count("ignored");
                self.status.alive();
            }
            Err(rejected) => {
                let (outcome, reason) = match rejected {
                    Rejected::Unknown => ("unknown", "not an event psst knows"),
                    Rejected::Malformed(reason) => ("malformed", reason),
                };
                self.status.count(outcome);
                // The body is never logged: the queue is not ours alone to write to.
                tracing::warn!(message_id = %id, bytes = body.len(), reason, "change feed: message dropped");
            }
        }
    }
}

/// Only the topic may send to the queue.
fn queue_policy(queue_arn: &str, topic_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "psst-feed-topic-only",
            "Effect": "Allow",
            "Principal": { "Service": "sns.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": topic_arn } }
        }]
    })
    .to_string()
}

/// The queue's policy as a map, for tests.
#[cfg(test)]
fn policy_map(queue_arn: &str, topic_arn: &str) -> std::collections::HashMap<String, Value> {
    serde_json::from_str(&queue_policy(queue_arn, topic_arn)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> SecretRef {
        SecretRef::parse(text).unwrap()
    }

    fn changes(body: &str) -> Vec<Change> {
        match parse(body) {
            Ok(Parsed::Changes(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    // The documented event of a Parameter Store change (AWS Systems Manager User Guide,
    // "Amazon EventBridge event examples for Systems Manager").
    const SSM_EVENT: &str = r#"{
        "version": "0", "id": "6a7e4feb-b491-4cf7-a9f1-bf3703497718",
        "detail-type": "Parameter Store Change", "source": "aws.ssm",
        "account": "123456789012", "time": "2017-05-22T16:43:48Z", "region": "us-east-1",
        "resources": ["arn:aws:ssm:us-east-1:123456789012:parameter/app/db/password"],
        "detail": {"operation": "Update", "name": "/app/db/password", "type": "SecureString", "description": ""}
    }"#;

    // A CloudTrail record of PutSecretValue as EventBridge delivers it.
    const SM_PUT: &str = r#"{
        "version": "0", "id": "3f2e0d5c", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager", "account": "123456789012", "time": "2024-03-01T10:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {
            "eventVersion": "1.09", "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "PutSecretValue", "awsRegion": "us-east-1",
            "requestParameters": {"secretId": "prod/db", "clientRequestToken": "t"},
            "responseElements": {"arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf", "versionId": "v2"},
            "eventType": "AwsApiCall", "readOnly": false
        }
    }"#;

    #[test]
    fn a_parameter_store_change_names_its_parameter() {
        let c = changes(SSM_EVENT);
        assert_eq!(c.len(), 1);
        assert!(c[0].names(&r("ssm:/app/db/password")));
        assert!(c[0].names(&r("ssm:/app/db/password?version=3")));
        assert!(!c[0].names(&r("ssm:/app/db/password2")));
        assert!(!c[0].names(&r("sm:/app/db/password")), "another backend");
    }

    #[test]
    fn a_secrets_manager_change_matches_every_spelling() {
        let c = &changes(SM_PUT)[0];
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";
        for spelled in [
            "sm:prod/db".to_owned(),
            format!("sm:{arn}"),
            format!("sm:{}", &arn[..arn.len() - 7]),
            "sm:prod/db?stage=AWSPREVIOUS".to_owned(),
        ] {
            assert!(c.names(&r(&spelled)), "{spelled}");
        }
        assert!(!c.names(&r("sm:prod/dbx")));
        assert!(!c.names(&r("sm:prod")));
        // Named only by its ARN (a rotation's service event): the name still matches.
        let rotated = changes(&format!(
            r#"{{"detail-type": "AWS Service Event via CloudTrail", "source": "aws.secretsmanager",
                "detail": {{"eventName": "RotationSucceeded", "additionalEventData": {{"SecretId": "{arn}"}}}}}}"#
        ));
        assert!(rotated[0].names(&r("sm:prod/db")));
        // The older `aRN` spelling of the response.
        let staged = changes(&format!(
            r#"{{"detail-type": "AWS API Call via CloudTrail", "source": "aws.secretsmanager",
                "detail": {{"eventName": "UpdateSecretVersionStage", "responseElements": {{"aRN": "{arn}", "name": "prod/db"}}}}}}"#
        ));
        assert!(staged[0].names(&r(&format!("sm:{arn}"))));
    }

    #[test]
    fn every_secrets_manager_change_operation_is_a_change_and_reads_are_not() {
        for name in SECRET_CHANGES {
            let body = format!(
                r#"{{"detail-type": "AWS API Call via CloudTrail", "source": "aws.secretsmanager",
                    "detail": {{"eventName": "{name}", "requestParameters": {{"secretId": "a"}}}}}}"#
            );
            assert!(matches!(parse(&body), Ok(Parsed::Changes(_))), "{name}");
        }
        for body in [
            r#"{"detail-type": "AWS API Call via CloudTrail", "source": "aws.secretsmanager", "detail": {"eventName": "GetSecretValue", "requestParameters": {"secretId": "a"}}}"#,
            r#"{"detail-type": "AWS API Call via CloudTrail", "source": "aws.secretsmanager", "detail": {"eventName": "PutSecretValue", "errorCode": "AccessDenied", "requestParameters": {"secretId": "a"}}}"#,
            r#"{"detail-type": "Object Access Tier Changed", "source": "aws.s3", "detail": {}}"#,
            r#"{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}"#,
        ] {
            assert_eq!(parse(body), Ok(Parsed::Ignored), "{body}");
        }
    }

    #[test]
    fn s3_events_name_bucket_and_key_in_both_formats() {
        let bridge = r#"{"detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "secrets"}, "object": {"key": "prod/db", "size": 10}}}"#;
        assert!(changes(bridge)[0].names(&r("s3:secrets/prod/db")));
        // S3's own notifications URL-encode the key (a space is '+').
        let notification = r#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "secrets"}, "object": {"key": "prod/my+db%C3%A9"}}}]}"#;
        let c = changes(notification);
        assert_eq!(c[0].names, ["secrets/prod/my dbé"]);
    }

    #[test]
    fn an_sns_envelope_is_opened_once() {
        let envelope = serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": SSM_EVENT,
        })
        .to_string();
        assert!(changes(&envelope)[0].names(&r("ssm:/app/db/password")));
        let twice = serde_json::json!({"Type": "Notification", "Message": envelope}).to_string();
        assert_eq!(parse(&twice), Err(Rejected::Unknown), "one envelope only");
    }

    #[test]
    fn heartbeats_unknown_and_malformed_messages() {
        let heartbeat = r#"{"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
            "resources": ["arn:aws:events:us-east-1:1:rule/psst-heartbeat"], "detail": {}}"#;
        assert_eq!(parse(heartbeat), Ok(Parsed::Heartbeat));
        assert_eq!(parse(r#"{"hello": "world"}"#), Err(Rejected::Unknown));
        assert_eq!(
            parse(r#"{"source": "com.example", "detail-type": "x"}"#),
            Err(Rejected::Unknown)
        );
        assert!(matches!(parse("not json {"), Err(Rejected::Malformed(_))));
        assert!(matches!(parse(""), Err(Rejected::Malformed(_))));
        assert!(matches!(
            parse(
                r#"{"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {}}"#
            ),
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            parse(
                r#"{"source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail", "detail": {"eventName": "PutSecretValue"}}"#
            ),
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            parse(r#"{"Type": "Notification", "Message": "{not json"}"#),
            Err(Rejected::Malformed(_))
        ));
        // A name longer than any reference is not taken.
        let long = format!(
            r#"{{"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {{"name": "{}"}}}}"#,
            "a".repeat(MAX_REFERENCE_LEN + 1)
        );
        assert!(matches!(parse(&long), Err(Rejected::Malformed(_))));
    }

    #[test]
    fn an_event_carries_no_value_into_the_agent() {
        // Whatever else an event holds, what comes out of parsing is backend and names.
        let forged = r#"{"detail-type": "AWS API Call via CloudTrail", "source": "aws.secretsmanager",
            "detail": {"eventName": "PutSecretValue", "requestParameters": {"secretId": "a", "secretString": "forged"},
                       "responseElements": {"secretString": "forged", "versionId": "v9"}}}"#;
        let c = changes(forged);
        assert_eq!(
            c,
            [Change {
                backend: crate::backend::sm::KIND,
                names: vec!["a".into()]
            }]
        );
    }

    #[test]
    fn queue_names_from_host_names() {
        assert_eq!(
            sanitize_queue_name("web-1.prod.internal"),
            "psst-web-1-prod-internal"
        );
        let long = sanitize_queue_name(&"h".repeat(200));
        assert_eq!(long.len(), 80);
        assert!(valid_queue_name(&long));
        assert!(!valid_queue_name("a.b"));
        assert!(!valid_queue_name(""));
    }

    #[test]
    fn the_queue_policy_allows_only_the_topic() {
        let policy = policy_map("arn:aws:sqs:us-east-1:1:q", "arn:aws:sns:us-east-1:1:t");
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Action"], "sqs:SendMessage");
        assert_eq!(statement["Principal"]["Service"], "sns.amazonaws.com");
        assert_eq!(
            statement["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:aws:sns:us-east-1:1:t"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn health_needs_receiving_and_a_sign_of_life_within_the_heartbeat() {
        let status = FeedStatus::new(Duration::from_secs(10));
        assert!(!status.is_healthy(), "not before the first receive");
        status.received(true);
        assert!(status.is_healthy());
        tokio::time::advance(Duration::from_secs(11)).await;
        status.evaluate();
        assert!(!status.is_healthy(), "silent past the heartbeat");
        assert_eq!(status.fallbacks(), 1);
        status.alive();
        status.evaluate();
        assert!(status.is_healthy(), "a heartbeat brings it back");
        status.received(false);
        assert!(!status.is_healthy(), "a failed receive");
        assert_eq!((status.fallbacks(), status.receive_errors()), (2, 1));
    }
}
