//! The audit trail: one record per policy decision, as a `tracing` event on the `audit` target
//! (routed to its own file when `audit.file` is set). A record names the caller, the operation,
//! the reference, the decision and the rule behind it, and how the request ended — never a value.

use crate::{identity::Caller, metrics::Metrics, policy::Operation};

/// The tracing target audit records are emitted on.
pub const TARGET: &str = "audit";

/// How a decided request ended, for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Denied,
    /// Served from the cache without a backend call.
    Hit,
    /// Served after a backend call.
    Miss,
    /// Served past its TTL because the backend was unreachable.
    Stale,
    /// Done (a write or a listing).
    Done,
    /// Allowed, then failed: the gRPC code name says how.
    Failed(&'static str),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Done => "done",
            Self::Failed(code) => code,
        }
    }
}

pub fn record(
    metrics: &Metrics,
    caller: &Caller,
    op: Operation,
    reference: &str,
    rule: Option<&str>,
    outcome: Outcome,
) {
    metrics.decision(op, rule.is_some());
    tracing::info!(
        target: TARGET,
        decision = if rule.is_some() { "allow" } else { "deny" },
        operation = op.as_str(),
        reference,
        rule = rule.unwrap_or(""),
        outcome = outcome.as_str(),
        uid = caller.uid,
        gid = caller.gid,
        pid = caller.pid,
        user = caller.user.as_deref().unwrap_or(""),
        executable = caller.executable.as_deref().unwrap_or(""),
        container_id = caller.container_id.as_deref().unwrap_or(""),
        pod_uid = caller.pod_uid.as_deref().unwrap_or(""),
        systemd_unit = caller.systemd_unit.as_deref().unwrap_or(""),
        identity = caller.source.as_str(),
        "audit"
    );
}
