//! Finding and merging config files the way Go Nebula's `config.C.Load` does: one file, or every
//! `*.yml`/`*.yaml` under a directory (recursively), sorted by absolute path, merged with mergo.
//!
//! Go merges each file in turn as `mergo.Merge(&thisFile, mergedSoFar, mergo.WithAppendSlice)`
//! (`config/config.go` @ v1.6.1 and v1.11.1; mergo v0.3.8 / v1.0.2 behave the same here), so:
//! * a key only in one file is kept;
//! * two maps are merged key by key, recursively;
//! * two lists are concatenated, **the later file's entries first** (`[later.., earlier..]`);
//! * two scalars: the later file wins, **unless the later value is "empty"** (`false`, `0`,
//!   `0.0`, `""`, `null`, `[]`, `{}`), in which case the earlier value is kept;
//! * a list in an earlier file and a non-list in a later file is an error ("cannot append two
//!   slices with different type"); other type clashes keep the later value if it is non-empty.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigWarning, WarningKind};
use super::value::{Map, Value};

/// The config files Go would read for `path`, in Go's order (sorted absolute paths).
/// A path that does not exist gives an empty list (Go: "no config files found").
pub fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    resolve(path, true, &mut files)?;
    files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(files)
}

fn resolve(path: &Path, direct: bool, files: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    // Like Go's os.Stat: symlinks are followed, and anything that cannot be stat'ed is skipped.
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if !meta.is_dir() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if direct || name.ends_with(".yml") || name.ends_with(".yaml") {
            let abs = std::path::absolute(path).map_err(|source| ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            files.push(abs);
        }
        return Ok(());
    }
    let io_err = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_err)? {
        names.push(entry.map_err(io_err)?.file_name());
    }
    names.sort();
    for name in names {
        resolve(&path.join(name), false, files)?;
    }
    Ok(())
}

/// Reads and merges the given files in order. Returns the merged tree and the merge quirks
/// worth a warning.
pub fn load_files(files: &[PathBuf]) -> Result<(Value, Vec<ConfigWarning>), ConfigError> {
    let mut merged = Map::new();
    let mut warnings = Vec::new();
    for file in files {
        // Wiped when dropped: the file may hold the private key inline (`pki.key`).
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(file).map_err(|source| {
            ConfigError::Io {
                path: file.clone(),
                source,
            }
        })?);
        let Value::Map(mut this) = Value::from_yaml(&text, Some(file))? else {
            return Err(ConfigError::Yaml {
                file: Some(file.clone()),
                message: "the top level must be a mapping of keys".into(),
            });
        };
        merge_into(&mut this, merged, "", file, &mut warnings)?;
        merged = this;
    }
    Ok((Value::Map(merged), warnings))
}

/// Merges `earlier` into `later` with mergo's `Merge(&later, earlier, WithAppendSlice)` rules
/// (see the module doc). `later_file` is only used in messages.
pub fn merge_into(
    later: &mut Map,
    earlier: Map,
    prefix: &str,
    later_file: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    for (k, e) in earlier {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if e == Value::Null {
            continue;
        }
        let slot = later.get_mut(&k);
        match (slot, e) {
            (None, e) => {
                later.insert(k, e);
            }
            (Some(Value::Null), e) => {
                later.insert(k, e);
            }
            (Some(Value::Map(lm)), Value::Map(em)) => {
                merge_into(lm, em, &key, later_file, warnings)?;
            }
            (Some(l), Value::List(el)) => match l {
                Value::List(ll) => ll.extend(el),
                other => {
                    return Err(ConfigError::MergeConflict {
                        key,
                        later_file: later_file.to_path_buf(),
                        later_kind: other.kind_name(),
                    })
                }
            },
            (Some(l), e) => {
                if l.is_go_empty() {
                    if e.is_scalar() && l.is_scalar() {
                        warnings.push(ConfigWarning::new(
                            key,
                            WarningKind::MergeQuirk,
                            format!(
                                "{} in {} does not override {} from an earlier file (Go's merge \
                                 treats false, 0 and \"\" as unset); {} is used",
                                l.go_string(),
                                later_file.display(),
                                e.go_string(),
                                e.go_string()
                            ),
                        ));
                    }
                    *l = e;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(s: &str) -> Map {
        match Value::from_yaml(s, None) {
            Ok(Value::Map(m)) => m,
            other => panic!("bad test yaml: {other:?}"),
        }
    }

    fn merged(earlier: &str, later: &str) -> Result<(Value, Vec<ConfigWarning>), ConfigError> {
        let mut l = map(later);
        let mut w = Vec::new();
        merge_into(&mut l, map(earlier), "", Path::new("later.yml"), &mut w)?;
        Ok((Value::Map(l), w))
    }

    #[test]
    fn maps_deep_merged_scalars_later_wins() {
        let (v, w) = merged(
            "a: {x: 1, y: 2}\ns: old\nonly_earlier: 5\n",
            "a: {y: 3, z: 4}\ns: new\n",
        )
        .unwrap();
        assert_eq!(v.get("a.x"), Some(&Value::Int(1)));
        assert_eq!(v.get("a.y"), Some(&Value::Int(3)));
        assert_eq!(v.get("a.z"), Some(&Value::Int(4)));
        assert_eq!(v.get("s"), Some(&Value::String("new".into())));
        assert_eq!(v.get("only_earlier"), Some(&Value::Int(5)));
        assert!(w.is_empty());
    }

    #[test]
    fn lists_appended_later_first() {
        let (v, _) = merged("l: [a, b]\n", "l: [c]\n").unwrap();
        assert_eq!(v.get("l").unwrap().go_string(), "[c a b]");
        let (v, _) = merged("l: [a]\n", "l: ~\n").unwrap();
        assert_eq!(v.get("l").unwrap().go_string(), "[a]");
    }

    #[test]
    fn empty_later_values_do_not_override() {
        let (v, w) = merged("b: true\ni: 5\ns: x\n", "b: false\ni: 0\ns: \"\"\n").unwrap();
        assert_eq!(v.get("b"), Some(&Value::Bool(true)));
        assert_eq!(v.get("i"), Some(&Value::Int(5)));
        assert_eq!(v.get("s"), Some(&Value::String("x".into())));
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|w| w.kind == WarningKind::MergeQuirk));
    }

    #[test]
    fn list_then_non_list_is_an_error() {
        let err = merged("l: [a]\n", "l: x\n").unwrap_err();
        assert_eq!(err.key(), Some("l"));
        // A scalar earlier and a list later: the later list is kept.
        let (v, _) = merged("l: x\n", "l: [a]\n").unwrap();
        assert_eq!(v.get("l").unwrap().go_string(), "[a]");
        // A map earlier, a non-empty scalar later: later kept; an empty one: earlier kept.
        let (v, _) = merged("m: {a: 1}\n", "m: text\n").unwrap();
        assert_eq!(v.get("m"), Some(&Value::String("text".into())));
        let (v, _) = merged("m: {a: 1}\n", "m: \"\"\n").unwrap();
        assert_eq!(v.get("m.a"), Some(&Value::Int(1)));
    }
}
