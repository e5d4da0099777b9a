//! Command-line flags parsed by the rules of Go's `flag` package, so Rust binaries can be drop-in
//! replacements for Go ones (`-name value`, `--name=value`, bool flags never take a separate value).
//!
//! A [`FlagSet`] is a named collection of flags, each registered with a name, a default and a usage
//! line. Registration returns a typed [`Flag`] handle; after [`FlagSet::parse`] the value is read
//! with [`FlagSet::get`]. Parsing follows Go exactly:
//!
//! * `-name value`, `--name value`, `-name=value`, `--name=value` for non-bool flags;
//! * `-name`, `-name=true|false` (any `strconv.ParseBool` spelling) for bool flags;
//! * parsing stops at the first non-flag argument (a lone `-` is an argument) or after `--`;
//! * an unknown `-h`/`-help` gives [`FlagError::Help`], any other unknown flag
//!   `flag provided but not defined: -x`.
//!
//! [`FlagSet::print_defaults`] renders the usage text like Go's `PrintDefaults`. Nothing here
//! prints or exits: the caller decides, which is how Go's `ContinueOnError` sets behave.
#![forbid(unsafe_code)]

mod duration;
mod number;
mod quote;

use std::collections::BTreeMap;
use std::marker::PhantomData;

use thiserror::Error;

pub use duration::{
    format_duration, parse_duration, parse_std_duration, DurationError, GoDuration,
};
pub use number::{format_float, parse_bool, parse_float, parse_int, parse_uint, ValueError};
pub use quote::{go_quote, time_quote};

/// Why parsing (or defining) flags failed. Messages are the ones Go's `flag` package prints.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlagError {
    /// `-h` or `-help` was given and no flag of that name is defined: the caller should print usage.
    #[error("flag: help requested")]
    Help,
    /// A flag that was never registered.
    #[error("flag provided but not defined: -{0}")]
    Undefined(String),
    /// Malformed flag syntax such as `---x` or `-=x`.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// A non-bool flag was last on the command line, with no value after it.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// A bool flag given `-name=value` with a value that is not a Go boolean.
    #[error("invalid boolean value {} for -{name}: {reason}", go_quote(.value))]
    InvalidBool {
        /// The flag's name.
        name: String,
        /// The value as given.
        value: String,
        /// Parse or range failure.
        reason: ValueError,
    },
    /// A non-bool flag given a value its kind cannot hold.
    #[error("invalid value {} for flag -{name}: {reason}", go_quote(.value))]
    InvalidValue {
        /// The flag's name.
        name: String,
        /// The value as given.
        value: String,
        /// Parse or range failure.
        reason: ValueError,
    },
    /// A programming error: the same name was registered twice (Go panics; we report it from `parse`).
    #[error("{set} flag redefined: {name}")]
    Redefined {
        /// The flag set's name.
        set: String,
        /// The duplicated flag name.
        name: String,
    },
    /// A programming error: a registered name is empty, starts with `-` or contains `=`.
    #[error("flag {} is not a valid flag name", go_quote(.0))]
    BadName(String),
}

/// The kind of a flag, which decides its syntax and its type name in usage text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`: set by its presence, or `-name=value`.
    Bool,
    /// `string`.
    String,
    /// `int` (64-bit signed, base-0 syntax).
    Int,
    /// `uint` (64-bit unsigned, base-0 syntax).
    Uint,
    /// `duration` (Go `time.ParseDuration` syntax).
    Duration,
    /// `float` (64-bit).
    Float,
}

impl Kind {
    /// The type name Go's `UnquoteUsage` shows.
    fn type_name(self) -> &'static str {
        match self {
            Kind::Bool => "",
            Kind::String => "string",
            Kind::Int => "int",
            Kind::Uint => "uint",
            Kind::Duration => "duration",
            Kind::Float => "float",
        }
    }
}

/// A flag's current value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A bool flag's value.
    Bool(bool),
    /// A string flag's value.
    String(String),
    /// An int flag's value.
    Int(i64),
    /// A uint flag's value.
    Uint(u64),
    /// A duration flag's value.
    Duration(GoDuration),
    /// A float flag's value.
    Float(f64),
}

impl Value {
    /// The kind this value belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Bool(_) => Kind::Bool,
            Value::String(_) => Kind::String,
            Value::Int(_) => Kind::Int,
            Value::Uint(_) => Kind::Uint,
            Value::Duration(_) => Kind::Duration,
            Value::Float(_) => Kind::Float,
        }
    }

    /// The value as Go's `Value.String()` prints it (used for `(default …)`).
    pub fn go_string(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::String(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Uint(u) => u.to_string(),
            Value::Duration(d) => d.to_string(),
            Value::Float(f) => format_float(*f),
        }
    }

    /// Parses `text` as a value of `kind`, with Go's rules.
    pub fn parse(kind: Kind, text: &str) -> Result<Value, ValueError> {
        Ok(match kind {
            Kind::Bool => Value::Bool(parse_bool(text)?),
            Kind::String => Value::String(text.to_string()),
            Kind::Int => Value::Int(parse_int(text)?),
            Kind::Uint => Value::Uint(parse_uint(text)?),
            Kind::Duration => {
                Value::Duration(GoDuration::parse(text).map_err(|_| ValueError::Parse)?)
            }
            Kind::Float => Value::Float(parse_float(text)?),
        })
    }

    fn zero(kind: Kind) -> Value {
        match kind {
            Kind::Bool => Value::Bool(false),
            Kind::String => Value::String(String::new()),
            Kind::Int => Value::Int(0),
            Kind::Uint => Value::Uint(0),
            Kind::Duration => Value::Duration(GoDuration::ZERO),
            Kind::Float => Value::Float(0.0),
        }
    }
}

/// Rust types a flag can hold; implemented for `bool`, `String`, `i64`, `u64`, [`GoDuration`], `f64`.
pub trait FlagType: Sized + Clone {
    /// Extracts the typed value; `None` if `v` is of another kind.
    fn from_value(v: &Value) -> Option<Self>;
}

impl FlagType for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl FlagType for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FlagType for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FlagType for u64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Uint(u) => Some(*u),
            _ => None,
        }
    }
}

impl FlagType for GoDuration {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Duration(d) => Some(*d),
            _ => None,
        }
    }
}

impl FlagType for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// A typed handle to a registered flag; read it with [`FlagSet::get`].
#[derive(Debug, Clone)]
pub struct Flag<T> {
    name: String,
    default: T,
    _kind: PhantomData<T>,
}

impl<T> Flag<T> {
    /// The flag's name (without the dash).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One registered flag.
#[derive(Debug, Clone)]
struct Entry {
    usage: String,
    default: Value,
    value: Value,
    set: bool,
    hidden: bool,
}

/// A named set of flags, parsed by Go's rules.
#[derive(Debug, Clone)]
pub struct FlagSet {
    name: String,
    flags: BTreeMap<String, Entry>,
    args: Vec<String>,
    definition_error: Option<FlagError>,
}

impl FlagSet {
    /// An empty set; `name` is only used in error messages.
    pub fn new(name: &str) -> FlagSet {
        FlagSet {
            name: name.to_string(),
            flags: BTreeMap::new(),
            args: Vec::new(),
            definition_error: None,
        }
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers a flag of any kind with a default value. A duplicate or malformed name is
    /// remembered and reported by [`FlagSet::parse`].
    pub fn define(&mut self, name: &str, default: Value, usage: &str) {
        if self.definition_error.is_none() {
            if name.is_empty() || name.starts_with('-') || name.contains('=') {
                self.definition_error = Some(FlagError::BadName(name.to_string()));
            } else if self.flags.contains_key(name) {
                self.definition_error = Some(FlagError::Redefined {
                    set: self.name.clone(),
                    name: name.to_string(),
                });
            }
        }
        self.flags.insert(
            name.to_string(),
            Entry {
                usage: usage.to_string(),
                value: default.clone(),
                default,
                set: false,
                hidden: false,
            },
        );
    }

    fn typed<T: FlagType>(&mut self, name: &str, default: T, value: Value, usage: &str) -> Flag<T> {
        self.define(name, value, usage);
        Flag {
            name: name.to_string(),
            default,
            _kind: PhantomData,
        }
    }

    /// Registers a bool flag.
    pub fn bool(&mut self, name: &str, default: bool, usage: &str) -> Flag<bool> {
        self.typed(name, default, Value::Bool(default), usage)
    }

    /// Registers a string flag.
    pub fn string(&mut self, name: &str, default: &str, usage: &str) -> Flag<String> {
        self.typed(
            name,
            default.to_string(),
            Value::String(default.to_string()),
            usage,
        )
    }

    /// Registers a signed integer flag (Go `Int`/`Int64`).
    pub fn int(&mut self, name: &str, default: i64, usage: &str) -> Flag<i64> {
        self.typed(name, default, Value::Int(default), usage)
    }

    /// Registers an unsigned integer flag (Go `Uint`/`Uint64`).
    pub fn uint(&mut self, name: &str, default: u64, usage: &str) -> Flag<u64> {
        self.typed(name, default, Value::Uint(default), usage)
    }

    /// Registers a duration flag.
    pub fn duration(&mut self, name: &str, default: GoDuration, usage: &str) -> Flag<GoDuration> {
        self.typed(name, default, Value::Duration(default), usage)
    }

    /// Registers a float flag (Go `Float64`).
    pub fn float(&mut self, name: &str, default: f64, usage: &str) -> Flag<f64> {
        self.typed(name, default, Value::Float(default), usage)
    }

    /// Leaves a registered flag out of [`FlagSet::print_defaults`] (it still parses).
    pub fn hide(&mut self, name: &str) {
        if let Some(e) = self.flags.get_mut(name) {
            e.hidden = true;
        }
    }

    /// The flag's current value (its default until parsed).
    pub fn get<T: FlagType>(&self, flag: &Flag<T>) -> T {
        self.flags
            .get(&flag.name)
            .and_then(|e| T::from_value(&e.value))
            .unwrap_or_else(|| flag.default.clone())
    }

    /// The current value of the flag called `name`, if registered.
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        self.flags.get(name).map(|e| &e.value)
    }

    /// Whether the flag was given on the command line (Go's `Visit`).
    pub fn is_set(&self, name: &str) -> bool {
        self.flags.get(name).is_some_and(|e| e.set)
    }

    /// Names of the flags given on the command line, sorted (Go's `Visit` order).
    pub fn set_flags(&self) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(_, e)| e.set)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Sets a flag from text, as if given on the command line (Go's `FlagSet.Set`).
    pub fn set(&mut self, name: &str, text: &str) -> Result<(), FlagError> {
        let entry = self
            .flags
            .get_mut(name)
            .ok_or_else(|| FlagError::Undefined(name.to_string()))?;
        let kind = entry.default.kind();
        entry.value = Value::parse(kind, text).map_err(|reason| {
            if kind == Kind::Bool {
                FlagError::InvalidBool {
                    name: name.to_string(),
                    value: text.to_string(),
                    reason,
                }
            } else {
                FlagError::InvalidValue {
                    name: name.to_string(),
                    value: text.to_string(),
                    reason,
                }
            }
        })?;
        entry.set = true;
        Ok(())
    }

    /// The arguments left after the flags (Go's `Args`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Parses `args` (without the program or mode name). On error the values parsed so far stay set.
    pub fn parse<S: AsRef<str>>(&mut self, args: &[S]) -> Result<(), FlagError> {
        if let Some(e) = &self.definition_error {
            return Err(e.clone());
        }
        self.args.clear();
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            let s = arg.as_ref();
            if s.len() < 2 || !s.starts_with('-') {
                break;
            }
            i += 1;
            let name_part = if let Some(rest) = s.strip_prefix("--") {
                if rest.is_empty() {
                    // "--" ends the flags and is consumed.
                    break;
                }
                rest
            } else {
                s.strip_prefix('-').unwrap_or(s)
            };
            if name_part.is_empty() || name_part.starts_with('-') || name_part.starts_with('=') {
                return Err(FlagError::BadSyntax(s.to_string()));
            }
            let (name, inline) = match name_part.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (name_part, None),
            };
            let kind = match self.flags.get(name) {
                Some(e) => e.default.kind(),
                None if name == "help" || name == "h" => return Err(FlagError::Help),
                None => return Err(FlagError::Undefined(name.to_string())),
            };
            let value = match (kind, inline) {
                (Kind::Bool, Some(v)) => v,
                (Kind::Bool, None) => "true",
                (_, Some(v)) => v,
                (_, None) => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        next.as_ref()
                    }
                    None => return Err(FlagError::MissingValue(name.to_string())),
                },
            };
            self.set(name, value)?;
        }
        self.args = args
            .get(i..)
            .unwrap_or_default()
            .iter()
            .map(|a| a.as_ref().to_string())
            .collect();
        Ok(())
    }

    /// Go's default usage message: `Usage of <set name>:` (or `Usage:` for an unnamed set) and then
    /// [`FlagSet::print_defaults`]. Name the set after `argv[0]` to match Go's command-line set.
    pub fn default_usage(&self) -> String {
        if self.name.is_empty() {
            format!("Usage:\n{}", self.print_defaults())
        } else {
            format!("Usage of {}:\n{}", self.name, self.print_defaults())
        }
    }

    /// Usage text for every visible flag, sorted by name, exactly as Go's `PrintDefaults`:
    /// `  -name type\n    \tusage (default …)\n`.
    pub fn print_defaults(&self) -> String {
        let mut out = String::new();
        for (name, e) in &self.flags {
            if e.hidden {
                continue;
            }
            let kind = e.default.kind();
            let (type_name, usage) = unquote_usage(kind, &e.usage);
            let mut line = format!("  -{name}");
            if !type_name.is_empty() {
                line.push(' ');
                line.push_str(&type_name);
            }
            if line.len() <= 4 {
                line.push('\t');
            } else {
                line.push_str("\n    \t");
            }
            line.push_str(&usage.replace('\n', "\n    \t"));
            let default = e.default.go_string();
            if default != Value::zero(kind).go_string() {
                if kind == Kind::String {
                    line.push_str(&format!(" (default {})", go_quote(&default)));
                } else {
                    line.push_str(&format!(" (default {default})"));
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// Go's `UnquoteUsage`: a back-quoted word in the usage names the value; otherwise the type does.
fn unquote_usage(kind: Kind, usage: &str) -> (String, String) {
    if let Some((before, after)) = usage.split_once('`') {
        if let Some((name, rest)) = after.split_once('`') {
            return (name.to_string(), format!("{before}{name}{rest}"));
        }
    }
    (kind.type_name().to_string(), usage.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        set: FlagSet,
        name: Flag<String>,
        json: Flag<bool>,
        version: Flag<u64>,
        count: Flag<i64>,
        duration: Flag<GoDuration>,
        ratio: Flag<f64>,
    }

    fn fixture() -> Fixture {
        let mut set = FlagSet::new("test");
        let name = set.string("name", "", "Required: a name");
        let json = set.bool("json", false, "Optional: json");
        let version = set.uint("version", 2, "Optional: version");
        let count = set.int("count", -1, "a count");
        let duration = set.duration("duration", GoDuration::from_hours(8760), "how long");
        let ratio = set.float("ratio", 0.5, "a ratio");
        Fixture {
            set,
            name,
            json,
            version,
            count,
            duration,
            ratio,
        }
    }

    #[test]
    fn defaults_before_parse() {
        let f = fixture();
        assert_eq!(f.set.get(&f.name), "");
        assert!(!f.set.get(&f.json));
        assert_eq!(f.set.get(&f.version), 2);
        assert_eq!(f.set.get(&f.count), -1);
        assert_eq!(f.set.get(&f.duration), GoDuration::from_hours(8760));
        assert_eq!(f.set.get(&f.ratio), 0.5);
        assert!(!f.set.is_set("name"));
    }

    #[test]
    fn all_value_syntaxes() {
        for args in [
            ["-name", "x"].as_slice(),
            &["--name", "x"],
            &["-name=x"],
            &["--name=x"],
        ] {
            let mut f = fixture();
            f.set.parse(args).unwrap();
            assert_eq!(f.set.get(&f.name), "x", "{args:?}");
            assert!(f.set.is_set("name"));
            assert!(f.set.args().is_empty());
        }
    }

    #[test]
    fn value_may_look_like_a_flag() {
        let mut f = fixture();
        f.set.parse(&["-name", "-json"]).unwrap();
        assert_eq!(f.set.get(&f.name), "-json");
        assert!(!f.set.get(&f.json));
    }

    #[test]
    fn empty_and_equals_values() {
        let mut f = fixture();
        f.set.parse(&["-name=", "-count=-5"]).unwrap();
        assert_eq!(f.set.get(&f.name), "");
        assert!(f.set.is_set("name"));
        assert_eq!(f.set.get(&f.count), -5);
        let mut f = fixture();
        f.set.parse(&["-name=a=b"]).unwrap();
        assert_eq!(f.set.get(&f.name), "a=b");
    }

    #[test]
    fn bool_flags_never_take_a_separate_value() {
        let mut f = fixture();
        f.set.parse(&["-json", "false", "-name", "x"]).unwrap();
        assert!(f.set.get(&f.json));
        assert_eq!(f.set.args(), ["false", "-name", "x"]);
        assert_eq!(f.set.get(&f.name), "");
    }

    #[test]
    fn bool_equals_forms() {
        for (arg, want) in [
            ("-json=true", true),
            ("-json=false", false),
            ("--json=1", true),
            ("-json=F", false),
            ("-json=TRUE", true),
        ] {
            let mut f = fixture();
            f.set.parse(&[arg]).unwrap();
            assert_eq!(f.set.get(&f.json), want, "{arg}");
        }
    }

    #[test]
    fn invalid_bool() {
        let mut f = fixture();
        let e = f.set.parse(&["-json=yes"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid boolean value \"yes\" for -json: parse error"
        );
        let e = f.set.parse(&["-json="]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid boolean value \"\" for -json: parse error"
        );
    }

    #[test]
    fn stops_at_first_non_flag() {
        let mut f = fixture();
        f.set.parse(&["-json", "mode", "-name", "x"]).unwrap();
        assert_eq!(f.set.args(), ["mode", "-name", "x"]);
        assert_eq!(f.set.get(&f.name), "");
    }

    #[test]
    fn double_dash_terminates_and_is_consumed() {
        let mut f = fixture();
        f.set.parse(&["-json", "--", "-name", "x"]).unwrap();
        assert!(f.set.get(&f.json));
        assert_eq!(f.set.args(), ["-name", "x"]);
    }

    #[test]
    fn lone_dash_is_an_argument() {
        let mut f = fixture();
        f.set.parse(&["-", "-json"]).unwrap();
        assert_eq!(f.set.args(), ["-", "-json"]);
        assert!(!f.set.get(&f.json));
    }

    #[test]
    fn dash_value_is_a_value() {
        let mut f = fixture();
        f.set.parse(&["-name", "-"]).unwrap();
        assert_eq!(f.set.get(&f.name), "-");
    }

    #[test]
    fn unknown_flag() {
        let mut f = fixture();
        let e = f.set.parse(&["-x"]).unwrap_err();
        assert_eq!(e, FlagError::Undefined("x".into()));
        assert_eq!(e.to_string(), "flag provided but not defined: -x");
        let e = f.set.parse(&["--nope=3"]).unwrap_err();
        assert_eq!(e.to_string(), "flag provided but not defined: -nope");
    }

    #[test]
    fn help_flags() {
        for arg in ["-h", "-help", "--help", "--h", "-help=false"] {
            let mut f = fixture();
            assert_eq!(f.set.parse(&[arg]), Err(FlagError::Help), "{arg}");
        }
        assert_eq!(FlagError::Help.to_string(), "flag: help requested");
    }

    #[test]
    fn defined_help_is_an_ordinary_flag() {
        let mut set = FlagSet::new("main");
        let h = set.bool("h", false, "help");
        set.parse(&["-h"]).unwrap();
        assert!(set.get(&h));
    }

    #[test]
    fn bad_syntax() {
        for arg in ["---x", "-=x", "--=x", "---"] {
            let mut f = fixture();
            let e = f.set.parse(&[arg]).unwrap_err();
            assert_eq!(e, FlagError::BadSyntax(arg.into()), "{arg}");
            assert_eq!(e.to_string(), format!("bad flag syntax: {arg}"));
        }
    }

    #[test]
    fn missing_value() {
        let mut f = fixture();
        let e = f.set.parse(&["-name"]).unwrap_err();
        assert_eq!(e.to_string(), "flag needs an argument: -name");
    }

    #[test]
    fn invalid_values() {
        let cases = [
            (
                ["-version", "x"],
                "invalid value \"x\" for flag -version: parse error",
            ),
            (
                ["-version", "-1"],
                "invalid value \"-1\" for flag -version: parse error",
            ),
            (
                ["-version", "18446744073709551616"],
                "invalid value \"18446744073709551616\" for flag -version: value out of range",
            ),
            (
                ["-count", "1.5"],
                "invalid value \"1.5\" for flag -count: parse error",
            ),
            (
                ["-duration", "1d"],
                "invalid value \"1d\" for flag -duration: parse error",
            ),
            (
                ["-duration", "10"],
                "invalid value \"10\" for flag -duration: parse error",
            ),
            (
                ["-ratio", "1e999"],
                "invalid value \"1e999\" for flag -ratio: value out of range",
            ),
        ];
        for (args, msg) in cases {
            let mut f = fixture();
            assert_eq!(f.set.parse(&args).unwrap_err().to_string(), msg);
        }
    }

    #[test]
    fn typed_values() {
        let mut f = fixture();
        f.set
            .parse(&[
                "-version=0x10",
                "-count",
                "-0b11",
                "-duration",
                "1h30m",
                "-ratio",
                "2.5e1",
            ])
            .unwrap();
        assert_eq!(f.set.get(&f.version), 16);
        assert_eq!(f.set.get(&f.count), -3);
        assert_eq!(f.set.get(&f.duration), GoDuration::from_secs(5400));
        assert_eq!(f.set.get(&f.ratio), 25.0);
        assert_eq!(f.set.set_flags(), ["count", "duration", "ratio", "version"]);
        let mut f = fixture();
        f.set.parse(&["-duration", "-1.5h"]).unwrap();
        assert_eq!(f.set.get(&f.duration).nanos(), -5_400_000_000_000);
        assert_eq!(f.set.get(&f.duration).to_std(), None);
    }

    #[test]
    fn last_occurrence_wins() {
        let mut f = fixture();
        f.set.parse(&["-name", "a", "-name", "b"]).unwrap();
        assert_eq!(f.set.get(&f.name), "b");
    }

    #[test]
    fn redefinition_is_reported_by_parse() {
        let mut set = FlagSet::new("ca");
        set.string("name", "", "");
        set.bool("name", false, "");
        let e = set.parse::<&str>(&[]).unwrap_err();
        assert_eq!(e.to_string(), "ca flag redefined: name");
        let mut set = FlagSet::new("ca");
        set.string("-bad", "", "");
        assert_eq!(
            set.parse::<&str>(&[]),
            Err(FlagError::BadName("-bad".into()))
        );
    }

    #[test]
    fn set_and_lookup() {
        let mut f = fixture();
        f.set.set("count", "7").unwrap();
        assert_eq!(f.set.lookup("count"), Some(&Value::Int(7)));
        assert!(f.set.is_set("count"));
        assert_eq!(f.set.lookup("missing"), None);
        assert_eq!(
            f.set.set("missing", "1"),
            Err(FlagError::Undefined("missing".into()))
        );
    }

    #[test]
    fn print_defaults_like_go() {
        let mut set = FlagSet::new("ca");
        set.uint("argon-memory", 2 * 1024 * 1024, "Optional: Argon2 memory");
        set.string("curve", "25519", "EdDSA/ECDSA Curve (25519, P256)");
        set.duration(
            "duration",
            GoDuration::from_hours(8760),
            "Optional: valid for \"s\", \"m\"",
        );
        set.bool("encrypt", false, "Optional: prompt");
        set.string("name", "", "Required: name");
        set.duration("zero", GoDuration::ZERO, "Optional: zero");
        set.bool("v", false, "verbose");
        set.bool("on", true, "on by default");
        set.int("neg", -3, "negative");
        set.float("f", 1e6, "a float");
        set.string("path", "", "a `file` to read\nsecond line");
        set.string("pkcs11", "", "hidden");
        set.hide("pkcs11");
        let want = concat!(
            "  -argon-memory uint\n    \tOptional: Argon2 memory (default 2097152)\n",
            "  -curve string\n    \tEdDSA/ECDSA Curve (25519, P256) (default \"25519\")\n",
            "  -duration duration\n    \tOptional: valid for \"s\", \"m\" (default 8760h0m0s)\n",
            "  -encrypt\n    \tOptional: prompt\n",
            "  -f float\n    \ta float (default 1e+06)\n",
            "  -name string\n    \tRequired: name\n",
            "  -neg int\n    \tnegative (default -3)\n",
            "  -on\n    \ton by default (default true)\n",
            "  -path file\n    \ta file to read\n    \tsecond line\n",
            "  -v\tverbose\n",
            "  -zero duration\n    \tOptional: zero\n",
        );
        assert_eq!(set.print_defaults(), want);
    }

    #[test]
    fn default_usage_like_go() {
        let mut set = FlagSet::new("/usr/bin/nebula");
        set.string(
            "config",
            "",
            "Path to either a file or directory to load configuration from",
        );
        set.bool("test", false, "Test the config");
        assert_eq!(
            set.default_usage(),
            concat!(
                "Usage of /usr/bin/nebula:\n",
                "  -config string\n    \tPath to either a file or directory to load configuration from\n",
                "  -test\n    \tTest the config\n",
            )
        );
        assert_eq!(FlagSet::new("").default_usage(), "Usage:\n");
    }

    #[test]
    fn quoted_default_escapes() {
        let mut set = FlagSet::new("x");
        set.string("s", "a\"b\tc", "usage");
        assert_eq!(
            set.print_defaults(),
            "  -s string\n    \tusage (default \"a\\\"b\\tc\")\n"
        );
    }
}
