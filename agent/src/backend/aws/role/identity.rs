//! The one place a caller becomes what STS is told about it: the session name and source
//! identity, and the session tags.

use crate::identity::Caller;

/// STS's limits on `RoleSessionName` and `SourceIdentity`: 2 to 64 characters.
const MAX_SESSION_NAME: usize = 64;
const MAX_TAG_VALUE: usize = 256;
/// Session tag keys the agent sets; trust and ABAC policies refer to them as
/// `aws:RequestTag/psst-…` and `aws:PrincipalTag/psst-…` (see `deploy/iam/`).
pub(crate) const TAG_UID: &str = "psst-uid";
pub(crate) const TAG_USER: &str = "psst-user";
pub(crate) const TAG_UNIT: &str = "psst-unit";
/// How a caller appears to AWS: the session name (also its `SourceIdentity`, which CloudTrail
/// records and which stays with the session) and the session tags (for ABAC conditions).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionIdentity {
    pub name: String,
    pub tags: Vec<(String, String)>,
}

/// The one place a caller becomes an AWS session identity.
///
/// The workload is named by the most specific fact the agent has about the caller that the
/// caller cannot choose: its Kubernetes namespace and service account (`NAMESPACE.SA`), else its
/// ECS task family, else its systemd unit, else its user name, else its uid. The name is
/// `psst-<workload>`, cut to STS's character set (`[\w+=,.@-]`, other characters become `-`)
/// and length (64). Tags carry each fact separately (`psst-uid`, `psst-user`, `psst-unit`,
/// `psst-k8s-namespace`, `psst-k8s-service-account`, `psst-ecs-task-family`).
///
/// Two callers with the same identity here look the same to IAM, so they share credentials and
/// cached values; a fact added here (a Kubernetes namespace and service account, an ECS task
/// family) must therefore also go into the name or the tags, and it then separates them.
pub(crate) fn session_identity(caller: &Caller) -> SessionIdentity {
    // The platform's name for the workload first (what an auditor reading CloudTrail knows it
    // by), then the unit, the user, the uid.
    let kubernetes = caller.workload.kubernetes.as_ref();
    let ecs = caller.workload.ecs.as_ref();
    let workload = kubernetes
        .map(|k| format!("{}.{}", k.namespace, k.service_account))
        .or_else(|| ecs.map(|e| e.task_family.clone()))
        .or_else(|| caller.systemd_unit.clone())
        .or_else(|| caller.user.clone())
        .unwrap_or_else(|| format!("uid-{}", caller.uid));
    let mut tags = vec![(TAG_UID.to_owned(), caller.uid.to_string())];
    if let Some(user) = &caller.user {
        tags.push((TAG_USER.to_owned(), tag_value(user)));
    }
    if let Some(unit) = &caller.systemd_unit {
        tags.push((TAG_UNIT.to_owned(), tag_value(unit)));
    }
    if let Some(k) = kubernetes {
        tags.push((TAG_K8S_NAMESPACE.to_owned(), tag_value(&k.namespace)));
        tags.push((
            TAG_K8S_SERVICE_ACCOUNT.to_owned(),
            tag_value(&k.service_account),
        ));
    }
    if let Some(e) = ecs {
        tags.push((TAG_ECS_TASK_FAMILY.to_owned(), tag_value(&e.task_family)));
    }
    SessionIdentity {
        name: session_name(&workload),
        tags,
    }
}

/// Session tags for the platform's names of the workload, for ABAC conditions.
pub(super) const TAG_K8S_NAMESPACE: &str = "psst-k8s-namespace";
pub(super) const TAG_K8S_SERVICE_ACCOUNT: &str = "psst-k8s-service-account";
pub(super) const TAG_ECS_TASK_FAMILY: &str = "psst-ecs-task-family";

/// `psst-<workload>` in STS's `RoleSessionName`/`SourceIdentity` alphabet.
fn session_name(workload: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let mut name: String = format!("psst-{workload}")
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .collect();
    name.truncate(MAX_SESSION_NAME);
    name
}

/// A session tag value in IAM's tag alphabet (letters, digits, spaces and `_.:/=+-@`).
fn tag_value(value: &str) -> String {
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c);
    value
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(MAX_TAG_VALUE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::aws::role::AssumedRole;

    fn caller(uid: u32, user: Option<&str>, unit: Option<&str>) -> Caller {
        let mut caller = Caller::uid_only(uid, uid);
        caller.user = user.map(str::to_owned);
        caller.systemd_unit = unit.map(str::to_owned);
        caller
    }

    #[test]
    fn the_session_is_named_after_the_most_specific_fact() {
        let unit = session_identity(&caller(1001, Some("orders"), Some("orders-api.service")));
        assert_eq!(unit.name, "psst-orders-api.service");
        assert_eq!(
            unit.tags,
            [
                (TAG_UID.to_owned(), "1001".to_owned()),
                (TAG_USER.to_owned(), "orders".to_owned()),
                (TAG_UNIT.to_owned(), "orders-api.service".to_owned()),
            ]
        );
        assert_eq!(
            session_identity(&caller(1001, Some("orders"), None)).name,
            "psst-orders"
        );
        let bare = session_identity(&caller(4242, None, None));
        assert_eq!(bare.name, "psst-uid-4242");
        assert_eq!(bare.tags, [(TAG_UID.to_owned(), "4242".to_owned())]);
    }

    #[test]
    fn a_pod_is_named_by_its_namespace_and_service_account() {
        use crate::identity::workload::{EcsWorkload, KubernetesWorkload};
        let mut pod = caller(1000, Some("app"), None);
        pod.workload.kubernetes = Some(KubernetesWorkload {
            namespace: "shop".into(),
            service_account: "orders".into(),
            ..Default::default()
        });
        let session = session_identity(&pod);
        assert_eq!(session.name, "psst-shop.orders");
        assert!(session
            .tags
            .contains(&(TAG_K8S_SERVICE_ACCOUNT.to_owned(), "orders".to_owned())));
        // Another service account of the same uid is another session.
        let mut other = pod.clone();
        other.workload.kubernetes.as_mut().unwrap().service_account = "web".into();
        assert_ne!(session_identity(&other), session);
        let mut task = caller(1000, Some("app"), Some("x.service"));
        task.workload.ecs = Some(EcsWorkload {
            task_family: "billing".into(),
            ..Default::default()
        });
        assert_eq!(session_identity(&task).name, "psst-billing");
    }

    #[test]
    fn names_fit_sts_alphabet_and_length() {
        let odd = session_identity(&caller(
            7,
            Some("dom\\user name"),
            Some(&format!("a:b/c*d{}.service", "x".repeat(100))),
        ));
        assert!(odd.name.len() <= MAX_SESSION_NAME, "{}", odd.name);
        assert!(odd
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
        assert!(odd.name.starts_with("psst-a-b-c-d"), "{}", odd.name);
        // Tag values keep ':' and '/', which IAM's tag alphabet allows, and lose the rest.
        let unit = &odd.tags[2].1;
        assert!(unit.starts_with("a:b/c-dxxx"), "{unit}");
        assert_eq!(odd.tags[1].1, "dom-user name");
    }

    #[test]
    fn roles_differ_by_everything_sent_to_sts() {
        let role = |arn: &str, external: Option<&str>, uid| AssumedRole {
            arn: arn.to_owned(),
            external_id: external.map(str::to_owned),
            identity: session_identity(&caller(uid, None, None)),
        };
        let a = role("arn:aws:iam::1:role/a", None, 1);
        assert_eq!(a, role("arn:aws:iam::1:role/a", None, 1));
        assert_ne!(a, role("arn:aws:iam::1:role/b", None, 1));
        assert_ne!(a, role("arn:aws:iam::1:role/a", Some("x"), 1));
        assert_ne!(a, role("arn:aws:iam::1:role/a", None, 2));
    }
}
