//! Workload attestation: who the caller is on its platform (Kubernetes pod, ECS task, Docker
//! container), looked up by the pod UID and container id its own `/proc/<pid>/cgroup` names,
//! never by anything the caller says. Each attestor is off unless configured, and a platform
//! that does not answer leaves the caller without its attributes (rules that need them do not
//! match) and a reason in `Workload::failures` for the audit record.

use std::collections::BTreeMap;

use super::{config::IdentityConfig, process::ProcessFacts};

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
pub struct Attestors {}

impl Attestors {
    /// The attestors `config` turns on. No network call: files are read, nothing is connected.
    pub fn from_config(config: &IdentityConfig) -> Result<Self, String> {
        let _ = config;
        Ok(Self {})
    }

    pub async fn attest(&self, facts: &ProcessFacts) -> Workload {
        let _ = facts;
        Workload::default()
    }
}
