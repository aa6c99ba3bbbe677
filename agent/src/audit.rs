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
    let k8s = caller.workload.kubernetes.as_ref();
    // Why a platform attribute is missing, so a deny it caused says so.
    let attestation = caller.workload.failures.join("; ");
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
        k8s_namespace = k8s.map_or("", |k| k.namespace.as_str()),
        k8s_service_account = k8s.map_or("", |k| k.service_account.as_str()),
        k8s_pod = k8s.map_or("", |k| k.pod_name.as_str()),
        ecs_task = caller.workload.ecs.as_ref().map_or("", |e| e.task_arn.as_str()),
        container_name = caller.workload.container.as_ref().map_or("", |c| c.name.as_str()),
        attestation = attestation.as_str(),
        "audit"
    );
}

/// Writes audit records, one line each, in the layout `tracing_subscriber::fmt` gives them
/// (`Full` text or JSON), without its general-purpose formatting machinery: every `GetSecret`
/// writes one, and `fmt`'s field visitor, styling and `Debug` plumbing cost about 22k
/// instructions a record — a third of the whole request (`bench/callgrind`).
pub struct AuditLayer {
    json: bool,
    sink: Sink,
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
    pub fn new(json: bool, sink: Sink) -> Self {
        Self { json, sink }
    }

    fn write(&self, line: &[u8]) {
        use std::io::Write;
        let _ = match &self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line),
            Sink::File(file) => (&**file.file.load()).write_all(line),
        };
    }
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuditLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        LINE.with_borrow_mut(|line| {
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
            self.write(line.as_bytes());
        });
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
        if self.json {
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
    // serde_json's escaping: the same as tracing's JSON layout.
    line.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into()));
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
                .with(AuditLayer::new(json, sink));
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
}
