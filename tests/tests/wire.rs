//! The wire, below any client library: raw HTTP/2 frames to the real `psstd`, for what the
//! inline `GetSecret` path (agent/src/server/mod.rs) must get right by itself — messages split across
//! frames, compressed or oversized or doubled messages, trailers-only errors — and a slow
//! `GetSecret` holding up no other stream on its connection.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use prost::Message;
use psst_client::proto;
use psst_tests::{
    aws::{Fault, FaultProxy, Moto, AWS_ENV},
    grpc_frame, h2_unary, Agent, Mode,
};
use tokio::net::UnixStream;

const POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["local:wire/**", "sm:**"], write = ["local:**"] }
"#;

type Sender = h2::client::SendRequest<Bytes>;

async fn connect(agent: &Agent) -> Sender {
    let io = UnixStream::connect(&agent.socket).await.unwrap();
    let (sender, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    sender.ready().await.unwrap()
}

fn get_request(reference: &str) -> Bytes {
    grpc_frame(&proto::GetSecretRequest {
        reference: reference.into(),
    })
}

/// What came back: the gRPC status, its message, and the reply's data.
#[derive(Debug)]
struct Answer {
    status: String,
    message: String,
    data: Bytes,
}

/// Sends a `GetSecret` whose body is `chunks`, one DATA frame each.
async fn call(sender: &mut Sender, chunks: &[Bytes]) -> Answer {
    let (_, data, trailers) = h2_unary(sender, "/psst.v1.Secrets/GetSecret", chunks).await;
    let field = |map: &HeaderMap, name: &str| {
        map.get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    Answer {
        status: field(&trailers, "grpc-status"),
        message: field(&trailers, "grpc-message"),
        data,
    }
}

fn secret_of(answer: &Answer) -> proto::Secret {
    assert_eq!(answer.status, "0", "{answer:?}");
    assert_eq!(
        u32::from_be_bytes(answer.data[1..5].try_into().unwrap()) as usize,
        answer.data.len() - 5
    );
    proto::Secret::decode(&answer.data[5..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_secret_on_the_wire() {
    let agent = Agent::with_policy(POLICY, "");
    agent
        .client()
        .await
        .put("local:wire/a", b"wire-value")
        .await
        .unwrap();
    let mut sender = connect(&agent).await;

    let whole = get_request("local:wire/a");
    let answer = call(&mut sender, std::slice::from_ref(&whole)).await;
    let secret = secret_of(&answer);
    assert_eq!(&secret.value[..], b"wire-value");
    assert_eq!(secret.version_id, "1");

    // The same message in three frames, the length prefix itself split.
    let split = [whole.slice(..3), whole.slice(3..9), whole.slice(9..)];
    assert_eq!(
        &secret_of(&call(&mut sender, &split).await).value[..],
        b"wire-value"
    );

    // Errors come back as trailers-only responses with the core's code and message.
    let denied = call(&mut sender, &[get_request("local:other/x")]).await;
    assert_eq!(denied.status, "7", "{denied:?}");
    assert!(
        denied.message.contains("does%20not%20grant%20read"),
        "percent-encoded as gRPC says: {denied:?}"
    );
    let invalid = call(&mut sender, &[get_request("nope")]).await;
    assert_eq!(invalid.status, "3", "{invalid:?}");

    // A compressed message without grpc-encoding: refused, not misread.
    let mut compressed = whole.to_vec();
    compressed[0] = 1;
    let answer = call(&mut sender, &[compressed.into()]).await;
    assert_eq!(answer.status, "12", "{answer:?}");

    // A length prefix over server.max_message_bytes: refused from the prefix alone.
    let mut oversized = BytesMut::new();
    oversized.put_u8(0);
    oversized.put_u32(64 * 1024 * 1024);
    oversized.extend_from_slice(&[0u8; 16]);
    let answer = call(&mut sender, &[oversized.freeze()]).await;
    assert_eq!(answer.status, "11", "{answer:?}");
    assert!(answer.message.contains("too%20large"), "{answer:?}");

    // Two messages where one is expected; a truncated one; garbage that is not protobuf.
    let two = [whole.clone(), whole.clone()].concat();
    assert_eq!(call(&mut sender, &[two.into()]).await.status, "13");
    assert_eq!(call(&mut sender, &[whole.slice(..7)]).await.status, "13");
    // Garbage is the caller's mistake: INVALID_ARGUMENT (tests/tests/failure.rs has more).
    let garbage = Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert_eq!(call(&mut sender, &[garbage]).await.status, "3");

    // The connection survived all of it.
    assert_eq!(
        &secret_of(&call(&mut sender, &[get_request("local:wire/a")]).await).value[..],
        b"wire-value"
    );
    assert!(!agent.logs().contains("wire-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_get_secret_holds_up_no_other_stream_on_its_connection() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    proxy.set(Fault::Blackhole);
    let config = format!(
        "[policy]\nfile = \"{{dir}}/policy.toml\"\n\
         [[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n\
         [[backend]]\ntype = \"sm\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\ntimeout = \"3s\"\nmax_attempts = 1\n",
        proxy.endpoint()
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy: POLICY,
        },
        &AWS_ENV,
    );
    agent
        .client()
        .await
        .put("local:wire/fast", b"fast")
        .await
        .unwrap();
    let sender = connect(&agent).await;

    let mut slow_sender = sender.clone();
    let slow =
        tokio::spawn(
            async move { call(&mut slow_sender, &[get_request("sm:wire/blackholed")]).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut fast_sender = sender.clone();
    for _ in 0..20 {
        let answer = call(&mut fast_sender, &[get_request("local:wire/fast")]).await;
        assert_eq!(&secret_of(&answer).value[..], b"fast");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "20 cached reads on the same connection took {:?} while one read waited on AWS",
        started.elapsed()
    );
    assert!(!slow.is_finished(), "the blackholed read is still waiting");
    let answer = slow.await.unwrap();
    assert_eq!(
        answer.status, "14",
        "UNAVAILABLE once the timeout passes: {answer:?}"
    );
}
