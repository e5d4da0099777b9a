//! The SSH debug console (`sshd.*`, Go Nebula's `sshd`): its settings, and its own thread running
//! a small current-thread tokio runtime with the russh server, started, stopped and moved by
//! SIGHUP. The data plane never waits on it: commands take the engine's lock like a worker does.
//!
//! `commands` holds the command set, `server` the SSH handler, `term` the shell's line editor.

pub mod commands;
pub mod server;
pub mod term;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ipnet::IpNet;
use nebula_core::engine::Outputs;
use russh::keys::{PrivateKey, PublicKey};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::config::SshdConfig;
use crate::datapath::flush_outputs;
use crate::plane::Plane;
use crate::tun::TunQueue;
use crate::udp_batch::BatchSocket;

use commands::{After, Context};
use server::{Authorized, ConsoleHandler};

/// Most SSH connections the console serves at once (more are closed at accept).
pub const MAX_SESSIONS: usize = 16;

/// Why the console could not be configured (Go's messages).
#[derive(Debug, Error)]
pub enum SshdError {
    #[error("sshd.listen must be provided")]
    ListenMissing,
    #[error("invalid sshd.listen address: {0}")]
    ListenInvalid(String),
    #[error("sshd.listen can not use port 22")]
    Port22,
    #[error("sshd.host_key must be provided")]
    HostKeyMissing,
    #[error("error while loading sshd.host_key file: {0}")]
    HostKeyFile(io::Error),
    #[error("error while adding sshd.host_key: {0}")]
    HostKeyParse(String),
}

/// `sshd.*` checked and loaded: where to listen, the host key, who may log in.
pub struct Settings {
    pub listen: SocketAddr,
    pub host_key: PrivateKey,
    pub authorized: Authorized,
    pub sandbox_dir: Option<PathBuf>,
    /// What the settings were made from (a reload that changes nothing keeps the server).
    source: (SshdConfig, Zeroizing<String>),
}

/// Split `host:port` as Go's `net.SplitHostPort` does (brackets around IPv6 hosts).
fn split_host_port(s: &str) -> Result<(&str, &str), SshdError> {
    let bad = |why: &str| SshdError::ListenInvalid(format!("address {s}: {why}"));
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("missing port in address"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .ok_or_else(|| bad("missing ']' in address"))?,
        None if host.contains(':') => return Err(bad("too many colons in address")),
        None => host,
    };
    Ok((host, port))
}

/// Parse one `authorized_keys` style line (`type base64 [comment]`).
pub fn parse_authorized_key(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| e.to_string())
}

impl Settings {
    /// The console's settings, `None` when `sshd.enabled` is false. Bad keys in
    /// `authorized_users`/`trusted_cas` are skipped with a warning, as Go does.
    pub fn from_config(cfg: &SshdConfig) -> Result<Option<Settings>, SshdError> {
        if !cfg.enabled {
            return Ok(None);
        }
        if cfg.listen.is_empty() {
            return Err(SshdError::ListenMissing);
        }
        let (host, port) = split_host_port(&cfg.listen)?;
        if port == "22" {
            return Err(SshdError::Port22);
        }
        let port_num: u16 = port
            .parse()
            .map_err(|_| SshdError::ListenInvalid(format!("unknown port {port}")))?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let listen = (host, port_num)
            .to_socket_addrs()
            .map_err(|e| SshdError::ListenInvalid(e.to_string()))?
            .next()
            .ok_or_else(|| SshdError::ListenInvalid(format!("no address for {host}")))?;
        if cfg.host_key.is_empty() {
            return Err(SshdError::HostKeyMissing);
        }
        let text = if cfg.host_key.contains("-----BEGIN") {
            Zeroizing::new(cfg.host_key.clone())
        } else {
            Zeroizing::new(std::fs::read_to_string(&cfg.host_key).map_err(SshdError::HostKeyFile)?)
        };
        let host_key = russh::keys::decode_secret_key(&text, None)
            .map_err(|e| SshdError::HostKeyParse(format!("failed to parse private key: {e}")))?;
        let mut authorized = Authorized::default();
        for ca in &cfg.trusted_cas {
            match parse_authorized_key(ca) {
                Ok(k) => {
                    tracing::info!(ssh_key = %ca, "Trusted CA key");
                    authorized.cas.push(k);
                }
                Err(e) => tracing::warn!(error = %e, ssh_ca = %ca, "SSH CA had an error, ignoring"),
            }
        }
        let mut users: HashMap<String, Vec<PublicKey>> = HashMap::new();
        for u in &cfg.authorized_users {
            for key in &u.keys {
                match parse_authorized_key(key) {
                    Ok(k) => {
                        tracing::info!(ssh_key = %key, ssh_user = %u.user, "Authorized ssh key");
                        users.entry(u.user.clone()).or_default().push(k);
                    }
                    Err(e) => tracing::warn!(error = %e, ssh_key = %key, "Failed to authorize key"),
                }
            }
        }
        if users.is_empty() {
            tracing::info!("no ssh users to authorize");
        }
        authorized.users = users;
        Ok(Some(Settings {
            listen,
            host_key,
            authorized,
            sandbox_dir: cfg.sandbox_dir.as_ref().map(PathBuf::from),
            source: (cfg.clone(), text),
        }))
    }
}

/// What the console's commands share within one run of the server.
pub(crate) struct Shared {
    plane: Arc<Plane>,
    socket: Arc<Mutex<BatchSocket>>,
    device_name: String,
    networks: Vec<IpNet>,
    authorized: Authorized,
    sandbox_dir: Option<PathBuf>,
}

impl Shared {
    pub(crate) fn authorized(&self) -> &Authorized {
        &self.authorized
    }

    /// Run one command line.
    pub(crate) fn run(&self, line: &str, out: &mut Vec<u8>) -> After {
        let flush = |o: &mut Outputs| {
            let mut s = self.socket.lock().unwrap_or_else(|e| e.into_inner());
            flush_outputs::<TunQueue>(&mut s, None, o, &self.plane);
        };
        let reload = || {
            // Exactly what SIGHUP does: the control thread reloads, then reconfigures us.
            if let Err(e) = signal_hook::low_level::raise(signal_hook::consts::SIGHUP) {
                tracing::error!(error = %e, "reload: could not raise SIGHUP");
            }
        };
        let ctx = Context {
            plane: &self.plane,
            device_name: self.device_name.clone(),
            networks: self.networks.clone(),
            flush: &flush,
            reload: &reload,
            sandbox_dir: self.sandbox_dir.clone(),
        };
        commands::dispatch(&ctx, line, out)
    }
}

/// What the console needs from the node.
pub struct ConsoleDeps {
    pub plane: Arc<Plane>,
    /// A handle on the node's UDP socket, for what commands make the engine send.
    pub socket: BatchSocket,
    /// The TUN device's name ("" without one).
    pub device_name: String,
    pub networks: Vec<IpNet>,
}

enum Msg {
    Configure(Box<SshdConfig>),
}

/// The running console thread. Dropping it stops the server and joins the thread.
pub struct Console {
    tx: Option<mpsc::UnboundedSender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl Console {
    /// Start the console's thread and configure it with `cfg` (nothing listens while
    /// `sshd.enabled` is false).
    pub fn start(deps: ConsoleDeps, cfg: &SshdConfig) -> io::Result<Console> {
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("nebula-sshd".into())
            .spawn(move || runtime.block_on(console_loop(deps, rx)))?;
        let console = Console {
            tx: Some(tx),
            thread: Some(thread),
        };
        console.configure(cfg);
        Ok(console)
    }

    /// Apply `sshd.*` as re-read by a reload: start, stop, or move the server (a reload that
    /// changes nothing in `sshd` keeps it and its sessions).
    pub fn configure(&self, cfg: &SshdConfig) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Configure(Box::new(cfg.clone())));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        // Closing the channel ends the loop, which stops the server first.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running server: its stop signal and task.
struct Running {
    source: (SshdConfig, Zeroizing<String>),
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn stop_running(running: &mut Option<Running>) {
    if let Some(r) = running.take() {
        let _ = r.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), r.task)
            .await
            .is_err()
        {
            tracing::warn!("sshd: the server did not stop in time");
        }
        tracing::info!("SSH server stopped listening");
    }
}

async fn console_loop(deps: ConsoleDeps, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let socket = Arc::new(Mutex::new(deps.socket));
    let mut running: Option<Running> = None;
    while let Some(Msg::Configure(cfg)) = rx.recv().await {
        let settings = match Settings::from_config(&cfg) {
            Ok(Some(s)) => s,
            Ok(None) => {
                stop_running(&mut running).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Failed to configure sshd, ssh debugging will not be available");
                stop_running(&mut running).await;
                continue;
            }
        };
        if running
            .as_ref()
            .is_some_and(|r| r.source == settings.source)
        {
            continue;
        }
        stop_running(&mut running).await;
        let listener = match TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, ssh_listener = %settings.listen, "Failed to run the SSH server");
                continue;
            }
        };
        tracing::info!(ssh_listener = %settings.listen, "SSH server is listening");
        let config = Arc::new(russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-Nebula???".into()),
            methods: server::methods(),
            keys: vec![settings.host_key],
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(3600)),
            ..Default::default()
        });
        let shared = Arc::new(Shared {
            plane: Arc::clone(&deps.plane),
            socket: Arc::clone(&socket),
            device_name: deps.device_name.clone(),
            networks: deps.networks.clone(),
            authorized: settings.authorized,
            sandbox_dir: settings.sandbox_dir,
        });
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, config, shared, stop_rx));
        running = Some(Running {
            source: settings.source,
            stop,
            task,
        });
    }
    stop_running(&mut running).await;
}

/// Accept connections until told to stop, then end every session.
async fn serve(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    // Each session: its handle once the SSH version exchange is over, and its task.
    let mut sessions: Vec<(
        oneshot::Receiver<russh::server::Handle>,
        tokio::task::JoinHandle<()>,
    )> = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                sessions.retain(|(_, t)| !t.is_finished());
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "sshd: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if sessions.len() >= MAX_SESSIONS {
                    tracing::warn!(remote = %peer, "sshd: too many sessions, connection closed");
                    continue;
                }
                let handler = ConsoleHandler::new(Arc::clone(&shared), Some(peer));
                let (handle_tx, handle_rx) = oneshot::channel();
                let cfg = Arc::clone(&config);
                let task = tokio::spawn(async move {
                    match russh::server::run_stream(cfg, stream, handler).await {
                        Ok(running) => {
                            let _ = handle_tx.send(running.handle());
                            if let Err(e) = running.await {
                                tracing::debug!(error = %e, remote = %peer, "sshd: session ended");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, remote = %peer, "failed to handshake"),
                    }
                });
                sessions.push((handle_rx, task));
            }
        }
    }
    drop(listener);
    for (mut h, task) in sessions {
        if let Ok(h) = h.try_recv() {
            let _ = h
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "the SSH server stopped".into(),
                    "en".into(),
                )
                .await;
        }
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use russh::keys::Certificate;

    use super::*;
    use crate::config::SshUser;

    const HOST_KEY: &str = include_str!("testdata/host_ed25519");
    const USER_PUB: &str = include_str!("testdata/user_ed25519.pub");
    const CA_PUB: &str = include_str!("testdata/ca_ed25519.pub");
    const USER_CERT: &str = include_str!("testdata/user_ed25519-cert.pub");

    fn cfg(listen: &str) -> SshdConfig {
        SshdConfig {
            enabled: true,
            listen: listen.into(),
            host_key: HOST_KEY.into(),
            authorized_users: vec![SshUser {
                user: "tester".into(),
                keys: vec![USER_PUB.trim().into(), "not a key".into()],
            }],
            trusted_cas: vec![CA_PUB.trim().into(), "ssh-ed25519 garbage".into()],
            sandbox_dir: None,
        }
    }

    fn err(c: &SshdConfig) -> String {
        match Settings::from_config(c) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {c:?}"),
        }
    }

    #[test]
    fn settings_refuse_what_go_refuses() {
        assert!(matches!(
            Settings::from_config(&SshdConfig {
                enabled: false,
                ..cfg("")
            }),
            Ok(None)
        ));
        assert_eq!(err(&cfg("")), "sshd.listen must be provided");
        assert_eq!(err(&cfg("127.0.0.1:22")), "sshd.listen can not use port 22");
        assert_eq!(err(&cfg("[::1]:22")), "sshd.listen can not use port 22");
        assert!(err(&cfg("127.0.0.1")).starts_with("invalid sshd.listen address"));
        assert!(err(&cfg("::1:2222")).contains("too many colons"));
        assert_eq!(
            err(&SshdConfig {
                host_key: String::new(),
                ..cfg("127.0.0.1:2222")
            }),
            "sshd.host_key must be provided"
        );
        assert!(err(&SshdConfig {
            host_key: "/nonexistent/host_key".into(),
            ..cfg("127.0.0.1:2222")
        })
        .starts_with("error while loading sshd.host_key file"));
        assert!(err(&SshdConfig {
            host_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nbroken\n".into(),
            ..cfg("127.0.0.1:2222")
        })
        .starts_with("error while adding sshd.host_key"));
    }

    #[test]
    fn settings_load_keys_and_skip_bad_ones() {
        let s = Settings::from_config(&cfg("127.0.0.1:2222"))
            .expect("valid")
            .expect("enabled");
        assert_eq!(s.listen, "127.0.0.1:2222".parse().expect("addr"));
        assert_eq!(s.authorized.users.get("tester").map(Vec::len), Some(1));
        assert_eq!(s.authorized.cas.len(), 1);
        let user = parse_authorized_key(USER_PUB).expect("user key");
        assert!(s.authorized.key_allowed("tester", &user));
        assert!(!s.authorized.key_allowed("root", &user));
        let host_pub =
            parse_authorized_key(include_str!("testdata/host_ed25519.pub")).expect("host key");
        assert!(!s.authorized.key_allowed("tester", &host_pub));
        // The same file given by path loads the same key.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("host_key");
        std::fs::write(&path, HOST_KEY).expect("write");
        let by_path = Settings::from_config(&SshdConfig {
            host_key: path.display().to_string(),
            ..cfg("127.0.0.1:2222")
        })
        .expect("valid")
        .expect("enabled");
        assert_eq!(by_path.host_key.public_key(), s.host_key.public_key());
    }

    #[test]
    fn user_certificates_need_a_trusted_ca_and_the_principal() {
        let s = Settings::from_config(&cfg("127.0.0.1:2222"))
            .expect("valid")
            .expect("enabled");
        let cert = Certificate::from_openssh(USER_CERT.trim()).expect("certificate");
        let now = server::unix_now();
        assert_eq!(s.authorized.cert_allowed("tester", &cert, now), Ok(()));
        assert!(s.authorized.cert_allowed("root", &cert, now).is_err());
        assert!(s.authorized.cert_allowed("tester", &cert, 1).is_err());
        let no_ca = Authorized {
            cas: Vec::new(),
            ..s.authorized.clone()
        };
        assert!(no_ca.cert_allowed("tester", &cert, now).is_err());
    }

    /// A client that trusts any host key (the test's own server).
    struct Client;

    impl russh::client::Handler for Client {
        type Error = russh::Error;

        async fn check_server_key(
            &mut self,
            _: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    /// Log in as `user` with `key` on `port` and run `command`; `None` if the login is refused.
    async fn exec(port: u16, user: &str, key: &str, command: &str) -> Option<(u32, String)> {
        let config = Arc::new(russh::client::Config::default());
        let mut session = russh::client::connect(config, ("127.0.0.1", port), Client)
            .await
            .ok()?;
        let key = russh::keys::decode_secret_key(key, None).expect("client key");
        let auth = session
            .authenticate_publickey(
                user,
                russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None),
            )
            .await
            .expect("auth exchange");
        if !auth.success() {
            return None;
        }
        let mut channel = session.channel_open_session().await.expect("session");
        channel.exec(true, command).await.expect("exec");
        let (mut status, mut out) = (u32::MAX, Vec::new());
        while let Some(msg) = channel.wait().await {
            match msg {
                russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
                russh::ChannelMsg::ExitStatus { exit_status } => status = exit_status,
                russh::ChannelMsg::Close => break,
                _ => {}
            }
        }
        Some((status, String::from_utf8_lossy(&out).to_string()))
    }

    #[test]
    fn the_console_serves_exec_refuses_strangers_and_follows_reconfiguration() {
        use crate::udp_batch::BatchOptions;

        let plane = Arc::new(Plane::bare_for_test());
        let socket = BatchSocket::bind(
            "127.0.0.1:0".parse().expect("addr"),
            &BatchOptions::default(),
        )
        .expect("udp socket");
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let client_pub = include_str!("testdata/client_ed25519.pub").trim();
        let client_key = include_str!("testdata/client_ed25519");
        let port = free_port();
        let mut config = SshdConfig {
            authorized_users: vec![SshUser {
                user: "tester".into(),
                keys: vec![client_pub.into()],
            }],
            ..cfg(&format!("127.0.0.1:{port}"))
        };
        let console = Console::start(
            ConsoleDeps {
                plane,
                socket,
                device_name: "nebula1".into(),
                networks: vec!["10.1.0.1/16".parse().expect("net")],
            },
            &config,
        )
        .expect("console thread");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Poll: the console binds on its own thread.
        let until_answer = |port: u16, user: &str| {
            let end = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let r = rt.block_on(exec(port, user, client_key, "version"));
                if r.is_some() || std::time::Instant::now() > end {
                    return r;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        assert_eq!(
            until_answer(port, "tester"),
            Some((0, format!("{}\n", env!("CARGO_PKG_VERSION"))))
        );
        assert_eq!(
            rt.block_on(exec(port, "tester", client_key, "list-hostmap -json")),
            Some((0, "[]\n".to_string()))
        );
        assert_eq!(
            rt.block_on(exec(port, "root", client_key, "version")),
            None,
            "the key is tester's only"
        );
        // Moved: the new port answers, the old one is closed.
        let moved = free_port();
        config.listen = format!("127.0.0.1:{moved}");
        console.configure(&config);
        assert!(until_answer(moved, "tester").is_some());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        // Disabled: nothing listens.
        config.enabled = false;
        console.configure(&config);
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", moved)).is_ok() {
            assert!(std::time::Instant::now() < end, "still listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(console);
    }
}
