//! The Prometheus endpoint, scraped from a live agent while it works: the counters move, and
//! nothing secret shows.

use psst_tests::{aws::free_port, sample, scrape, Agent, Mode};

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
