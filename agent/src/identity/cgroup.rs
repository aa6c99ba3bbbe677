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
pub fn cgroup_path(contents: &str) -> Option<String> {
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

pub fn container_id(path: &str) -> Option<String> {
    path.rsplit('/')
        .filter(|component| !component.contains("conmon"))
        .find_map(|component| CONTAINER_ID.captures(component))
        .map(|c| c[1].to_owned())
}

pub fn pod_uid(path: &str) -> Option<String> {
    if !path.contains("kubepods") {
        return None;
    }
    path.split('/')
        .find_map(|component| POD_UID.captures(component))
        .map(|c| c[1].replace('_', "-"))
}

/// The innermost `.service` of the path, else the innermost `.scope`.
pub fn systemd_unit(path: &str) -> Option<String> {
    let components: Vec<&str> = path.split('/').collect();
    [".service", ".scope"].iter().find_map(|suffix| {
        components
            .iter()
            .rev()
            .find(|c| c.ends_with(suffix))
            .map(|c| (*c).to_owned())
    })
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
            systemd_unit("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope")
                .as_deref(),
            Some("user@1000.service")
        );
        assert_eq!(systemd_unit("/"), None);
    }
}
