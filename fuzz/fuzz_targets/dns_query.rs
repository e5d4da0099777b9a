//! Fuzz the lighthouse DNS responder's answer to one datagram (any bytes, from a local or an
//! outside asker) against a small name table. Never panics; a reply always parses back.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use nebula_node::dns::answer::{respond, CertSource, NameTable};

struct Certs;

impl CertSource for Certs {
    fn may_read_certs(&self, asker: IpAddr) -> bool {
        asker.is_loopback()
    }
    fn cert_json(&self, vpn_addr: IpAddr) -> Option<String> {
        vpn_addr
            .is_ipv4()
            .then(|| r#"{"details":{"name":"a \"b\" (c);"},"version":1}"#.to_string())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, request)) = data.split_first() else {
        return;
    };
    let mut table = NameTable::default();
    table.seed_self("lighthouse", &[IpAddr::from([10, 1, 0, 1])]);
    table.add(
        "Host",
        &[
            IpAddr::from([10, 1, 0, 2]),
            IpAddr::from([0xfd00u16, 0, 0, 0, 0, 0, 0, 2]),
        ],
    );
    let asker = if mode & 1 == 1 {
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from([192, 0, 2, 1])
    };
    if let Some(reply) = respond(request, asker, &table, &Certs) {
        assert!(reply.len() >= 12);
    }
});
