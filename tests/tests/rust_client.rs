//! End to end: the Rust client (`clients/rust`) against the real `psstd` — shared across tasks,
//! deadlines, calls retried while the agent restarts, the watch stream across a long outage, and
//! `Source`. Runs as root, like the other suites.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use psst_client::{
    proto::watch_event::Kind, Client, Code, ConnectOptions, ErrorKind, Source, SourceStatus,
};
use psst_tests::{Agent, Mode};

const ROOT_ALL: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["*:**"], list = ["*:**"], write = ["*:**"], watch = ["*:**"] }
"#;

fn agent() -> Agent {
    let config = "[watch]\ninterval = \"200ms\"\njitter = 0.0\n[server]\nsocket = \"{dir}/psst.sock\"\ngrace_period = \"1s\"\n\
                  [policy]\nfile = \"{dir}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{dir}/store\"\n";
    Agent::start(
        Mode::Config {
            config,
            policy: ROOT_ALL,
        },
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_serves_many_tasks_through_shared_references() {
    let agent = agent();
    let client = Arc::new(agent.client().await);
    client.put("local:app/shared", b"v").await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                if i % 2 == 0 {
                    client
                        .get("local:app/shared")
                        .await
                        .map(|s| s.value().to_vec())
                } else {
                    // A clone shares the connection.
                    let clone = (*client).clone();
                    clone
                        .get("local:app/shared")
                        .await
                        .map(|s| s.value().to_vec())
                }
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), b"v");
    }
    let who = client.whoami().await.unwrap();
    assert_eq!(who.caller.uid, 0);
    assert_eq!(who.matched_rules, ["root"]);
    assert!(who.grants.iter().any(|g| g.operation == "read"));
}

#[test]
fn a_call_made_while_the_agent_restarts_waits_for_it_within_the_deadline() {
    let mut agent = agent();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(agent.client());
    runtime.block_on(client.put("local:app/r", b"1")).unwrap();
    // Down for a second; a get issued meanwhile never reached the agent, so it is retried.
    std::thread::scope(|scope| {
        let restart = scope.spawn(|| agent.restart_after(Duration::from_millis(1500)));
        std::thread::sleep(Duration::from_millis(700));
        let started = Instant::now();
        let got = runtime.block_on(client.get("local:app/r"));
        restart.join().unwrap();
        assert_eq!(got.expect("retried until the agent was back").value(), b"1");
        assert!(started.elapsed() < psst_client::DEFAULT_CALL_TIMEOUT);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_runs_into_the_deadline() {
    // A root-owned socket served by root (the check passes) that accepts and never answers.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.push(stream);
        }
    });
    let options = ConnectOptions {
        call_timeout: Duration::from_millis(500),
        ..ConnectOptions::new(&socket)
    };
    let client = Client::connect_with(&options).await.unwrap();
    let started = Instant::now();
    let err = client.get("local:app/x").await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

#[test]
fn a_watch_stream_reports_a_long_outage_and_resumes_after_it() {
    let mut agent = agent();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(agent.client());
    runtime.block_on(client.put("local:app/w", b"1")).unwrap();
    let mut watch = client.watch(&["local:app/w"]);
    let first = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), watch.next()).await })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, Kind::Current);

    // Longer than the report threshold (5s): one status item, then the stream goes on.
    let collected = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            runtime.block_on(async {
                let mut items = Vec::new();
                while let Ok(Some(item)) =
                    tokio::time::timeout(Duration::from_secs(30), watch.next()).await
                {
                    let done = matches!(&item, Ok(e) if e.kind == Kind::NewVersion);
                    items.push(item);
                    if done {
                        break;
                    }
                }
                items
            })
        });
        agent.restart_after(Duration::from_secs(7));
        let writer = runtime.block_on(agent.client());
        runtime.block_on(writer.put("local:app/w", b"2")).unwrap();
        watcher.join().unwrap()
    });
    let statuses = collected.iter().filter(|i| i.is_err()).count();
    assert_eq!(statuses, 1, "{collected:?}");
    let err = collected.iter().find_map(|i| i.as_ref().err()).unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("still reconnecting"), "{err}");
    let last = collected.last().unwrap().as_ref().unwrap();
    assert_eq!(
        (last.kind, last.secret.as_ref().unwrap().value()),
        (Kind::NewVersion, &b"2"[..])
    );
    // Version 1 was not delivered again on reconnecting.
    assert_eq!(collected.iter().filter(|i| i.is_ok()).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_keeps_the_current_value_and_streams_updates() {
    let agent = agent();
    let client = agent.client().await;
    client.put("local:app/s", b"one").await.unwrap();
    let source = Source::new(&client, "local:app/s").await.unwrap();
    assert_eq!(source.get().value(), b"one");
    assert_eq!(source.status(), SourceStatus::Current);
    let mut updates = Box::pin(source.updates());
    let shared = Arc::clone(&source);
    let reader = tokio::spawn(async move { shared.get().value().to_vec() });
    assert_eq!(reader.await.unwrap(), b"one");

    client.put("local:app/s", b"two").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), updates.next())
        .await
        .expect("an update")
        .unwrap();
    assert_eq!(next.value(), b"two");
    assert_eq!(source.get().value(), b"two");
    assert!(!format!("{source:?}").contains("two"), "Debug redacts");

    // Denied from the start: an error, not a source without a value.
    let err = Source::new(&client, "nope:x").await.unwrap_err();
    assert_ne!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_keeps_the_last_good_value_while_the_agent_is_gone() {
    let mut agent = agent();
    let client = agent.client().await;
    client.put("local:app/k", b"kept").await.unwrap();
    let source = Source::new(&client, "local:app/k").await.unwrap();
    let stopped = tokio::task::spawn_blocking(move || {
        agent.stop();
        agent
    })
    .await
    .unwrap();
    // The watch reports an outage once it has lasted 5s, at its next attempt (backoff).
    let reported = Instant::now() + Duration::from_secs(15);
    while !matches!(source.status(), SourceStatus::Unreachable(_)) && Instant::now() < reported {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(source.get().value(), b"kept");
    assert!(
        matches!(source.status(), SourceStatus::Unreachable(_)),
        "{:?}",
        source.status()
    );
    drop(stopped);
}
