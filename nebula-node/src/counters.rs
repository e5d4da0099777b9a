//! The node's message counters (`messages.{rx,tx}.*` of Go's metric set): datagrams by header
//! type, counted at the socket edge by whoever reads or sends them.
//!
//! Relaxed atomics, one per name, touched only by control-plane datagrams: Go does not count
//! ordinary data messages here, so the data path pays one byte compare per datagram.

use std::sync::atomic::{AtomicU64, Ordering};

use proto::header::{is_valid_subtype, subtype, Header, MessageType, HEADER_LEN, VERSION};

/// The message names Go counts per direction (`messages.<dir>.<name>`), in slot order.
pub const MESSAGE_NAMES: [&str; 8] = [
    "handshake_ixpsk0",
    "recv_error",
    "lighthouse",
    "test_request",
    "test_response",
    "close_tunnel",
    "other",
    "message",
];
const OTHER: usize = 6;
/// `message`: data messages, counted only when the node has no TUN (Go's disabled device).
const MESSAGE: usize = 7;

/// Low nibble of byte 0 for a data message: the one byte the data path checks.
const MESSAGE_TYPE: u8 = 1;

/// Counts since start; read by the exporters.
#[derive(Debug, Default)]
pub struct NodeCounters {
    rx: [AtomicU64; 8],
    tx: [AtomicU64; 8],
    rx_invalid: AtomicU64,
    tx_punchy: AtomicU64,
    tx_holepunch: AtomicU64,
}

/// A reading of [`NodeCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub rx: [u64; 8],
    pub tx: [u64; 8],
    pub rx_invalid: u64,
    pub tx_punchy: u64,
    pub tx_holepunch: u64,
}

/// Go's slot for a (type, subtype) pair, `None` for data messages (not counted here).
fn slot(t: MessageType, st: u8) -> Option<usize> {
    Some(match (t, st) {
        (MessageType::Message, _) => return None,
        (MessageType::Handshake, subtype::HANDSHAKE_IX_PSK0) => 0,
        (MessageType::RecvError, 0) => 1,
        (MessageType::LightHouse, 0) => 2,
        (MessageType::Test, subtype::TEST_REQUEST) => 3,
        (MessageType::Test, subtype::TEST_REPLY) => 4,
        (MessageType::CloseTunnel, 0) => 5,
        _ => OTHER,
    })
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl NodeCounters {
    /// A datagram arrived. Data messages cost one compare; the rest are classified as Go does:
    /// unparseable (longer than a punch), another version or an undefined subtype is `invalid`.
    #[inline]
    pub fn received(&self, datagram: &[u8]) {
        if datagram.len() >= HEADER_LEN && datagram[0] == (VERSION << 4 | MESSAGE_TYPE) {
            return;
        }
        self.received_control(datagram);
    }

    #[cold]
    fn received_control(&self, datagram: &[u8]) {
        let Ok(h) = Header::parse(datagram) else {
            // Punches are 0 or 1 byte long: not counted, as in Go.
            if datagram.len() > 1 {
                bump(&self.rx_invalid);
            }
            return;
        };
        if h.version != VERSION || !is_valid_subtype(h.msg_type, h.subtype) {
            bump(&self.rx_invalid);
            return;
        }
        if let Some(i) = slot(h.msg_type, h.subtype) {
            bump(&self.rx[i]);
        }
    }

    /// A data message was opened for a node without a TUN (`messages.rx.message`).
    pub fn received_for_no_device(&self) {
        bump(&self.rx[MESSAGE]);
    }

    /// The control plane sent a datagram: by header, or a punch (`[1]` punchy keepalive, `[0]`
    /// hole punch, as the engine writes them).
    pub fn sent(&self, datagram: &[u8]) {
        match datagram {
            [1] => bump(&self.tx_punchy),
            [0] => bump(&self.tx_holepunch),
            _ => {
                if let Ok(h) = Header::parse(datagram) {
                    if let Some(i) = slot(h.msg_type, h.subtype) {
                        bump(&self.tx[i]);
                    }
                }
            }
        }
    }

    pub fn read(&self) -> MessageCounts {
        let load = |a: &[AtomicU64; 8]| a.each_ref().map(|c| c.load(Ordering::Relaxed));
        MessageCounts {
            rx: load(&self.rx),
            tx: load(&self.tx),
            rx_invalid: self.rx_invalid.load(Ordering::Relaxed),
            tx_punchy: self.tx_punchy.load(Ordering::Relaxed),
            tx_holepunch: self.tx_holepunch.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(t: u8, st: u8) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN + 4];
        h[0] = VERSION << 4 | t;
        h[1] = st;
        h
    }

    #[test]
    fn datagrams_are_counted_as_go_counts_them() {
        let c = NodeCounters::default();
        c.received(&header(0, 0)); // handshake
        c.received(&header(1, 0)); // data message: not counted
        c.received(&header(1, 1)); // relay frame: not counted
        c.received(&header(3, 0)); // lighthouse
        c.received(&header(4, 1)); // test reply
        c.received(&header(6, 0)); // relay control: other
        c.received(&header(0, 1)); // undefined handshake subtype: invalid
        c.received(&[0x21; 20]); // version 2: invalid
        c.received(&[1]); // a punch: nothing
        c.received(&[1, 2, 3]); // too short, longer than a punch: invalid
        c.sent(&header(0, 0));
        c.sent(&header(5, 0));
        c.sent(&header(1, 0)); // data: not counted
        c.sent(&[1]);
        c.sent(&[0]);
        c.sent(&[0]);
        let r = c.read();
        assert_eq!(r.rx, [1, 0, 1, 0, 1, 0, 1, 0]);
        assert_eq!(r.rx_invalid, 3);
        assert_eq!(r.tx, [1, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((r.tx_punchy, r.tx_holepunch), (1, 2));
    }
}
