//! `nebula-cert keygen`: write a host key pair (X25519 or P-256) for `sign -in-pub`, as Go 1.11 does
//! (`cmd/nebula-cert/keygen.go`); unlike `ca` and `sign` it overwrites existing files.

use std::io::Write;

use goflag::{Flag, FlagSet};
use nebula_cert::keys::{keygen, marshal_private_key, marshal_public_key};

use crate::common::{
    must_flag_string, parse_curve, parse_flags, pkcs11_flag, refuse_pkcs11, CliError,
};
use crate::stdio::{write_flag_output, IoClaims, STDIO_HELP_TEXT};

/// The mode's one-line summary.
pub fn summary() -> &'static str {
    "keygen <flags>: create a public/private key pair. the public key can be passed to `nebula-cert sign`"
}

struct KeygenFlags {
    set: FlagSet,
    out_pub: Flag<String>,
    out_key: Flag<String>,
    curve: Flag<String>,
    pkcs11: Flag<String>,
}

fn flags() -> KeygenFlags {
    let mut set = FlagSet::new("keygen");
    let out_pub = set.string("out-pub", "", "Required: path to write the public key to");
    let out_key = set.string("out-key", "", "Required: path to write the private key to");
    let curve = set.string("curve", "25519", "ECDH Curve (25519, P256)");
    let pkcs11 = pkcs11_flag(&mut set);
    KeygenFlags {
        set,
        out_pub,
        out_key,
        curve,
        pkcs11,
    }
}

/// The mode's usage text.
pub fn help(argv0: &str) -> String {
    format!(
        "Usage of {argv0} {}\n{STDIO_HELP_TEXT}{}",
        summary(),
        flags().set.print_defaults()
    )
}

/// Runs `nebula-cert keygen`.
pub fn run(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let mut f = flags();
    parse_flags(&mut f.set, args)?;
    let s = &f.set;
    refuse_pkcs11(&s.get(&f.pkcs11))?;
    let out_key = s.get(&f.out_key);
    let out_pub = s.get(&f.out_pub);
    must_flag_string("out-key", &out_key)?;
    must_flag_string("out-pub", &out_pub)?;

    let curve_name = s.get(&f.curve);
    let curve = parse_curve(&curve_name)
        .ok_or_else(|| CliError::failed(format!("invalid curve: {curve_name}")))?;

    let mut claims = IoClaims::default();
    claims
        .reserve_outputs(&[("out-key", &out_key), ("out-pub", &out_pub)])
        .map_err(CliError::Failed)?;

    let (private, public) = keygen(curve);
    let key = zeroize::Zeroizing::new(marshal_private_key(curve, &private));
    write_flag_output("out-key", &out_key, key.as_bytes(), out)?;
    let public = marshal_public_key(curve, &public);
    write_flag_output("out-pub", &out_pub, public.as_bytes(), out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_matches_go() {
        let want = concat!(
            "Usage of nc keygen <flags>: create a public/private key pair. the public key can be passed to `nebula-cert sign`\n",
            "  Pass \"-\" to any path flag to read from stdin or write to stdout.\n",
            "  -curve string\n",
            "    \tECDH Curve (25519, P256) (default \"25519\")\n",
            "  -out-key string\n",
            "    \tRequired: path to write the private key to\n",
            "  -out-pub string\n",
            "    \tRequired: path to write the public key to\n",
        );
        assert_eq!(help("nc"), want);
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn required_flags() {
        assert_eq!(
            run(&args(&["-out-pub", "nope"]), &mut Vec::new()),
            Err(CliError::Usage("-out-key is required".into()))
        );
        assert_eq!(
            run(&args(&["-out-key", "nope"]), &mut Vec::new()),
            Err(CliError::Usage("-out-pub is required".into()))
        );
    }

    #[test]
    fn write_failures_like_go() {
        assert_eq!(
            run(
                &args(&["-out-pub", "/do/not/write/pleasepub", "-out-key", "/do/not/write/pleasekey"]),
                &mut Vec::new()
            ),
            Err(CliError::Failed(
                "error while writing out-key: open /do/not/write/pleasekey: no such file or directory".into()
            ))
        );
    }

    #[test]
    fn key_to_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.pub");
        let mut out = Vec::new();
        run(
            &args(&[
                "-out-key",
                "-",
                "-out-pub",
                p.to_str().unwrap(),
                "-curve",
                "P256",
            ]),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("-----BEGIN NEBULA P256 PRIVATE KEY-----\n"));
        let pubk = std::fs::read_to_string(p).unwrap();
        assert!(pubk.starts_with("-----BEGIN NEBULA P256 PUBLIC KEY-----\n"));
    }
}
