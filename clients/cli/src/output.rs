//! What `--output json` prints: one JSON value per line, field names as in the proto
//! (snake_case), times as RFC 3339 strings (null when unknown).

use std::time::SystemTime;

use base64::Engine as _;
use psst_client::{Secret, SecretMetadata, WatchEvent, Written};
use serde_json::{json, Value};

/// A secret with its metadata. The value is a JSON string: its text when it is UTF-8, else its
/// base64, and `value_encoding` says which (`"utf8"` or `"base64"`).
pub fn secret(s: &Secret) -> Value {
    let (value, encoding) = match s.value_str() {
        Some(text) => (text.to_owned(), "utf8"),
        None => (
            base64::engine::general_purpose::STANDARD.encode(s.value()),
            "base64",
        ),
    };
    json!({
        "reference": s.reference,
        "value": value,
        "value_encoding": encoding,
        "version_id": s.version_id,
        "stages": s.stages,
        "created_at": time(s.created_at),
        "cache": {
            "hit": s.cache.hit,
            "stale": s.cache.stale,
            "fetched_at": time(s.cache.fetched_at),
            "expires_at": time(s.cache.expires_at),
        },
    })
}

/// A failed item of a batch: the code as gRPC names it, and the agent's message.
pub fn item_error(reference: &str, e: &psst_client::Error) -> Value {
    json!({
        "reference": reference,
        "error": {
            "code": psst_client::code_name(e.code()),
            "message": e.message(),
        },
    })
}

/// One event of `psst watch`; the value only when asked for.
pub fn watch_event(e: &WatchEvent, with_values: bool) -> Value {
    let mut event = json!({
        "reference": e.reference,
        "kind": e.kind.as_str_name(),
        "version_id": e.secret.as_ref().map(|s| s.version_id.clone()),
        "previous_version_id": e.previous_version_id,
        "pending_version_id": e.pending_version_id,
    });
    if with_values {
        if let Some(s) = &e.secret {
            event["secret"] = secret(s);
        }
    }
    event
}

pub fn rotated(r: &psst_client::Rotated) -> Value {
    json!({
        "reference": r.reference,
        "version_id": r.version_id,
        "previous_version_id": r.previous_version_id,
        "delegated": r.delegated,
    })
}

pub fn metadata(m: &SecretMetadata) -> Value {
    json!({
        "reference": m.reference,
        "version_id": m.version_id,
        "updated_at": time(m.updated_at),
    })
}

pub fn written(w: &Written) -> Value {
    json!({
        "reference": w.reference,
        "version_id": w.version_id,
        "created_at": time(w.created_at),
    })
}

pub fn whoami(who: &psst_client::Identity) -> Value {
    let c = &who.caller;
    json!({
        "caller": {
            "uid": c.uid,
            "gid": c.gid,
            "pid": c.pid,
            "user": c.user,
            "group": c.group,
            "supplementary_gids": c.supplementary_gids,
            "executable": c.executable,
            "cgroup": c.cgroup,
            "container_id": c.container_id,
            "pod_uid": c.pod_uid,
            "systemd_unit": c.systemd_unit,
            "identity_source": c.identity_source,
            "kubernetes": c.kubernetes.as_ref().map(|k| json!({
                "namespace": k.namespace,
                "service_account": k.service_account,
                "pod_name": k.pod_name,
                "pod_uid": k.pod_uid,
                "labels": k.labels,
                "container_name": k.container_name,
                "container_image": k.container_image,
                "container_image_id": k.container_image_id,
            })),
            "ecs": c.ecs.as_ref().map(|e| json!({
                "cluster": e.cluster,
                "task_arn": e.task_arn,
                "task_family": e.task_family,
                "task_revision": e.task_revision,
                "container_name": e.container_name,
            })),
            "container": c.container.as_ref().map(|d| json!({
                "name": d.name,
                "image": d.image,
                "labels": d.labels,
            })),
            "attestation_failures": c.attestation_failures,
        },
        "grants": who.grants.iter().map(|g| json!({
            "operation": g.operation,
            "patterns": g.patterns,
        })).collect::<Vec<_>>(),
        "matched_rules": who.matched_rules,
        "aws_role": who.aws_role.as_ref().map(|r| json!({
            "role_arn": r.role_arn,
            "session_name": r.session_name,
            "session_tags": r.session_tags,
            "mapping": r.mapping,
        })),
    })
}

/// The aligned, human form of `whoami`.
pub fn whoami_text(who: &psst_client::Identity) -> String {
    let c = &who.caller;
    let named = |id: u32, name: &str| {
        if name.is_empty() {
            id.to_string()
        } else {
            format!("{id} ({name})")
        }
    };
    let mut lines = vec![
        format!("uid       {}", named(c.uid, &c.user)),
        format!("gid       {}", named(c.gid, &c.group)),
        format!("pid       {}", c.pid),
        format!("identity  {}", c.identity_source),
    ];
    for (label, value) in [
        ("exe", &c.executable),
        ("cgroup", &c.cgroup),
        ("container", &c.container_id),
        ("pod", &c.pod_uid),
        ("unit", &c.systemd_unit),
    ] {
        if !value.is_empty() {
            lines.push(format!("{label:<9} {value}"));
        }
    }
    let labels = |labels: &std::collections::HashMap<String, String>| {
        let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs.join(",")
    };
    if let Some(k) = &c.kubernetes {
        lines.push(format!(
            "k8s       namespace={} service_account={} pod={}",
            k.namespace, k.service_account, k.pod_name
        ));
        if !k.labels.is_empty() {
            lines.push(format!("k8s       labels {}", labels(&k.labels)));
        }
        if !k.container_name.is_empty() {
            let image = if k.container_image_id.is_empty() {
                &k.container_image
            } else {
                &k.container_image_id
            };
            lines.push(format!(
                "k8s       container={} image={image}",
                k.container_name
            ));
        }
    }
    if let Some(e) = &c.ecs {
        lines.push(format!(
            "ecs       cluster={} task={}:{} container={}",
            e.cluster, e.task_family, e.task_revision, e.container_name
        ));
    }
    if let Some(d) = &c.container {
        lines.push(format!("docker    name={} image={}", d.name, d.image));
        if !d.labels.is_empty() {
            lines.push(format!("docker    labels {}", labels(&d.labels)));
        }
    }
    for failure in &c.attestation_failures {
        lines.push(format!("attest    {failure}"));
    }
    lines.push(format!(
        "rules     {}",
        if who.matched_rules.is_empty() {
            "(none: everything is denied)".to_owned()
        } else {
            who.matched_rules.join("; ")
        }
    ));
    lines.push(format!(
        "aws role  {}",
        match &who.aws_role {
            Some(r) => format!(
                "{} as {} ([[role]] {})",
                r.role_arn, r.session_name, r.mapping
            ),
            None => "(none: AWS reads use the agent's own credentials)".to_owned(),
        }
    ));
    for grant in &who.grants {
        lines.push(format!(
            "{:<9} {}",
            grant.operation,
            grant.patterns.join(" ")
        ));
    }
    lines.join("\n")
}

fn time(t: Option<SystemTime>) -> Value {
    match t {
        Some(t) => Value::String(prost_types::Timestamp::from(t).to_string()),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_rfc3339_or_null() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(time(Some(t)), json!("2023-11-14T22:13:20.250Z"));
        assert_eq!(time(None), Value::Null);
    }

    #[test]
    fn batch_errors_name_the_code_as_grpc_does() {
        let e = psst_client::Error::new(psst_client::Code::NotFound, "secret local:x not found");
        assert_eq!(
            item_error("local:x", &e),
            json!({"reference": "local:x", "error": {"code": "NOT_FOUND", "message": "secret local:x not found"}})
        );
    }
}
