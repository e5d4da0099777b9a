//! What `nebula-cert print` shows for a certificate: the 1.11 JSON and text, and the 1.6.1 JSON and
//! `NebulaCertificate { ... }` text. Built only on `Certificate`'s public accessors and `gojson`.

use crate::cert::Certificate;
use crate::gojson::{go_json_string, go_time_rfc3339, go_time_text};
use crate::Version;
use ipnet::IpNet;
use serde_json::{json, Value};
use std::fmt;

impl Certificate {
    /// The JSON object `nebula-cert print -json` 1.11 emits for this certificate (one array element).
    pub fn to_json(&self) -> Value {
        let nets = |v: &[IpNet]| -> Value {
            Value::Array(v.iter().map(|n| Value::String(n.to_string())).collect())
        };
        let groups = Value::Array(self.groups().iter().cloned().map(Value::String).collect());
        match self.version() {
            Version::V1 => json!({
                "details": {
                    "curve": self.curve().name(),
                    "groups": groups,
                    "isCa": self.is_ca(),
                    "issuer": self.issuer_hex(),
                    "name": self.name(),
                    "networks": nets(self.networks()),
                    "notAfter": go_time_rfc3339(self.not_after()),
                    "notBefore": go_time_rfc3339(self.not_before()),
                    "publicKey": hex::encode(self.public_key()),
                    "unsafeNetworks": nets(self.unsafe_networks()),
                },
                "fingerprint": self.fingerprint_hex(),
                "signature": hex::encode(self.signature()),
                "version": 1,
            }),
            Version::V2 => {
                // Go leaves absent v2 lists nil, which encode as null.
                let or_null = |v: Value| match &v {
                    Value::Array(a) if a.is_empty() => Value::Null,
                    _ => v,
                };
                json!({
                    "curve": self.curve().name(),
                    "details": {
                        "groups": or_null(groups),
                        "isCa": self.is_ca(),
                        "issuer": self.issuer_hex(),
                        "name": self.name(),
                        "networks": or_null(nets(self.networks())),
                        "notAfter": go_time_rfc3339(self.not_after()),
                        "notBefore": go_time_rfc3339(self.not_before()),
                        "unsafeNetworks": or_null(nets(self.unsafe_networks())),
                    },
                    "fingerprint": self.fingerprint_hex(),
                    "publicKey": hex::encode(self.public_key()),
                    "signature": hex::encode(self.signature()),
                    "version": 2,
                })
            }
        }
    }

    /// The JSON object `nebula-cert print -json` 1.6.1 emits (one object per line).
    pub fn to_json_v1_6(&self) -> Value {
        let nets = |v: &[IpNet]| -> Value {
            Value::Array(v.iter().map(|n| Value::String(n.to_string())).collect())
        };
        json!({
            "details": {
                "groups": self.groups(),
                "ips": nets(self.networks()),
                "isCa": self.is_ca(),
                "issuer": self.issuer_hex(),
                "name": self.name(),
                "notAfter": go_time_rfc3339(self.not_after()),
                "notBefore": go_time_rfc3339(self.not_before()),
                "publicKey": hex::encode(self.public_key()),
                "subnets": nets(self.unsafe_networks()),
            },
            "fingerprint": self.fingerprint_hex(),
            "signature": hex::encode(self.signature()),
        })
    }

    /// The text `nebula-cert print` 1.6.1 emits (`NebulaCertificate { ... }`), without a final newline.
    pub fn to_string_v1_6(&self) -> String {
        let mut s = String::from("NebulaCertificate {\n\tDetails {\n");
        s.push_str(&format!("\t\tName: {}\n", self.name()));
        let list = |s: &mut String, title: &str, items: Vec<String>| {
            if items.is_empty() {
                s.push_str(&format!("\t\t{title}: []\n"));
            } else {
                s.push_str(&format!("\t\t{title}: [\n"));
                for i in items {
                    s.push_str(&format!("\t\t\t{i}\n"));
                }
                s.push_str("\t\t]\n");
            }
        };
        list(
            &mut s,
            "Ips",
            self.networks().iter().map(|n| n.to_string()).collect(),
        );
        list(
            &mut s,
            "Subnets",
            self.unsafe_networks()
                .iter()
                .map(|n| n.to_string())
                .collect(),
        );
        list(
            &mut s,
            "Groups",
            self.groups().iter().map(|g| format!("\"{g}\"")).collect(),
        );
        s.push_str(&format!(
            "\t\tNot before: {}\n",
            go_time_text(self.not_before())
        ));
        s.push_str(&format!(
            "\t\tNot After: {}\n",
            go_time_text(self.not_after())
        ));
        s.push_str(&format!("\t\tIs CA: {}\n", self.is_ca()));
        s.push_str(&format!("\t\tIssuer: {}\n", self.issuer_hex()));
        s.push_str(&format!(
            "\t\tPublic key: {}\n",
            hex::encode(self.public_key())
        ));
        s.push_str("\t}\n");
        s.push_str(&format!("\tFingerprint: {}\n", self.fingerprint_hex()));
        s.push_str(&format!("\tSignature: {}\n", hex::encode(self.signature())));
        s.push('}');
        s
    }
}

/// 1.11 `print` text output: the JSON object indented with tabs, keys sorted (Go `json.MarshalIndent`).
impl fmt::Display for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&go_json_string(&self.to_json(), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::tests::fixed_pair;

    // ----- Go's own output for `fixed_pair` (nebula-cert 1.11.0 / 1.6.1 `print` run on our PEM) -----

    const GO_V1_HOST_JSON: &str = "[{\"details\":{\"curve\":\"CURVE25519\",\"groups\":[\"laptop\"],\"isCa\":false,\"issuer\":\"3883d3a4452664b83910049b7499df9eefb3468aa041707a3eb996ef9929af56\",\"name\":\"host1\",\"networks\":[\"10.42.1.5/16\"],\"notAfter\":\"2027-01-15T08:00:00Z\",\"notBefore\":\"2023-11-14T22:15:00Z\",\"publicKey\":\"0202020202020202020202020202020202020202020202020202020202020202\",\"unsafeNetworks\":[\"10.42.200.0/24\"]},\"fingerprint\":\"b2c45ccb32d2b7efe6ed8f1bee11ae7a339a19a95b0b4fc37804b5beb72b8c58\",\"signature\":\"a70ff0d06cdc2b5f8111a1e814adb1f237043ec3887c613f6553911cbbe377067973913c2e4033abea34f96d5800a7dc05105341768c1d134901a6775a589f09\",\"version\":1}]";
    const GO_V2_HOST_JSON: &str = "[{\"curve\":\"CURVE25519\",\"details\":{\"groups\":[\"laptop\"],\"isCa\":false,\"issuer\":\"445f36bd2ed6d5c6e3c206a6f481951b1c41d265e0efaf3c3d5f7ca9bb3d38cf\",\"name\":\"host1\",\"networks\":[\"10.42.1.5/16\",\"fd00::5/64\"],\"notAfter\":\"2027-01-15T08:00:00Z\",\"notBefore\":\"2023-11-14T22:15:00Z\",\"unsafeNetworks\":[\"10.42.200.0/24\"]},\"fingerprint\":\"c9887855b2268b1067b0b81c8ac15a10a817e35577efd396e33d1c4c862d7caa\",\"publicKey\":\"0202020202020202020202020202020202020202020202020202020202020202\",\"signature\":\"bf6178933a2b161e205ba7e73e9bc0cfa5c6824a8bcc7b22b597b03c52ef213c68b4319a9e9cf1fdedf518d06c44358319d227738adf6170eed940709df0dd0f\",\"version\":2}]";
    const GO_V2_CA_JSON: &str = "[{\"curve\":\"CURVE25519\",\"details\":{\"groups\":[\"laptop\",\"home\"],\"isCa\":true,\"issuer\":\"\",\"name\":\"Test CA\",\"networks\":[\"10.42.0.0/16\",\"fd00::/64\"],\"notAfter\":\"2030-03-17T17:46:40Z\",\"notBefore\":\"2023-11-14T22:13:20Z\",\"unsafeNetworks\":null},\"fingerprint\":\"445f36bd2ed6d5c6e3c206a6f481951b1c41d265e0efaf3c3d5f7ca9bb3d38cf\",\"publicKey\":\"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\",\"signature\":\"d1c0bd3682458223a0c710919b567caec145ebddf9813cddb181175ac33332059fe46f016d74a023c505f9fad0d678db9d52e82151c05054b620339c71f1790e\",\"version\":2}]";
    const GO_V1_HOST_TEXT: &str = "{\n\t\"details\": {\n\t\t\"curve\": \"CURVE25519\",\n\t\t\"groups\": [\n\t\t\t\"laptop\"\n\t\t],\n\t\t\"isCa\": false,\n\t\t\"issuer\": \"3883d3a4452664b83910049b7499df9eefb3468aa041707a3eb996ef9929af56\",\n\t\t\"name\": \"host1\",\n\t\t\"networks\": [\n\t\t\t\"10.42.1.5/16\"\n\t\t],\n\t\t\"notAfter\": \"2027-01-15T08:00:00Z\",\n\t\t\"notBefore\": \"2023-11-14T22:15:00Z\",\n\t\t\"publicKey\": \"0202020202020202020202020202020202020202020202020202020202020202\",\n\t\t\"unsafeNetworks\": [\n\t\t\t\"10.42.200.0/24\"\n\t\t]\n\t},\n\t\"fingerprint\": \"b2c45ccb32d2b7efe6ed8f1bee11ae7a339a19a95b0b4fc37804b5beb72b8c58\",\n\t\"signature\": \"a70ff0d06cdc2b5f8111a1e814adb1f237043ec3887c613f6553911cbbe377067973913c2e4033abea34f96d5800a7dc05105341768c1d134901a6775a589f09\",\n\t\"version\": 1\n}";
    const GO_V2_HOST_TEXT: &str = "{\n\t\"curve\": \"CURVE25519\",\n\t\"details\": {\n\t\t\"groups\": [\n\t\t\t\"laptop\"\n\t\t],\n\t\t\"isCa\": false,\n\t\t\"issuer\": \"445f36bd2ed6d5c6e3c206a6f481951b1c41d265e0efaf3c3d5f7ca9bb3d38cf\",\n\t\t\"name\": \"host1\",\n\t\t\"networks\": [\n\t\t\t\"10.42.1.5/16\",\n\t\t\t\"fd00::5/64\"\n\t\t],\n\t\t\"notAfter\": \"2027-01-15T08:00:00Z\",\n\t\t\"notBefore\": \"2023-11-14T22:15:00Z\",\n\t\t\"unsafeNetworks\": [\n\t\t\t\"10.42.200.0/24\"\n\t\t]\n\t},\n\t\"fingerprint\": \"c9887855b2268b1067b0b81c8ac15a10a817e35577efd396e33d1c4c862d7caa\",\n\t\"publicKey\": \"0202020202020202020202020202020202020202020202020202020202020202\",\n\t\"signature\": \"bf6178933a2b161e205ba7e73e9bc0cfa5c6824a8bcc7b22b597b03c52ef213c68b4319a9e9cf1fdedf518d06c44358319d227738adf6170eed940709df0dd0f\",\n\t\"version\": 2\n}";
    const GO161_V1_HOST_JSON: &str = "{\"details\":{\"groups\":[\"laptop\"],\"ips\":[\"10.42.1.5/16\"],\"isCa\":false,\"issuer\":\"3883d3a4452664b83910049b7499df9eefb3468aa041707a3eb996ef9929af56\",\"name\":\"host1\",\"notAfter\":\"2027-01-15T08:00:00Z\",\"notBefore\":\"2023-11-14T22:15:00Z\",\"publicKey\":\"0202020202020202020202020202020202020202020202020202020202020202\",\"subnets\":[\"10.42.200.0/24\"]},\"fingerprint\":\"b2c45ccb32d2b7efe6ed8f1bee11ae7a339a19a95b0b4fc37804b5beb72b8c58\",\"signature\":\"a70ff0d06cdc2b5f8111a1e814adb1f237043ec3887c613f6553911cbbe377067973913c2e4033abea34f96d5800a7dc05105341768c1d134901a6775a589f09\"}";
    const GO161_V1_HOST_TEXT: &str = "NebulaCertificate {\n\tDetails {\n\t\tName: host1\n\t\tIps: [\n\t\t\t10.42.1.5/16\n\t\t]\n\t\tSubnets: [\n\t\t\t10.42.200.0/24\n\t\t]\n\t\tGroups: [\n\t\t\t\"laptop\"\n\t\t]\n\t\tNot before: 2023-11-14 22:15:00 +0000 UTC\n\t\tNot After: 2027-01-15 08:00:00 +0000 UTC\n\t\tIs CA: false\n\t\tIssuer: 3883d3a4452664b83910049b7499df9eefb3468aa041707a3eb996ef9929af56\n\t\tPublic key: 0202020202020202020202020202020202020202020202020202020202020202\n\t}\n\tFingerprint: b2c45ccb32d2b7efe6ed8f1bee11ae7a339a19a95b0b4fc37804b5beb72b8c58\n\tSignature: a70ff0d06cdc2b5f8111a1e814adb1f237043ec3887c613f6553911cbbe377067973913c2e4033abea34f96d5800a7dc05105341768c1d134901a6775a589f09\n}";

    #[test]
    fn json_and_text_match_go_output() {
        let (_, _, h1) = fixed_pair(Version::V1);
        let (_, ca2, h2) = fixed_pair(Version::V2);
        assert_eq!(
            go_json_string(&Value::Array(vec![h1.to_json()]), false),
            GO_V1_HOST_JSON
        );
        assert_eq!(
            go_json_string(&Value::Array(vec![h2.to_json()]), false),
            GO_V2_HOST_JSON
        );
        assert_eq!(
            go_json_string(&Value::Array(vec![ca2.to_json()]), false),
            GO_V2_CA_JSON
        );
        assert_eq!(h1.to_string(), GO_V1_HOST_TEXT);
        assert_eq!(h2.to_string(), GO_V2_HOST_TEXT);
        assert_eq!(
            go_json_string(&h1.to_json_v1_6(), false),
            GO161_V1_HOST_JSON
        );
        assert_eq!(h1.to_string_v1_6(), GO161_V1_HOST_TEXT);
    }
}
