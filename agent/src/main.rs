//! `psstd`: starts the agent. Everything else lives in the library; see `app::run`.

use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use psstd::{
    app,
    config::Config,
    lifecycle,
    policy::{Policy, PolicySource},
    telemetry,
};

/// Every buffer the agent frees is wiped first: request bodies (PutSecret's, rejected ones too),
/// HTTP/2 frames, SDK response buffers and whatever parsing copied out of them. Values that stay
/// live are in `SecretValue`'s protected arena (`agent/src/secret.rs`).
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

/// glibc's figures for every arena (`mallinfo2`): what the metrics' `heap_*` gauges show.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_usage() -> psstd::metrics::HeapUsage {
    // SAFETY: mallinfo2 takes each arena's lock and only reads its statistics.
    let info = unsafe { libc::mallinfo2() };
    psstd::metrics::HeapUsage {
        in_use: (info.uordblks + info.hblkhd) as u64,
        free: info.fordblks as u64,
    }
}

/// Gives the allocator's free memory back to the kernel when it holds a lot of it. glibc keeps
/// what the agent freed in its arenas (one per thread, up to eight per core), so after a burst
/// (10,000 watches closing, the AWS SDK's start-up garbage) RSS stayed at the peak while the heap
/// in use was back down. Every `HEAP_CHECK` a thread reads the free bytes (`mallinfo2`) and,
/// when they passed `HEAP_TRIM_AT` and grew by half of that since the last trim, returns the free
/// pages (`malloc_trim`, which also releases whole free pages inside the arenas). Freed memory
/// was already wiped by the zeroing allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_heap_trimmed() {
    const HEAP_CHECK: std::time::Duration = std::time::Duration::from_secs(5);
    const HEAP_TRIM_AT: u64 = 2 * 1024 * 1024;
    let spawned = std::thread::Builder::new()
        .name("psstd-heap".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            // What was still free right after the last trim (pages partly in use stay).
            let mut left = 0;
            loop {
                std::thread::sleep(HEAP_CHECK);
                let free = heap_usage().free;
                if free > HEAP_TRIM_AT && free > left + HEAP_TRIM_AT / 2 {
                    // SAFETY: malloc_trim only returns free memory to the kernel.
                    unsafe { libc::malloc_trim(0) };
                    left = heap_usage().free;
                } else {
                    left = left.min(free);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the heap trimming thread");
    }
}

/// Exit code for a configuration error (EX_CONFIG would be 78; linkerd and BSD use 64, usage).
const EXIT_CONFIG: u8 = 64;
const DEFAULT_CONFIG: &str = "/etc/psst/psstd.toml";
const DEFAULT_STATE_DIR: &str = ".psst";

#[derive(Parser)]
#[command(name = "psstd", version, about = "psst: the per-host secrets agent")]
struct Cli {
    /// Config file.
    #[arg(long, short, env = "PSST_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Run on the embedded default: the local store and socket in $PSST_STATE_DIR (else ./.psst),
    /// and a policy that grants the invoking user everything. No config file is read.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and the policy it names; exit non-zero on any problem.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    let (config, policy) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("psstd: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("psstd: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        psstd::metrics::set_heap_probe(heap_usage);
        keep_heap_trimmed();
    }
    if let Err(e) = lifecycle::harden() {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        let shutdown = lifecycle::shutdown_signal()?;
        let socket = config.server.socket.clone();
        let dev = cli.dev;
        app::run(config, policy, shutdown, move || {
            if dev {
                print_dev_banner(&socket);
            }
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: the log goes to stderr too, so the error is not printed a second time —
            // unless the log is off (`log.level = "off"`), which must not hide why psstd stopped.
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{e:#}");
            } else {
                eprintln!("psstd: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<(Config, Arc<PolicySource>)> {
    if cli.dev {
        let state_dir = std::env::var_os("PSST_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        let state_dir = state_dir.canonicalize()?;
        let uid = nix::unistd::getuid().as_raw();
        let policy = PolicySource::fixed(Policy::allow_uid_everything(uid));
        return Ok((Config::dev(&state_dir), Arc::new(policy)));
    }
    let config = Config::load(&cli.config).map_err(|e| {
        if !cli.config.exists() && cli.config == Path::new(DEFAULT_CONFIG) {
            anyhow::anyhow!(
                "{e}\n(no config file yet: `psstd --dev` runs on the embedded default, a local \
                 store in ./.psst; `--config FILE` names another file; README.md has both)"
            )
        } else {
            e.into()
        }
    })?;
    let policy = PolicySource::from_file(&config.policy.file)?;
    Ok((config, Arc::new(policy)))
}

fn check_config(file: &Path) -> ExitCode {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if config.http.tcp_listen.is_some() {
        if let Err(problem) = psstd::http_api::Token::load(&config.http) {
            eprintln!("{}: {problem}", file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match Policy::from_file(&config.policy.file) {
        Ok(policy) => {
            let unattested = policy.unattested(&config.identity.platforms());
            if !unattested.is_empty() {
                eprintln!(
                    "policy {} has {} problem(s):\n  - {}",
                    config.policy.file.display(),
                    unattested.len(),
                    unattested.join("\n  - ")
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            let feed = match (&config.feed.queue_url, &config.feed.topic_arn) {
                (Some(url), _) => format!("; change feed from {url}"),
                (None, Some(topic)) if config.feed.create => {
                    format!("; change feed from a per-host queue on {topic}")
                }
                _ => String::new(),
            };
            println!(
                "{}: ok ({} backend(s), policy {} with {} rule(s){feed})",
                file.display(),
                config.backends.len(),
                config.policy.file.display(),
                policy.rule_count()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn print_dev_banner(socket: &Path) {
    let socket = socket.display();
    // Point at the psst binary built beside this one, so the hint works before installing.
    let psst = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("psst")))
        .filter(|path| path.exists())
        .map_or_else(|| "psst".to_owned(), |path| path.display().to_string());
    println!(
        "psstd (dev mode): local store, every backend granted to uid {uid}\n\
         listening on {socket}\n\n\
         try, in another shell:\n  \
         export PSST_SOCKET={socket}\n  \
         printf 'hunter2' | {psst} put local:demo/db-password\n  \
         {psst} get local:demo/db-password\n",
        uid = nix::unistd::getuid()
    );
}
