//! The part of the node's control API answer (`nebula-ctl status --json`, version 1) that `status`
//! reads, as minimal serde types that ignore unknown fields; and the parse of one host's answer.

use serde::{Deserialize, Serialize};

use crate::error::StatusError;

/// The control API version this reader understands.
pub const API_VERSION: u32 = 1;

/// The response envelope: `ok` with `status`, or not with `error`.
#[derive(Debug, Clone, Deserialize)]
struct Response {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    status: Option<NodeStatus>,
}

/// One node's status, as far as `status` needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node itself.
    pub node: NodeInfo,
    /// Its tunnels (one per peer).
    pub tunnels: Vec<TunnelInfo>,
    /// Its own health judgement.
    pub health: Health,
}

/// The node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its certificate name.
    pub name: String,
    /// Its certificate.
    pub cert: CertInfo,
    /// The CAs it trusts.
    #[serde(default)]
    pub cas: Vec<CertInfo>,
    /// The `nebula` version.
    #[serde(default)]
    pub version: String,
}

/// A certificate's name and lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Certificate name.
    pub name: String,
    /// Fingerprint (hex).
    #[serde(default)]
    pub fingerprint: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Days until `not_after`, at the node's clock (negative once expired).
    pub days_left: f64,
}

/// One tunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// The peer's certificate name.
    pub name: String,
    /// The peer's vpn addresses.
    #[serde(default)]
    pub vpn_addrs: Vec<String>,
    /// Direct or through a relay.
    pub path: TunnelPath,
    /// Last measured round trip (ms), if any.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
}

/// How a tunnel's packets travel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TunnelPath {
    /// Straight to the peer's underlay address.
    Direct {
        /// That address.
        #[serde(default)]
        remote: String,
    },
    /// Through a relay (its vpn address).
    Relayed {
        /// The relay.
        #[serde(default)]
        via: String,
    },
    /// A kind a newer node knows and this reader does not.
    #[serde(other)]
    Other,
}

/// The node's own health judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Every data-plane worker went round its loop recently.
    pub data_plane_alive: bool,
    /// Lighthouses configured.
    #[serde(default)]
    pub lighthouses: usize,
    /// Lighthouses reachable.
    #[serde(default)]
    pub lighthouses_reachable: usize,
}

/// Reads one host's answer: exactly one version-1 `Response` with `ok` and a `status`. Returns
/// the typed status and the whole answer as JSON (unknown fields kept, for `--json`).
pub fn parse_response(bytes: &[u8]) -> Result<(NodeStatus, serde_json::Value), StatusError> {
    let bad = |e: serde_json::Error| StatusError::BadJson {
        reason: e.to_string(),
    };
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(bad)?;
    // The version first, so a newer layout is reported as such and not as a type error.
    let version = raw
        .get("version")
        .ok_or_else(|| StatusError::BadJson {
            reason: "no `version` field (not a control API response)".into(),
        })?
        .as_u64()
        .ok_or_else(|| StatusError::BadJson {
            reason: "`version` is not a number".into(),
        })?;
    if version != u64::from(API_VERSION) {
        return Err(StatusError::Version {
            found: version,
            wanted: API_VERSION,
        });
    }
    let r: Response = serde_json::from_value(raw.clone()).map_err(bad)?;
    if !r.ok {
        return Err(StatusError::NotOk {
            error: r.error.unwrap_or_else(|| "(no message)".into()),
        });
    }
    let status = r.status.ok_or_else(|| StatusError::BadJson {
        reason: "`ok` but no `status` object".into(),
    })?;
    Ok((status, raw))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A response as the node writes it (every field of version 1).
    pub(crate) const GOOD: &str = r#"{
  "version": 1, "ok": true,
  "status": {
    "node": {
      "name": "web1", "vpn_addrs": ["10.10.0.11"],
      "cert": {"name": "web1", "version": 1, "fingerprint": "aa11", "not_after": 1767225600, "days_left": 12.5},
      "cas": [{"name": "test-ca", "version": 1, "fingerprint": "cc00", "not_after": 1830000000, "days_left": 700.2}],
      "listen": ["0.0.0.0:4242"], "am_lighthouse": false, "am_relay": false,
      "lighthouses": [{"vpn_addr": "10.10.0.1", "reachable": true}],
      "relays": [], "uptime_seconds": 3600, "version": "0.1.0"
    },
    "tunnels": [
      {"name": "lh", "vpn_addrs": ["10.10.0.1"], "groups": ["lighthouse"],
       "path": {"kind": "direct", "remote": "192.0.2.1:4242"}, "rtt_ms": 3.25,
       "rx_bytes": 1, "tx_bytes": 2, "rx_packets": 1, "tx_packets": 1, "handshake_age_seconds": 60,
       "cipher": "aes", "cert_version": 1, "cert_not_after": 1800000000, "cert_days_left": 300.0,
       "initiator": true},
      {"name": "web2", "vpn_addrs": ["10.10.0.12"], "groups": ["web"],
       "path": {"kind": "relayed", "via": "10.10.0.1"}, "rtt_ms": null,
       "rx_bytes": 0, "tx_bytes": 0, "rx_packets": 0, "tx_packets": 0, "handshake_age_seconds": 5,
       "cipher": "aes", "cert_version": 1, "cert_not_after": 1800000000, "cert_days_left": 300.0,
       "initiator": false}
    ],
    "health": {"lighthouses": 1, "lighthouses_reachable": 1, "data_plane_alive": true, "cert_days_left": 12.5}
  }
}"#;

    #[test]
    fn a_full_version_1_response_is_read() {
        let (s, raw) = parse_response(GOOD.as_bytes()).expect("good");
        assert_eq!(s.node.name, "web1");
        assert_eq!(s.node.cert.days_left, 12.5);
        assert_eq!(s.node.cas.len(), 1);
        assert_eq!(s.tunnels.len(), 2);
        assert_eq!(
            s.tunnels[0].path,
            TunnelPath::Direct {
                remote: "192.0.2.1:4242".into()
            }
        );
        assert_eq!(s.tunnels[0].rtt_ms, Some(3.25));
        assert_eq!(
            s.tunnels[1].path,
            TunnelPath::Relayed {
                via: "10.10.0.1".into()
            }
        );
        assert_eq!(s.tunnels[1].rtt_ms, None);
        assert!(s.health.data_plane_alive);
        // The raw answer keeps what we do not model.
        assert_eq!(raw["status"]["node"]["uptime_seconds"], 3600);
    }

    #[test]
    fn unknown_fields_and_path_kinds_from_a_newer_node_are_ignored() {
        let newer = GOOD
            .replacen(
                "\"ok\": true,",
                "\"ok\": true, \"server_time\": 5, \"extra\": {\"a\": [1]},",
                1,
            )
            .replacen("\"kind\": \"relayed\"", "\"kind\": \"quantum\"", 1)
            .replacen(
                "\"days_left\": 12.5}",
                "\"days_left\": 12.5, \"curve\": \"P256\"}",
                1,
            );
        let (s, raw) = parse_response(newer.as_bytes()).expect("newer");
        assert_eq!(s.tunnels[1].path, TunnelPath::Other);
        assert_eq!(raw["server_time"], 5);
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let v2 = GOOD.replacen("\"version\": 1,", "\"version\": 2,", 1);
        let e = parse_response(v2.as_bytes()).expect_err("v2");
        assert!(
            matches!(
                e,
                StatusError::Version {
                    found: 2,
                    wanted: 1
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "control API version 2, this nebula-provision reads version 1"
        );
    }

    #[test]
    fn garbage_and_error_answers_are_errors_not_panics() {
        for (input, want) in [
            ("", "bad JSON"),
            ("nebula-ctl: cannot connect", "bad JSON"),
            ("{\"version\": 1, \"ok\": true", "bad JSON"),
            ("[1, 2]", "no `version` field"),
            ("{\"version\": \"1\"}", "`version` is not a number"),
            ("{\"version\": 1, \"ok\": true}", "`ok` but no `status`"),
            ("{\"version\": 1, \"ok\": \"yes\"}", "bad JSON"),
            (
                "{\"version\": 1, \"ok\": false, \"error\": \"reload in progress\"}",
                "answered with an error: reload in progress",
            ),
            (
                "{\"version\":1,\"ok\":true,\"status\":{\"node\":{},\"tunnels\":[],\"health\":{}}}",
                "bad JSON",
            ),
            ("\u{0}\u{1}\u{ff}", "bad JSON"),
        ] {
            let e = parse_response(input.as_bytes()).expect_err(input);
            assert!(e.to_string().contains(want), "{input:?}: {e}");
        }
        // Two responses glued together are not "exactly one".
        let two = format!("{GOOD}{GOOD}");
        assert!(parse_response(two.as_bytes()).is_err());
        // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_response(deep.as_bytes()).is_err());
    }
}
