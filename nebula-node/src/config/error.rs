//! Why a config could not be loaded ([`ConfigError`]) and what was accepted with a remark
//! ([`ConfigWarning`]): every message names the dotted key it is about.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// A config that cannot be used. Each variant says what was wrong and where.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file or directory could not be read (permissions, I/O error, a directory that
    /// vanished while being listed).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path given to `-config` holds no config file: it does not exist, or it is a directory
    /// with no `*.yml`/`*.yaml` file in it (Go: "no config files found at ...").
    #[error("no config files found at {}", .0.display())]
    NoFiles(PathBuf),
    /// Config text given as a string was empty (Go: "Empty configuration").
    #[error("empty configuration")]
    Empty,
    /// A file is not valid YAML, or its top level is not a mapping.
    #[error("{}: {message}", file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "<string>".to_string()))]
    Yaml {
        /// The file, or `None` for text given as a string.
        file: Option<PathBuf>,
        /// What the YAML parser said (with line and column where it has them).
        message: String,
    },
    /// Two files of a config directory hold a list and a non-list under the same key; Go's
    /// merge (mergo with `WithAppendSlice`) refuses that too.
    #[error("{key}: cannot merge {later_kind} from {} with a list from an earlier file", later_file.display())]
    MergeConflict {
        /// The dotted key.
        key: String,
        /// The later file, which holds the non-list value.
        later_file: PathBuf,
        /// What the later file holds there ("a string", "a map", ...).
        later_kind: &'static str,
    },
    /// A key holds a value of the wrong type or out of range, or a value that contradicts
    /// another key. The message reads `key: problem`.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key (list entries as `key[index]`, 0-based).
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A required key is missing (`pki.ca`, `pki.cert`, `pki.key`).
    #[error("{key}: required, but not set ({hint})")]
    Missing {
        /// The dotted key.
        key: String,
        /// What it should hold.
        hint: &'static str,
    },
    /// A `pki.*` file named by the config could not be read.
    #[error("{key}: unable to read {}: {source}", path.display())]
    PkiFile {
        /// The dotted key naming the file.
        key: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The dotted key the error is about, when it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. }
            | ConfigError::Missing { key, .. }
            | ConfigError::MergeConflict { key, .. } => Some(key),
            ConfigError::PkiFile { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// What kind of remark a [`ConfigWarning`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WarningKind {
    /// A key neither Go Nebula 1.6.1 nor 1.11 reads (Go ignores it silently; probably a typo).
    UnknownKey,
    /// A key Go Nebula reads that this implementation does not act on yet.
    NotYetImplemented,
    /// A key that still works but has a newer spelling.
    Deprecated,
    /// A key that older Go Nebula read and 1.11 ignores; it is ignored here too.
    Removed,
    /// A key only used on another operating system; ignored on Linux.
    OtherPlatform,
    /// A value Go ignores with a log line (or where Go falls back to a default); ignored here too.
    IgnoredValue,
    /// A merge of a config directory where Go's merge rules give a surprising result
    /// (a later `false`, `0` or `""` does not override an earlier non-empty value).
    MergeQuirk,
    /// Valid, but probably not what was meant (Go logs the same warning).
    Advice,
}

/// A remark about a config that was accepted. `Display` gives `key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The dotted key it is about.
    pub key: String,
    /// What kind of remark.
    pub kind: WarningKind,
    /// The remark.
    pub message: String,
}

impl ConfigWarning {
    pub(crate) fn new(
        key: impl Into<String>,
        kind: WarningKind,
        message: impl Into<String>,
    ) -> ConfigWarning {
        ConfigWarning {
            key: key.into(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
