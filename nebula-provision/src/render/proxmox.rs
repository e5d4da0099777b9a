//! Terraform for the Proxmox VMs (the ADR's Vyom layer, bpg/proxmox provider): per host a full
//! clone of the template with its sizes, bridge and cloud-init address, and its user-data uploaded
//! as a snippet. Files: `terraform/<dir>/{versions,variables,main,outputs}.tf`.
//!
//! The snippet is read from the host's rendered `user-data` by path at apply time, so no key is
//! ever written into a `.tf` file; the API token is a sensitive variable with no default.

use std::path::PathBuf;

use crate::model::proxmox::{Ipv4Config, ProxmoxSettings, ProxmoxVm};
use crate::model::Mesh;
use crate::render::terraform::hcl_str;
use crate::render::{inventory_name, names, OutFile};
use crate::validate::tf_ident;

/// The provider versions whose documentation the rendered attributes were checked against
/// (`schema/bpg-proxmox.json`).
pub const PROVIDER_VERSION: &str = ">= 0.111.1, < 1.0.0";

/// The snippet's file name on the datastore.
pub fn snippet_name(host: &str) -> String {
    format!("{host}.user-data.yaml")
}

/// Attribute lines `key = value`, aligned as `terraform fmt` aligns them.
fn attrs(indent: usize, items: &[(&str, String)]) -> String {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    items
        .iter()
        .map(|(k, v)| format!("{:indent$}{k:width$} = {v}\n", ""))
        .collect()
}

fn header(mesh: &Mesh, what: &str) -> String {
    format!(
        "# {what}, rendered by nebula-provision from {}.\n",
        inventory_name(mesh)
    )
}

fn versions_tf(mesh: &Mesh) -> String {
    format!(
        "{}terraform {{\n  required_providers {{\n    proxmox = {{\n      source  = \"bpg/proxmox\"\n      version = {}\n    }}\n  }}\n}}\n",
        header(mesh, "Provider requirements of the Proxmox VMs"),
        hcl_str(PROVIDER_VERSION)
    )
}

fn variables_tf(mesh: &Mesh, s: &ProxmoxSettings) -> String {
    let endpoint_default = s
        .endpoint
        .as_deref()
        .map(|e| format!("  default     = {}\n", hcl_str(e)))
        .unwrap_or_default();
    format!(
        "{hdr}\
variable \"proxmox_endpoint\" {{\n  description = \"Proxmox VE API URL, e.g. https://192.168.68.200:8006/\"\n  type        = string\n{endpoint_default}}}\n\
\n\
variable \"proxmox_api_token\" {{\n  description = \"API token, user@realm!tokenid=secret (or set PROXMOX_VE_API_TOKEN and pass it here)\"\n  type        = string\n  sensitive   = true\n}}\n\
\n\
variable \"proxmox_insecure\" {{\n  description = \"Skip TLS verification of the API (Proxmox's self-signed certificate)\"\n  type        = bool\n  default     = {insecure}\n}}\n\
\n\
variable \"proxmox_ssh_username\" {{\n  description = \"SSH user on the node for the snippet uploads (the API cannot upload snippets); keys come from ssh-agent\"\n  type        = string\n  default     = {user}\n}}\n",
        hdr = header(mesh, "Inputs of the Proxmox VMs; the API token has no default and is never rendered"),
        insecure = s.insecure,
        user = hcl_str(&s.ssh_username),
    )
}

/// The data source looking up a template given by name only: (its Terraform name, its block).
fn template_data(vm: &ProxmoxVm) -> Option<(String, String)> {
    if vm.template.vm_id.is_some() {
        return None;
    }
    let name = vm.template.name.as_deref()?;
    let node = vm.template.node_name.as_deref().unwrap_or(&vm.node_name);
    let id = format!("template_{}_{}", tf_ident(name), tf_ident(node));
    let block = format!(
        "# The template by name: its VMID is looked up when planning.\n\
data \"proxmox_virtual_environment_vms\" \"{id}\" {{\n  node_name = {node}\n\n  filter {{\n    name   = \"name\"\n    values = [{name}]\n  }}\n\n  filter {{\n    name   = \"template\"\n    values = [\"true\"]\n  }}\n}}\n\n",
        node = hcl_str(node),
        name = hcl_str(name),
    );
    Some((id, block))
}

fn vm_resource(host: &str, vm: &ProxmoxVm, member: bool) -> String {
    let id = tf_ident(host);
    let clone_id = match (vm.template.vm_id, template_data(vm)) {
        (Some(t), _) => t.to_string(),
        (None, Some((data, _))) => {
            format!("data.proxmox_virtual_environment_vms.{data}.vms[0].vm_id")
        }
        (None, None) => String::new(),
    };
    let template_desc = match (&vm.template.name, vm.template.vm_id) {
        (Some(n), Some(t)) => format!("{n} ({t})"),
        (Some(n), None) => n.clone(),
        (None, Some(t)) => t.to_string(),
        (None, None) => String::new(),
    };
    let mut clone = vec![("vm_id", clone_id)];
    if let Some(n) = vm
        .template
        .node_name
        .as_ref()
        .filter(|n| **n != vm.node_name)
    {
        clone.push(("node_name", hcl_str(n)));
    }
    clone.push(("full", "true".to_string()));
    let clone = attrs(4, &clone);
    let vm_id = vm
        .vm_id
        .map(|v| format!("  vm_id       = {v}\n"))
        .unwrap_or_default();
    let mut net = vec![("bridge", hcl_str(&vm.bridge))];
    if let Some(v) = vm.vlan_id {
        net.push(("vlan_id", v.to_string()));
    }
    let net = attrs(4, &net);
    let mut tags = [
        "nebula-provision",
        vm.role.as_str(),
        if member { "nebula-mesh" } else { "lan-only" },
    ];
    // Proxmox sorts tags; an unsorted list would show as a change on every plan.
    tags.sort();
    let tags = tags
        .iter()
        .map(|t| hcl_str(t))
        .collect::<Vec<_>>()
        .join(", ");
    let dns = match &vm.dns {
        Some(d) => {
            let mut items = Vec::new();
            if let Some(dom) = &d.domain {
                items.push(("domain", hcl_str(dom)));
            }
            if !d.servers.is_empty() {
                let s = d
                    .servers
                    .iter()
                    .map(|s| hcl_str(&s.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ");
                items.push(("servers", format!("[{s}]")));
            }
            format!("    dns {{\n{}    }}\n\n", attrs(6, &items))
        }
        None => String::new(),
    };
    let ipv4 = match &vm.ipv4 {
        Ipv4Config::Dhcp => "        address = \"dhcp\"\n".to_string(),
        Ipv4Config::Static { address, gateway } => {
            let mut b = format!("        address = {}\n", hcl_str(&address.to_string()));
            if let Some(g) = gateway {
                b.push_str(&format!("        gateway = {}\n", hcl_str(&g.to_string())));
            }
            b
        }
    };
    let what = if member {
        "mesh member: its user-data installs the nebula bundle"
    } else {
        "outside the mesh (LAN only): its user-data sets hostname and keys"
    };
    format!(
        "# `{host}` ({role}; {what}).\n\
resource \"proxmox_virtual_environment_file\" \"user_data_{id}\" {{\n  content_type = \"snippets\"\n  datastore_id = {snip_ds}\n  node_name    = {node}\n\n  # Read at apply time from the rendered bundle (it holds the host key: never inlined here).\n  source_file {{\n    path      = \"${{path.module}}/../../{host}/{user_data}\"\n    file_name = {snippet}\n  }}\n}}\n\
\n\
resource \"proxmox_virtual_environment_vm\" \"{id}\" {{\n  name        = {name}\n  description = {desc}\n  node_name   = {node}\n{vm_id}  tags        = [{tags}]\n\n  clone {{\n{clone}  }}\n\n  # qemu-guest-agent is installed in the template; it reports the addresses.\n  agent {{\n    enabled = true\n  }}\n\n  cpu {{\n    cores = {cores}\n  }}\n\n  memory {{\n    dedicated = {memory}\n  }}\n\n  disk {{\n    datastore_id = {ds}\n    interface    = {iface}\n    size         = {disk}\n  }}\n\n  network_device {{\n{net}  }}\n\n  initialization {{\n    datastore_id = {ds}\n\n{dns}    ip_config {{\n      ipv4 {{\n{ipv4}      }}\n    }}\n\n    user_data_file_id = proxmox_virtual_environment_file.user_data_{id}.id\n  }}\n}}\n\n",
        role = vm.role.as_str(),
        snip_ds = hcl_str(&vm.snippets_datastore_id),
        node = hcl_str(&vm.node_name),
        user_data = names::USER_DATA,
        snippet = hcl_str(&snippet_name(host)),
        name = hcl_str(&vm.name),
        desc = hcl_str(&format!(
            "nebula-provision host {host}, full clone of {template_desc}"
        )),
        cores = vm.cores,
        memory = vm.memory_mib,
        ds = hcl_str(&vm.datastore_id),
        iface = hcl_str(&vm.disk_interface),
        disk = vm.disk_size_gb,
    )
}

fn main_tf(mesh: &Mesh) -> String {
    let mut out = header(
        mesh,
        "Proxmox VMs: full clones of the template, sized and addressed per host",
    );
    out.push_str(
        "provider \"proxmox\" {\n  endpoint  = var.proxmox_endpoint\n  api_token = var.proxmox_api_token\n  insecure  = var.proxmox_insecure\n\n  # Snippets are uploaded over SSH (the API cannot); keys come from ssh-agent.\n  ssh {\n    agent    = true\n    username = var.proxmox_ssh_username\n  }\n}\n\n",
    );
    let mut looked_up = std::collections::BTreeSet::new();
    for (host, vm) in mesh.proxmox_vms() {
        if let Some((id, block)) = template_data(vm) {
            if looked_up.insert(id) {
                out.push_str(&block);
            }
        }
        out.push_str(&vm_resource(host, vm, mesh.host(host).is_some()));
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn outputs_tf(mesh: &Mesh) -> String {
    let mut entries = String::new();
    for (host, vm) in mesh.proxmox_vms() {
        let id = tf_ident(host);
        let address = match &vm.ipv4 {
            Ipv4Config::Dhcp => "dhcp".to_string(),
            Ipv4Config::Static { address, .. } => address.addr().to_string(),
        };
        entries.push_str(&format!(
            "    {key} = {{\n      vm_id          = proxmox_virtual_environment_vm.{id}.vm_id\n      address        = {address}\n      ipv4_addresses = proxmox_virtual_environment_vm.{id}.ipv4_addresses\n    }}\n",
            key = hcl_str(host),
            address = hcl_str(&address),
        ));
    }
    format!(
        "{}output \"vms\" {{\n  description = \"Per host: VMID, the address from the inventory (or dhcp), and the IPv4 addresses the guest agent reports per interface\"\n  value = {{\n{entries}  }}\n}}\n",
        header(mesh, "Outputs of the Proxmox VMs")
    )
}

/// The files of `terraform/<dir>/`, when some host has `proxmox:`.
pub fn files(mesh: &Mesh) -> Vec<OutFile> {
    let Some(s) = &mesh.proxmox else {
        return Vec::new();
    };
    let dir = PathBuf::from("terraform").join(&s.terraform_dir);
    [
        ("versions.tf", versions_tf(mesh)),
        ("variables.tf", variables_tf(mesh, s)),
        ("main.tf", main_tf(mesh)),
        ("outputs.tf", outputs_tf(mesh)),
    ]
    .into_iter()
    .map(|(n, text)| OutFile::text(dir.join(n), text, 0o644))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, with_proxmox};

    fn rendered(text: &str) -> (tempfile::TempDir, Vec<OutFile>) {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), text);
        (t, files(&mesh))
    }

    fn file(files: &[OutFile], name: &str) -> String {
        let f = files
            .iter()
            .find(|f| f.rel.ends_with(name))
            .unwrap_or_else(|| panic!("{name} missing"));
        String::from_utf8(f.contents.clone().expect("contents")).expect("utf8")
    }

    #[test]
    fn every_vm_is_a_sized_full_clone_with_its_snippet() {
        let (_t, files) = rendered(&with_proxmox());
        let dirs: Vec<_> = files.iter().map(|f| f.rel.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "terraform/proxmox/versions.tf",
                "terraform/proxmox/variables.tf",
                "terraform/proxmox/main.tf",
                "terraform/proxmox/outputs.tf"
            ]
        );
        let main = file(&files, "main.tf");
        for want in [
            "resource \"proxmox_virtual_environment_vm\" \"k3s_cp\" {",
            "  vm_id       = 221\n",
            "    cores = 4\n",
            "    dedicated = 8192\n",
            "    size         = 64\n",
            "        address = \"192.168.68.221/20\"\n        gateway = \"192.168.68.1\"\n",
            "    user_data_file_id = proxmox_virtual_environment_file.user_data_k3s_cp.id\n",
            "    path      = \"${path.module}/../../k3s-cp/user-data\"\n",
            "    file_name = \"k3s-cp.user-data.yaml\"\n",
            "  clone {\n    vm_id = 9000\n    full  = true\n  }\n",
            "    dedicated = 16384\n",
            "        address = \"dhcp\"\n      }",
            "  tags        = [\"lan-only\", \"nebula-provision\", \"worker\"]\n",
            "  tags        = [\"ingress\", \"nebula-mesh\", \"nebula-provision\"]\n",
        ] {
            assert!(main.contains(want), "missing {want:?} in\n{main}");
        }
        // Three VMs, three snippets; no provider values but from variables.
        assert_eq!(
            main.matches("resource \"proxmox_virtual_environment_vm\"")
                .count(),
            3
        );
        assert_eq!(main.matches("content_type = \"snippets\"").count(), 3);
        assert!(main.contains("api_token = var.proxmox_api_token"));
        let vars = file(&files, "variables.tf");
        assert!(vars.contains(
            "variable \"proxmox_api_token\" {\n  description = \"API token, user@realm!tokenid=secret (or set PROXMOX_VE_API_TOKEN and pass it here)\"\n  type        = string\n  sensitive   = true\n}"
        ), "{vars}");
        assert!(vars.contains("default     = \"https://192.168.68.200:8006/\""));
        let outputs = file(&files, "outputs.tf");
        assert!(outputs.contains(
            "    \"k3s-cp\" = {\n      vm_id          = proxmox_virtual_environment_vm.k3s_cp.vm_id\n      address        = \"192.168.68.221\"\n"
        ), "{outputs}");
        assert!(outputs
            .contains("ipv4_addresses = proxmox_virtual_environment_vm.k3s_w1.ipv4_addresses"));
    }

    #[test]
    fn a_template_by_name_is_looked_up_and_vlans_and_dns_are_rendered() {
        let text = with_proxmox().replacen(
            "  template: {vm_id: 9000, name: prakriti-template}\n",
            "  template: {name: prakriti-template, node_name: pve2}\n  vlan_id: 30\n  dns: {servers: [192.168.68.1], domain: home.arpa}\n  terraform_dir: vyom\n",
            1,
        );
        let (_t, files) = rendered(&text);
        assert!(files[0].rel.starts_with("terraform/vyom"));
        let main = file(&files, "main.tf");
        for want in [
            "data \"proxmox_virtual_environment_vms\" \"template_prakriti_template_pve2\" {\n  node_name = \"pve2\"\n",
            "    values = [\"prakriti-template\"]\n",
            "    vm_id     = data.proxmox_virtual_environment_vms.template_prakriti_template_pve2.vms[0].vm_id\n    node_name = \"pve2\"\n    full      = true\n",
            "    bridge  = \"vmbr0\"\n    vlan_id = 30\n",
            "      domain  = \"home.arpa\"\n      servers = [\"192.168.68.1\"]\n",
        ] {
            assert!(main.contains(want), "missing {want:?} in\n{main}");
        }
        // One lookup for the three VMs of that template.
        assert_eq!(
            main.matches("data \"proxmox_virtual_environment_vms\"")
                .count(),
            1
        );
    }

    #[test]
    fn no_vm_no_files() {
        let (_t, files) = rendered(crate::testutil::INV);
        assert!(files.is_empty());
    }
}
