//! Policy: which caller may do what to which secret. Deny by default: a request is allowed only
//! when a rule selects the caller and grants the operation on a pattern matching the secret.
//!
//! The file format (TOML) and its validation are in `file.rs`; live reloading in `source.rs`.
//!
//! Patterns are `BACKEND:NAME` globs. The backend part is matched against the prefix
//! (`sm`, `local`, or a glob such as `*`); the name part against the secret's name, where `*`
//! stays inside one `/` segment and `**` spans segments. A grant covers every version and JSON key
//! of the secrets it matches.

mod file;
mod source;
mod workload;

use std::fmt;

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

pub use file::PolicyError;
pub use source::PolicySource;

use crate::{
    identity::{config::Platform, Caller, IdentitySource},
    reference::BackendKind,
};

/// Operations a rule can grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    List,
    Write,
    /// WatchSecrets: be told about new versions (and get them).
    Watch,
    /// RotateSecret: make a generated value the current version.
    Rotate,
    /// The Admin service: invalidate cached values (of matching secrets), stats, reload.
    Admin,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Self::Read,
        Self::List,
        Self::Write,
        Self::Watch,
        Self::Rotate,
        Self::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Write => "write",
            Self::Watch => "watch",
            Self::Rotate => "rotate",
            Self::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loaded, validated policy.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    roles: Vec<RoleMapping>,
}

/// `[[role]]`: the IAM role the callers it selects read AWS under (`backend/aws/role/`).
/// The first mapping that selects a caller applies to every AWS read, write, watch and rotation
/// of that caller, whichever rule allowed it: so IAM checks every grant the policy makes.
#[derive(Debug)]
pub struct RoleMapping {
    pub name: String,
    pub aws_role: String,
    pub external_id: Option<String>,
    selector: CallerSelector,
}

/// The outcome of a policy check, with the rule that allowed it (for the audit log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'p> {
    Allow { rule: &'p str },
    Deny,
}

impl Decision<'_> {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// What the policy grants one caller (for `WhoAmI`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub matched_rules: Vec<String>,
    /// Per operation, the patterns granted, in rule order.
    pub patterns: Vec<(Operation, Vec<String>)>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    selector: CallerSelector,
    grants: [Grant; 6],
}

/// Which callers a rule applies to. Every field that is set must match; a list matches when
/// any of its items does. `any` matches every caller.
#[derive(Debug, Default)]
struct CallerSelector {
    any: bool,
    uids: Vec<u32>,
    users: Vec<String>,
    gids: Vec<u32>,
    groups: Vec<String>,
    executables: Option<GlobSet>,
    cgroups: Option<GlobSet>,
    container_ids: Option<GlobSet>,
    pod_uids: Vec<String>,
    systemd_units: Option<GlobSet>,
    workload: workload::WorkloadSelector,
}

/// The patterns one operation is granted on, compiled per backend.
#[derive(Debug, Default)]
struct Grant {
    patterns: Vec<String>,
    by_backend: Vec<(BackendKind, GlobSet)>,
}

impl Policy {
    /// The dev-mode policy: the given uid may do everything, on every backend.
    pub fn allow_uid_everything(uid: u32) -> Self {
        let everything = ["*:**".to_owned()];
        let rule = Rule {
            name: format!("dev: uid {uid} may do everything"),
            selector: CallerSelector {
                uids: vec![uid],
                ..CallerSelector::default()
            },
            grants: Operation::ALL.map(|_| Grant::compile(&everything).expect("valid pattern")),
        };
        Self {
            rules: vec![rule],
            roles: Vec::new(),
        }
    }

    /// The IAM role a caller reads AWS under: the first `[[role]]` that selects it.
    pub fn role_for(&self, caller: &Caller) -> Option<&RoleMapping> {
        self.roles.iter().find(|r| r.selector.selects(caller))
    }

    pub fn role_count(&self) -> usize {
        self.roles.len()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// What is wrong with using this policy when only `configured` platforms have an attestor:
    /// one line per rule that selects on a platform nobody attests (such a rule never matches).
    pub fn unattested(&self, configured: &[Platform]) -> Vec<String> {
        let mut problems = Vec::new();
        for rule in &self.rules {
            for (platform, keys) in rule.selector.workload.platforms() {
                if !configured.contains(&platform) {
                    problems.push(format!(
                        "rule '{}' selects on caller.{} but {} is not configured",
                        rule.name,
                        keys.join(", caller."),
                        platform.section()
                    ));
                }
            }
        }
        problems
    }

    pub fn decide(
        &self,
        caller: &Caller,
        op: Operation,
        backend: BackendKind,
        name: &str,
    ) -> Decision<'_> {
        self.rules
            .iter()
            .find(|rule| {
                rule.selector.selects(caller) && rule.grants[op.index()].allows(backend, name)
            })
            .map_or(Decision::Deny, |rule| Decision::Allow { rule: &rule.name })
    }

    /// Whether any rule grants `op` to this caller on any backend.
    pub fn grants_anywhere(&self, caller: &Caller, op: Operation) -> bool {
        BackendKind::all().any(|kind| self.grants_any(caller, op, kind))
    }

    /// Whether any rule grants `op` to this caller at all: lets a listing be refused before
    /// the backend is asked.
    pub fn grants_any(&self, caller: &Caller, op: Operation, backend: BackendKind) -> bool {
        self.rules.iter().any(|rule| {
            rule.selector.selects(caller)
                && rule.grants[op.index()]
                    .by_backend
                    .iter()
                    .any(|(kind, _)| *kind == backend)
        })
    }

    pub fn grants_for(&self, caller: &Caller) -> Grants {
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.selector.selects(caller))
            .collect();
        Grants {
            matched_rules: matching.iter().map(|r| r.name.clone()).collect(),
            patterns: Operation::ALL
                .iter()
                .map(|op| {
                    let patterns = matching
                        .iter()
                        .flat_map(|r| r.grants[op.index()].patterns.iter().cloned())
                        .collect();
                    (*op, patterns)
                })
                .filter(|(_, p): &(Operation, Vec<String>)| !p.is_empty())
                .collect(),
        }
    }
}

impl CallerSelector {
    fn is_empty(&self) -> bool {
        !self.any
            && self.uids.is_empty()
            && self.users.is_empty()
            && self.gids.is_empty()
            && self.groups.is_empty()
            && self.executables.is_none()
            && self.cgroups.is_none()
            && self.container_ids.is_none()
            && self.pod_uids.is_empty()
            && self.systemd_units.is_none()
            && self.workload.is_empty()
    }

    fn needs_process(&self) -> bool {
        self.executables.is_some()
            || self.cgroups.is_some()
            || self.container_ids.is_some()
            || !self.pod_uids.is_empty()
            || self.systemd_units.is_some()
            || !self.workload.is_empty()
    }

    fn selects(&self, caller: &Caller) -> bool {
        if self.any {
            return true;
        }
        // Process selectors cannot be checked for a caller known only by uid: fail closed.
        if self.needs_process() && caller.source != IdentitySource::Process {
            return false;
        }
        let glob = |set: &Option<GlobSet>, value: &Option<String>| match set {
            None => true,
            Some(set) => value.as_deref().is_some_and(|v| set.is_match(v)),
        };
        (self.uids.is_empty() || self.uids.contains(&caller.uid))
            && (self.users.is_empty()
                || caller.user.as_ref().is_some_and(|u| self.users.contains(u)))
            && (self.gids.is_empty()
                || self.gids.contains(&caller.gid)
                || caller
                    .supplementary_gids
                    .iter()
                    .any(|g| self.gids.contains(g)))
            && (self.groups.is_empty()
                || caller
                    .group
                    .as_ref()
                    .is_some_and(|g| self.groups.contains(g))
                || caller.groups.iter().any(|g| self.groups.contains(g)))
            && glob(&self.executables, &caller.executable)
            && glob(&self.cgroups, &caller.cgroup)
            && glob(&self.container_ids, &caller.container_id)
            && (self.pod_uids.is_empty()
                || caller
                    .pod_uid
                    .as_ref()
                    .is_some_and(|p| self.pod_uids.contains(p)))
            && glob(&self.systemd_units, &caller.systemd_unit)
            && self.workload.selects(&caller.workload)
    }
}

impl Grant {
    fn compile(patterns: &[String]) -> Result<Self, String> {
        let mut per_backend: Vec<(BackendKind, GlobSetBuilder)> = Vec::new();
        for pattern in patterns {
            let (backend_glob, name_glob) = pattern.split_once(':').ok_or_else(|| {
                format!("pattern '{pattern}' has no backend: write BACKEND:NAME, e.g. sm:prod/*")
            })?;
            let backend_matcher =
                glob(backend_glob).map_err(|e| format!("pattern '{pattern}': {e}"))?;
            let kinds: Vec<BackendKind> = BackendKind::all()
                .filter(|k| backend_matcher.is_match(k.prefix()))
                .collect();
            if kinds.is_empty() {
                return Err(format!(
                    "pattern '{pattern}' names no backend: expected {} or a glob",
                    BackendKind::prefixes()
                ));
            }
            let name = GlobBuilder::new(name_glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("pattern '{pattern}': {}", e.kind()))?;
            for kind in kinds {
                match per_backend.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, builder)) => {
                        builder.add(name.clone());
                    }
                    None => {
                        let mut builder = GlobSetBuilder::new();
                        builder.add(name.clone());
                        per_backend.push((kind, builder));
                    }
                }
            }
        }
        let by_backend = per_backend
            .into_iter()
            .map(|(kind, builder)| Ok((kind, builder.build().map_err(|e| e.to_string())?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            patterns: patterns.to_vec(),
            by_backend,
        })
    }

    fn allows(&self, backend: BackendKind, name: &str) -> bool {
        self.by_backend
            .iter()
            .any(|(kind, set)| *kind == backend && set.is_match(name))
    }
}

fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

fn glob_set(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(
            GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("'{p}': {}", e.kind()))?,
        );
    }
    builder.build().map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
