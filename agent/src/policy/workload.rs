//! The workload selectors: what the Kubernetes, ECS and Docker attestors found out about a caller
//! (`identity/workload/`). As with every selector, each key given must match and a list matches
//! when any item does; label lists are the exception: every `key=value` given must hold.

use globset::GlobSet;

use crate::identity::{config::Platform, workload::Workload};

#[derive(Debug, Default)]
pub(super) struct WorkloadSelector {
    pub k8s_namespaces: Vec<String>,
    pub k8s_service_accounts: Vec<String>,
    pub k8s_pod_names: Option<GlobSet>,
    pub k8s_pod_labels: Vec<(String, String)>,
    pub k8s_container_names: Vec<String>,
    pub k8s_container_images: Option<GlobSet>,
    pub ecs_clusters: Vec<String>,
    /// A family, and the revision when the rule names one (`family:revision`).
    pub ecs_task_families: Vec<(String, Option<String>)>,
    pub ecs_container_names: Vec<String>,
    pub container_names: Vec<String>,
    pub container_images: Option<GlobSet>,
    pub container_labels: Vec<(String, String)>,
}

impl WorkloadSelector {
    /// The platforms whose attestor this selector needs, with the keys that need it.
    pub(super) fn platforms(&self) -> Vec<(Platform, Vec<&'static str>)> {
        let keys = |pairs: &[(&'static str, bool)]| -> Vec<&'static str> {
            pairs
                .iter()
                .filter(|(_, set)| *set)
                .map(|(k, _)| *k)
                .collect()
        };
        [
            (
                Platform::Kubernetes,
                keys(&[
                    ("k8s_namespace", !self.k8s_namespaces.is_empty()),
                    ("k8s_service_account", !self.k8s_service_accounts.is_empty()),
                    ("k8s_pod_name", self.k8s_pod_names.is_some()),
                    ("k8s_pod_label", !self.k8s_pod_labels.is_empty()),
                    ("k8s_container_name", !self.k8s_container_names.is_empty()),
                    ("k8s_container_image", self.k8s_container_images.is_some()),
                ]),
            ),
            (
                Platform::Ecs,
                keys(&[
                    ("ecs_cluster", !self.ecs_clusters.is_empty()),
                    ("ecs_task_family", !self.ecs_task_families.is_empty()),
                    ("ecs_container_name", !self.ecs_container_names.is_empty()),
                ]),
            ),
            (
                Platform::Docker,
                keys(&[
                    ("container_name", !self.container_names.is_empty()),
                    ("container_image", self.container_images.is_some()),
                    ("container_label", !self.container_labels.is_empty()),
                ]),
            ),
        ]
        .into_iter()
        .filter(|(_, keys)| !keys.is_empty())
        .collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.platforms().is_empty()
    }

    pub(super) fn selects(&self, workload: &Workload) -> bool {
        self.selects_kubernetes(workload)
            && self.selects_ecs(workload)
            && self.selects_docker(workload)
    }

    fn selects_kubernetes(&self, workload: &Workload) -> bool {
        let wanted = !self.k8s_namespaces.is_empty()
            || !self.k8s_service_accounts.is_empty()
            || self.k8s_pod_names.is_some()
            || !self.k8s_pod_labels.is_empty()
            || !self.k8s_container_names.is_empty()
            || self.k8s_container_images.is_some();
        if !wanted {
            return true;
        }
        let Some(pod) = &workload.kubernetes else {
            return false;
        };
        one_of(&self.k8s_namespaces, Some(&pod.namespace))
            && one_of(&self.k8s_service_accounts, Some(&pod.service_account))
            && glob(&self.k8s_pod_names, [Some(&pod.pod_name)])
            && self
                .k8s_pod_labels
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
            && one_of(&self.k8s_container_names, pod.container_name.as_ref())
            && glob(
                &self.k8s_container_images,
                [
                    pod.container_image.as_ref(),
                    pod.container_image_id.as_ref(),
                ],
            )
    }

    fn selects_ecs(&self, workload: &Workload) -> bool {
        if self.ecs_clusters.is_empty()
            && self.ecs_task_families.is_empty()
            && self.ecs_container_names.is_empty()
        {
            return true;
        }
        let Some(task) = &workload.ecs else {
            return false;
        };
        one_of(&self.ecs_clusters, Some(&task.cluster))
            && (self.ecs_task_families.is_empty()
                || self.ecs_task_families.iter().any(|(family, revision)| {
                    *family == task.task_family
                        && revision.as_ref().is_none_or(|r| *r == task.task_revision)
                }))
            && one_of(&self.ecs_container_names, Some(&task.container_name))
    }

    fn selects_docker(&self, workload: &Workload) -> bool {
        if self.container_names.is_empty()
            && self.container_images.is_none()
            && self.container_labels.is_empty()
        {
            return true;
        }
        let Some(container) = &workload.container else {
            return false;
        };
        one_of(&self.container_names, Some(&container.name))
            && glob(&self.container_images, [Some(&container.image)])
            && self
                .container_labels
                .iter()
                .all(|(k, v)| container.labels.get(k) == Some(v))
    }
}

fn one_of(wanted: &[String], value: Option<&String>) -> bool {
    wanted.is_empty() || value.is_some_and(|v| wanted.contains(v))
}

fn glob<const N: usize>(set: &Option<GlobSet>, values: [Option<&String>; N]) -> bool {
    match set {
        None => true,
        Some(set) => values.into_iter().flatten().any(|v| set.is_match(v)),
    }
}

/// `key=value` pairs, or the items that are not one.
pub(super) fn labels(items: &[String]) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut pairs = Vec::new();
    let mut bad = Vec::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => pairs.push((k.to_owned(), v.to_owned())),
            _ => bad.push(item.clone()),
        }
    }
    if bad.is_empty() {
        Ok(pairs)
    } else {
        Err(bad)
    }
}

/// `family` or `family:revision`.
pub(super) fn task_family(item: &str) -> Result<(String, Option<String>), String> {
    match item.split_once(':') {
        None if !item.is_empty() => Ok((item.to_owned(), None)),
        Some((family, revision))
            if !family.is_empty()
                && !revision.is_empty()
                && revision.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok((family.to_owned(), Some(revision.to_owned())))
        }
        _ => Err(format!("'{item}' is not FAMILY or FAMILY:REVISION")),
    }
}
