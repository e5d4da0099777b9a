//! What the certificate test binaries share: comparing our JSON output with Go's, naming the
//! first field that differs.

use serde_json::Value;

/// Compares JSON values field by field; on mismatch names the path.
pub fn assert_json_eq(ours: &Value, go: &Value, ctx: &str) {
    fn walk(a: &Value, b: &Value, path: &str, ctx: &str) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => walk(p, q, &format!("{path}.{k}"), ctx),
                        (p, q) => panic!("{ctx}: field {path}.{k}: ours {p:?}, Go {q:?}"),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(p, q, &format!("{path}[{i}]"), ctx);
                }
            }
            _ => assert_eq!(a, b, "{ctx}: field {path} differs (left ours, right Go)"),
        }
    }
    walk(ours, go, "", ctx);
}
