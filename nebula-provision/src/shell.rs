//! POSIX shell helpers for the commands we send to hosts (cloud-init runcmd, apply): quoting, and
//! the scripts that install the nebula binary from an apt package, a checked download or our .deb.

use crate::model::{Binary, BinarySource, DebSource};

/// Where a host keeps the `.deb` of `nebula_binary.deb` (copied, embedded or downloaded).
pub const DEB_CACHE: &str = "/var/cache/nebula-provision/nebula-rs.deb";
/// Name of the shell variable [`deb_install_body`] sets to 1 when it installed the package.
pub const DEB_CHANGED_VAR: &str = "nebula_deb_changed";

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
        BinarySource::Deb(d) => Some(format!("set -eu\n{}", deb_install_body(d, root))),
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

/// Shell lines (for a script already under `set -eu`) that install our package from
/// `root`[`DEB_CACHE`] unless the host has that package at that version already; a URL source is
/// downloaded there first unless the cached file already has the expected SHA-256. They set
/// [`DEB_CHANGED_VAR`] to 1 when they installed. With a `root` other than `/` they use
/// `dpkg --root` (which runs the maintainer scripts chrooted there), else `apt-get` (which also
/// pulls dependencies).
pub fn deb_install_body(d: &DebSource, root: &str) -> String {
    let root = root.trim_end_matches('/');
    let file = format!("{root}{DEB_CACHE}");
    let f = quote(&file);
    let mut s = String::new();
    if let DebSource::Url { url, sha256 } = d {
        let dir = quote(file.rsplit_once('/').map_or("/", |(d, _)| d));
        s.push_str(&format!(
            "if ! echo {sha}'  '{f} | sha256sum -c --quiet - >/dev/null 2>&1; then\n\
             \x20 mkdir -p {dir}\n\
             \x20 curl -fsSL --proto '=https' -o {part} {url}\n\
             \x20 echo {sha}'  '{part} | sha256sum -c --quiet -\n\
             \x20 mv {part} {f}\n\
             fi\n",
            sha = quote(sha256),
            part = quote(&format!("{file}.part")),
            url = quote(url),
        ));
    }
    let (query, install) = if root.is_empty() {
        (
            "dpkg-query".to_string(),
            format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q {f}"),
        )
    } else {
        let r = quote(root);
        (
            format!("dpkg-query --root={r}"),
            format!("dpkg --root={r} -i {f}"),
        )
    };
    s.push_str(&format!(
        "nebula_deb_pkg=$(dpkg-deb -f {f} Package)\n\
         nebula_deb_ver=$(dpkg-deb -f {f} Version)\n\
         if [ \"$({query} -W -f='${{db:Status-Status}} ${{Version}}' \"$nebula_deb_pkg\" 2>/dev/null || true)\" != \"installed $nebula_deb_ver\" ]; then\n\
         \x20 {install}\n\
         \x20 {DEB_CHANGED_VAR}=1\n\
         fi\n"
    ));
    s
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

    #[test]
    fn deb_script_downloads_checks_and_installs_only_a_new_version() {
        let url = DebSource::Url {
            url: "https://example.invalid/nebula-rs_1.0_amd64.deb".into(),
            sha256: "cd".repeat(32),
        };
        let s = deb_install_body(&url, "/");
        let fetch = s.find("curl ").unwrap_or(usize::MAX);
        let check = s[fetch.min(s.len())..]
            .find("sha256sum -c")
            .map_or(usize::MAX, |i| i + fetch);
        let install = s.find("apt-get install").unwrap_or(0);
        assert!(fetch < check && check < install, "{s}");
        assert!(s.contains(&format!("-o {DEB_CACHE}.part ")), "{s}");
        assert!(
            s.contains(&format!("apt-get install -y -q {DEB_CACHE}\n")),
            "{s}"
        );
        assert!(s.contains("!= \"installed $nebula_deb_ver\""), "{s}");
        assert!(s.contains(&format!("{DEB_CHANGED_VAR}=1")), "{s}");
        // A local package is already on the host: no download; a throwaway root uses dpkg --root.
        let s = deb_install_body(&DebSource::Local("/x/n.deb".into()), "/srv/r/");
        assert!(!s.contains("curl"), "{s}");
        assert!(
            s.contains(&format!("dpkg --root=/srv/r -i /srv/r{DEB_CACHE}")),
            "{s}"
        );
        assert!(s.contains("dpkg-query --root=/srv/r -W"), "{s}");
        // And cloud-init's whole script is strict.
        let b = Binary {
            path: "/usr/bin/nebula".into(),
            notify: true,
            watchdog: true,
            source: BinarySource::Deb(url),
        };
        let whole = binary_install_script(&b, "/").unwrap_or_default();
        assert!(whole.starts_with("set -eu\n"), "{whole}");
    }
}
