//! Terraform for a host that is an AWS Lightsail instance (the ADR's Kshitiz): the instance, its
//! static IP and attachment, and its public ports — Nebula's UDP port open, TCP 22 only from the
//! admin addresses, the edge-forwarded ports if any, nothing else.

use crate::model::{Host, Lightsail, Mesh, Proto};
use crate::render::inventory_name;

/// An HCL string literal.
pub fn hcl_str(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn port_info(proto: &str, port: u16, cidrs: &[String], comment: &str) -> String {
    let list = cidrs
        .iter()
        .map(|c| hcl_str(c))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  # {comment}\n  port_info {{\n    protocol  = {}\n    from_port = {port}\n    to_port   = {port}\n    cidrs     = [{list}]\n  }}\n",
        hcl_str(proto)
    )
}

/// `terraform/<host>/main.tf`.
pub fn lightsail_tf(mesh: &Mesh, host: &Host, ls: &Lightsail) -> String {
    let id = host.name.replace(['.', '-'], "_");
    let any = vec!["0.0.0.0/0".to_string()];
    let admins: Vec<String> = ls.ssh_admin_cidrs.iter().map(|c| c.to_string()).collect();
    let mut ports = String::new();
    if host.listen_port != 0 {
        ports.push_str(&port_info(
            "udp",
            host.listen_port,
            &any,
            "Nebula (underlay UDP), from anywhere",
        ));
    }
    ports.push_str(&port_info(
        "tcp",
        22,
        &admins,
        "SSH, only from the admin address(es)",
    ));
    if let Some(e) = mesh.edge.as_ref().filter(|e| e.host == host.name) {
        for f in &e.forwards {
            let proto = if f.proto == Proto::Udp { "udp" } else { "tcp" };
            let to = f
                .targets
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            ports.push_str(&port_info(
                proto,
                f.port,
                &any,
                &format!("Edge forwarding to {to} over the mesh"),
            ));
        }
    }
    format!(
        "# Lightsail instance for `{name}`, rendered by nebula-provision from {inv}.\n\
# Public ports: only what is listed in aws_lightsail_instance_public_ports below.\n\
terraform {{\n  required_providers {{\n    aws = {{\n      source  = \"hashicorp/aws\"\n      version = \">= 5.0\"\n    }}\n  }}\n}}\n\
\n\
provider \"aws\" {{\n  region = {region}\n}}\n\
\n\
resource \"aws_lightsail_instance\" \"{id}\" {{\n  name              = {iname}\n  availability_zone = {az}\n  blueprint_id      = {bp}\n  bundle_id         = {bundle}\n  ip_address_type   = \"ipv4\"\n}}\n\
\n\
resource \"aws_lightsail_static_ip\" \"{id}\" {{\n  name = {sip}\n}}\n\
\n\
resource \"aws_lightsail_static_ip_attachment\" \"{id}\" {{\n  static_ip_name = aws_lightsail_static_ip.{id}.name\n  instance_name  = aws_lightsail_instance.{id}.name\n}}\n\
\n\
# Replaces the instance's whole firewall: anything not listed here is closed.\n\
resource \"aws_lightsail_instance_public_ports\" \"{id}\" {{\n  instance_name = aws_lightsail_instance.{id}.name\n\n{ports}}}\n\
\n\
output \"{id}_static_ip\" {{\n  description = \"Put this address in hosts.{name}.public_endpoints\"\n  value       = aws_lightsail_static_ip.{id}.ip_address\n}}\n",
        name = host.name,
        inv = inventory_name(mesh),
        region = hcl_str(&ls.region),
        iname = hcl_str(&ls.instance_name),
        az = hcl_str(&ls.availability_zone),
        bp = hcl_str(&ls.blueprint_id),
        bundle = hcl_str(&ls.bundle_id),
        sip = hcl_str(&ls.static_ip_name),
    )
}
