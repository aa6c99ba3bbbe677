//! The HTTP/2 server: one task per connection, running h2's server loop.
//!
//! `GetSecret`, the hot path, is answered inside the connection's own task: the request body is
//! read, the core is asked, and the reply is written without spawning a task, without a tower
//! stack and without hyper's per-stream dispatch (PERF-NOTES: that model costs ~9k instructions
//! a request and caps a connection near 30k req/s). A `GetSecret` that has to wait for a backend
//! waits as one future among the connection's others, so it holds up no other stream.
//!
//! Every other method — streams, the Admin service, health, reflection, and any `GetSecret` sent
//! compressed or with another content type — goes to tonic's generated services (`Routes`) in a
//! task of its own, with the caller attached to the request as tonic's own server attaches it.

use std::{
    future::{poll_fn, Future},
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures::{stream::FuturesUnordered, Stream, StreamExt};
use h2::{
    server::{self, SendResponse},
    RecvStream, SendStream,
};
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use prost::Message;
use tokio::{sync::watch, task::JoinSet};
use tonic::{service::Routes, Status};
use tower::Service;

use crate::{
    agent::Agent,
    api,
    transport::{CallerStream, ConnectedCaller},
};

const GET_SECRET: &str = "/psst.v1.Secrets/GetSecret";
/// Per-stream and per-connection receive windows, as hyper sets them for servers.
const WINDOW: u32 = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams one connection may have open at once (watches included); a client past it waits for
/// one to end. h2 itself bounds streams reset early (the rapid-reset attack).
const MAX_STREAMS: u32 = 1024;

/// What every connection shares.
pub struct Shared {
    pub agent: Arc<Agent>,
    pub routes: Routes,
    /// The largest gRPC message decoded or encoded (server.max_message_bytes).
    pub max_message: usize,
}

/// Accepts connections until `shutdown` resolves, then asks each to finish (HTTP/2 GOAWAY: the
/// streams open go on, no new ones start) and waits for them. The caller bounds that wait.
pub async fn serve(
    incoming: impl Stream<Item = std::io::Result<CallerStream>>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut incoming = std::pin::pin!(incoming);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => {
                    connections.spawn(connection(stream, Arc::clone(&shared), stop_rx.clone()));
                }
                Some(Err(e)) => tracing::warn!(error = %e, "accepting a connection failed"),
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn connection(stream: CallerStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let caller = stream.caller();
    let handshake = server::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_concurrent_streams(MAX_STREAMS)
        .handshake::<_, Bytes>(stream);
    let mut conn = match handshake.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
    };
    let mut inline = FuturesUnordered::new();
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow() {
            stopping = true;
            conn.graceful_shutdown();
        }
        tokio::select! {
            biased;
            Some(()) = inline.next(), if !inline.is_empty() => {}
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    if is_plain_get_secret(&request) {
                        inline.push(get_secret(&shared, &caller, request, respond));
                    } else {
                        let routes = shared.routes.clone();
                        tokio::spawn(route(routes, Arc::clone(&caller), request, respond));
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                    break;
                }
                None => break,
            },
            _ = stop.changed(), if !stopping => {}
        }
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
) {
    match answer_get_secret(shared, caller, request.into_body()).await {
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
) -> Result<Bytes, Status> {
    let framed = read_message(&mut body, shared.max_message).await?;
    let request = psst_proto::v1::GetSecretRequest::decode(&framed[5..])
        .map_err(|e| Status::invalid_argument(format!("the message could not be decoded: {e}")))?;
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

/// The request body: exactly one uncompressed gRPC message, prefix included. One DATA frame (the
/// usual case) is taken as it is; a message split across frames is joined.
async fn read_message(body: &mut RecvStream, max_message: usize) -> Result<Bytes, Status> {
    let mut framed = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| Status::cancelled(format!("reading the request: {e}")))?;
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

/// Runs a request through tonic's services and streams the response back.
async fn route(
    mut routes: Routes,
    caller: ConnectedCaller,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(caller);
    let request = Request::from_parts(
        parts,
        H2Body {
            recv: body,
            data_done: false,
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

/// An h2 request body as an `http_body::Body`, releasing flow-control capacity as it is read.
struct H2Body {
    recv: RecvStream,
    data_done: bool,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
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
}
