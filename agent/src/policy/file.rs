//! The policy file: TOML, unknown keys rejected, every problem reported at once.
//!
//! ```toml
//! [[rule]]
//! name = "billing service reads its database password"
//! caller = { user = ["billing"], executable = ["/opt/billing/bin/*"] }
//! allow = { read = ["sm:prod/billing/*"], list = ["sm:prod/billing/*"] }
//!
//! [[role]]
//! name = "billing reads AWS as billing"
//! caller = { user = ["billing"] }
//! aws_role = "arn:aws:iam::123456789012:role/billing-secrets"
//! ```

use serde::Deserialize;

use super::{
    glob_set,
    workload::{labels, task_family, WorkloadSelector},
    CallerSelector, Grant, Operation, Policy, RoleMapping, Rule,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// A policy without rules denies everything and ends every watch. That is what an empty file
    /// says, and an empty file is more often a rewrite caught half-way: it must be meant.
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    rule: Vec<RuleFile>,
    #[serde(default)]
    role: Vec<RoleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    name: String,
    caller: CallerFile,
    aws_role: String,
    external_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    caller: CallerFile,
    #[serde(default)]
    allow: AllowFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerFile {
    /// Matches every local process. Must be said explicitly: an empty selector is an error.
    #[serde(default)]
    any: bool,
    #[serde(default)]
    uid: Vec<u32>,
    #[serde(default)]
    user: Vec<String>,
    #[serde(default)]
    gid: Vec<u32>,
    /// Primary or supplementary group name.
    #[serde(default)]
    group: Vec<String>,
    #[serde(default)]
    executable: Vec<String>,
    #[serde(default)]
    cgroup: Vec<String>,
    #[serde(default)]
    container_id: Vec<String>,
    #[serde(default)]
    pod_uid: Vec<String>,
    #[serde(default)]
    systemd_unit: Vec<String>,
    #[serde(default)]
    k8s_namespace: Vec<String>,
    #[serde(default)]
    k8s_service_account: Vec<String>,
    /// Globs.
    #[serde(default)]
    k8s_pod_name: Vec<String>,
    /// `key=value`; every one must hold.
    #[serde(default)]
    k8s_pod_label: Vec<String>,
    #[serde(default)]
    k8s_container_name: Vec<String>,
    /// Globs, matched against the image and the image with its digest.
    #[serde(default)]
    k8s_container_image: Vec<String>,
    #[serde(default)]
    ecs_cluster: Vec<String>,
    /// `family` or `family:revision`.
    #[serde(default)]
    ecs_task_family: Vec<String>,
    #[serde(default)]
    ecs_container_name: Vec<String>,
    #[serde(default)]
    container_name: Vec<String>,
    /// Globs.
    #[serde(default)]
    container_image: Vec<String>,
    /// `key=value`; every one must hold.
    #[serde(default)]
    container_label: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFile {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    list: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    #[serde(default)]
    watch: Vec<String>,
    #[serde(default)]
    rotate: Vec<String>,
    #[serde(default)]
    admin: Vec<String>,
}

/// A policy that could not be loaded. Lists every problem found.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("policy {origin} is not valid TOML or has unknown keys: {message}")]
    Syntax { origin: String, message: String },
    #[error("policy {path} kept changing while it was read; it is read again when it settles")]
    Unstable { path: String },
    #[error("policy {origin} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

impl PolicyError {
    /// What is wrong, without the file's path: for callers (Admin's ReloadPolicy), who learn
    /// what to fix but not where the agent keeps its files.
    pub fn reason(&self) -> String {
        match self {
            Self::Read { source, .. } => format!("cannot read the policy file: {source}"),
            Self::Unstable { .. } => "the policy file kept changing while it was read".into(),
            Self::Syntax { message, .. } => {
                format!("the policy is not valid TOML or has unknown keys: {message}")
            }
            Self::Invalid { problems, .. } => format!(
                "the policy has {} problem(s): {}",
                problems.len(),
                problems.join("; ")
            ),
        }
    }
}

impl Policy {
    /// Parses and validates a policy. `origin` names it in errors (usually the file path).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim().to_owned(),
        })?;
        let mut problems = Vec::new();
        if file.rule.is_empty() && !file.allow_empty {
            problems.push(
                "it has no rules, so it would deny every caller and end every watch: add a \
                 [[rule]], or set `allow_empty = true` if that is what you mean"
                    .to_owned(),
            );
        }
        let mut rules = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, rule) in file.rule.into_iter().enumerate() {
            let label = if rule.name.is_empty() {
                format!("rule #{}", i + 1)
            } else {
                format!("rule '{}'", rule.name)
            };
            if rule.name.is_empty() {
                problems.push(format!("{label} has an empty name"));
            } else if !names.insert(rule.name.clone()) {
                problems.push(format!("{label} is defined twice"));
            }
            let selector = compile_selector(&label, &rule.caller, &mut problems);
            let allow = &rule.allow;
            let grants = [
                &allow.read,
                &allow.list,
                &allow.write,
                &allow.watch,
                &allow.rotate,
                &allow.admin,
            ]
            .map(|patterns| {
                Grant::compile(patterns).unwrap_or_else(|e| {
                    problems.push(format!("{label}: {e}"));
                    Grant::default()
                })
            });
            debug_assert_eq!(grants.len(), Operation::ALL.len());
            if grants.iter().all(|g| g.patterns.is_empty()) {
                problems.push(format!(
                    "{label} allows nothing: add allow.read, list, write, watch, rotate or admin"
                ));
            }
            rules.push(Rule {
                name: rule.name,
                selector,
                grants,
            });
        }
        let mut roles = Vec::new();
        let mut role_names = std::collections::HashSet::new();
        for (i, role) in file.role.into_iter().enumerate() {
            let label = if role.name.is_empty() {
                format!("role #{}", i + 1)
            } else {
                format!("role '{}'", role.name)
            };
            if role.name.is_empty() {
                problems.push(format!("{label} has an empty name"));
            } else if !role_names.insert(role.name.clone()) {
                problems.push(format!("{label} is defined twice"));
            }
            let selector = compile_selector(&label, &role.caller, &mut problems);
            if !is_role_arn(&role.aws_role) {
                problems.push(format!(
                    "{label}: aws_role '{}' is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
                    role.aws_role
                ));
            }
            if let Some(external_id) = &role.external_id {
                if !is_external_id(external_id) {
                    problems.push(format!(
                        "{label}: external_id must be 2 to 1224 characters of letters, digits and +=,.@:/-"
                    ));
                }
            }
            roles.push(RoleMapping {
                name: role.name,
                aws_role: role.aws_role,
                external_id: role.external_id,
                selector,
            });
        }
        if problems.is_empty() {
            Ok(Policy { rules, roles })
        } else {
            Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, PolicyError> {
        let text = read_stable(path)?;
        Self::from_toml(&text, &path.display().to_string())
    }
}

/// Time between the two reads of a policy file that must agree: longer than a writer pauses
/// between two writes of one rewrite.
pub(super) const STABLE_READ_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
/// Reads of a policy file before giving up on one that keeps changing (about a second).
const STABLE_READ_ATTEMPTS: u32 = 20;

/// What one read of a file saw: its bytes, and its size and modification time if they did not
/// change while it was read.
type Reading = (Vec<u8>, Option<(u64, std::time::SystemTime)>);

/// The file's text once two reads `STABLE_READ_INTERVAL` apart agree (same bytes, same size and
/// modification time), so a file rewritten in place (truncated, then written) is never taken
/// half-written. A rename into place is atomic and agrees at once.
fn read_stable(path: &std::path::Path) -> Result<String, PolicyError> {
    let read = || -> std::io::Result<Reading> {
        let before = std::fs::metadata(path)?;
        let bytes = std::fs::read(path)?;
        let after = std::fs::metadata(path)?;
        let stamp = |m: &std::fs::Metadata| (m.len(), m.modified().ok());
        let settled = (stamp(&before) == stamp(&after) && after.len() == bytes.len() as u64)
            .then(|| after.modified().ok().map(|t| (after.len(), t)))
            .flatten();
        Ok((bytes, settled))
    };
    let failed = |source| PolicyError::Read {
        path: path.display().to_string(),
        source,
    };
    let wait = || match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        // On the agent's runtime: let the other tasks of this worker move to another one.
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            tokio::task::block_in_place(|| std::thread::sleep(STABLE_READ_INTERVAL))
        }
        _ => std::thread::sleep(STABLE_READ_INTERVAL),
    };
    let mut last = read().map_err(failed)?;
    for _ in 0..STABLE_READ_ATTEMPTS {
        wait();
        let next = read().map_err(failed)?;
        if next.1.is_some() && next == last {
            return String::from_utf8(next.0).map_err(|_| PolicyError::Syntax {
                origin: path.display().to_string(),
                message: "the file is not UTF-8 text".into(),
            });
        }
        last = next;
    }
    Err(PolicyError::Unstable {
        path: path.display().to_string(),
    })
}

/// A rule's or role mapping's `caller`, compiled; its problems go to `problems`.
fn compile_selector(label: &str, c: &CallerFile, problems: &mut Vec<String>) -> CallerSelector {
    let mut compile_set = |what: &str, patterns: &[String]| match glob_set(patterns) {
        Ok(set) => set,
        Err(e) => {
            problems.push(format!("{label}: caller.{what} has a bad glob {e}"));
            None
        }
    };
    let selector = CallerSelector {
        any: c.any,
        executables: compile_set("executable", &c.executable),
        cgroups: compile_set("cgroup", &c.cgroup),
        container_ids: compile_set("container_id", &c.container_id),
        systemd_units: compile_set("systemd_unit", &c.systemd_unit),
        uids: c.uid.clone(),
        users: c.user.clone(),
        gids: c.gid.clone(),
        groups: c.group.clone(),
        pod_uids: c.pod_uid.clone(),
        workload: WorkloadSelector {
            k8s_namespaces: c.k8s_namespace.clone(),
            k8s_service_accounts: c.k8s_service_account.clone(),
            k8s_pod_names: compile_set("k8s_pod_name", &c.k8s_pod_name),
            k8s_container_names: c.k8s_container_name.clone(),
            k8s_container_images: compile_set("k8s_container_image", &c.k8s_container_image),
            ecs_clusters: c.ecs_cluster.clone(),
            ecs_container_names: c.ecs_container_name.clone(),
            container_names: c.container_name.clone(),
            container_images: compile_set("container_image", &c.container_image),
            k8s_pod_labels: Vec::new(),
            ecs_task_families: Vec::new(),
            container_labels: Vec::new(),
        },
    };
    let mut selector = selector;
    for (what, items, into) in [
        (
            "k8s_pod_label",
            &c.k8s_pod_label,
            &mut selector.workload.k8s_pod_labels,
        ),
        (
            "container_label",
            &c.container_label,
            &mut selector.workload.container_labels,
        ),
    ] {
        match labels(items) {
            Ok(pairs) => *into = pairs,
            Err(bad) => problems.push(format!(
                "{label}: caller.{what} must be KEY=VALUE, got {}",
                bad.join(", ")
            )),
        }
    }
    for item in &c.ecs_task_family {
        match task_family(item) {
            Ok(family) => selector.workload.ecs_task_families.push(family),
            Err(e) => problems.push(format!("{label}: caller.ecs_task_family {e}")),
        }
    }
    if selector.is_empty() {
        problems.push(format!(
            "{label} selects no caller: set caller.uid, user, executable, ... or `any = true` to grant every local process"
        ));
    } else if selector.any && !selector_is_only_any(c) {
        problems.push(format!(
            "{label} sets caller.any together with other selectors: `any` would ignore them"
        ));
    }
    selector
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, as IAM spells role ARNs.
pub(super) fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:") else {
        return false;
    };
    let mut parts = rest.splitn(5, ':');
    let (Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let name_chars = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c);
    partition.starts_with("aws")
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty() && !n.ends_with('/') && n.chars().all(name_chars))
        && arn.len() <= 2048
}

/// STS's `ExternalId` alphabet and length.
fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c))
}

fn selector_is_only_any(c: &CallerFile) -> bool {
    c.uid.is_empty()
        && c.user.is_empty()
        && c.gid.is_empty()
        && c.group.is_empty()
        && c.executable.is_empty()
        && c.cgroup.is_empty()
        && c.container_id.is_empty()
        && c.pod_uid.is_empty()
        && c.systemd_unit.is_empty()
        && c.k8s_namespace.is_empty()
        && c.k8s_service_account.is_empty()
        && c.k8s_pod_name.is_empty()
        && c.k8s_pod_label.is_empty()
        && c.k8s_container_name.is_empty()
        && c.k8s_container_image.is_empty()
        && c.ecs_cluster.is_empty()
        && c.ecs_task_family.is_empty()
        && c.ecs_container_name.is_empty()
        && c.container_name.is_empty()
        && c.container_image.is_empty()
        && c.container_label.is_empty()
}
