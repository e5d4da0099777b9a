//! The `pki` section: where the CA bundle, host certificate(s) and key come from (a path or
//! inline PEM), the fingerprint blocklist, `disconnect_invalid` and `initiating_version`.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::error::ConfigError;
use super::read::Reader;

/// Where a PEM blob comes from. Like Go, a value containing `-----BEGIN` is inline PEM and
/// anything else is a file path (relative paths are relative to the working directory).
/// `Debug` shows the length of inline text, never the text: it may be the private key.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// The PEM text itself (wiped when dropped).
    Inline(Zeroizing<String>),
    /// A file holding it.
    Path(PathBuf),
}

impl PemSource {
    fn from_config(text: String) -> PemSource {
        if text.contains("-----BEGIN") {
            PemSource::Inline(Zeroizing::new(text))
        } else {
            PemSource::Path(PathBuf::from(text))
        }
    }

    /// The PEM bytes: the inline text, or the file's content. `key` names the config key in
    /// the error ("pki.ca", ...). Called at start-up and again on every reload.
    pub fn load(&self, key: &'static str) -> Result<Vec<u8>, ConfigError> {
        match self {
            PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
            PemSource::Path(path) => read_file(key, path),
        }
    }

    /// "<inline>" or the path, for log lines.
    pub fn describe(&self) -> String {
        match self {
            PemSource::Inline(_) => "<inline>".to_string(),
            PemSource::Path(p) => p.display().to_string(),
        }
    }
}

impl std::fmt::Debug for PemSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PemSource::Inline(text) => write!(f, "Inline(<{} bytes>)", text.len()),
            PemSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
        }
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::PkiFile {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Where the private key comes from: like [`PemSource`], plus a `pkcs11:` URI (1.10+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Inline PEM or a file.
    Pem(PemSource),
    /// A PKCS#11 URI; not supported by this implementation (loading it is an error).
    Pkcs11(String),
}

impl KeySource {
    /// The PEM bytes of the key, wiped when dropped.
    pub fn load(&self) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
        match self {
            // Inline text is copied straight into a wiped buffer.
            KeySource::Pem(PemSource::Inline(text)) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
            KeySource::Pem(p) => p.load("pki.key").map(Zeroizing::new),
            KeySource::Pkcs11(uri) => Err(ConfigError::invalid(
                "pki.key",
                format!("PKCS#11 keys ({uri}) are not supported by this implementation"),
            )),
        }
    }
}

/// The `pki` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiConfig {
    /// `pki.ca`: the trusted CA bundle (required).
    pub ca: PemSource,
    /// `pki.cert`: the host certificate(s), v1 and/or v2 (required).
    pub cert: PemSource,
    /// `pki.key`: the host private key (required).
    pub key: KeySource,
    /// `pki.blocklist`: certificate fingerprints (hex) refused as peers.
    pub blocklist: Vec<String>,
    /// `pki.disconnect_invalid` (1.8+ default **true**): close tunnels whose peer cert
    /// expired or became invalid.
    pub disconnect_invalid: bool,
    /// `pki.initiating_version` (1.10+): 1 or 2; `None` = Go's default (1 when a v1 cert is
    /// loaded, else 2), which needs the certificates to decide.
    pub initiating_version: Option<u8>,
}

/// Bytes of everything `pki.*` points at. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct PkiBytes {
    /// The CA bundle PEM.
    pub ca: Vec<u8>,
    /// The host certificate PEM (one or two blocks).
    pub cert: Vec<u8>,
    /// The private key PEM (wiped when dropped).
    pub key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PkiBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiBytes")
            .field("ca", &format_args!("<{} bytes>", self.ca.len()))
            .field("cert", &format_args!("<{} bytes>", self.cert.len()))
            .field(
                "key",
                &format_args!("<{} bytes, not shown>", self.key.len()),
            )
            .finish()
    }
}

impl PkiConfig {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<PkiConfig, ConfigError> {
        let required = |r: &Reader<'_>, key: &str| -> Result<String, ConfigError> {
            let s = r.string(key, "")?;
            if s.is_empty() {
                return Err(ConfigError::Missing {
                    key: key.to_string(),
                    hint: "a file path or inline PEM",
                });
            }
            Ok(s)
        };
        let ca = PemSource::from_config(required(r, "pki.ca")?);
        let cert = PemSource::from_config(required(r, "pki.cert")?);
        let key_text = required(r, "pki.key")?;
        let key = if !key_text.contains("-----BEGIN") && key_text.starts_with("pkcs11:") {
            KeySource::Pkcs11(key_text)
        } else {
            KeySource::Pem(PemSource::from_config(key_text))
        };
        let blocklist = r.string_list("pki.blocklist")?;
        let disconnect_invalid = r.bool("pki.disconnect_invalid", true)?;
        let initiating_version = if r.is_set("pki.initiating_version") {
            let v: u8 = r.int_in("pki.initiating_version", 1, 1, 2)?;
            Some(v)
        } else {
            None
        };
        Ok(PkiConfig {
            ca,
            cert,
            key,
            blocklist,
            disconnect_invalid,
            initiating_version,
        })
    }

    /// Reads `pki.ca`, `pki.cert` and `pki.key` (files or inline).
    pub fn load(&self) -> Result<PkiBytes, ConfigError> {
        Ok(PkiBytes {
            ca: self.ca.load("pki.ca")?,
            cert: self.cert.load("pki.cert")?,
            key: self.key.load()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}

    /// The key file's bytes land in a buffer that wipes itself (fails to compile otherwise).
    #[test]
    fn the_key_file_is_read_into_a_buffer_that_wipes_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("host.key");
        let pem = b"-----BEGIN NEBULA X25519 PRIVATE KEY-----\nAA==\n-----END NEBULA X25519 PRIVATE KEY-----\n";
        std::fs::write(&path, pem).expect("write key");
        let key = KeySource::Pem(PemSource::Path(path))
            .load()
            .expect("load key");
        wiped_on_drop(&key);
        assert_eq!(key.as_slice(), pem);
    }

    /// Neither the parsed config nor the loaded bytes print the key when debug-formatted (a
    /// `{:?}` in a log line or a panic message must not leak it).
    #[test]
    fn debug_output_never_shows_the_key() {
        let secret = "c2VjcmV0LWtleS1ib2R5LXNob3VsZC1uZXZlci1wcmludA==";
        let pem = format!(
            "-----BEGIN NEBULA X25519 PRIVATE KEY-----\n{secret}\n-----END NEBULA X25519 PRIVATE KEY-----\n"
        );
        let source = KeySource::Pem(PemSource::from_config(pem.clone()));
        let shown = format!("{source:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains(&format!("<{} bytes>", pem.len())), "{shown}");
        let bytes = PkiBytes {
            ca: b"ca".to_vec(),
            cert: b"cert".to_vec(),
            key: source.load().expect("inline key"),
        };
        let shown = format!("{bytes:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains("99, 50, 86"), "{shown}");
    }
}
