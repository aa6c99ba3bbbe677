use super::*;
use crate::identity::{Caller, IdentitySource};

fn caller(uid: u32) -> Caller {
    Caller {
        uid,
        gid: 100,
        pid: 4242,
        user: Some(format!("user{uid}")),
        group: Some("staff".into()),
        supplementary_gids: vec![27],
        groups: vec!["sudo".into()],
        executable: Some("/opt/billing/bin/server".into()),
        cgroup: Some("/system.slice/billing.service".into()),
        container_id: None,
        pod_uid: Some("8a3d2c1b-4e5f-6789-abcd-ef0123456789".into()),
        systemd_unit: Some("billing.service".into()),
        source: IdentitySource::Process,
        workload: Default::default(),
        via: Default::default(),
    }
}

fn policy(text: &str) -> Policy {
    Policy::from_toml(text, "test").unwrap_or_else(|e| panic!("{e}"))
}

const BILLING: &str = r#"
[[rule]]
name = "billing"
caller = { uid = [1000], executable = ["/opt/billing/bin/*"] }
allow = { read = ["sm:prod/billing/*", "ssm:/prod/billing/**"], list = ["sm:prod/billing/*"] }
"#;

#[test]
fn deny_by_default() {
    let empty = policy("allow_empty = true\n");
    assert_eq!(
        empty.decide(
            &caller(1000),
            Operation::Read,
            crate::backend::local::KIND,
            "x"
        ),
        Decision::Deny
    );
}

#[test]
fn a_rule_allows_only_what_it_names() {
    let p = policy(BILLING);
    let c = caller(1000);
    let allowed = |op, kind, name| p.decide(&c, op, kind, name).is_allowed();
    assert!(allowed(
        Operation::Read,
        crate::backend::sm::KIND,
        "prod/billing/db"
    ));
    assert_eq!(
        p.decide(
            &c,
            Operation::Read,
            crate::backend::sm::KIND,
            "prod/billing/db"
        ),
        Decision::Allow { rule: "billing" }
    );
    assert!(
        !allowed(
            Operation::Read,
            crate::backend::sm::KIND,
            "prod/billing/nested/db"
        ),
        "* stays in a segment"
    );
    assert!(
        allowed(
            Operation::Read,
            crate::backend::ssm::KIND,
            "/prod/billing/a/b"
        ),
        "** spans segments"
    );
    assert!(
        !allowed(
            Operation::Read,
            crate::backend::local::KIND,
            "prod/billing/db"
        ),
        "another backend"
    );
    assert!(
        !allowed(
            Operation::Write,
            crate::backend::sm::KIND,
            "prod/billing/db"
        ),
        "another operation"
    );
    assert!(!allowed(
        Operation::Read,
        crate::backend::sm::KIND,
        "prod/billingx/db"
    ));
    assert!(allowed(
        Operation::List,
        crate::backend::sm::KIND,
        "prod/billing/db"
    ));
}

#[test]
fn every_selector_must_match() {
    let p = policy(BILLING);
    assert!(!p
        .decide(
            &caller(1001),
            Operation::Read,
            crate::backend::sm::KIND,
            "prod/billing/db"
        )
        .is_allowed());
    let mut other_exe = caller(1000);
    other_exe.executable = Some("/usr/bin/python3".into());
    assert!(!p
        .decide(
            &other_exe,
            Operation::Read,
            crate::backend::sm::KIND,
            "prod/billing/db"
        )
        .is_allowed());
}

#[test]
fn process_selectors_never_match_a_uid_only_caller() {
    let p = policy(BILLING);
    let mut blind = caller(1000);
    blind.source = IdentitySource::Uid;
    blind.executable = None;
    assert!(!p
        .decide(
            &blind,
            Operation::Read,
            crate::backend::sm::KIND,
            "prod/billing/db"
        )
        .is_allowed());
    // A uid-only rule still matches it.
    let by_uid = policy(
        r#"
[[rule]]
name = "by uid"
caller = { uid = [1000] }
allow = { read = ["sm:**"] }
"#,
    );
    assert!(by_uid
        .decide(&blind, Operation::Read, crate::backend::sm::KIND, "a/b")
        .is_allowed());
}

#[test]
fn selectors_by_group_pod_unit_and_cgroup() {
    let c = caller(5);
    for selector in [
        r#"group = ["sudo"]"#,
        r#"group = ["staff"]"#,
        "gid = [27]",
        "gid = [100]",
        r#"user = ["user5"]"#,
        r#"pod_uid = ["8a3d2c1b-4e5f-6789-abcd-ef0123456789"]"#,
        r#"systemd_unit = ["billing.*"]"#,
        r#"cgroup = ["/system.slice/*"]"#,
        "any = true",
    ] {
        let p = policy(&format!(
            "[[rule]]\nname = \"r\"\ncaller = {{ {selector} }}\nallow = {{ read = [\"local:*\"] }}\n"
        ));
        assert!(
            p.decide(&c, Operation::Read, crate::backend::local::KIND, "x")
                .is_allowed(),
            "{selector}"
        );
    }
    let p = policy("[[rule]]\nname = \"r\"\ncaller = { container_id = [\"*\"] }\nallow = { read = [\"local:*\"] }\n");
    assert!(
        !p.decide(&c, Operation::Read, crate::backend::local::KIND, "x")
            .is_allowed(),
        "no container"
    );
}

#[test]
fn backend_globs() {
    let p = policy("[[rule]]\nname = \"r\"\ncaller = { uid = [1] }\nallow = { read = [\"*:shared/**\", \"s*:x\"] }\n");
    let c = caller(1);
    for kind in BackendKind::all() {
        assert!(
            p.decide(&c, Operation::Read, kind, "shared/a/b")
                .is_allowed(),
            "{kind}"
        );
    }
    assert!(p
        .decide(&c, Operation::Read, crate::backend::ssm::KIND, "x")
        .is_allowed());
    assert!(p
        .decide(&c, Operation::Read, crate::backend::sm::KIND, "x")
        .is_allowed());
    assert!(!p
        .decide(&c, Operation::Read, crate::backend::local::KIND, "x")
        .is_allowed());
}

#[test]
fn grants_for_whoami() {
    let p = policy(BILLING);
    let grants = p.grants_for(&caller(1000));
    assert_eq!(grants.matched_rules, ["billing"]);
    assert_eq!(
        grants.patterns,
        [
            (
                Operation::Read,
                vec![
                    "sm:prod/billing/*".to_owned(),
                    "ssm:/prod/billing/**".to_owned()
                ]
            ),
            (Operation::List, vec!["sm:prod/billing/*".to_owned()]),
        ]
    );
    assert_eq!(p.grants_for(&caller(1)), Grants::default());
    assert!(p.grants_any(&caller(1000), Operation::List, crate::backend::sm::KIND));
    assert!(!p.grants_any(&caller(1000), Operation::List, crate::backend::ssm::KIND));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[[rule]]
name = "no caller"
caller = {}
allow = { read = ["local:*"] }

[[rule]]
name = "bad pattern"
caller = { uid = [1], executable = ["[oops"] }
allow = { read = ["nobackend", "gcp:x"], write = ["local:a[", "local:ok"] }

[[rule]]
name = "nothing"
caller = { uid = [1] }

[[rule]]
name = "nothing"
caller = { any = true, uid = [2] }
allow = { list = ["local:**"] }
"#;
    let err = Policy::from_toml(text, "policy.toml")
        .unwrap_err()
        .to_string();
    for expected in [
        "rule 'no caller' selects no caller",
        "rule 'bad pattern': caller.executable has a bad glob",
        "pattern 'nobackend' has no backend",
        "rule 'nothing' allows nothing",
        "rule 'nothing' is defined twice",
        "sets caller.any together with other selectors",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let err = Policy::from_toml("[[rule]]\nname = \"a\"\ncaler = {}\n", "p")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `caler`"), "{err}");
}

#[test]
fn reload_keeps_the_old_policy_when_the_new_one_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, BILLING).unwrap();
    let source = PolicySource::from_file(&path).unwrap();
    assert!(!source.reload_if_changed().unwrap(), "unchanged");

    std::fs::write(&path, "[[rule]]\nname = ").unwrap();
    assert!(source.reload_if_changed().is_err());
    assert!(source
        .current()
        .decide(
            &caller(1000),
            Operation::Read,
            crate::backend::sm::KIND,
            "prod/billing/db"
        )
        .is_allowed());
    assert!(
        !source.reload_if_changed().unwrap(),
        "a broken file is reported once"
    );

    // An empty file (a rewrite caught half-way, or a mistake) is refused: the old policy stays.
    std::fs::write(&path, "").unwrap();
    let err = source.reload_if_changed().unwrap_err().to_string();
    assert!(
        err.contains("no rules") && err.contains("allow_empty"),
        "{err}"
    );
    assert_eq!(source.current().rule_count(), 1);
    // Meaning it is allowed.
    std::fs::write(&path, "allow_empty = true\n").unwrap();
    assert!(source.reload_if_changed().unwrap());
    assert_eq!(source.current().rule_count(), 0);
}

#[test]
fn a_policy_without_rules_must_be_meant() {
    for text in ["", "# nothing yet\n", "allow_empty = false\n"] {
        let err = Policy::from_toml(text, "p").unwrap_err().to_string();
        assert!(err.contains("no rules"), "{text:?}: {err}");
    }
    assert_eq!(policy("allow_empty = true\n").rule_count(), 0);
    // With rules, allow_empty changes nothing.
    assert_eq!(
        policy(&format!("allow_empty = true\n{BILLING}")).rule_count(),
        1
    );
}

/// A file rewritten in place, a piece at a time (truncate, then write, as `>` in a shell and
/// many editors do): no reload may take the piece written so far for the whole policy.
#[test]
fn a_file_being_rewritten_is_never_read_half_way() {
    const TWO_RULES: &str = r#"
[[rule]]
name = "first"
caller = { uid = [1] }
allow = { read = ["local:a"] }

[[rule]]
name = "second"
caller = { uid = [2] }
allow = { read = ["local:b"] }
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, TWO_RULES).unwrap();
    let source = PolicySource::from_file(&path).unwrap();
    let split = TWO_RULES.find("[[rule]]\nname = \"second\"").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set when the writer, descheduled on a loaded machine, left the file half-written for
    // longer than the reader's interval: a writer that slow is outside what stable reads
    // promise, and such a round proves nothing either way.
    let overran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, stop, overran) = (
            path.clone(),
            std::sync::Arc::clone(&stop),
            std::sync::Arc::clone(&overran),
        );
        std::thread::spawn(move || {
            use std::io::Write;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut file = std::fs::File::create(&path).unwrap();
                let truncated = std::time::Instant::now();
                file.write_all(&TWO_RULES.as_bytes()[..split]).unwrap();
                // Shorter than the interval between the reader's two reads.
                std::thread::sleep(super::file::STABLE_READ_INTERVAL / 4);
                file.write_all(&TWO_RULES.as_bytes()[split..]).unwrap();
                if truncated.elapsed() >= super::file::STABLE_READ_INTERVAL {
                    overran.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                drop(file);
                std::thread::sleep(super::file::STABLE_READ_INTERVAL / 4);
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        match source.reload() {
            Ok(_) => {}
            // Caught right after the truncation, with the writer descheduled: empty, refused.
            Err(e) => assert!(
                e.to_string().contains("kept changing") || e.to_string().contains("no rules"),
                "{e}"
            ),
        }
        if source.current().rule_count() != 2 {
            // Let the writer finish its round, so a slow one has said so.
            std::thread::sleep(super::file::STABLE_READ_INTERVAL * 2);
            assert!(
                overran.load(std::sync::atomic::Ordering::SeqCst),
                "a half-written file was read, though no rewrite took as long as the interval"
            );
            overran.store(false, std::sync::atomic::Ordering::SeqCst);
            // Until a whole rewrite is taken again.
            let back = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while source.current().rule_count() != 2 && std::time::Instant::now() < back {
                let _ = source.reload();
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    // Once the writer is done, the file is read.
    assert!(source.reload().unwrap());
}

#[test]
fn dev_policy_grants_one_uid_everything() {
    let p = Policy::allow_uid_everything(1000);
    for op in Operation::ALL {
        for kind in BackendKind::all() {
            assert!(p.decide(&caller(1000), op, kind, "/any/name").is_allowed());
            assert!(!p.decide(&caller(1001), op, kind, "/any/name").is_allowed());
        }
    }
}

fn workload_caller() -> Caller {
    use crate::identity::workload::{ContainerWorkload, EcsWorkload, KubernetesWorkload, Workload};
    let mut c = caller(1000);
    c.workload = Workload {
        kubernetes: Some(KubernetesWorkload {
            namespace: "shop".into(),
            service_account: "orders".into(),
            pod_name: "orders-7d4b9c-x2x9k".into(),
            pod_uid: "8a3d2c1b-4e5f-6789-abcd-ef0123456789".into(),
            labels: [("app", "orders"), ("tier", "backend")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            container_name: Some("app".into()),
            container_image: Some("registry.example/orders:1.4".into()),
            container_image_id: Some("registry.example/orders@sha256:abc".into()),
        }),
        ecs: Some(EcsWorkload {
            cluster: "prod".into(),
            task_arn: "arn:aws:ecs:us-west-2:1:task/prod/x".into(),
            task_family: "orders".into(),
            task_revision: "5".into(),
            container_name: "api".into(),
        }),
        container: Some(ContainerWorkload {
            name: "billing-worker-1".into(),
            image: "registry.example/billing:2.1".into(),
            labels: [("team".to_owned(), "payments".to_owned())].into(),
        }),
        failures: Vec::new(),
    };
    c
}

#[test]
fn workload_selectors_match_what_the_attestors_found() {
    let c = workload_caller();
    let decide = |selector: &str, who: &Caller| {
        policy(&format!(
            "[[rule]]\nname = \"r\"\ncaller = {{ {selector} }}\nallow = {{ read = [\"local:*\"] }}\n"
        ))
        .decide(who, Operation::Read, crate::backend::local::KIND, "x")
        .is_allowed()
    };
    for (selector, expected) in [
        (
            r#"k8s_namespace = ["shop"], k8s_service_account = ["orders"]"#,
            true,
        ),
        (
            r#"k8s_namespace = ["shop"], k8s_service_account = ["web"]"#,
            false,
        ),
        (r#"k8s_service_account = ["web", "orders"]"#, true),
        (r#"k8s_pod_name = ["orders-*"]"#, true),
        (r#"k8s_pod_name = ["web-*"]"#, false),
        (r#"k8s_pod_label = ["app=orders", "tier=backend"]"#, true),
        (r#"k8s_pod_label = ["app=orders", "tier=frontend"]"#, false),
        (r#"k8s_pod_label = ["app="]"#, false),
        (r#"k8s_container_name = ["app"]"#, true),
        (
            r#"k8s_container_image = ["registry.example/orders:*"]"#,
            true,
        ),
        (
            r#"k8s_container_image = ["registry.example/orders@sha256:abc"]"#,
            true,
        ),
        (
            r#"k8s_container_image = ["registry.example/other:*"]"#,
            false,
        ),
        (
            r#"ecs_cluster = ["prod"], ecs_task_family = ["orders"]"#,
            true,
        ),
        (r#"ecs_task_family = ["orders:5"]"#, true),
        (r#"ecs_task_family = ["orders:6"]"#, false),
        (r#"ecs_container_name = ["api"]"#, true),
        (
            r#"container_name = ["billing-worker-1"], container_label = ["team=payments"]"#,
            true,
        ),
        (r#"container_label = ["team=payments", "env=prod"]"#, false),
        (r#"container_image = ["registry.example/billing:*"]"#, true),
        (r#"uid = [1000], k8s_namespace = ["other"]"#, false),
    ] {
        assert_eq!(decide(selector, &c), expected, "{selector}");
    }
    // No attributes (attestor off, or the platform did not answer): nothing matches.
    let mut unattested = c.clone();
    unattested.workload = Default::default();
    assert!(!decide(r#"k8s_namespace = ["shop"]"#, &unattested));
    assert!(!decide(r#"ecs_cluster = ["prod"]"#, &unattested));
    assert!(!decide(
        r#"container_name = ["billing-worker-1"]"#,
        &unattested
    ));
    // And a uid-only caller never carries them.
    let mut blind = c;
    blind.source = IdentitySource::Uid;
    assert!(!decide(r#"k8s_namespace = ["shop"]"#, &blind));
}

#[test]
fn bad_workload_selectors_are_reported() {
    let err = Policy::from_toml(
        r#"
[[rule]]
name = "r"
caller = { k8s_pod_label = ["novalue"], container_label = ["=x"], ecs_task_family = ["orders:latest"], k8s_pod_name = ["[bad"] }
allow = { read = ["local:*"] }
"#,
        "test",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "caller.k8s_pod_label must be KEY=VALUE, got novalue",
        "caller.container_label must be KEY=VALUE, got =x",
        "caller.ecs_task_family 'orders:latest' is not FAMILY or FAMILY:REVISION",
        "caller.k8s_pod_name has a bad glob",
    ] {
        assert!(err.contains(expected), "{expected} in {err}");
    }
}

#[test]
fn rules_needing_an_unconfigured_attestor_are_named() {
    use crate::identity::config::Platform;
    let p = policy(
        r#"
[[rule]]
name = "orders"
caller = { k8s_namespace = ["shop"], container_name = ["x"] }
allow = { read = ["local:*"] }
"#,
    );
    assert_eq!(
        p.unattested(&[Platform::Kubernetes]),
        vec!["rule 'orders' selects on caller.container_name but [identity.docker] is not configured"]
    );
    assert!(p
        .unattested(&[Platform::Kubernetes, Platform::Docker])
        .is_empty());
}

const ROLES: &str = r#"
[[rule]]
name = "billing"
caller = { uid = [1000] }
allow = { read = ["sm:prod/billing/*"] }

[[role]]
name = "billing service"
caller = { systemd_unit = ["billing.service"] }
aws_role = "arn:aws:iam::123456789012:role/billing-secrets"
external_id = "psst-host-group-7"

[[role]]
name = "everyone else on uid 1000"
caller = { uid = [1000] }
aws_role = "arn:aws:iam::123456789012:role/path/fallback"
"#;

#[test]
fn the_first_role_mapping_that_selects_a_caller_applies() {
    let p = policy(ROLES);
    let billing = p.role_for(&caller(1000)).expect("mapped");
    assert_eq!(billing.name, "billing service");
    assert_eq!(
        billing.aws_role,
        "arn:aws:iam::123456789012:role/billing-secrets"
    );
    assert_eq!(billing.external_id.as_deref(), Some("psst-host-group-7"));
    let mut other_unit = caller(1000);
    other_unit.systemd_unit = Some("cron.service".into());
    assert_eq!(
        p.role_for(&other_unit).unwrap().name,
        "everyone else on uid 1000"
    );
    let mut unmapped = caller(1001);
    unmapped.systemd_unit = None;
    assert!(p.role_for(&unmapped).is_none());
    // A unit selector needs the process: a uid-only caller does not get the unit's role.
    let uid_only = Caller::uid_only(1000, 100);
    assert_eq!(
        p.role_for(&uid_only).unwrap().name,
        "everyone else on uid 1000"
    );
    // Mappings grant nothing by themselves.
    assert_eq!(
        p.decide(
            &caller(1001),
            Operation::Read,
            crate::backend::sm::KIND,
            "prod/billing/db"
        ),
        Decision::Deny
    );
    assert_eq!(p.role_count(), 2);
}

#[test]
fn bad_role_mappings_are_all_reported() {
    let err = Policy::from_toml(
        r#"
[[role]]
name = "r"
caller = {}
aws_role = "arn:aws:iam::123:user/bob"
external_id = "x"

[[role]]
name = "r"
caller = { uid = [1] }
aws_role = "arn:aws:s3:::bucket"
"#,
        "test",
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "role 'r' selects no caller",
        "aws_role 'arn:aws:iam::123:user/bob' is not an IAM role ARN",
        "external_id must be 2 to 1224 characters",
        "role 'r' is defined twice",
        "aws_role 'arn:aws:s3:::bucket' is not an IAM role ARN",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let unknown = Policy::from_toml(
        "[[role]]\nname = \"r\"\ncaller = { uid = [1] }\naws_role = \"arn:aws:iam::123456789012:role/a\"\nduration = \"1h\"\n",
        "test",
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("unknown field `duration`"), "{unknown}");
}

#[test]
fn role_arns() {
    for good in [
        "arn:aws:iam::123456789012:role/a",
        "arn:aws-us-gov:iam::123456789012:role/path/to/name+=,.@_-",
        "arn:aws-cn:iam::123456789012:role/x",
    ] {
        assert!(file::is_role_arn(good), "{good}");
    }
    for bad in [
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/a/",
        "arn:aws:iam::12345678901:role/a",
        "arn:aws:iam:us-east-1:123456789012:role/a",
        "arn:aws:sts::123456789012:assumed-role/a/b",
        "arn:aws:iam::123456789012:role/a b",
        "role/a",
    ] {
        assert!(!file::is_role_arn(bad), "{bad}");
    }
}
