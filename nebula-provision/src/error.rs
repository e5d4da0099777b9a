//! Error types, one enum per layer: inventory (read, parse, validate), PKI, output (bundles),
//! apply (SSH) and status (one host's answer). Each variant says what probably went wrong.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with an inventory, located by host (when it is about one) and field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The host the field belongs to, if any.
    pub host: Option<String>,
    /// The field's path, e.g. `overlay_ip`, `public_endpoints[0]`, `firewall.allow[2].to`.
    pub field: String,
    /// What is wrong and, where possible, what would be right.
    pub reason: String,
}

impl Problem {
    /// A problem with a field of host `host`.
    pub fn host(host: &str, field: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            host: Some(host.to_string()),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A problem with a field outside `hosts`.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            host: None,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "host `{h}`, field `{}`: {}", self.field, self.reason),
            None => write!(f, "field `{}`: {}", self.field, self.reason),
        }
    }
}

/// Why an inventory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read (missing, permissions).
    #[error("cannot read inventory {path}: {source}")]
    Read {
        /// The inventory path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key or a value of the wrong type; the message names
    /// the key path and line.
    #[error("inventory {path}: {message}")]
    Parse {
        /// The inventory path.
        path: PathBuf,
        /// serde's message.
        message: String,
    },
    /// The YAML is well formed but describes an impossible or unsafe mesh.
    #[error("invalid inventory:\n{}", list(.problems))]
    Invalid {
        /// Every problem found (validation does not stop at the first).
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why the CA or a host certificate could not be read, made or stored.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file in the PKI directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key in the PKI directory is not what it should be (corrupt, wrong kind).
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA key is (or must be) encrypted and no passphrase was given.
    #[error(
        "the CA key needs a passphrase: set the environment variable {env} or pass --ca-passphrase-file"
    )]
    PassphraseMissing {
        /// The environment variable the inventory names.
        env: String,
    },
    /// The passphrase does not decrypt the CA key.
    #[error("{path}: wrong passphrase for the CA key")]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The CA's curve differs from `mesh.curve`; a new CA would be needed.
    #[error("the CA in {path} uses curve {found}, the inventory asks for {wanted}; move the PKI directory away to make a new CA")]
    CurveMismatch {
        /// The CA certificate.
        path: PathBuf,
        /// The CA's curve.
        found: &'static str,
        /// `mesh.curve`.
        wanted: &'static str,
    },
    /// Signing failed (usually: the host does not fit the CA's constraints or the CA has expired).
    #[error("cannot sign the certificate for `{name}`: {reason}")]
    Sign {
        /// Host or CA name.
        name: String,
        /// The signer's reason.
        reason: String,
    },
}

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or directory under the output directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why pushing a bundle to a host failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The host has no `ssh.host`, so it cannot be reached.
    #[error("host `{host}` has no ssh.host in the inventory")]
    NoSsh {
        /// The host.
        host: String,
    },
    /// A host named on the command line is not in the inventory.
    #[error("host `{host}` is not in the inventory")]
    UnknownHost {
        /// The name given.
        host: String,
    },
    /// A bundle file is missing locally (run `render` first).
    #[error("{path}: bundle file missing (run `nebula-provision render` first): {source}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// ssh or scp could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A remote step failed (exit status and stderr say why).
    #[error("host `{host}`: {step} failed ({status}): {stderr}")]
    Remote {
        /// The host.
        host: String,
        /// What was being done.
        step: String,
        /// Exit status text.
        status: String,
        /// What the command printed on stderr.
        stderr: String,
    },
    /// The remote answered something we cannot read.
    #[error("host `{host}`: unexpected answer to {step}: {line}")]
    Protocol {
        /// The host.
        host: String,
        /// What was being done.
        step: String,
        /// The offending line.
        line: String,
    },
    /// nebula did not come up after the install.
    #[error("host `{host}`: nebula.service is `{state}` after the install (check `journalctl -u nebula` there)")]
    NotActive {
        /// The host.
        host: String,
        /// The last state systemctl reported.
        state: String,
    },
}

/// Why one host's status could not be read (`nebula-provision status`). The host counts as down,
/// with this as the reason; other hosts are not affected.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The host has no `ssh` section, so it cannot be asked.
    #[error("no ssh section in the inventory")]
    NoSsh,
    /// ssh could not be started on this machine.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Nothing came back in time (the host or nebula-ctl hangs); the ssh process was killed.
    #[error("no answer within {seconds} s")]
    Timeout {
        /// The per-host timeout.
        seconds: u64,
    },
    /// ssh itself failed (exit 255: unreachable, refused, authentication, host key).
    #[error("ssh failed ({status}): {stderr}")]
    Ssh {
        /// Exit status text.
        status: String,
        /// The last lines ssh printed on stderr.
        stderr: String,
    },
    /// `nebula-ctl` is not installed or not on the PATH of the SSH session.
    #[error("nebula-ctl not found on the host ({stderr})")]
    CtlMissing {
        /// What the shell printed.
        stderr: String,
    },
    /// `nebula-ctl status --json` failed (usually: nebula is not running, so its control socket
    /// does not answer; or sudo wants a password).
    #[error("nebula-ctl failed ({status}): {stderr}")]
    Ctl {
        /// Exit status text.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The answer is larger than we accept from one host.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The answer is not a status response we can read (not JSON, or a field of the wrong type).
    #[error("bad JSON from nebula-ctl: {reason}")]
    BadJson {
        /// serde's message (with line and column).
        reason: String,
    },
    /// The node speaks another version of the control API.
    #[error("control API version {found}, this nebula-provision reads version {wanted}")]
    Version {
        /// The version the node answered with.
        found: u64,
        /// The version we read.
        wanted: u32,
    },
    /// The node answered, with an error instead of a status.
    #[error("nebula-ctl answered with an error: {error}")]
    NotOk {
        /// The node's message.
        error: String,
    },
}
