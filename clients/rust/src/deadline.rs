//! Call deadlines without a tokio timer per call.
//!
//! `tokio::time::timeout` registers an entry in the runtime's timer wheel for every call and
//! removes it again; with 32 calls in flight through one client on a multi-threaded runtime that
//! cost more than half the throughput (BENCHMARKS.md, "The Rust client"). Here each pending call
//! puts its deadline and waker in a table of its [`Deadlines`], and one task per table sleeps
//! until the earliest deadline and wakes the calls whose deadline has passed. The task sleeps
//! again only when its target passes, so in a steady stream of calls it wakes about once per
//! call timeout, and it waits on a `Notify` while no call is pending.

use std::{
    future::Future,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll, Waker},
    time::Instant,
};

use tokio::sync::Notify;

/// The pending calls' deadlines, and the task that wakes them.
pub(crate) struct Deadlines {
    table: Mutex<Table>,
    // Shared with the task, which holds only a `Weak` to the table: dropping the table wakes it
    // to end.
    wake: Arc<Notify>,
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<(Instant, Waker)>>,
    free: Vec<usize>,
    // When the task wakes next; None: it waits for `wake`.
    target: Option<Instant>,
    running: bool,
}

impl Deadlines {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Runs `call` until it finishes (`Some`) or `deadline` passes (`None`, and `call` is
    /// dropped: HTTP/2 resets its stream).
    pub(crate) async fn run<F: Future>(
        self: &Arc<Self>,
        deadline: Instant,
        call: F,
    ) -> Option<F::Output> {
        let mut call = std::pin::pin!(call);
        let mut entry = Entry {
            deadlines: self,
            slot: None,
        };
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            entry.arm(deadline, cx);
            Poll::Pending
        })
        .await
    }

    /// The task: wakes the calls whose deadline passed, sleeps until the next one.
    async fn watch(owner: Weak<Self>, wake: Arc<Notify>) {
        loop {
            let Some(this) = owner.upgrade() else { return };
            let next = {
                let mut table = this.table.lock().expect("not poisoned");
                let now = Instant::now();
                let mut next: Option<Instant> = None;
                for (deadline, waker) in table.slots.iter().flatten() {
                    if *deadline <= now {
                        waker.wake_by_ref();
                    } else {
                        next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
                    }
                }
                table.target = next;
                next
            };
            // A call with an earlier deadline than `next` notifies: the task looks again.
            let notified = wake.notified();
            drop(this);
            match next {
                Some(next) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// A call's place in the table, freed when the call ends.
struct Entry<'a> {
    deadlines: &'a Arc<Deadlines>,
    slot: Option<usize>,
}

impl Entry<'_> {
    fn arm(&mut self, deadline: Instant, cx: &Context<'_>) {
        let mut table = self.deadlines.table.lock().expect("not poisoned");
        match self.slot {
            Some(slot) => match &mut table.slots[slot] {
                Some((_, waker)) if waker.will_wake(cx.waker()) => {}
                entry => *entry = Some((deadline, cx.waker().clone())),
            },
            None => {
                let value = Some((deadline, cx.waker().clone()));
                let slot = match table.free.pop() {
                    Some(slot) => {
                        table.slots[slot] = value;
                        slot
                    }
                    None => {
                        table.slots.push(value);
                        table.slots.len() - 1
                    }
                };
                self.slot = Some(slot);
            }
        }
        if !table.running {
            table.running = true;
            table.target = Some(deadline);
            tokio::spawn(Deadlines::watch(
                Arc::downgrade(self.deadlines),
                Arc::clone(&self.deadlines.wake),
            ));
            // The task reads the table when it starts.
            return;
        }
        // The task sleeps past this deadline, or waits for a call: it must look again.
        if table.target.is_none_or(|target| deadline < target) {
            table.target = Some(deadline);
            drop(table);
            self.deadlines.wake.notify_one();
        }
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut table = self.deadlines.table.lock().expect("not poisoned");
            table.slots[slot] = None;
            table.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn each_call_ends_at_its_own_deadline_even_one_earlier_than_those_pending() {
        let deadlines = Deadlines::new();
        let started = Instant::now();
        // A call with a far deadline first: the task sleeps until it.
        let far = tokio::spawn({
            let deadlines = Arc::clone(&deadlines);
            async move {
                deadlines
                    .run(
                        started + Duration::from_secs(30),
                        std::future::pending::<()>(),
                    )
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Then one with a near deadline: it must not wait for the far one.
        let near = deadlines
            .run(
                started + Duration::from_millis(200),
                std::future::pending::<()>(),
            )
            .await;
        assert!(near.is_none());
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
        // A call that finishes first is not cut.
        let done = deadlines
            .run(Instant::now() + Duration::from_secs(30), async { 7 })
            .await;
        assert_eq!(done, Some(7));
        far.abort();
    }
}
