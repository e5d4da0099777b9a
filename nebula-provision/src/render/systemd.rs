//! systemd units: `nebula.service` (`Type=notify` with a watchdog; hardened: CAP_NET_ADMIN only,
//! /dev/net/tun only, read-only system, no new privileges, restart on failure) and `nebula-edge.service`.
//!
//! Values placed in the units (binary path, device name) were restricted by validation to
//! characters that need no quoting and contain no `%` specifiers.

use crate::model::{Host, Mesh};
use crate::render::{inventory_name, names, ETC_DIR};

/// `WatchdogSec=` of `nebula.service`, in seconds.
pub const WATCHDOG_SEC: u32 = 30;

/// The `nebula.service` unit for `host`.
pub fn nebula_service(mesh: &Mesh, host: &Host) -> String {
    // Our node sends READY=1, RELOADING=1 and, every WatchdogSec/2 while its data plane and
    // control thread are alive, WATCHDOG=1: a hung node is restarted like a crashed one.
    let (kind, notify) = match (host.binary.notify, host.binary.watchdog) {
        (true, true) => (
            "notify",
            format!("NotifyAccess=main\nWatchdogSec={WATCHDOG_SEC}s\n"),
        ),
        (true, false) => ("notify", "NotifyAccess=main\n".to_string()),
        (false, _) => ("simple", String::new()),
    };
    // Binding below 1024 needs one more capability.
    let caps = if host.listen_port != 0 && host.listen_port < 1024 {
        "CAP_NET_ADMIN CAP_NET_BIND_SERVICE"
    } else {
        "CAP_NET_ADMIN"
    };
    format!(
        "# nebula for host `{name}`, rendered by nebula-provision from {inv}.\n\
# Installed as /etc/systemd/system/{unit}; the bundle is {ETC_DIR}/.\n\
[Unit]\n\
Description=Nebula overlay network ({name})\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
Type={kind}\n\
{notify}\
ExecStart={bin} -config {ETC_DIR}/{config}\n\
ExecReload=/bin/kill -HUP $MAINPID\n\
Restart=on-failure\n\
RestartSec=5s\n\
SyslogIdentifier=nebula\n\
# The control API (nebula-ctl) listens in /run/nebula; kept across restarts.\n\
RuntimeDirectory=nebula\n\
RuntimeDirectoryMode=0700\n\
RuntimeDirectoryPreserve=yes\n\
\n\
# Only what a nebula node needs: CAP_NET_ADMIN to create and address the tun device.\n\
CapabilityBoundingSet={caps}\n\
NoNewPrivileges=yes\n\
DevicePolicy=closed\n\
DeviceAllow=/dev/net/tun rw\n\
ProtectSystem=strict\n\
ProtectHome=yes\n\
PrivateTmp=yes\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectKernelLogs=yes\n\
ProtectControlGroups=yes\n\
ProtectClock=yes\n\
ProtectHostname=yes\n\
ProtectProc=invisible\n\
RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX\n\
RestrictNamespaces=yes\n\
RestrictRealtime=yes\n\
RestrictSUIDSGID=yes\n\
LockPersonality=yes\n\
MemoryDenyWriteExecute=yes\n\
SystemCallArchitectures=native\n\
SystemCallFilter=@system-service\n\
SystemCallErrorNumber=EPERM\n\
UMask=0077\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        name = host.name,
        inv = inventory_name(mesh),
        unit = names::SERVICE,
        config = names::CONFIG,
        bin = host.binary.path,
    )
}

/// The `nebula-edge.service` unit: turns on IPv4 forwarding and loads the forwarding rules;
/// stopping it removes them.
pub fn edge_service(mesh: &Mesh, host: &Host) -> String {
    format!(
        "# Edge forwarding for host `{name}`, rendered by nebula-provision from {inv}.\n\
# Installed as /etc/systemd/system/{unit}; rules in {ETC_DIR}/{nft}.\n\
[Unit]\n\
Description=Nebula edge forwarding: public ports to mesh hosts ({name})\n\
After=network-pre.target nebula.service\n\
Wants=nebula.service\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStartPre=/usr/sbin/sysctl -q -w net.ipv4.ip_forward=1\n\
ExecStart=/usr/sbin/nft -f {ETC_DIR}/{nft}\n\
ExecReload=/usr/sbin/nft -f {ETC_DIR}/{nft}\n\
ExecStop=/usr/sbin/nft delete table ip nebula_edge\n\
CapabilityBoundingSet=CAP_NET_ADMIN\n\
NoNewPrivileges=yes\n\
ProtectSystem=strict\n\
ProtectHome=yes\n\
PrivateTmp=yes\n\
RestrictAddressFamilies=AF_NETLINK AF_UNIX\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        name = host.name,
        inv = inventory_name(mesh),
        unit = names::EDGE_SERVICE,
        nft = names::EDGE_NFT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mesh_in, INV};

    /// The directives of `unit` (comments and blank lines dropped), in order.
    fn directives(unit: &str) -> Vec<&str> {
        unit.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    fn packaged(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../nebula-node/debian")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The Debian package's units are the provisioning unit for a host whose binary is
    /// /usr/bin/nebula: the same type, watchdog and hardening, line for line.
    #[test]
    fn packaged_units_are_the_rendered_unit() {
        let t = tempfile::tempdir().expect("tempdir");
        let inv = INV.replacen(
            "pki:",
            "defaults:\n  nebula_binary: {path: /usr/bin/nebula}\npki:",
            1,
        );
        let mesh = mesh_in(t.path(), &inv);
        let rendered = nebula_service(&mesh, mesh.host("web1").expect("web1"));
        let mut want = directives(&rendered);
        let i = want
            .iter()
            .position(|l| l.starts_with("Description="))
            .expect("Description");
        want[i] = "Description=Nebula overlay network";
        want.insert(i + 1, "Documentation=man:nebula(1)");
        let unit = packaged("nebula.service");
        assert_eq!(
            directives(&unit),
            want,
            "nebula.service drifted from the rendered unit"
        );

        // The template: the same but for the instance's config, name and log tag.
        let want_at: Vec<String> = want
            .iter()
            .map(|l| match *l {
                "Description=Nebula overlay network" => {
                    "Description=Nebula overlay network (%i)".to_string()
                }
                "SyslogIdentifier=nebula" => "SyslogIdentifier=nebula-%i".to_string(),
                l if l.starts_with("ExecStart=") => {
                    "ExecStart=/usr/lib/nebula/bin/nebula-systemd-launcher %i".to_string()
                }
                l => l.to_string(),
            })
            .collect();
        let at = packaged("nebula@.service");
        assert_eq!(directives(&at), want_at, "nebula@.service drifted");
    }

    /// ProtectSystem=strict leaves /run read-only: the control socket needs its own directory.
    #[test]
    fn control_socket_directory_is_writable() {
        let t = tempfile::tempdir().expect("tempdir");
        let mesh = mesh_in(t.path(), INV);
        let u = nebula_service(&mesh, mesh.host("web1").expect("web1"));
        assert!(u.contains("ProtectSystem=strict\n"));
        assert!(u.contains("\nRuntimeDirectory=nebula\n"), "{u}");
    }
}
