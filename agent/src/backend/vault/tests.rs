use super::*;

fn reference(text: &str) -> SecretRef {
    SecretRef::parse(text).unwrap()
}

fn config() -> VaultBackendConfig {
    VaultBackendConfig::default()
}

fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn api_paths() {
    assert_eq!(kv_path("secret", "data", "app/db"), "secret/data/app/db");
    assert_eq!(kv_path("secret", "metadata", "app/"), "secret/metadata/app");
    assert_eq!(kv_path("kv", "data", "a b/c%d"), "kv/data/a%20b/c%25d");
    assert_eq!(split_name("secret/app/db").unwrap(), ("secret", "app/db"));
    assert!(matches!(
        split_name("secret"),
        Err(BackendError::InvalidArgument(_))
    ));
}

#[test]
fn a_read_answer_becomes_the_json_of_its_fields() {
    let body = br#"{"request_id":"x","data":{"data":{"password":"p4ss","user":"app"},
        "metadata":{"created_time":"2024-05-01T10:20:30.123456789Z","deletion_time":"",
        "destroyed":false,"version":3}}}"#;
    let fetched = parse_read(&reference("vault:secret/app/db"), body).unwrap();
    assert_eq!(
        fetched.value.expose(),
        br#"{"password":"p4ss","user":"app"}"#
    );
    assert_eq!(fetched.version_id, "3");
    let created = fetched.created_at.unwrap();
    assert_eq!(
        created
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_714_558_830
    );
}

#[test]
fn deleted_and_destroyed_versions_are_not_found() {
    let r = reference("vault:secret/app/db?version=2");
    let deleted = br#"{"data":{"data":null,"metadata":{"created_time":"2024-05-01T10:20:30Z",
        "deletion_time":"2024-05-02T10:20:30Z","destroyed":false,"version":2}}}"#;
    let err = parse_read(&r, deleted).unwrap_err();
    assert!(
        matches!(&err, BackendError::NotFound(m) if m.contains("was deleted")),
        "{err}"
    );
    let reply = Reply {
        status: hyper::StatusCode::NOT_FOUND,
        body: Zeroizing::new(deleted.to_vec()),
    };
    let err = read_error(&r, &reply);
    assert!(
        matches!(&err, BackendError::NotFound(m) if m.contains("version 2 of vault:secret/app/db?version=2 was deleted")),
        "{err}"
    );
    let destroyed = br#"{"data":{"data":null,"metadata":{"created_time":"","deletion_time":"",
        "destroyed":true,"version":1}}}"#;
    let err = parse_read(&r, destroyed).unwrap_err();
    assert!(
        matches!(&err, BackendError::NotFound(m) if m.contains("was destroyed")),
        "{err}"
    );
    let plain = Reply {
        status: hyper::StatusCode::NOT_FOUND,
        body: Zeroizing::new(br#"{"errors":[]}"#.to_vec()),
    };
    assert!(
        matches!(read_error(&r, &plain), BackendError::NotFound(m) if m.ends_with("not found"))
    );
}

#[test]
fn a_kv_version_1_mount_is_reported_not_misread() {
    // KV v1 answers with the fields directly under `data`.
    let err = parse_read(
        &reference("vault:kv/app"),
        br#"{"data":{"password":"p4ss"}}"#,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("KV version 2"), "{text}");
    assert!(!text.contains("p4ss"), "{text}");
}

#[test]
fn metadata_gives_the_current_readable_version() {
    let body = br#"{"data":{"current_version":2,"updated_time":"2024-05-01T10:20:30Z",
        "versions":{"1":{"deletion_time":"","destroyed":false},
                    "2":{"deletion_time":"","destroyed":false}}}}"#;
    let (current, updated) = current_version("vault:secret/a", body).unwrap();
    assert_eq!(current.as_deref(), Some("2"));
    assert!(updated.is_some());
    let deleted = br#"{"data":{"current_version":2,"versions":{
        "2":{"deletion_time":"2024-05-01T10:20:30Z","destroyed":false}}}}"#;
    assert_eq!(current_version("vault:secret/a", deleted).unwrap().0, None);
}

#[test]
fn only_json_objects_are_written() {
    let body = kv_write_body(
        "secret/a",
        &SecretValue::from_slice(br#" {"password":"x"}"#),
    )
    .unwrap();
    assert_eq!(&body[..], br#"{"data": {"password":"x"}}"#);
    for bad in [&b"hunter2"[..], b"[1,2]", b"\"text\"", b"{\"a\":", b""] {
        let err = kv_write_body("secret/a", &SecretValue::from_slice(bad)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BackendError::InvalidArgument(_)), "{text}");
        assert!(text.contains("JSON object of fields"), "{text}");
        if !bad.is_empty() {
            assert!(
                !text.contains(std::str::from_utf8(bad).unwrap()),
                "the value leaked: {text}"
            );
        }
    }
}

#[test]
fn settings_come_from_the_config_then_the_environment() {
    let settings = VaultSettings::resolve(
        &config(),
        env(&[
            ("BAO_ADDR", "http://127.0.0.1:8200"),
            ("BAO_TOKEN", "root-token"),
        ]),
    )
    .unwrap();
    assert_eq!(settings.address, "http://127.0.0.1:8200");
    assert!(matches!(&settings.login, Login::Token(t) if t.expose() == b"root-token"));
    let printed = format!("{settings:?}");
    assert!(!printed.contains("root-token"), "{printed}");

    let configured = VaultBackendConfig {
        address: Some("https://vault.internal:8200".into()),
        role_id: Some("role".into()),
        secret_id_file: Some("/etc/psst/secret-id".into()),
        ..config()
    };
    let settings = VaultSettings::resolve(
        &configured,
        env(&[("VAULT_ADDR", "http://elsewhere"), ("VAULT_TOKEN", "t")]),
    )
    .unwrap();
    assert_eq!(settings.address, "https://vault.internal:8200");
    assert!(
        matches!(&settings.login, Login::AppRole { mount, role_id, .. } if mount == "approle" && role_id == "role")
    );

    let err = VaultSettings::resolve(&config(), env(&[("VAULT_TOKEN", "t")])).unwrap_err();
    assert!(err.contains("no Vault address"), "{err}");
    let err =
        VaultSettings::resolve(&config(), env(&[("VAULT_ADDR", "http://v:8200")])).unwrap_err();
    assert!(err.contains("no way to log in"), "{err}");
    let err = VaultSettings::resolve(
        &config(),
        env(&[("VAULT_ADDR", "v:8200"), ("VAULT_TOKEN", "t")]),
    )
    .unwrap_err();
    assert!(err.contains("VAULT_ADDR must be an http"), "{err}");
}

#[tokio::test]
async fn an_unreachable_vault_is_unavailable_not_a_failure_at_startup() {
    // Nothing listens on port 1: building works, reading says the backend is down.
    let settings = VaultSettings::resolve(
        &VaultBackendConfig {
            address: Some("http://127.0.0.1:1".into()),
            max_attempts: 2,
            timeout: Duration::from_secs(2),
            ..config()
        },
        env(&[("VAULT_TOKEN", "t")]),
    )
    .unwrap();
    let backend = VaultBackend::new(settings).unwrap();
    let err = backend
        .fetch(&reference("vault:secret/app/db"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
