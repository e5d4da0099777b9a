//! Fuzz target: netlink route-change datagrams (`tun.use_system_route_table`): parsing and the
//! decision never panic, and a decision only ever names our device's vpn gateways.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nebula_node::route_watch::{decide, parse};

fuzz_target!(|data: &[u8]| {
    let vpn = ["10.42.0.0/16".parse().expect("net")];
    for change in parse(data) {
        if let Some((_, Some(gw))) = decide(&change, 7, &vpn) {
            assert!(vpn[0].contains(&gw));
        }
    }
});
