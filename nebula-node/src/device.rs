//! The packet device the workers read and write (the [`Device`] trait), the TUN queue as one, and
//! the glue between the config and the TUN: open it as `tun.*` says, give it addresses and routes.

use std::io;
use std::os::fd::AsRawFd;

use nebula_core::pki::Pki;

use crate::config::Config;
use crate::tun::{offload, Tun, TunError, TunOptions, TunQueue, TunSetup};

/// A packet device a worker reads IP packets from and writes them to: a TUN queue, or a fake in
/// tests. Reads do not block (an empty device answers `WouldBlock`); the worker polls the file
/// descriptor for readability.
pub trait Device: AsRawFd {
    /// Packets carry a `virtio_net_hdr` (IFF_VNET_HDR).
    fn vnet_hdr(&self) -> bool;
    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_packet(&self, buf: &[u8]) -> io::Result<usize>;
}

impl Device for TunQueue {
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

/// A fake device for tests: one end of a datagram socket pair (packet boundaries kept, pollable,
/// no root needed); the test holds the other end as a [`fake::Wire`], the kernel's side of the TUN.
#[cfg(test)]
pub mod fake {
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use super::Device;

    /// The device the worker sees (no virtio headers).
    pub struct FakeDevice {
        sock: UnixDatagram,
    }

    /// The test's end: what it injects the worker reads; what the worker writes it receives.
    pub struct Wire {
        sock: UnixDatagram,
    }

    pub fn pair() -> io::Result<(FakeDevice, Wire)> {
        let (dev, wire) = UnixDatagram::pair()?;
        dev.set_nonblocking(true)?;
        Ok((FakeDevice { sock: dev }, Wire { sock: wire }))
    }

    impl AsRawFd for FakeDevice {
        fn as_raw_fd(&self) -> RawFd {
            self.sock.as_raw_fd()
        }
    }

    impl Device for FakeDevice {
        fn vnet_hdr(&self) -> bool {
            false
        }

        fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
            self.sock.recv(buf)
        }

        fn write_packet(&self, buf: &[u8]) -> io::Result<usize> {
            self.sock.send(buf)
        }
    }

    impl Wire {
        /// A packet the worker will read from its device.
        pub fn inject(&self, packet: &[u8]) -> io::Result<()> {
            self.sock.send(packet).map(|_| ())
        }

        /// The next packet the worker wrote to its device, waiting at most `limit`.
        pub fn recv(&self, limit: Duration) -> Option<Vec<u8>> {
            self.sock.set_read_timeout(Some(limit)).ok()?;
            let mut buf = vec![0u8; 65_536];
            let n = self.sock.recv(&mut buf).ok()?;
            buf.truncate(n);
            Some(buf)
        }
    }

    #[test]
    fn packets_cross_both_ways_whole() {
        let (dev, wire) = pair().expect("pair");
        let mut buf = [0u8; 64];
        let empty = dev.read_packet(&mut buf).expect_err("nothing yet");
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        wire.inject(b"one").expect("inject");
        wire.inject(b"two!").expect("inject");
        assert_eq!(dev.read_packet(&mut buf).expect("read"), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(dev.read_packet(&mut buf).expect("read"), 4);
        dev.write_packet(b"back").expect("write");
        assert_eq!(
            wire.recv(Duration::from_secs(1)).as_deref(),
            Some(&b"back"[..])
        );
        assert_eq!(wire.recv(Duration::from_millis(10)), None);
    }
}
