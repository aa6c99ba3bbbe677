//! The Prometheus endpoint, scraped from a live agent while it works: the counters move, and
//! nothing secret shows.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use psst_tests::{aws::free_port, Agent, Mode};

fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample line that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_shows_the_counters_moving() {
    const VALUE: &str = "metrics-must-not-show-this";
    let port = free_port();
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n"
    );
    let policy = "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:app/**\"], write = [\"local:**\"], watch = [\"local:**\"] }\n";
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &[],
    );

    let before = scrape(port);
    assert_eq!(sample(&before, "psst_cache_hits_total"), 0.0);

    let client = agent.client().await;
    client.put("local:app/db", VALUE.as_bytes()).await.unwrap();
    client.get("local:app/db").await.unwrap(); // miss
    client.get("local:app/db").await.unwrap(); // hit
    client.get("local:app/db").await.unwrap(); // hit
    assert!(client.get("local:other/x").await.is_err()); // denied
    let mut watch = client.watch(&["local:app/db"]);
    watch.next().await.unwrap().unwrap();

    let after = scrape(port);
    // Two gets and the watch's first read (the poller reads through the cache too).
    assert_eq!(sample(&after, "psst_cache_hits_total"), 3.0, "{after}");
    assert_eq!(sample(&after, "psst_cache_misses_total"), 1.0);
    assert_eq!(
        sample(&after, "psst_backend_calls_total{backend=\"local\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "psst_backend_errors_total{backend=\"local\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &after,
            "psst_backend_latency_seconds_count{backend=\"local\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "psst_policy_decisions_total{operation=\"read\",decision=\"allow\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            "psst_policy_decisions_total{operation=\"read\",decision=\"deny\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "psst_policy_decisions_total{operation=\"write\",decision=\"allow\"}"
        ),
        1.0
    );
    assert_eq!(sample(&after, "psst_watchers"), 1.0);
    assert!(
        !after.contains(VALUE) && !after.contains("app/db"),
        "no values, no secret names:\n{after}"
    );
}
