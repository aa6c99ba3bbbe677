//! What a caller's cgroup path says about it: container id, Kubernetes pod UID, systemd unit.
//!
//! Only `/proc/<pid>/cgroup` is read for this. A process can forge its mount table but not its
//! cgroup membership, so mountinfo is never consulted (SPIRE dropped that fallback for the same
//! reason).

use std::sync::LazyLock;

use regex::Regex;

// A container id is 64 hex digits, alone or wrapped by the runtime's scope naming:
// docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope, /docker/<id>.
// Conmon scopes (crio-conmon-, libpod-conmon-) hold the monitor, not the container.
static CONTAINER_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:docker-|cri-containerd-|crio-|libpod-|containerd-)?([0-9a-f]{64})(?:\.scope)?$",
    )
    .expect("valid regex")
});

// cgroupfs driver: .../kubepods/burstable/pod<uid>/...; systemd driver:
// kubepods-burstable-pod<uid with '_'>.slice.
static POD_UID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$",
    )
    .expect("valid regex")
});

/// The unified (v2) cgroup path from the contents of `/proc/<pid>/cgroup`, falling back to the
/// v1 `name=systemd` hierarchy, then to the first line.
pub(crate) fn cgroup_path(contents: &str) -> Option<String> {
    let entries: Vec<(&str, &str)> = contents
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some((controllers, path))
        })
        .collect();
    entries
        .iter()
        .find(|(controllers, _)| controllers.is_empty())
        .or_else(|| entries.iter().find(|(c, _)| *c == "name=systemd"))
        .or_else(|| entries.first())
        .map(|(_, path)| (*path).to_owned())
}

/// The components of `path` the system controls, outermost first: those above the first
/// `user@UID.service`. Everything below that unit is delegated to the user, who can create
/// cgroups there named like anything (`billing.service`, `docker-<id>.scope`, `pod<uid>`), so
/// nothing below it says more than the uid already does. Leading `..` (a path seen from another
/// cgroup namespace) is skipped.
fn system_components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .skip_while(|c| *c == "..")
        .take_while(|c| !is_user_manager(c))
}

fn is_user_manager(component: &str) -> bool {
    component.starts_with("user@") && component.ends_with(".service")
}

/// The container the runtime placed the process in: the outermost component naming one. A
/// container that creates cgroups of its own (systemd or docker inside it) cannot make its
/// processes look like another container.
pub(crate) fn container_id(path: &str) -> Option<String> {
    system_components(path)
        .filter(|component| !component.contains("conmon"))
        .find_map(|component| CONTAINER_ID.captures(component))
        .map(|c| c[1].to_owned())
}

/// The Kubernetes pod: only under a top-level `kubepods` cgroup (the kubelet's), from the
/// outermost pod component.
pub(crate) fn pod_uid(path: &str) -> Option<String> {
    let mut components = system_components(path);
    if !components.next()?.starts_with("kubepods") {
        return None;
    }
    components
        .find_map(|component| POD_UID.captures(component))
        .map(|c| c[1].replace('_', "-"))
}

/// The unit the system manager started the process in: the first component below the slices,
/// if it is a `.service` or `.scope`. Whatever a unit creates below itself (a `Delegate=yes`
/// service, a container runtime) is its own and does not name another unit. A user's manager
/// (`user@UID.service`) counts only for the manager itself, never for what runs under it.
pub(crate) fn systemd_unit(path: &str) -> Option<String> {
    let components: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .skip_while(|c| *c == "..")
        .collect();
    let position = components.iter().position(|c| !c.ends_with(".slice"))?;
    let unit = components[position];
    if !(unit.ends_with(".service") || unit.ends_with(".scope")) {
        return None;
    }
    if is_user_manager(unit) && position + 1 != components.len() {
        return None;
    }
    Some(unit.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1e2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";
    const POD: &str = "8a3d2c1b-4e5f-6789-abcd-ef0123456789";

    #[test]
    fn picks_the_unified_hierarchy() {
        let v2 = "0::/system.slice/nginx.service\n";
        assert_eq!(cgroup_path(v2).unwrap(), "/system.slice/nginx.service");
        let v1 = "12:pids:/user.slice\n1:name=systemd:/system.slice/cron.service\n";
        assert_eq!(cgroup_path(v1).unwrap(), "/system.slice/cron.service");
        let hybrid = "1:name=systemd:/a.service\n0::/b.service\n";
        assert_eq!(cgroup_path(hybrid).unwrap(), "/b.service");
        assert_eq!(cgroup_path(""), None);
    }

    #[test]
    fn recognises_container_runtimes() {
        for path in [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope", POD.replace('-', "_")),
            format!("/kubepods/burstable/pod{POD}/{ID}"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods.slice/crio-{ID}.scope"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(ID), "{path}");
        }
        assert_eq!(
            container_id(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            container_id("/user.slice/user-1000.slice/session-3.scope"),
            None
        );
        assert_eq!(container_id(&format!("/docker/{}", &ID[..63])), None);
    }

    #[test]
    fn recognises_pod_uids_under_both_drivers() {
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            POD.replace('-', "_")
        );
        assert_eq!(pod_uid(&systemd).as_deref(), Some(POD));
        let cgroupfs = format!("/kubepods/besteffort/pod{POD}/{ID}");
        assert_eq!(pod_uid(&cgroupfs).as_deref(), Some(POD));
        assert_eq!(
            pod_uid(&format!("/system.slice/pod{POD}")),
            None,
            "not under kubepods"
        );
    }

    #[test]
    fn finds_the_systemd_unit() {
        assert_eq!(
            systemd_unit("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            systemd_unit("/system.slice/app.service/worker").as_deref(),
            Some("app.service")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/session-2.scope").as_deref(),
            Some("session-2.scope")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope"),
            None,
            "units under a user's manager are the user's to name"
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/user@1000.service").as_deref(),
            Some("user@1000.service")
        );
        assert_eq!(
            systemd_unit("/system.slice/app.service/billing.service").as_deref(),
            Some("app.service"),
            "a delegated service cannot name another unit"
        );
        assert_eq!(systemd_unit("/system.slice/cron"), None);
        assert_eq!(systemd_unit("/"), None);
    }

    #[test]
    fn nothing_below_a_user_manager_counts() {
        let user = "/user.slice/user-1000.slice/user@1000.service/app.slice";
        let pod = POD.replace('-', "_");
        for spoof in [
            format!("{user}/billing.service"),
            format!("{user}/docker-{ID}.scope"),
            format!("{user}/kubepods/besteffort/pod{POD}/{ID}"),
            format!("{user}/kubepods.slice/kubepods-pod{pod}.slice/cri-containerd-{ID}.scope"),
        ] {
            assert_eq!(container_id(&spoof), None, "{spoof}");
            assert_eq!(pod_uid(&spoof), None, "{spoof}");
            assert_eq!(systemd_unit(&spoof), None, "{spoof}");
        }
    }

    #[test]
    fn the_outermost_runtime_component_wins() {
        let other = "0".repeat(64);
        let nested = format!("/system.slice/docker-{ID}.scope/docker/{other}");
        assert_eq!(container_id(&nested).as_deref(), Some(ID));
        let pod_in_pod = format!(
            "/kubepods/besteffort/pod{POD}/{ID}/kubepods/pod{}",
            "1".repeat(8) + "-1111-1111-1111-111111111111"
        );
        assert_eq!(pod_uid(&pod_in_pod).as_deref(), Some(POD));
        assert_eq!(
            pod_uid(&format!("/system.slice/x.service/kubepods/pod{POD}")),
            None,
            "kubepods must be the top-level cgroup"
        );
        let from_another_namespace = format!("/../../kubepods/besteffort/pod{POD}/{ID}");
        assert_eq!(pod_uid(&from_another_namespace).as_deref(), Some(POD));
    }
}
