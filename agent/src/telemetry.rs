//! The main log, through `tracing`.
//!
//! The main log honours `log.level` (or `PSST_LOG`, which overrides it). Audit records are not
//! log events: `audit::Trail` writes them (to `audit.file` as JSON lines when set, else to the
//! main output in its format), whatever the log level.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// The environment variable that overrides `log.level`.
pub const LOG_ENV: &str = "PSST_LOG";

pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let level = std::env::var(LOG_ENV).unwrap_or_else(|_| log.level.clone());
    let filter = EnvFilter::builder()
        .parse(&level)
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
    tracing_subscriber::registry()
        .with(main)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(())
}
