//! Typed reads of dotted keys with Go's conversions (`GetString`, `GetInt`, `GetBool`,
//! `GetDuration`, `GetStringSlice`), except that a value Go would silently replace by the
//! default is an error here that names the key.

use std::time::Duration;

use super::error::{ConfigError, ConfigWarning, WarningKind};
use super::value::{Map, Value};

/// Reads typed values out of a config tree, collecting warnings on the way.
pub(crate) struct Reader<'a> {
    root: &'a Value,
    pub(crate) warnings: Vec<ConfigWarning>,
}

/// Quotes a value for an error message: strings in quotes, the rest as Go prints them.
pub(crate) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.go_string(),
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(root: &'a Value) -> Reader<'a> {
        Reader {
            root,
            warnings: Vec::new(),
        }
    }

    pub(crate) fn warn(
        &mut self,
        key: impl Into<String>,
        kind: WarningKind,
        msg: impl Into<String>,
    ) {
        self.warnings.push(ConfigWarning::new(key, kind, msg));
    }

    /// The value at a dotted key (`null` = absent).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.root.get(key)
    }

    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.root.is_set(key)
    }

    /// Go `GetString`: any scalar as its `%v` text.
    pub(crate) fn string(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(v) => scalar_string(key, v),
        }
    }

    /// Go `GetInt`: an integer, or text that `strconv.Atoi` accepts.
    pub(crate) fn int(&self, key: &str, default: i64) -> Result<i64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => value_int(key, v),
        }
    }

    /// [`Reader::int`] checked against an inclusive range and converted.
    pub(crate) fn int_in<T: TryFrom<i64>>(
        &self,
        key: &str,
        default: T,
        min: i64,
        max: i64,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => int_in_range(key, v, min, max),
        }
    }

    /// Go `GetBool`: `true`/`false`, or text that `strconv.ParseBool` accepts after lowercasing,
    /// or `y`/`yes`/`n`/`no`.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => value_bool(key, v),
        }
    }

    /// Go `GetDuration`: Go duration text (`"5s"`, `"1m30s"`, `"100ms"`, `"0"`), at most
    /// [`MAX_DURATION`].
    pub(crate) fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.duration_in(key, default, MAX_DURATION)
    }

    /// [`Reader::duration`] at most `max`: a key whose value feeds a timer gets a bound that
    /// keeps deadlines meaningful (and far from any clock overflow).
    pub(crate) fn duration_in(
        &self,
        key: &str,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => at_most(key, value_duration(key, v)?, max),
        }
    }

    /// [`Reader::duration`] within `[min, max]`: for keys where Go misbehaves on a zero or tiny
    /// value (a ticker that panics, a lookup that always times out).
    pub(crate) fn duration_between(
        &self,
        key: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = self.duration_in(key, default, max)?;
        if d < min {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "{} is out of range (at least {})",
                    goflag::GoDuration::from_std(d),
                    goflag::GoDuration::from_std(min)
                ),
            ));
        }
        Ok(d)
    }

    /// Keys Go reads with `GetInt` and multiplies by a second: a whole number of seconds, at most
    /// `max`.
    pub(crate) fn seconds(
        &self,
        key: &str,
        default_secs: u64,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get(key) {
            None => Ok(Duration::from_secs(default_secs)),
            Some(v) => {
                let n: u64 = int_in_range(key, v, 0, i64::MAX)?;
                at_most(key, Duration::from_secs(n), max)
            }
        }
    }

    /// Go `GetStringSlice`: a list whose entries are scalars, as their `%v` text.
    pub(crate) fn string_list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::List(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| scalar_string(&format!("{key}[{i}]"), v))
                .collect(),
            Some(other) => Err(ConfigError::invalid(
                key,
                format!(
                    "expected a list, got {} {}",
                    other.kind_name(),
                    shown(other)
                ),
            )),
        }
    }

    /// Go `GetMap`: a map, or `None` when unset.
    pub(crate) fn map(&self, key: &str) -> Result<Option<&'a Map>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Map(m)) => Ok(Some(m)),
            Some(other) => Err(ConfigError::invalid(
                key,
                format!("expected a map, got {} {}", other.kind_name(), shown(other)),
            )),
        }
    }

    /// A list, or `None` when unset.
    pub(crate) fn list(&self, key: &str) -> Result<Option<&'a [Value]>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(other) => Err(ConfigError::invalid(
                key,
                format!(
                    "expected a list, got {} {}",
                    other.kind_name(),
                    shown(other)
                ),
            )),
        }
    }
}

/// A scalar as its `%v` text; lists and maps are refused.
pub(crate) fn scalar_string(key: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::List(_) | Value::Map(_) => Err(ConfigError::invalid(
            key,
            format!("expected a string, got {} {}", v.kind_name(), shown(v)),
        )),
        other => Ok(other.go_string()),
    }
}

/// Go `strconv.Atoi` on the `%v` text of a scalar.
pub(crate) fn value_int(key: &str, v: &Value) -> Result<i64, ConfigError> {
    let bad = || ConfigError::invalid(key, format!("expected an integer, got {}", shown(v)));
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(_) | Value::String(_) => atoi(&v.go_string()).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// [`value_int`] within an inclusive range, converted to `T`.
pub(crate) fn int_in_range<T: TryFrom<i64>>(
    key: &str,
    v: &Value,
    min: i64,
    max: i64,
) -> Result<T, ConfigError> {
    let n = value_int(key, v)?;
    if n < min || n > max {
        return Err(ConfigError::invalid(
            key,
            format!("{n} is out of range ({min}..={max})"),
        ));
    }
    T::try_from(n).map_err(|_| ConfigError::invalid(key, format!("{n} is out of range")))
}

/// Go `strconv.Atoi`: optional sign, decimal digits, nothing else.
pub(crate) fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Go's `GetBool` conversion.
pub(crate) fn value_bool(key: &str, v: &Value) -> Result<bool, ConfigError> {
    if let Value::Bool(b) = v {
        return Ok(*b);
    }
    let bad = || ConfigError::invalid(key, format!("expected a boolean, got {}", shown(v)));
    if !v.is_scalar() {
        return Err(bad());
    }
    match v.go_string().to_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "n" | "no" => Ok(false),
        _ => Err(bad()),
    }
}

/// Go's `GetDuration` conversion; negative durations are refused.
/// The longest duration any key accepts (a year): longer is a typo or an attack on the timers.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The longest interval of the periodic timers (connection checks, lighthouse updates, handshake
/// retries' base): a day.
pub(crate) const MAX_TIMER_INTERVAL: Duration = Duration::from_secs(86_400);

fn at_most(key: &str, d: Duration, max: Duration) -> Result<Duration, ConfigError> {
    if d > max {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{} is out of range (at most {})",
                goflag::GoDuration::from_std(d),
                goflag::GoDuration::from_std(max)
            ),
        ));
    }
    Ok(d)
}

pub(crate) fn value_duration(key: &str, v: &Value) -> Result<Duration, ConfigError> {
    if !v.is_scalar() {
        return Err(ConfigError::invalid(
            key,
            format!(
                "expected a duration like \"5s\", got {} {}",
                v.kind_name(),
                shown(v)
            ),
        ));
    }
    let text = v.go_string();
    goflag::parse_std_duration(&text).map_err(|e| {
        let hint = if matches!(v, Value::Int(_)) {
            " (a number needs a unit here, e.g. \"5s\")"
        } else {
            ""
        };
        ConfigError::invalid(key, format!("{e}{hint}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(s: &str) -> Value {
        Value::from_yaml(s, None).unwrap()
    }

    #[test]
    fn ints_like_go_atoi() {
        let v = tree("a: 5\nb: \"7\"\nc: abc\nd: 1300.0\ne: \" 5\"\nf: true\n");
        let r = Reader::new(&v);
        assert_eq!(r.int("a", 0).unwrap(), 5);
        assert_eq!(r.int("b", 0).unwrap(), 7);
        assert_eq!(r.int("zz", 9).unwrap(), 9);
        assert_eq!(
            r.int("c", 0).unwrap_err().to_string(),
            "c: expected an integer, got \"abc\""
        );
        assert_eq!(r.int("d", 0).unwrap(), 1300);
        assert!(r.int("e", 0).is_err());
        assert!(r.int("f", 0).is_err());
        assert_eq!(
            r.int_in::<u16>("a", 0, 10, 20).unwrap_err().to_string(),
            "a: 5 is out of range (10..=20)"
        );
    }

    #[test]
    fn bools_like_go() {
        let v = tree("a: yes\nb: \"FALSE\"\nc: 1\nd: maybe\ne: T\n");
        let r = Reader::new(&v);
        assert!(r.bool("a", false).unwrap());
        assert!(!r.bool("b", true).unwrap());
        assert!(r.bool("c", false).unwrap());
        assert!(r.bool("d", false).is_err());
        assert!(r.bool("e", false).unwrap());
        assert!(r.bool("unset", true).unwrap());
    }

    #[test]
    fn durations_like_go() {
        let v = tree("a: 5s\nb: 100ms\nc: 0\nd: 5\ne: 1h30m\nf: -1s\ng: 5x\n");
        let r = Reader::new(&v);
        assert_eq!(
            r.duration("a", Duration::ZERO).unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            r.duration("b", Duration::ZERO).unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(
            r.duration("c", Duration::from_secs(1)).unwrap(),
            Duration::ZERO
        );
        let e = r.duration("d", Duration::ZERO).unwrap_err().to_string();
        assert!(e.starts_with("d: time: missing unit"), "{e}");
        assert_eq!(
            r.duration("e", Duration::ZERO).unwrap(),
            Duration::from_secs(5400)
        );
        assert!(r.duration("f", Duration::ZERO).is_err());
        assert!(r.duration("g", Duration::ZERO).is_err());
        assert_eq!(
            r.seconds("d", 1, MAX_TIMER_INTERVAL).unwrap(),
            Duration::from_secs(5)
        );
        assert!(r.seconds("a", 1, MAX_TIMER_INTERVAL).is_err());
    }

    #[test]
    fn string_lists() {
        let v = tree("a: [x, 1, true]\nb: x\nc: [[1]]\n");
        let r = Reader::new(&v);
        assert_eq!(r.string_list("a").unwrap(), ["x", "1", "true"]);
        assert!(r.string_list("b").is_err());
        assert_eq!(r.string_list("c").unwrap_err().key(), Some("c[0]"));
        assert!(r.string_list("none").unwrap().is_empty());
    }
}
