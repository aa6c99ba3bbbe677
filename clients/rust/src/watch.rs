//! [`Watch`]: a `WatchSecrets` stream that survives agent restarts.

use std::{
    collections::{HashMap, VecDeque},
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::{Stream, StreamExt};

use crate::{pb, Client, Code, Error, Secret, DEFAULT_STARTUP_WAIT};

/// The longest pause between two reconnection attempts of a watch.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// What a [`Watch`] yields.
#[derive(Debug)]
pub struct WatchEvent {
    /// The reference the event is about, as the watch was given it.
    pub reference: String,
    /// What happened (the current value, a new version, a pending one, a deletion).
    pub kind: pb::watch_event::Kind,
    /// For `Current` and `NewVersion`.
    pub secret: Option<Secret>,
    /// The version that was current before a `NewVersion`.
    pub previous_version_id: String,
    /// The version a rotation is preparing (Secrets Manager's `AWSPENDING`), for `Pending`.
    pub pending_version_id: String,
}

/// A watch that survives agent restarts: see [`Client::watch`]. A [`Stream`] of events; also
/// [`Watch::next`] for callers without `StreamExt`.
///
/// While the agent cannot be reached the watch keeps reconnecting, with a backoff that doubles
/// up to [`MAX_RECONNECT_DELAY`] with jitter, for as long as it is open. Once an outage has
/// lasted [`DEFAULT_STARTUP_WAIT`], one `Err` of kind [`ErrorKind::Unavailable`] says so (a
/// status item: the stream goes on, and resumes without repeating a version when the agent is
/// back). Any other error (denied, not found, invalid) is the stream's last item.
///
/// [`ErrorKind::Unavailable`]: crate::ErrorKind::Unavailable
pub struct Watch {
    inner: Pin<Box<dyn Stream<Item = Result<WatchEvent, Error>> + Send>>,
}

impl Watch {
    pub(crate) fn new(client: Client, references: Vec<String>) -> Self {
        let state = State {
            client,
            references,
            known: HashMap::new(),
            stream: None,
            ready: VecDeque::new(),
            failed: None,
            ended: false,
            outage: None,
            reported: false,
            delay: FIRST_RECONNECT_DELAY,
        };
        let inner = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        Watch {
            inner: Box::pin(inner),
        }
    }

    /// The next event, a status item, or `None` once the watch has ended on an error.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, Error>> {
        self.inner.next().await
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct State {
    client: Client,
    references: Vec<String>,
    // Reference → the version id last delivered: sent on reconnect so nothing repeats.
    known: HashMap<String, String>,
    stream: Option<tonic::Streaming<pb::WatchEvent>>,
    // Events already received and coalesced, not yet handed out.
    ready: VecDeque<pb::WatchEvent>,
    // An error met while draining, handed out after the events before it.
    failed: Option<Error>,
    ended: bool,
    // Since when the agent has been unreachable, and whether that was reported.
    outage: Option<Instant>,
    reported: bool,
    delay: Duration,
}

impl State {
    async fn next(&mut self) -> Option<Result<WatchEvent, Error>> {
        if let Some(event) = self.ready.pop_front() {
            return Some(Ok(self.deliver(event)));
        }
        if self.ended {
            return None;
        }
        if let Some(error) = self.failed.take() {
            self.ended = true;
            return Some(Err(error));
        }
        loop {
            if self.stream.is_none() {
                let request = pb::WatchSecretsRequest {
                    references: self.references.clone(),
                    known_versions: self.known.clone(),
                };
                // The outage is counted from the first reconnect attempt: a call that waits for
                // the agent within its own deadline must not hide an outage longer than the
                // report threshold, so the wait is cut there and reported.
                let since = *self.outage.get_or_insert_with(Instant::now);
                let mut secrets = self.client.secrets.clone();
                let call = secrets.watch_secrets(request);
                let answered = if self.reported {
                    call.await
                } else {
                    let left = DEFAULT_STARTUP_WAIT.saturating_sub(since.elapsed());
                    match tokio::time::timeout(left, call).await {
                        Ok(answered) => answered,
                        Err(_) => {
                            self.reported = true;
                            return Some(Err(Error::new(
                                Code::Unavailable,
                                format!(
                                    "the agent has been unreachable for {}s; still reconnecting",
                                    since.elapsed().as_secs()
                                ),
                            )));
                        }
                    }
                };
                match answered {
                    Ok(response) => {
                        self.stream = Some(response.into_inner());
                        self.outage = None;
                        self.reported = false;
                        self.delay = FIRST_RECONNECT_DELAY;
                    }
                    Err(status) => {
                        let error = Error::from(status);
                        // A server going down can also cancel the call being made.
                        if !is_broken_connection(&error) {
                            self.ended = true;
                            return Some(Err(error));
                        }
                        if !self.reported && since.elapsed() >= DEFAULT_STARTUP_WAIT {
                            self.reported = true;
                            return Some(Err(Error::new(
                                Code::Unavailable,
                                format!(
                                    "the agent has been unreachable for {}s; still reconnecting: {}",
                                    since.elapsed().as_secs(),
                                    error.message()
                                ),
                            )));
                        }
                        tokio::time::sleep(jittered(self.delay)).await;
                        self.delay = (self.delay * 2).min(MAX_RECONNECT_DELAY);
                        continue;
                    }
                }
            }
            let stream = self.stream.as_mut().expect("connected above");
            match stream.message().await {
                Ok(Some(event)) => {
                    // Whatever else has already arrived is folded in: a reader that fell behind
                    // gets the newest version, not every version in between.
                    let mut batch = vec![event];
                    loop {
                        match futures_util::FutureExt::now_or_never(stream.message()) {
                            Some(Ok(Some(more))) => batch.push(more),
                            Some(Ok(None)) => {
                                self.stream = None;
                                break;
                            }
                            Some(Err(status)) => {
                                self.stream = None;
                                let error = Error::from(status);
                                if !is_broken_connection(&error) {
                                    self.failed = Some(error);
                                }
                                break;
                            }
                            None => break,
                        }
                    }
                    self.ready.extend(coalesce(batch));
                    let first = self.ready.pop_front().expect("at least one event");
                    return Some(Ok(self.deliver(first)));
                }
                Ok(None) => self.stream = None,
                Err(status) => {
                    self.stream = None;
                    let error = Error::from(status);
                    if !is_broken_connection(&error) {
                        self.ended = true;
                        return Some(Err(error));
                    }
                }
            }
        }
    }

    fn deliver(&mut self, event: pb::WatchEvent) -> WatchEvent {
        if let Some(secret) = &event.secret {
            self.known
                .insert(event.reference.clone(), secret.version_id.clone());
        }
        // Deleted: a secret created again while disconnected comes back as CURRENT.
        if event.kind() == pb::watch_event::Kind::Deleted {
            self.known.remove(&event.reference);
        }
        WatchEvent {
            kind: event.kind(),
            reference: event.reference,
            secret: event.secret.map(Secret::from_proto),
            previous_version_id: event.previous_version_id,
            pending_version_id: event.pending_version_id,
        }
    }
}

/// Between half and all of `delay`, so watchers cut off together do not come back together.
fn jittered(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process and per instance: enough for jitter.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    delay / 2 + delay.mul_f64((random % 1000) as f64 / 2000.0)
}

/// A broken connection (the agent restarting) shows as UNAVAILABLE, or as UNKNOWN, INTERNAL or
/// CANCELLED when the stream is reset: reconnect and resume.
fn is_broken_connection(error: &Error) -> bool {
    matches!(
        error.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

/// Folds events that arrived together: a later version of a reference replaces that reference's
/// latest undelivered event when both carry a version (keeping the earlier one's previous
/// version: what the reader last had). It never jumps over a DELETED or PENDING_VERSION event,
/// so the reader sees them in order.
fn coalesce(batch: Vec<pb::WatchEvent>) -> Vec<pb::WatchEvent> {
    use pb::watch_event::Kind;
    let carries_value = |e: &pb::WatchEvent| matches!(e.kind(), Kind::Current | Kind::NewVersion);
    let mut out: Vec<pb::WatchEvent> = Vec::with_capacity(batch.len());
    for mut event in batch {
        let latest = out.iter().rposition(|o| o.reference == event.reference);
        match latest {
            Some(i) if carries_value(&out[i]) && carries_value(&event) => {
                event.previous_version_id = std::mem::take(&mut out[i].previous_version_id);
                if out[i].kind() == Kind::Current {
                    event.set_kind(Kind::Current);
                }
                out[i] = event;
            }
            _ => out.push(event),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        reference: &str,
        kind: pb::watch_event::Kind,
        version: &str,
        previous: &str,
    ) -> pb::WatchEvent {
        pb::WatchEvent {
            reference: reference.into(),
            kind: kind as i32,
            secret: (!version.is_empty()).then(|| pb::Secret {
                version_id: version.into(),
                ..Default::default()
            }),
            previous_version_id: previous.into(),
            ..Default::default()
        }
    }

    #[test]
    fn folding_keeps_the_newest_version_and_the_order_of_deletions() {
        use pb::watch_event::Kind::*;
        let folded = coalesce(vec![
            event("a", NewVersion, "2", "1"),
            event("b", Current, "7", ""),
            event("a", NewVersion, "3", "2"),
            event("a", NewVersion, "4", "3"),
        ]);
        let got: Vec<_> = folded
            .iter()
            .map(|e| {
                (
                    e.reference.as_str(),
                    e.kind(),
                    e.secret.as_ref().unwrap().version_id.as_str(),
                    e.previous_version_id.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("a", NewVersion, "4", "1"), ("b", Current, "7", "")]);

        // A version after a deletion is not folded over it.
        let folded = coalesce(vec![
            event("a", Current, "1", ""),
            event("a", Deleted, "", ""),
            event("a", NewVersion, "2", ""),
        ]);
        let kinds: Vec<_> = folded.iter().map(|e| e.kind()).collect();
        assert_eq!(kinds, [Current, Deleted, NewVersion]);
    }

    #[test]
    fn reconnection_delays_are_jittered_and_capped() {
        for _ in 0..100 {
            let d = jittered(MAX_RECONNECT_DELAY);
            assert!(
                d >= MAX_RECONNECT_DELAY / 2 && d <= MAX_RECONNECT_DELAY,
                "{d:?}"
            );
        }
        let spread: std::collections::BTreeSet<_> =
            (0..20).map(|_| jittered(Duration::from_secs(1))).collect();
        assert!(spread.len() > 1, "not jittered");
    }
}
