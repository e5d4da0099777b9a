//! The benchmark's certificates and the lighthouse under test: one CA, the lighthouse's cert, key
//! and `config.yml`, host certificates on demand, and the child process with its log.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use ipnet::{IpNet, Ipv4Net};
use nebula_cert::cert::{Certificate, TbsCertificate};
use nebula_cert::pool::CaPool;
use nebula_cert::signing::CaSigningKey;
use nebula_cert::{keys, Curve, Version};
use nebula_core::pki::Pki;

/// The overlay network the simulated hosts get addresses from (never sent to).
pub const OVERLAY: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);
/// Its prefix length: room for eight million hosts.
pub const OVERLAY_PREFIX: u8 = 9;
/// Seconds of `timers.connection_alive_interval` / `pending_deletion_interval` on the lighthouse:
/// longer than any run, so it never tests or drops the (silent) simulated hosts' tunnels.
pub const QUIET_TIMER_SECS: u64 = 3600;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The overlay address of simulated host number `n` (the lighthouse is `.0.1`, hosts from `.0.2`).
pub fn host_vpn_addr(n: u64) -> Result<Ipv4Addr> {
    let offset = n
        .checked_add(2)
        .filter(|o| *o < (1u64 << (32 - OVERLAY_PREFIX)) - 1)
        .ok_or_else(|| anyhow!("host number {n} does not fit in {OVERLAY}/{OVERLAY_PREFIX}"))?;
    Ok(Ipv4Addr::from(u32::from(OVERLAY) + offset as u32))
}

/// A v1 Curve25519 CA valid from two days ago for two years, and the host certs it signs.
pub struct Ca {
    cert: Certificate,
    key: CaSigningKey,
    pool: CaPool,
    not_before: i64,
    not_after: i64,
}

impl Ca {
    pub fn new() -> Result<Ca> {
        let now = unix_now();
        let key = keys::generate_ca_key(Curve::Curve25519);
        let tbs = TbsCertificate {
            version: Version::V1,
            name: "lhload-ca".into(),
            networks: Vec::new(),
            unsafe_networks: Vec::new(),
            groups: Vec::new(),
            is_ca: true,
            not_before: now - 2 * 86400,
            not_after: now + 2 * 365 * 86400,
            public_key: keys::ca_public_key_bytes(&key),
            curve: Curve::Curve25519,
        };
        let cert = tbs.sign(None, &key).context("signing the CA")?;
        let mut pool = CaPool::new();
        pool.add_ca(cert.clone()).context("CA into pool")?;
        Ok(Ca {
            cert,
            key,
            pool,
            not_before: now - 86400,
            not_after: now + 365 * 86400,
        })
    }

    /// A host certificate for `name` at `addr` in the overlay, and its private key.
    pub fn host(&self, name: &str, addr: Ipv4Addr) -> Result<(Certificate, Vec<u8>)> {
        let (private, public) = keys::keygen(Curve::Curve25519);
        let net = Ipv4Net::new(addr, OVERLAY_PREFIX).context("host network")?;
        let tbs = TbsCertificate {
            version: Version::V1,
            name: name.to_string(),
            networks: vec![IpNet::V4(net)],
            unsafe_networks: Vec::new(),
            groups: Vec::new(),
            is_ca: false,
            not_before: self.not_before,
            not_after: self.not_after,
            public_key: public,
            curve: Curve::Curve25519,
        };
        let cert = tbs
            .sign(Some(&self.cert), &self.key)
            .with_context(|| format!("signing host {name}"))?;
        Ok((cert, private.to_vec()))
    }

    /// The credentials of simulated host `n`.
    pub fn host_pki(&self, n: u64) -> Result<Pki> {
        let addr = host_vpn_addr(n)?;
        let (cert, key) = self.host(&format!("host-{n}"), addr)?;
        Pki::new(vec![cert], key, self.pool.clone(), None)
            .map_err(|e| anyhow!("credentials of host {n}: {e}"))
    }

    pub fn cert_pem(&self) -> String {
        self.cert.marshal_pem()
    }
}

/// What the lighthouse's `config.yml` says.
pub struct LighthouseConfig<'a> {
    pub ca_path: &'a Path,
    pub cert_path: &'a Path,
    pub key_path: &'a Path,
    pub port: u16,
    pub log_level: &'a str,
}

/// The YAML both Go Nebula and ours read: a lighthouse without a TUN on 127.0.0.1, a firewall that
/// allows everything, and connection checks too slow to ever fire during a run.
pub fn lighthouse_config_yaml(c: &LighthouseConfig) -> String {
    format!(
        "pki:\n  ca: {ca}\n  cert: {cert}\n  key: {key}\n\
         static_host_map: {{}}\n\
         lighthouse:\n  am_lighthouse: true\n  interval: 60\n\
         listen:\n  host: 127.0.0.1\n  port: {port}\n\
         punchy:\n  punch: false\n\
         tun:\n  disabled: true\n\
         timers:\n  connection_alive_interval: {quiet}\n  pending_deletion_interval: {quiet}\n\
         logging:\n  level: {level}\n  format: text\n\
         firewall:\n  outbound:\n    - port: any\n      proto: any\n      host: any\n  \
         inbound:\n    - port: any\n      proto: any\n      host: any\n",
        ca = yaml_quote(&c.ca_path.display().to_string()),
        cert = yaml_quote(&c.cert_path.display().to_string()),
        key = yaml_quote(&c.key_path.display().to_string()),
        port = c.port,
        quiet = QUIET_TIMER_SECS,
        level = c.log_level,
    )
}

/// A double-quoted YAML scalar.
fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A free UDP port on 127.0.0.1 (bound, read, released).
pub fn free_udp_port() -> Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").context("probing a free UDP port")?;
    Ok(s.local_addr()?.port())
}

/// A running lighthouse under test.
pub struct Lighthouse {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Lighthouse {
    /// Writes CA, cert, key and config into `dir` and starts `binary -config dir/config.yml`.
    pub fn start(binary: &Path, dir: &Path, ca: &Ca) -> Result<Lighthouse> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_path = dir.join("ca.crt");
        let cert_path = dir.join("lighthouse.crt");
        let key_path = dir.join("lighthouse.key");
        let config_path = dir.join("config.yml");
        let log = dir.join("lighthouse.log");
        let (cert, key) = ca.host("lighthouse", Ipv4Addr::from(u32::from(OVERLAY) + 1))?;
        fs::write(&ca_path, ca.cert_pem())?;
        fs::write(&cert_path, cert.marshal_pem())?;
        fs::write(
            &key_path,
            keys::marshal_private_key(Curve::Curve25519, &key),
        )?;
        let port = free_udp_port()?;
        fs::write(
            &config_path,
            lighthouse_config_yaml(&LighthouseConfig {
                ca_path: &ca_path,
                cert_path: &cert_path,
                key_path: &key_path,
                port,
                log_level: "error",
            }),
        )?;
        let log_file = fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("-config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Lighthouse {
            child,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            log,
        })
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// An error if the process has exited, with the tail of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            return Err(anyhow!(
                "lighthouse exited ({status}); log tail:\n{}",
                self.log_tail()
            ));
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Kills (our own child, by its handle) and reaps the lighthouse.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_keys_both_implementations_read() {
        let y = lighthouse_config_yaml(&LighthouseConfig {
            ca_path: Path::new("/d/ca.crt"),
            cert_path: Path::new("/d/l.crt"),
            key_path: Path::new("/d/l \"x\".key"),
            port: 4242,
            log_level: "error",
        });
        for want in [
            "  ca: \"/d/ca.crt\"\n",
            "  key: \"/d/l \\\"x\\\".key\"\n",
            "lighthouse:\n  am_lighthouse: true\n",
            "listen:\n  host: 127.0.0.1\n  port: 4242\n",
            "tun:\n  disabled: true\n",
            "  connection_alive_interval: 3600\n",
            "  pending_deletion_interval: 3600\n",
            "logging:\n  level: error\n",
            "  inbound:\n    - port: any\n      proto: any\n      host: any\n",
        ] {
            assert!(y.contains(want), "missing {want:?} in\n{y}");
        }
        // Every line is indented by a multiple of two spaces (no tabs, no stray indentation).
        for line in y.lines() {
            let indent = line.len() - line.trim_start_matches(' ').len();
            assert_eq!(indent % 2, 0, "odd indentation: {line:?}");
            assert!(!line.contains('\t'));
        }
    }

    #[test]
    fn host_addresses_are_distinct_and_bounded() {
        assert_eq!(host_vpn_addr(0).unwrap(), Ipv4Addr::new(10, 128, 0, 2));
        assert_eq!(host_vpn_addr(254).unwrap(), Ipv4Addr::new(10, 128, 1, 0));
        assert_eq!(
            host_vpn_addr(99_999).unwrap(),
            Ipv4Addr::new(10, 129, 134, 161)
        );
        assert!(host_vpn_addr((1 << 23) - 3).is_err());
    }

    #[test]
    fn host_credentials_verify_against_the_ca() {
        let ca = Ca::new().unwrap();
        let pki = ca.host_pki(7).unwrap();
        let (cert, _) = ca.host("x", host_vpn_addr(7).unwrap()).unwrap();
        assert!(pki.ca_pool().verify(unix_now(), &cert).is_ok());
        assert_eq!(cert.networks()[0].to_string(), "10.128.0.9/9");
    }

    #[test]
    fn files_for_the_lighthouse_are_written() {
        let dir = tempfile::tempdir().unwrap();
        // `true` accepts any arguments and exits: enough to see the files and the spawn work.
        let mut lh = Lighthouse::start(Path::new("true"), dir.path(), &Ca::new().unwrap()).unwrap();
        let _ = lh.child.wait();
        let pem = fs::read_to_string(dir.path().join("lighthouse.crt")).unwrap();
        let (cert, _) = Certificate::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(cert.name(), "lighthouse");
        assert!(fs::read_to_string(dir.path().join("config.yml"))
            .unwrap()
            .contains(&format!("port: {}", lh.addr.port())));
        assert!(lh.check_alive().is_err());
    }
}
