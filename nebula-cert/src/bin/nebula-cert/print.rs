//! `nebula-cert print`: show every certificate in a PEM file as 1.11 does (indented JSON text per
//! certificate, or one JSON array with `-json`), optionally as a QR code PNG (`cmd/nebula-cert/print.go`).

use std::io::Write;

use goflag::{Flag, FlagSet};
use nebula_cert::cert::{go_json_string, Certificate};

use crate::common::{must_flag_string, parse_flags, CliError};
use crate::qr;
use crate::stdio::{is_stdio, read_input, IoClaims, STDIO_HELP_TEXT};

/// The mode's one-line summary.
pub fn summary() -> &'static str {
    "print <flags>: prints details about a certificate"
}

struct PrintFlags {
    set: FlagSet,
    json: Flag<bool>,
    out_qr: Flag<String>,
    path: Flag<String>,
}

fn flags() -> PrintFlags {
    let mut set = FlagSet::new("print");
    let json = set.bool(
        "json",
        false,
        "Optional: outputs certificates in json format",
    );
    let out_qr = set.string(
        "out-qr",
        "",
        "Optional: output a qr code image (png) of the certificate",
    );
    let path = set.string("path", "", "Required: path to the certificate");
    PrintFlags {
        set,
        json,
        out_qr,
        path,
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

/// Runs `nebula-cert print`.
pub fn run(args: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    let mut f = flags();
    parse_flags(&mut f.set, args)?;
    let s = &f.set;
    let path = s.get(&f.path);
    let out_qr = s.get(&f.out_qr);
    let json = s.get(&f.json);
    must_flag_string("path", &path)?;

    let mut claims = IoClaims::default();
    claims
        .reserve_inputs(&[("path", &path)])
        .map_err(CliError::Failed)?;
    claims
        .reserve_outputs(&[("out-qr", &out_qr)])
        .map_err(CliError::Failed)?;

    let raw = read_input("path", &path, &mut claims)
        .map_err(|e| CliError::failed(format!("unable to read cert; {e}")))?;

    // A QR code going to stdout replaces the text/JSON so the PNG stream stays clean.
    let qr_to_stdout = is_stdio(&out_qr);
    let mut qr_pem = String::new();
    let mut json_certs = Vec::new();
    let mut rest: &[u8] = &raw;
    loop {
        let (cert, r) = Certificate::from_pem(rest)
            .map_err(|e| CliError::failed(format!("error while unmarshaling cert: {e}")))?;
        rest = r;
        if !qr_to_stdout {
            if json {
                json_certs.push(cert.to_json());
            } else {
                // Printed as we go, like Go: a bad later block still shows the good ones first.
                let _ = writeln!(out, "{cert}");
            }
        }
        if !out_qr.is_empty() {
            qr_pem.push_str(&cert.marshal_pem());
        }
        if rest.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }

    if json && !qr_to_stdout {
        let _ = writeln!(
            out,
            "{}",
            go_json_string(&serde_json::Value::Array(json_certs), false)
        );
    }

    qr::write_qr(&out_qr, &qr_pem, out)?;
    let _ = out.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_matches_go() {
        let want = concat!(
            "Usage of nc print <flags>: prints details about a certificate\n",
            "  Pass \"-\" to any path flag to read from stdin or write to stdout.\n",
            "  -json\n",
            "    \tOptional: outputs certificates in json format\n",
            "  -out-qr string\n",
            "    \tOptional: output a qr code image (png) of the certificate\n",
            "  -path string\n",
            "    \tRequired: path to the certificate\n",
        );
        assert_eq!(help("nc"), want);
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn errors_like_go() {
        assert_eq!(
            run(&[], &mut Vec::new()),
            Err(CliError::Usage("-path is required".into()))
        );
        assert_eq!(
            run(&args(&["-path", "does_not_exist"]), &mut Vec::new()),
            Err(CliError::Failed(
                "unable to read cert; open does_not_exist: no such file or directory".into()
            ))
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        std::fs::write(&p, "-----BEGIN NOPE-----").unwrap();
        let r = run(&args(&["-path", p.to_str().unwrap()]), &mut Vec::new());
        match r {
            Err(CliError::Failed(m)) => {
                assert!(m.starts_with("error while unmarshaling cert: "), "{m}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
