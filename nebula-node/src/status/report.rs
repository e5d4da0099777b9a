//! The control API's messages (version 1): what `nebula-ctl` and `nebula-provision status` send
//! and read, as serde types. One JSON request per connection, one JSON response.
//!
//! Compatibility rule: fields are only ever added within a version; a client ignores fields it
//! does not know, and a server answers a request for another version with an error naming its own.

use serde::{Deserialize, Serialize};

/// The version of this protocol.
pub const API_VERSION: u32 = 1;

/// Where the daemon listens by default (`control.socket`).
pub const DEFAULT_SOCKET: &str = "/run/nebula/control.sock";

/// A request: `{"version":1,"command":"status"}`, `{"version":1,"command":"ping","host":"lh",
/// "count":3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub command: Command,
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// The whole [`Status`].
    Status,
    /// Probe `host` (a certificate name or vpn address) `count` times with Nebula test messages.
    Ping {
        host: String,
        #[serde(default = "default_count")]
        count: u32,
    },
    /// Test hook (only when the daemon runs with `NEBULA_TEST_HOOKS=1`): the data-plane workers
    /// stop working, as a hung data plane would.
    DebugStallWorkers,
}

fn default_count() -> u32 {
    3
}

/// A response: `ok` with `result`, or not with `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingResult>,
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response {
            version: API_VERSION,
            ok: false,
            error: Some(message.into()),
            status: None,
            ping: None,
        }
    }
}

/// The node and every tunnel, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeInfo,
    pub tunnels: Vec<TunnelInfo>,
    pub health: Health,
}

/// This node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Our certificate's name.
    pub name: String,
    pub vpn_addrs: Vec<String>,
    /// Our certificate (the one we initiate with).
    pub cert: CertInfo,
    /// The CAs we trust.
    pub cas: Vec<CertInfo>,
    /// Where we listen for Nebula (UDP).
    pub listen: Vec<String>,
    pub am_lighthouse: bool,
    pub am_relay: bool,
    pub lighthouses: Vec<LighthouseInfo>,
    /// The relays we advertise (`relay.relays`).
    pub relays: Vec<String>,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// `nebula` version.
    pub version: String,
}

/// A certificate's identity and lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertInfo {
    pub name: String,
    pub version: u8,
    pub fingerprint: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Days until `not_after` (negative once expired).
    pub days_left: f64,
}

/// A lighthouse we use, and whether a tunnel to it is up and alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LighthouseInfo {
    pub vpn_addr: String,
    pub reachable: bool,
}

/// One peer's tunnel (the primary tunnel for its vpn address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelInfo {
    pub name: String,
    pub vpn_addrs: Vec<String>,
    pub groups: Vec<String>,
    pub path: Path,
    /// The last measured round trip, in milliseconds (`None` until one was measured).
    pub rtt_ms: Option<f64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Seconds since the handshake that made this tunnel.
    pub handshake_age_seconds: u64,
    /// `aes` or `chachapoly`.
    pub cipher: String,
    pub cert_version: u8,
    pub cert_not_after: i64,
    pub cert_days_left: f64,
    /// We sent stage 1 of the handshake.
    pub initiator: bool,
}

/// How a tunnel's packets travel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Path {
    /// Straight to the peer's underlay address.
    Direct { remote: String },
    /// Through a relay host (its vpn address).
    Relayed { via: String },
}

/// What `nebula-ctl health` judges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Lighthouses configured, and how many are reachable.
    pub lighthouses: usize,
    pub lighthouses_reachable: usize,
    /// Every data-plane worker went round its loop recently.
    pub data_plane_alive: bool,
    /// Days until the first of our certificate and our CAs expires.
    pub cert_days_left: f64,
}

/// One `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingResult {
    /// The host as resolved: its name and vpn address.
    pub name: String,
    pub vpn_addr: String,
    pub probes: Vec<Probe>,
}

/// One probe of a ping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub seq: u32,
    /// Round trip in milliseconds; `None`: no reply within the timeout.
    pub rtt_ms: Option<f64>,
    /// The path the reply came over (as in [`TunnelInfo::path`]); `None` without a tunnel.
    pub path: Option<Path>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_their_wire_form() {
        let r: Request =
            serde_json::from_str(r#"{"version":1,"command":"ping","host":"lh"}"#).expect("ping");
        assert_eq!(
            r.command,
            Command::Ping {
                host: "lh".into(),
                count: 3
            }
        );
        let s = serde_json::to_string(&Request {
            version: API_VERSION,
            command: Command::Status,
        })
        .expect("json");
        assert_eq!(s, r#"{"version":1,"command":"status"}"#);
        assert!(serde_json::from_str::<Request>(r#"{"version":1,"command":"rm-rf"}"#).is_err());
        let p = serde_json::to_string(&Path::Relayed {
            via: "10.0.0.9".into(),
        })
        .expect("json");
        assert_eq!(p, r#"{"kind":"relayed","via":"10.0.0.9"}"#);
    }
}
