//! The shared client conformance scenarios (`tests/conformance/scenarios.json`), run through the
//! Rust client against a live agent set up as `tests/conformance/with-agent` sets it up for the
//! other languages.

use psst_client::{code_name, Error, Secret};
use psst_tests::{Agent, Mode};
use serde_json::Value;

fn scenarios() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/scenarios.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_one(name: &str, expect: &Value, result: &Result<Secret, Error>) {
    match (expect.get("code"), result) {
        (Some(code), Err(e)) => {
            assert_eq!(code_name(e.code()), code.as_str().unwrap(), "{name}: {e}")
        }
        (Some(code), Ok(s)) => panic!("{name}: expected {code}, got a secret {s:?}"),
        (None, Err(e)) => panic!("{name}: expected a value, got {e}"),
        (None, Ok(secret)) => {
            if let Some(value) = expect.get("value") {
                assert_eq!(
                    secret.value_str().unwrap(),
                    value.as_str().unwrap(),
                    "{name}"
                );
            }
            if let Some(version) = expect.get("version_id") {
                assert_eq!(secret.version_id, version.as_str().unwrap(), "{name}");
            }
        }
    }
}

#[tokio::test]
async fn every_scenario_passes_through_the_rust_client() {
    let spec = scenarios();
    let policy = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/policy.toml"),
    )
    .unwrap()
    .replace("RUNNER_UID", &nix::unistd::getuid().to_string());
    let agent = Agent::start(
        Mode::Config {
            config: "[policy]\nfile = \"{dir}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{dir}/store\"\n",
            policy: &policy,
        },
        &[],
    );
    let mut client = agent.client().await;
    for secret in spec["setup"]["secrets"].as_array().unwrap() {
        let reference = secret["reference"].as_str().unwrap();
        client
            .put(reference, secret["value"].as_str().unwrap().as_bytes())
            .await
            .unwrap();
    }
    let scenarios = spec["scenarios"].as_array().unwrap();
    assert!(
        scenarios.len() >= 10,
        "the scenarios file has its scenarios"
    );
    for scenario in scenarios {
        let name = scenario["name"].as_str().unwrap();
        let expect = &scenario["expect"];
        match scenario["call"].as_str().unwrap() {
            "get" => {
                let result = client.get(scenario["reference"].as_str().unwrap()).await;
                check_one(name, expect, &result);
            }
            "batch_get" => {
                let references: Vec<&str> = scenario["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect();
                let results = client.batch_get(&references).await.unwrap();
                let expected = expect["results"].as_array().unwrap();
                assert_eq!(results.len(), expected.len(), "{name}");
                for (result, expect) in results.iter().zip(expected) {
                    check_one(name, expect, result);
                }
            }
            "list" => {
                let result = client.list(scenario["prefix"].as_str().unwrap()).await;
                match (expect.get("code"), result) {
                    (Some(code), Err(e)) => {
                        assert_eq!(code_name(e.code()), code.as_str().unwrap(), "{name}")
                    }
                    (None, Ok(listed)) => {
                        let got: Vec<&str> = listed.iter().map(|m| m.reference.as_str()).collect();
                        let want: Vec<&str> = expect["references"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|r| r.as_str().unwrap())
                            .collect();
                        assert_eq!(got, want, "{name}");
                    }
                    (code, result) => panic!("{name}: expected {code:?}, got {result:?}"),
                }
            }
            other => panic!("{name}: unknown call {other}"),
        }
    }
}
