//! Fuzz the lighthouse's address book: arbitrary NebulaMeta bytes from a sender vpn address, one
//! message or a short sequence (with tunnels going away), must keep the book within its bounds.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use nebula_core::lighthouse::LighthouseServer;
use nebula_core::remotes::MAX_RELAYS;
use nebula_lighthouse::{AddressBook, MAX_REPORTED_PER_FAMILY};
use proto::lighthouse::NebulaMeta;
use proto::prost::Message;

const MAX_HOSTS: usize = 3;

/// The sender's vpn addresses from one byte: a few v4 hosts, a v6 host, a dual-stack host.
fn sender(b: u8) -> Vec<IpAddr> {
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 0, b % 8));
    match b % 16 {
        0..=7 => vec![v4],
        8..=11 => vec![IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            0,
            u16::from(b % 4),
        ))],
        _ => vec![v4, IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9))],
    }
}

fn learned(b: u8) -> Option<SocketAddr> {
    (b & 0x10 != 0).then(|| SocketAddr::from(([203, 0, 113, b % 8], 4242)))
}

fn handle_one(book: &mut AddressBook, now: Instant, who: u8, bytes: &[u8]) {
    let Ok(msg) = NebulaMeta::decode(bytes) else {
        return;
    };
    let from = sender(who);
    let mut replies = Vec::new();
    book.handle(now, &from, learned(who), &msg, &mut replies);
    assert!(
        replies.len() <= 2,
        "at most a reply and a punch notification"
    );
    for (to, reply) in &replies {
        // A reply goes back to the sender or to the queried host, and survives the wire.
        let subject = msg
            .details
            .as_ref()
            .and_then(|d| d.vpn_addr_and_encoding())
            .map(|(vpn, _)| vpn);
        assert!(
            from.contains(to) || Some(*to) == subject,
            "reply to a stranger"
        );
        let wire = reply.encode_to_vec();
        assert_eq!(NebulaMeta::decode(wire.as_slice()).as_ref(), Ok(reply));
    }
    assert!(book.len() <= book.max_hosts());
    for f in &from {
        if let Some(e) = book.get(f) {
            let v4 = e.reported.iter().filter(|a| a.is_ipv4()).count();
            assert!(
                v4 <= MAX_REPORTED_PER_FAMILY && e.reported.len() - v4 <= MAX_REPORTED_PER_FAMILY
            );
            assert!(e.relays.len() <= MAX_RELAYS);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut book = if mode & 2 == 0 {
        AddressBook::new().with_max_hosts(MAX_HOSTS)
    } else {
        // Drop reported addresses inside 10.0.0.0/8, as a vpn-network filter would.
        AddressBook::with_filter(Box::new(|_, a| match a.ip() {
            IpAddr::V4(v4) => v4.octets()[0] != 10,
            IpAddr::V6(_) => true,
        }))
        .with_max_hosts(MAX_HOSTS)
    };
    if mode & 1 == 0 {
        handle_one(&mut book, now, mode >> 2, rest);
        return;
    }
    // A sequence: [who, len, bytes...]*; `who` with the top bit set also drops that host's tunnel.
    let mut rest = rest;
    for _ in 0..16 {
        let [who, len, tail @ ..] = rest else {
            break;
        };
        let (msg, next) = tail.split_at(usize::from(*len).min(tail.len()));
        handle_one(&mut book, now, *who, msg);
        if who & 0x80 != 0 {
            for vpn in sender(*who) {
                book.host_gone(vpn);
                assert!(book.get(&vpn).is_none());
            }
        }
        rest = next;
    }
});
