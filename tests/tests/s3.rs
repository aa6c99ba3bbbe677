//! End to end: the article's KMS + S3 store (`s3:`) served by the real `psstd` from moto's S3 and
//! KMS, behind a proxy that counts the KMS calls. Objects are written the way the article writes
//! them (its own shell script, with the AWS CLI), with boto3, and through the agent.

use std::{process::Command, time::Duration};

use psst_client::{
    proto::{self as pb, watch_event::Kind},
    Code, Watch, WatchEvent,
};
use psst_tests::{
    aws::{FaultProxy, Moto, AWS_ENV},
    describe, Agent, Mode,
};

const POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["s3:**"], list = ["s3:**"], write = ["s3:**"], watch = ["s3:**"], rotate = ["s3:**"] }
"#;

/// The bucket with versioning on, one without, and another versioned one.
const BUCKET: &str = "psst-secrets";
const PLAIN_BUCKET: &str = "psst-unversioned";
const OTHER_BUCKET: &str = "psst-elsewhere";

struct World {
    moto: Moto,
    proxy: FaultProxy,
    agent: Agent,
}

/// moto with a KMS key (`alias/psst`) and the buckets, and an agent whose `s3` backend goes
/// through the counting proxy. `backend_extra` lands in its `[[backend]]` table.
fn world(backend_extra: &str) -> World {
    let moto = Moto::start();
    moto.boto3(&format!(
        "key = kms.create_key(Description='psst test')['KeyMetadata']['KeyId']\n\
         kms.create_alias(AliasName='alias/psst', TargetKeyId=key)\n\
         for b in ['{BUCKET}', '{PLAIN_BUCKET}', '{OTHER_BUCKET}']:\n\
         \x20   s3.create_bucket(Bucket=b)\n\
         for b in ['{BUCKET}', '{OTHER_BUCKET}']:\n\
         \x20   s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={{'Status': 'Enabled'}})\n"
    ));
    let proxy = FaultProxy::start(moto.port);
    let config = format!(
        "[log]\nlevel = \"psstd=debug,warn\"\n[watch]\ninterval = \"300ms\"\n\
         [policy]\nfile = \"{{dir}}/policy.toml\"\n\
         [[backend]]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n{backend_extra}\n",
        proxy.endpoint()
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy: POLICY,
        },
        &AWS_ENV,
    );
    World { moto, proxy, agent }
}

fn get(agent: &Agent, reference: &str) -> (Option<i32>, String, String) {
    let out = agent.psst(&["get", reference], None);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get_text(agent: &Agent, reference: &str) -> String {
    let (code, stdout, stderr) = get(agent, reference);
    assert_eq!(code, Some(0), "{reference}: {stderr}");
    stdout
}

/// The raw object, base64, as boto3 reads it.
fn object_b64(moto: &Moto, bucket: &str, key: &str) -> String {
    moto.boto3(&format!(
        "import base64\nprint(base64.b64encode(s3.get_object(Bucket='{bucket}', Key='{key}')['Body'].read()).decode())"
    ))
    .trim()
    .to_owned()
}

fn put_object_b64(moto: &Moto, bucket: &str, key: &str, b64: &str) {
    moto.boto3(&format!(
        "import base64\ns3.put_object(Bucket='{bucket}', Key='{key}', Body=base64.b64decode('{b64}'))"
    ));
}

/// The article's "Storing a secret" script, word for word but for the line breaks; the AWS CLI
/// finds the emulator through AWS_ENDPOINT_URL.
const ARTICLE_STORE: &str = r#"
# Encrypt local file
# NOTE: When you use the AWS CLI, the output, `CiphertextBlob` is
# Base64-encoded. So decode before storing (so subsequent
# `decrypt` call will be valid).
aws kms encrypt --key-id $KMS_KEY_ALIAS --plaintext fileb://$PUT_FILE \
 --output text --query CiphertextBlob | base64 --decode > tmp.encrypt
# Copy encrypted file to S3
aws s3api put-object --region $AWS_REGION --bucket $BUCKET --key $KEY --body tmp.encrypt
"#;

/// The article's "Retrieving a secret" script.
const ARTICLE_RETRIEVE: &str = r#"
# Retrieve encrypted file from S3
aws s3api get-object --region $AWS_REGION --bucket $BUCKET \
 --key $KEY tmp.encrypt > /dev/null
# Decrypt
# NOTE: When you use the AWS CLI, the decrypted output is
# Base64-encoded. So we must Base64 decode after
# decryption.
aws kms decrypt --ciphertext-blob fileb://tmp.encrypt --query Plaintext \
 --output text | base64 --decode
"#;

fn article(moto: &Moto, script: &str, key: &str, put_file: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir.path())
        .envs(AWS_ENV)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        // AWS CLI v1 reads its default region from here, not AWS_REGION.
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("KMS_KEY_ALIAS", "alias/psst")
        .env("BUCKET", BUCKET)
        .env("KEY", key);
    if let Some(text) = put_file {
        let file = dir.path().join("secret.txt");
        std::fs::write(&file, text).unwrap();
        command.env("PUT_FILE", &file);
    }
    let out = command
        .output()
        .expect("bash and the AWS CLI (pip install awscli)");
    assert!(out.status.success(), "article script: {}", describe(&out));
    out
}

#[test]
fn a_secret_stored_with_the_articles_commands_is_read_by_psst_get() {
    let w = world("");
    let secret = "db-password: correct horse battery staple";
    article(&w.moto, ARTICLE_STORE, "prod/db-password", Some(secret));
    // The article's own way back agrees: the object is what the article means.
    let back = article(&w.moto, ARTICLE_RETRIEVE, "prod/db-password", None);
    assert_eq!(String::from_utf8_lossy(&back.stdout), secret);

    assert_eq!(
        get_text(&w.agent, "s3:psst-secrets/prod/db-password"),
        secret
    );
    assert_eq!(
        w.proxy.count("TrentService.Decrypt"),
        1,
        "one KMS Decrypt per read of an article-format object: {:?}",
        w.proxy.operations()
    );
    // Cached: no second Decrypt.
    get_text(&w.agent, "s3:psst-secrets/prod/db-password");
    assert_eq!(w.proxy.count("TrentService.Decrypt"), 1);

    // A flipped bit in the ciphertext: KMS refuses it, and so does the agent, clearly.
    let b64 = object_b64(&w.moto, BUCKET, "prod/db-password");
    let tampered = w.moto.boto3(&format!(
        "import base64\nb = bytearray(base64.b64decode('{b64}'))\nb[-3] ^= 1\nprint(base64.b64encode(bytes(b)).decode())"
    ));
    put_object_b64(&w.moto, BUCKET, "prod/tampered", tampered.trim());
    let (code, stdout, stderr) = get(&w.agent, "s3:psst-secrets/prod/tampered");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("DATA_LOSS") && stderr.contains("does not decrypt"),
        "{stderr}"
    );
    assert!(!stderr.contains("horse"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_writes_round_trip_and_bind_each_object_to_its_place() {
    // A short TTL, so the tampered object below is read again soon.
    let w = world("kms_key_id = \"alias/psst\"\nttl = \"1s\"");
    let client = w.agent.client().await;
    let value = b"envelope-secret-value";
    let written = client
        .put("s3:psst-secrets/app/api-key", value)
        .await
        .unwrap();
    assert!(!written.version_id.is_empty());
    assert_eq!(w.proxy.count("TrentService.GenerateDataKey"), 1);
    assert_eq!(
        client
            .get("s3:psst-secrets/app/api-key")
            .await
            .unwrap()
            .value(),
        value
    );

    // What S3 holds: the psst envelope, no plaintext, and a data key KMS releases only with
    // the object's encryption context.
    let raw = w.moto.boto3(
        "import base64\n\
         o = s3.get_object(Bucket='psst-secrets', Key='app/api-key')['Body'].read()\n\
         print(o[:4].decode(), b'envelope-secret-value' in o)\n\
         n = int.from_bytes(o[5:7], 'big')\n\
         wrapped = o[7:7+n]\n\
         try:\n\
         \x20   kms.decrypt(CiphertextBlob=wrapped)\n\
         \x20   print('decrypted without context')\n\
         except kms.exceptions.InvalidCiphertextException:\n\
         \x20   print('refused without context')\n\
         ok = kms.decrypt(CiphertextBlob=wrapped, EncryptionContext={'psst:bucket': 'psst-secrets', 'psst:key': 'app/api-key'})\n\
         print(len(ok['Plaintext']))\n",
    );
    assert_eq!(
        raw.lines().collect::<Vec<_>>(),
        ["PSS3 False", "refused without context", "32"],
        "{raw}"
    );

    // Copied to another key, or another bucket: it does not decrypt there.
    w.moto.boto3(
        "src = {'Bucket': 'psst-secrets', 'Key': 'app/api-key'}\n\
         s3.copy_object(CopySource=src, Bucket='psst-secrets', Key='app/stolen')\n\
         s3.copy_object(CopySource=src, Bucket='psst-elsewhere', Key='app/api-key')\n",
    );
    for reference in [
        "s3:psst-secrets/app/stolen",
        "s3:psst-elsewhere/app/api-key",
    ] {
        let err = client.get(reference).await.unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{reference}: {err}");
        assert!(
            err.message().contains("copied here from another object"),
            "{err}"
        );
    }

    // Tampered with in place: one flipped bit in the sealed value.
    let b64 = object_b64(&w.moto, BUCKET, "app/api-key");
    let flipped = w.moto.boto3(&format!(
        "import base64\nb = bytearray(base64.b64decode('{b64}'))\nb[-1] ^= 1\nprint(base64.b64encode(bytes(b)).decode())"
    ));
    put_object_b64(&w.moto, BUCKET, "app/api-key", flipped.trim());
    // Once the cached value expires, the next read finds the tampered object and refuses it.
    let mut last = String::new();
    assert!(
        psst_tests::eventually(Duration::from_secs(8), || {
            let out = w.agent.psst(&["get", "s3:psst-secrets/app/api-key"], None);
            last = describe(&out);
            !out.status.success()
                && last.contains("DATA_LOSS")
                && last.contains("does not authenticate")
        }),
        "{last}"
    );
    assert!(!last.contains("envelope-secret-value"), "{last}");
    // A malformed envelope: a clear error, not a crash.
    put_object_b64(&w.moto, BUCKET, "app/short", "UFNTMwEAIA==");
    let err = client.get("s3:psst-secrets/app/short").await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err}");
    assert!(err.message().contains("shorter than its header"), "{err}");
    assert!(!w.agent.logs().contains("envelope-secret-value"));
}

async fn next(watch: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(8), watch.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .unwrap_or_else(|e| panic!("watch error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_versions_are_secret_versions_with_batch_list_watch_and_rotate() {
    let w = world("kms_key_id = \"alias/psst\"");
    let client = w.agent.client().await;
    let v1 = client
        .put(
            "s3:psst-secrets/prod/db",
            br#"{"user":"app","password":"one"}"#,
        )
        .await
        .unwrap();
    let v2 = client
        .put(
            "s3:psst-secrets/prod/db",
            br#"{"user":"app","password":"two"}"#,
        )
        .await
        .unwrap();
    assert_ne!(v1.version_id, v2.version_id);
    // The version ids are S3's own.
    let ids = w.moto.boto3(
        "vs = s3.list_object_versions(Bucket='psst-secrets', Prefix='prod/db')['Versions']\n\
         print(' '.join(sorted(v['VersionId'] for v in vs)))",
    );
    let mut expected = [v1.version_id.clone(), v2.version_id.clone()];
    expected.sort();
    assert_eq!(ids.trim(), expected.join(" "));

    let current = client
        .get("s3:psst-secrets/prod/db#password")
        .await
        .unwrap();
    assert_eq!(
        (current.value(), current.version_id.as_str()),
        (&b"two"[..], v2.version_id.as_str())
    );
    let old = client
        .get(&format!(
            "s3:psst-secrets/prod/db?version={}#password",
            v1.version_id
        ))
        .await
        .unwrap();
    assert_eq!(old.value(), b"one");
    let err = client
        .get("s3:psst-secrets/prod/db?version=no-such-version")
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::NotFound | Code::InvalidArgument),
        "{err}"
    );
    let err = client
        .get("s3:psst-secrets/prod/missing")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message()
            .contains("s3:psst-secrets/prod/missing not found"),
        "{err}"
    );
    let err = client.get("s3:no-such-bucket/x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    // Batch: several objects, one missing, one JSON key.
    client
        .put("s3:psst-secrets/prod/api", b"api-token")
        .await
        .unwrap();
    let results = client
        .batch_get(&[
            "s3:psst-secrets/prod/api",
            "s3:psst-secrets/prod/db#user",
            "s3:psst-secrets/prod/nope",
        ])
        .await
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap().value(), b"api-token");
    assert_eq!(results[1].as_ref().unwrap().value(), b"app");
    assert_eq!(results[2].as_ref().unwrap_err().code(), Code::NotFound);

    // Listing by prefix: the latest version of each key, deleted keys left out.
    client
        .put("s3:psst-secrets/staging/db", b"s")
        .await
        .unwrap();
    client.put("s3:psst-secrets/prod/gone", b"g").await.unwrap();
    w.moto
        .boto3("s3.delete_object(Bucket='psst-secrets', Key='prod/gone')");
    let listed = client.list("s3:psst-secrets/prod/").await.unwrap();
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|m| (m.reference.as_str(), m.version_id.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("s3:psst-secrets/prod/api", names[0].1),
            ("s3:psst-secrets/prod/db", v2.version_id.as_str()),
        ]
    );
    let err = client.list("s3:psst-secrets").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // Watch: a new version written outside the agent (the article's way) is pushed.
    let mut watch = client.watch(&["s3:psst-secrets/prod/api"]);
    let first = next(&mut watch).await;
    assert_eq!(first.kind, Kind::Current);
    let before = first.secret.as_ref().unwrap().version_id.clone();
    article(
        &w.moto,
        ARTICLE_STORE,
        "prod/api",
        Some("rotated-by-script"),
    );
    let changed = next(&mut watch).await;
    assert_eq!(changed.kind, Kind::NewVersion);
    assert_eq!(changed.previous_version_id, before);
    assert_eq!(
        changed.secret.as_ref().unwrap().value(),
        b"rotated-by-script"
    );
    // Deleted: the watcher is told.
    w.moto
        .boto3("s3.delete_object(Bucket='psst-secrets', Key='prod/api')");
    assert_eq!(next(&mut watch).await.kind, Kind::Deleted);

    // Rotation through the agent: a new version, the previous one still readable; a JSON key
    // rotates alone.
    let options = pb::GeneratorOptions {
        length: 20,
        exclude_punctuation: true,
        ..Default::default()
    };
    let rotated = client
        .rotate(
            "s3:psst-secrets/prod/db",
            Some(options.clone()),
            Some("password"),
        )
        .await
        .unwrap();
    assert_eq!(rotated.previous_version_id, v2.version_id);
    let password = client
        .get("s3:psst-secrets/prod/db#password")
        .await
        .unwrap();
    assert_eq!(password.value().len(), 20);
    assert_eq!(password.version_id, rotated.version_id);
    assert_eq!(
        client
            .get("s3:psst-secrets/prod/db#user")
            .await
            .unwrap()
            .value(),
        b"app"
    );
    let previous = client
        .get(&format!(
            "s3:psst-secrets/prod/db?version={}#password",
            v2.version_id
        ))
        .await
        .unwrap();
    assert_eq!(previous.value(), b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unversioned_buckets_use_etags_and_writes_need_a_key() {
    let w = world("");
    let client = w.agent.client().await;
    // Without kms_key_id the agent cannot encrypt: it says so, and writes nothing.
    let err = client
        .put("s3:psst-unversioned/app/token", b"t")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("kms_key_id"), "{err}");
    let count = w
        .moto
        .boto3("print(s3.list_objects_v2(Bucket='psst-unversioned').get('KeyCount', 0))");
    assert_eq!(count.trim(), "0");
    assert_eq!(w.proxy.count("TrentService.GenerateDataKey"), 0);

    // An article-format object in a bucket without versioning: its version is its ETag.
    let etag = w.moto.boto3(
        "blob = kms.encrypt(KeyId='alias/psst', Plaintext=b'etag-secret')['CiphertextBlob']\n\
         print(s3.put_object(Bucket='psst-unversioned', Key='app/token', Body=blob)['ETag'].strip('\"'))",
    );
    let secret = client.get("s3:psst-unversioned/app/token").await.unwrap();
    assert_eq!(secret.value(), b"etag-secret");
    assert_eq!(secret.version_id, etag.trim());
    let listed = client.list("s3:psst-unversioned/app/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version_id, etag.trim());
}

#[test]
fn dev_mode_serves_s3_from_the_standard_environment() {
    let moto = Moto::start();
    moto.boto3(&format!(
        "key = kms.create_key()['KeyMetadata']['KeyId']\n\
         kms.create_alias(AliasName='alias/psst', TargetKeyId=key)\n\
         s3.create_bucket(Bucket='{BUCKET}')\n\
         s3.put_object(Bucket='{BUCKET}', Key='dev/article', Body=kms.encrypt(KeyId='alias/psst', Plaintext=b'from-article')['CiphertextBlob'])\n"
    ));
    let endpoint = moto.endpoint();
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    env.push(("PSST_S3_KMS_KEY_ID", "alias/psst"));
    let agent = Agent::start(Mode::Dev, &env);
    assert_eq!(
        get_text(&agent, "s3:psst-secrets/dev/article"),
        "from-article"
    );
    let out = agent.psst(&["put", "s3:psst-secrets/dev/written"], Some(b"from-psst"));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(get_text(&agent, "s3:psst-secrets/dev/written"), "from-psst");
}
