//! The Docker attestor: a container's name, image and labels from the Docker Engine API on its
//! Unix socket (`GET /containers/<id>/json`), for the container id in the caller's cgroup.
//! Answers are cached by id for `cache_ttl`; concurrent lookups of one id share one request.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use moka::future::Cache;
use serde::Deserialize;

use super::{
    http::{get_json_unix, FetchError},
    ContainerWorkload,
};
use crate::identity::config::DockerConfig;

/// A container's inspect document is a few KiB; its labels and env could make it larger.
const MAX_INSPECT_BYTES: usize = 4 * 1024 * 1024;
const MAX_CACHED_CONTAINERS: u64 = 10_000;

pub(super) struct DockerAttestor {
    socket: PathBuf,
    timeout: Duration,
    containers: Cache<String, Arc<ContainerWorkload>>,
}

impl DockerAttestor {
    pub(super) fn new(config: &DockerConfig) -> Self {
        Self {
            socket: config.socket.clone(),
            timeout: config.timeout,
            containers: Cache::builder()
                .max_capacity(MAX_CACHED_CONTAINERS)
                .time_to_live(config.cache_ttl)
                .build(),
        }
    }

    pub(super) async fn attest(
        &self,
        container_id: &str,
    ) -> Result<ContainerWorkload, Arc<FetchError>> {
        let found = self
            .containers
            .try_get_with(container_id.to_owned(), async {
                let inspect: ContainerInspect = get_json_unix(
                    "the Docker Engine",
                    &self.socket,
                    &format!("/containers/{container_id}/json"),
                    self.timeout,
                    MAX_INSPECT_BYTES,
                )
                .await?;
                // The cgroup named this id: an answer about another container is not an answer.
                if inspect.id != container_id {
                    return Err(FetchError::Malformed {
                        what: "the Docker Engine",
                        detail: "it answered about another container".into(),
                    });
                }
                Ok(Arc::new(inspect.into_workload()))
            })
            .await?;
        Ok((*found).clone())
    }
}

// === The ContainerInspectResponse document, as much of it as the selectors read ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerInspect {
    id: String,
    /// With a leading '/'.
    name: String,
    config: ContainerConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    /// The image as the container was created from it (`nginx:1.27`).
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl ContainerInspect {
    fn into_workload(self) -> ContainerWorkload {
        ContainerWorkload {
            name: self.name.trim_start_matches('/').to_owned(),
            image: self.config.image,
            labels: self.config.labels.unwrap_or_default(),
        }
    }
}
