//! `psst-bench rust-clients`: the Rust clients of a cached `GetSecret` against one psstd, in the
//! same run, interleaved — the floor (a thin `h2` client: one connection, gRPC framing by hand,
//! nothing else), tonic's generated client on a `Channel` (what `psst-client` used before), and
//! `psst-client` itself. Sequential p50/p99 on one connection, and throughput through one shared
//! client with 32 calls in flight. `psst-bench client-load` sends COUNT calls with one of them,
//! for `bench/callgrind-client`, which counts the client's instructions per call.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::ValueEnum;
use http::{HeaderValue, Method, Request, Uri};
use prost::Message;
use psst_proto::v1 as pb;

use crate::{median, Cli, Target, REFERENCE, VALUE_LEN};

/// Which Rust client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A thin `h2` client: the floor.
    Floor,
    /// tonic's generated client on a `Channel`: `psst-client` before it sent unary calls on h2.
    Tonic,
    /// `psst-client` (`clients/rust`).
    Psst,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Floor, Kind::Tonic, Kind::Psst];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor (thin h2)",
            Kind::Tonic => "tonic Channel (before)",
            Kind::Psst => "psst-client",
        }
    }
}

/// One connection of any of the three, shared by clones.
#[derive(Clone)]
pub enum Any {
    Floor(h2::client::SendRequest<Bytes>),
    Tonic(pb::secrets_client::SecretsClient<tonic::transport::Channel>),
    Psst(psst_client::Client),
}

impl Any {
    pub async fn connect(kind: Kind, socket: &Path) -> anyhow::Result<Self> {
        Ok(match kind {
            Kind::Floor => {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                let (sender, connection) = h2::client::handshake(stream).await?;
                tokio::spawn(connection);
                Any::Floor(sender)
            }
            Kind::Tonic => Any::Tonic(crate::connect(socket).await?),
            Kind::Psst => Any::Psst(psst_client::Client::connect(socket).await?),
        })
    }

    /// One cached `GetSecret`; the value's length.
    pub async fn get(&mut self, reference: &str) -> anyhow::Result<usize> {
        Ok(match self {
            Any::Floor(sender) => floor_get(sender.clone(), reference).await?.value.len(),
            Any::Tonic(client) => client
                .get_secret(crate::request(reference))
                .await?
                .into_inner()
                .value
                .len(),
            Any::Psst(client) => client.get(reference).await?.value().len(),
        })
    }
}

/// The floor's call: headers, one DATA frame, the reply's DATA and trailers; no deadline, no
/// reconnecting, no checks beyond `grpc-status`.
async fn floor_get(
    sender: h2::client::SendRequest<Bytes>,
    reference: &str,
) -> anyhow::Result<pb::Secret> {
    let mut sender = sender.ready().await?;
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from_static("http://localhost/psst.v1.Secrets/GetSecret");
    request
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    request
        .headers_mut()
        .insert("te", HeaderValue::from_static("trailers"));
    let message = pb::GetSecretRequest {
        reference: reference.to_owned(),
    };
    let mut body = BytesMut::with_capacity(5 + message.encoded_len());
    body.put_u8(0);
    body.put_u32(message.encoded_len() as u32);
    message.encode(&mut body)?;
    let (response, mut stream) = sender.send_request(request, false)?;
    stream.send_data(body.freeze(), true)?;
    let mut reply = response.await?.into_body();
    // Usually one DATA frame, used as it came; several are joined.
    let mut message = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = reply.data().await {
        let chunk = chunk?;
        let _ = reply.flow_control().release_capacity(chunk.len());
        match &mut joined {
            None if message.is_empty() => message = chunk,
            None => {
                let mut both = BytesMut::from(&message[..]);
                both.extend_from_slice(&chunk);
                joined = Some(both);
            }
            Some(j) => j.extend_from_slice(&chunk),
        }
    }
    if let Some(joined) = joined {
        message = joined.freeze();
    }
    let trailers = reply.trailers().await?.unwrap_or_default();
    if trailers.get("grpc-status").map(|s| s.as_bytes()) != Some(b"0") {
        bail!("grpc-status {:?}", trailers.get("grpc-status"));
    }
    anyhow::ensure!(message.len() >= 5, "no message");
    message.advance(5);
    Ok(pb::Secret::decode(message)?)
}

/// `client-load`: COUNT cached reads one at a time with one client, on a current-thread
/// runtime (bench/callgrind-client runs it under valgrind).
pub fn load(kind: Kind, socket: &Path, count: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = Any::connect(kind, socket).await?;
        for _ in 0..count {
            anyhow::ensure!(client.get(REFERENCE).await? == VALUE_LEN);
        }
        Ok(())
    })
}

/// `client-seq`: COUNT sequential reads with one client after COUNT/10 of warm-up; prints the p50
/// and p99 in µs (bench/clients/run compares every language's client with the floor).
pub fn seq(kind: Kind, socket: &Path, count: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (p50, p99) = runtime.block_on(sequential(kind, socket, count))?;
    println!("{p50:.1} {p99:.1}");
    Ok(())
}

/// `rust-clients`: the three clients against one psstd (audit on, as shipped), interleaved.
pub fn run(cli: &Cli, psstd: &Path, dir: &Path) -> anyhow::Result<()> {
    let target = Target::psstd(psstd, dir, "psstd", true, None, None)?;
    target.wait_ready()?;
    let socket: PathBuf = target.socket.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::seed(&socket, REFERENCE))?;
    let in_flight = 32;
    let mut p50 = vec![Vec::new(); Kind::ALL.len()];
    let mut p99 = vec![Vec::new(); Kind::ALL.len()];
    let mut rps = vec![Vec::new(); Kind::ALL.len()];
    for round in 0..cli.rounds {
        eprintln!("round {}/{}", round + 1, cli.rounds);
        for (i, kind) in Kind::ALL.iter().enumerate() {
            let (a, b) = runtime.block_on(sequential(*kind, &socket, cli.sequential))?;
            p50[i].push(a);
            p99[i].push(b);
        }
        for (i, kind) in Kind::ALL.iter().enumerate() {
            let socket = socket.clone();
            let kind = *kind;
            let shared = async move {
                let client = Any::connect(kind, &socket).await?;
                Ok(vec![client; in_flight])
            };
            let (count, seconds, _) = crate::saturate(
                shared,
                |mut client: Any| async move {
                    let ok = client.get(REFERENCE).await.is_ok();
                    (client, ok)
                },
                Duration::from_secs_f64(cli.seconds),
                None,
            )?;
            rps[i].push(count as f64 / seconds);
        }
    }
    println!("| client | p50 µs | p99 µs | req/s @32, one shared client | p50 / floor | req/s / floor | req/s / tonic |");
    println!("|---|---|---|---|---|---|---|");
    let (floor_p50, floor_rps, tonic_rps) = (median(&p50[0]), median(&rps[0]), median(&rps[1]));
    for (i, kind) in Kind::ALL.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.2}× | {:.2}× | {:.2}× |",
            kind.name(),
            median(&p50[i]),
            median(&p99[i]),
            median(&rps[i]),
            median(&p50[i]) / floor_p50,
            median(&rps[i]) / floor_rps,
            median(&rps[i]) / tonic_rps,
        );
    }
    println!(
        "\n{} rounds, medians; sequential {} calls per round on one connection; throughput {}s \
         with {in_flight} calls in flight through one shared client on a 2-worker runtime; \
         {VALUE_LEN}-byte value, psstd with audit on.",
        cli.rounds, cli.sequential, cli.seconds
    );
    Ok(())
}

async fn sequential(kind: Kind, socket: &Path, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut client = Any::connect(kind, socket)
        .await
        .with_context(|| kind.name())?;
    for _ in 0..n / 10 {
        client.get(REFERENCE).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let len = client.get(REFERENCE).await?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        debug_assert_eq!(len, VALUE_LEN);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok((samples[n / 2], samples[n * 99 / 100]))
}
