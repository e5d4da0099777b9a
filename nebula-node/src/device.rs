//! The glue between the config and the TUN device: open it as `tun.*` says, give it our vpn
//! addresses and routes, and let the event loop read and write packets.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nebula_core::pki::Pki;

use crate::config::Config;
use crate::daemon::Device;
use crate::tun::{Tun, TunOptions};

impl Device for Tun {
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn write_packet(&self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// Open the TUN device unless `tun.disabled`.
pub fn open(cfg: &Config) -> io::Result<Option<Tun>> {
    if cfg.tun.disabled {
        return Ok(None);
    }
    let opts = TunOptions {
        name: cfg.tun.dev.clone(),
        multi_queue: false,
        vnet_hdr: false,
    };
    Tun::open(&opts).map(Some)
}

/// Addresses, MTU, queue length, link up and routes, as Go sets them.
pub fn configure(tun: &Tun, cfg: &Config, pki: &Pki) -> io::Result<()> {
    tun.set_mtu(cfg.tun.mtu)?;
    tun.set_tx_queue_len(cfg.tun.tx_queue)?;
    for net in pki.networks() {
        tun.add_address(*net)?;
    }
    tun.set_up()?;
    for r in cfg.tun.system_routes() {
        tun.add_route(r.dst, Some(r.mtu), r.metric)?;
    }
    Ok(())
}
