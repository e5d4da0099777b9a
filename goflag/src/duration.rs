//! Go `time.Duration` text: parsing like `time.ParseDuration` and printing like `Duration.String`.
//! Durations are signed nanoseconds (`GoDuration`), convertible to `std::time::Duration` when not negative.

use std::fmt;

use thiserror::Error;

use crate::quote::time_quote;

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// 1<<63: one past `i64::MAX`, the magnitude of `i64::MIN`.
const LIMIT: u64 = 1 << 63;

/// Why a duration string was refused; the messages are Go's `time.ParseDuration` messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or it overflows an `i64` of nanoseconds.
    #[error("time: invalid duration {}", time_quote(.0))]
    Invalid(String),
    /// A number with no unit after it, e.g. `"10"`.
    #[error("time: missing unit in duration {}", time_quote(.0))]
    MissingUnit(String),
    /// A unit that is not one of ns, us, µs, μs, ms, s, m, h.
    #[error("time: unknown unit {} in duration {}", time_quote(.unit), time_quote(.input))]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// The duration is valid but negative, so it has no `std::time::Duration` form.
    #[error("negative duration {} cannot be used here", time_quote(.0))]
    Negative(String),
}

/// A Go `time.Duration`: signed nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub i64);

impl GoDuration {
    /// Zero length.
    pub const ZERO: GoDuration = GoDuration(0);

    /// From a number of nanoseconds.
    pub const fn from_nanos(nanos: i64) -> GoDuration {
        GoDuration(nanos)
    }

    /// From whole seconds, saturating at the `i64` range.
    pub const fn from_secs(secs: i64) -> GoDuration {
        GoDuration(secs.saturating_mul(SECOND as i64))
    }

    /// From whole hours, saturating at the `i64` range.
    pub const fn from_hours(hours: i64) -> GoDuration {
        GoDuration(hours.saturating_mul(HOUR as i64))
    }

    /// Signed nanoseconds.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds, truncated toward zero (like Go's `d / time.Second`).
    pub const fn whole_secs(self) -> i64 {
        self.0 / SECOND as i64
    }

    /// `std::time::Duration`, or `None` when negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.0)
            .ok()
            .map(std::time::Duration::from_nanos)
    }

    /// From a `std::time::Duration`, saturating at `i64::MAX` nanoseconds.
    pub fn from_std(d: std::time::Duration) -> GoDuration {
        GoDuration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Parses Go duration text ("8760h", "1h30m", "300ms", "-1.5h", "0").
    pub fn parse(s: &str) -> Result<GoDuration, DurationError> {
        parse_duration(s).map(GoDuration)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GoDuration::parse(s)
    }
}

/// Parses like Go's `time.ParseDuration`, returning signed nanoseconds.
pub fn parse_duration(input: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let mut s = input.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            s = rest;
        }
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while let Some(&first) = s.first() {
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let pre = before != s.len();
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some((&b'.', rest)) = s.split_first() {
            let before = rest.len();
            let (f, sc, rest) = leading_fraction(rest);
            frac = f;
            scale = sc;
            post = before != rest.len();
            s = rest;
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let (unit_bytes, rest) = s.split_at(unit_len);
        s = rest;
        let unit = match unit_bytes {
            b"ns" => NANOSECOND,
            b"us" => MICROSECOND,
            // U+00B5 micro sign and U+03BC Greek small letter mu.
            b"\xc2\xb5s" | b"\xce\xbcs" => MICROSECOND,
            b"ms" => MILLISECOND,
            b"s" => SECOND,
            b"m" => MINUTE,
            b"h" => HOUR,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: String::from_utf8_lossy(unit_bytes).into_owned(),
                    input: input.to_string(),
                })
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if frac > 0 {
            // Go computes the fraction in float64; the truncating cast matches its uint64 conversion.
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        // total <= 1<<63 here, so the negation fits (1<<63 becomes i64::MIN).
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Parses Go duration text into a `std::time::Duration`; negative durations are an error.
pub fn parse_std_duration(input: &str) -> Result<std::time::Duration, DurationError> {
    let n = parse_duration(input)?;
    u64::try_from(n)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| DurationError::Negative(input.to_string()))
}

/// Consumes leading decimal digits; `None` on overflow past 1<<63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, s.get(i..).unwrap_or_default()))
}

/// Consumes the digits after a decimal point; digits past u64 precision are dropped, not an error.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale = 1.0;
    let mut overflow = false;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        i += 1;
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, s.get(i..).unwrap_or_default())
}

/// Formats like Go's `Duration.String`: "8760h0m0s", "1.5s", "300ms", "0s".
pub fn format_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    // Built backwards, then reversed.
    let mut out: Vec<u8> = Vec::with_capacity(32);
    if u < SECOND {
        if u == 0 {
            return "0s".to_string();
        }
        out.push(b's');
        let prec = if u < MICROSECOND {
            out.push(b'n');
            0
        } else if u < MILLISECOND {
            // "µ" (U+00B5) reversed byte order, as the buffer is reversed at the end.
            out.push(0xb5);
            out.push(0xc2);
            3
        } else {
            out.push(b'm');
            6
        };
        u = push_frac(&mut out, u, prec);
        push_int(&mut out, u);
    } else {
        out.push(b's');
        u = push_frac(&mut out, u, 9);
        push_int(&mut out, u % 60);
        u /= 60;
        if u > 0 {
            out.push(b'm');
            push_int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push(b'h');
                push_int(&mut out, u);
            }
        }
    }
    if neg {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Pushes (reversed) the `prec` low decimal digits of `v` as a fraction without trailing zeros,
/// with a '.' only when the fraction is not zero; returns `v / 10^prec`.
fn push_frac(out: &mut Vec<u8>, mut v: u64, prec: u32) -> u64 {
    let mut printed = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        printed = printed || digit != 0;
        if printed {
            out.push(digit + b'0');
        }
        v /= 10;
    }
    if printed {
        out.push(b'.');
    }
    v
}

/// Pushes (reversed) the decimal digits of `v`.
fn push_int(out: &mut Vec<u8>, mut v: u64) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    while v > 0 {
        out.push((v % 10) as u8 + b'0');
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_examples() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * SECOND as i64),
            ("30s", 30 * SECOND as i64),
            ("1478s", 1478 * SECOND as i64),
            ("-5s", -5 * SECOND as i64),
            ("+5s", 5 * SECOND as i64),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * SECOND as i64),
            ("5.6s", 5 * SECOND as i64 + 600 * MILLISECOND as i64),
            ("5.s", 5 * SECOND as i64),
            (".5s", 500 * MILLISECOND as i64),
            ("1.0s", SECOND as i64),
            ("1.00s", SECOND as i64),
            ("1.004s", SECOND as i64 + 4 * MILLISECOND as i64),
            ("100.00100s", 100 * SECOND as i64 + MILLISECOND as i64),
            ("10ns", 10),
            ("11us", 11 * MICROSECOND as i64),
            ("12µs", 12 * MICROSECOND as i64),
            ("12μs", 12 * MICROSECOND as i64),
            ("13ms", 13 * MILLISECOND as i64),
            ("14s", 14 * SECOND as i64),
            ("15m", 15 * MINUTE as i64),
            ("16h", 16 * HOUR as i64),
            ("3h30m", 3 * HOUR as i64 + 30 * MINUTE as i64),
            ("1h30m", 90 * MINUTE as i64),
            ("300ms", 300 * MILLISECOND as i64),
            ("8760h", 8760 * HOUR as i64),
            ("-1.5h", -(90 * MINUTE as i64)),
            (
                "10.5s4m",
                4 * MINUTE as i64 + 10 * SECOND as i64 + 500 * MILLISECOND as i64,
            ),
            (
                "-2m3.4s",
                -(2 * MINUTE as i64 + 3 * SECOND as i64 + 400 * MILLISECOND as i64),
            ),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * MINUTE as i64),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * MINUTE as i64),
            (
                "0.830103483285477580700h",
                49 * MINUTE as i64 + 48 * SECOND as i64 + 372_539_827,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn refuses_go_failures_with_go_messages() {
        let invalid = [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "\u{fffd}",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "-9223372036854775809ns",
            "3000000h",
        ];
        for s in invalid {
            assert!(parse_duration(s).is_err(), "{s:?} should fail");
        }
        assert_eq!(
            parse_duration("").unwrap_err().to_string(),
            "time: invalid duration \"\""
        );
        assert_eq!(
            parse_duration("3").unwrap_err().to_string(),
            "time: missing unit in duration \"3\""
        );
        assert_eq!(
            parse_duration("1d").unwrap_err().to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(
            parse_duration(".s").unwrap_err().to_string(),
            "time: invalid duration \".s\""
        );
        assert_eq!(
            parse_duration("\u{fffd}").unwrap_err().to_string(),
            "time: invalid duration \"\\xef\\xbf\\xbd\""
        );
        assert_eq!(
            parse_duration("3000000h").unwrap_err().to_string(),
            "time: invalid duration \"3000000h\""
        );
    }

    #[test]
    fn std_conversion() {
        assert_eq!(
            parse_std_duration("1h30m"),
            Ok(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_std_duration("-1s"),
            Err(DurationError::Negative("-1s".into()))
        );
        assert_eq!(GoDuration(-1).to_std(), None);
        assert_eq!(
            GoDuration::from_std(std::time::Duration::from_millis(1500)),
            GoDuration(1_500_000_000)
        );
        assert_eq!(
            "8760h".parse::<GoDuration>(),
            Ok(GoDuration::from_hours(8760))
        );
        assert_eq!(GoDuration::from_secs(90).whole_secs(), 90);
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * MINUTE as i64 + 5 * SECOND as i64, "4m5s"),
            (4 * MINUTE as i64 + 5_001_000_000, "4m5.001s"),
            (
                5 * HOUR as i64 + 6 * MINUTE as i64 + 7_001_000_000,
                "5h6m7.001s",
            ),
            (8 * MINUTE as i64 + 1, "8m0.000000001s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (8760 * HOUR as i64, "8760h0m0s"),
            (-1_500_000, "-1.5ms"),
            (HOUR as i64, "1h0m0s"),
        ];
        for (n, want) in cases {
            assert_eq!(format_duration(*n), *want);
            assert_eq!(GoDuration(*n).to_string(), *want);
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for n in [
            1,
            999,
            1_000_001,
            59_999_999_999,
            3_723_004_005_006,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(parse_duration(&format_duration(n)), Ok(n));
        }
    }
}
