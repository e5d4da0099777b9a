//! The Nebula protocol engine, sans-IO: datagrams, inside packets and time go in; transmits,
//! inside packets, events and the next timeout come out. No sockets, no TUN, no clock reads here.
#![forbid(unsafe_code)]

pub mod aead;
pub mod firewall;
pub mod noise;
pub mod replay;
