//! Process lifecycle: hardening at start, signals, systemd readiness.

use tokio::signal::unix::{signal, SignalKind};

/// Keeps secrets out of core dumps and away from ptrace by same-uid processes.
pub fn harden() -> anyhow::Result<()> {
    nix::sys::prctl::set_dumpable(false)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    Ok(())
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
