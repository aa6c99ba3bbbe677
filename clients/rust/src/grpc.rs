//! Unary calls on one HTTP/2 connection, gRPC's framing done here: a request is the `h2` headers
//! and one DATA frame (a 5-byte prefix and the prost message), the reply is read back and its
//! `grpc-status` taken from the trailers, or from the headers of a trailers-only reply.
//!
//! Why not tonic's `Channel` for these: it sends every call through a buffer task and a tower
//! stack, about 73k instructions a call where `h2` alone needs about 40k (BENCHMARKS.md, "The
//! Rust client"). Streams (`WatchSecrets`) stay on tonic (`Client::channel`).
//!
//! One connection serves every call of a [`crate::Client`] and its clones: each call clones the
//! `SendRequest` handle. When the connection ends (the agent restarted), the next call makes a
//! new one, with the server's uid checked again before anything is sent.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
};

use bytes::{Buf, Bytes};
use h2::client::SendRequest;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use prost::Message;
use tonic::Code;
use zeroize::Zeroizing;

use crate::{connect_checked, deadline::Deadlines, find_source, Error, UnexpectedServer};

/// The largest reply accepted, as tonic's default: a secret is far smaller.
const MAX_REPLY: usize = 4 * 1024 * 1024;
/// Flow-control windows: a reply of up to a megabyte needs no WINDOW_UPDATE round trip, and the
/// connection's window is given back in large steps rather than per reply.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// Why a call failed: `NeverReached` when the agent cannot have seen the request (no connection
/// could be made, or the agent refused the stream unprocessed), so it may be sent again.
pub(crate) enum Failure {
    NeverReached(Error),
    Failed(Error),
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::NeverReached(e) | Failure::Failed(e) => e,
        }
    }
}

/// The connection to the agent, made again when it ends.
pub(crate) struct Connection {
    socket: PathBuf,
    expected_uid: Option<u32>,
    current: Mutex<Current>,
    // Held while connecting, so that calls failing together make one new connection.
    connecting: tokio::sync::Mutex<()>,
    /// The deadlines of the calls in flight on this client.
    pub(crate) deadlines: Arc<Deadlines>,
}

#[derive(Default)]
struct Current {
    // Counts connections made; a task ending or a failed call forgets only its own.
    generation: u64,
    sender: Option<SendRequest<Bytes>>,
}

impl Connection {
    /// Connects now: the errors of an agent that is not there, or of the wrong server, come
    /// from here.
    pub(crate) async fn connect(
        socket: &Path,
        expected_uid: Option<u32>,
    ) -> Result<Arc<Self>, Failure> {
        let connection = Arc::new(Self {
            socket: socket.to_owned(),
            expected_uid,
            current: Mutex::new(Current::default()),
            connecting: tokio::sync::Mutex::new(()),
            deadlines: Deadlines::new(),
        });
        connection.sender(0).await?;
        Ok(connection)
    }

    /// The live connection's handle, or a new connection if there is none (or if the one of
    /// `stale`, a generation that failed, is still current).
    async fn sender(self: &Arc<Self>, stale: u64) -> Result<(u64, SendRequest<Bytes>), Failure> {
        if let Some(live) = self.live(stale) {
            return Ok(live);
        }
        let _connecting = self.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(live) = self.live(stale) {
            return Ok(live);
        }
        let stream = connect_checked(&self.socket, self.expected_uid)
            .await
            .map_err(|e| connect_failure(&self.socket, &e))?;
        let (sender, connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| {
                Failure::Failed(Error::new(
                    Code::Unavailable,
                    format!(
                        "cannot connect to the psst agent at {}: {e}",
                        self.socket.display()
                    ),
                ))
            })?;
        let generation = {
            let mut current = self.current.lock().expect("not poisoned");
            current.generation += 1;
            current.sender = Some(sender.clone());
            current.generation
        };
        let owner: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            // Ends when the agent closes the connection, or when every handle is dropped.
            let _ = connection.await;
            if let Some(owner) = owner.upgrade() {
                owner.forget(generation);
            }
        });
        Ok((generation, sender))
    }

    fn live(&self, stale: u64) -> Option<(u64, SendRequest<Bytes>)> {
        let current = self.current.lock().expect("not poisoned");
        match &current.sender {
            Some(sender) if current.generation != stale => {
                Some((current.generation, sender.clone()))
            }
            _ => None,
        }
    }

    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().expect("not poisoned");
        if current.generation == generation {
            current.sender = None;
        }
    }

    /// One unary call: `uri` is `http://localhost/` and the method's path, `body` the framed
    /// request ([`encode`]).
    pub(crate) async fn call<R: Message + Default>(
        self: &Arc<Self>,
        uri: &'static str,
        body: Bytes,
    ) -> Result<R, Failure> {
        let (generation, sender) = self.sender(0).await?;
        let (generation, sender) = match sender.ready().await {
            Ok(sender) => (generation, sender),
            // The connection ended before this call used it (the agent restarted and the task
            // has not said so yet): a new one. Nothing was sent on the old one.
            Err(_) => {
                let (generation, sender) = self.sender(generation).await?;
                let sender = sender
                    .ready()
                    .await
                    .map_err(|e| Failure::NeverReached(connection_error(&e)))?;
                (generation, sender)
            }
        };
        let reply = self.exchange(sender, uri, body).await;
        if let Err(Failure::NeverReached(_)) = &reply {
            self.forget(generation);
        }
        reply
    }

    async fn exchange<R: Message + Default>(
        &self,
        mut sender: SendRequest<Bytes>,
        uri: &'static str,
        body: Bytes,
    ) -> Result<R, Failure> {
        let (response, mut stream) = sender
            .send_request(request(uri), false)
            .map_err(|e| Failure::NeverReached(connection_error(&e)))?;
        stream
            .send_data(body, true)
            .map_err(|e| Failure::Failed(connection_error(&e)))?;
        let response = response.await.map_err(|e| {
            if refused_unprocessed(&e) {
                Failure::NeverReached(connection_error(&e))
            } else {
                Failure::Failed(connection_error(&e))
            }
        })?;
        let (parts, mut body) = response.into_parts();
        // A trailers-only reply: the status is in the headers and there is no message.
        if let Some(status) = grpc_status(&parts.headers) {
            return Err(Failure::Failed(match status {
                Ok(()) => Error::new(Code::Internal, "the agent's reply has no message"),
                Err(e) => e,
            }));
        }
        if parts.status != http::StatusCode::OK {
            return Err(Failure::Failed(http_status_error(parts.status)));
        }
        let mut message = Received::Empty;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| Failure::Failed(connection_error(&e)))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message.push(chunk)?;
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| Failure::Failed(connection_error(&e)))?
            .unwrap_or_default();
        match grpc_status(&trailers) {
            Some(Ok(())) => message.decode().map_err(Failure::Failed),
            Some(Err(e)) => Err(Failure::Failed(e)),
            None => Err(Failure::Failed(Error::new(
                Code::Internal,
                "the agent's reply ended without a gRPC status",
            ))),
        }
    }
}

/// The request's headers: gRPC over HTTP/2 on the agent's socket. `uri` is the method's path
/// after `http://localhost` (the authority is unused).
fn request(uri: &'static str) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from_static(uri);
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    request
}

/// The request as gRPC frames it: no compression flag, the length (big-endian), the message. The
/// buffer is wiped when the connection has sent it (a `put` carries a value).
pub(crate) fn encode<M: Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = Zeroizing::new(Vec::with_capacity(5 + len));
    buf.push(0);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    message
        .encode(&mut *buf)
        .expect("the buffer was sized for the message");
    Bytes::from_owner(buf)
}

/// The reply's DATA frames: usually one, kept as it came; several are joined in a buffer that is
/// wiped when dropped (a reply carries a value).
enum Received {
    Empty,
    One(Bytes),
    Joined(Zeroizing<Vec<u8>>),
}

impl Received {
    fn push(&mut self, chunk: Bytes) -> Result<(), Failure> {
        let len = match self {
            Received::Empty => 0,
            Received::One(first) => first.len(),
            Received::Joined(joined) => joined.len(),
        };
        if len + chunk.len() > MAX_REPLY + 5 {
            return Err(Failure::Failed(Error::new(
                Code::ResourceExhausted,
                format!("the agent's reply is larger than {MAX_REPLY} bytes"),
            )));
        }
        match std::mem::replace(self, Received::Empty) {
            Received::Empty => *self = Received::One(chunk),
            Received::One(first) => {
                let mut joined = Zeroizing::new(Vec::with_capacity(first.len() + chunk.len()));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                *self = Received::Joined(joined);
            }
            Received::Joined(mut joined) => {
                joined.extend_from_slice(&chunk);
                *self = Received::Joined(joined);
            }
        }
        Ok(())
    }

    /// The one message of a unary reply.
    fn decode<R: Message + Default>(self) -> Result<R, Error> {
        let bytes: &[u8] = match &self {
            Received::Empty => &[],
            Received::One(b) => b,
            Received::Joined(b) => b,
        };
        let malformed =
            |what: &str| Error::new(Code::Internal, format!("the agent's reply {what}"));
        if bytes.len() < 5 {
            return Err(malformed("has no message"));
        }
        if bytes[0] != 0 {
            return Err(malformed(
                "is compressed, which this client did not ask for",
            ));
        }
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if bytes.len() - 5 != len {
            return Err(malformed("is not one whole message"));
        }
        let decoded = match self {
            // Decoding from `Bytes` shares the buffer rather than copying each field.
            Received::One(mut b) => {
                b.advance(5);
                R::decode(b)
            }
            Received::Joined(b) => R::decode(&b[5..]),
            Received::Empty => unreachable!("checked above"),
        };
        decoded.map_err(|e| malformed(&format!("does not decode: {e}")))
    }
}

/// `grpc-status` and `grpc-message`, if the headers carry a status.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), Error>> {
    let status = headers.get("grpc-status")?;
    let code = status
        .to_str()
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .map(Code::from)
        .unwrap_or(Code::Unknown);
    if code == Code::Ok {
        return Some(Ok(()));
    }
    let message = headers
        .get("grpc-message")
        .map(|m| {
            percent_encoding::percent_decode(m.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Some(Err(Error::new(code, message)))
}

/// A reply without a gRPC status: the code gRPC maps its HTTP status to.
fn http_status_error(status: http::StatusCode) -> Error {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Error::new(
        code,
        format!("the agent answered HTTP {status} without a gRPC status"),
    )
}

/// The agent reset the stream with REFUSED_STREAM: by HTTP/2's rules it did not process it. (A
/// GOAWAY's error says nothing of which streams it processed once the connection has closed, so
/// a call cut by one is not sent again: it may have been carried out.)
fn refused_unprocessed(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM)
}

/// An HTTP/2 failure as the gRPC code tonic gives it.
fn connection_error(e: &h2::Error) -> Error {
    let code = match e.reason() {
        Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        Some(h2::Reason::NO_ERROR) if e.is_go_away() => Code::Unavailable,
        Some(_) => Code::Internal,
        None => Code::Unavailable,
    };
    Error::new(
        code,
        format!("the connection to the psst agent failed: {e}"),
    )
}

/// Why no connection could be made, said so the user knows what to do. Nothing listening (the
/// agent not started, or restarting) is `NeverReached`; the wrong server is not retried.
pub(crate) fn connect_failure(socket: &Path, e: &std::io::Error) -> Failure {
    if let Some(unexpected) = find_source::<UnexpectedServer>(e) {
        return Failure::Failed(Error::new(Code::Unauthenticated, unexpected.to_string()));
    }
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            " (is psstd running? PSST_SOCKET names its socket, and `psstd --dev` prints the one \
             it listens on)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (the socket's group or mode does not let this user connect: see [server] in the \
             agent's config)"
        }
        _ => "",
    };
    let error = Error::new(
        Code::Unavailable,
        format!(
            "cannot connect to the psst agent at {}: {e}{hint}",
            socket.display()
        ),
    );
    if matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    ) {
        Failure::NeverReached(error)
    } else {
        Failure::Failed(error)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::Response;

    use super::*;
    use crate::Client;

    /// What the fake server does with the n-th stream (from 0).
    type Answer = fn(usize, h2::server::SendResponse<Bytes>);

    /// An HTTP/2 server on a socket of its own (run by this process's uid, so the client's check
    /// passes) that answers each stream as `answer` says; counts the streams.
    async fn serve(answer: Answer) -> (Client, Arc<AtomicUsize>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "psst-client-grpc-{}-{}",
            std::process::id(),
            SERVED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let streams = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&streams);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut connection = h2::server::handshake(stream).await.unwrap();
                    while let Some(Ok((_, respond))) = connection.accept().await {
                        answer(count.fetch_add(1, Ordering::Relaxed), respond);
                    }
                });
            }
        });
        (Client::connect(&socket).await.unwrap(), streams, dir)
    }
    static SERVED: AtomicUsize = AtomicUsize::new(0);

    fn grpc_reply(status: &'static str) -> Response<()> {
        Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", status)
            .header("grpc-message", "secret%20local:a%20not%20found")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn a_trailers_only_reply_is_the_error_it_carries() {
        let (client, _, dir) = serve(|_, mut respond| {
            respond.send_response(grpc_reply("5"), true).unwrap();
        })
        .await;
        let err = client.get("local:a").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.message(), "secret local:a not found");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_refused_stream_is_sent_again_and_a_cancelled_one_is_not() {
        // The first stream is refused (not processed), the second answered.
        let (client, streams, dir) = serve(|n, mut respond| {
            if n == 0 {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                return;
            }
            let mut stream = respond.send_response(Response::new(()), false).unwrap();
            let message = pb_secret();
            stream.send_data(encode(&message), false).unwrap();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            stream.send_trailers(trailers).unwrap();
        })
        .await;
        assert_eq!(client.get("local:a").await.unwrap().value(), b"v");
        assert_eq!(streams.load(Ordering::Relaxed), 2);
        std::fs::remove_dir_all(dir).unwrap();

        // A stream reset otherwise may have been processed: one attempt, and its error.
        let (client, streams, dir) = serve(|_, mut respond| {
            respond.send_reset(h2::Reason::CANCEL);
        })
        .await;
        let err = client.put("local:a", b"v").await.unwrap_err();
        assert_eq!(err.code(), Code::Cancelled, "{err}");
        assert_eq!(streams.load(Ordering::Relaxed), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn replies_that_are_not_one_whole_message_are_refused() {
        let cases: [(Answer, &str); 3] = [
            // Compressed, which the client never asks for.
            (|_, r| answer_with(r, b"\x01\x00\x00\x00\x00"), "compressed"),
            // Says 9 bytes, carries 2.
            (
                |_, r| answer_with(r, b"\x00\x00\x00\x00\x09ab"),
                "not one whole message",
            ),
            (|_, r| answer_with(r, b"\x00\x00"), "has no message"),
        ];
        for (answer, want) in cases {
            let (client, _, dir) = serve(answer).await;
            let err = client.get("local:a").await.unwrap_err();
            assert_eq!(err.code(), Code::Internal, "{err}");
            assert!(err.message().contains(want), "{err}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    fn answer_with(mut respond: h2::server::SendResponse<Bytes>, body: &'static [u8]) {
        let mut stream = respond.send_response(Response::new(()), false).unwrap();
        stream.send_data(Bytes::from_static(body), false).unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        stream.send_trailers(trailers).unwrap();
    }

    #[tokio::test]
    async fn a_reply_without_a_grpc_status_maps_its_http_status() {
        let (client, _, dir) = serve(|_, mut respond| {
            let reply = Response::builder().status(503).body(()).unwrap();
            respond.send_response(reply, true).unwrap();
        })
        .await;
        let err = client.get("local:a").await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains("503"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn pb_secret() -> crate::pb::Secret {
        crate::pb::Secret {
            reference: "local:a".into(),
            value: Bytes::from_static(b"v"),
            version_id: "1".into(),
            ..Default::default()
        }
    }
}
