//! A config directory is merged exactly as Go Nebula merges it: tests/data/merge-go-output.yml
//! is the tree Go 1.11.0 (and 1.6.1) printed for tests/data/merge/.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nebula_node::config::{Config, ConfigError, Value, WarningKind};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn directory_merge_matches_go() {
    let l = match Config::load(data("merge")) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<String> = l
        .files
        .iter()
        .map(|p| {
            p.strip_prefix(data("merge"))
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["00-base.yml", "10-extra.yml", "sub/05-more.yml"]);

    let go_text = std::fs::read_to_string(data("merge-go-output.yml")).unwrap();
    let go_tree = Value::from_yaml(&go_text, None).unwrap();
    assert_eq!(l.raw, go_tree, "merged tree differs from Go's");

    let c = &l.config;
    assert_eq!(c.tun.mtu, 1350, "later file wins");
    assert_eq!(
        c.lighthouse.interval,
        Duration::from_secs(30),
        "later 0 does not override"
    );
    assert!(c.punchy.punch, "later false does not override");
    assert_eq!(c.punchy.delay, Duration::from_secs(2));
    assert!(c.relay.am_relay);
    let hosts: Vec<String> = c
        .firewall
        .inbound
        .iter()
        .map(|r| {
            r.host
                .clone()
                .or_else(|| r.group.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(hosts, ["c", "b1", "a1", "a2"], "later files' rules first");
    let shm: Vec<String> = c.static_host_map[0]
        .remotes
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert_eq!(shm, ["2.2.2.2:4242", "1.1.1.1:4242"]);
    assert_eq!(c.static_host_map.len(), 2);

    let quirks: Vec<&str> = l
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::MergeQuirk)
        .map(|w| w.key.as_str())
        .collect();
    assert_eq!(quirks, ["lighthouse.interval", "punchy.punch"]);
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

#[test]
fn file_and_directory_resolution() {
    let dir = tempfile::tempdir().unwrap();
    // No file at all.
    assert!(matches!(
        Config::load(dir.path()),
        Err(ConfigError::NoFiles(_))
    ));
    assert!(matches!(
        Config::load(dir.path().join("nope.yml")),
        Err(ConfigError::NoFiles(_))
    ));
    // A file named directly is read whatever its extension; in a directory only *.yml/*.yaml.
    write(
        dir.path(),
        "node.conf",
        "pki: {ca: a, cert: b, key: c}\ntun: {mtu: 1400}\n",
    );
    let l = Config::load(dir.path().join("node.conf")).unwrap();
    assert_eq!(l.config.tun.mtu, 1400);
    assert!(matches!(
        Config::load(dir.path()),
        Err(ConfigError::NoFiles(_))
    ));
    write(dir.path(), "a.yaml", "pki: {ca: a, cert: b, key: c}\n");
    write(dir.path(), "b.yml", "tun: {mtu: 1500}\n");
    write(dir.path(), "empty.yml", "");
    let l = Config::load(dir.path()).unwrap();
    assert_eq!(l.files.len(), 3);
    assert_eq!(l.config.tun.mtu, 1500);
}

#[test]
fn list_in_earlier_file_and_scalar_in_later_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "1.yml",
        "pki: {ca: a, cert: b, key: c}\npreferred_ranges: [\"10.0.0.0/8\"]\n",
    );
    write(dir.path(), "2.yml", "preferred_ranges: \"10.0.0.0/8\"\n");
    let e = Config::load(dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::MergeConflict { .. }), "{e}");
    assert_eq!(e.key(), Some("preferred_ranges"));
}

#[test]
fn yaml_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "1.yml", "pki: {ca: a, cert: b, key: c}\n");
    write(dir.path(), "2.yml", "tun: [\n");
    let e = Config::load(dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::Yaml { .. }));
    assert!(e.to_string().contains("2.yml"), "{e}");
}
