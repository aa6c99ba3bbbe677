//! Logs and the audit trail, through `tracing`.
//!
//! The main log honours `log.level` (or `PSST_LOG`, which overrides it). Audit records are
//! independent of the log level: they go to `audit.file` as JSON lines when set, else to the main
//! output in its format, and nowhere when `audit.enabled` is false.

use std::io::IsTerminal;

use anyhow::Context;
use tracing::Level;
use tracing_subscriber::{
    filter::Targets, fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
};

use crate::{
    audit,
    config::{AuditConfig, LogConfig, LogFormat},
};

/// The environment variable that overrides `log.level`.
pub const LOG_ENV: &str = "PSST_LOG";

pub fn init(log: &LogConfig, audit_config: &AuditConfig) -> anyhow::Result<()> {
    let level = std::env::var(LOG_ENV).unwrap_or_else(|_| log.level.clone());
    // Audit records have their own layer below. Excluding them here inside the one EnvFilter
    // (not with a second filter) keeps the filter's level hint, so disabled spans and events in
    // h2, hyper and tonic cost nothing on the request path.
    let filter = EnvFilter::builder()
        .parse(format!("{level},{}=off", audit::TARGET))
        .with_context(|| format!("log level '{level}'"))?;
    let ansi = std::io::stderr().is_terminal();
    let main = match log.format {
        LogFormat::Plain => fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
    }
    .with_filter(filter);

    let audit_filter = Targets::new().with_target(audit::TARGET, Level::INFO);
    let health = audit::AuditHealth::new(audit_config.fail_closed);
    health.install();
    let audit_layer = match (&audit_config.file, audit_config.enabled) {
        (_, false) => None,
        (Some(path), true) => {
            let file = audit::AuditFile::open(path)
                .with_context(|| format!("opening audit file {}", path.display()))?;
            Some(
                audit::AuditLayer::new(true, audit::Sink::File(file), health)
                    .with_filter(audit_filter)
                    .boxed(),
            )
        }
        (None, true) => Some(
            audit::AuditLayer::new(log.format == LogFormat::Json, audit::Sink::Stderr, health)
                .with_filter(audit_filter)
                .boxed(),
        ),
    };
    tracing_subscriber::registry()
        .with(main)
        .with(audit_layer)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(())
}
