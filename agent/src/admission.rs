//! Admission: what one caller (a uid) and all callers together may make the agent hold.
//!
//! Every local user can reach the socket, so every resource a connection can pin is bounded
//! twice, per uid and in total: connections, requests in flight (streams included), request
//! bytes buffered, and request rate. A uid past its share is refused (`RESOURCE_EXHAUSTED`, or a
//! closed connection) while every other uid keeps being served.
//!
//! The counters are plain atomics checked with `fetch_add`-then-compare: nothing waits for a
//! share, so nothing queues, and the cached `GetSecret` path pays a few atomic operations.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The bounds, from `[connections]` and `[limits]` in the config.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    pub max_connections: usize,
    pub max_connections_per_uid: usize,
    /// New connections per second per uid, and the burst above it; 0: no limit.
    pub connections_per_second_per_uid: u32,
    pub connection_burst_per_uid: u32,
    pub requests_in_flight_per_uid: usize,
    /// Requests per second per uid; 0: no rate limit.
    pub requests_per_second_per_uid: u32,
    pub request_burst_per_uid: u32,
    pub body_bytes_in_flight: usize,
    pub body_bytes_in_flight_per_uid: usize,
}

/// Why a connection or a request was refused. The text goes to the caller and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the agent has {0} connections open, its limit")]
    Connections(usize),
    #[error("uid {uid} has {limit} connections open, its limit")]
    UidConnections { uid: u32, limit: usize },
    #[error("uid {uid} is over its connection rate")]
    UidConnectionRate { uid: u32 },
    #[error("uid {uid} has {limit} requests in flight, its limit")]
    UidRequests { uid: u32, limit: usize },
    #[error("uid {uid} is over its request rate")]
    UidRate { uid: u32 },
    #[error("too many request bytes in flight for uid {uid}")]
    UidBytes { uid: u32 },
    #[error("too many request bytes in flight")]
    Bytes,
}

/// The agent-wide state: totals, and one [`UidShare`] per uid with a connection open.
pub struct Admission {
    limits: AdmissionLimits,
    connections: AtomicUsize,
    body_bytes: AtomicUsize,
    shares: Mutex<HashMap<u32, Arc<UidShare>>>,
}

/// What one uid holds now. Lives while the uid has a connection open.
pub(crate) struct UidShare {
    uid: u32,
    connections: AtomicUsize,
    requests: AtomicUsize,
    body_bytes: AtomicUsize,
    rate: Option<DefaultDirectRateLimiter>,
    connection_rate: Option<DefaultDirectRateLimiter>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            connections: AtomicUsize::new(0),
            body_bytes: AtomicUsize::new(0),
            shares: Mutex::new(HashMap::new()),
        })
    }

    /// Connections open now, from every uid.
    #[cfg(test)]
    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Admits a new connection from `uid`, or says why not. The permit gives the slot back
    /// when dropped.
    pub fn connect(self: &Arc<Self>, uid: u32) -> Result<ConnectionPermit, Refusal> {
        if !take(&self.connections, 1, self.limits.max_connections) {
            return Err(Refusal::Connections(self.limits.max_connections));
        }
        let share = {
            let mut shares = self.shares.lock().expect("admission lock");
            Arc::clone(shares.entry(uid).or_insert_with(|| {
                Arc::new(UidShare {
                    uid,
                    connections: AtomicUsize::new(0),
                    requests: AtomicUsize::new(0),
                    body_bytes: AtomicUsize::new(0),
                    rate: rate_limiter(
                        self.limits.requests_per_second_per_uid,
                        self.limits.request_burst_per_uid,
                    ),
                    connection_rate: rate_limiter(
                        self.limits.connections_per_second_per_uid,
                        self.limits.connection_burst_per_uid,
                    ),
                })
            }))
        };
        // A connect/close flood is refused here, before it costs a task, an HTTP/2 handshake
        // or a look at /proc; and so it cannot fill the listen queue other callers wait in.
        let over_rate = share
            .connection_rate
            .as_ref()
            .is_some_and(|rate| rate.check().is_err());
        if over_rate {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            self.forget_if_unused(&share);
            return Err(Refusal::UidConnectionRate { uid });
        }
        if !take(&share.connections, 1, self.limits.max_connections_per_uid) {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            self.forget_if_unused(&share);
            return Err(Refusal::UidConnections {
                uid,
                limit: self.limits.max_connections_per_uid,
            });
        }
        Ok(ConnectionPermit {
            admission: Arc::clone(self),
            share,
        })
    }

    /// Drops a uid's share once it has no connection left, so the map holds only live uids
    /// (and a uid's rate limit restarts with its next connection: that costs it nothing it
    /// could not get by waiting one burst).
    fn forget_if_unused(&self, share: &Arc<UidShare>) {
        let mut shares = self.shares.lock().expect("admission lock");
        if share.connections.load(Ordering::Relaxed) == 0 {
            if let Some(current) = shares.get(&share.uid) {
                if Arc::ptr_eq(current, share) {
                    shares.remove(&share.uid);
                }
            }
        }
    }
}

fn rate_limiter(per_second: u32, burst: u32) -> Option<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(RateLimiter::direct(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

/// Adds `n` to `counter` if the result stays within `limit`.
fn take(counter: &AtomicUsize, n: usize, limit: usize) -> bool {
    let before = counter.fetch_add(n, Ordering::Relaxed);
    if before + n > limit {
        counter.fetch_sub(n, Ordering::Relaxed);
        return false;
    }
    true
}

/// One admitted connection. Dropping it frees the slot.
pub struct ConnectionPermit {
    admission: Arc<Admission>,
    share: Arc<UidShare>,
}

impl ConnectionPermit {
    /// Connections this permit's uid has open now, this one included (the HTTP front door's
    /// `max_conn` reads it).
    pub fn uid_connections(&self) -> usize {
        self.share.connections.load(Ordering::Relaxed)
    }

    /// An account for request bytes buffered before their request is admitted (the server's
    /// fast path holds a `GetSecret`'s body until it is whole), within the same shares.
    pub fn body(&self) -> BodyBudget {
        BodyBudget::new(&self.admission, &self.share)
    }

    /// Admits one request (a unary call or a stream) on this connection.
    pub fn request(&self) -> Result<RequestPermit, Refusal> {
        let limits = &self.admission.limits;
        let share = &self.share;
        if !take(&share.requests, 1, limits.requests_in_flight_per_uid) {
            return Err(Refusal::UidRequests {
                uid: share.uid,
                limit: limits.requests_in_flight_per_uid,
            });
        }
        if share
            .rate
            .as_ref()
            .is_some_and(|rate| rate.check().is_err())
        {
            share.requests.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::UidRate { uid: share.uid });
        }
        Ok(RequestPermit {
            admission: Arc::clone(&self.admission),
            share: Arc::clone(share),
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.share.connections.fetch_sub(1, Ordering::Relaxed);
        self.admission.connections.fetch_sub(1, Ordering::Relaxed);
        self.admission.forget_if_unused(&self.share);
    }
}

/// One admitted request (a unary call or a stream). Dropping it frees the slot.
pub struct RequestPermit {
    admission: Arc<Admission>,
    share: Arc<UidShare>,
}

impl RequestPermit {
    /// The account for this request's body bytes.
    pub fn body(&self) -> BodyBudget {
        BodyBudget::new(&self.admission, &self.share)
    }
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.share.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The request bytes one request has buffered. Dropping it gives them back.
pub struct BodyBudget {
    admission: Arc<Admission>,
    share: Arc<UidShare>,
    bytes: usize,
}

impl BodyBudget {
    fn new(admission: &Arc<Admission>, share: &Arc<UidShare>) -> Self {
        BodyBudget {
            admission: Arc::clone(admission),
            share: Arc::clone(share),
            bytes: 0,
        }
    }

    /// Accounts for `n` more buffered request bytes, within the uid's share and the total.
    pub fn buffer(&mut self, n: usize) -> Result<(), Refusal> {
        let limits = &self.admission.limits;
        if !take(
            &self.share.body_bytes,
            n,
            limits.body_bytes_in_flight_per_uid,
        ) {
            return Err(Refusal::UidBytes {
                uid: self.share.uid,
            });
        }
        if !take(&self.admission.body_bytes, n, limits.body_bytes_in_flight) {
            self.share.body_bytes.fetch_sub(n, Ordering::Relaxed);
            return Err(Refusal::Bytes);
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for BodyBudget {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.share
                .body_bytes
                .fetch_sub(self.bytes, Ordering::Relaxed);
            self.admission
                .body_bytes
                .fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 3,
            max_connections_per_uid: 2,
            connections_per_second_per_uid: 0,
            connection_burst_per_uid: 0,
            requests_in_flight_per_uid: 2,
            requests_per_second_per_uid: 0,
            request_burst_per_uid: 0,
            body_bytes_in_flight: 100,
            body_bytes_in_flight_per_uid: 60,
        }
    }

    #[test]
    fn connections_are_capped_per_uid_and_in_total() {
        let admission = Admission::new(limits());
        let a1 = admission.connect(1000).unwrap();
        let _a2 = admission.connect(1000).unwrap();
        assert_eq!(
            admission.connect(1000).err(),
            Some(Refusal::UidConnections {
                uid: 1000,
                limit: 2
            })
        );
        let _b1 = admission.connect(1001).unwrap();
        assert_eq!(admission.connect(1002).err(), Some(Refusal::Connections(3)));
        drop(a1);
        assert_eq!(admission.connections(), 2);
        let _c1 = admission.connect(1002).expect("a freed slot is reusable");
    }

    #[test]
    fn a_uid_without_connections_is_forgotten() {
        let admission = Admission::new(limits());
        let permit = admission.connect(7).unwrap();
        assert_eq!(admission.shares.lock().unwrap().len(), 1);
        drop(permit);
        assert!(admission.shares.lock().unwrap().is_empty());
        // A refused connection leaves nothing behind either.
        let admission = Admission::new(AdmissionLimits {
            max_connections_per_uid: 0,
            ..limits()
        });
        assert!(admission.connect(7).is_err());
        assert!(admission.shares.lock().unwrap().is_empty());
        assert_eq!(admission.connections(), 0);
    }

    #[test]
    fn requests_in_flight_are_capped_per_uid_across_connections() {
        let admission = Admission::new(limits());
        let c1 = admission.connect(1000).unwrap();
        let c2 = admission.connect(1000).unwrap();
        let r1 = c1.request().unwrap();
        let _r2 = c2.request().unwrap();
        assert_eq!(
            c1.request().err(),
            Some(Refusal::UidRequests {
                uid: 1000,
                limit: 2
            })
        );
        // Another uid is not affected.
        let other = admission.connect(1001).unwrap();
        let _r3 = other.request().unwrap();
        drop(r1);
        c2.request().expect("a finished request frees its slot");
    }

    #[test]
    fn request_bytes_are_capped_per_uid_and_in_total() {
        let admission = Admission::new(limits());
        let a = admission.connect(1).unwrap();
        let b = admission.connect(2).unwrap();
        let request_a = a.request().unwrap();
        let mut ra = request_a.body();
        ra.buffer(50).unwrap();
        assert_eq!(ra.buffer(20), Err(Refusal::UidBytes { uid: 1 }));
        let request_b = b.request().unwrap();
        let mut rb = request_b.body();
        rb.buffer(50).unwrap();
        assert_eq!(rb.buffer(1), Err(Refusal::Bytes), "100 bytes in total");
        drop(ra);
        rb.buffer(10).expect("the other uid's bytes came back");
        drop(rb);
        assert_eq!(admission.body_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_connection_rate_is_limited_per_uid() {
        let admission = Admission::new(AdmissionLimits {
            connections_per_second_per_uid: 1,
            connection_burst_per_uid: 2,
            ..limits()
        });
        // Connections closed at once still count: the limit is on new connections.
        let kept = admission.connect(1).unwrap();
        drop(admission.connect(1).unwrap());
        assert_eq!(
            admission.connect(1).err(),
            Some(Refusal::UidConnectionRate { uid: 1 })
        );
        drop(
            admission
                .connect(2)
                .expect("another uid has its own bucket"),
        );
        assert_eq!(admission.connections(), 1);
        drop(kept);
    }

    #[test]
    fn the_request_rate_is_limited_per_uid() {
        let admission = Admission::new(AdmissionLimits {
            requests_per_second_per_uid: 1,
            request_burst_per_uid: 3,
            requests_in_flight_per_uid: 100,
            ..limits()
        });
        let a = admission.connect(1).unwrap();
        for _ in 0..3 {
            drop(a.request().expect("within the burst"));
        }
        assert_eq!(a.request().err(), Some(Refusal::UidRate { uid: 1 }));
        let b = admission.connect(2).unwrap();
        b.request().expect("another uid has its own bucket");
        // A refused request holds no in-flight slot.
        assert_eq!(a.share.requests.load(Ordering::Relaxed), 0);
    }
}
