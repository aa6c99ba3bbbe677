//! The ECS attestor: the task a container belongs to, from the ECS container agent's
//! introspection API (`/v1/tasks?dockerid=<id>`, and the cluster from `/v1/metadata`), for the
//! container id in the caller's cgroup. Answers are cached by id for `cache_ttl`.

use std::sync::Arc;

use moka::future::Cache;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::{
    http::{FetchError, HttpClient},
    EcsWorkload,
};
use crate::identity::config::EcsConfig;

const MAX_ANSWER_BYTES: usize = 1024 * 1024;
const MAX_CACHED_CONTAINERS: u64 = 10_000;
const WHAT: &str = "the ECS agent";

pub(super) struct EcsAttestor {
    client: HttpClient,
    agent_url: String,
    /// The cluster never changes while the agent runs: asked once, when first needed.
    cluster: OnceCell<String>,
    containers: Cache<String, Arc<EcsWorkload>>,
}

impl EcsAttestor {
    pub(super) fn new(config: &EcsConfig) -> Result<Self, String> {
        Ok(Self {
            client: HttpClient::new(WHAT, None, None, config.timeout, MAX_ANSWER_BYTES)?,
            agent_url: config.agent_url.trim_end_matches('/').to_owned(),
            cluster: OnceCell::new(),
            containers: Cache::builder()
                .max_capacity(MAX_CACHED_CONTAINERS)
                .time_to_live(config.cache_ttl)
                .build(),
        })
    }

    pub(super) async fn attest(&self, container_id: &str) -> Result<EcsWorkload, Arc<FetchError>> {
        let found = self
            .containers
            .try_get_with(container_id.to_owned(), self.fetch(container_id))
            .await?;
        Ok((*found).clone())
    }

    async fn fetch(&self, container_id: &str) -> Result<Arc<EcsWorkload>, FetchError> {
        let cluster = self
            .cluster
            .get_or_try_init(|| async {
                let metadata: Metadata = self
                    .client
                    .get_json(&format!("{}/v1/metadata", self.agent_url), None)
                    .await?;
                Ok::<_, FetchError>(metadata.cluster)
            })
            .await?
            .clone();
        let task: Task = self
            .client
            .get_json(
                &format!("{}/v1/tasks?dockerid={container_id}", self.agent_url),
                None,
            )
            .await?;
        let container = task
            .containers
            .iter()
            .find(|c| c.docker_id == container_id)
            .ok_or_else(|| FetchError::Malformed {
                what: WHAT,
                detail: "the task it named does not hold the container".into(),
            })?;
        Ok(Arc::new(EcsWorkload {
            cluster,
            task_arn: task.arn.clone(),
            task_family: task.family.clone(),
            task_revision: task.version.clone(),
            container_name: container.name.clone(),
        }))
    }
}

// === The introspection documents, as much of them as the selectors read ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    cluster: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Task {
    arn: String,
    family: String,
    /// The task definition's revision, as a string.
    version: String,
    #[serde(default)]
    containers: Vec<TaskContainer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskContainer {
    docker_id: String,
    name: String,
}
