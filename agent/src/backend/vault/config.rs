//! The vault backend type: its reference rules and its `[[backend]]` keys.

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde::Deserialize;

use super::{VaultBackend, VaultSettings};
use crate::{
    agent,
    backend::{
        registry::{self, BackendSettings, BackendType, BuildContext, Dev, DevContext, Registered},
        Backend,
    },
    config::{DEFAULT_VAULT_APPROLE_MOUNT, DEFAULT_VAULT_MAX_ATTEMPTS, DEFAULT_VAULT_TIMEOUT},
    reference::BackendKind,
};

/// `vault:`, in the registry.
pub(crate) const KIND: BackendKind = BackendKind::new(&TYPE);
static TYPE: Registered = Registered(&VaultType);

/// HashiCorp Vault or OpenBao, KV version 2, as a backend type.
struct VaultType;

impl BackendType for VaultType {
    fn prefix(&self) -> &'static str {
        "vault"
    }

    fn check_name(&self, name: &str) -> Result<(), &'static str> {
        let mut segments = name.split('/');
        let mount = segments.next().unwrap_or_default();
        let path: Vec<&str> = segments.collect();
        if mount.is_empty() || path.is_empty() || path.iter().any(|s| s.is_empty()) {
            return Err("must be MOUNT/PATH with no empty segments, e.g. secret/prod/db");
        }
        // The mount too: `vault:../sys/...` would reach past the KV mounts in Vault's URL
        // space (`/v1/../sys/...`), wherever the grant's patterns pointed.
        registry::no_dot_segments(name)
    }

    // Vault's names are URL paths: no step outside.
    fn check_list_prefix(&self, prefix: &str) -> Result<(), &'static str> {
        registry::no_dot_segments(prefix)
    }

    fn parse(&self, table: toml::Value) -> Result<Arc<dyn BackendSettings>, String> {
        registry::parse_table::<VaultBackendConfig>(table)
    }

    /// Served when the environment names both a server and a token, as `bao server -dev`
    /// prints them; the backend reads them again when it is built.
    fn dev(&self, context: &DevContext<'_>) -> Dev {
        if context.var(&["VAULT_ADDR", "BAO_ADDR"]).is_none()
            || context.var(&["VAULT_TOKEN", "BAO_TOKEN"]).is_none()
        {
            return Dev::Off(
                "off in dev mode: set VAULT_ADDR and VAULT_TOKEN (or BAO_ADDR and BAO_TOKEN) \
                 before starting psstd --dev to serve it"
                    .into(),
            );
        }
        Dev::On(Arc::new(VaultBackendConfig {
            ttl: context.ttl,
            ..VaultBackendConfig::default()
        }))
    }
}

/// The keys of the vault backend. Unset address and token fall back to the standard
/// environment (VAULT_ADDR / BAO_ADDR, VAULT_TOKEN / BAO_TOKEN), read when the agent starts.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct VaultBackendConfig {
    /// e.g. "https://vault.internal:8200". Unset: VAULT_ADDR or BAO_ADDR.
    pub address: Option<String>,
    /// Vault Enterprise / OpenBao namespace, sent as X-Vault-Namespace.
    pub namespace: Option<String>,
    /// A file holding the agent's token, re-read when it changes (e.g. written by Vault Agent).
    pub token_file: Option<PathBuf>,
    /// AppRole login: the role id, with `secret_id_file`.
    pub role_id: Option<String>,
    /// AppRole login: a file holding the secret id.
    pub secret_id_file: Option<PathBuf>,
    /// Where the AppRole auth method is mounted.
    pub approle_mount: String,
    /// PEM file of the CA(s) that signed Vault's certificate; replaces the system roots.
    /// Unset: VAULT_CACERT or BAO_CACERT, else the system roots.
    pub ca_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_attempts: u32,
}

impl Default for VaultBackendConfig {
    fn default() -> Self {
        Self {
            address: None,
            namespace: None,
            token_file: None,
            role_id: None,
            secret_id_file: None,
            approle_mount: DEFAULT_VAULT_APPROLE_MOUNT.into(),
            ca_file: None,
            ttl: agent::DEFAULT_TTL,
            timeout: DEFAULT_VAULT_TIMEOUT,
            max_attempts: DEFAULT_VAULT_MAX_ATTEMPTS,
        }
    }
}

impl BackendSettings for VaultBackendConfig {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem = |p: String| problems.push(p);
        if let Some(address) = &self.address {
            if !(address.starts_with("http://") || address.starts_with("https://")) {
                problem(format!(
                    "address must be an http:// or https:// URL, got {address}"
                ));
            }
        }
        match (&self.role_id, &self.secret_id_file) {
            (Some(_), None) => problem("role_id needs secret_id_file (AppRole login)".into()),
            (None, Some(_)) => problem("secret_id_file needs role_id (AppRole login)".into()),
            (Some(_), Some(_)) if self.token_file.is_some() => problem(
                "token_file and role_id/secret_id_file are two ways to log in: configure one"
                    .into(),
            ),
            _ => {}
        }
        if self.role_id.as_deref() == Some("") {
            problem("role_id is empty".into());
        }
        if self.approle_mount.is_empty() || self.approle_mount.contains(['?', '#']) {
            problem(format!(
                "approle_mount '{}' is not a mount path",
                self.approle_mount
            ));
        }
        for (key, path) in [
            ("token_file", &self.token_file),
            ("secret_id_file", &self.secret_id_file),
            ("ca_file", &self.ca_file),
        ] {
            if let Some(path) = path {
                if !path.is_absolute() {
                    problem(format!(
                        "{key} must be an absolute path, got {}",
                        path.display()
                    ));
                }
            }
        }
        if self.max_attempts == 0 {
            problem("max_attempts must be at least 1".into());
        }
        if self.timeout.is_zero() {
            problem("timeout must be more than 0".into());
        }
        problems
    }

    // Address and token may come from the environment; nothing is sent to Vault until the
    // first request.
    fn build(&self, _context: &BuildContext) -> anyhow::Result<Arc<dyn Backend>> {
        let backend = VaultSettings::resolve(self, |name| std::env::var(name).ok())
            .and_then(VaultBackend::new)
            .map_err(|e| anyhow::anyhow!("backend `vault`: {e}"))?;
        Ok(Arc::new(backend))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vault_names_and_selectors_say_what_is_wrong() {
        crate::backend::registry::assert_rejected(&[
            ("vault:secret", "MOUNT/PATH"),
            ("vault:secret/a?version=latest", "does not apply"),
            ("vault:secret/../sys", "'.' or '..'"),
            ("vault:../sys/seal-status", "'.' or '..'"),
            ("vault:./secret/a", "'.' or '..'"),
        ]);
    }
}
