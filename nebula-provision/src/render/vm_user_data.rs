//! Cloud-init `user-data` for hosts outside the mesh (`mesh: false`, e.g. the ADR's K3s VMs):
//! hostname, SSH keys and a running qemu-guest-agent, nothing of Nebula. Uploaded as the VM's
//! Proxmox snippet, like a member's user-data.

use serde_norway::{Mapping, Value};

use crate::model::Mesh;
use crate::model::NonMember;
use crate::render::{inventory_name, names, OutFile};

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// The `user-data` text of a non-member.
pub fn user_data(mesh: &Mesh, host: &NonMember) -> String {
    let mut top = Mapping::new();
    if let Some(hn) = &host.cloud_init.hostname {
        top.insert(s("hostname"), s(hn));
        top.insert(s("manage_etc_hosts"), Value::Bool(true));
    }
    if !host.cloud_init.ssh_authorized_keys.is_empty() {
        top.insert(
            s("ssh_authorized_keys"),
            Value::Sequence(
                host.cloud_init
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| s(k))
                    .collect(),
            ),
        );
    }
    // The template has the agent; listing it keeps a VM from another image working too.
    top.insert(s("packages"), Value::Sequence(vec![s("qemu-guest-agent")]));
    top.insert(
        s("runcmd"),
        Value::Sequence(vec![Value::Sequence(vec![
            s("systemctl"),
            s("start"),
            s("qemu-guest-agent"),
        ])]),
    );
    let body = serde_norway::to_string(&Value::Mapping(top)).unwrap_or_default();
    format!(
        "#cloud-config\n# First boot of `{}` (outside the Nebula mesh: no nebula here), rendered by nebula-provision from {}.\n{body}",
        host.name,
        inventory_name(mesh)
    )
}

/// `<host>/user-data` of every non-member.
pub fn files(mesh: &Mesh) -> Vec<OutFile> {
    mesh.non_members
        .iter()
        .map(|h| {
            OutFile::text(
                std::path::PathBuf::from(&h.name).join(names::USER_DATA),
                user_data(mesh, h),
                crate::render::mode_of(names::USER_DATA),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, with_proxmox};

    #[test]
    fn non_member_user_data_has_hostname_keys_and_agent_and_no_nebula() {
        let t = tempfile::tempdir().expect("tempdir");
        let text = with_proxmox().replacen(
            "  k3s-cp:\n    mesh: false\n",
            "  k3s-cp:\n    mesh: false\n    cloud_init: {ssh_authorized_keys: [\"ssh-ed25519 AAAAC3Nz admin\"]}\n",
            1,
        );
        let mesh = mesh_in(t.path(), &text);
        let files = files(&mesh);
        let names: Vec<String> = files.iter().map(|f| f.rel.display().to_string()).collect();
        assert_eq!(names, ["k3s-cp/user-data", "k3s-w1/user-data"]);
        assert_eq!(files[0].mode, 0o600);
        let ud = String::from_utf8(files[0].contents.clone().expect("c")).expect("utf8");
        assert!(ud.starts_with("#cloud-config\n"), "{ud}");
        let v: Value = serde_norway::from_str(&ud).expect("yaml");
        assert_eq!(v["hostname"].as_str(), Some("k3s-cp"));
        assert_eq!(v["manage_etc_hosts"].as_bool(), Some(true));
        assert_eq!(
            v["ssh_authorized_keys"][0].as_str(),
            Some("ssh-ed25519 AAAAC3Nz admin")
        );
        assert_eq!(v["packages"][0].as_str(), Some("qemu-guest-agent"));
        assert_eq!(v["runcmd"][0][2].as_str(), Some("qemu-guest-agent"));
        assert!(
            !ud.contains("nebula.service") && !ud.contains("write_files"),
            "{ud}"
        );
    }
}
