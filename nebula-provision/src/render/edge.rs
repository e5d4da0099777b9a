//! The edge host's nftables rules: DNAT of public ports to mesh hosts (round-robin over several
//! targets), masquerade of those connections onto the tunnel, and TCP MSS clamping.
//!
//! Everything lives in one table, `ip nebula_edge`, which the file replaces atomically and which
//! nothing else uses: loading it never touches the host's other firewall rules.

use crate::model::{Edge, Mesh, Proto};
use crate::render::{inventory_name, names, ETC_DIR};

/// The `nebula-edge.nft` text.
pub fn nft_rules(mesh: &Mesh, edge: &Edge) -> String {
    let dev = &mesh.tun_dev;
    let iif = match &edge.public_interface {
        Some(i) => format!("iifname \"{i}\""),
        None => format!("iifname != \"{dev}\""),
    };
    let mut pre = String::new();
    let mut all_targets = Vec::new();
    for f in &edge.forwards {
        let proto = match f.proto {
            Proto::Udp => "udp",
            _ => "tcp",
        };
        let dest = match f.targets.as_slice() {
            [(_, ip)] => format!("{ip}:{}", f.to_port),
            many => {
                let entries = many
                    .iter()
                    .enumerate()
                    .map(|(i, (_, ip))| format!("{i} : {ip}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "numgen inc mod {} map {{ {entries} }} : {}",
                    many.len(),
                    f.to_port
                )
            }
        };
        let names = f
            .targets
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        pre.push_str(&format!(
            "\t\t# {proto}/{} -> {names} port {}\n\t\t{iif} fib daddr type local {proto} dport {} dnat to {dest}\n",
            f.port, f.to_port, f.port
        ));
        for (_, ip) in &f.targets {
            if !all_targets.contains(ip) {
                all_targets.push(*ip);
            }
        }
    }
    let targets = all_targets
        .iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let clamp = if edge.clamp_mss {
        format!(
            "\n\tchain forward {{\n\
\t\ttype filter hook forward priority mangle; policy accept;\n\
\t\t# The tunnel's MTU ({mtu}) is below the internet's: keep forwarded TCP segments small enough.\n\
\t\toifname \"{dev}\" tcp flags syn / syn,rst tcp option maxseg size set rt mtu\n\
\t}}\n",
            mtu = mesh.mtu
        )
    } else {
        String::new()
    };
    format!(
        "#!/usr/sbin/nft -f\n\
# Edge forwarding on `{host}`, rendered by nebula-provision from {inv}.\n\
# Loaded by {svc} from {ETC_DIR}/{file}. Replaces only its own table.\n\
table ip nebula_edge\n\
delete table ip nebula_edge\n\
\n\
table ip nebula_edge {{\n\
\tchain prerouting {{\n\
\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
{pre}\
\t}}\n\
\n\
\tchain postrouting {{\n\
\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
\t\t# The targets see this host's overlay address, which their firewall allows.\n\
\t\toifname \"{dev}\" ct status dnat ip daddr {{ {targets} }} masquerade\n\
\t}}\n\
{clamp}\
}}\n",
        host = edge.host,
        inv = inventory_name(mesh),
        svc = names::EDGE_SERVICE,
        file = names::EDGE_NFT,
    )
}
