//! The `[identity]` section: how long identifying a caller may take, and the workload attestors,
//! each off unless its table is present.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// How long identifying one connection's caller may take, attestation included.
pub(crate) const DEFAULT_IDENTITY_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_KUBELET_URL: &str = "https://127.0.0.1:10250";
pub(crate) const DEFAULT_APISERVER_URL: &str = "https://kubernetes.default.svc";
pub(crate) const DEFAULT_K8S_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
pub(crate) const DEFAULT_K8S_TOKEN_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The environment variable the DaemonSet fills with the node's name (downward API).
pub(crate) const DEFAULT_NODE_NAME_ENV: &str = "NODE_NAME";
/// How long one platform request may take.
pub(crate) const DEFAULT_ATTESTOR_TIMEOUT: Duration = Duration::from_secs(2);
/// The least time between two refreshes of the node's pod list.
pub(crate) const DEFAULT_K8S_REFRESH_INTERVAL: Duration = Duration::from_millis(500);
pub(crate) const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub(crate) const DEFAULT_ECS_AGENT_URL: &str = "http://127.0.0.1:51678";
/// How long a container's or task's attributes are kept (they do not change while it runs).
pub(crate) const DEFAULT_CONTAINER_CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub nss_timeout: Duration,
    pub kubernetes: Option<KubernetesConfig>,
    pub ecs: Option<EcsConfig>,
    pub docker: Option<DockerConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_IDENTITY_TIMEOUT,
            nss_timeout: super::DEFAULT_NSS_TIMEOUT,
            kubernetes: None,
            ecs: None,
            docker: None,
        }
    }
}

/// Where the pods on this node are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSource {
    /// The kubelet's `/pods` (RBAC: `nodes/proxy`).
    Kubelet,
    /// The API server's `/api/v1/pods?fieldSelector=spec.nodeName=NODE` (RBAC: list pods).
    Apiserver,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    pub source: PodSource,
    pub kubelet_url: String,
    pub apiserver_url: String,
    /// The node's name for `source = "apiserver"`. Unset: the environment variable `node_name_env`.
    pub node_name: Option<String>,
    pub node_name_env: String,
    /// PEM file of the CA that signed the kubelet's (or API server's) serving certificate.
    pub ca_file: PathBuf,
    /// The name the serving certificate must carry, when it is not the URL's host (a kubelet
    /// reached on 127.0.0.1 whose certificate names the node).
    pub tls_server_name: Option<String>,
    /// The service account token, re-read on every refresh (projected tokens rotate).
    pub token_file: PathBuf,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            source: PodSource::Kubelet,
            kubelet_url: DEFAULT_KUBELET_URL.into(),
            apiserver_url: DEFAULT_APISERVER_URL.into(),
            node_name: None,
            node_name_env: DEFAULT_NODE_NAME_ENV.into(),
            ca_file: DEFAULT_K8S_CA_FILE.into(),
            tls_server_name: None,
            token_file: DEFAULT_K8S_TOKEN_FILE.into(),
            timeout: DEFAULT_ATTESTOR_TIMEOUT,
            refresh_interval: DEFAULT_K8S_REFRESH_INTERVAL,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    pub socket: PathBuf,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            socket: DEFAULT_DOCKER_SOCKET.into(),
            timeout: DEFAULT_ATTESTOR_TIMEOUT,
            cache_ttl: DEFAULT_CONTAINER_CACHE_TTL,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EcsConfig {
    /// The ECS container agent's introspection API.
    pub agent_url: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for EcsConfig {
    fn default() -> Self {
        Self {
            agent_url: DEFAULT_ECS_AGENT_URL.into(),
            timeout: DEFAULT_ATTESTOR_TIMEOUT,
            cache_ttl: DEFAULT_CONTAINER_CACHE_TTL,
        }
    }
}

impl IdentityConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut positive = |key: &str, d: Duration| {
            if d.is_zero() {
                problems.push(format!("identity.{key} must be more than 0"));
            }
        };
        positive("timeout", self.timeout);
        positive("nss_timeout", self.nss_timeout);
        if let Some(k) = &self.kubernetes {
            positive("kubernetes.timeout", k.timeout);
        }
        if let Some(d) = &self.docker {
            positive("docker.timeout", d.timeout);
        }
        if let Some(e) = &self.ecs {
            positive("ecs.timeout", e.timeout);
        }
        if let Some(k) = &self.kubernetes {
            let url = match k.source {
                PodSource::Kubelet => ("kubelet_url", &k.kubelet_url),
                PodSource::Apiserver => ("apiserver_url", &k.apiserver_url),
            };
            if !url.1.starts_with("https://") {
                problems.push(format!(
                    "identity.kubernetes.{} must be an https:// URL, got {}",
                    url.0, url.1
                ));
            }
            for (key, path) in [("ca_file", &k.ca_file), ("token_file", &k.token_file)] {
                if !path.is_absolute() {
                    problems.push(format!(
                        "identity.kubernetes.{key} must be an absolute path, got {}",
                        path.display()
                    ));
                }
            }
        }
        if let Some(d) = &self.docker {
            if !d.socket.is_absolute() {
                problems.push(format!(
                    "identity.docker.socket must be an absolute path, got {}",
                    d.socket.display()
                ));
            }
        }
        if let Some(e) = &self.ecs {
            if !e.agent_url.starts_with("http://") {
                problems.push(format!(
                    "identity.ecs.agent_url must be an http:// URL (the agent's local port), got {}",
                    e.agent_url
                ));
            }
        }
        problems
    }

    /// The platforms whose attestor is configured, by the name policy selectors start with.
    pub fn platforms(&self) -> Vec<Platform> {
        let mut platforms = Vec::new();
        if self.kubernetes.is_some() {
            platforms.push(Platform::Kubernetes);
        }
        if self.ecs.is_some() {
            platforms.push(Platform::Ecs);
        }
        if self.docker.is_some() {
            platforms.push(Platform::Docker);
        }
        platforms
    }
}

/// A platform an attestor speaks for; policy selectors name which one they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    Kubernetes,
    Ecs,
    Docker,
}

impl Platform {
    pub fn section(self) -> &'static str {
        match self {
            Self::Kubernetes => "[identity.kubernetes]",
            Self::Ecs => "[identity.ecs]",
            Self::Docker => "[identity.docker]",
        }
    }
}
