//! End to end: rotation detected and pushed to watchers, rotation through the agent, generated
//! values, and the Admin service — the real `psstd`, the local store and moto.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use nix::sys::signal::Signal;
use psst_client::{
    proto::{self as pb, watch_event::Kind},
    Client, Code, WatchEvent,
};
use psst_tests::{
    aws::{free_port, FaultProxy, Moto, AWS_ENV},
    next_event as next, sample, scrape, Agent, Mode,
};

const EVERYTHING: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["*:**"], list = ["*:**"], write = ["*:**"], watch = ["*:**"], rotate = ["*:**"], admin = ["*:**"] }
"#;

/// An agent with the local store and, when given, `ssm`/`sm` through `proxy`; watch interval
/// `interval`.
fn agent(interval: &str, proxy: Option<&FaultProxy>, policy: &str) -> Agent {
    agent_with(interval, proxy, policy, "")
}

/// `agent`, with more config sections (`extra`).
fn agent_with(interval: &str, proxy: Option<&FaultProxy>, policy: &str, extra: &str) -> Agent {
    let aws = proxy.map_or(String::new(), |p| {
        ["ssm", "sm"]
            .map(|kind| {
                format!(
                    "[[backend]]\ntype = \"{kind}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
                    p.endpoint()
                )
            })
            .concat()
    });
    // One uid opens a thousand watch streams on one connection in the cost tests below: its
    // per-uid share of requests in flight and the streams per connection are raised for them
    // (tests/tests/hardening.rs shows the defaults refusing such a load from an attacker).
    let config = format!(
        "[limits]\nrequests_in_flight_per_uid = 4096\n[connections]\nmax_streams = 2048\n\
         [watch]\ninterval = \"{interval}\"\njitter = 0.2\n[server]\nsocket = \"{{dir}}/psst.sock\"\ngrace_period = \"2s\"\n\
         [policy]\nfile = \"{{dir}}/policy.toml\"\nwatch_interval = \"200ms\"\n\
         [[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n{aws}{extra}"
    );
    Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &AWS_ENV,
    )
}

fn version(event: &WatchEvent) -> &str {
    &event.secret.as_ref().expect("a secret").version_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_rotations_made_outside_the_agent() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let agent = agent("500ms", Some(&proxy), EVERYTHING);
    let v1 = moto.boto3("print(sm.create_secret(Name='app/db', SecretString='{\"password\": \"one\"}')['VersionId'])");
    moto.boto3("ssm.put_parameter(Name='/app/key', Value='k1', Type='SecureString')");
    let client = agent.client().await;
    let mut sm_watch = client.watch(&["sm:app/db#password"]);
    let mut ssm_watch = client.watch(&["ssm:/app/key"]);
    // Slack for the poll interval (500ms, up to 20% shorter), a fetch, and a loaded machine.
    let within = Duration::from_secs(4);

    let current = next(&mut sm_watch, within).await;
    assert_eq!(current.kind, Kind::Current);
    assert_eq!(version(&current), v1.trim());
    assert_eq!(current.secret.as_ref().unwrap().value(), b"one");

    let v2 = moto.boto3("print(sm.put_secret_value(SecretId='app/db', SecretString='{\"password\": \"two\"}')['VersionId'])");
    let rotated = next(&mut sm_watch, within).await;
    assert_eq!(rotated.kind, Kind::NewVersion);
    assert_eq!(
        (version(&rotated), rotated.previous_version_id.as_str()),
        (v2.trim(), v1.trim())
    );
    assert_eq!(
        rotated.secret.as_ref().unwrap().value(),
        b"two",
        "the #password key of the new value"
    );

    // A version staged AWSPENDING: the rotation window.
    let pending = moto.boto3(
        "print(sm.put_secret_value(SecretId='app/db', SecretString='{\"password\": \"three\"}', VersionStages=['AWSPENDING'])['VersionId'])",
    );
    let staged = next(&mut sm_watch, within).await;
    assert_eq!(staged.kind, Kind::PendingVersion);
    assert_eq!(staged.pending_version_id, pending.trim());

    // Moving AWSCURRENT back to v1 by hand is a change of current version too.
    moto.boto3(&format!(
        "sm.update_secret_version_stage(SecretId='app/db', VersionStage='AWSCURRENT', MoveToVersionId='{}', RemoveFromVersionId='{}')",
        v1.trim(),
        v2.trim()
    ));
    let back = next(&mut sm_watch, within).await;
    assert_eq!(back.kind, Kind::NewVersion);
    assert_eq!(
        (version(&back), back.previous_version_id.as_str()),
        (v1.trim(), v2.trim())
    );

    let first = next(&mut ssm_watch, within).await;
    assert_eq!((first.kind, version(&first)), (Kind::Current, "1"));
    moto.boto3(
        "ssm.put_parameter(Name='/app/key', Value='k2', Type='SecureString', Overwrite=True)",
    );
    let second = next(&mut ssm_watch, within).await;
    assert_eq!(
        (
            second.kind,
            version(&second),
            second.previous_version_id.as_str()
        ),
        (Kind::NewVersion, "2", "1")
    );
    assert_eq!(second.secret.as_ref().unwrap().value(), b"k2");

    // Readers of the cache got the new value too (the poller refreshed it).
    let reader = agent.client().await;
    assert_eq!(reader.get("ssm:/app/key").await.unwrap().value(), b"k2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_cost_one_poll_per_interval() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let agent = agent("1s", Some(&proxy), EVERYTHING);
    moto.boto3("sm.create_secret(Name='popular', SecretString='v')");
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(agent.client().await);
    }
    let mut watches = Vec::new();
    for i in 0..1000 {
        let mut watch = clients[i % 10].watch(&["sm:popular"]);
        let first = next(&mut watch, Duration::from_secs(20)).await;
        assert_eq!(first.kind, Kind::Current);
        watches.push(watch);
    }
    let before = proxy.count("secretsmanager.DescribeSecret");
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let polls = proxy.count("secretsmanager.DescribeSecret") - before;
    let elapsed = started.elapsed().as_secs_f64();
    // One poll per interval (1s, jittered down by up to 20%) for all 1000 watchers.
    let most = (elapsed / 0.8).ceil() as usize + 1;
    println!("1000 watchers, 1s interval: {polls} DescribeSecret calls in {elapsed:.2}s");
    assert!(
        (3..=most).contains(&polls),
        "{polls} DescribeSecret calls in {elapsed:.1}s for 1000 watchers"
    );
    assert_eq!(
        proxy.count("secretsmanager.GetSecretValue"),
        1,
        "one read for everyone"
    );
    let stats = clients[0].stats().await.unwrap();
    assert_eq!(stats.watchers, 1000);
    drop(watches);
}

/// Issue 19: with 10,000 watchers open the agent's memory grew with every rotation and stayed up
/// after every watcher closed. Here nine rounds each open 1,000 watches (10 connections), rotate
/// the secret three times and close every watch while the connections stay open; then the
/// connections close. The agent's live heap (the allocator's own count,
/// `psst_heap_in_use_bytes`, which allocator retention does not move) must not grow per rotation
/// nor over the last rounds, it must count no watcher and no polled secret after each round,
/// and with the connections gone both the heap and RSS must be back near where they started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_watches_leave_no_state_and_rotations_do_not_grow_the_heap() {
    const WATCHES: usize = 1000;
    const ROUNDS: usize = 9;
    const ROTATIONS: usize = 3;
    let port = free_port();
    let agent = agent_with(
        "200ms",
        None,
        EVERYTHING,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let heap = || sample(&scrape(port), "psst_heap_in_use_bytes");
    let pid = agent.pid();
    let rss = move || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
            * 1024.0
    };
    let kib = |bytes: f64| (bytes / 1024.0).round();
    let writer = agent.client().await;
    writer.put("local:leak/s", b"v0").await.unwrap();
    writer.get("local:leak/s").await.unwrap();
    let start = heap();
    let start_rss = rss();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(agent.client().await);
    }
    // Events seen by each watch: every watch must see each version (a watch that reconnects
    // on a loaded machine may see the current one twice, which must not stand in for another
    // watch's missing event).
    let seen: Arc<Vec<AtomicUsize>> = Arc::new((0..WATCHES).map(|_| AtomicUsize::new(0)).collect());
    let all_seen = |events: usize| {
        let seen = Arc::clone(&seen);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let behind = || {
                seen.iter()
                    .filter(|n| n.load(Ordering::Relaxed) < events)
                    .count()
            };
            while behind() > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} of {WATCHES} watches saw fewer than {events} events",
                    behind()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut version = 0;
    let mut after_round = Vec::new();
    for round in 0..ROUNDS {
        for n in seen.iter() {
            n.store(0, Ordering::Relaxed);
        }
        let mut readers = Vec::new();
        for i in 0..WATCHES {
            let mut watch = clients[i % clients.len()].watch(&["local:leak/s"]);
            let seen = Arc::clone(&seen);
            readers.push(tokio::spawn(async move {
                while let Some(Ok(_)) = watch.next().await {
                    seen[i].fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        all_seen(1).await;
        let mut after_rotation = vec![heap()];
        let mut rss_after_rotation = vec![rss()];
        for r in 1..=ROTATIONS {
            version += 1;
            writer
                .put("local:leak/s", format!("v{version}").as_bytes())
                .await
                .unwrap();
            all_seen(r + 1).await;
            after_rotation.push(heap());
            rss_after_rotation.push(rss());
        }
        let open = scrape(port);
        assert_eq!(sample(&open, "psst_watchers"), WATCHES as f64);
        assert_eq!(sample(&open, "psst_watched_secrets"), 1.0);
        // The watches close; their connections stay open.
        for reader in &readers {
            reader.abort();
        }
        for reader in readers {
            let _ = reader.await;
        }
        let gone = psst_tests::eventually(Duration::from_secs(10), || {
            let text = scrape(port);
            sample(&text, "psst_watchers") == 0.0 && sample(&text, "psst_watched_secrets") == 0.0
        });
        let text = scrape(port);
        assert!(
            gone,
            "round {round}: {} watchers and {} polled secrets left after every watch closed",
            sample(&text, "psst_watchers"),
            sample(&text, "psst_watched_secrets")
        );
        after_round.push(heap());
        println!(
            "round {round}: heap in use {} KiB with the watches open, after each rotation {:?} KiB, {} KiB after they closed; RSS {:?} KiB",
            kib(after_rotation[0]),
            after_rotation[1..].iter().map(|&h| kib(h)).collect::<Vec<_>>(),
            kib(after_round[round]),
            rss_after_rotation.iter().map(|&h| kib(h)).collect::<Vec<_>>(),
        );
        // Each rotation sends 1,000 events of ~100 bytes: memory kept per event and watcher is
        // 100 KiB a rotation. The first rounds also grow the connections' pools (h2's frame
        // buffers); a leak per event shows in every round.
        let heap_growth = after_rotation[ROTATIONS] - after_rotation[0];
        assert!(
            round < 2 || heap_growth < 64.0 * 1024.0,
            "round {round}: the heap grew {} KiB over {ROTATIONS} rotations with the watches open",
            kib(heap_growth)
        );
    }
    // What one round of 1,000 watches left behind (connection-level pools: h2's stream slab, its
    // frame buffers; the allocator's per-thread caches, which it counts as in use) the next
    // rounds reuse: they grow in steps over the first rounds, then stay. State kept per watch
    // (128 bytes or more) would grow the last four rounds by 500 KiB or more.
    let growth = after_round[ROUNDS - 1] - after_round[ROUNDS - 5];
    assert!(
        growth < 500.0 * 1024.0,
        "the heap grew {} KiB over the last four rounds (1,000 watches opened and closed each): {:?} KiB",
        kib(growth),
        after_round.iter().map(|&h| kib(h)).collect::<Vec<_>>()
    );
    // 9,000 watches came and went: one leaked object of 64 bytes each is 560 KiB more here.
    drop(clients);
    let mut end = heap();
    let back = psst_tests::eventually(Duration::from_secs(10), || {
        end = heap();
        end - start < 512.0 * 1024.0
    });
    let mut end_rss = rss();
    let rss_back = psst_tests::eventually(Duration::from_secs(12), || {
        end_rss = rss();
        end_rss - start_rss < 4096.0 * 1024.0
    });
    println!(
        "heap in use: {} KiB at the start, {} KiB with every connection closed; RSS {} KiB and {} KiB",
        kib(start),
        kib(end),
        kib(start_rss),
        kib(end_rss)
    );
    // glibc keeps freed memory in its arenas: psstd's trimming thread gives it back.
    assert!(
        rss_back,
        "RSS {} KiB above the start once every watch and connection closed",
        kib(end_rss - start_rss)
    );
    assert!(
        back,
        "{} KiB more heap in use than at the start once every watch and connection closed",
        kib(end - start)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_of_many_secrets_starts_with_batch_calls() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let agent = agent("10m", Some(&proxy), EVERYTHING);
    moto.boto3(
        "for i in range(12):\n    ssm.put_parameter(Name='/many/p%d' % i, Value='v', Type='SecureString')\n\
         for i in range(3):\n    sm.create_secret(Name='many/s%d' % i, SecretString='{\"k\": \"v\"}')",
    );
    let mut references: Vec<String> = (0..12).map(|i| format!("ssm:/many/p{i}")).collect();
    references.extend((0..3).map(|i| format!("sm:many/s{i}")));
    // The same secret twice (two keys of it) is read once.
    references.push("sm:many/s0#k".into());
    let client = agent.client().await;
    let mut watch = client.watch(&references);
    for _ in 0..references.len() {
        assert_eq!(
            next(&mut watch, Duration::from_secs(10)).await.kind,
            Kind::Current
        );
    }
    // Parameter Store takes 10 names a call: two GetParameters; Secrets Manager one batch.
    assert_eq!(
        (
            proxy.count("AmazonSSM.GetParameters"),
            proxy.count("AmazonSSM.GetParameter"),
            proxy.count("secretsmanager.BatchGetSecretValue"),
            proxy.count("secretsmanager.GetSecretValue"),
        ),
        (2, 0, 1, 0),
        "{:?}",
        proxy.operations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_gets_only_the_newest_version() {
    let agent = agent("200ms", None, EVERYTHING);
    let client = agent.client().await;
    client.put("local:slow/s", b"v1").await.unwrap();
    let mut slow = client.watch(&["local:slow/s"]);
    let mut fast = client.watch(&["local:slow/s"]);
    let within = Duration::from_secs(4);
    assert_eq!(version(&next(&mut slow, within).await), "1");
    assert_eq!(version(&next(&mut fast, within).await), "1");
    for v in 2..=4 {
        client
            .put("local:slow/s", format!("v{v}").as_bytes())
            .await
            .unwrap();
        let seen = next(&mut fast, within).await;
        assert_eq!(
            version(&seen),
            v.to_string(),
            "the fast watcher sees every version"
        );
    }
    // The slow watcher's copy of the last event is on its way (same poll, another stream):
    // let it arrive before the slow reader looks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let caught_up = next(&mut slow, within).await;
    assert_eq!(caught_up.kind, Kind::NewVersion);
    assert_eq!(
        (version(&caught_up), caught_up.previous_version_id.as_str()),
        ("4", "1")
    );
    assert_eq!(caught_up.secret.as_ref().unwrap().value(), b"v4");
    let nothing_more = tokio::time::timeout(Duration::from_millis(800), slow.next()).await;
    assert!(
        nothing_more.is_err(),
        "no backlog of the versions in between"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_grant_ends_the_stream_with_permission_denied() {
    let agent = agent("200ms", None, EVERYTHING);
    let client = agent.client().await;
    client.put("local:revoked/s", b"v").await.unwrap();
    let mut watch = client.watch(&["local:revoked/s"]);
    next(&mut watch, Duration::from_secs(4)).await;
    std::fs::write(
        agent.path("policy.toml"),
        "[[rule]]\nname = \"root, no watch\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"] }\n",
    )
    .unwrap();
    agent.signal(Signal::SIGHUP);
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the stream ends");
    let err = ended.expect("an item").unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // And a new watch is refused outright.
    let mut again = client.watch(&["local:revoked/s"]);
    assert_eq!(
        again.next().await.unwrap().unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_an_agent_restart_without_repeating_a_version() {
    let mut agent = agent("200ms", None, EVERYTHING);
    let client = agent.client().await;
    client.put("local:resume/s", b"v1").await.unwrap();
    let mut watch = client.watch(&["local:resume/s"]);
    assert_eq!(
        version(&next(&mut watch, Duration::from_secs(4)).await),
        "1"
    );
    agent.restart();
    let writer = agent.client().await;
    // Give the watch time to reconnect, then change the secret.
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.put("local:resume/s", b"v2").await.unwrap();
    let after = next(&mut watch, Duration::from_secs(8)).await;
    assert_eq!(
        after.kind,
        Kind::NewVersion,
        "v1 was not delivered again: {after:?}"
    );
    assert_eq!(
        (version(&after), after.previous_version_id.as_str()),
        ("2", "1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_through_the_agent_satisfies_the_generator_and_keeps_the_previous_version() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let agent = agent("1s", Some(&proxy), EVERYTHING);
    moto.boto3(
        "sm.create_secret(Name='rot/db', SecretString=json.dumps({'user': 'app', 'password': 'old-pass'}))\n\
         sm.create_secret(Name='rot/token', SecretString='old-token')\n\
         ssm.put_parameter(Name='/rot/key', Value='old-key', Type='SecureString')\n",
    );
    let client = agent.client().await;
    client.put("local:rot/local", b"old-local").await.unwrap();
    let options = pb::GeneratorOptions {
        length: 24,
        exclude_punctuation: true,
        exclude_characters: "0O1lI".into(),
        ..Default::default()
    };
    for reference in ["sm:rot/token", "ssm:/rot/key", "local:rot/local"] {
        let rotated = client
            .rotate(reference, Some(options.clone()), None)
            .await
            .unwrap();
        assert!(!rotated.delegated);
        assert!(
            !rotated.previous_version_id.is_empty()
                && rotated.previous_version_id != rotated.version_id,
            "{rotated:?}"
        );
        let new = client.get(reference).await.unwrap();
        assert_eq!(new.version_id, rotated.version_id);
        let text = new.value_str().unwrap().to_owned();
        assert_eq!(text.len(), 24, "{reference}");
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)),
            "{reference}: {text}"
        );
        assert!(
            text.chars().any(|c| c.is_ascii_digit())
                && text.chars().any(|c| c.is_ascii_uppercase())
        );
    }
    let previous = moto.boto3("print(sm.get_secret_value(SecretId='rot/token', VersionStage='AWSPREVIOUS')['SecretString'])");
    assert_eq!(previous.trim(), "old-token", "AWSPREVIOUS still readable");
    assert_eq!(
        client
            .get("sm:rot/token?stage=AWSPREVIOUS")
            .await
            .unwrap()
            .value(),
        b"old-token"
    );
    let stages = moto.boto3(
        "d = sm.describe_secret(SecretId='rot/token')\nprint(sorted(s for v in d['VersionIdsToStages'].values() for s in v))",
    );
    assert_eq!(
        stages.trim(),
        "['AWSCURRENT', 'AWSPREVIOUS']",
        "AWSPENDING was cleared"
    );
    assert_eq!(
        client.get("ssm:/rot/key?version=1").await.unwrap().value(),
        b"old-key"
    );

    // Rotating one key of a JSON secret keeps the others.
    client
        .rotate("sm:rot/db", Some(options.clone()), Some("password"))
        .await
        .unwrap();
    assert_eq!(client.get("sm:rot/db#user").await.unwrap().value(), b"app");
    let password = client.get("sm:rot/db#password").await.unwrap();
    assert_eq!(password.value().len(), 24);
    assert_ne!(password.value(), b"old-pass");

    let err = client
        .rotate("sm:rot/missing", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = client
        .rotate("local:rot/local?version=1", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_and_admin() {
    let agent = agent("1s", None, EVERYTHING);
    let client = agent.client().await;
    let value = client
        .generate(pb::GeneratorOptions {
            length: 40,
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_punctuation: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(value.len(), 40);
    assert!(value.iter().all(u8::is_ascii_digit));
    let err = client
        .generate(pb::GeneratorOptions {
            length: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "2 characters cannot hold 4 classes: {err}"
    );

    client.put("local:adm/a", b"1").await.unwrap();
    client.put("local:adm/b", b"2").await.unwrap();
    client.get("local:adm/a").await.unwrap();
    client.get("local:adm/b").await.unwrap();
    client.get("local:adm/a").await.unwrap();
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.cache_hits, stats.cache_misses), (1, 2), "{stats:?}");
    assert_eq!(stats.policy_rules, 1);
    assert_eq!(client.invalidate("", "local:adm/").await.unwrap(), 2);
    assert!(!client.get("local:adm/a").await.unwrap().cache.hit);
    assert_eq!(client.invalidate("local:adm/a", "").await.unwrap(), 1);
    assert_eq!(client.reload_policy().await.unwrap(), 1);

    // Without the admin grant: denied, and Stats says nothing.
    std::fs::write(
        agent.path("policy.toml"),
        "[[rule]]\nname = \"reader\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"] }\n",
    )
    .unwrap();
    agent.signal(Signal::SIGHUP);
    let mut refused = None;
    for _ in 0..50 {
        if let Err(e) = client.stats().await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("stats refused once the admin grant is gone");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    assert_eq!(
        client
            .invalidate("local:adm/a", "")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
}

#[test]
fn shutdown_with_a_thousand_open_watches_finishes_within_the_grace_period() {
    let mut agent = agent("1s", None, EVERYTHING);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client: Client = runtime.block_on(agent.client());
    runtime.block_on(async {
        let c = client.clone();
        c.put("local:many/s", b"v").await.unwrap();
    });
    let watches: Vec<_> = runtime.block_on(async {
        let mut watches = Vec::new();
        for _ in 0..1000 {
            let mut w = client.watch(&["local:many/s"]);
            next(&mut w, Duration::from_secs(20)).await;
            watches.push(w);
        }
        watches
    });
    let watchers = runtime.block_on(async { client.clone().stats().await.unwrap().watchers });
    assert_eq!(watchers, 1000);
    let started = std::time::Instant::now();
    agent.signal(Signal::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(10)).expect("exits");
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_millis(3500),
        "took {took:?} with a 2s grace period"
    );
    assert!(
        agent.logs().contains("psstd stopped"),
        "a clean drain, not the grace period running out"
    );
    assert!(
        !agent.logs().contains("grace period over"),
        "{}",
        agent.logs()
    );
    drop(watches);
}
