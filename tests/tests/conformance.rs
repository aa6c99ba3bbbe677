//! The shared client conformance scenarios (`tests/conformance/scenarios.json`), run through the
//! Rust client against a live agent set up as `tests/conformance/with-agent` sets it up for the
//! other languages.

use std::time::Duration;

use psst_client::{code_name, Error, Secret};
use psst_tests::{
    aws::{Moto, AWS_ENV},
    openbao::{OpenBao, ROOT_TOKEN},
    Agent, Mode,
};
use serde_json::Value;

fn load(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conformance")
        .join(file);
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

/// The agent's policy: the scenarios' one rule (`policy` in scenarios.json, as with-agent writes
/// it), granted to this uid.
fn policy_of(spec: &Value) -> String {
    let policy = &spec["policy"];
    let allow: Vec<String> = policy["allow"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(op, patterns)| format!("{op} = {patterns}"))
        .collect();
    format!(
        "[[rule]]\nname = {}\ncaller = {{ uid = [{}] }}\nallow = {{ {} }}\n",
        policy["rule"],
        nix::unistd::getuid(),
        allow.join(", ")
    )
}

#[tokio::test]
async fn every_scenario_passes_through_the_rust_client() {
    let (spec, watch_spec) = (load("scenarios.json"), load("watch-scenarios.json"));
    let policy = policy_of(&spec);
    let moto = Moto::start();
    let bao = OpenBao::start();
    let config = format!(
        "[watch]\ninterval = \"200ms\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n\
         [[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n\
         [[backend]]\ntype = \"sm\"\nendpoint = \"{e}\"\nregion = \"us-east-1\"\n\
         [[backend]]\ntype = \"ssm\"\nendpoint = \"{e}\"\nregion = \"us-east-1\"\n\
         [[backend]]\ntype = \"s3\"\nendpoint = \"{e}\"\nregion = \"us-east-1\"\n\
         kms_key_id = \"alias/psst-conformance\"\n\
         [[backend]]\ntype = \"vault\"\naddress = \"{v}\"\n",
        e = moto.endpoint(),
        v = bao.address(),
    );
    let env: Vec<(&str, &str)> = AWS_ENV
        .iter()
        .copied()
        .chain([("VAULT_TOKEN", ROOT_TOKEN)])
        .collect();
    let mut agent = Agent::start(
        Mode::Config {
            config: &config,
            policy: &policy,
        },
        &env,
    );
    // setup.vault: written with the bao CLI, one key=value pair per field.
    for secret in spec["setup"]["vault"].as_array().unwrap() {
        let path = secret["reference"]
            .as_str()
            .unwrap()
            .strip_prefix("vault:")
            .unwrap();
        let fields: serde_json::Map<String, Value> =
            serde_json::from_str(secret["value"].as_str().unwrap()).unwrap();
        let pairs: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        let mut args = vec!["kv", "put", path];
        args.extend(pairs.iter().map(String::as_str));
        bao.bao(&args);
    }
    // The s3: scenarios' key and versioned bucket, as with-agent makes them.
    moto.boto3(
        "key = kms.create_key()['KeyMetadata']['KeyId']\n\
         kms.create_alias(AliasName='alias/psst-conformance', TargetKeyId=key)\n\
         s3.create_bucket(Bucket='psst-conformance')\n\
         s3.put_bucket_versioning(Bucket='psst-conformance', VersioningConfiguration={'Status': 'Enabled'})\n",
    );
    // setup.aws: written with boto3, as users do (s3: in the article's format).
    for secret in spec["setup"]["aws"].as_array().unwrap() {
        let (backend, name) = secret["reference"]
            .as_str()
            .unwrap()
            .split_once(':')
            .unwrap();
        let value = serde_json::to_string(secret["value"].as_str().unwrap()).unwrap();
        moto.boto3(&match backend {
            "sm" => format!("sm.create_secret(Name={name:?}, SecretString={value})"),
            "s3" => {
                let (bucket, key) = name.split_once('/').unwrap();
                format!(
                    "blob = kms.encrypt(KeyId='alias/psst-conformance', Plaintext={value}.encode())['CiphertextBlob']\n\
                     s3.put_object(Bucket={bucket:?}, Key={key:?}, Body=blob)"
                )
            }
            _ => format!("ssm.put_parameter(Name={name:?}, Value={value}, Type='SecureString')"),
        });
    }
    let mut client = agent.client().await;
    let setup = spec["setup"]["secrets"].as_array().unwrap().iter();
    for secret in setup.chain(watch_spec["setup"]["secrets"].as_array().unwrap()) {
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
            "watch" => {
                let reference = scenario["reference"].as_str().unwrap();
                let mut watch = client.watch(&[reference]);
                for step in scenario["steps"].as_array().unwrap() {
                    if let Some(expect) = step.get("expect_event") {
                        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
                            .await
                            .unwrap_or_else(|_| panic!("{name}: no event in 10s"))
                            .expect("open")
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                        assert_eq!(
                            event.kind.as_str_name(),
                            expect["kind"].as_str().unwrap(),
                            "{name}"
                        );
                        let secret = event.secret.as_ref().expect("a secret");
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
                        if let Some(previous) = expect.get("previous_version_id") {
                            assert_eq!(
                                event.previous_version_id,
                                previous.as_str().unwrap(),
                                "{name}"
                            );
                        }
                    } else if let Some(value) = step.get("put") {
                        client
                            .put(reference, value.as_str().unwrap().as_bytes())
                            .await
                            .unwrap();
                    } else if step.get("restart_agent").is_some() {
                        agent.restart();
                        client = agent.client().await;
                    } else if let Some(code) = step.get("expect_error") {
                        let error = watch.next().await.expect("an item").unwrap_err();
                        assert_eq!(code_name(error.code()), code.as_str().unwrap(), "{name}");
                    } else {
                        panic!("{name}: unknown step {step}");
                    }
                }
            }
            other => panic!("{name}: unknown call {other}"),
        }
    }
}
