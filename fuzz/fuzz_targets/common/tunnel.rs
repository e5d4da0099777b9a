//! Shared by the established-tunnel targets: seal fuzz bytes as an authenticated message (or a
//! relay frame) on a live tunnel, so the input gets past the AEAD and reaches the control plane.

use nebula_core::aead::{KeyUse, TAG_LEN};
use nebula_core::hostmap::Tunnel;
use proto::header::{subtype, Header, MessageType, HEADER_LEN};

/// `header || payload || tag` for the peer of `t`, with the tunnel's next send counter.
pub fn seal(t: &Tunnel, mt: MessageType, st: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let counter = t.session.next_counter().ok()?;
    let mut d = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    Header::new(mt, st, t.remote_index, counter)
        .encode(&mut d[..HEADER_LEN])
        .ok()?;
    d[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    let use_ = if (mt, st) == (MessageType::Message, subtype::MESSAGE_NONE) {
        KeyUse::Data
    } else {
        KeyUse::Control
    };
    t.session
        .send
        .seal_frame(use_, counter, &mut d, HEADER_LEN)
        .ok()?;
    Some(d)
}

/// A relay frame on `t`'s session: `header(relay_index) || inner || tag over both`.
#[allow(dead_code)] // not every target sends relay frames
pub fn seal_relay(t: &Tunnel, relay_index: u32, inner: &[u8]) -> Option<Vec<u8>> {
    let counter = t.session.next_counter().ok()?;
    let mut d = vec![0u8; HEADER_LEN + inner.len()];
    Header::new(
        MessageType::Message,
        subtype::MESSAGE_RELAY,
        relay_index,
        counter,
    )
    .encode(&mut d[..HEADER_LEN])
    .ok()?;
    d[HEADER_LEN..].copy_from_slice(inner);
    let tag = t
        .session
        .send
        .seal_ad_only(KeyUse::Data, counter, &d)
        .ok()?;
    d.extend_from_slice(&tag);
    Some(d)
}
