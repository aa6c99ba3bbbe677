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

use super::{glob_set, CallerSelector, Grant, Operation, Policy, RoleMapping, Rule};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
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
    #[error("policy {origin} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

impl Policy {
    /// Parses and validates a policy. `origin` names it in errors (usually the file path).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim().to_owned(),
        })?;
        let mut problems = Vec::new();
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
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }
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
    };
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
}
