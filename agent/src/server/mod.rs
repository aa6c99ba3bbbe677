//! The HTTP/2 server: one task per connection, running h2's server loop.
//!
//! `GetSecret`, the hot path, is answered inside the connection's own task: the request body is
//! read, the core is asked, and the reply is written without spawning a task, without a tower
//! stack and without hyper's per-stream dispatch (that model cost ~9k instructions a request by
//! callgrind and capped a connection near 30k req/s; BENCHMARKS.md). A `GetSecret` that has to
//! wait for a backend waits as one future among the connection's others, so it holds up no
//! other stream.
//!
//! Every other method — streams, the Admin service, health, reflection, and any `GetSecret` sent
//! compressed or with another content type — goes to tonic's generated services (`Routes`) in a
//! task of its own, with the caller attached to the request as tonic's own server attaches it.

use std::{
    future::{poll_fn, Future},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    task::{ready, Context, Poll, Wake, Waker},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::{stream::FuturesUnordered, task::AtomicWaker, StreamExt};
use h2::{
    server::{self, SendResponse},
    Ping, PingPong, RecvStream, SendStream,
};
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use prost::Message;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    net::{TcpListener, UnixStream},
    sync::watch,
    task::JoinSet,
    time::{Instant, Sleep},
};
use tonic::{service::Routes, Status};
use tower::Service;

use self::fast::{FastPath, Filtered};
use crate::{
    admission::{Admission, BodyBudget, ConnectionPermit, RequestPermit},
    agent::Agent,
    api,
    http_api::{self, prefixed::Prefixed, HttpShared, Peer, TcpPeer},
    identity::{Caller, Frontend, IdentityError, IdentityResolver, PeerCred},
    transport::{Acceptor, ConnectedCaller},
};

mod fast;

const GET_SECRET: &str = "/psst.v1.Secrets/GetSecret";
const BATCH_GET: &str = "/psst.v1.Secrets/BatchGetSecrets";
const WATCH: &str = "/psst.v1.Secrets/WatchSecrets";
const PUT: &str = "/psst.v1.Secrets/PutSecret";
/// Per-stream and per-connection receive windows, as hyper sets them for servers.
const WINDOW: u32 = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// The largest body of a request that names secrets and carries no value: one reference (at
/// most `MAX_REFERENCE_LEN`) and its framing. A `GetSecret` larger than this is refused as it
/// arrives, before it is buffered.
const MAX_SMALL_REQUEST: usize = 4 * 1024;
/// The largest body of the methods that take neither a value nor a list of references.
const MAX_OTHER_REQUEST: usize = 64 * 1024;

/// How long connections may live and how idle they may be (`[connections]`).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionSettings {
    pub max_streams: u32,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Zero: no keepalive pings.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_age: Duration,
    pub max_age_grace: Duration,
    pub body_timeout: Duration,
}

/// What every connection shares.
pub struct Shared {
    pub agent: Arc<Agent>,
    pub routes: Routes,
    pub resolver: Arc<dyn IdentityResolver>,
    pub admission: Arc<Admission>,
    pub settings: ConnectionSettings,
    /// How long identifying one caller may take (identity.timeout).
    pub identity_timeout: Duration,
    /// The largest gRPC message decoded or encoded (server.max_message_bytes).
    pub max_message: usize,
    /// The largest `BatchGetSecrets` or `WatchSecrets` body: `limits.max_batch` references.
    pub max_list_request: usize,
    /// The AWS agents' HTTP API (`[http]`); None, or `unix` off: the socket speaks gRPC only
    /// and its connections go to HTTP/2 without a look at their first bytes.
    pub http: Option<Arc<HttpShared>>,
}

impl Shared {
    /// The largest body a method's request may have, framing included: sized to what the
    /// method takes, so a stream cannot make the agent buffer more than its request needs.
    fn max_body(&self, path: &str) -> usize {
        match path {
            GET_SECRET => MAX_SMALL_REQUEST,
            BATCH_GET | WATCH => self.max_list_request,
            PUT => self.max_message + 5,
            _ => MAX_OTHER_REQUEST.min(self.max_message + 5),
        }
    }
}

/// Accepts connections until `shutdown` resolves, then asks each to finish (HTTP/2 GOAWAY: the
/// streams open go on, no new ones start) and waits for them. The caller bounds that wait.
///
/// The loop itself only accepts and admits (a uid's connection count): identifying the caller
/// reads `/proc` and may ask NSS, so it happens in the connection's own task, where a slow
/// caller delays nobody else.
pub(crate) async fn serve(
    mut acceptor: Acceptor,
    tcp: Option<TcpListener>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tcp = tcp;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = async { tcp.as_ref().expect("checked").accept().await }, if tcp.is_some() => {
                match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(tcp_connection(stream, Arc::clone(&shared), stop_rx.clone()));
                    }
                    Err(e) => {
                        // Out of descriptors and the like: the Unix socket's acceptor sheds
                        // load; here, wait a moment rather than spin.
                        tracing::debug!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            },
            (stream, peer) = acceptor.accept() => {
                let Some(peer) = peer else {
                    acceptor.refuse(&"no peer credentials");
                    continue;
                };
                match shared.admission.connect(peer.uid) {
                    Ok(permit) => {
                        connections.spawn(SelfWakes::new(Box::pin(connection(
                            stream,
                            peer,
                            permit,
                            Arc::clone(&shared),
                            stop_rx.clone(),
                        ))));
                    }
                    // Dropping the stream closes it: the client sees the connection end.
                    Err(refusal) => acceptor.refuse(&refusal),
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Close the listener first: a client reconnecting now is refused at once and retries the
    // next agent, instead of waiting in the backlog of one that no longer accepts or landing
    // on one that is draining. Then end the watch streams (they never end by themselves;
    // UNAVAILABLE makes clients resume elsewhere or later) and ask every connection to finish.
    drop(acceptor);
    drop(tcp.take());
    shared.agent.shut_down();
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Runs a connection's future so that the wake-ups it gives itself while it runs are answered by
/// polling it again at once, not by the scheduler.
///
/// Answering a `GetSecret` inside the connection's task wakes that same task several times
/// while it runs: h2 wakes the connection when a reply is queued, and the body reader's waker
/// fires as frames arrive. A tokio task woken while it runs is re-queued as a yield when it
/// returns, and the multi-threaded scheduler then unparks another worker to look for work
/// (a futex wake, an epoll wake-up and, often, the task moving threads) — for a wake-up that
/// only asked the task to go on doing what it was about to do. Here such wake-ups set a flag;
/// the future is polled again before this returns, at most `MAX_REPOLLS` times in a row, then
/// the task yields to the scheduler as before. Wake-ups while the task is not running (I/O
/// readiness, timers, another task) go to the scheduler unchanged.
struct SelfWakes<F> {
    future: F,
    state: Arc<WakeState>,
    waker: Waker,
}

/// How many times in a row `SelfWakes` polls again before yielding, so a connection that keeps
/// waking itself still lets the worker run its other tasks.
const MAX_REPOLLS: usize = 8;

struct WakeState {
    running: AtomicBool,
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.running.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
            // The poll may have ended between the load above and the store (a wake from
            // another thread): then nobody will look at `woken`, so wake the task too. Without
            // this re-check such a wake-up was lost and a watch stream's event stayed queued
            // (tests/tests/rotation.rs, the watcher-memory test, caught it).
            if !self.running.load(Ordering::SeqCst) {
                self.task.wake();
            }
        } else {
            self.task.wake();
        }
    }
}

impl<F: Future> SelfWakes<F> {
    fn new(future: F) -> Self {
        let state = Arc::new(WakeState {
            running: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&state));
        Self {
            future,
            state,
            waker,
        }
    }
}

impl<F: Future + Unpin> Future for SelfWakes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.state.task.register(cx.waker());
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..MAX_REPOLLS {
            this.state.running.store(true, Ordering::SeqCst);
            this.state.woken.store(false, Ordering::SeqCst);
            let poll = Pin::new(&mut this.future).poll(&mut inner);
            this.state.running.store(false, Ordering::SeqCst);
            if poll.is_ready() {
                return poll;
            }
            // A wake-up after `running` was cleared went to the scheduler already.
            if !this.state.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Identifies the caller behind a new connection, in its own task and bounded in time
/// (`identity.timeout`): a slow `/proc`, NSS or platform lookup delays only this connection.
async fn identify(shared: &Shared, peer: PeerCred) -> ConnectedCaller {
    Arc::new(resolve(shared, peer).await)
}

/// The caller behind peer credentials, bounded by `identity.timeout`; a failure is logged.
pub(crate) async fn resolve(shared: &Shared, peer: PeerCred) -> Result<Caller, IdentityError> {
    let uid = peer.uid;
    let caller = tokio::time::timeout(shared.identity_timeout, shared.resolver.resolve(peer))
        .await
        .unwrap_or(Err(IdentityError::TimedOut(shared.identity_timeout)));
    if let Err(e) = &caller {
        tracing::warn!(error = %e, uid, "connection from an unidentified caller");
    }
    caller
}

/// The HTTP/2 connection preface; HTTP/1.1 methods never begin with its first three bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// What the sniff reads at most: the bytes go on to the protocol's own reader, so this is the
/// one read a connection would have started with anyway.
const SNIFF_BUFFER: usize = 4096;

async fn connection(
    stream: UnixStream,
    peer: PeerCred,
    permit: ConnectionPermit,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    if !shared.http.as_ref().is_some_and(|http| http.unix) {
        return http2(stream, peer, permit, shared, stop, None).await;
    }
    // Tell HTTP/1.1 from HTTP/2 by the first bytes, within the handshake timeout.
    let deadline = Instant::now() + shared.settings.handshake_timeout;
    let mut stream = stream;
    let mut first = BytesMut::with_capacity(SNIFF_BUFFER);
    let sniffed = tokio::time::timeout_at(deadline, async {
        while first.len() < 3 && H2_PREFACE.starts_with(&first) {
            if stream.read_buf(&mut first).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(sniffed, Ok(Ok(()))) {
        tracing::debug!(
            uid = peer.uid,
            "connection closed or silent before its first request"
        );
        return;
    }
    let is_h2 = H2_PREFACE.starts_with(&first[..first.len().min(H2_PREFACE.len())]);
    let stream = Prefixed::new(first.freeze(), stream);
    if is_h2 {
        http2(stream, peer, permit, shared, stop, Some(deadline)).await;
    } else {
        http_api::serve(
            stream,
            Peer::Unix(peer),
            permit,
            shared,
            Frontend::HttpUnix,
            stop,
        )
        .await;
    }
}

/// A connection to the TCP listener: only from a socket on this host whose owner the kernel
/// names (`http_api::tcp`), admitted against that uid's share like a Unix-socket connection.
async fn tcp_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let peer = tokio::task::spawn_blocking(move || TcpPeer::lookup(local, remote))
        .await
        .ok()
        .flatten();
    let Some(peer) = peer else {
        tracing::debug!(%remote, "refusing a TCP connection whose socket is not on this host");
        return;
    };
    let permit = match shared.admission.connect(peer.uid) {
        Ok(permit) => permit,
        Err(refusal) => {
            tracing::debug!(uid = peer.uid, %refusal, "refusing a TCP connection");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    http_api::serve(
        stream,
        Peer::Tcp(peer),
        permit,
        shared,
        Frontend::HttpTcp,
        stop,
    )
    .await;
}

async fn http2<T>(
    stream: T,
    peer: PeerCred,
    permit: ConnectionPermit,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    deadline: Option<Instant>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let settings = shared.settings;
    let uid = peer.uid;
    let permit = Arc::new(permit);
    let caller_slot = Arc::new(OnceLock::new());
    let answered = Arc::new(AtomicU64::new(0));
    let stream = Filtered::new(
        stream,
        FastPath {
            shared: Arc::clone(&shared),
            caller: Arc::clone(&caller_slot),
            permit: Arc::clone(&permit),
            answered: Arc::clone(&answered),
        },
    );
    let handshake = server::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_concurrent_streams(settings.max_streams)
        .handshake::<_, Bytes>(stream);
    let deadline = deadline.unwrap_or_else(|| Instant::now() + settings.handshake_timeout);
    let mut conn = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(uid, "HTTP/2 handshake timed out");
            return;
        }
    };
    // Only a connection that speaks HTTP/2 costs a look at /proc: a connect/close flood does not.
    let caller = identify(&shared, peer).await;
    let _ = caller_slot.set(Arc::clone(&caller));
    let mut life = Lifetime::new(&settings, conn.ping_pong());
    let mut accepted_streams = 0u64;
    let mut inline = FuturesUnordered::new();
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow() {
            stopping = true;
            conn.graceful_shutdown();
        }
        let has_streams = conn.has_streams();
        // Streams the fast path answered keep the connection alive as h2's do.
        life.streams_seen = accepted_streams + answered.load(Ordering::Relaxed);
        tokio::select! {
            biased;
            Some(()) = inline.next(), if !inline.is_empty() => {}
            accepted = conn.accept() => match accepted {
                Some(Ok((request, mut respond))) => {
                    accepted_streams += 1;
                    let request_permit = match admit(&caller, &permit) {
                        Ok(request_permit) => request_permit,
                        Err(status) => {
                            send_status(&mut respond, status);
                            continue;
                        }
                    };
                    if is_plain_get_secret(&request) {
                        inline.push(get_secret(&shared, &caller, request, respond, request_permit));
                    } else {
                        let limit = shared.max_body(request.uri().path());
                        tokio::spawn(route(
                            shared.routes.clone(),
                            Arc::clone(&caller),
                            request,
                            respond,
                            request_permit,
                            BodyLimit { max: limit, timeout: settings.body_timeout },
                        ));
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                    break;
                }
                None => break,
            },
            event = life.next(has_streams) => match event {
                LifeEvent::Continue => {}
                LifeEvent::GoAway => conn.graceful_shutdown(),
                LifeEvent::Close => {
                    tracing::debug!(uid, "closing a connection that stopped answering or outlived its grace");
                    break;
                }
            },
            _ = stop.changed(), if !stopping => {}
        }
    }
}

/// Admits one request of a connection: an unidentified caller gets nothing (not even its body
/// read), and an identified one only within its uid's share.
fn admit(caller: &ConnectedCaller, permit: &ConnectionPermit) -> Result<RequestPermit, Status> {
    api::connected(caller)?;
    permit
        .request()
        .map_err(|refusal| Status::resource_exhausted(refusal.to_string()))
}

/// The timers of one connection: idle, keepalive, maximum age. One timer stands for all three
/// (the earliest deadline), and deadlines move only when that timer fires, comparing a stream
/// counter: a busy connection pays one timer poll per loop turn and nothing per request.
struct Lifetime {
    settings: ConnectionSettings,
    /// Streams accepted so far on the connection.
    streams_seen: u64,
    timer: Pin<Box<Sleep>>,
    idle_at: Instant,
    idle_mark: u64,
    /// None: keepalive pings are off.
    ping_pong: Option<PingPong>,
    ping_at: Instant,
    ping_mark: u64,
    /// A ping is out, and must be answered by then.
    pong_due: Option<Instant>,
    age_at: Instant,
    /// GOAWAY was sent (idle or age); after the age grace the connection closes.
    going_away: bool,
    close_at: Option<Instant>,
}

enum LifeEvent {
    Continue,
    /// Ask the client to reconnect (GOAWAY); open streams go on.
    GoAway,
    /// Close the connection now.
    Close,
}

impl Lifetime {
    fn new(settings: &ConnectionSettings, ping_pong: Option<PingPong>) -> Self {
        let now = Instant::now();
        // ±10% so connections opened together (a fleet restart) do not all go away together.
        let age = settings.max_age.mul_f64(rand::random_range(0.9..1.1));
        let mut life = Self {
            settings: *settings,
            streams_seen: 0,
            timer: Box::pin(tokio::time::sleep_until(now + settings.idle_timeout)),
            idle_at: now + settings.idle_timeout,
            idle_mark: 0,
            ping_pong: ping_pong.filter(|_| !settings.keepalive_interval.is_zero()),
            ping_at: now + settings.keepalive_interval,
            ping_mark: 0,
            pong_due: None,
            age_at: now + age,
            going_away: false,
            close_at: None,
        };
        life.rearm();
        life
    }

    /// Sets the one timer to the earliest deadline still pending.
    fn rearm(&mut self) {
        let mut next = self.close_at.unwrap_or(self.age_at);
        if !self.going_away {
            next = next.min(self.idle_at);
        }
        if self.ping_pong.is_some() {
            next = next.min(self.pong_due.unwrap_or(self.ping_at));
        }
        self.timer.as_mut().reset(next);
    }

    async fn next(&mut self, has_streams: bool) -> LifeEvent {
        let seen = self.streams_seen;
        let awaiting_pong = self.pong_due.is_some();
        let timer = &mut self.timer;
        let ping_pong = &mut self.ping_pong;
        tokio::select! {
            pong = poll_fn(|cx| ping_pong.as_mut().expect("a ping is out").poll_pong(cx)), if awaiting_pong => {
                self.pong_due = None;
                if pong.is_err() {
                    return LifeEvent::Close;
                }
                self.ping_at = Instant::now() + self.settings.keepalive_interval;
                self.rearm();
                return LifeEvent::Continue;
            }
            () = timer.as_mut() => {}
        }
        let now = Instant::now();
        let settings = self.settings;
        if self.pong_due.is_some_and(|due| now >= due) || self.close_at.is_some_and(|at| now >= at)
        {
            return LifeEvent::Close;
        }
        let mut event = LifeEvent::Continue;
        if !self.going_away && now >= self.idle_at {
            if has_streams || self.idle_mark != seen {
                self.idle_mark = seen;
                self.idle_at = now + settings.idle_timeout;
            } else {
                self.going_away = true;
                event = LifeEvent::GoAway;
            }
        }
        if self.close_at.is_none() && now >= self.age_at {
            // Reconnecting identifies the caller again; streams still open (watches) get the
            // grace period, then the connection closes and their clients resume.
            self.going_away = true;
            self.close_at = Some(now + settings.max_age_grace);
            event = LifeEvent::GoAway;
        }
        if self.pong_due.is_none() && now >= self.ping_at {
            if let Some(ping_pong) = self.ping_pong.as_mut() {
                if self.ping_mark != seen {
                    // Streams arrived since the last look: the peer is alive.
                    self.ping_mark = seen;
                    self.ping_at = now + settings.keepalive_interval;
                } else if ping_pong.send_ping(Ping::opaque()).is_ok() {
                    self.pong_due = Some(now + settings.keepalive_timeout);
                } else {
                    return LifeEvent::Close;
                }
            }
        }
        self.rearm();
        event
    }
}

/// A `GetSecret` the inline path can answer: uncompressed gRPC with protobuf.
fn is_plain_get_secret(request: &Request<RecvStream>) -> bool {
    let headers = request.headers();
    request.uri().path() == GET_SECRET
        && headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/grpc" || v == "application/grpc+proto")
        && headers.get("grpc-encoding").is_none_or(|v| v == "identity")
}

async fn get_secret(
    shared: &Shared,
    caller: &ConnectedCaller,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    permit: RequestPermit,
) {
    let answer = answer_get_secret(shared, caller, request.into_body(), &permit).await;
    match answer {
        Ok(reply) => {
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "application/grpc")
                .body(())
                .expect("a valid response head");
            let Ok(mut send) = respond.send_response(response, false) else {
                return;
            };
            if send.send_data(reply, false).is_ok() {
                let mut trailers = HeaderMap::with_capacity(1);
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                let _ = send.send_trailers(trailers);
            }
        }
        Err(status) => send_status(&mut respond, status),
    }
}

/// Reads one `GetSecretRequest`, asks the core, and returns the framed `Secret`.
async fn answer_get_secret(
    shared: &Shared,
    caller: &ConnectedCaller,
    mut body: RecvStream,
    permit: &RequestPermit,
) -> Result<Bytes, Status> {
    let mut budget = permit.body();
    let framed = {
        let mut read = std::pin::pin!(read_message(&mut body, MAX_SMALL_REQUEST - 5, &mut budget));
        match futures::poll!(read.as_mut()) {
            // The usual case: the whole request came with its headers. No timer is armed.
            Poll::Ready(framed) => framed,
            Poll::Pending => tokio::time::timeout(shared.settings.body_timeout, read)
                .await
                .map_err(|_| body_timed_out())?,
        }
    }?;
    let request = psst_proto::v1::GetSecretRequest::decode(&framed[5..])
        .map_err(|e| Status::invalid_argument(format!("the message could not be decoded: {e}")))?;
    drop(budget);
    let caller = api::connected(caller)?;
    let secret = api::get_secret(&shared.agent, caller, request.reference).await?;
    let length = secret.encoded_len();
    if length > shared.max_message {
        return Err(Status::out_of_range(format!(
            "Error, encoded message length too large: found {length} bytes, the limit is: {} bytes",
            shared.max_message
        )));
    }
    let mut out = BytesMut::with_capacity(5 + length);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(length as u32).to_be_bytes());
    secret
        .encode(&mut out)
        .map_err(|e| Status::internal(format!("encoding the reply: {e}")))?;
    Ok(out.freeze())
}

fn body_timed_out() -> Status {
    Status::deadline_exceeded("the request body did not arrive in time")
}

/// The request body: exactly one uncompressed gRPC message, prefix included. One DATA frame (the
/// usual case) is taken as it is; a message split across frames is joined. Every byte is
/// accounted to the caller's budget before it is kept.
async fn read_message(
    body: &mut RecvStream,
    max_message: usize,
    budget: &mut BodyBudget,
) -> Result<Bytes, Status> {
    let mut framed = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| Status::cancelled(format!("reading the request: {e}")))?;
        budget
            .buffer(chunk.len())
            .map_err(|refusal| Status::resource_exhausted(refusal.to_string()))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        match joined.as_mut() {
            Some(joined) => joined.extend_from_slice(&chunk),
            None if framed.is_empty() => framed = chunk,
            None => {
                let mut both = BytesMut::with_capacity(framed.len() + chunk.len());
                both.extend_from_slice(&framed);
                both.extend_from_slice(&chunk);
                joined = Some(both);
            }
        }
        let received: &[u8] = joined.as_deref().unwrap_or(&framed);
        check_prefix(received, max_message)?;
        if received.len() > 5 + max_message {
            return Err(Status::out_of_range(
                "the request body is larger than one message may be",
            ));
        }
    }
    let framed = joined.map_or(framed, BytesMut::freeze);
    if framed.len() < 5 {
        return Err(Status::internal("the request is not a gRPC message"));
    }
    let length = u32::from_be_bytes(framed[1..5].try_into().expect("4 bytes")) as usize;
    if framed.len() != 5 + length {
        return Err(Status::internal(
            "the request body is not exactly one gRPC message",
        ));
    }
    Ok(framed)
}

fn check_prefix(prefix: &[u8], max_message: usize) -> Result<(), Status> {
    if prefix.len() < 5 {
        return Ok(());
    }
    if prefix[0] != 0 {
        return Err(Status::unimplemented(
            "compressed messages are not accepted without grpc-encoding",
        ));
    }
    let length = u32::from_be_bytes(prefix[1..5].try_into().expect("4 bytes")) as usize;
    if length > max_message {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {length} bytes, the limit is: {max_message} bytes"
        )));
    }
    Ok(())
}

/// A trailers-only response carrying `status`.
fn send_status(respond: &mut SendResponse<Bytes>, status: Status) {
    let (parts, ()) = status.into_http::<()>().into_parts();
    let _ = respond.send_response(Response::from_parts(parts, ()), true);
}

/// How much of a request body a routed method may receive, and for how long.
struct BodyLimit {
    max: usize,
    timeout: Duration,
}

/// Runs a request through tonic's services and streams the response back. The permit keeps the
/// request counted against its uid until the response (a watch: the stream) ends.
async fn route(
    mut routes: Routes,
    caller: ConnectedCaller,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    permit: RequestPermit,
    limit: BodyLimit,
) {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(caller);
    let request = Request::from_parts(
        parts,
        H2Body {
            recv: body,
            data_done: false,
            budget: permit.body(),
            received: 0,
            max: limit.max,
            deadline: Box::pin(tokio::time::sleep(limit.timeout)),
        },
    );
    let response = match routes.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let end = body.is_end_stream();
    let Ok(mut send) = respond.send_response(Response::from_parts(parts, ()), end) else {
        return;
    };
    if end {
        return;
    }
    let mut body = std::pin::pin!(body);
    loop {
        // A watch can wait minutes for its next event: notice a caller that went away.
        let frame = tokio::select! {
            frame = poll_fn(|cx| body.as_mut().poll_frame(cx)) => frame,
            _ = poll_fn(|cx| send.poll_reset(cx)) => return,
        };
        match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(status)) => {
                let mut trailers = HeaderMap::new();
                if status.add_header(&mut trailers).is_ok() {
                    let _ = send.send_trailers(trailers);
                }
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if send_all(&mut send, data).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                    }
                    return;
                }
            },
        }
    }
}

/// Sends `data` as the peer's flow control allows.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        while send.capacity() == 0 {
            match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(h2::Error::from(h2::Reason::CANCEL)),
            }
        }
        let n = send.capacity().min(data.len());
        send.send_data(data.split_to(n), false)?;
    }
    Ok(())
}

/// An h2 request body as an `http_body::Body`, releasing flow-control capacity as it is read,
/// within the method's size, the caller's byte budget and the body timeout. Its errors are
/// `Status`es, which tonic passes on to the caller as they are.
struct H2Body {
    recv: RecvStream,
    data_done: bool,
    budget: BodyBudget,
    received: usize,
    max: usize,
    deadline: Pin<Box<Sleep>>,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let reading = |e: h2::Error| Status::cancelled(format!("reading the request: {e}"));
        if !self.data_done {
            let this = &mut *self;
            match this.recv.poll_data(cx) {
                Poll::Pending => {
                    return match this.deadline.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Some(Err(body_timed_out()))),
                        Poll::Pending => Poll::Pending,
                    }
                }
                Poll::Ready(Some(Ok(data))) => {
                    this.received += data.len();
                    if this.received > this.max {
                        return Poll::Ready(Some(Err(Status::out_of_range(format!(
                            "the request body is larger than this method takes ({} bytes)",
                            this.max
                        )))));
                    }
                    if let Err(refusal) = this.budget.buffer(data.len()) {
                        return Poll::Ready(Some(Err(Status::resource_exhausted(
                            refusal.to_string(),
                        ))));
                    }
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(reading(e)))),
                Poll::Ready(None) => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(reading(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_prefixes_are_checked() {
        assert!(check_prefix(&[0, 0, 0, 0, 10], 10).is_ok());
        let big = check_prefix(&[0, 0, 0, 0, 11], 10).unwrap_err();
        assert_eq!(big.code(), tonic::Code::OutOfRange);
        let compressed = check_prefix(&[1, 0, 0, 0, 1], 10).unwrap_err();
        assert_eq!(compressed.code(), tonic::Code::Unimplemented);
        assert!(check_prefix(&[1, 0], 10).is_ok(), "not yet a whole prefix");
    }

    /// Counts the wake-ups that reach the scheduler.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn self_wakes_are_answered_by_polling_again() {
        let scheduler = Arc::new(Counter(0.into()));
        let waker = Waker::from(Arc::clone(&scheduler));
        let mut cx = Context::from_waker(&waker);
        // Wakes itself twice while it runs, then finishes: three polls, one scheduler poll.
        let mut polls = 0;
        let mut future = SelfWakes::new(poll_fn(|cx| {
            polls += 1;
            if polls < 3 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(polls)
        }));
        assert_eq!(Pin::new(&mut future).poll(&mut cx), Poll::Ready(3));
        assert_eq!(
            scheduler.0.load(Ordering::SeqCst),
            0,
            "no wake-up reached the scheduler"
        );
    }

    #[test]
    fn other_wakes_reach_the_scheduler_and_self_wakes_are_bounded() {
        let scheduler = Arc::new(Counter(0.into()));
        let waker = Waker::from(Arc::clone(&scheduler));
        let mut cx = Context::from_waker(&waker);
        // Pending without a wake-up of its own: it keeps the waker for later.
        let kept: Arc<std::sync::Mutex<Option<Waker>>> = Arc::default();
        let keep = Arc::clone(&kept);
        let mut idle = SelfWakes::new(poll_fn(move |cx| {
            *keep.lock().unwrap() = Some(cx.waker().clone());
            Poll::<()>::Pending
        }));
        assert!(Pin::new(&mut idle).poll(&mut cx).is_pending());
        assert_eq!(scheduler.0.load(Ordering::SeqCst), 0);
        // A wake-up while it is not running (I/O, another task) goes to the scheduler.
        let woken = kept.lock().unwrap().take().expect("a waker was kept");
        woken.wake();
        assert_eq!(scheduler.0.load(Ordering::SeqCst), 1);

        // A future that always wakes itself is polled MAX_REPOLLS times, then yields.
        let mut polls = 0;
        let mut busy = SelfWakes::new(poll_fn(|cx| {
            polls += 1;
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        }));
        assert!(Pin::new(&mut busy).poll(&mut cx).is_pending());
        drop(busy);
        assert_eq!(polls, MAX_REPOLLS);
        assert_eq!(
            scheduler.0.load(Ordering::SeqCst),
            2,
            "the yield reached the scheduler"
        );
    }
}
