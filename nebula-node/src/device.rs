//! The glue between the config and the TUN device: open it as `tun.*` says, give it our vpn
//! addresses and routes (netlink), and let the event loop read and write packets.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nebula_core::pki::Pki;

use crate::config::Config;
use crate::daemon::Device;
use crate::tun::{offload, Tun, TunError, TunOptions, TunQueue, TunSetup};

impl Device for TunQueue {
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        TunQueue::vnet_hdr(self)
    }

    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn write_packet(&self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// Open the TUN device unless `tun.disabled`: one queue per worker (`routines`), multi-queue
/// when there are several.
pub fn open(cfg: &Config) -> Result<Option<Tun>, TunError> {
    if cfg.tun.disabled {
        return Ok(None);
    }
    let queues = cfg.routines.max(1);
    let opts = TunOptions {
        name: cfg.tun.dev.clone(),
        vnet_hdr: cfg.tun.use_offloads,
        queues,
        multi_queue: queues > 1,
    };
    match Tun::open(&opts) {
        Ok(t) => Ok(Some(t)),
        Err(e) if opts.vnet_hdr => {
            tracing::warn!(error = %e, "tun: IFF_VNET_HDR refused, running without offloads");
            Tun::open(&TunOptions {
                vnet_hdr: false,
                ..opts
            })
            .map(Some)
        }
        Err(e) => Err(e),
    }
}

/// Addresses, MTU, queue length, link up and routes, as Go sets them; then the offloads (TSO/USO)
/// when the device has virtio headers. Returns the offload bits the kernel accepted.
pub fn configure(tun: &Tun, cfg: &Config, pki: &Pki) -> Result<u32, TunError> {
    let setup = TunSetup::from_config(&cfg.tun, pki.networks());
    for soft in tun.activate(&setup)? {
        tracing::warn!(error = %soft, device = tun.name(), "tun setup");
    }
    let mut offloads = 0;
    if tun.vnet_hdr() {
        let wanted = offload::CSUM | offload::TSO4 | offload::TSO6 | offload::USO4 | offload::USO6;
        match tun.enable_offloads(wanted) {
            Ok(bits) => offloads = bits,
            Err(e) => tracing::warn!(error = %e, "tun: offloads refused"),
        }
    }
    tracing::info!(
        device = tun.name(),
        mtu = setup.max_mtu(),
        vnet_hdr = tun.vnet_hdr(),
        offloads = format!("{offloads:#x}"),
        "tun device up"
    );
    Ok(offloads)
}
