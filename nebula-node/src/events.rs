//! What the node logs for the engine's events (tunnel up and down, handshake failures, roaming):
//! one place, called by whoever carries out the engine's outputs.

use nebula_core::engine::Event;

/// Log one engine event, in Go Nebula's wording where Go logs the same thing.
pub fn log_event(e: &Event) {
    match e {
        Event::TunnelUp {
            vpn_addr,
            remote,
            local_index,
            initiator,
            cert_name,
        } => tracing::info!(
            vpn_addr = %vpn_addr,
            remote = ?remote,
            local_index,
            initiator,
            cert_name = %cert_name,
            "Handshake completed, tunnel up"
        ),
        Event::TunnelDown {
            vpn_addr,
            local_index,
            reason,
        } => {
            tracing::info!(vpn_addr = %vpn_addr, local_index, reason = ?reason, "Tunnel down")
        }
        Event::HandshakeTimedOut { vpn_addr } => {
            tracing::info!(vpn_addr = %vpn_addr, "Handshake timed out")
        }
        Event::HandshakeRejected { from, reason } => {
            tracing::info!(from = %from, reason = %reason, "Handshake refused")
        }
        Event::Roamed { vpn_addr, from, to } => {
            tracing::info!(vpn_addr = %vpn_addr, from = ?from, to = %to, "Host roamed to new udp ip/port.")
        }
        Event::PeerCertificateInvalid {
            vpn_addr,
            cert_name,
            error,
        } => tracing::warn!(
            vpn_addr = %vpn_addr,
            cert_name = %cert_name,
            error = %error,
            "Remote certificate is no longer valid, tearing down the tunnel"
        ),
        Event::TestReply { vpn_addr, .. } => tracing::debug!(vpn_addr = %vpn_addr, "test reply"),
        Event::RelayRefused {
            hop,
            from,
            to,
            reason,
        } => tracing::info!(
            vpn_addrs = %hop,
            relay_from = %from,
            relay_to = %to,
            reason = ?reason,
            "Refusing CreateRelayRequest"
        ),
    }
}
