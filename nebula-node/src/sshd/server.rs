//! The SSH side of the console (russh): who may log in (authorized keys per user, or an OpenSSH
//! user certificate from a trusted CA; never a password), shells with a line editor, and exec.
//!
//! One handler per connection; commands run synchronously on the console's thread.

use std::collections::HashMap;
use std::sync::Arc;

use russh::keys::{Certificate, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};

use super::commands::{self, After};
use super::term::{crlf, LineEditor};
use super::Shared;

/// Who may log in.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// User -> their public keys.
    pub users: HashMap<String, Vec<PublicKey>>,
    /// CAs whose user certificates are accepted (`sshd.trusted_cas`).
    pub cas: Vec<PublicKey>,
}

impl Authorized {
    /// Is `key` one of `user`'s authorized keys?
    pub fn key_allowed(&self, user: &str, key: &PublicKey) -> bool {
        self.users
            .get(user)
            .is_some_and(|keys| keys.iter().any(|k| k.key_data() == key.key_data()))
    }

    /// Is `cert` a user certificate for `user` signed by a trusted CA? (russh has checked its
    /// validity period and signature already; `now` is checked again here.)
    pub fn cert_allowed(
        &self,
        user: &str,
        cert: &Certificate,
        now_unix: u64,
    ) -> Result<(), String> {
        if cert.cert_type() != russh::keys::ssh_key::certificate::CertType::User {
            return Err("not a user certificate".into());
        }
        if !self
            .cas
            .iter()
            .any(|ca| ca.key_data() == cert.signature_key())
        {
            return Err("not signed by a trusted CA".into());
        }
        let principals = cert.valid_principals();
        if !principals.is_empty() && !principals.iter().any(|p| p == user) {
            return Err(format!("not valid for user {user}"));
        }
        if !cert.critical_options().is_empty() {
            return Err("unsupported critical option".into());
        }
        if now_unix < cert.valid_after() || now_unix >= cert.valid_before() {
            return Err("not valid now".into());
        }
        Ok(())
    }
}

/// The russh handler of one connection.
pub struct ConsoleHandler {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: Option<std::net::SocketAddr>,
    user: String,
    shells: HashMap<ChannelId, LineEditor>,
}

impl ConsoleHandler {
    pub(super) fn new(shared: Arc<Shared>, peer: Option<std::net::SocketAddr>) -> ConsoleHandler {
        ConsoleHandler {
            shared,
            peer,
            user: String::new(),
            shells: HashMap::new(),
        }
    }
}

/// Only public keys (and certificates) are offered to clients.
pub fn methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey][..])
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(methods()),
        partial_success: false,
    }
}

impl russh::server::Handler for ConsoleHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, _: &str) -> Result<Auth, Self::Error> {
        tracing::warn!(ssh_user = user, remote = ?self.peer, "sshd: password login refused");
        Ok(reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let auth = self.shared.authorized();
        // A certificate's key is offered too: it is checked once the certificate is seen.
        if auth.key_allowed(user, offer.public_key) || !auth.cas.is_empty() {
            Ok(Auth::Accept)
        } else {
            Ok(reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = key.public_key.fingerprint(Default::default());
        if self.shared.authorized().key_allowed(user, key.public_key) {
            tracing::info!(ssh_user = user, ssh_fingerprint = %fp, remote = ?self.peer, "ssh user logged in");
            self.user = user.to_string();
            Ok(Auth::Accept)
        } else {
            tracing::warn!(ssh_user = user, ssh_fingerprint = %fp, remote = ?self.peer, "sshd: unknown public key refused");
            Ok(reject())
        }
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let now = unix_now();
        match self
            .shared
            .authorized()
            .cert_allowed(user, certificate, now)
        {
            Ok(()) => {
                tracing::info!(ssh_user = user, key_id = certificate.key_id(), remote = ?self.peer, "ssh user logged in with a certificate");
                self.user = user.to_string();
                Ok(Auth::Accept)
            }
            Err(why) => {
                tracing::warn!(ssh_user = user, remote = ?self.peer, "sshd: certificate refused: {why}");
                Ok(reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.shells.contains_key(&channel) {
            session.channel_failure(channel)?;
            return Ok(());
        }
        let editor = LineEditor::new(format!("{}@nebula > ", self.user));
        session.channel_success(channel)?;
        session.data(channel, editor.prompt().as_bytes().to_vec())?;
        self.shells.insert(channel, editor);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).to_string();
        let mut out = Vec::new();
        self.shared.run(&line, &mut out);
        if !out.is_empty() {
            session.data(channel, out)?;
        }
        // Go always exits 0: a command's own failure is in its output.
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(editor) = self.shells.get_mut(&channel) else {
            return Ok(());
        };
        let feed = editor.feed(data, &commands::complete);
        let ran = !feed.lines.is_empty();
        let mut echo = feed.echo;
        let mut logout = feed.eof;
        for line in feed.lines {
            let mut out = Vec::new();
            if self.shared.run(&line, &mut out) == After::Logout {
                logout = true;
                break;
            }
            echo.extend(crlf(&out));
        }
        if logout {
            if !echo.is_empty() {
                session.data(channel, echo)?;
            }
            self.shells.remove(&channel);
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
            return Ok(());
        }
        if ran {
            if let Some(editor) = self.shells.get(&channel) {
                editor.render(&mut echo);
            }
        }
        if !echo.is_empty() {
            session.data(channel, echo)?;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shells.remove(&channel);
        Ok(())
    }
}

/// Seconds since the Unix epoch (certificate validity is wall-clock time).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
