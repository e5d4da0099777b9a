//! Waiting on file descriptors: `poll(2)` for the workers (socket, TUN queue, stop pipe) and the
//! control thread (signals, wake-ups), with an interrupted call counted as a wake-up.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// A pollfd waiting for `fd` to become readable (a negative `fd` is ignored by the kernel).
pub fn pollin(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// `true` if the kernel said `fd` is readable.
pub fn readable(fd: &libc::pollfd) -> bool {
    fd.revents & libc::POLLIN != 0
}

/// `poll(2)` for at most `timeout`; an interrupted call counts as a wake-up with nothing ready.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    let ms = i32::try_from(timeout.as_millis())
        .unwrap_or(1000)
        .max(if timeout.is_zero() { 0 } else { 1 });
    // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        for f in fds.iter_mut() {
            f.revents = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn readable_only_after_a_write() {
        let (r, mut w) = UnixStream::pair().expect("pair");
        let mut fds = [pollin(r.as_raw_fd())];
        poll(&mut fds, Duration::ZERO).expect("poll");
        assert!(!readable(&fds[0]));
        w.write_all(&[1]).expect("write");
        poll(&mut fds, Duration::from_secs(1)).expect("poll");
        assert!(readable(&fds[0]));
    }
}
