//! The audit trail: one record per policy decision, as a `tracing` event on the `audit` target
//! (routed to its own file when `audit.file` is set). A record names the caller, the operation,
//! the reference, the decision and the rule behind it, and how the request ended — never a value.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use crate::{
    identity::{Caller, Frontend},
    metrics::Metrics,
    policy::Operation,
};

/// While audit records cannot be written, a failure is logged at most this often.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

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
    let decision = if rule.is_some() { "allow" } else { "deny" };
    let rule = rule.unwrap_or("");
    let workload = &caller.workload;
    // One event layout, with the fields a record needs beyond the common ones.
    macro_rules! event {
        ($($extra:tt)*) => {
            tracing::info!(
                target: TARGET,
                decision,
                operation = op.as_str(),
                reference,
                rule,
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
                $($extra)*
                "audit"
            )
        };
    }
    if workload.kubernetes.is_none()
        && workload.ecs.is_none()
        && workload.container.is_none()
        && workload.failures.is_empty()
    {
        // No platform attestor said anything about this caller (the usual case off a cluster):
        // the record leaves the workload fields out rather than write them empty, which keeps a
        // record about a fifth cheaper on the cached-read path. For the same reason a gRPC
        // record has no `via`: only the HTTP front door's records name their door.
        match caller.via {
            Frontend::Grpc => event!(),
            via => event!(via = via.as_str(),),
        }
        return;
    }
    let k8s = workload.kubernetes.as_ref();
    // Why a platform attribute is missing, so a deny it caused says so.
    let attestation = workload.failures.join("; ");
    event!(
        via = caller.via.as_str(),
        k8s_namespace = k8s.map_or("", |k| k.namespace.as_str()),
        k8s_service_account = k8s.map_or("", |k| k.service_account.as_str()),
        k8s_pod = k8s.map_or("", |k| k.pod_name.as_str()),
        ecs_task = workload.ecs.as_ref().map_or("", |e| e.task_arn.as_str()),
        container_name = workload.container.as_ref().map_or("", |c| c.name.as_str()),
        attestation = attestation.as_str(),
    );
}

/// Whether audit records reach their sink: counted for metrics, logged (rate-limited), and with
/// `audit.fail_closed` a reason to refuse requests until they do again.
pub struct AuditHealth {
    fail_closed: bool,
    failures: AtomicU64,
    failing: AtomicBool,
    /// When a failure was last logged, and how many went unlogged since.
    logged: Mutex<(Option<Instant>, u64)>,
}

/// The process's audit health, once the audit layer is installed (`telemetry::init`).
static HEALTH: OnceLock<Arc<AuditHealth>> = OnceLock::new();

/// The health of the audit trail in use, if there is one.
pub fn health() -> Option<&'static Arc<AuditHealth>> {
    HEALTH.get()
}

impl AuditHealth {
    pub fn new(fail_closed: bool) -> Arc<Self> {
        Arc::new(Self {
            fail_closed,
            failures: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            logged: Mutex::new((None, 0)),
        })
    }

    /// Makes this the health `health()` returns: the one the installed audit layer reports to.
    pub fn install(self: &Arc<Self>) {
        let _ = HEALTH.set(Arc::clone(self));
    }

    /// Records written since start that could not be written.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The last record could not be written.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Requests must be refused: the trail is failing and `audit.fail_closed` is set.
    pub fn refuses_requests(&self) -> bool {
        self.fail_closed && self.failing()
    }

    fn wrote(&self, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
                    tracing::warn!(
                        failures_total = self.failures(),
                        "audit records are written again"
                    );
                    *logged = (None, 0);
                }
            }
            Err(e) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let was_failing = self.failing.swap(true, Ordering::Relaxed);
                let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
                let due = !was_failing
                    || logged
                        .0
                        .is_none_or(|at| at.elapsed() >= FAILURE_LOG_INTERVAL);
                if due {
                    tracing::error!(
                        error = %e,
                        failures_total = failures,
                        unlogged = logged.1,
                        fail_closed = self.fail_closed,
                        "cannot write audit records; they are lost{}",
                        if self.fail_closed {
                            ", and requests are refused (audit.fail_closed) until they can be"
                        } else {
                            ""
                        }
                    );
                    *logged = (Some(Instant::now()), 0);
                } else {
                    logged.1 += 1;
                }
            }
        }
    }
}

/// Writes audit records, one line each, in the layout `tracing_subscriber::fmt` gives them
/// (`Full` text or JSON), without its general-purpose formatting machinery: every `GetSecret`
/// writes one, and `fmt`'s field visitor, styling and `Debug` plumbing cost about 22k
/// instructions a record — a third of the whole request (`bench/callgrind`).
pub struct AuditLayer {
    json: bool,
    sink: Sink,
    health: Arc<AuditHealth>,
}

/// Where audit lines go: one `write` of the whole line each, so concurrent records never
/// interleave (the file is opened with O_APPEND).
pub enum Sink {
    Stderr,
    File(std::sync::Arc<AuditFile>),
}

/// `audit.file`, reopened on SIGHUP so logrotate can move it away and the agent starts a new one.
pub struct AuditFile {
    path: std::path::PathBuf,
    file: arc_swap::ArcSwap<std::fs::File>,
}

/// The audit file in use, for `reopen_file`.
static AUDIT_FILE: std::sync::OnceLock<std::sync::Arc<AuditFile>> = std::sync::OnceLock::new();

impl AuditFile {
    /// Opens (creating, mode 0640) `path` for appending, and makes it the one `reopen_file`
    /// reopens.
    pub fn open(path: &std::path::Path) -> std::io::Result<std::sync::Arc<Self>> {
        let file = std::sync::Arc::new(Self {
            path: path.to_owned(),
            file: arc_swap::ArcSwap::from_pointee(Self::open_file(path)?),
        });
        let _ = AUDIT_FILE.set(std::sync::Arc::clone(&file));
        Ok(file)
    }

    fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    /// Opens the path again (a new file if the old one was moved away); records go there from
    /// now on. On error the old file stays in use.
    pub fn reopen(&self) -> std::io::Result<()> {
        self.file
            .store(std::sync::Arc::new(Self::open_file(&self.path)?));
        Ok(())
    }
}

/// Reopens `audit.file`, if the agent writes one (SIGHUP does this).
pub fn reopen_file() -> Option<std::io::Result<()>> {
    AUDIT_FILE.get().map(|file| file.reopen())
}

impl AuditLayer {
    pub fn new(json: bool, sink: Sink, health: Arc<AuditHealth>) -> Self {
        Self { json, sink, health }
    }

    fn write(&self, line: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match &self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line),
            Sink::File(file) => (&**file.file.load()).write_all(line),
        }
    }
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuditLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let written = LINE.with_borrow_mut(|line| {
            line.clear();
            let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
            let level = event.metadata().level();
            let target = event.metadata().target();
            use std::fmt::Write;
            if self.json {
                let _ = write!(
                    line,
                    "{{\"timestamp\":\"{now}\",\"level\":\"{level}\",\"fields\":{{"
                );
            } else {
                let _ = write!(line, "{now} {level:>5} {target}: ");
            }
            let mut fields = Fields {
                line,
                json: self.json,
                first: true,
            };
            event.record(&mut fields);
            if self.json {
                line.push_str("},\"target\":");
                json_str(line, target);
                line.push('}');
            }
            line.push('\n');
            self.write(line.as_bytes())
        });
        // Outside the line's borrow: reporting a failure logs, which is another event.
        self.health.wrote(written);
    }
}

/// Appends an event's fields: `name=value` separated by spaces (strings quoted and escaped as
/// `Debug` does, the message bare and first), or JSON members.
struct Fields<'a> {
    line: &'a mut String,
    json: bool,
    first: bool,
}

impl Fields<'_> {
    fn name(&mut self, name: &str) {
        if self.json {
            if !self.first {
                self.line.push(',');
            }
            json_str(self.line, name);
            self.line.push(':');
        } else {
            if !self.first {
                self.line.push(' ');
            }
            if name != "message" {
                self.line.push_str(name);
                self.line.push('=');
            }
        }
        self.first = false;
    }
}

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.name(field.name());
        if needs_no_escape(value) {
            quoted(self.line, value);
        } else if self.json {
            json_str(self.line, value);
        } else {
            use std::fmt::Write;
            let _ = write!(self.line, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.name(field.name());
        use std::fmt::Write;
        let _ = write!(self.line, "{value}");
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.name(field.name());
        use std::fmt::Write;
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.name(field.name());
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // The message (format arguments) is written as text; anything else as its Debug form.
        let text = format!("{value:?}");
        self.name(field.name());
        if self.json {
            json_str(self.line, &text);
        } else {
            self.line.push_str(&text);
        }
    }
}

fn json_str(line: &mut String, value: &str) {
    if needs_no_escape(value) {
        return quoted(line, value);
    }
    // serde_json's escaping: the same as tracing's JSON layout.
    line.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into()));
}

/// Printable ASCII other than `"` and `\`: written as it is between quotes, both by `Debug`
/// (the text layout) and by JSON, so neither escaper needs to run. Almost every field of a
/// record is such a string (see BENCHMARKS.md for what the escapers cost).
fn needs_no_escape(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn quoted(line: &mut String, value: &str) {
    line.reserve(value.len() + 2);
    line.push('"');
    line.push_str(value);
    line.push('"');
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::{layer::SubscriberExt, Layer};

    use super::*;

    /// The records `fmt` writes and the ones `AuditLayer` writes are the same but for the time.
    #[test]
    fn audit_lines_keep_the_fmt_layout() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let emit = || {
            tracing::info!(
                target: TARGET,
                decision = "deny",
                reference = "local:a \"quoted\"\n",
                uid = 1000u32,
                "audit"
            );
        };
        let strip_time = |line: &str| line.split_once(['Z']).map(|(_, r)| r.to_owned());
        for json in [false, true] {
            let fmt_out = Buf::default();
            let ours = tempfile::NamedTempFile::new().unwrap();
            let sink = Sink::File(std::sync::Arc::new(AuditFile {
                path: ours.path().to_owned(),
                file: arc_swap::ArcSwap::from_pointee(ours.reopen().unwrap()),
            }));
            let fmt_layer = {
                let out = fmt_out.clone();
                let layer = tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || out.clone());
                if json {
                    layer.json().boxed()
                } else {
                    layer.boxed()
                }
            };
            let subscriber = tracing_subscriber::registry()
                .with(fmt_layer)
                .with(AuditLayer::new(json, sink, AuditHealth::new(false)));
            tracing::subscriber::with_default(subscriber, emit);
            let expected = String::from_utf8(fmt_out.0.lock().unwrap().clone()).unwrap();
            let written = std::fs::read_to_string(ours.path()).unwrap();
            assert_eq!(
                strip_time(&written),
                strip_time(&expected),
                "json={json}\nours: {written}\nfmt:  {expected}"
            );
            assert!(written.ends_with('\n') && written.lines().count() == 1);
        }
    }

    #[test]
    fn write_failures_are_counted_and_recovery_is_noticed() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let full = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .unwrap();
        let file = std::sync::Arc::new(AuditFile {
            path: "/dev/full".into(),
            file: arc_swap::ArcSwap::from_pointee(full),
        });
        let health = AuditHealth::new(true);
        let layer = AuditLayer::new(true, Sink::File(Arc::clone(&file)), Arc::clone(&health));
        let subscriber = tracing_subscriber::registry().with(layer);
        let emit = || tracing::info!(target: TARGET, decision = "allow", "audit");
        tracing::subscriber::with_default(subscriber, || {
            assert!(!health.refuses_requests());
            for _ in 0..3 {
                emit();
            }
            assert_eq!(health.failures(), 3);
            assert!(health.failing() && health.refuses_requests());
            // Space again: the next record is written and the requests flow.
            let ok = tempfile::NamedTempFile::new().unwrap();
            file.file.store(Arc::new(ok.reopen().unwrap()));
            emit();
            assert!(!health.failing() && !health.refuses_requests());
            assert_eq!(health.failures(), 3);
            assert_eq!(
                std::fs::read_to_string(ok.path()).unwrap().lines().count(),
                1
            );
        });
        let open = AuditHealth::new(false);
        open.wrote(Err(std::io::Error::from_raw_os_error(28)));
        assert!(
            open.failing() && !open.refuses_requests(),
            "fail open by default"
        );
    }
}
