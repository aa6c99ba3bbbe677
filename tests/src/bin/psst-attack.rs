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
    eprintln!("usage: psst-attack idle|bodies|churn|tcp-idle|streams|stall ARGS (see the source)");
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
