//! The unary fast path (agent/src/server/fast.rs), end to end against the real `psstd`: a
//! cached `GetSecret` answered in front of h2 says exactly what h2's path says, shares its
//! connection with h2's streams (a watch, replies too large for the fast path, small windows)
//! without breaking flow control, and an unprivileged user's raw frames break nothing.

use std::{process::Command, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Request};
use prost::Message;
use psst_client::proto;
use psst_tests::{
    aws::free_port, bin_dir, describe, grpc_frame, h2_unary, sample, scrape, Agent, Mode, TempUser,
};
use tokio::net::UnixStream;

const POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["local:fast/**"], write = ["local:**"], watch = ["local:fast/**"] }
"#;

fn agent() -> (Agent, u16) {
    agent_with("")
}

/// An agent whose config starts with `extra`.
fn agent_with(extra: &str) -> (Agent, u16) {
    let port = free_port();
    let config = format!(
        "{extra}[metrics]\nlisten = \"127.0.0.1:{port}\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n"
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy: POLICY,
        },
        &[],
    );
    (agent, port)
}

fn fast_answers(port: u16) -> f64 {
    sample(&scrape(port), "psst_grpc_fast_path_answers_total")
}

/// Root writes `local:fast/a` and reads it, so it is cached, on a runtime that is returned for
/// more of root's calls.
fn cache_roots_secret(agent: &Agent) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = agent.client().await;
        client.put("local:fast/a", b"root-only").await.unwrap();
        client.get("local:fast/a").await.unwrap();
    });
    runtime
}

/// `psst-attack MODE SOCKET ARGS...` run as `attacker`: its report.
fn attack(attacker: &TempUser, agent: &Agent, mode: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("runuser")
        .args(["-u", attacker.name(), "--"])
        .arg(bin_dir().join("psst-attack"))
        .args([mode, agent.socket.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

type Sender = h2::client::SendRequest<Bytes>;

/// An h2 connection; `windows`: the connection and stream windows a tonic client asks for
/// (1 MiB), else the protocol's 64 KiB and a stream window of `stream_window`.
async fn connect(agent: &Agent, windows: bool, stream_window: u32) -> Sender {
    let io = UnixStream::connect(&agent.socket).await.unwrap();
    let mut builder = h2::client::Builder::new();
    if windows {
        builder
            .initial_connection_window_size(1 << 20)
            .initial_window_size(1 << 20);
    } else {
        builder.initial_window_size(stream_window);
    }
    let (sender, connection) = builder.handshake(io).await.unwrap();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            panic!("the connection failed: {e}");
        }
    });
    sender.ready().await.unwrap()
}

async fn unary(sender: &Sender, method: &str, body: Bytes) -> (HeaderMap, Bytes, HeaderMap) {
    h2_unary(sender, &format!("/psst.v1.Secrets/{method}"), &[body]).await
}

async fn get(sender: &Sender, reference: &str) -> proto::Secret {
    let request = grpc_frame(&proto::GetSecretRequest {
        reference: reference.into(),
    });
    let (headers, data, trailers) = unary(sender, "GetSecret", request).await;
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    assert_eq!(
        u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize,
        data.len() - 5
    );
    proto::Secret::decode(&data[5..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_read_answered_in_front_of_h2_says_what_h2_says() {
    let (agent, port) = agent();
    let value = vec![b'v'; 200];
    let client = agent.client().await;
    client.put("local:fast/a", &value).await.unwrap();
    client.get("local:fast/a").await.unwrap(); // cached now

    // A client that keeps the protocol's 64 KiB connection window gives the fast path no room
    // of its own at first: h2 answers.
    let small = connect(&agent, false, 65_535).await;
    let before = fast_answers(port);
    let through_h2 = get(&small, "local:fast/a").await;
    assert_eq!(fast_answers(port), before, "h2 answered this one");

    // A client with a tonic-sized window: cached reads are answered in front of h2 (a body
    // written after its headers is waited for, 50 ms; a busy machine may miss that for a few).
    let big = connect(&agent, true, 0).await;
    for _ in 0..50 {
        let through_fast = get(&big, "local:fast/a").await;
        assert_eq!(through_fast, through_h2, "the same Secret, field for field");
    }
    let answered = fast_answers(port) - before;
    assert!(answered >= 45.0, "{answered} of 50 answered in front of h2");
    assert_eq!(&through_h2.value[..], &value[..]);
    assert!(through_h2.cache.unwrap().hit);

    // A body that comes later than that goes to h2 with its headers, and is answered there.
    let request = Request::post("http://localhost/psst.v1.Secrets/GetSecret")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let before = fast_answers(port);
    let (response, mut send) = big.clone().send_request(request, false).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = grpc_frame(&proto::GetSecretRequest {
        reference: "local:fast/a".into(),
    });
    send.send_data(body, true).unwrap();
    let response = response.await.unwrap();
    let mut body = response.into_body();
    let data = body.data().await.unwrap().unwrap();
    let late = proto::Secret::decode(&data[5..]).unwrap();
    assert_eq!(late, through_h2);
    assert_eq!(body.trailers().await.unwrap().unwrap()["grpc-status"], "0");
    assert_eq!(fast_answers(port), before);

    // A denial is a trailers-only response with the core's code and message, as is a read the
    // policy allows of a name never written (h2's path: nothing is cached for it) and a bad
    // reference (h2's path).
    client.put("local:other/b", b"other").await.unwrap();
    let denied = grpc_frame(&proto::GetSecretRequest {
        reference: "local:other/b".into(),
    });
    let (_, data, trailers) = unary(&big, "GetSecret", denied).await;
    assert!(data.is_empty());
    assert_eq!(trailers["grpc-status"], "7", "{trailers:?}");
    let missing = grpc_frame(&proto::GetSecretRequest {
        reference: "local:fast/never".into(),
    });
    assert_eq!(
        unary(&big, "GetSecret", missing).await.2["grpc-status"],
        "5"
    );
    let bad = grpc_frame(&proto::GetSecretRequest {
        reference: "nope".into(),
    });
    assert_eq!(unary(&big, "GetSecret", bad).await.2["grpc-status"], "3");

    // A denied read is answered in front of h2 whether or not the secret is cached, so which
    // path answers does not tell a caller that may not read a secret whether someone read it
    // lately. Neither of these is in the cache (one written, never read; one never written);
    // before, both went to h2 (0 of 20), while a cached one was answered here (as in
    // `raw_frames_from_another_user_break_nothing`). The body may miss the 50 ms wait on a busy
    // machine, hence "most".
    for reference in ["local:other/b", "local:other/never-read"] {
        let before = fast_answers(port);
        for _ in 0..20 {
            let request = grpc_frame(&proto::GetSecretRequest {
                reference: reference.into(),
            });
            assert_eq!(
                unary(&big, "GetSecret", request).await.2["grpc-status"],
                "7"
            );
        }
        let answered = fast_answers(port) - before;
        assert!(
            answered >= 15.0,
            "{reference}: {answered} of 20 denials in front of h2"
        );
    }

    // Every read is audited once, whichever path answered it: the client's, h2's, the 50, the
    // late body's.
    assert!(!agent.logs().contains(std::str::from_utf8(&value).unwrap()));
    let reads = || {
        agent
            .logs()
            .lines()
            .filter(|l| {
                l.contains("operation=\"read\"") && l.contains("reference=\"local:fast/a\"")
            })
            .count()
    };
    assert!(psst_tests::eventually(Duration::from_secs(5), || reads() >= 53));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(reads(), 53);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_shares_a_connection_with_h2s_streams_and_windows() {
    let (agent, port) = agent();
    let client = agent.client().await;
    let small_value = vec![b's'; 1_000];
    let big_value = vec![b'B'; 40_000];
    client.put("local:fast/k", &small_value).await.unwrap();
    client.put("local:fast/big", &big_value).await.unwrap();
    client.get("local:fast/k").await.unwrap();
    client.get("local:fast/big").await.unwrap();

    // The protocol's default windows: 64 KiB for the connection, shared by h2's replies (the
    // 40 KB secret does not fit the fast path's share), the fast path's and a watch's events.
    let sender = connect(&agent, false, 65_535).await;
    let watch = grpc_frame(&proto::WatchSecretsRequest {
        references: vec!["local:fast/k".into()],
        ..Default::default()
    });
    let request = Request::post("http://localhost/psst.v1.Secrets/WatchSecrets")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = sender.clone().send_request(request, false).unwrap();
    send.send_data(watch, true).unwrap();
    let mut events = response.await.unwrap().into_body();

    // Its first event (the current version) came on this connection.
    let first = tokio::time::timeout(Duration::from_secs(10), events.data())
        .await
        .expect("the watch's first event")
        .unwrap()
        .unwrap();
    let _ = events.flow_control().release_capacity(first.len());
    let event = proto::WatchEvent::decode(&first[5..]).unwrap();
    assert_eq!(event.kind, proto::watch_event::Kind::Current as i32);

    let before = fast_answers(port);
    for round in 0..60u8 {
        let mut calls = Vec::new();
        for _ in 0..8 {
            let sender = sender.clone();
            calls.push(tokio::spawn(
                async move { get(&sender, "local:fast/k").await },
            ));
        }
        // h2's path on the same connection: a reply too large for the fast path's share, and
        // a write.
        let big = get(&sender, "local:fast/big").await;
        assert_eq!(&big.value[..], &big_value[..]);
        let put = grpc_frame(&proto::PutSecretRequest {
            reference: format!("local:fast/put-{round}"),
            value: vec![round; 100].into(),
        });
        assert_eq!(unary(&sender, "PutSecret", put).await.2["grpc-status"], "0");
        for call in calls {
            let secret = call.await.unwrap();
            assert_eq!(secret.value.len(), small_value.len());
        }
    }
    // The watch is still open on the connection: no end, no reset.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.data())
            .await
            .is_err(),
        "the watch stream ended"
    );
    // Once the client gave back what h2 used, the fast path had room of its own at times (how
    // often depends on how h2's large replies and the client's window updates interleave).
    let answered = fast_answers(port) - before;
    assert!(
        (10.0..480.0).contains(&answered),
        "{answered} of 480 reads answered in front of h2: both paths served this connection"
    );

    // A stream window smaller than the reply: h2 sends it as the window allows.
    let narrow = connect(&agent, false, 100).await;
    let before = fast_answers(port);
    assert_eq!(
        &get(&narrow, "local:fast/k").await.value[..],
        &small_value[..]
    );
    assert_eq!(fast_answers(port), before);
}

/// An unprivileged user's raw frames at the fast path: frames on streams it closed, an HPACK
/// bomb, a header block that never ends, and GetSecrets sent without reading a reply.
#[test]
fn raw_frames_from_another_user_break_nothing() {
    let (agent, port) = agent();
    // Cached, so the attacker's reads of it are answered (denied) in front of h2.
    let runtime = cache_roots_secret(&agent);
    let attacker = TempUser::new("psst-fastpath-attacker");
    let rss_before = agent.rss_kib();
    let report = attack(&attacker, &agent, "raw-frames", &["local:fast/a"]);
    // Denied (PERMISSION_DENIED), before and after frames on the stream closed in front of h2.
    assert_eq!(report["first"], "7", "{report}");
    assert_eq!(report["after_closed_frames"], "7", "{report}");
    // Bodies cancelled half-way: answered after, and their bytes given back to the window
    // (h2 never saw them: the fast path owes them).
    assert_eq!(report["after_cancelled"], "7", "{report}");
    assert!(
        report["window_given_back"].as_u64() >= Some(32 * 1024),
        "{report}"
    );
    // 200 headers first, then the bodies: all answered, whichever path each took.
    assert_eq!(
        report["headers_first"],
        serde_json::json!({"7": 200}),
        "{report}"
    );
    // The bomb and the endless block end their connection (h2's GOAWAY, or the close after it).
    for part in ["hpack_bomb", "endless_continuation"] {
        let outcome = report[part].as_str().unwrap();
        assert!(
            outcome == "goaway" || outcome == "closed",
            "{part}: {report}"
        );
    }
    assert!(
        report["continuation_bytes"].as_u64().unwrap() < 8 << 20,
        "the endless block was cut short: {report}"
    );
    // The flood: the agent stopped reading instead of buffering replies without bound.
    assert_eq!(report["flood_blocked"], true, "{report}");
    let grown = agent.rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "RSS grew {grown} KiB");
    assert!(fast_answers(port) >= 2.0);
    // And root is still served.
    runtime.block_on(async {
        let client = agent.client().await;
        assert_eq!(
            client.get("local:fast/a").await.unwrap().value(),
            b"root-only"
        );
    });
}

/// Header blocks that expand (6 bytes referring three times to a 4 KB table entry: 12 KB
/// decoded): 4,000 of them in 60 KB on the wire. The layer in front of h2 re-encodes what it
/// decodes as literals, so it must hand h2 only as much as h2 reads, not a whole read's worth
/// at once (48 MB here).
#[test]
fn expanding_header_blocks_are_not_decoded_faster_than_h2_reads_them() {
    let (agent, _) = agent();
    let attacker = TempUser::new("psst-fastpath-attacker");
    let peak_before = agent.status_kib("VmHWM:");
    let report = attack(&attacker, &agent, "expand", &["4000"]);
    assert_eq!(report["sent"], true, "{report}");
    let grown = agent.status_kib("VmHWM:").saturating_sub(peak_before);
    assert!(grown < 16 * 1024, "peak RSS grew {grown} KiB: {report}");
}

/// Bodies that come in two halves wait for the second in front of h2: what waits is counted
/// against the uid's byte share (here 16 KiB) as h2's path counts it, so 100 such requests from
/// one user cannot hold 50 KB: those past the share are refused (RESOURCE_EXHAUSTED).
#[test]
fn bodies_waiting_in_front_of_h2_count_against_the_uids_byte_share() {
    let (agent, _) = agent_with(
        "[server]\nsocket = \"{dir}/psst.sock\"\nmax_message_bytes = 8192\n[limits]\nmax_value_bytes = 4096\nbody_bytes_in_flight_per_uid = 16384\n",
    );
    let _runtime = cache_roots_secret(&agent);
    let attacker = TempUser::new("psst-fastpath-attacker");
    let report = attack(&attacker, &agent, "split", &["local:fast/a", "100"]);
    let statuses = report["statuses"].as_object().unwrap();
    // Denied (the secret is root's) within the share; refused past it; nothing else.
    assert!(
        statuses.get("8").and_then(|n| n.as_u64()) > Some(0),
        "{report}"
    );
    assert!(statuses.keys().all(|k| k == "7" || k == "8"), "{report}");
}
