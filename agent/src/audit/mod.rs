//! The audit trail: one record per decided operation — who called, what they asked for, the
//! decision and the rule behind it, and how the operation ended; never a value.
//!
//! An operation's record is made by its [`Scope`] (from `Agent::authorize`): exactly once, when
//! the operation finishes, is denied, fails, or is dropped unfinished (`cancelled`). The record is a
//! [`Decided`] event that every [`Observer`] sees: the metrics count it, the [`Trail`] writes it.
//!
//! The trail writes a record as one line, in the layout `tracing_subscriber::fmt` gives an event
//! (text, or JSON with `audit.file`), to the main log's stderr or to `audit.file`. With a journal
//! (`journal.rs`), the line is copied into a shared memory map on the request path — no system
//! call — and a writer thread writes what is pending in batches; see `Trail` for what survives
//! what.

#[allow(unsafe_code)] // a shared memory map; see journal.rs
mod journal;

use std::{
    fmt::Write as _,
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use journal::Journal;
pub(crate) use journal::DEFAULT_CAPACITY as JOURNAL_CAPACITY;

use crate::{
    identity::{Caller, Frontend},
    policy::Operation,
};

/// While audit records cannot be written, a failure is logged at most this often.
pub(crate) const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How a decided operation ended, for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Denied,
    /// Served from the cache without a backend call.
    Hit,
    /// Served after a backend call.
    Miss,
    /// Served past its TTL because the backend was unreachable.
    Stale,
    /// Done (a write or a listing).
    Done,
    /// Allowed, then failed: the gRPC code name says how (`cancelled`: the caller went away).
    Failed(&'static str),
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
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

/// One decided operation, as its observers see it.
pub(crate) struct Decided<'a> {
    pub caller: &'a Caller,
    pub operation: Operation,
    pub reference: &'a str,
    /// The allowing rule; `None`: denied.
    pub rule: Option<&'a str>,
    pub outcome: Outcome,
}

/// Sees every decided operation once.
pub(crate) trait Observer: Send + Sync {
    fn decided(&self, event: &Decided<'_>);
}

/// The observers of decided operations, and where scopes come from.
pub(crate) struct Audit {
    observers: Vec<Arc<dyn Observer>>,
    trail: Arc<Trail>,
}

impl Audit {
    /// `trail` writes the records (it may be [`Trail::off`]); `others` (the metrics) observe
    /// them too.
    pub(crate) fn new(trail: Arc<Trail>, others: Vec<Arc<dyn Observer>>) -> Self {
        let mut observers = others;
        observers.push(Arc::clone(&trail) as Arc<dyn Observer>);
        Self { observers, trail }
    }

    pub(crate) fn trail(&self) -> &Arc<Trail> {
        &self.trail
    }

    /// Records a decision that ends the operation at once: a denial, or a refusal before the
    /// operation began.
    pub(crate) fn record(&self, event: &Decided<'_>) {
        for observer in &self.observers {
            observer.decided(event);
        }
    }

    /// The record of an allowed operation, made when it ends.
    pub(crate) fn scope<'a>(
        &'a self,
        caller: &'a Caller,
        operation: Operation,
        reference: &'a str,
        rule: String,
    ) -> Scope<'a> {
        Scope {
            audit: self,
            caller,
            operation,
            reference,
            rule: Some(rule),
            done: false,
        }
    }

    /// Records a denial of `operation` on `reference`.
    pub(crate) fn deny(&self, caller: &Caller, operation: Operation, reference: &str) {
        self.record(&Decided {
            caller,
            operation,
            reference,
            rule: None,
            outcome: Outcome::Denied,
        });
    }

    /// With `audit.fail_closed`, the trail cannot be written and requests are refused.
    pub(crate) fn refuses_requests(&self) -> bool {
        self.trail.health.refuses_requests()
    }
}

/// An allowed operation under way: recorded exactly once, by `finish` (or `deny`), or — when
/// the operation is dropped before it ends, e.g. the caller went away during a backend read —
/// as `cancelled`.
#[must_use = "an operation is recorded when its scope finishes"]
pub(crate) struct Scope<'a> {
    audit: &'a Audit,
    caller: &'a Caller,
    operation: Operation,
    reference: &'a str,
    rule: Option<String>,
    done: bool,
}

impl Scope<'_> {
    /// Records how the operation ended.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.emit(outcome);
    }

    /// The policy refused after all (the backend named the secret differently, and that name
    /// is not allowed): recorded as a denial, without the rule that allowed the first name.
    pub(crate) fn deny(mut self) {
        self.rule = None;
        self.emit(Outcome::Denied);
    }

    fn emit(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.audit.record(&Decided {
            caller: self.caller,
            operation: self.operation,
            reference: self.reference,
            rule: self.rule.as_deref(),
            outcome,
        });
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        self.emit(Outcome::Failed("cancelled"));
    }
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

impl AuditHealth {
    pub fn new(fail_closed: bool) -> Arc<Self> {
        Arc::new(Self {
            fail_closed,
            failures: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            logged: Mutex::new((None, 0)),
        })
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

/// Where audit lines go.
pub enum Sink {
    /// The main log's output (its format: text or JSON).
    Stderr,
    File(AuditFile),
}

/// `audit.file`, reopened on SIGHUP so logrotate can move it away and the agent starts a new one.
pub struct AuditFile {
    path: PathBuf,
    file: arc_swap::ArcSwap<std::fs::File>,
}

impl AuditFile {
    /// Opens (creating, mode 0640) `path` for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            file: arc_swap::ArcSwap::from_pointee(Self::open_file(path)?),
        })
    }

    fn open_file(path: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }
}

/// How the trail is set up (from `[audit]`, see `Trail::from_config`).
pub struct TrailSettings {
    /// JSON lines, else `fmt`'s text layout.
    pub json: bool,
    pub sink: Sink,
    /// The journal's path; `None`: every record is written on its request's path.
    pub journal: Option<PathBuf>,
    pub journal_capacity: usize,
    /// How long records may wait in the journal while more arrive.
    pub flush_interval: Duration,
    pub fail_closed: bool,
}

/// Writes audit records.
///
/// Durability, by what happens to the agent:
/// - clean stop (SIGTERM/SIGINT) or SIGHUP: every record is in the sink first (`close`, `reopen`);
/// - killed (SIGKILL, abort, OOM kill), with a journal: every record whose response was sent is
///   in the journal's map and is written at the next start, before it serves; records of the
///   last batch before the kill may be written twice (at least once, never lost);
/// - the machine loses power: records not yet written back by the kernel are lost, as for any
///   file written without `fsync` (the sink is not synced either);
/// - `audit.fail_closed`: every record is written to the sink before its response is sent, so
///   a failing sink refuses the next request at once.
///
/// Without a journal (none configured and no socket path to put it beside) every record is
/// written on its request's path, as with `fail_closed`.
pub struct Trail {
    json: bool,
    sink: Option<Sink>,
    journal: Option<Journal>,
    /// Serializes appends to the journal.
    appending: Mutex<()>,
    /// Serializes writes to the sink (and the journal's consumer).
    writing: Mutex<()>,
    /// The writer thread is parked without a deadline: the next record wakes it.
    idle: AtomicBool,
    stop: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    flush_interval: Duration,
    synchronous: bool,
    health: Arc<AuditHealth>,
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl Trail {
    /// No records written (`audit.enabled = false`); decisions are still observed by the others.
    pub fn off() -> Arc<Self> {
        Arc::new(Self::new(false, None, None, Duration::ZERO, false))
    }

    fn new(
        json: bool,
        sink: Option<Sink>,
        journal: Option<Journal>,
        flush_interval: Duration,
        fail_closed: bool,
    ) -> Self {
        Self {
            json,
            sink,
            synchronous: fail_closed || journal.is_none(),
            journal,
            appending: Mutex::new(()),
            writing: Mutex::new(()),
            idle: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            writer: Mutex::new(None),
            flush_interval,
            health: AuditHealth::new(fail_closed),
        }
    }

    /// Opens the journal (writing out what an earlier run left in it) and starts the writer.
    pub fn start(settings: TrailSettings) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context;
        let journal = match &settings.journal {
            Some(path) => Some(
                Journal::open(path, settings.journal_capacity)
                    .with_context(|| format!("opening the audit journal {}", path.display()))?,
            ),
            None => None,
        };
        let trail = Arc::new(Self::new(
            settings.json,
            Some(settings.sink),
            journal,
            settings.flush_interval,
            settings.fail_closed,
        ));
        if let Some(journal) = &trail.journal {
            let left = journal.pending_bytes();
            if left > 0 {
                // Before the first request: the earlier run's records come first.
                trail.flush();
                tracing::warn!(
                    bytes = left,
                    "wrote the audit records an earlier run left in its journal (it did not stop cleanly)"
                );
            }
            let writer = Arc::clone(&trail);
            let handle = std::thread::Builder::new()
                .name("psstd-audit".into())
                .spawn(move || writer.run())
                .context("starting the audit writer thread")?;
            *lock(&trail.writer) = Some(handle);
        }
        Ok(trail)
    }

    pub fn health(&self) -> &Arc<AuditHealth> {
        &self.health
    }

    /// Writes what is pending, stops the writer thread, and leaves the journal empty.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            handle.thread().unpark();
            let _ = handle.join();
        }
        self.flush();
    }

    /// Writes what is pending to the audit file, then opens its path again (a new file if the
    /// old one was moved away); records go there from now on. On error the old file stays in
    /// use. `None`: records do not go to a file.
    pub fn reopen(&self) -> Option<io::Result<()>> {
        let Some(Sink::File(file)) = &self.sink else {
            return None;
        };
        let _writing = lock(&self.writing);
        self.flush_locked();
        Some(AuditFile::open_file(&file.path).map(|f| file.file.store(Arc::new(f))))
    }

    /// Writes what is pending now (while requests are refused for a failing sink). Returns
    /// whether the trail works again.
    pub fn retry(&self) -> bool {
        self.flush();
        !self.health.refuses_requests()
    }

    fn run(&self) {
        loop {
            let wrote = self.flush();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if wrote || self.pending() {
                // Busy (or the sink is failing): the next batch in one interval.
                std::thread::park_timeout(self.flush_interval);
            } else {
                self.idle.store(true, Ordering::SeqCst);
                // A record appended between the check above and this flag would not wake us.
                if !self.pending() && !self.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                self.idle.store(false, Ordering::SeqCst);
            }
        }
    }

    fn pending(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.pending_bytes() > 0)
    }

    /// Writes what the journal holds. Returns whether anything was written.
    fn flush(&self) -> bool {
        let _writing = lock(&self.writing);
        self.flush_locked()
    }

    fn flush_locked(&self) -> bool {
        let (Some(journal), Some(sink)) = (&self.journal, &self.sink) else {
            return false;
        };
        let ([first, second], _) = journal.pending();
        if first.is_empty() {
            return false;
        }
        let mut written = 0u64;
        let mut result = Ok(());
        for part in [first, second] {
            match write_all(sink, part) {
                Ok(()) => written += part.len() as u64,
                Err((n, e)) => {
                    written += n as u64;
                    result = Err(e);
                    break;
                }
            }
        }
        journal.consume(written);
        self.health.wrote(result);
        written > 0
    }

    fn write_line(&self, line: &[u8]) {
        let Some(sink) = &self.sink else { return };
        let Some(journal) = &self.journal else {
            let _writing = lock(&self.writing);
            self.health.wrote(write_all(sink, line).map_err(|(_, e)| e));
            return;
        };
        let appended = {
            let _appending = lock(&self.appending);
            journal.append(line)
        };
        if appended.is_err() {
            // Full: the sink is slower than the requests (or failing). This request writes what
            // is pending, then its own record, in order.
            let _writing = lock(&self.writing);
            self.flush_locked();
            let again = {
                let _appending = lock(&self.appending);
                journal.append(line)
            };
            if again.is_err() {
                // Still full: the sink refuses, or the line is longer than the ring.
                self.health.wrote(write_all(sink, line).map_err(|(_, e)| e));
                return;
            }
        }
        if self.synchronous {
            self.flush();
        } else if self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst) {
            if let Some(handle) = lock(&self.writer).as_ref() {
                handle.thread().unpark();
            }
        }
    }
}

impl Observer for Trail {
    fn decided(&self, event: &Decided<'_>) {
        if self.sink.is_none() {
            return;
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            format_record(line, self.json, SystemTime::now(), event);
            self.write_line(line.as_bytes());
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes all of `bytes`; on error, how many were written before it.
fn write_all(sink: &Sink, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
    match sink {
        Sink::Stderr => write_all_to(&mut io::stderr().lock(), bytes),
        Sink::File(file) => write_all_to(&mut &**file.file.load(), bytes),
    }
}

fn write_all_to(out: &mut impl io::Write, mut bytes: &[u8]) -> Result<(), (usize, io::Error)> {
    let total = bytes.len();
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err((total - bytes.len(), io::ErrorKind::WriteZero.into())),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((total - bytes.len(), e)),
        }
    }
    Ok(())
}

/// A record as `tracing_subscriber::fmt` writes an INFO event of target `audit` with message
/// `audit` and these fields (`Full` text or JSON; the layout test below compares byte for byte):
/// written directly, without an event, a field visitor or `Debug` plumbing — every cached read
/// writes one.
fn format_record(line: &mut String, json: bool, now: SystemTime, event: &Decided<'_>) {
    if json {
        line.push_str("{\"timestamp\":\"");
        push_timestamp(line, now);
        line.push_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"audit\"");
    } else {
        push_timestamp(line, now);
        line.push_str("  INFO audit: audit");
    }
    let mut fields = Fields { line, json };
    let caller = event.caller;
    // The agent's own words (decision, operation, outcome, identity, via) need no escaping.
    let decision = if event.rule.is_some() {
        "allow"
    } else {
        "deny"
    };
    fields.word("decision", decision);
    fields.word("operation", event.operation.as_str());
    fields.str("reference", event.reference);
    fields.str("rule", event.rule.unwrap_or(""));
    fields.word("outcome", event.outcome.as_str());
    fields.num("uid", caller.uid.into());
    fields.num("gid", caller.gid.into());
    fields.num("pid", caller.pid.into());
    fields.str("user", caller.user.as_deref().unwrap_or(""));
    fields.str("executable", caller.executable.as_deref().unwrap_or(""));
    fields.str("container_id", caller.container_id.as_deref().unwrap_or(""));
    fields.str("pod_uid", caller.pod_uid.as_deref().unwrap_or(""));
    fields.str("systemd_unit", caller.systemd_unit.as_deref().unwrap_or(""));
    fields.word("identity", caller.source.as_str());
    let workload = &caller.workload;
    if workload.kubernetes.is_none()
        && workload.ecs.is_none()
        && workload.container.is_none()
        && workload.failures.is_empty()
    {
        // No platform attestor said anything about this caller (the usual case off a cluster):
        // the record leaves the workload fields out rather than write them empty. For the
        // same reason a gRPC record has no `via`: only the HTTP front door's records name it.
        if caller.via != Frontend::Grpc {
            fields.word("via", caller.via.as_str());
        }
    } else {
        let k8s = workload.kubernetes.as_ref();
        fields.word("via", caller.via.as_str());
        fields.str("k8s_namespace", k8s.map_or("", |k| k.namespace.as_str()));
        fields.str(
            "k8s_service_account",
            k8s.map_or("", |k| k.service_account.as_str()),
        );
        fields.str("k8s_pod", k8s.map_or("", |k| k.pod_name.as_str()));
        fields.str(
            "ecs_task",
            workload.ecs.as_ref().map_or("", |e| e.task_arn.as_str()),
        );
        fields.str(
            "container_name",
            workload.container.as_ref().map_or("", |c| c.name.as_str()),
        );
        // Why a platform attribute is missing, so a deny it caused says so.
        fields.str("attestation", &workload.failures.join("; "));
    }
    if json {
        line.push_str("},\"target\":\"audit\"}");
    }
    line.push('\n');
}

thread_local! {
    /// The second a record was last made in, and its RFC 3339 text up to the fraction
    /// (`2026-12-06T11:20:33.`): most records share their second with the one before.
    static SECOND: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// `now` as `humantime::format_rfc3339_micros` writes it (`2026-12-06T11:20:33.123456Z`), the
/// date and time part worked out once a second.
fn push_timestamp(line: &mut String, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != seconds {
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            prefix.clear();
            prefix.push_str(text.trim_end_matches('Z'));
            prefix.push('.');
            *second = seconds;
        }
        line.push_str(prefix);
    });
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(since.subsec_micros());
    for _ in digits.len()..6 {
        line.push('0');
    }
    line.push_str(digits);
    line.push('Z');
}

/// Appends fields after the message: ` name="value"` (escaped as `Debug` escapes) or JSON members.
struct Fields<'a> {
    line: &'a mut String,
    json: bool,
}

impl Fields<'_> {
    fn name(&mut self, name: &str) {
        if self.json {
            self.line.push_str(",\"");
            self.line.push_str(name);
            self.line.push_str("\":");
        } else {
            self.line.push(' ');
            self.line.push_str(name);
            self.line.push('=');
        }
    }

    fn str(&mut self, name: &str, value: &str) {
        self.name(name);
        if needs_no_escape(value) {
            quoted(self.line, value);
        } else if self.json {
            // serde_json's escaping: the same as tracing's JSON layout.
            self.line
                .push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into()));
        } else {
            let _ = write!(self.line, "{value:?}");
        }
    }

    /// A value the agent itself chose, known to need no escaping.
    fn word(&mut self, name: &str, value: &'static str) {
        debug_assert!(needs_no_escape(value));
        self.name(name);
        quoted(self.line, value);
    }

    fn num(&mut self, name: &str, value: i64) {
        self.name(name);
        self.line.push_str(itoa::Buffer::new().format(value));
    }
}

/// Printable ASCII other than `"` and `\`: written as it is between quotes, both by `Debug`
/// (the text layout) and by JSON, so neither escaper needs to run. Almost every field of a
/// record is such a string.
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
    use crate::identity::{Caller, Frontend};

    /// The target named in each record (as if it were a `tracing` event of that target).
    const TARGET: &str = "audit";

    fn caller() -> Caller {
        let mut caller = Caller::uid_only(1000, 1000);
        caller.pid = 4242;
        caller.user = Some("alice".into());
        caller.executable = Some("/usr/bin/app \"quoted\"\n".into());
        caller
    }

    fn event<'a>(caller: &'a Caller, reference: &'a str) -> Decided<'a> {
        Decided {
            caller,
            operation: Operation::Read,
            reference,
            rule: Some("app"),
            outcome: Outcome::Hit,
        }
    }

    fn settings(dir: &Path, interval: Duration, fail_closed: bool) -> TrailSettings {
        TrailSettings {
            json: true,
            sink: Sink::File(AuditFile::open(&dir.join("audit.jsonl")).unwrap()),
            journal: Some(dir.join("journal")),
            journal_capacity: 64 * 1024,
            flush_interval: interval,
            fail_closed,
        }
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The records `fmt` writes for an event with the same fields and ours are the same but
    /// for the time, in both layouts, with and without the workload fields.
    #[test]
    fn records_keep_the_fmt_layout() {
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
        let plain = caller();
        let mut attested = caller();
        attested.via = Frontend::HttpUnix;
        attested.workload.failures = vec!["kubelet: \\timeout\\".into()];
        for (caller, with_workload) in [(&plain, false), (&attested, true)] {
            let emit = || {
                let c = caller;
                macro_rules! ev {
                    ($($extra:tt)*) => {
                        tracing::info!(
                            target: TARGET,
                            decision = "allow",
                            operation = "read",
                            reference = "local:a \"quoted\"\n",
                            rule = "app",
                            outcome = "hit",
                            uid = c.uid,
                            gid = c.gid,
                            pid = c.pid,
                            user = c.user.as_deref().unwrap_or(""),
                            executable = c.executable.as_deref().unwrap_or(""),
                            container_id = "",
                            pod_uid = "",
                            systemd_unit = "",
                            identity = c.source.as_str(),
                            $($extra)*
                            "audit"
                        )
                    };
                }
                if with_workload {
                    ev!(
                        via = "http_unix",
                        k8s_namespace = "",
                        k8s_service_account = "",
                        k8s_pod = "",
                        ecs_task = "",
                        container_name = "",
                        attestation = "kubelet: \\timeout\\",
                    );
                } else {
                    ev!();
                }
            };
            let strip_time = |line: &str| line.split_once('Z').map(|(_, r)| r.to_owned());
            for json in [false, true] {
                let out = Buf::default();
                let layer = {
                    let out = out.clone();
                    let layer = tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(move || out.clone());
                    if json {
                        layer.json().boxed()
                    } else {
                        layer.boxed()
                    }
                };
                let subscriber = tracing_subscriber::registry().with(layer);
                tracing::subscriber::with_default(subscriber, emit);
                let expected = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
                let mut ours = String::new();
                format_record(
                    &mut ours,
                    json,
                    SystemTime::now(),
                    &event(caller, "local:a \"quoted\"\n"),
                );
                assert_eq!(
                    strip_time(&ours),
                    strip_time(&expected),
                    "json={json} workload={with_workload}\nours: {ours}\nfmt:  {expected}"
                );
                assert!(ours.ends_with('\n') && ours.lines().count() == 1);
            }
        }
    }

    #[test]
    fn timestamps_are_written_as_humantime_writes_them() {
        let offsets = [0u64, 1, 999_999, 1_000_000, 59_999_999, 86_400_000_001];
        for offset in offsets.into_iter().chain([1_764_201_600_123_456]) {
            for _ in 0..2 {
                // Twice: the second use of a remembered second must agree too.
                let at = SystemTime::UNIX_EPOCH + Duration::from_micros(offset);
                let mut ours = String::new();
                push_timestamp(&mut ours, at);
                assert_eq!(ours, humantime::format_rfc3339_micros(at).to_string());
            }
        }
    }

    #[test]
    fn records_wait_in_the_journal_and_a_clean_close_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        // An hour's interval: after the first record (which wakes the idle writer) the others
        // stay in the journal until something writes them.
        let trail = Trail::start(settings(dir.path(), Duration::from_secs(3600), false)).unwrap();
        let c = caller();
        // Let the writer find nothing and park: the first record then wakes it (once).
        std::thread::sleep(Duration::from_millis(100));
        trail.decided(&event(&c, "local:first"));
        let waited = Instant::now();
        while lines(dir.path()).is_empty() {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "the idle writer was not woken"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in 0..20 {
            trail.decided(&event(&c, &format!("local:s{i}")));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            lines(dir.path()).len(),
            1,
            "the records are batched, not yet written"
        );
        trail.close();
        let written = lines(dir.path());
        assert_eq!(written.len(), 21);
        assert!(
            written[20].contains("\"reference\":\"local:s19\""),
            "in order"
        );
    }

    #[test]
    fn a_full_journal_makes_the_request_write_what_is_pending_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = settings(dir.path(), Duration::from_secs(3600), false);
        small.journal_capacity = 1024;
        let trail = Trail::start(small).unwrap();
        let c = caller();
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..30 {
            trail.decided(&event(&c, &format!("local:s{i:02}")));
        }
        let before_close = lines(dir.path()).len();
        assert!(
            (3..30).contains(&before_close),
            "written by the requests that found the ring full: {before_close}"
        );
        trail.close();
        let written = lines(dir.path());
        assert_eq!(written.len(), 30);
        for (i, line) in written.iter().enumerate() {
            assert!(line.contains(&format!("\"local:s{i:02}\"")), "{i}: {line}");
        }
    }

    #[test]
    fn records_left_in_the_journal_by_a_killed_agent_are_written_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let trail = Trail::start(settings(dir.path(), Duration::from_secs(3600), false)).unwrap();
        let c = caller();
        // Let the writer find nothing and park: the first record then wakes it (once).
        std::thread::sleep(Duration::from_millis(100));
        trail.decided(&event(&c, "local:first"));
        while lines(dir.path()).is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in 0..5 {
            trail.decided(&event(&c, &format!("local:s{i}")));
        }
        // What SIGKILL leaves: no close, the map's pages with the kernel. A thread cannot be
        // killed here, so the trail is forgotten (its writer parked for an hour, its journal
        // still locked) and the next start opens a copy of the journal file as it is now.
        std::mem::forget(trail);
        assert_eq!(lines(dir.path()).len(), 1);
        let journal = dir.path().join("journal");
        let copy = dir.path().join("journal.copy");
        std::fs::copy(&journal, &copy).unwrap();
        let mut next = settings(dir.path(), Duration::from_secs(3600), false);
        next.journal = Some(copy);
        let again = Trail::start(next).unwrap();
        let written = lines(dir.path());
        assert_eq!(written.len(), 6, "{written:#?}");
        assert!(written[5].contains("local:s4"));
        again.close();
        assert_eq!(
            lines(dir.path()).len(),
            6,
            "nothing written twice after a clean close"
        );
    }

    #[test]
    fn write_failures_are_counted_and_with_fail_closed_noticed_at_once() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let dir = tempfile::tempdir().unwrap();
        let mut full = settings(dir.path(), Duration::from_secs(3600), true);
        full.sink = Sink::File(AuditFile::open(Path::new("/dev/full")).unwrap());
        let trail = Trail::start(full).unwrap();
        let health = Arc::clone(trail.health());
        let c = caller();
        assert!(!health.refuses_requests());
        for i in 0..3 {
            trail.decided(&event(&c, &format!("local:s{i}")));
        }
        assert!(health.failures() >= 3, "{}", health.failures());
        assert!(health.failing() && health.refuses_requests());
        // Space again: the records kept in the journal are written with the next one.
        let Some(Sink::File(file)) = &trail.sink else {
            unreachable!()
        };
        file.file.store(Arc::new(
            AuditFile::open_file(&dir.path().join("audit.jsonl")).unwrap(),
        ));
        trail.decided(&event(&c, "local:again"));
        assert!(!health.failing() && !health.refuses_requests());
        assert_eq!(
            lines(dir.path()).len(),
            4,
            "none lost while the disk was full"
        );
        trail.close();

        let open = AuditHealth::new(false);
        open.wrote(Err(std::io::Error::from_raw_os_error(28)));
        assert!(
            open.failing() && !open.refuses_requests(),
            "fail open by default"
        );
    }

    #[test]
    fn a_scope_records_exactly_once() {
        #[derive(Default)]
        struct Seen(Mutex<Vec<(String, Option<String>, &'static str)>>);
        impl Observer for Seen {
            fn decided(&self, e: &Decided<'_>) {
                self.0.lock().unwrap().push((
                    e.reference.to_owned(),
                    e.rule.map(str::to_owned),
                    e.outcome.as_str(),
                ));
            }
        }
        let seen = Arc::new(Seen::default());
        let audit = Audit::new(Trail::off(), vec![Arc::clone(&seen) as Arc<dyn Observer>]);
        let c = caller();
        audit
            .scope(&c, Operation::Read, "local:a", "r".into())
            .finish(Outcome::Hit);
        drop(audit.scope(&c, Operation::Read, "local:b", "r".into()));
        audit
            .scope(&c, Operation::Read, "local:c", "r".into())
            .deny();
        audit.deny(&c, Operation::Read, "local:d");
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                ("local:a".into(), Some("r".into()), "hit"),
                ("local:b".into(), Some("r".into()), "cancelled"),
                ("local:c".into(), None, "denied"),
                ("local:d".into(), None, "denied"),
            ]
        );
    }
}
