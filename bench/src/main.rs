//! Benchmarks a cached `GetSecret` over the Unix socket against a minimal tonic server, in the
//! same run, interleaved, so the ratio holds even when the machine's speed drifts.
//!
//! Run with `bench/run` (builds the release binaries first). For each target it measures:
//! sequential latency (p50, p99) on one connection, and throughput with 8, 32 and 128 requests in
//! flight (one connection each). Every measurement is repeated `--rounds` times, alternating
//! targets; the medians are printed as a Markdown table.
//!
//! `psst-bench http` (`bench/run http`) compares the HTTP/1.1 front door instead (`http.rs`).

mod clients;
mod http;
mod memory;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use psst_proto::v1::{
    self as pb,
    secrets_client::SecretsClient,
    secrets_server::{Secrets, SecretsServer},
};
use tokio::net::{UnixListener, UnixStream};
use tonic::{
    transport::{Channel, Endpoint, Server},
    Request, Response, Status,
};

pub const VALUE_LEN: usize = 200;
pub const REFERENCE: &str = "local:bench/db-password";
/// What the `--aws-roles` targets read, from a `moto_server` the bench starts.
const SSM_REFERENCE: &str = "ssm:/bench/db-password";
const BENCH_ROLE: &str = "arn:aws:iam::123456789012:role/psst-bench";

#[derive(Parser)]
#[command(about = "cached GetSecret: psstd against a minimal tonic server")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Rounds per measurement; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Sequential requests per round.
    #[arg(long, default_value_t = 5000)]
    pub sequential: usize,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Also measure a cached `ssm:` read as the agent and under an assumed IAM role (`[[role]]`),
    /// against a `moto_server` (from PyPI) that the bench starts on a free loopback port.
    #[arg(long)]
    aws_roles: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// A cached read over psstd's HTTP/1.1 front door (Unix socket and TCP) against a minimal
    /// hyper server answering the same body (the floor), and psstd's gRPC path, same run.
    Http,
    /// The HTTP floor: hyper's HTTP/1.1 server answering the bytes of BODY_FILE to everything.
    HttpFloorServer {
        socket: PathBuf,
        port: u16,
        body_file: PathBuf,
    },
    /// Sends COUNT cached reads over the HTTP/1.1 front door, one at a time on one kept-alive
    /// connection, to SOCKET (psstd's, or the floor server's): bench/callgrind with MODE=http.
    HttpLoad { socket: PathBuf, count: usize },
    /// The Rust clients against one psstd, same run: the floor (a thin h2 client), tonic's
    /// `Channel` (psst-client before), psst-client (`clients.rs`).
    RustClients,
    /// Sends COUNT cached GetSecrets one at a time with one Rust client, to a psstd already
    /// running (and seeded) on SOCKET: bench/callgrind-client counts the client's instructions.
    ClientLoad {
        #[arg(long, value_enum)]
        client: clients::Kind,
        socket: PathBuf,
        count: usize,
    },
    /// COUNT sequential cached GetSecrets with one Rust client after COUNT/10 of warm-up; prints
    /// the p50 and p99 in µs (bench/clients/run).
    ClientSeq {
        #[arg(long, value_enum)]
        client: clients::Kind,
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        n: usize,
    },
    /// psstd's memory: per cached secret (10,000 and 100,000), idle and after the first AWS
    /// read (moto), and with watchers open through rotations and after they close (`memory.rs`).
    Memory(memory::MemoryArgs),
    /// Writes COUNT secrets to a psstd already running on SOCKET, then reads each once, 32 in
    /// flight on one connection, as `memory` does for its per-secret figure (bench/order/gen
    /// profiles psstd through it).
    MemoryLoad { socket: PathBuf, count: usize },
    /// The server's CPU time (user + system, all threads, from /proc) per cached GetSecret
    /// with 1, 32 and 128 requests in flight (one connection each, and 32 and 128 sharing one
    /// connection): psstd with and without audit records against the baseline tonic server;
    /// and over HTTP/1.1 (a connection per request in flight) psstd's front door against
    /// hyper answering a constant. Interleaved, medians of `--rounds`.
    Cpu {
        /// The gRPC client that loads the servers (every connection one of its kind).
        #[arg(long, value_enum, default_value = "tonic")]
        client: clients::Kind,
    },
    /// The baseline: a stock tonic server answering GetSecret with a fixed 200-byte secret.
    BaselineServer { socket: PathBuf },
    /// Sends COUNT cached GetSecrets, one at a time on one connection, to a psstd already
    /// running on SOCKET (with --seed, writes the secret first). bench/callgrind uses it to count
    /// the server's instructions per request.
    Load {
        socket: PathBuf,
        count: usize,
        #[arg(long)]
        seed: bool,
        /// Requests in flight at once, all on the one connection (HTTP/2 streams).
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
        /// Each request in flight on a connection of its own instead (as an HTTP/1.1 agent is
        /// loaded).
        #[arg(long)]
        separate: bool,
        /// The reference read (bench/order/gen reads its AWS secrets with it).
        #[arg(long, default_value = REFERENCE)]
        reference: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::BaselineServer { socket }) = cli.command {
        return tokio::runtime::Runtime::new()?.block_on(baseline_server(socket));
    }
    if let Some(Cmd::HttpFloorServer {
        socket,
        port,
        body_file,
    }) = cli.command
    {
        return tokio::runtime::Runtime::new()?
            .block_on(http::floor_server(socket, port, body_file));
    }
    if let Some(Cmd::HttpLoad { socket, count }) = &cli.command {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(http::load(socket, *count));
    }
    if let Some(Cmd::ClientLoad {
        client,
        socket,
        count,
    }) = &cli.command
    {
        return clients::load(*client, socket, *count);
    }
    if let Some(Cmd::MemoryLoad { socket, count }) = &cli.command {
        return memory::load(socket, *count);
    }
    if let Some(Cmd::ClientSeq { client, socket, n }) = &cli.command {
        return clients::seq(*client, socket, *n);
    }
    if let Some(Cmd::Load {
        socket,
        count,
        seed: write,
        in_flight,
        separate,
        reference,
    }) = &cli.command
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(async {
            if *write {
                seed(socket, reference).await?;
            }
            let mut clients = vec![connect(socket).await?];
            if *separate {
                for _ in 1..*in_flight {
                    clients.push(connect(socket).await?);
                }
            }
            let callers = (0..(*in_flight).max(1)).map(|i| {
                let mut client = clients[i % clients.len()].clone();
                let reference = reference.clone();
                let n = count / in_flight.max(&1) + usize::from(i < count % in_flight.max(&1));
                async move {
                    for _ in 0..n {
                        client.get_secret(request(&reference)).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                }
            });
            for result in join_local(callers).await {
                result?;
            }
            Ok(())
        });
    }
    let dir = tempfile::tempdir()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .to_owned();
    let psstd = bin_dir.join("psstd");
    if !psstd.exists() {
        bail!(
            "{} is missing: run bench/run, which builds it",
            psstd.display()
        );
    }
    if let Some(Cmd::Http) = cli.command {
        return http::run(&cli, &psstd, dir.path());
    }
    if let Some(Cmd::RustClients) = cli.command {
        return clients::run(&cli, &psstd, dir.path());
    }
    if let Some(Cmd::Memory(args)) = &cli.command {
        return memory::run(args, &psstd);
    }
    if let Some(Cmd::Cpu { client }) = cli.command {
        return cpu(&cli, &psstd, dir.path(), client);
    }

    let mut targets = vec![
        Target::baseline(&dir.path().join("baseline.sock"))?,
        Target::psstd(&psstd, dir.path(), "psstd", true, None, None)?,
        Target::psstd(&psstd, dir.path(), "psstd-noaudit", false, None, None)?,
    ];
    let moto = if cli.aws_roles {
        let moto = Moto::start()?;
        let aws = AwsTarget {
            endpoint: moto.endpoint(),
            role: false,
        };
        targets.push(Target::psstd(
            &psstd,
            dir.path(),
            "psstd ssm",
            true,
            Some(&aws),
            None,
        )?);
        let role = AwsTarget { role: true, ..aws };
        targets.push(Target::psstd(
            &psstd,
            dir.path(),
            "psstd ssm, role",
            true,
            Some(&role),
            None,
        )?);
        Some(moto)
    } else {
        None
    };
    let runtime = ready_and_seeded(&targets)?;

    let levels = [8usize, 32, 128];
    let mut results: Vec<Results> = targets.iter().map(|_| Results::default()).collect();
    for round in 0..cli.rounds {
        eprintln!("round {}/{}", round + 1, cli.rounds);
        for (i, target) in targets.iter().enumerate() {
            let (p50, p99) =
                runtime.block_on(sequential(&target.socket, target.reference, cli.sequential))?;
            results[i].p50.push(p50);
            results[i].p99.push(p99);
        }
        for (l, level) in levels.iter().enumerate() {
            for (i, target) in targets.iter().enumerate() {
                let rps = throughput(
                    &target.socket,
                    target.reference,
                    *level,
                    Duration::from_secs_f64(cli.seconds),
                )?;
                if results[i].rps.len() <= l {
                    results[i].rps.push(Vec::new());
                }
                results[i].rps[l].push(rps);
            }
        }
    }

    println!("| target | p50 µs | p99 µs | req/s @8 | req/s @32 | req/s @128 |");
    println!("|---|---|---|---|---|---|");
    for (target, r) in targets.iter().zip(&results) {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
            target.name,
            median(&r.p50),
            median(&r.p99),
            median(&r.rps[0]),
            median(&r.rps[1]),
            median(&r.rps[2])
        );
    }
    let base = &results[0];
    for (target, r) in targets.iter().zip(&results).skip(1) {
        println!(
            "| {} / baseline | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            target.name,
            median(&r.p50) / median(&base.p50),
            median(&r.p99) / median(&base.p99),
            median(&r.rps[0]) / median(&base.rps[0]),
            median(&r.rps[1]) / median(&base.rps[1]),
            median(&r.rps[2]) / median(&base.rps[2]),
        );
    }
    println!(
        "\n{} rounds, medians; sequential {} requests per round; throughput {}s per level; {}-byte value.",
        cli.rounds, cli.sequential, cli.seconds, VALUE_LEN
    );
    drop(targets);
    drop(moto);
    Ok(())
}

/// How an `--aws-roles` target reads `ssm:`: from moto, as the agent or under a role.
struct AwsTarget {
    endpoint: String,
    role: bool,
}

/// A `moto_server` on a free loopback port, killed on drop.
struct Moto {
    port: u16,
    child: Child,
}

impl Moto {
    fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("moto_server (pip install 'moto[server]')")?;
        let moto = Moto { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(moto);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("moto_server did not start")
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Results {
    p50: Vec<f64>,
    p99: Vec<f64>,
    rps: Vec<Vec<f64>>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Target {
    name: &'static str,
    reference: &'static str,
    socket: PathBuf,
    child: Child,
}

impl Target {
    fn baseline(socket: &Path) -> anyhow::Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .arg("baseline-server")
            .arg(socket)
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Self {
            name: "baseline tonic",
            reference: REFERENCE,
            socket: socket.to_owned(),
            child,
        })
    }

    fn psstd(
        psstd: &Path,
        dir: &Path,
        name: &'static str,
        audit: bool,
        aws: Option<&AwsTarget>,
        http_port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let dir = dir.join(name.replace([' ', ','], "-"));
        std::fs::create_dir_all(&dir)?;
        let uid = nix_uid();
        let mut policy = format!("[[rule]]\nname = \"bench\"\ncaller = {{ uid = [{uid}] }}\nallow = {{ read = [\"local:**\", \"ssm:**\"], write = [\"local:**\", \"ssm:**\"] }}\n");
        // One uid sends every request of the load: its per-uid request rate is lifted (the other
        // bounds stay as they ship).
        let mut config = format!(
            "[server]\nsocket = \"{d}/psst.sock\"\n[log]\nlevel = \"warn\"\n[audit]\nenabled = {audit}\n[limits]\nrequests_per_second_per_uid = 0\n[policy]\nfile = \"{d}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{d}/store\"\nttl = \"1h\"\n",
            d = dir.display()
        );
        let mut command = Command::new(psstd);
        if let Some(port) = http_port {
            config.push_str(&format!("[http]\ntcp_listen = \"127.0.0.1:{port}\"\n"));
            command.env("AWS_TOKEN", http::TOKEN);
        }
        if let Some(aws) = aws {
            config.push_str(&format!(
                "[[backend]]\ntype = \"ssm\"\nendpoint = \"{e}\"\nregion = \"us-east-1\"\nttl = \"1h\"\n[aws_roles]\nendpoint = \"{e}\"\nregion = \"us-east-1\"\n",
                e = aws.endpoint
            ));
            if aws.role {
                policy.push_str(&format!(
                    "[[role]]\nname = \"bench\"\ncaller = {{ uid = [{uid}] }}\naws_role = \"{BENCH_ROLE}\"\n"
                ));
            }
            command
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
        std::fs::write(dir.join("policy.toml"), policy)?;
        std::fs::write(dir.join("psstd.toml"), config)?;
        // Audit records go to stderr, as they would to journald: discarded here.
        let child = command
            .arg("--config")
            .arg(dir.join("psstd.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self {
            name,
            reference: if aws.is_some() {
                SSM_REFERENCE
            } else {
                REFERENCE
            },
            socket: dir.join("psst.sock"),
            child,
        })
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not start", self.name)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nix_uid() -> u32 {
    // The bench runs as one user; the policy grants that user.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(0)
}

async fn connect(socket: &Path) -> anyhow::Result<SecretsClient<Channel>> {
    let path = socket.to_owned();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await?;
    Ok(SecretsClient::new(channel))
}

/// Runs the futures concurrently on this thread; their results in order.
async fn join_local<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = futures.map(|f| local.spawn_local(f)).collect();
    local
        .run_until(async move {
            let mut out = Vec::with_capacity(handles.len());
            for handle in handles {
                out.push(handle.await.expect("a load task panicked"));
            }
            out
        })
        .await
}

fn request(reference: &str) -> pb::GetSecretRequest {
    pb::GetSecretRequest {
        reference: reference.to_owned(),
    }
}

async fn seed(socket: &Path, reference: &str) -> anyhow::Result<()> {
    let mut client = connect(socket).await?;
    client
        .put_secret(pb::PutSecretRequest {
            reference: reference.to_owned(),
            value: vec![b's'; VALUE_LEN].into(),
        })
        .await?;
    // Warm the cache.
    let secret = client.get_secret(request(reference)).await?.into_inner();
    anyhow::ensure!(secret.value.len() == VALUE_LEN);
    Ok(())
}

async fn sequential(socket: &Path, reference: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut client = connect(socket).await?;
    for _ in 0..n / 10 {
        client.get_secret(request(reference)).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let reply = client.get_secret(request(reference)).await?.into_inner();
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        debug_assert_eq!(reply.value.len(), VALUE_LEN);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok((samples[n / 2], samples[n * 99 / 100]))
}

/// Starts the baseline and psstd (audit on and off), seeds them, and prints the server CPU per
/// request at each level: the server's utime + stime over the counted window of a throughput run
/// divided by the requests answered in it.
/// Waits until every target listens and writes (and caches) the secret into each psstd (all
/// but the first target, the baseline); returns the runtime for the measurements.
fn ready_and_seeded(targets: &[Target]) -> anyhow::Result<tokio::runtime::Runtime> {
    for target in targets {
        target.wait_ready()?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for target in &targets[1..] {
        runtime.block_on(seed(&target.socket, target.reference))?;
    }
    Ok(runtime)
}

fn cpu(cli: &Cli, psstd: &Path, dir: &Path, client: clients::Kind) -> anyhow::Result<()> {
    // Both psstds serve the HTTP/1.1 front door too (on the Unix socket; a TCP port is how the
    // bench's config turns it on).
    let targets = [
        Target::baseline(&dir.join("baseline.sock"))?,
        Target::psstd(psstd, dir, "psstd", true, None, Some(http::free_port()?))?,
        Target::psstd(
            psstd,
            dir,
            "psstd-noaudit",
            false,
            None,
            Some(http::free_port()?),
        )?,
    ];
    let runtime = ready_and_seeded(&targets)?;
    // The HTTP/1.1 floor: hyper answering psstd's body as a constant, as an HTTP agent is loaded
    // (a connection per request in flight).
    let (floor, floor_socket, _, _) = http::start_floor(&runtime, &targets[1].socket, dir)?;
    drop(runtime);
    let http_targets = [
        (
            "HTTP floor: hyper, a constant",
            floor.child.id(),
            floor_socket,
        ),
        (
            "psstd HTTP",
            targets[1].child.id(),
            targets[1].socket.clone(),
        ),
        (
            "psstd-noaudit HTTP",
            targets[2].child.id(),
            targets[2].socket.clone(),
        ),
    ];
    // (requests in flight, on one shared connection): one connection per request in flight as
    // an HTTP/1.1 agent is loaded, and one connection shared by all of them as a process with
    // one psst client (or tonic channel) shares it.
    let levels = [
        (1usize, false),
        (32, false),
        (128, false),
        (32, true),
        (128, true),
    ];
    let http_levels = [1usize, 32, 128];
    let mut us: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); levels.len()]; targets.len()];
    let mut rps: Vec<Vec<Vec<f64>>> = us.clone();
    let mut http_us: Vec<Vec<Vec<f64>>> =
        vec![vec![Vec::new(); http_levels.len()]; http_targets.len()];
    let mut http_rps = http_us.clone();
    let window = Duration::from_secs_f64(cli.seconds);
    for round in 0..cli.rounds {
        eprintln!("round {}/{}", round + 1, cli.rounds);
        for (l, (level, shared)) in levels.iter().enumerate() {
            for (i, target) in targets.iter().enumerate() {
                let measured = throughput_cpu(
                    client,
                    &target.socket,
                    target.reference,
                    *level,
                    *shared,
                    window,
                    Some(target.child.id()),
                )?;
                let (count, seconds, cpu) = measured;
                anyhow::ensure!(count > 0, "{} answered nothing", target.name);
                us[i][l].push(cpu.expect("sampled") * 1e6 / count as f64);
                rps[i][l].push(count as f64 / seconds);
            }
        }
        for (l, level) in http_levels.iter().enumerate() {
            for (i, (name, pid, socket)) in http_targets.iter().enumerate() {
                let address = http::Address::Unix(socket.clone());
                let (count, seconds, cpu) =
                    http::throughput_cpu(&address, *level, window, Some(*pid))?;
                anyhow::ensure!(count > 0, "{name} answered nothing");
                http_us[i][l].push(cpu.expect("sampled") * 1e6 / count as f64);
                http_rps[i][l].push(count as f64 / seconds);
            }
        }
    }
    let header: Vec<String> = levels
        .iter()
        .map(|(n, shared)| format!("@{n}{}", if *shared { " one conn" } else { "" }))
        .collect();
    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    print_cpu_table("gRPC", &names, &header, &us, &rps);
    let header: Vec<String> = http_levels.iter().map(|n| format!("@{n}")).collect();
    let names: Vec<&str> = http_targets.iter().map(|t| t.0).collect();
    print_cpu_table("HTTP/1.1", &names, &header, &http_us, &http_rps);
    // Requests per core, each protocol loaded as its clients load it: gRPC's in-flight requests
    // share a connection, HTTP/1.1's each take one.
    for (g, h) in [(3, 1), (4, 2)] {
        println!(
            "requests per core, psstd gRPC {} ÷ the HTTP floor {}: {:.2}×",
            levels[g].0,
            http_levels[h],
            median(&http_us[0][h]) / median(&us[1][g])
        );
    }
    println!(
        "\n{} rounds, medians; {}s per level; server utime+stime from /proc/PID/stat (10 ms ticks) over the counted window; {}-byte value. @N: N connections, one request at a time each; @N one conn: N requests in flight on one connection. gRPC rows: {} clients; HTTP rows: hyper HTTP/1.1 clients, kept-alive connections on the Unix socket.",
        cli.rounds, cli.seconds, VALUE_LEN, client.name()
    );
    drop(floor);
    Ok(())
}

/// One table of `cpu`: CPU µs and requests a second per target and level, then each target's
/// ratios to the first row (the floor).
fn print_cpu_table(
    title: &str,
    names: &[&str],
    header: &[String],
    us: &[Vec<Vec<f64>>],
    rps: &[Vec<Vec<f64>>],
) {
    println!("\n{title}\n");
    println!(
        "| target | {} | {} |",
        header
            .iter()
            .map(|h| format!("CPU µs/req {h}"))
            .collect::<Vec<_>>()
            .join(" | "),
        header
            .iter()
            .map(|h| format!("req/s {h}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(2 * header.len()));
    for (i, name) in names.iter().enumerate() {
        let cpu: Vec<String> = us[i].iter().map(|v| format!("{:.2}", median(v))).collect();
        let rate: Vec<String> = rps[i].iter().map(|v| format!("{:.0}", median(v))).collect();
        println!("| {name} | {} | {} |", cpu.join(" | "), rate.join(" | "));
    }
    for (i, name) in names.iter().enumerate().skip(1) {
        let ratio = |of: &Vec<Vec<f64>>, base: &Vec<Vec<f64>>| -> Vec<String> {
            of.iter()
                .zip(base)
                .map(|(a, b)| format!("{:.2}×", median(a) / median(b)))
                .collect()
        };
        println!(
            "| {name} / {} | {} | {} |",
            names[0],
            ratio(&us[i], &us[0]).join(" | "),
            ratio(&rps[i], &rps[0]).join(" | ")
        );
    }
}

/// A process's CPU time so far (user + system, all its threads, live and exited), in seconds.
fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ: 100 on every Linux architecture psstd builds for.
    Ok(ticks as f64 / 100.0)
}

fn throughput(
    socket: &Path,
    reference: &'static str,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (count, seconds, _) = throughput_cpu(
        clients::Kind::Tonic,
        socket,
        reference,
        in_flight,
        false,
        duration,
        None,
    )?;
    Ok(count as f64 / seconds)
}

/// `throughput`, also sampling the CPU time of the server process `pid` over the counted window:
/// (requests, seconds, server CPU seconds). `kind`: the client; `shared`: the requests in flight
/// share one connection instead of one connection each.
fn throughput_cpu(
    kind: clients::Kind,
    socket: &Path,
    reference: &'static str,
    in_flight: usize,
    shared: bool,
    duration: Duration,
    pid: Option<u32>,
) -> anyhow::Result<(u64, f64, Option<f64>)> {
    let socket = socket.to_owned();
    let clients = async move {
        let mut clients = Vec::with_capacity(in_flight);
        for _ in 0..in_flight {
            // A clone shares its connection.
            let client = match clients.first() {
                Some(first) if shared => clients::Any::clone(first),
                _ => clients::Any::connect(kind, &socket).await?,
            };
            clients.push(client);
        }
        Ok(clients)
    };
    saturate(
        clients,
        move |mut client: clients::Any| async move {
            let ok = client.get(reference).await.is_ok();
            (client, ok)
        },
        duration,
        pid,
    )
}

/// Keeps every client asking, one request at a time each, for `duration` after a 200 ms
/// warm-up, on a two-worker runtime like a typical multi-threaded service calling the agent:
/// the successful requests and the seconds they took, and the CPU seconds the process `pid`
/// (the server) spent over those seconds.
fn saturate<C, F, Fut>(
    clients: impl std::future::Future<Output = anyhow::Result<Vec<C>>>,
    call: F,
    duration: Duration,
    pid: Option<u32>,
) -> anyhow::Result<(u64, f64, Option<f64>)>
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = (C, bool)> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let clients = clients.await?;
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let counting = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let (done, stop, counting) =
                    (Arc::clone(&done), Arc::clone(&stop), Arc::clone(&counting));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let (back, ok) = call(client).await;
                        client = back;
                        if ok && counting.load(Ordering::Relaxed) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cpu_before = pid.map(process_cpu).transpose()?;
        counting.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        let count = done.load(Ordering::Relaxed);
        let elapsed = started.elapsed();
        let cpu = match (pid, cpu_before) {
            (Some(pid), Some(before)) => Some(process_cpu(pid)? - before),
            _ => None,
        };
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        Ok((count, elapsed.as_secs_f64(), cpu))
    })
}

// === baseline server ===

struct Fixed {
    secret: pb::Secret,
}

#[tonic::async_trait]
impl Secrets for Fixed {
    type WatchSecretsStream = tokio_stream::Empty<Result<pb::WatchEvent, Status>>;

    async fn watch_secrets(
        &self,
        _: Request<pb::WatchSecretsRequest>,
    ) -> Result<Response<Self::WatchSecretsStream>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn rotate_secret(
        &self,
        _: Request<pb::RotateSecretRequest>,
    ) -> Result<Response<pb::RotateSecretResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn generate_password(
        &self,
        _: Request<pb::GeneratePasswordRequest>,
    ) -> Result<Response<pb::GeneratePasswordResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn get_secret(
        &self,
        _: Request<pb::GetSecretRequest>,
    ) -> Result<Response<pb::Secret>, Status> {
        Ok(Response::new(self.secret.clone()))
    }

    async fn batch_get_secrets(
        &self,
        _: Request<pb::BatchGetSecretsRequest>,
    ) -> Result<Response<pb::BatchGetSecretsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn list_secrets(
        &self,
        _: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    async fn put_secret(
        &self,
        _: Request<pb::PutSecretRequest>,
    ) -> Result<Response<pb::PutSecretResponse>, Status> {
        Ok(Response::new(pb::PutSecretResponse::default()))
    }

    async fn who_am_i(
        &self,
        _: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

async fn baseline_server(socket: PathBuf) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let secret = pb::Secret {
        reference: REFERENCE.to_owned(),
        value: vec![b's'; VALUE_LEN].into(),
        version_id: "1".into(),
        // The same fields psstd fills, so both replies are the same size.
        created_at: Some(std::time::SystemTime::now().into()),
        cache: Some(pb::CacheInfo {
            hit: true,
            stale: false,
            fetched_at: Some(std::time::SystemTime::now().into()),
            expires_at: Some(std::time::SystemTime::now().into()),
        }),
        ..Default::default()
    };
    Server::builder()
        .add_service(SecretsServer::new(Fixed { secret }))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
        .await?;
    Ok(())
}
