//! Go's `encoding/json` output (sorted keys, HTML-safe escapes, tab indent) over `serde_json` values,
//! and Go's text for UTC `time.Time`: the formatting `nebula-cert print` must reproduce byte for byte.

use serde_json::Value;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split_time(unix: i64) -> (i64, u32, u32, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Unix seconds as Go's `time.Time` JSON in UTC (`2036-11-23T11:09:39Z`). Go refuses years outside
/// 0..=9999; here such years are written with their full digits instead.
pub fn go_time_rfc3339(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = split_time(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Unix seconds as Go's `%v` of a UTC `time.Time` (`2036-11-23 11:09:39 +0000 UTC`).
pub fn go_time_text(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = split_time(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
}

fn go_json_escape(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", ch as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn go_json_write(out: &mut String, v: &Value, indent: bool, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if indent {
            out.push('\n');
            for _ in 0..depth {
                out.push('\t');
            }
        }
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => go_json_escape(out, s),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                go_json_write(out, item, indent, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(o) => {
            if o.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                go_json_escape(out, k);
                out.push(':');
                if indent {
                    out.push(' ');
                }
                if let Some(val) = o.get(*k) {
                    go_json_write(out, val, indent, depth + 1);
                }
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// Serialise like Go's `encoding/json`: keys sorted, `<`, `>`, `&`, U+2028/2029 escaped;
/// `indent = true` is `json.MarshalIndent(v, "", "\t")`, `false` is `json.Marshal`.
pub fn go_json_string(v: &Value, indent: bool) -> String {
    let mut out = String::new();
    go_json_write(&mut out, v, indent, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_time_formats() {
        assert_eq!(go_time_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(go_time_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(go_time_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(go_time_rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(go_time_rfc3339(2_111_051_379), "2036-11-23T11:09:39Z");
        assert_eq!(go_time_text(1_700_000_100), "2023-11-14 22:15:00 +0000 UTC");
    }

    #[test]
    fn go_json_escaping_and_layout() {
        let v = json!({"b": "<a&b>\u{2028}\n\t\u{1}\u{8}\"\\é", "a": [], "c": {}, "d": [1, null]});
        assert_eq!(
            go_json_string(&v, false),
            r#"{"a":[],"b":"\u003ca\u0026b\u003e\u2028\n\t\u0001\b\"\\é","c":{},"d":[1,null]}"#
        );
        assert_eq!(
            go_json_string(&json!({"x": [1, {"y": true}], "e": []}), true),
            "{\n\t\"e\": [],\n\t\"x\": [\n\t\t1,\n\t\t{\n\t\t\t\"y\": true\n\t\t}\n\t]\n}"
        );
    }
}
