//! Workload attestation: who the caller is on its platform (Kubernetes pod, ECS task, Docker
//! container), looked up by the pod UID and container id its own `/proc/<pid>/cgroup` names,
//! never by anything the caller says. Each attestor is off unless configured, and a platform
//! that does not answer leaves the caller without its attributes (rules that need them do not
//! match) and a reason in `Workload::failures` for the audit record.

mod docker;
mod ecs;
mod http;
mod kubernetes;

use std::collections::BTreeMap;

use super::{config::IdentityConfig, process::ProcessFacts};
use docker::DockerAttestor;
use ecs::EcsAttestor;
use kubernetes::KubernetesAttestor;

/// What the attestors found out about a caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    pub kubernetes: Option<KubernetesWorkload>,
    pub ecs: Option<EcsWorkload>,
    /// The Docker container (no orchestrator).
    pub container: Option<ContainerWorkload>,
    /// Why a configured attestor has no answer for a caller that looked like its workload.
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubernetesWorkload {
    pub namespace: String,
    pub service_account: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub labels: BTreeMap<String, String>,
    /// The caller's container in the pod, when its id is in the pod's status.
    pub container_name: Option<String>,
    pub container_image: Option<String>,
    /// The image with its digest (`status.containerStatuses[].imageID`), where the status has it.
    pub container_image_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcsWorkload {
    pub cluster: String,
    pub task_arn: String,
    pub task_family: String,
    pub task_revision: String,
    pub container_name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerWorkload {
    /// Without Docker's leading '/'.
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

/// The configured attestors.
#[derive(Default)]
pub(crate) struct Attestors {
    kubernetes: Option<KubernetesAttestor>,
    ecs: Option<EcsAttestor>,
    docker: Option<DockerAttestor>,
}

impl Attestors {
    /// The attestors `config` turns on. No network call: files are read, nothing is connected.
    pub(crate) fn from_config(config: &IdentityConfig) -> Result<Self, String> {
        Ok(Self {
            kubernetes: config
                .kubernetes
                .as_ref()
                .map(KubernetesAttestor::new)
                .transpose()?,
            ecs: config.ecs.as_ref().map(EcsAttestor::new).transpose()?,
            docker: config.docker.as_ref().map(DockerAttestor::new),
        })
    }

    /// Asks each configured attestor whose ids the caller's cgroup carries, all at once.
    pub(crate) async fn attest(&self, facts: &ProcessFacts) -> Workload {
        let container_id = facts.container_id.as_deref();
        let kubernetes = async {
            match (&self.kubernetes, &facts.pod_uid) {
                (Some(k8s), Some(pod_uid)) => Some(
                    k8s.attest(pod_uid, container_id)
                        .await
                        .map_err(|e| format!("kubernetes: {e}")),
                ),
                _ => None,
            }
        };
        let ecs = async {
            match (&self.ecs, container_id) {
                (Some(ecs), Some(id)) => {
                    Some(ecs.attest(id).await.map_err(|e| format!("ecs: {e}")))
                }
                _ => None,
            }
        };
        let docker = async {
            match (&self.docker, container_id) {
                (Some(docker), Some(id)) => {
                    Some(docker.attest(id).await.map_err(|e| format!("docker: {e}")))
                }
                _ => None,
            }
        };
        let (kubernetes, ecs, docker) = tokio::join!(kubernetes, ecs, docker);
        let mut failures = Vec::new();
        let workload = Workload {
            kubernetes: keep(kubernetes, &mut failures),
            ecs: keep(ecs, &mut failures),
            container: keep(docker, &mut failures),
            failures: Vec::new(),
        };
        Workload {
            failures,
            ..workload
        }
    }
}

/// An attestor's answer, its failure noted for the audit record.
fn keep<T>(answer: Option<Result<T, String>>, failures: &mut Vec<String>) -> Option<T> {
    match answer? {
        Ok(found) => Some(found),
        Err(why) => {
            failures.push(why);
            None
        }
    }
}
