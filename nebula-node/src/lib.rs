//! The nebula daemon's pieces that touch the OS: config loading, the Linux TUN device, netlink,
//! the UDP socket, signals and the event loop. The protocol itself lives in nebula-core.

pub mod config;
pub mod daemon;
pub mod datapath;
pub mod device;
pub mod events;
pub mod localaddrs;
pub mod logctl;
pub mod netlink;
pub mod notify;
pub mod offload;
pub mod plane;
pub mod poll;
pub mod reload;
pub mod setup;
pub mod sshd;
pub mod tun;
pub mod udp_batch;
pub mod worker;
