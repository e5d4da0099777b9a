//! Go's `strconv` number and boolean syntax as the `flag` package uses it: `ParseBool`,
//! `ParseInt`/`ParseUint` with base 0 (0x, 0o, 0b, leading-0 octal, `_` separators), `ParseFloat`,
//! and `FormatFloat(v, 'g', -1, 64)` for printing defaults.

use thiserror::Error;

/// Why a value was refused; the messages are the `flag` package's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ValueError {
    /// The text is not a number (or boolean) of the flag's kind.
    #[error("parse error")]
    Parse,
    /// The number does not fit the flag's type.
    #[error("value out of range")]
    Range,
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ValueError::Parse),
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
pub fn parse_uint(s: &str) -> Result<u64, ValueError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(ValueError::Parse);
    }
    let (base, digits): (u64, &[u8]) = match bytes {
        [b'0', p, rest @ ..] if !rest.is_empty() && p.eq_ignore_ascii_case(&b'b') => (2, rest),
        [b'0', p, rest @ ..] if !rest.is_empty() && p.eq_ignore_ascii_case(&b'o') => (8, rest),
        [b'0', p, rest @ ..] if !rest.is_empty() && p.eq_ignore_ascii_case(&b'x') => (16, rest),
        [b'0', rest @ ..] => (8, rest),
        _ => (10, bytes),
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            c if c.is_ascii_alphabetic() => c.to_ascii_lowercase() - b'a' + 10,
            _ => return Err(ValueError::Parse),
        };
        if u64::from(d) >= base {
            return Err(ValueError::Parse);
        }
        n = n
            .checked_mul(base)
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(ValueError::Range)?;
    }
    if underscores && !underscore_ok(s) {
        return Err(ValueError::Parse);
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub fn parse_int(s: &str) -> Result<i64, ValueError> {
    let (neg, body) = match s.as_bytes().first() {
        None => return Err(ValueError::Parse),
        Some(b'+') => (false, s.get(1..).unwrap_or_default()),
        Some(b'-') => (true, s.get(1..).unwrap_or_default()),
        Some(_) => (false, s),
    };
    let un = parse_uint(body)?;
    if neg {
        if un > 1 << 63 {
            return Err(ValueError::Range);
        }
        Ok((un as i64).wrapping_neg())
    } else {
        i64::try_from(un).map_err(|_| ValueError::Range)
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: decimal and hexadecimal (`0x1.8p3`) literals, `_`
/// separators between digits, `inf`/`infinity`/`nan`; overflow to infinity is a range error.
pub fn parse_float(s: &str) -> Result<f64, ValueError> {
    let (neg, body) = match s.as_bytes().first() {
        None => return Err(ValueError::Parse),
        Some(b'+') => (false, s.get(1..).unwrap_or_default()),
        Some(b'-') => (true, s.get(1..).unwrap_or_default()),
        Some(_) => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let special = match lower.as_str() {
        "inf" | "infinity" => Some(f64::INFINITY),
        // Go accepts no sign on NaN.
        "nan" if body.len() == s.len() => Some(f64::NAN),
        _ => None,
    };
    let magnitude = match special {
        Some(v) => v,
        None => {
            if body.contains('_') && !underscore_ok(body) {
                return Err(ValueError::Parse);
            }
            let cleaned: String = body.chars().filter(|&c| c != '_').collect();
            let v = if let Some(hex) = cleaned
                .strip_prefix("0x")
                .or_else(|| cleaned.strip_prefix("0X"))
            {
                parse_hex_float(hex)?
            } else {
                if !cleaned
                    .bytes()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    return Err(ValueError::Parse);
                }
                cleaned.parse::<f64>().map_err(|_| ValueError::Parse)?
            };
            if v.is_infinite() {
                return Err(ValueError::Range);
            }
            v
        }
    };
    Ok(if neg { -magnitude } else { magnitude })
}

/// Hexadecimal mantissa (after "0x") with a mandatory binary exponent: `1.8p3`.
fn parse_hex_float(s: &str) -> Result<f64, ValueError> {
    let (mant, exp) = s.split_once(['p', 'P']).ok_or(ValueError::Parse)?;
    let mut exp: i64 = match exp.as_bytes().first() {
        Some(b'+') => exp
            .get(1..)
            .unwrap_or_default()
            .parse()
            .map_err(|_| ValueError::Parse)?,
        Some(b'-') | Some(b'0'..=b'9') => exp.parse().map_err(|_| ValueError::Parse)?,
        _ => return Err(ValueError::Parse),
    };
    let mut m: u128 = 0;
    let mut sticky = false;
    let mut seen_dot = false;
    let mut digits = 0usize;
    for c in mant.chars() {
        if c == '.' {
            if seen_dot {
                return Err(ValueError::Parse);
            }
            seen_dot = true;
            continue;
        }
        let d = c.to_digit(16).ok_or(ValueError::Parse)?;
        digits += 1;
        if m >> 120 == 0 {
            m = (m << 4) | u128::from(d);
            if seen_dot {
                exp = exp.saturating_sub(4);
            }
        } else {
            sticky |= d != 0;
            if !seen_dot {
                exp = exp.saturating_add(4);
            }
        }
    }
    if digits == 0 {
        return Err(ValueError::Parse);
    }
    // One rounding in the u128 -> f64 conversion (the sticky bit keeps ties honest), then exact scaling.
    let m = if sticky { m | 1 } else { m };
    let v = m as f64;
    let exp = i32::try_from(exp.clamp(-10_000, 10_000)).unwrap_or(0);
    Ok(scale_pow2(v, exp))
}

/// `v * 2^exp` without intermediate overflow or underflow of the power.
fn scale_pow2(mut v: f64, mut exp: i32) -> f64 {
    while exp > 1000 {
        v *= 2f64.powi(1000);
        exp -= 1000;
    }
    while exp < -1000 {
        v *= 2f64.powi(-1000);
        exp += 1000;
    }
    v * 2f64.powi(exp)
}

/// Go's `underscoreOK`: `_` only between digits, or between a base prefix and a digit.
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some((b'-' | b'+', rest)) = b.split_first() {
        b = rest;
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if let [b'0', p, ..] = b {
        let p = p.to_ascii_lowercase();
        if matches!(p, b'b' | b'o' | b'x') {
            i = 2;
            saw = b'0';
            hex = p == b'x';
        }
    }
    for &c in b.get(i..).unwrap_or_default() {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, e.g. "0.5", "1e+06", "1.5e-07", "+Inf".
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.5e-7", "1e6", "0e0".
    let sci = format!("{:e}", v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let dp = (exp + 1) as usize;
        if digits.len() <= dp {
            out.push_str(&digits);
            for _ in digits.len()..dp {
                out.push('0');
            }
        } else {
            let (int, frac) = digits.split_at(dp);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        for bad in ["", "yes", "tRUE", "2", " true"] {
            assert_eq!(parse_bool(bad), Err(ValueError::Parse));
        }
    }

    #[test]
    fn uints_base_zero() {
        assert_eq!(parse_uint("0"), Ok(0));
        assert_eq!(parse_uint("42"), Ok(42));
        assert_eq!(parse_uint("0x1F"), Ok(31));
        assert_eq!(parse_uint("0X1f"), Ok(31));
        assert_eq!(parse_uint("0o17"), Ok(15));
        assert_eq!(parse_uint("017"), Ok(15));
        assert_eq!(parse_uint("0b101"), Ok(5));
        assert_eq!(parse_uint("1_000"), Ok(1000));
        assert_eq!(parse_uint("0x_1f"), Ok(31));
        assert_eq!(parse_uint("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_uint("18446744073709551616"), Err(ValueError::Range));
        for bad in [
            "", "-1", "+1", "08", "0x", "1__0", "_1", "1_", "12a", " 1", "1.0",
        ] {
            assert_eq!(parse_uint(bad), Err(ValueError::Parse), "{bad:?}");
        }
    }

    #[test]
    fn ints_base_zero() {
        assert_eq!(parse_int("-42"), Ok(-42));
        assert_eq!(parse_int("+42"), Ok(42));
        assert_eq!(parse_int("-0x10"), Ok(-16));
        assert_eq!(parse_int("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_int("9223372036854775808"), Err(ValueError::Range));
        assert_eq!(parse_int("-9223372036854775809"), Err(ValueError::Range));
        for bad in ["", "-", "+", "--1", "1e3", "x"] {
            assert_eq!(parse_int(bad), Err(ValueError::Parse), "{bad:?}");
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float("1.5"), Ok(1.5));
        assert_eq!(parse_float("-.5"), Ok(-0.5));
        assert_eq!(parse_float("5."), Ok(5.0));
        assert_eq!(parse_float("1e3"), Ok(1000.0));
        assert_eq!(parse_float("1_000.5"), Ok(1000.5));
        assert_eq!(parse_float("0x1.8p1"), Ok(3.0));
        assert_eq!(parse_float("0x10p-4"), Ok(1.0));
        assert_eq!(parse_float("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_float("-infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_float("NaN").is_ok_and(f64::is_nan));
        assert_eq!(parse_float("1e400"), Err(ValueError::Range));
        for bad in [
            "", "abc", "1e", "0x1.8", "+nan", "1__0", "0b101", "1.5.5", " 1",
        ] {
            assert_eq!(parse_float(bad), Err(ValueError::Parse), "{bad:?}");
        }
    }

    #[test]
    fn formats_floats_like_go() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e21, "1e+21"),
            (3.25, "3.25"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1e100, "1e+100"),
        ];
        for (v, want) in cases {
            assert_eq!(format_float(*v), *want);
        }
    }
}
