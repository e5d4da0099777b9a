//! POSIX shell helpers for the commands we send to hosts (cloud-init runcmd, apply): quoting, and
//! the script that installs the nebula binary from an apt package or a checked download.

use crate::model::{Binary, BinarySource};

/// Quotes `s` for a POSIX shell (single quotes; embedded `'` as `'\''`).
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A shell script installing the binary on the host (under `root`, normally `/`), or `None` when
/// there is nothing to run there (preinstalled, or copied from the operator's machine).
pub fn binary_install_script(b: &Binary, root: &str) -> Option<String> {
    let dest = format!("{}{}", root.trim_end_matches('/'), b.path);
    match &b.source {
        BinarySource::Preinstalled | BinarySource::Local(_) => None,
        BinarySource::Apt(pkg) => Some(format!(
            "set -eu\nif ! dpkg -s {pkg} >/dev/null 2>&1; then\n  DEBIAN_FRONTEND=noninteractive apt-get install -y -q {pkg}\nfi\n",
            pkg = quote(pkg)
        )),
        BinarySource::Url { url, sha256 } => {
            let unpack = if url.ends_with(".tar.gz") || url.ends_with(".tgz") {
                format!(
                    "tar -xzf \"$tmp/download\" -C \"$tmp\" nebula\ninstall -D -m 0755 \"$tmp/nebula\" {}\n",
                    quote(&dest)
                )
            } else {
                format!("install -D -m 0755 \"$tmp/download\" {}\n", quote(&dest))
            };
            Some(format!(
                "set -eu\ntmp=$(mktemp -d)\ntrap 'rm -rf \"$tmp\"' EXIT\n\
                 curl -fsSL --proto '=https,http' -o \"$tmp/download\" {url}\n\
                 echo {sha}'  '\"$tmp/download\" | sha256sum -c --quiet -\n{unpack}",
                url = quote(url),
                sha = quote(sha256),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_leaves_plain_words_and_wraps_the_rest() {
        assert_eq!(quote("/etc/nebula/config.yml"), "/etc/nebula/config.yml");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn url_script_checks_the_hash_before_installing() {
        let b = Binary {
            path: "/usr/local/bin/nebula".into(),
            notify: true,
            watchdog: true,
            source: BinarySource::Url {
                url: "https://example.invalid/nebula-linux-amd64.tar.gz".into(),
                sha256: "ab".repeat(32),
            },
        };
        let s = binary_install_script(&b, "/").unwrap_or_default();
        let check = s.find("sha256sum -c").unwrap_or(usize::MAX);
        let install = s.find("install -D").unwrap_or(0);
        assert!(check < install, "{s}");
        assert!(s.contains("tar -xzf"));
        assert!(s.contains(" /usr/local/bin/nebula"));
        assert!(binary_install_script(
            &Binary {
                source: BinarySource::Preinstalled,
                ..b
            },
            "/"
        )
        .is_none());
    }
}
