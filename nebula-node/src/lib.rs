//! The nebula daemon's pieces that touch the OS: config loading, the Linux TUN device, netlink.
//! The protocol itself lives in nebula-core; this crate feeds it packets and time.

pub mod config;
pub mod tun;
