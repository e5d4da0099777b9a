//! Turning a loaded config into the engine's inputs: credentials (`Pki`), the engine settings and
//! the compiled firewall. Used at start-up, by `-test`, and again on every SIGHUP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use nebula_cert::cert::Certificate;
use nebula_cert::error::CertError;
use nebula_cert::keys::KeyError;
use nebula_cert::pool::CaPool;
use nebula_cert::{keys, Version};
use nebula_core::aead::CipherKind;
use nebula_core::engine::{EngineConfig, PunchyConfig, RecvErrorPolicy};
use nebula_core::firewall::{
    Action, Firewall, FirewallConfig as CoreFirewallConfig, FirewallError,
};
use nebula_core::pki::Pki;
use nebula_core::EngineError;
use thiserror::Error;

use crate::config::{self, Cipher, Config, ConfigError, FirewallAction};

/// Why the node cannot start (or a reload was refused). Each names the config key at fault.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The CA bundle does not parse.
    #[error("pki.ca: {0}")]
    Ca(#[source] CertError),
    #[error("pki.ca: no CA certificates found")]
    NoCa,
    /// The certificate file does not parse.
    #[error("pki.cert: {0}")]
    Cert(#[source] CertError),
    #[error("pki.cert: no certificate found")]
    NoCert,
    #[error("pki.cert: certificate {0:?} is expired or not yet valid")]
    CertNotValidNow(String),
    /// The private key file does not parse.
    #[error("pki.key: {0}")]
    Key(#[source] KeyError),
    /// Certificate(s) and key do not make usable credentials (mismatch, CA cert, no networks).
    #[error("{0}")]
    Pki(#[source] EngineError),
    /// The firewall rules do not compile.
    #[error("firewall: {0}")]
    Firewall(#[source] FirewallError),
}

/// Load `pki.*`: the CA pool (with blocklist), our certificate(s) and key.
pub fn load_pki(cfg: &Config, now_unix: i64) -> Result<(Pki, Vec<String>), SetupError> {
    let bytes = cfg.pki.load()?;
    let (mut pool, mut warnings) =
        CaPool::from_pem_at(&bytes.ca, now_unix).map_err(SetupError::Ca)?;
    if pool.is_empty() {
        return Err(SetupError::NoCa);
    }
    for fp in &cfg.pki.blocklist {
        pool.blocklist_fingerprint(fp);
    }
    let certs = Certificate::from_pem_many(&bytes.cert).map_err(SetupError::Cert)?;
    if certs.is_empty() {
        return Err(SetupError::NoCert);
    }
    for c in &certs {
        if c.expired(now_unix) {
            return Err(SetupError::CertNotValidNow(c.name().to_string()));
        }
        if let Err(e) = pool.verify(now_unix, c) {
            warnings.push(format!(
                "pki.cert: certificate {:?} does not verify against pki.ca: {e}",
                c.name()
            ));
        }
    }
    let (key, _curve, _) = keys::unmarshal_private_key(&bytes.key).map_err(SetupError::Key)?;
    let initiating = match cfg.pki.initiating_version {
        Some(1) => Some(Version::V1),
        Some(2) => Some(Version::V2),
        _ => None,
    };
    let pki = Pki::new(certs, key, pool, initiating).map_err(SetupError::Pki)?;
    Ok((pki, warnings))
}

/// Resolve `static_host_map` entries once (start-up, reload), each name within
/// `static_map.lookup_timeout`; [`crate::static_map`] re-resolves them every `static_map.cadence`.
pub fn resolve_static_hosts(cfg: &Config) -> Result<HashMap<IpAddr, Vec<SocketAddr>>, SetupError> {
    let mut names = crate::static_map::StaticNames::from_config(cfg);
    Ok(names.resolve_all(&crate::static_map::SystemResolver::default()))
}

fn action(a: FirewallAction) -> Action {
    match a {
        FirewallAction::Drop => Action::Drop,
        FirewallAction::Reject => Action::Reject,
    }
}

/// Compile the firewall for our certificate's networks.
pub fn build_firewall(cfg: &Config, pki: &Pki) -> Result<Firewall, SetupError> {
    let f = &cfg.firewall;
    let core = CoreFirewallConfig {
        outbound: f.outbound.clone(),
        inbound: f.inbound.clone(),
        inbound_action: action(f.inbound_action),
        outbound_action: action(f.outbound_action),
        tcp_timeout: f.conntrack.tcp_timeout,
        udp_timeout: f.conntrack.udp_timeout,
        default_timeout: f.conntrack.default_timeout,
        default_local_cidr_any: f.default_local_cidr_any,
        conntrack_max_entries: f.conntrack.max_entries,
    };
    Firewall::new(&core, pki.networks(), pki.unsafe_networks()).map_err(SetupError::Firewall)
}

/// The engine's settings from the config.
pub fn engine_config(
    cfg: &Config,
    static_hosts: HashMap<IpAddr, Vec<SocketAddr>>,
    advertise: Vec<SocketAddr>,
) -> EngineConfig {
    let recv_error = |p: config::RecvErrorPolicy| match p {
        config::RecvErrorPolicy::Always => RecvErrorPolicy::Always,
        config::RecvErrorPolicy::Never => RecvErrorPolicy::Never,
        config::RecvErrorPolicy::Private => RecvErrorPolicy::Private,
    };
    let accept = !matches!(cfg.listen.accept_recv_error, config::RecvErrorPolicy::Never);
    let mut unsafe_routes = Vec::new();
    for r in &cfg.tun.unsafe_routes {
        if let Some(g) = r.via.first() {
            unsafe_routes.push((r.route, g.addr));
        }
    }
    EngineConfig {
        cipher: match cfg.cipher {
            Cipher::Aes => CipherKind::AesGcm,
            Cipher::ChaChaPoly => CipherKind::ChaChaPoly,
        },
        handshake_try_interval: cfg.handshakes.try_interval,
        handshake_retries: cfg.handshakes.retries,
        connection_alive_interval: cfg.timers.connection_alive_interval,
        pending_deletion_interval: cfg.timers.pending_deletion_interval,
        static_host_map: static_hosts,
        lighthouses: cfg.lighthouse.hosts.clone(),
        am_lighthouse: cfg.lighthouse.am_lighthouse,
        lighthouse_interval: cfg.lighthouse.interval,
        advertise_addrs: advertise,
        preferred_ranges: cfg.preferred_ranges.clone(),
        punchy: PunchyConfig {
            punch: cfg.punchy.punch,
            respond: cfg.punchy.respond,
            delay: cfg.punchy.delay,
            respond_delay: cfg.punchy.respond_delay,
            target_all_remotes: cfg.punchy.target_all_remotes,
        },
        drop_inactive: cfg.tunnels.drop_inactive,
        inactivity_timeout: cfg.tunnels.inactivity_timeout,
        send_recv_error: recv_error(cfg.listen.send_recv_error),
        accept_recv_error: accept,
        disconnect_invalid: cfg.pki.disconnect_invalid,
        unsafe_routes,
        remote_allow_list: cfg.lighthouse.remote_allow_list.clone(),
        calculated_remotes: cfg.lighthouse.calculated_remotes.clone(),
        relays: cfg.relay.relays.clone(),
        am_relay: cfg.relay.am_relay,
        use_relays: cfg.relay.use_relays(),
        try_promote_every: cfg.counters.try_promote,
        requery_every_packets: cfg.counters.requery_every_packets,
        requery_wait: cfg.timers.requery_wait_duration,
        ..EngineConfig::default()
    }
}
