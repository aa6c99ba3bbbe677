//! [`Source`]: one secret kept current in the background, for code that just wants "the
//! current value" without handling the watch itself.

use std::sync::{Arc, Mutex};

use futures_util::Stream;
use tokio::sync::watch;

use crate::{pb::watch_event::Kind, watch::MAX_RECONNECT_DELAY, Client, Error, ErrorKind, Secret};

/// How a [`Source`] stands with the agent. Whatever the status, [`Source::get`] gives the last
/// good value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// Following the secret: the value is the current version.
    Current,
    /// The agent cannot be reached; the source keeps reconnecting.
    Unreachable(Error),
    /// The secret was deleted; the value is the last version it had.
    Deleted,
    /// The agent refused the watch (denied, not found); the source tries again every
    /// [`MAX_RECONNECT_DELAY`].
    Failed(Error),
}

/// One secret, kept current by a background task that follows it with a [`crate::Watch`].
///
/// Share it with `Arc` (`Source::new` returns one); dropping the last `Arc` stops the task.
/// [`Source::get`] is cheap and never waits; [`Source::updates`] is a stream of new values.
pub struct Source {
    reference: String,
    current: watch::Receiver<Arc<Secret>>,
    status: Arc<Mutex<SourceStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Source {
    /// Starts following `reference` and returns once its current value has arrived; an error
    /// if the first answer is one (denied, not found, agent unreachable for a while).
    pub async fn new(client: &Client, reference: &str) -> Result<Arc<Source>, Error> {
        let mut events = client.watch(&[reference]);
        let first = loop {
            match events.next().await {
                Some(Ok(event)) => {
                    if let Some(secret) = event.secret {
                        break secret;
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::new(
                        crate::Code::Unavailable,
                        "the watch ended before the first value",
                    ))
                }
            }
        };
        let (sender, current) = watch::channel(Arc::new(first));
        let status = Arc::new(Mutex::new(SourceStatus::Current));
        let task = tokio::spawn(follow(
            client.clone(),
            reference.to_owned(),
            events,
            sender,
            Arc::clone(&status),
        ));
        Ok(Arc::new(Source {
            reference: reference.to_owned(),
            current,
            status,
            task,
        }))
    }

    /// The reference this source follows.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The last good value.
    pub fn get(&self) -> Arc<Secret> {
        Arc::clone(&self.current.borrow())
    }

    /// Whether the last refresh worked, and when it was.
    pub fn status(&self) -> SourceStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every new value from now on (not the current one). A slow reader gets the newest value,
    /// not every one in between.
    pub fn updates(&self) -> impl Stream<Item = Arc<Secret>> + Send + 'static {
        let mut receiver = self.current.clone();
        receiver.borrow_and_update();
        futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            let value = Arc::clone(&receiver.borrow_and_update());
            Some((value, receiver))
        })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("reference", &self.reference)
            .field("value", &*self.current.borrow())
            .field("status", &self.status())
            .finish()
    }
}

async fn follow(
    client: Client,
    reference: String,
    mut events: crate::Watch,
    sender: watch::Sender<Arc<Secret>>,
    status: Arc<Mutex<SourceStatus>>,
) {
    let set = |new: SourceStatus| *status.lock().unwrap_or_else(|p| p.into_inner()) = new;
    loop {
        match events.next().await {
            Some(Ok(event)) => match (event.kind, event.secret) {
                (Kind::Current | Kind::NewVersion, Some(secret)) => {
                    set(SourceStatus::Current);
                    sender.send_replace(Arc::new(secret));
                }
                (Kind::Deleted, _) => set(SourceStatus::Deleted),
                _ => {}
            },
            Some(Err(e)) if e.kind() == ErrorKind::Unavailable => set(SourceStatus::Unreachable(e)),
            Some(Err(e)) => set(SourceStatus::Failed(e)),
            // The watch ended on an error: follow again later, keeping the last value.
            None => {
                tokio::time::sleep(MAX_RECONNECT_DELAY).await;
                events = client.watch(&[reference.as_str()]);
            }
        }
    }
}
