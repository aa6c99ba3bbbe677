//! `psst-bench memory`: what psstd's memory costs, sampled from `/proc/<pid>/status` (VmRSS)
//! and `/proc/<pid>/smaps_rollup` (anonymous memory), and from the agent's own heap gauges
//! (`psst_heap_*` on its metrics listener) when it has them.
//!
//! - **Per cached secret**: N secrets of `VALUE_LEN` bytes (and `--warm-up` others) are written
//!   to a local store, then a fresh psstd reads, over one connection, the warm-up secrets first
//!   and then each of the N once; (RSS after − RSS after the warm-up) ÷ N, minus the value's
//!   bytes, is the marginal overhead of one cached secret. The warm-up pays the read path's
//!   one-time costs (the connection, the code pages the read touches first, the blocking
//!   threads and their allocator arenas) before the "before" sample; the figure from the idle
//!   sample instead (the method before the warm-up existed, `--warm-up 0`) is printed beside it.
//! - **Idle and first AWS read**: a fresh psstd with a Parameter Store backend against a
//!   `moto_server` the bench starts, before and after its first read (the SDK is built lazily).
//! - **Watchers**: W watch streams on one secret over C connections, R rotations (each waited
//!   for until every watcher has seen it), then every watch closed: RSS and the heap at each step.
//!
//! Each psstd starts with its binary out of the page cache (as at boot; `--keep-page-cache`
//! leaves it): how much of a binary's text a start maps depends on how its pages came into the
//! cache (read back on faults, or all of it as large folios by the linker or `cp`), and the
//! idle figure moved by 4 MB with it for the same binary.
//!
//! Stores live under /dev/shm when it exists, so filling 100,000 secrets does not wait for the
//! disk's fsyncs.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use psst_client::Client;

use crate::{nix_uid, Moto, VALUE_LEN};

/// What `psst-bench memory` measures.
#[derive(clap::Args)]
pub struct MemoryArgs {
    /// Cached-secret counts to measure (comma separated; 0 skips the measurement).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    secrets: Vec<usize>,
    /// Other secrets read through the same connection before the "before" sample of the
    /// per-secret figure, so that it leaves out the read path's one-time costs (0: none, the
    /// sample is taken at idle as before).
    #[arg(long, default_value_t = 1_000)]
    warm_up: usize,
    /// Watch streams on one secret (0: skip the watcher measurement).
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// Connections the watch streams are spread over.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Rotations with every watcher open.
    #[arg(long, default_value_t = 5)]
    rotations: usize,
    /// Skip the Parameter Store (moto) measurement.
    #[arg(long)]
    no_aws: bool,
    /// Start psstd with its binary's pages as they are in the page cache, instead of dropping
    /// them first (a cold start, as at boot).
    #[arg(long)]
    keep_page_cache: bool,
    /// The psstd binary to measure (default: the one next to this bench).
    #[arg(long)]
    psstd: Option<PathBuf>,
    /// An environment variable for psstd, NAME=VALUE (repeatable): to compare allocator
    /// settings, e.g. GLIBC_TUNABLES=glibc.malloc.arena_max=1.
    #[arg(long = "env", value_parser = parse_env)]
    envs: Vec<(String, String)>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("NAME=VALUE")?;
    Ok((name.to_owned(), value.to_owned()))
}

/// One sample of the agent's memory, in bytes.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss: u64,
    anon: u64,
    /// `psst_heap_in_use_bytes` and `psst_heap_free_bytes`, when the agent exports them.
    heap: Option<u64>,
    free: Option<u64>,
}

impl Sample {
    fn mb(bytes: u64) -> f64 {
        bytes as f64 / (1024.0 * 1024.0)
    }

    fn row(&self, label: &str) -> String {
        let mb = |v: Option<u64>| v.map_or("–".into(), |v| format!("{:.1}", Self::mb(v)));
        format!(
            "| {label} | {:.1} | {:.1} | {} | {} |",
            Self::mb(self.rss),
            Self::mb(self.anon),
            mb(self.heap),
            mb(self.free),
        )
    }
}

/// A psstd with its own directory, config and metrics port; killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
    metrics_port: u16,
}

impl Agent {
    fn start(
        args: &MemoryArgs,
        psstd: &Path,
        dir: &Path,
        extra: &str,
        aws: Option<&str>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let uid = nix_uid();
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let policy = format!(
            "[[rule]]\nname = \"bench\"\ncaller = {{ uid = [{uid}] }}\nallow = {{ read = [\"*:**\"], write = [\"*:**\"], watch = [\"*:**\"], admin = [\"*:**\"] }}\n"
        );
        let mut config = format!(
            "[server]\nsocket = \"{d}/psst.sock\"\n[log]\nlevel = \"warn\"\n[audit]\nenabled = false\n\
             [limits]\nrequests_per_second_per_uid = 0\nrequests_in_flight_per_uid = {in_flight}\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[policy]\nfile = \"{d}/policy.toml\"\n\
             {extra}\n[[backend]]\ntype = \"local\"\ndir = \"{d}/store\"\nttl = \"1h\"\n",
            d = dir.display(),
            // One uid sends the whole load, and holds every watch.
            in_flight = args.watchers + 64,
        );
        let mut command = Command::new(psstd);
        command.envs(args.envs.iter().map(|(k, v)| (k, v)));
        if let Some(endpoint) = aws {
            config.push_str(&format!(
                "[[backend]]\ntype = \"ssm\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nttl = \"1h\"\n"
            ));
            command
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
        std::fs::write(dir.join("policy.toml"), policy)?;
        std::fs::write(dir.join("psstd.toml"), config)?;
        if !args.keep_page_cache {
            drop_from_page_cache(psstd)?;
        }
        let child = command
            .arg("--config")
            .arg(dir.join("psstd.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", psstd.display()))?;
        let agent = Self {
            child,
            socket: dir.join("psst.sock"),
            metrics_port,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::os::unix::net::UnixStream::connect(&agent.socket).is_err() {
            if Instant::now() > deadline {
                bail!("psstd did not start in {}", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(agent)
    }

    /// The agent's memory once it has been quiet for `settle`.
    fn sample(&self, settle: Duration) -> anyhow::Result<Sample> {
        std::thread::sleep(settle);
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        let metrics = self.metrics().unwrap_or_default();
        Ok(Sample {
            rss: kib_field(&status, "VmRSS:").context("VmRSS")?,
            anon: kib_field(&rollup, "Anonymous:").context("Anonymous")?,
            heap: gauge(&metrics, "psst_heap_in_use_bytes"),
            free: gauge(&metrics, "psst_heap_free_bytes"),
        })
    }

    fn metrics(&self) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drops a file's clean pages from the page cache (`POSIX_FADV_DONTNEED`; pages mapped by a
/// running process stay).
fn drop_from_page_cache(path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: advice on an open descriptor; it changes no memory of this process.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    anyhow::ensure!(rc == 0, "posix_fadvise({}): error {rc}", path.display());
    Ok(())
}

/// A `Key:   123 kB` line of a /proc file, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The value of an unlabelled gauge in a Prometheus exposition.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

pub fn run(args: &MemoryArgs, bench_psstd: &Path) -> anyhow::Result<()> {
    let psstd = args.psstd.clone().unwrap_or_else(|| bench_psstd.to_owned());
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let envs: Vec<String> = args.envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("psstd: {} {}\n", envs.join(" "), psstd.display());
    println!("| step | VmRSS MB | anonymous MB | heap in use MB | heap free MB |");
    println!("|---|---|---|---|---|");

    let mut per_secret = Vec::new();
    let warm_up = args.warm_up;
    for &count in args.secrets.iter().filter(|&&n| n > 0) {
        let store = dir.path().join(format!("secrets-{count}"));
        {
            let agent = Agent::start(args, &psstd, &store, "", None)?;
            runtime.block_on(async {
                let client = Client::connect(&agent.socket).await?;
                fill(&client, count, reference).await?;
                fill(&client, warm_up, warm_up_reference).await
            })?;
        }
        // A fresh agent over the filled store: what it holds is the cache, not the writes.
        let agent = Agent::start(args, &psstd, &store, "", None)?;
        let idle = agent.sample(Duration::from_secs(1))?;
        let client = runtime.block_on(Client::connect(&agent.socket))?;
        runtime.block_on(read_all(&client, warm_up, warm_up_reference))?;
        let warm = agent.sample(Duration::from_secs(1))?;
        runtime.block_on(read_all(&client, count, reference))?;
        let after = agent.sample(Duration::from_secs(2))?;
        drop(client);
        println!("{}", idle.row(&format!("{count} secrets: idle")));
        if warm_up > 0 {
            println!(
                "{}",
                warm.row(&format!("{count} secrets: {warm_up} others read first"))
            );
        }
        println!("{}", after.row(&format!("{count} secrets: each read once")));
        per_secret.push((count, idle, warm, after));
        drop(agent);
        std::fs::remove_dir_all(&store)?;
    }

    let mut aws = None;
    if !args.no_aws {
        let moto = Moto::start()?;
        let store = dir.path().join("aws");
        let endpoint = moto.endpoint();
        {
            let agent = Agent::start(
                args,
                &psstd,
                &store.join("seed"),
                "",
                Some(endpoint.as_str()),
            )?;
            runtime.block_on(async {
                let client = Client::connect(&agent.socket).await?;
                client.put(SSM_REFERENCE, &[b's'; VALUE_LEN]).await?;
                anyhow::Ok(())
            })?;
        }
        let agent = Agent::start(
            args,
            &psstd,
            &store.join("agent"),
            "",
            Some(endpoint.as_str()),
        )?;
        let idle = agent.sample(Duration::from_secs(1))?;
        runtime.block_on(async {
            let client = Client::connect(&agent.socket).await?;
            let secret = client.get(SSM_REFERENCE).await?;
            anyhow::ensure!(secret.value().len() == VALUE_LEN);
            anyhow::Ok(())
        })?;
        let first = agent.sample(Duration::from_secs(1))?;
        println!("{}", idle.row("ssm agent: idle"));
        println!("{}", first.row("ssm agent: after its first read"));
        aws = Some((idle, first));
    }

    let mut watch_samples = Vec::new();
    if args.watchers > 0 {
        let store = dir.path().join("watchers");
        let streams = format!(
            "[connections]\nmax_streams = {}\n[watch]\ninterval = \"200ms\"\njitter = 0.2\n",
            args.watchers.div_ceil(args.connections.max(1)) + 8,
        );
        let agent = Agent::start(args, &psstd, &store, &streams, None)?;
        watch_samples = runtime.block_on(watchers(&agent, args))?;
        for (label, sample) in &watch_samples {
            println!("{}", sample.row(label));
        }
    }

    println!();
    for (count, idle, warm, after) in &per_secret {
        if warm_up > 0 {
            println!(
                "{count} cached {VALUE_LEN}-byte secrets, after {warm_up} others: overhead per secret (delta ÷ N − {VALUE_LEN}) {}",
                overhead(warm, after, *count)
            );
        }
        // From the idle sample: the read path's one-time costs included (the method without a
        // warm-up), over every secret read.
        println!(
            "{} cached {VALUE_LEN}-byte secrets, from idle: overhead per secret (delta ÷ N − {VALUE_LEN}) {}",
            count + warm_up,
            overhead(idle, after, count + warm_up)
        );
    }
    if let Some((idle, first)) = aws {
        println!(
            "ssm agent: idle VmRSS {:.1} MB, after the first read {:.1} MB",
            Sample::mb(idle.rss),
            Sample::mb(first.rss)
        );
    }
    if let (Some((_, base)), Some((_, closed))) = (watch_samples.first(), watch_samples.last()) {
        println!(
            "watchers: {} streams over {} connections, {} rotations: VmRSS {:.1} MB before, {:.1} MB after every watch closed",
            args.watchers,
            args.connections,
            args.rotations,
            Sample::mb(base.rss),
            Sample::mb(closed.rss)
        );
    }
    Ok(())
}

/// `(after − before) ÷ count − VALUE_LEN` for VmRSS, anonymous memory and the heap.
fn overhead(before: &Sample, after: &Sample, count: usize) -> String {
    let per = |b: u64, a: u64| (a as f64 - b as f64) / count as f64 - VALUE_LEN as f64;
    let heap = match (before.heap, after.heap) {
        (Some(b), Some(a)) => format!(", heap {:.0}", per(b, a)),
        _ => String::new(),
    };
    format!(
        "VmRSS {:.0} B, anonymous {:.0} B{heap}",
        per(before.rss, after.rss),
        per(before.anon, after.anon),
    )
}

const SSM_REFERENCE: &str = "ssm:/bench/memory";

fn reference(i: usize) -> String {
    format!("local:mem/s{i:06}")
}

/// The secrets read before the "before" sample (`--warm-up`).
fn warm_up_reference(i: usize) -> String {
    format!("local:mem/w{i:06}")
}

/// Writes `count` secrets named by `name`, 32 at a time.
async fn fill(client: &Client, count: usize, name: fn(usize) -> String) -> anyhow::Result<()> {
    let client = client.clone();
    for_each(count, 32, move |i| {
        let client = client.clone();
        async move {
            // Every value differs, as real secrets do.
            let mut value = [b's'; VALUE_LEN];
            value[..6].copy_from_slice(format!("{i:06}").as_bytes());
            client.put(&name(i), &value).await?;
            anyhow::Ok(())
        }
    })
    .await
}

/// `psst-bench memory-load`: writes `count` secrets through the psstd on `socket`, then reads
/// each once, as the per-secret measurement does.
pub fn load(socket: &Path, count: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = Client::connect(socket).await?;
        fill(&client, count, reference).await?;
        read_all(&client, count, reference).await
    })
}

/// Reads each of `count` secrets named by `name` once, 32 at a time, over `client`'s
/// connection.
async fn read_all(client: &Client, count: usize, name: fn(usize) -> String) -> anyhow::Result<()> {
    let client = client.clone();
    for_each(count, 32, move |i| {
        let client = client.clone();
        async move {
            let secret = client.get(&name(i)).await?;
            anyhow::ensure!(secret.value().len() == VALUE_LEN);
            anyhow::Ok(())
        }
    })
    .await
}

/// Runs `call(0..count)` with `width` calls in flight.
async fn for_each<F, Fut>(count: usize, width: usize, call: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..width)
        .map(|_| {
            let (next, call) = (Arc::clone(&next), call.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return anyhow::Ok(());
                    }
                    call(i).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

/// Opens the watches, rotates, closes them: a sample at each step.
async fn watchers(agent: &Agent, args: &MemoryArgs) -> anyhow::Result<Vec<(String, Sample)>> {
    const WATCHED: &str = "local:mem/watched";
    let within = Duration::from_secs(120);
    let sample = |settle| {
        let agent = &*agent;
        move || agent.sample(settle)
    };
    let writer = Client::connect(&agent.socket).await?;
    writer.put(WATCHED, b"v0").await?;
    let mut samples = vec![(
        "watchers: none open".to_owned(),
        tokio::task::block_in_place(sample(Duration::from_secs(1)))?,
    )];
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(Client::connect(&agent.socket).await?);
    }
    // Every event received, over all watchers; each watcher reads until it is aborted.
    let seen = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(args.watchers);
    for i in 0..args.watchers {
        let mut watch = clients[i % clients.len()].watch(&[WATCHED]);
        let seen = Arc::clone(&seen);
        tasks.push(tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                if event.is_ok() {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let wait_for = |target: usize| {
        let seen = Arc::clone(&seen);
        async move {
            let started = Instant::now();
            while seen.load(Ordering::Relaxed) < target {
                if started.elapsed() > within {
                    bail!(
                        "{} of {target} watch events in {within:?}",
                        seen.load(Ordering::Relaxed)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        }
    };
    wait_for(args.watchers).await?;
    samples.push((
        format!("watchers: {} open", args.watchers),
        tokio::task::block_in_place(sample(Duration::from_secs(1)))?,
    ));
    for r in 1..=args.rotations {
        writer.put(WATCHED, format!("v{r}").as_bytes()).await?;
        wait_for(args.watchers * (r + 1)).await?;
        samples.push((
            format!("watchers: after rotation {r}"),
            tokio::task::block_in_place(sample(Duration::from_secs(1)))?,
        ));
    }
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(clients);
    // Until the agent counts no watcher and no watched secret (its pollers gone).
    let started = Instant::now();
    loop {
        let stats = writer.stats().await?;
        let metrics = agent.metrics().unwrap_or_default();
        if stats.watchers == 0 && gauge(&metrics, "psst_watched_secrets") == Some(0) {
            break;
        }
        if started.elapsed() > within {
            bail!(
                "{} watchers still counted {within:?} after every watch closed",
                stats.watchers
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // psstd looks at the allocator's free memory every 5 s (`main.rs`): a sample after that.
    samples.push((
        "watchers: every watch closed".to_owned(),
        tokio::task::block_in_place(sample(Duration::from_secs(6)))?,
    ));
    Ok(samples)
}
