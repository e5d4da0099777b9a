//! The generic config tree ([`Value`]) as Go Nebula sees it after `yaml.Unmarshal` into
//! `map[string]any`: dotted-key lookup, Go's `%v` text of a value, and change detection for SIGHUP.

use std::collections::BTreeMap;

use super::error::ConfigError;

/// A map of the config tree. Keys are sorted, so two trees compare (and print) the same way
/// whatever order the YAML had, like Go's `HasChanged`, which compares `yaml.Marshal` output.
pub type Map = BTreeMap<String, Value>;

/// One node of the config tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// YAML `null`, `~` or an empty value. Go treats it exactly like an absent key.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string (also an integer too large for `i64`, kept as its digits).
    String(String),
    /// A YAML sequence.
    List(Vec<Value>),
    /// A YAML mapping. Non-string keys become their Go `%v` text.
    Map(Map),
}

impl Value {
    /// Parses one YAML document whose top level must be a mapping (or empty), like Go's
    /// `yaml.Unmarshal(b, &map[string]any{})`. YAML merge keys (`<<`) are applied.
    pub fn from_yaml(text: &str, file: Option<&std::path::Path>) -> Result<Value, ConfigError> {
        let yaml_err = |message: String| ConfigError::Yaml {
            file: file.map(|p| p.to_path_buf()),
            message,
        };
        let mut doc: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| yaml_err(e.to_string()))?;
        doc.apply_merge().map_err(|e| yaml_err(e.to_string()))?;
        match Value::from(doc) {
            Value::Null => Ok(Value::Map(Map::new())),
            v @ Value::Map(_) => Ok(v),
            other => Err(yaml_err(format!(
                "the top level must be a mapping of keys, not {}",
                other.kind_name()
            ))),
        }
    }

    /// A short description of the value's type for messages: "a string", "a list", ...
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// True for a string, number or boolean.
    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_)
        )
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value at a dotted key, like Go's `config.C.Get`: only maps are descended, and a
    /// `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut cur = self;
        for part in key.split('.') {
            cur = cur.as_map()?.get(part)?;
        }
        match cur {
            Value::Null => None,
            v => Some(v),
        }
    }

    /// Go's `IsSet`: the dotted key holds a non-null value.
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value as Go's `fmt.Sprintf("%v", v)` prints it: `<nil>`, `true`, `42`, `1.5`,
    /// `[a b]`, `map[k:v]`.
    pub fn go_string(&self) -> String {
        match self {
            Value::Null => "<nil>".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => goflag::format_float(*f),
            Value::String(s) => s.clone(),
            Value::List(items) => {
                let parts: Vec<String> = items.iter().map(Value::go_string).collect();
                format!("[{}]", parts.join(" "))
            }
            Value::Map(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.go_string()))
                    .collect();
                format!("map[{}]", parts.join(" "))
            }
        }
    }

    /// Go's mergo emptiness: `null`, `false`, `0`, `0.0`, `""`, `[]` and `{}` are "empty",
    /// and an empty value in a later file does not override an earlier one.
    pub fn is_go_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Bool(b) => !*b,
            Value::Int(i) => *i == 0,
            Value::Float(f) => *f == 0.0,
            Value::String(s) => s.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Map(m) => m.is_empty(),
        }
    }
}

impl From<serde_norway::Value> for Value {
    fn from(v: serde_norway::Value) -> Value {
        use serde_norway::Value as Y;
        match v {
            Y::Null => Value::Null,
            Y::Bool(b) => Value::Bool(b),
            Y::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::String(u.to_string())
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Y::String(s) => Value::String(s),
            Y::Sequence(items) => Value::List(items.into_iter().map(Value::from).collect()),
            Y::Mapping(m) => Value::Map(
                m.into_iter()
                    .map(|(k, v)| (Value::from(k).go_string(), Value::from(v)))
                    .collect(),
            ),
            Y::Tagged(t) => Value::from(t.value),
        }
    }
}

/// Go's `HasChanged(key)`: whether the value at a dotted key differs between two trees
/// (an empty `key` compares the whole trees). Absent and `null` are the same.
pub fn changed(old: &Value, new: &Value, key: &str) -> bool {
    if key.is_empty() {
        return old != new;
    }
    old.get(key) != new.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        match Value::from_yaml(s, None) {
            Ok(v) => v,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn dotted_get_and_null_is_unset() {
        let v = parse("a:\n  b: 1\n  c: ~\nd: [1, 2]\n");
        assert_eq!(v.get("a.b"), Some(&Value::Int(1)));
        assert_eq!(v.get("a.c"), None);
        assert!(!v.is_set("a.c"));
        assert_eq!(v.get("d.0"), None, "lists are not descended, as in Go");
        assert_eq!(v.get("a.b.x"), None);
    }

    #[test]
    fn go_percent_v() {
        let v = parse("s: x\ni: 42\nf: 1.5\nbig: 1000000.0\nb: true\nl: [a, 1]\nm: {z: 1, a: b}\n");
        let m = v.as_map().unwrap();
        let got: Vec<String> = ["s", "i", "f", "big", "b", "l", "m"]
            .iter()
            .map(|k| m[*k].go_string())
            .collect();
        assert_eq!(
            got,
            ["x", "42", "1.5", "1e+06", "true", "[a 1]", "map[a:b z:1]"]
        );
        assert_eq!(Value::Null.go_string(), "<nil>");
    }

    #[test]
    fn non_string_keys_become_text() {
        let v = parse("1: a\ntrue: b\n");
        assert_eq!(v.get("1"), Some(&Value::String("a".into())));
        assert_eq!(v.get("true"), Some(&Value::String("b".into())));
    }

    #[test]
    fn merge_keys_applied() {
        let v = parse("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n");
        assert_eq!(v.get("derived.x"), Some(&Value::Int(1)));
        assert_eq!(v.get("derived.y"), Some(&Value::Int(3)));
    }

    #[test]
    fn top_level_must_be_a_map() {
        assert!(Value::from_yaml("- a\n- b\n", None).is_err());
        assert!(Value::from_yaml("just text", None).is_err());
        assert_eq!(parse(""), Value::Map(Map::new()));
        assert!(Value::from_yaml("a: [1\n", None).is_err());
        assert!(
            Value::from_yaml("a: 1\na: 2\n", None).is_err(),
            "duplicate keys"
        );
    }

    #[test]
    fn changed_detects_differences() {
        let a = parse("x: {y: 1}\nz: 2\n");
        let b = parse("x: {y: 1}\nz: 3\nw: ~\n");
        assert!(!changed(&a, &b, "x"));
        assert!(changed(&a, &b, "z"));
        assert!(!changed(&a, &b, "w"));
        assert!(changed(&a, &b, ""));
    }
}
