//! What an unprivileged local user can throw at psstd, as one program the hardening suite
//! (`tests/tests/hardening.rs`) runs under another uid with `runuser`. Every attack is bounded
//! in count and time and reports what it achieved as one JSON line on stdout.
//!
//!   psst-attack idle SOCKET COUNT HOLD_MS          open COUNT connections, send nothing
//!   psst-attack bodies SOCKET CONNS STREAMS HOLD_MS
//!                                                  PutSecret streams that never finish their body
//!   psst-attack churn SOCKET COUNT                 connect and close COUNT times
//!   psst-attack tcp-idle ADDR COUNT HOLD_MS        idle TCP connections (the metrics port)
//!   psst-attack streams SOCKET COUNT HOLD_MS       COUNT WatchSecrets streams on one connection
//!   psst-attack stall SOCKET                       a GetSecret whose body never ends; prints
//!                                                  the status it got and after how long
//!   psst-attack raw-frames SOCKET REFERENCE        raw HTTP/2 frames at the unary fast path
//!                                                  (agent/src/server/fast.rs): frames on
//!                                                  streams it closed, an HPACK bomb, an endless
//!                                                  CONTINUATION, and GetSecrets of REFERENCE
//!                                                  sent without reading a reply
//!   psst-attack split SOCKET REFERENCE COUNT      COUNT GetSecrets of REFERENCE with 1 KB bodies
//!                                                  (padded), each body's first half sent, then
//!                                                  20 ms later the rest; prints the statuses
//!   psst-attack expand SOCKET COUNT                one 4 KB header put in the HPACK table, then
//!                                                  COUNT 15-byte HEADERS frames that each refer
//!                                                  to it three times (12 KB decoded apiece)

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::Request;
use prost::Message;
use psst_client::proto;
use tokio::{
    io::AsyncReadExt,
    net::{TcpStream, UnixStream},
};

fn usage() -> ! {
    eprintln!(
        "usage: psst-attack idle|bodies|churn|tcp-idle|streams|stall|raw-frames|expand|split ARGS (see the source)"
    );
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(what) = args.first() else { usage() };
    let report = match what.as_str() {
        "idle" => idle(&args[1], arg(&args, 2), arg(&args, 3)).await,
        "bodies" => bodies(&args[1], arg(&args, 2), arg(&args, 3), arg(&args, 4)).await,
        "churn" => churn(&args[1], arg(&args, 2)).await,
        "tcp-idle" => tcp_idle(&args[1], arg(&args, 2), arg(&args, 3)).await,
        "streams" => streams(&args[1], arg(&args, 2), arg(&args, 3)).await,
        "stall" => stall(&args[1]).await,
        "raw-frames" => raw_frames(&args[1], &args[2]).await,
        "expand" => expand(&args[1], arg(&args, 2)).await,
        "split" => split(&args[1], &args[2], arg(&args, 3)).await,
        _ => usage(),
    };
    println!("{report}");
}

/// Opens connections and holds them without a byte sent; reports how many the agent still
/// held open at the end (a refused or timed-out one reads end-of-file).
async fn idle(socket: &str, count: usize, hold_ms: u64) -> serde_json::Value {
    let mut open = Vec::new();
    let mut connect_failed = 0;
    for _ in 0..count {
        match UnixStream::connect(socket).await {
            Ok(stream) => open.push(stream),
            Err(_) => connect_failed += 1,
        }
    }
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    let held = still_open(&mut open).await;
    serde_json::json!({"connected": open.len(), "connect_failed": connect_failed, "held": held})
}

/// Counts the connections the agent has not closed: reading what it sent (its HTTP/2
/// SETTINGS) until a read would block means open; end-of-file or an error means closed.
async fn still_open(streams: &mut [UnixStream]) -> usize {
    let mut held = 0;
    for stream in streams {
        if is_open(stream).await {
            held += 1;
        }
    }
    held
}

async fn is_open(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buffer)).await {
            Err(_) => return true,
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => {}
        }
    }
}

fn frame_header(length: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(5);
    out.put_u8(0);
    out.put_u32(length);
    out.freeze()
}

async fn h2_connect(socket: &str) -> Option<h2::client::SendRequest<Bytes>> {
    let io = UnixStream::connect(socket).await.ok()?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .handshake(io)
        .await
        .ok()?;
    tokio::spawn(connection);
    sender.ready().await.ok()
}

/// PutSecret streams that announce a 1 MiB message, send 64 KiB of it, and never finish.
/// Reports how many streams the agent refused or reset, and how many it kept waiting.
async fn bodies(socket: &str, conns: usize, streams: usize, hold_ms: u64) -> serde_json::Value {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let mut responses = Vec::new();
    let mut senders = Vec::new();
    let mut connections = Vec::new();
    let mut opened = 0;
    for _ in 0..conns {
        let Some(sender) = h2_connect(socket).await else {
            continue;
        };
        for _ in 0..streams {
            let request = Request::post("http://localhost/psst.v1.Secrets/PutSecret")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let Ok(ready) =
                tokio::time::timeout(Duration::from_millis(200), sender.clone().ready()).await
            else {
                break;
            };
            let Ok(mut ready) = ready else { break };
            let Ok((response, mut send)) = ready.send_request(request, false) else {
                break;
            };
            opened += 1;
            let _ = send.send_data(frame_header(1 << 20), false);
            send.reserve_capacity(chunk.len());
            let _ = send.send_data(chunk.clone(), false);
            responses.push(response);
            senders.push(send);
        }
        connections.push(sender);
    }
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    let (mut refused, mut waiting) = (0, 0);
    for response in responses {
        match tokio::time::timeout(Duration::from_millis(5), response).await {
            Ok(_) => refused += 1,
            Err(_) => waiting += 1,
        }
    }
    drop((senders, connections));
    serde_json::json!({"opened": opened, "refused": refused, "waiting": waiting})
}

/// Connects and closes as fast as it can.
async fn churn(socket: &str, count: usize) -> serde_json::Value {
    let started = Instant::now();
    let mut connected = 0;
    for _ in 0..count {
        if let Ok(stream) = UnixStream::connect(socket).await {
            connected += 1;
            drop(stream);
        }
    }
    serde_json::json!({"connected": connected, "ms": started.elapsed().as_millis() as u64})
}

/// Idle TCP connections, for the metrics listener.
async fn tcp_idle(address: &str, count: usize, hold_ms: u64) -> serde_json::Value {
    let mut open = Vec::new();
    for _ in 0..count {
        if let Ok(stream) = TcpStream::connect(address).await {
            open.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    let connected = open.len();
    let mut held = 0;
    for stream in &mut open {
        if is_open(stream).await {
            held += 1;
        }
    }
    serde_json::json!({"connected": connected, "held": held})
}

/// Many WatchSecrets streams on one connection: reports how many the agent answered with an
/// error status at once (refused) and how many it kept open.
async fn streams(socket: &str, count: usize, hold_ms: u64) -> serde_json::Value {
    let Some(sender) = h2_connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    let body = proto::WatchSecretsRequest {
        references: vec!["local:attack/none".into()],
        ..Default::default()
    }
    .encode_to_vec();
    let mut framed = BytesMut::from(&frame_header(body.len() as u32)[..]);
    framed.extend_from_slice(&body);
    let framed = framed.freeze();
    let mut pending = Vec::new();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..count {
        let Ok(Ok(mut ready)) =
            tokio::time::timeout(Duration::from_millis(500), sender.clone().ready()).await
        else {
            *codes.entry("blocked".into()).or_default() += 1;
            continue;
        };
        let request = Request::post("http://localhost/psst.v1.Secrets/WatchSecrets")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let Ok((response, mut send)) = ready.send_request(request, false) else {
            break;
        };
        let _ = send.send_data(framed.clone(), true);
        pending.push(response);
    }
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    for response in pending {
        let code = match tokio::time::timeout(Duration::from_millis(5), response).await {
            Err(_) => "open".to_owned(),
            Ok(Err(e)) => format!("reset:{e}"),
            Ok(Ok(response)) => response
                .headers()
                .get("grpc-status")
                .map_or("open", |v| v.to_str().unwrap_or("?"))
                .to_owned(),
        };
        *codes.entry(code).or_default() += 1;
    }
    serde_json::json!({"codes": codes})
}

/// A GetSecret that sends half its message and stops.
async fn stall(socket: &str) -> serde_json::Value {
    let Some(mut sender) = h2_connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    let request = Request::post("http://localhost/psst.v1.Secrets/GetSecret")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let started = Instant::now();
    let (response, mut send) = sender.send_request(request, false).unwrap();
    let _ = send.send_data(frame_header(100), false);
    let status = match tokio::time::timeout(Duration::from_secs(30), response).await {
        Ok(Ok(response)) => response
            .headers()
            .get("grpc-status")
            .map_or("none".to_owned(), |v| v.to_str().unwrap_or("?").to_owned()),
        Ok(Err(e)) => format!("reset:{e}"),
        Err(_) => "no answer in 30s".to_owned(),
    };
    serde_json::json!({"status": status, "ms": started.elapsed().as_millis() as u64})
}

/// A connection spoken to frame by frame, its header blocks written as HPACK literals.
struct Raw {
    stream: UnixStream,
    input: BytesMut,
    decoder: h2::hpack::Decoder,
    /// Streams that ended while another was waited for, and how.
    ended: std::collections::HashMap<u32, String>,
    /// What the agent's connection WINDOW_UPDATEs gave back so far.
    window_given: u64,
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn put_frame(out: &mut BytesMut, kind: u8, flags: u8, id: u32, payload: &[u8]) {
    out.put_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(id);
    out.put_slice(payload);
}

fn put_string(out: &mut BytesMut, text: &[u8]) {
    let mut len = text.len();
    if len < 127 {
        out.put_u8(len as u8);
    } else {
        out.put_u8(127);
        len -= 127;
        while len >= 128 {
            out.put_u8((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.put_u8(len as u8);
    }
    out.put_slice(text);
}

/// A `GetSecret`'s headers, as literals not indexed.
fn get_secret_block() -> BytesMut {
    let mut block = BytesMut::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/psst.v1.Secrets/GetSecret"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.put_u8(0);
        put_string(&mut block, name.as_bytes());
        put_string(&mut block, value.as_bytes());
    }
    block
}

impl Raw {
    /// Connects, sends the preface and SETTINGS, and a connection window of 1 MiB.
    async fn connect(socket: &str) -> Option<Raw> {
        use tokio::io::AsyncWriteExt;
        let mut stream = UnixStream::connect(socket).await.ok()?;
        let mut out = BytesMut::from(PREFACE);
        put_frame(&mut out, 4, 0, 0, &[]);
        put_frame(&mut out, 8, 0, 0, &(1u32 << 20).to_be_bytes());
        stream.write_all(&out).await.ok()?;
        Some(Raw {
            stream,
            input: BytesMut::new(),
            decoder: h2::hpack::Decoder::new(4096),
            ended: std::collections::HashMap::new(),
            window_given: 0,
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.is_ok()
    }

    fn get_secret(out: &mut BytesMut, id: u32, reference: &str) {
        put_frame(out, 1, 0x4, id, &get_secret_block());
        let body = psst_tests::grpc_frame(&proto::GetSecretRequest {
            reference: reference.into(),
        });
        put_frame(out, 0, 0x1, id, &body);
    }

    /// Reads frames until stream `id` ends, acknowledging SETTINGS and PINGs: its grpc-status,
    /// or what ended the wait ("goaway", "closed", "timeout").
    async fn status_of(&mut self, id: u32) -> String {
        if let Some(status) = self.ended.remove(&id) {
            return status;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while self.input.len() >= 9 {
                let len = (usize::from(self.input[0]) << 16)
                    | (usize::from(self.input[1]) << 8)
                    | usize::from(self.input[2]);
                if self.input.len() < 9 + len {
                    break;
                }
                let frame = self.input.split_to(9 + len);
                let (kind, flags) = (frame[3], frame[4]);
                let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
                match kind {
                    1 => {
                        let mut block = BytesMut::from(&frame[9..]);
                        let mut status = None;
                        let decoded =
                            self.decoder
                                .decode(&mut std::io::Cursor::new(&mut block), |header| {
                                    if let h2::hpack::Header::Field { name, value } = header {
                                        if name == "grpc-status" {
                                            status = Some(value.to_str().unwrap_or("?").to_owned());
                                        }
                                    }
                                    std::ops::ControlFlow::Continue(())
                                });
                        if decoded.is_err() {
                            return "bad header block".to_owned();
                        }
                        if flags & 0x1 != 0 {
                            let status = status.unwrap_or_else(|| "none".to_owned());
                            if stream == id {
                                return status;
                            }
                            self.ended.insert(stream, status);
                        }
                    }
                    3 if stream == id => return "reset".to_owned(),
                    3 => {
                        // A reset after an answer (h2 ends a stream whose body is still coming
                        // with RST_STREAM NO_ERROR) does not undo the answer.
                        self.ended
                            .entry(stream)
                            .or_insert_with(|| "reset".to_owned());
                    }
                    4 if flags & 0x1 == 0 => {
                        let mut ack = BytesMut::new();
                        put_frame(&mut ack, 4, 0x1, 0, &[]);
                        self.send(&ack).await;
                    }
                    7 => return "goaway".to_owned(),
                    8 if stream == 0 && frame.len() == 13 => {
                        let increment =
                            u32::from_be_bytes([frame[9], frame[10], frame[11], frame[12]]);
                        self.window_given += u64::from(increment & 0x7fff_ffff);
                    }
                    _ => {}
                }
            }
            let read =
                tokio::time::timeout_at(deadline.into(), self.stream.read_buf(&mut self.input))
                    .await;
            match read {
                Err(_) => return "timeout".to_owned(),
                Ok(Ok(0)) | Ok(Err(_)) => return "closed".to_owned(),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// Raw frames at the unary fast path; each part on a connection of its own, reported as what
/// the agent answered.
async fn raw_frames(socket: &str, reference: &str) -> serde_json::Value {
    let Some(mut raw) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    // 1. A GetSecret, then frames on its stream after the answer (RST_STREAM, WINDOW_UPDATE,
    //    PRIORITY, DATA), then another GetSecret: the connection must go on.
    let mut out = BytesMut::new();
    Raw::get_secret(&mut out, 1, reference);
    raw.send(&out).await;
    let first = raw.status_of(1).await;
    let mut out = BytesMut::new();
    put_frame(&mut out, 3, 0, 1, &8u32.to_be_bytes());
    put_frame(&mut out, 8, 0, 1, &1000u32.to_be_bytes());
    put_frame(&mut out, 2, 0, 1, &[0, 0, 0, 0, 16]);
    put_frame(&mut out, 0, 0x1, 1, b"late");
    Raw::get_secret(&mut out, 3, reference);
    raw.send(&out).await;
    let after_closed_frames = raw.status_of(3).await;

    // 1b. 64 GetSecrets cancelled half-way through a 2 KB body (RST_STREAM), then one more: the
    //     cancelled bodies' bytes must come back to the client's window.
    let Some(mut cancel) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    let mut out = BytesMut::new();
    let mut half = BytesMut::new();
    half.put_u8(0);
    half.put_u32(2000);
    half.extend_from_slice(&[b'x'; 1000]);
    for i in 0..64u32 {
        put_frame(&mut out, 1, 0x4, 1 + 2 * i, &get_secret_block());
        put_frame(&mut out, 0, 0, 1 + 2 * i, &half);
        put_frame(&mut out, 3, 0, 1 + 2 * i, &8u32.to_be_bytes());
    }
    Raw::get_secret(&mut out, 129, reference);
    cancel.send(&out).await;
    let after_cancelled = cancel.status_of(129).await;
    let cancelled_bytes = 64 * half.len();
    let window_given_back = cancel.window_given;

    // 2. 200 GetSecrets' headers first, then their bodies: more streams than the fast path
    //    keeps waiting for bodies (128); those past it go to h2 in order. Every one is answered.
    let Some(mut many) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    let mut out = BytesMut::new();
    for i in 0..200u32 {
        put_frame(&mut out, 1, 0x4, 1 + 2 * i, &get_secret_block());
    }
    let body = psst_tests::grpc_frame(&proto::GetSecretRequest {
        reference: reference.into(),
    });
    for i in 0..200u32 {
        put_frame(&mut out, 0, 0x1, 1 + 2 * i, &body);
    }
    many.send(&out).await;
    let mut statuses = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..200u32 {
        *statuses.entry(many.status_of(1 + 2 * i).await).or_default() += 1;
    }

    // 3. An HPACK bomb: one 4 KB header put in the table, then referred to 60,000 times in one
    //    block (a 240 MB header list from a 60 KB block).
    let Some(mut bomb) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    let mut block = get_secret_block();
    block.put_u8(0x40);
    put_string(&mut block, b"x-bomb");
    put_string(&mut block, &[b'b'; 4000]);
    let mut out = BytesMut::new();
    put_frame(&mut out, 1, 0x0, 1, &block);
    let refs = vec![0x80 | 62u8; 60_000];
    let chunks: Vec<&[u8]> = refs.chunks(15_000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let flags = if i + 1 == chunks.len() { 0x4 } else { 0 };
        put_frame(&mut out, 9, flags, 1, chunk);
    }
    bomb.send(&out).await;
    let hpack_bomb = bomb.status_of(1).await;

    // 4. A header block that never ends: CONTINUATION after CONTINUATION, for 3 s or until the
    //    agent closes the connection.
    let Some(mut endless) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    let mut out = BytesMut::new();
    put_frame(&mut out, 1, 0x0, 1, &get_secret_block());
    endless.send(&out).await;
    let started = Instant::now();
    let mut continuation_bytes = 0usize;
    let mut frame = BytesMut::new();
    put_frame(&mut frame, 9, 0, 1, &[0u8; 1024]);
    while started.elapsed() < Duration::from_secs(3) {
        let sent = tokio::time::timeout(Duration::from_secs(1), endless.send(&frame)).await;
        if !matches!(sent, Ok(true)) {
            break;
        }
        continuation_bytes += frame.len();
    }
    let endless_continuation = endless.status_of(1).await;

    // 5. GetSecrets sent as fast as the socket takes them, no reply read: the agent must stop
    //    reading rather than buffer replies without bound.
    let Some(mut flood) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    let mut flood_requests = 0u32;
    let mut flood_blocked = false;
    let started = Instant::now();
    let mut next_id = 1u32;
    while started.elapsed() < Duration::from_secs(3) && next_id < 1_000_000 {
        let mut out = BytesMut::new();
        for i in 0..100u32 {
            Raw::get_secret(&mut out, next_id + 2 * i, reference);
        }
        let sent = tokio::time::timeout(Duration::from_millis(500), flood.send(&out)).await;
        if !matches!(sent, Ok(true)) {
            flood_blocked = true;
            break;
        }
        flood_requests += 100;
        next_id += 200;
    }
    serde_json::json!({
        "first": first,
        "after_closed_frames": after_closed_frames,
        "after_cancelled": after_cancelled,
        "cancelled_bytes": cancelled_bytes,
        "window_given_back": window_given_back,
        "headers_first": statuses,
        "hpack_bomb": hpack_bomb,
        "endless_continuation": endless_continuation,
        "continuation_bytes": continuation_bytes,
        "flood_requests": flood_requests,
        "flood_blocked": flood_blocked,
    })
}

/// Header blocks that are small on the wire and large decoded: the layer in front of h2 decodes
/// them and hands h2 literals, so it must not take apart more of them than h2 reads. Reports how
/// many frames were sent and how the connection ended.
async fn expand(socket: &str, count: u32) -> serde_json::Value {
    let Some(mut raw) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    // Stream 1 puts the 4 KB header in the table (:method POST, :scheme http, :path /).
    let mut block = BytesMut::from(&[0x83u8, 0x86, 0x84][..]);
    block.put_u8(0x40);
    put_string(&mut block, b"x-big");
    put_string(&mut block, &[b'b'; 4000]);
    let mut out = BytesMut::new();
    put_frame(&mut out, 1, 0x5, 1, &block);
    // Then each stream refers to it three times: 6 bytes of block, ~12 KB of headers.
    for i in 1..=count {
        put_frame(
            &mut out,
            1,
            0x5,
            1 + 2 * i,
            &[0x83, 0x86, 0x84, 0xbe, 0xbe, 0xbe],
        );
    }
    let sent = tokio::time::timeout(Duration::from_secs(10), raw.send(&out)).await;
    let last = 1 + 2 * count;
    let ended = raw.status_of(last).await;
    serde_json::json!({"sent": matches!(sent, Ok(true)), "frames": count, "last": ended})
}

/// Bodies that arrive in two halves: what waits for its second half is counted against the
/// uid's byte share wherever it waits (the fast path, or h2's path).
async fn split(socket: &str, reference: &str, count: u32) -> serde_json::Value {
    let Some(mut raw) = Raw::connect(socket).await else {
        return serde_json::json!({"error": "no connection"});
    };
    // The request, padded with an unknown field (number 15) to 1 KB: the first halves of 100
    // (52 KB of DATA) fit the protocol's initial 64 KiB connection window.
    let mut message = proto::GetSecretRequest {
        reference: reference.into(),
    }
    .encode_to_vec();
    message.extend_from_slice(&[0x7a, 0xe8, 0x07]);
    message.extend_from_slice(&[b'p'; 1000]);
    let mut body = BytesMut::new();
    body.put_u8(0);
    body.put_u32(message.len() as u32);
    body.extend_from_slice(&message);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut out = BytesMut::new();
    for i in 0..count {
        put_frame(&mut out, 1, 0x4, 1 + 2 * i, &get_secret_block());
        put_frame(&mut out, 0, 0, 1 + 2 * i, first);
    }
    raw.send(&out).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut out = BytesMut::new();
    for i in 0..count {
        put_frame(&mut out, 0, 0x1, 1 + 2 * i, rest);
    }
    raw.send(&out).await;
    let mut statuses = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..count {
        *statuses.entry(raw.status_of(1 + 2 * i).await).or_default() += 1;
    }
    serde_json::json!({ "statuses": statuses })
}
