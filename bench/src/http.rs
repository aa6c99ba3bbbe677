//! `psst-bench http`: a cached read over psstd's HTTP/1.1 front door (the AWS agents' API, on
//! the Unix socket and on TCP) against the floor — a minimal hyper HTTP/1.1 server answering the
//! same body as a constant, on a Unix socket and on TCP — and psstd's gRPC path, in the same run,
//! interleaved. One hyper HTTP/1.1 client (keep-alive, one request at a time per connection)
//! asks every HTTP target; gRPC is asked by tonic as in the main bench.

use std::{
    convert::Infallible,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{client::conn::http1::SendRequest, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, UnixStream},
};

use crate::{median, Cli, Target, REFERENCE};

pub const TOKEN: &str = "bench-ssrf-token";

/// Where an HTTP target listens.
#[derive(Clone)]
pub enum Address {
    Unix(PathBuf),
    Tcp(u16),
}

struct HttpTarget {
    name: String,
    address: Address,
    /// The floor this target is compared with (None: it is a floor).
    floor: Option<usize>,
}

fn path() -> String {
    format!("/secretsmanager/get?secretId={REFERENCE}")
}

async fn handshake<IO>(io: IO) -> anyhow::Result<SendRequest<Empty<Bytes>>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn client(address: &Address) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    match address {
        Address::Unix(path) => handshake(UnixStream::connect(path).await?).await,
        Address::Tcp(port) => {
            let stream = TcpStream::connect(("127.0.0.1", *port)).await?;
            stream.set_nodelay(true)?;
            handshake(stream).await
        }
    }
}

/// One GET on a kept-alive connection; the body, which must come with a 200.
async fn get(sender: &mut SendRequest<Empty<Bytes>>) -> anyhow::Result<Bytes> {
    sender.ready().await?;
    let request = Request::get(path())
        .header("host", "localhost")
        .header("x-aws-parameters-secrets-token", TOKEN)
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

async fn sequential(address: &Address, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut sender = client(address).await?;
    for _ in 0..n / 10 {
        get(&mut sender).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        get(&mut sender).await?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok((samples[n / 2], samples[n * 99 / 100]))
}

fn throughput(address: &Address, in_flight: usize, duration: Duration) -> anyhow::Result<f64> {
    let (count, seconds, _) = throughput_cpu(address, in_flight, duration, None)?;
    Ok(count as f64 / seconds)
}

/// `throughput`, also sampling the CPU time of the server process `pid` over the counted window
/// (`crate::saturate`): one connection per request in flight, the only way HTTP/1.1 has more
/// than one.
pub fn throughput_cpu(
    address: &Address,
    in_flight: usize,
    duration: Duration,
    pid: Option<u32>,
) -> anyhow::Result<(u64, f64, Option<f64>)> {
    let address = address.clone();
    let clients = async move {
        let mut senders = Vec::with_capacity(in_flight);
        for _ in 0..in_flight {
            senders.push(client(&address).await?);
        }
        Ok(senders)
    };
    crate::saturate(
        clients,
        |mut sender: SendRequest<Empty<Bytes>>| async move {
            let ok = get(&mut sender).await.is_ok();
            (sender, ok)
        },
        duration,
        pid,
    )
}

/// `count` reads on one connection to the Unix socket at `socket`.
pub async fn load(socket: &Path, count: usize) -> anyhow::Result<()> {
    let mut sender = client(&Address::Unix(socket.to_owned())).await?;
    for _ in 0..count {
        get(&mut sender).await?;
    }
    Ok(())
}

/// The floor: hyper's HTTP/1.1 server answering `body` to every request, on `socket` and on
/// 127.0.0.1:`port`, with hyper's default settings: no timers, limits or checks.
pub async fn floor_server(socket: PathBuf, port: u16, body_file: PathBuf) -> anyhow::Result<()> {
    let body = Bytes::from(std::fs::read(&body_file)?);
    let _ = std::fs::remove_file(&socket);
    let unix = tokio::net::UnixListener::bind(&socket)?;
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    fn serve<IO>(io: IO, body: Bytes)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |_request: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
    loop {
        tokio::select! {
            Ok((stream, _)) = unix.accept() => serve(stream, body.clone()),
            Ok((stream, _)) = tcp.accept() => {
                let _ = stream.set_nodelay(true);
                serve(stream, body.clone());
            }
        }
    }
}

/// The floor server's process (killed when dropped).
pub struct Floor {
    pub child: std::process::Child,
}

/// Starts the floor (`psst-bench http-floor-server`) answering exactly the body psstd's front
/// door at `psstd_socket` answers (its token in the environment): the floor, its Unix socket,
/// its TCP port and the body.
pub fn start_floor(
    runtime: &tokio::runtime::Runtime,
    psstd_socket: &Path,
    dir: &Path,
) -> anyhow::Result<(Floor, PathBuf, u16, Bytes)> {
    let body = runtime.block_on(async {
        let mut sender = client(&Address::Unix(psstd_socket.to_owned())).await?;
        get(&mut sender).await
    })?;
    let body_file = dir.join("floor-body.json");
    std::fs::write(&body_file, &body)?;
    let floor_socket = dir.join("floor.sock");
    let floor_port = free_port()?;
    let floor = Floor {
        child: std::process::Command::new(std::env::current_exe()?)
            .arg("http-floor-server")
            .arg(&floor_socket)
            .arg(floor_port.to_string())
            .arg(&body_file)
            .spawn()?,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&floor_socket).is_err() {
        if Instant::now() > deadline {
            bail!("the floor server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((floor, floor_socket, floor_port, body))
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the HTTP comparison and prints its table.
pub fn run(cli: &Cli, psstd: &Path, dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let audit_port = free_port()?;
    let quiet_port = free_port()?;
    let psstd_audit = Target::psstd(psstd, dir, "psstd", true, None, Some(audit_port))?;
    let psstd_quiet = Target::psstd(psstd, dir, "psstd-noaudit", false, None, Some(quiet_port))?;
    for target in [&psstd_audit, &psstd_quiet] {
        target.wait_ready()?;
        runtime.block_on(crate::seed(&target.socket, REFERENCE))?;
    }
    let (_floor, floor_socket, floor_port, body) = start_floor(&runtime, &psstd_audit.socket, dir)?;

    let targets = [
        HttpTarget {
            name: "floor: hyper, Unix socket".into(),
            address: Address::Unix(floor_socket.clone()),
            floor: None,
        },
        HttpTarget {
            name: "floor: hyper, TCP".into(),
            address: Address::Tcp(floor_port),
            floor: None,
        },
        HttpTarget {
            name: "psstd HTTP, Unix socket".into(),
            address: Address::Unix(psstd_audit.socket.clone()),
            floor: Some(0),
        },
        HttpTarget {
            name: "psstd HTTP, TCP".into(),
            address: Address::Tcp(audit_port),
            floor: Some(1),
        },
        HttpTarget {
            name: "psstd-noaudit HTTP, Unix socket".into(),
            address: Address::Unix(psstd_quiet.socket.clone()),
            floor: Some(0),
        },
        HttpTarget {
            name: "psstd-noaudit HTTP, TCP".into(),
            address: Address::Tcp(quiet_port),
            floor: Some(1),
        },
    ];
    let grpc = [&psstd_audit, &psstd_quiet];
    let levels = [8usize, 32];
    let rows = targets.len() + grpc.len();
    let mut p50 = vec![Vec::new(); rows];
    let mut p99 = vec![Vec::new(); rows];
    let mut rps = vec![vec![Vec::new(); levels.len()]; rows];
    let seconds = Duration::from_secs_f64(cli.seconds);
    for round in 0..cli.rounds {
        eprintln!("http round {}/{}", round + 1, cli.rounds);
        for (i, target) in targets.iter().enumerate() {
            let (a, b) = runtime.block_on(sequential(&target.address, cli.sequential))?;
            p50[i].push(a);
            p99[i].push(b);
        }
        for (j, target) in grpc.iter().enumerate() {
            let (a, b) =
                runtime.block_on(crate::sequential(&target.socket, REFERENCE, cli.sequential))?;
            p50[targets.len() + j].push(a);
            p99[targets.len() + j].push(b);
        }
        for (l, level) in levels.iter().enumerate() {
            for (i, target) in targets.iter().enumerate() {
                rps[i][l].push(throughput(&target.address, *level, seconds)?);
            }
            for (j, target) in grpc.iter().enumerate() {
                rps[targets.len() + j][l].push(crate::throughput(
                    &target.socket,
                    REFERENCE,
                    *level,
                    seconds,
                )?);
            }
        }
    }
    let names: Vec<String> = targets
        .iter()
        .map(|t| t.name.clone())
        .chain(
            grpc.iter()
                .map(|t| format!("{} gRPC (tonic client)", t.name)),
        )
        .collect();
    println!("| target | p50 µs | p99 µs | req/s @8 | req/s @32 |");
    println!("|---|---|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        println!(
            "| {name} | {:.1} | {:.1} | {:.0} | {:.0} |",
            median(&p50[i]),
            median(&p99[i]),
            median(&rps[i][0]),
            median(&rps[i][1]),
        );
    }
    for (i, target) in targets.iter().enumerate() {
        let Some(f) = target.floor else { continue };
        println!(
            "| {} / {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            target.name,
            targets[f].name,
            median(&p50[i]) / median(&p50[f]),
            median(&p99[i]) / median(&p99[f]),
            median(&rps[i][0]) / median(&rps[f][0]),
            median(&rps[i][1]) / median(&rps[f][1]),
        );
    }
    println!(
        "\n{} rounds, medians; sequential {} requests per round; throughput {}s per level, one connection per request in flight; {}-byte body ({}-byte value).",
        cli.rounds,
        cli.sequential,
        cli.seconds,
        body.len(),
        crate::VALUE_LEN
    );
    let _ = std::fs::remove_file(&floor_socket);
    drop((psstd_audit, psstd_quiet));
    Ok(())
}
