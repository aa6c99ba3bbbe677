use super::*;
use crate::{
    backend::memory::MemoryBackend, cache::CacheSettings, identity::IdentitySource, policy::Policy,
};

fn caller(uid: u32) -> Caller {
    let mut c = Caller::uid_only(uid, uid);
    c.pid = 10;
    c.source = IdentitySource::Process;
    c
}

const POLICY: &str = r#"
[[rule]]
name = "app"
caller = { uid = [1000] }
allow = { read = ["local:app/**", "sm:app/**"], list = ["local:app/**"], write = ["local:app/**"] }
"#;

fn agent_with(backend: &MemoryBackend) -> Agent {
    let mut backends = Backends::default();
    backends.insert(Arc::new(backend.clone()), DEFAULT_TTL);
    let policy = Arc::new(PolicySource::fixed(
        Policy::from_toml(POLICY, "test").unwrap(),
    ));
    let cache = SecretCache::new(CacheSettings {
        max_bytes: 1 << 20,
        negative_ttl: Duration::from_secs(5),
        max_stale: Duration::ZERO,
        ttl_jitter: 0.0,
        stale_deadline: crate::config::DEFAULT_STALE_DEADLINE,
    });
    let watch = crate::rotation::WatchSettings {
        interval: Duration::from_secs(60),
        jitter: 0.0,
        feed: None,
    };
    Agent::new(
        backends,
        policy,
        cache,
        Limits::default(),
        watch,
        crate::audit::Trail::off(),
    )
}

#[tokio::test]
async fn policy_is_checked_before_the_cache_and_the_backend() {
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    backend.insert("app/db", b"v");
    let agent = agent_with(&backend);
    let stranger = caller(2000);
    let exists = agent.get(&stranger, "local:app/db").await.unwrap_err();
    let missing = agent.get(&stranger, "local:app/nope").await.unwrap_err();
    assert!(matches!(exists, Error::PermissionDenied(_)));
    // Same code and same shape of message: a denied caller learns nothing about existence.
    assert_eq!(
        exists.to_string().replace("db", "X"),
        missing.to_string().replace("nope", "X")
    );
    assert_eq!(
        backend.fetches(),
        0,
        "a denied request never reaches the backend"
    );

    // Cached values are not served to denied callers either.
    agent.get(&caller(1000), "local:app/db").await.unwrap();
    assert!(matches!(
        agent.get(&stranger, "local:app/db").await,
        Err(Error::PermissionDenied(_))
    ));
}

#[tokio::test]
async fn gets_with_versions_and_keys() {
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    backend.insert(
        "app/db",
        br#"{"user":"admin","password":"s3cr\"et","port":5432}"#,
    );
    backend.insert("app/db", b"not json");
    let agent = agent_with(&backend);
    let me = caller(1000);
    let v1 = agent
        .get(&me, "local:app/db?version=1#password")
        .await
        .unwrap();
    assert_eq!(v1.value.expose(), b"s3cr\"et");
    assert_eq!(v1.secret.version_id, "1");
    let port = agent.get(&me, "local:app/db?version=1#port").await.unwrap();
    assert_eq!(port.value.expose(), b"5432");
    assert!(port.hit, "keys of one version share a cache entry");
    let missing_key = agent
        .get(&me, "local:app/db?version=1#nope")
        .await
        .unwrap_err();
    assert_eq!(
        missing_key,
        Error::NotFound("key 'nope' not found in local:app/db?version=1".into())
    );
    let not_json = agent.get(&me, "local:app/db#password").await.unwrap_err();
    assert!(
        matches!(&not_json, Error::InvalidArgument(m) if m.contains("not a JSON object")),
        "{not_json}"
    );
    assert!(
        !not_json.to_string().contains("not json"),
        "the value is not echoed"
    );
}

#[tokio::test]
async fn malformed_and_unconfigured() {
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    let agent = agent_with(&backend);
    let me = caller(1000);
    assert!(matches!(
        agent.get(&me, "nonsense").await,
        Err(Error::InvalidArgument(_))
    ));
    let err = agent.get(&me, "sm:app/db").await.unwrap_err();
    assert!(
        matches!(&err, Error::FailedPrecondition(m) if m.contains("sm backend is not enabled")),
        "{err}"
    );
}

#[tokio::test]
async fn put_writes_a_version_and_the_next_get_sees_it() {
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    backend.insert("app/key", b"old");
    let agent = agent_with(&backend);
    let me = caller(1000);
    assert_eq!(
        agent
            .get(&me, "local:app/key")
            .await
            .unwrap()
            .value
            .expose(),
        b"old"
    );
    let (reference, written) = agent
        .put(&me, "local:app/key", SecretValue::from_slice(b"new"))
        .await
        .unwrap();
    assert_eq!(reference.to_string(), "local:app/key?version=2");
    assert_eq!(written.version_id, "2");
    assert_eq!(
        agent
            .get(&me, "local:app/key")
            .await
            .unwrap()
            .value
            .expose(),
        b"new"
    );

    for (text, value, says) in [
        ("local:app/key?version=1", &b"x"[..], "must not have"),
        ("local:app/key#k", b"x", "must not have"),
        ("local:app/key", b"", "empty value"),
    ] {
        let err = agent
            .put(&me, text, SecretValue::from_slice(value))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains(says)),
            "{text}: {err}"
        );
    }
    let big = SecretValue::new(vec![b'x'; DEFAULT_MAX_VALUE_BYTES + 1]);
    assert!(matches!(
        agent.put(&me, "local:app/key", big).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        agent
            .put(
                &caller(2000),
                "local:app/key",
                SecretValue::from_slice(b"x")
            )
            .await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        agent
            .put(&me, "local:other", SecretValue::from_slice(b"x"))
            .await,
        Err(Error::PermissionDenied(_))
    ));
}

#[tokio::test]
async fn list_shows_only_listable_names() {
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    for name in ["app/a", "app/b", "other/c"] {
        backend.insert(name, b"v");
    }
    let agent = agent_with(&backend);
    let listed = agent.list(&caller(1000), "local:").await.unwrap();
    let refs: Vec<_> = listed.iter().map(|l| l.reference.as_str()).collect();
    assert_eq!(refs, ["local:app/a", "local:app/b"]);
    assert!(matches!(
        agent.list(&caller(2000), "local:").await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        agent.list(&caller(1000), "nope").await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn batch_results_fail_one_by_one() {
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    backend.insert("app/a", b"A");
    let agent = agent_with(&backend);
    let refs: Vec<String> = [
        "local:app/a",
        "local:app/missing",
        "bad ref",
        "local:secret-of-others",
    ]
    .map(String::from)
    .to_vec();
    let results = agent.batch_get(&caller(1000), &refs).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap().value.expose(), b"A");
    assert!(matches!(results[1], Err(Error::NotFound(_))));
    assert!(matches!(results[2], Err(Error::InvalidArgument(_))));
    assert!(matches!(results[3], Err(Error::PermissionDenied(_))));
    let too_many = vec!["local:app/a".to_owned(); DEFAULT_MAX_BATCH + 1];
    assert!(matches!(
        agent.batch_get(&caller(1000), &too_many).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// A cached read is answered inline by the connection's task (`agent/src/server/mod.rs`), and its
/// future is moved into place and, being freed, wiped by the zeroing allocator
/// (`agent/src/main.rs`): both cost in proportion to its size. The miss path is boxed and the
/// cache lookup is a plain call, which keeps it well under this bound (an async lookup or an
/// inlined miss path doubles it; BENCHMARKS.md has what that costs).
#[test]
fn a_cached_read_keeps_a_small_future() {
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    let agent = agent_with(&backend);
    let caller = caller(1000);
    let read = agent.get(&caller, "local:app/db");
    let size = std::mem::size_of_val(&read);
    assert!(size <= 800, "Agent::get's future is {size} bytes");
}

/// Every operation is recorded exactly once, with how it ended: hits, misses, denials, failures,
/// each item of a batch, and a read whose caller went away while the backend was being asked.
#[tokio::test]
async fn every_operation_is_recorded_once_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let trail = crate::audit::Trail::start(crate::audit::TrailSettings {
        json: true,
        sink: crate::audit::Sink::File(
            crate::audit::AuditFile::open(&dir.path().join("audit.jsonl")).unwrap(),
        ),
        journal: Some(dir.path().join("journal")),
        journal_capacity: 64 * 1024,
        flush_interval: Duration::from_millis(1),
        fail_closed: false,
    })
    .unwrap();
    let backend = MemoryBackend::new(crate::backend::local::KIND);
    backend.insert("app/db", b"v");
    backend.insert("app/slow", b"v");
    let mut agent = agent_with(&backend);
    agent.audit = Audit::new(
        Arc::clone(&trail),
        vec![Arc::clone(&agent.metrics) as Arc<dyn Observer>],
    );
    let me = caller(1000);
    agent.get(&me, "local:app/db").await.unwrap();
    agent.get(&me, "local:app/db").await.unwrap();
    agent.get(&caller(2000), "local:app/db").await.unwrap_err();
    agent.get(&me, "local:app/db#nokey").await.unwrap_err();
    let batch = ["local:app/db", "local:app/none", "bad ref", "local:other"].map(String::from);
    agent.batch_get(&me, &batch).await.unwrap();
    agent
        .put(&me, "local:app/new", SecretValue::from_slice(b"n"))
        .await
        .unwrap();
    agent.list(&me, "local:app/").await.unwrap();
    // A read that waits for the backend, dropped (the caller hung up) before it is answered.
    let _gate = backend.hold_fetches();
    let read = agent.get(&me, "local:app/slow");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), read)
            .await
            .is_err(),
        "the backend is held"
    );
    trail.close();

    let records: Vec<(String, String, String)> =
        std::fs::read_to_string(dir.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let f = &v["fields"];
                let s = |k: &str| f[k].as_str().unwrap().to_owned();
                (s("operation"), s("reference"), s("outcome"))
            })
            .collect();
    let expected = [
        ("read", "local:app/db", "miss"),
        ("read", "local:app/db", "hit"),
        ("read", "local:app/db", "denied"),
        ("read", "local:app/db#nokey", "invalid_argument"),
        ("read", "local:other", "denied"),
        ("read", "local:app/db", "hit"),
        ("read", "local:app/none", "not_found"),
        ("write", "local:app/new", "done"),
        ("list", "local:app/", "done"),
        ("read", "local:app/slow", "cancelled"),
    ]
    .map(|(o, r, out)| (o.to_owned(), r.to_owned(), out.to_owned()));
    assert_eq!(records, expected);
    let decisions = agent.metrics.render();
    assert!(
        decisions.contains("psst_policy_decisions_total{operation=\"read\",decision=\"allow\"} 6"),
        "the metrics saw the same decisions:\n{decisions}"
    );
}
