//! The local control API: a Unix stream socket (`control.socket`, mode 0600: root only, as the
//! daemon runs) that answers one JSON [`Request`] per connection with one JSON [`Response`].
//!
//! One connection at a time on the API's own thread; a request is at most [`MAX_REQUEST`] bytes
//! and must arrive within [`REQUEST_TIMEOUT`], so a stuck client delays others, never the node.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nebula_core::engine::Outputs;

use super::report::{Command, PingResult, Probe, Request, Response, API_VERSION};
use super::{path_of, resolve, status, NodeFacts};
use crate::datapath::flush_outputs;
use crate::plane::Plane;
use crate::tun::TunQueue;
use crate::udp_batch::BatchSocket;

/// Longest request accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a ping probe waits for its reply.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Most probes one `ping` sends.
pub const MAX_PING_COUNT: u32 = 20;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("control.socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "control.socket {path}: another process answers there (a second node? set control.socket)"
    )]
    InUse { path: PathBuf },
}

/// Everything a request may need.
pub struct ApiContext {
    pub plane: Arc<Plane>,
    pub facts: NodeFacts,
    /// A socket to send ping probes on (a clone of the control thread's).
    pub udp: BatchSocket,
    /// Accept test-only commands (`NEBULA_TEST_HOOKS=1` in the daemon's environment).
    pub test_hooks: bool,
}

/// The running API; stops (and removes its socket) when dropped.
pub struct ApiServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Bind `path` (creating its directory) and serve on a thread of its own.
    pub fn start(path: &Path, ctx: ApiContext) -> Result<ApiServer, ApiError> {
        let listener = bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("nebula-control".into())
            .spawn(move || serve(listener, ctx, &flag))
            .map_err(|source| ApiError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        tracing::info!(path = %path.display(), "Control API listening");
        Ok(ApiServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    let io_err = |source| ApiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    if path.exists() {
        // A live socket belongs to someone else; a dead one is ours from a previous run.
        if UnixStream::connect(path).is_ok() {
            return Err(ApiError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(listener)
}

fn serve(listener: UnixListener, mut ctx: ApiContext, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &mut ctx) {
                    tracing::debug!(error = %e, "control API: a connection failed");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => {
                tracing::warn!(error = %e, "control API: accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn answer(stream: UnixStream, ctx: &mut ApiContext) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = Vec::new();
    let read =
        BufReader::new((&stream).take(MAX_REQUEST as u64 + 1)).read_until(b'\n', &mut line)?;
    let response = if read > MAX_REQUEST {
        Response::error(format!("request longer than {MAX_REQUEST} bytes"))
    } else {
        handle(&line, ctx)
    };
    let mut text = serde_json::to_vec(&response).map_err(io::Error::other)?;
    text.push(b'\n');
    (&stream).write_all(&text)
}

/// Answer one request's bytes.
pub fn handle(bytes: &[u8], ctx: &mut ApiContext) -> Response {
    let req: Request = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => return Response::error(format!("bad request: {e}")),
    };
    if req.version != API_VERSION {
        return Response::error(format!(
            "unsupported API version {} (this node speaks version {API_VERSION})",
            req.version
        ));
    }
    let ok = |status, ping| Response {
        version: API_VERSION,
        ok: true,
        error: None,
        status,
        ping,
    };
    match req.command {
        Command::Status => ok(
            Some(status(
                &ctx.plane,
                &ctx.facts,
                Instant::now(),
                crate::clock::unix_secs(),
            )),
            None,
        ),
        Command::Ping { host, count } => match ping(ctx, &host, count.clamp(1, MAX_PING_COUNT)) {
            Ok(p) => ok(None, Some(p)),
            Err(e) => Response::error(e),
        },
        Command::DebugStallWorkers if ctx.test_hooks => {
            tracing::warn!("test hook: stalling the data-plane workers");
            ctx.plane.stall_workers();
            ok(None, None)
        }
        Command::DebugStallWorkers => Response::error("test hooks are off"),
    }
}

/// `count` probes of `host`, a second apart (a handshake is started if there is no tunnel).
fn ping(ctx: &mut ApiContext, host: &str, count: u32) -> Result<PingResult, String> {
    let (name, vpn) = {
        let engine = ctx.plane.lock();
        resolve(&engine, host).ok_or_else(|| format!("no tunnel to a host named {host:?}"))?
    };
    let mut probes = Vec::new();
    let mut out = Outputs::default();
    for seq in 1..=count {
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let payload = ctx.plane.rtt().probe(vpn, started, Some(tx));
        ctx.plane
            .with_engine(|e| e.send_test_request(started, vpn, &payload, &mut out));
        flush_outputs(&mut ctx.udp, None::<&TunQueue>, &mut out, &ctx.plane);
        let rtt = rx.recv_timeout(PING_TIMEOUT).ok();
        let path = {
            let engine = ctx.plane.lock();
            let hm = engine.hostmap();
            hm.primary(&vpn).and_then(|i| hm.get(i)).map(path_of)
        };
        probes.push(Probe {
            seq,
            rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
            path,
        });
        if seq < count {
            std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
        }
    }
    Ok(PingResult {
        name,
        vpn_addr: vpn.to_string(),
        probes,
    })
}

/// Send `request` to the API at `socket` and read the response (the client side, for
/// `nebula-ctl` and tests). `timeout` bounds the whole exchange.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> io::Result<Response> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut text = serde_json::to_vec(request).map_err(io::Error::other)?;
    text.push(b'\n');
    (&stream).write_all(&text)?;
    let mut line = Vec::new();
    BufReader::new((&stream).take(64 * 1024 * 1024)).read_until(b'\n', &mut line)?;
    serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
