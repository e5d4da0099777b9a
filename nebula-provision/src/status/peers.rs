//! Which peers each host may have a tunnel with, computed from the inventory alone: the firewall
//! rules provisioning renders into each host's `config.yml`, and the lighthouse tunnels.

use std::collections::BTreeSet;

use crate::model::{FwRule, Host, Mesh, Remote};

/// Whether `rule`'s remote side matches `peer`, the way Nebula matches a certificate: any host of
/// the CA, the certificate name, all of the listed groups, or the overlay address in the CIDR.
fn admits(rule: &FwRule, peer: &Host) -> bool {
    match &rule.remote {
        Remote::Any => true,
        Remote::Host(name) => *name == peer.name,
        Remote::Groups(gs) => gs.iter().all(|g| peer.groups.contains(g)),
        Remote::Cidr(net) => net.contains(&peer.overlay_ip),
    }
}

/// Whether `from` may open a flow to `to`: `from`'s outbound rules admit `to` and `to`'s inbound
/// rules admit `from` (replies then pass by conntrack).
fn may_open(from: &Host, to: &Host) -> bool {
    from.outbound.iter().any(|r| admits(r, to)) && to.inbound.iter().any(|r| admits(r, from))
}

/// The peers `host` may have a tunnel with, by name.
///
/// How: a peer is allowed when either side may open a flow to the other through both firewalls
/// (the opener's `outbound` and the other's `inbound` rules, exactly the rule lists rendered into
/// `config.yml`; a rule counts whatever its protocol and ports, since any allowed flow brings a
/// tunnel up), or when one of the two is a lighthouse and the other is not (every node keeps a
/// tunnel to each of its lighthouses for lighthouse messages, which the firewall does not filter).
/// A host is never its own peer. The relation is symmetric.
pub fn allowed_peers(mesh: &Mesh, host: &Host) -> BTreeSet<String> {
    mesh.hosts
        .iter()
        .filter(|p| p.name != host.name)
        .filter(|p| host.lighthouse != p.lighthouse || may_open(host, p) || may_open(p, host))
        .map(|p| p.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, INV};

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lighthouse_tunnels_and_firewall_rules_decide() {
        let t = tempfile::tempdir().expect("tempdir");
        // INV: lh -> web tcp/443 (and the edge forward), web -> lh icmp; web1 and web2 have no
        // rule between them.
        let mesh = mesh_in(t.path(), INV);
        let get = |n: &str| mesh.host(n).expect("host");
        assert_eq!(allowed_peers(&mesh, get("lh")), names(&["web1", "web2"]));
        assert_eq!(allowed_peers(&mesh, get("web1")), names(&["lh"]));
        assert_eq!(allowed_peers(&mesh, get("web2")), names(&["lh"]));

        // A rule between the two web hosts in one direction makes the pair allowed both ways;
        // a db host reached only by CIDR counts too.
        let more = INV.replacen(
            "firewall:\n  allow:\n",
            "firewall:\n  allow:\n    - {from: {host: web1}, to: {host: web2}, proto: udp, port: 53}\n    - {from: {cidr: 10.10.0.0/28}, to: {group: db}, proto: tcp, port: 5432}\n",
            1,
        )
        .replacen(
            "firewall:",
            "  db:\n    overlay_ip: 10.10.0.20\n    groups: [db]\n  other:\n    overlay_ip: 10.10.0.30\n    groups: [web]\nfirewall:",
            1,
        );
        let mesh = mesh_in(t.path(), &more);
        let get = |n: &str| mesh.host(n).expect("host");
        assert_eq!(
            allowed_peers(&mesh, get("web1")),
            names(&["db", "lh", "web2"])
        );
        assert_eq!(
            allowed_peers(&mesh, get("web2")),
            names(&["db", "lh", "web1"])
        );
        // 10.10.0.0/28 holds lh, web1, web2, not `other` (.30), which is in group web: it gets
        // the lighthouse's 443 but not db.
        assert_eq!(
            allowed_peers(&mesh, get("db")),
            names(&["lh", "web1", "web2"])
        );
        assert_eq!(allowed_peers(&mesh, get("other")), names(&["lh"]));
        assert_eq!(
            allowed_peers(&mesh, get("lh")),
            names(&["db", "other", "web1", "web2"])
        );
        // Symmetric.
        for a in &mesh.hosts {
            for b in allowed_peers(&mesh, a) {
                assert!(
                    allowed_peers(&mesh, get(&b)).contains(&a.name),
                    "{} {b}",
                    a.name
                );
            }
        }
    }
}
