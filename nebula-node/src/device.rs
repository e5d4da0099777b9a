//! The glue between the config and the TUN device: open it as `tun.*` says, give it our vpn
//! addresses and routes (netlink), and let the event loop read and write packets.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nebula_core::pki::Pki;

use crate::config::Config;
use crate::daemon::Device;
use crate::tun::{Tun, TunError, TunOptions, TunSetup};

impl Device for Tun {
    fn fd(&self) -> RawFd {
        self.queues().first().map(|q| q.as_raw_fd()).unwrap_or(-1)
    }

    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn write_packet(&self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// Open the TUN device unless `tun.disabled`.
pub fn open(cfg: &Config) -> Result<Option<Tun>, TunError> {
    if cfg.tun.disabled {
        return Ok(None);
    }
    let opts = TunOptions {
        name: cfg.tun.dev.clone(),
        ..TunOptions::default()
    };
    Tun::open(&opts).map(Some)
}

/// Addresses, MTU, queue length, link up and routes, as Go sets them.
pub fn configure(tun: &Tun, cfg: &Config, pki: &Pki) -> Result<(), TunError> {
    let setup = TunSetup::from_config(&cfg.tun, pki.networks());
    for soft in tun.activate(&setup)? {
        tracing::warn!(error = %soft, device = tun.name(), "tun setup");
    }
    tracing::info!(device = tun.name(), mtu = setup.max_mtu(), "tun device up");
    Ok(())
}
