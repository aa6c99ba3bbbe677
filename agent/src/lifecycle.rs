//! Process lifecycle: hardening at start, signals, systemd readiness.

use tokio::signal::unix::{signal, SignalKind};

/// Keeps secrets out of core dumps and away from ptrace by same-uid processes.
pub fn harden() -> anyhow::Result<()> {
    nix::sys::prctl::set_dumpable(false)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    Ok(())
}

/// File descriptors kept free for everything that is not a caller's connection: the store,
/// the audit file, backend connections, the metrics listener, the accept loop's reserve.
pub const RESERVED_FDS: u64 = 64;

/// Raises the open-file limit to its hard limit (systemd's default soft limit, 1,024, is what
/// a local user would otherwise exhaust with idle connections) and returns the number of
/// connections that fit beside [`RESERVED_FDS`].
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024 - RESERVED_FDS;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    limit.saturating_sub(RESERVED_FDS).max(1)
}

/// Takes over SIGTERM and SIGINT now (their default action ends the process at once) and
/// returns a future that resolves on the first of them. Call it before serving anything.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

/// Tells systemd (when it started us with `Type=notify`) how we are doing. A no-op elsewhere.
pub fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
