//! The nebula daemon's pieces that touch the OS: config loading, the Linux TUN device, netlink,
//! the UDP socket, signals and the event loop. The protocol itself lives in nebula-core.

pub mod clock;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod datapath;
pub mod device;
pub mod dns;
pub mod events;
pub mod localaddrs;
pub mod logctl;
pub mod netlink;
pub mod notify;
pub mod offload;
pub mod plane;
pub mod poll;
pub mod reload;
pub mod route_watch;
pub mod rtt;
pub mod services;
pub mod setup;
pub mod sshd;
pub mod static_map;
pub mod stats;
pub mod status;
pub mod tun;
pub mod udp_batch;
pub mod worker;
