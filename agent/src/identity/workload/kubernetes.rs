//! The Kubernetes attestor: the pod a caller runs in, from the node's pod list (the kubelet's
//! `/pods`, or the API server's pods with `fieldSelector=spec.nodeName=NODE`), looked up by the
//! pod UID in the caller's cgroup.
//!
//! The list is cached by pod UID. A UID (or a container id) the cache does not know triggers one
//! refresh of the whole list, shared by every connection waiting for it and at most one per
//! `refresh_interval`; a pod still unknown after it has no Kubernetes attributes. Pod UIDs are
//! never reused, so a cached pod that has since been deleted cannot be mistaken for another.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::{sync::Mutex, time::Instant};
use zeroize::Zeroizing;

use super::{
    http::{FetchError, HttpClient},
    KubernetesWorkload,
};
use crate::identity::config::{KubernetesConfig, PodSource};

/// The largest pod list read (a node with a few hundred pods lists in a few MiB).
const MAX_POD_LIST_BYTES: usize = 64 * 1024 * 1024;

pub(super) struct KubernetesAttestor {
    client: HttpClient,
    pods_url: String,
    token_file: PathBuf,
    refresh_interval: Duration,
    pods: ArcSwap<HashMap<String, Arc<Pod>>>,
    /// When the list was last fetched; held while fetching, so refreshes never overlap.
    last_refresh: Mutex<Option<Instant>>,
    /// Counts finished refreshes: a waiter that sees it move knows the list is fresh.
    refreshes: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum KubernetesError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("cannot read the service account token: {0}")]
    Token(std::io::Error),
    #[error("pod {0} is not among this node's pods")]
    UnknownPod(String),
}

impl KubernetesAttestor {
    pub(super) fn new(config: &KubernetesConfig) -> Result<Self, String> {
        let (what, pods_url) = match config.source {
            PodSource::Kubelet => (
                "the kubelet",
                format!(
                    "{}/pods",
                    expand_env(&config.kubelet_url)?.trim_end_matches('/')
                ),
            ),
            PodSource::Apiserver => {
                let node = match &config.node_name {
                    Some(node) => node.clone(),
                    None => std::env::var(&config.node_name_env).map_err(|_| {
                        format!(
                            "identity.kubernetes: source = \"apiserver\" needs node_name or ${}",
                            config.node_name_env
                        )
                    })?,
                };
                (
                    "the Kubernetes API server",
                    format!(
                        "{}/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
                        config.apiserver_url.trim_end_matches('/'),
                        percent_encoding::utf8_percent_encode(
                            &node,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                )
            }
        };
        let client = HttpClient::new(
            what,
            Some(&config.ca_file),
            config.tls_server_name.as_deref(),
            config.timeout,
            MAX_POD_LIST_BYTES,
        )
        .map_err(|e| format!("identity.kubernetes.ca_file: {e}"))?;
        Ok(Self {
            client,
            pods_url,
            token_file: config.token_file.clone(),
            refresh_interval: config.refresh_interval,
            pods: ArcSwap::default(),
            last_refresh: Mutex::new(None),
            refreshes: AtomicU64::new(0),
        })
    }

    /// The pod `pod_uid` names, with the container `container_id` names in it where it does.
    pub(super) async fn attest(
        &self,
        pod_uid: &str,
        container_id: Option<&str>,
    ) -> Result<KubernetesWorkload, KubernetesError> {
        let seen = self.refreshes.load(Ordering::Acquire);
        if let Some(found) = self.find(pod_uid, container_id) {
            return Ok(found);
        }
        self.refresh(seen).await?;
        let pods = self.pods.load();
        let pod = pods
            .get(pod_uid)
            .ok_or_else(|| KubernetesError::UnknownPod(pod_uid.to_owned()))?;
        Ok(pod.workload(container_id))
    }

    /// A cached answer, if the cache knows the pod and (when the caller has one) its container.
    fn find(&self, pod_uid: &str, container_id: Option<&str>) -> Option<KubernetesWorkload> {
        let pods = self.pods.load();
        let pod = pods.get(pod_uid)?;
        let workload = pod.workload(container_id);
        // A restarted container has a new id the cached status does not know yet.
        (container_id.is_none() || workload.container_name.is_some()).then_some(workload)
    }

    /// Fetches the list, unless another refresh finished since `seen`; at most one per
    /// `refresh_interval`.
    async fn refresh(&self, seen: u64) -> Result<(), KubernetesError> {
        let mut last = self.last_refresh.lock().await;
        if self.refreshes.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        if let Some(last) = *last {
            tokio::time::sleep_until(last + self.refresh_interval).await;
        }
        *last = Some(Instant::now());
        let token = Zeroizing::new(
            std::fs::read_to_string(&self.token_file).map_err(KubernetesError::Token)?,
        );
        let list: PodList = self
            .client
            .get_json(&self.pods_url, Some(token.trim()))
            .await?;
        let pods = list
            .items
            .into_iter()
            .map(|pod| (pod.metadata.uid.clone(), Arc::new(pod)))
            .collect();
        self.pods.store(Arc::new(pods));
        self.refreshes.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// `url` with each `${NAME}` replaced by that environment variable: a DaemonSet knows its node's
/// address only from the downward API (`status.hostIP`), not when the config is written.
fn expand_env(url: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("identity.kubernetes.kubelet_url: unclosed ${{ in {url}"))?;
        let name = &rest[start + 2..start + end];
        let value = std::env::var(name).map_err(|_| {
            format!("identity.kubernetes.kubelet_url names ${{{name}}}, which is not set")
        })?;
        out.push_str(&rest[..start]);
        out.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

// === The PodList document (core/v1), as much of it as the selectors read ===

#[derive(Debug, Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Deserialize)]
struct ObjectMeta {
    name: String,
    namespace: String,
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    service_account_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    ephemeral_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(rename = "imageID", default)]
    image_id: String,
    /// `<runtime>://<id>`, e.g. `containerd://3f1e…`.
    #[serde(rename = "containerID")]
    container_id: Option<String>,
}

impl Pod {
    fn workload(&self, container_id: Option<&str>) -> KubernetesWorkload {
        let container = container_id.and_then(|id| {
            self.status
                .container_statuses
                .iter()
                .chain(&self.status.init_container_statuses)
                .chain(&self.status.ephemeral_container_statuses)
                .find(|c| {
                    c.container_id
                        .as_deref()
                        .and_then(|full| full.split_once("://"))
                        .is_some_and(|(_, cid)| cid == id)
                })
        });
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        KubernetesWorkload {
            namespace: self.metadata.namespace.clone(),
            // The API server fills it in; a pod without one runs as `default`.
            service_account: self
                .spec
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
            pod_name: self.metadata.name.clone(),
            pod_uid: self.metadata.uid.clone(),
            labels: self.metadata.labels.clone(),
            container_name: container.map(|c| c.name.clone()),
            container_image: container.and_then(|c| non_empty(&c.image)),
            container_image_id: container.and_then(|c| non_empty(&c.image_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod as the kubelet's `/pods` lists it (trimmed of fields psst does not read).
    pub(super) const POD_LIST: &str = r#"{
      "kind": "PodList", "apiVersion": "v1", "metadata": {},
      "items": [{
        "metadata": {
          "name": "orders-7d4b9c-x2x9k", "namespace": "shop",
          "uid": "8a3d2c1b-4e5f-6789-abcd-ef0123456789",
          "labels": {"app": "orders", "pod-template-hash": "7d4b9c"}
        },
        "spec": {
          "containers": [{"name": "orders", "image": "registry.example/orders:1.4"}],
          "serviceAccountName": "orders", "nodeName": "node-1"
        },
        "status": {
          "phase": "Running",
          "containerStatuses": [{
            "name": "orders", "ready": true, "restartCount": 0,
            "image": "registry.example/orders:1.4",
            "imageID": "registry.example/orders@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "containerID": "containerd://3f1e2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e",
            "started": true
          }]
        }
      }]
    }"#;

    #[test]
    fn expands_the_environment_in_the_kubelet_url() {
        // PATH is set in every test environment; nothing here sets variables.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            expand_env("https://${PATH}:10250").unwrap(),
            format!("https://{path}:10250")
        );
        assert_eq!(
            expand_env("https://127.0.0.1:10250").unwrap(),
            "https://127.0.0.1:10250"
        );
        assert!(expand_env("https://${PSST_TEST_UNSET_VARIABLE}:10250").is_err());
        assert!(expand_env("https://${PATH").is_err());
    }

    #[test]
    fn reads_a_pod_list() {
        let list: PodList = serde_json::from_str(POD_LIST).unwrap();
        let pod = &list.items[0];
        let id = "3f1e2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";
        let workload = pod.workload(Some(id));
        assert_eq!(workload.namespace, "shop");
        assert_eq!(workload.service_account, "orders");
        assert_eq!(workload.pod_name, "orders-7d4b9c-x2x9k");
        assert_eq!(
            workload.labels.get("app").map(String::as_str),
            Some("orders")
        );
        assert_eq!(workload.container_name.as_deref(), Some("orders"));
        assert!(workload
            .container_image_id
            .as_deref()
            .is_some_and(|i| i.contains("@sha256:")));
        assert_eq!(pod.workload(Some(&"0".repeat(64))).container_name, None);
    }
}
