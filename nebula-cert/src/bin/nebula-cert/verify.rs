//! `nebula-cert verify`: check that every certificate in a file is valid now and signed by a CA from
//! the given bundle; silent with exit 0 on success, like Go 1.11 (`cmd/nebula-cert/verify.go`).

use goflag::{Flag, FlagSet};
use nebula_cert::cert::Certificate;
use nebula_cert::error::CertError;
use nebula_cert::pool::CaPool;
use nebula_cert::Version;

use crate::common::{must_flag_string, now_nanos, parse_flags, unix_secs, CliError};
use crate::stdio::{read_input, IoClaims, STDIO_HELP_TEXT};

/// The mode's one-line summary.
pub fn summary() -> &'static str {
    "verify <flags>: verifies a certificate isn't expired and was signed by a trusted authority."
}

struct VerifyFlags {
    set: FlagSet,
    ca: Flag<String>,
    crt: Flag<String>,
}

fn flags() -> VerifyFlags {
    let mut set = FlagSet::new("verify");
    let ca = set.string(
        "ca",
        "",
        "Required: path to a file containing one or more ca certificates",
    );
    let crt = set.string(
        "crt",
        "",
        "Required: path to a file containing a single certificate",
    );
    VerifyFlags { set, ca, crt }
}

/// The mode's usage text.
pub fn help(argv0: &str) -> String {
    format!(
        "Usage of {argv0} {}\n{STDIO_HELP_TEXT}{}",
        summary(),
        flags().set.print_defaults()
    )
}

fn version_number(v: Version) -> u8 {
    match v {
        Version::V1 => 1,
        Version::V2 => 2,
    }
}

/// Go's wording for one failed certificate.
fn describe_failure(cert: &Certificate, err: &CertError) -> String {
    match err {
        CertError::UnknownIssuer { issuer } => format!(
            "error while verifying certificate v{} {} with issuer {}: could not find ca for the certificate",
            version_number(cert.version()),
            cert.name(),
            issuer
        ),
        other => format!("error while verifying certificate {cert}: {other}"),
    }
}

/// Runs `nebula-cert verify`.
pub fn run(args: &[String]) -> Result<(), CliError> {
    let mut f = flags();
    parse_flags(&mut f.set, args)?;
    let ca_path = f.set.get(&f.ca);
    let crt_path = f.set.get(&f.crt);
    must_flag_string("ca", &ca_path)?;
    must_flag_string("crt", &crt_path)?;

    let mut claims = IoClaims::default();
    claims
        .reserve_inputs(&[("ca", &ca_path), ("crt", &crt_path)])
        .map_err(CliError::Failed)?;

    let raw_ca = read_input("ca", &ca_path, &mut claims)
        .map_err(|e| CliError::failed(format!("error while reading ca: {e}")))?;
    // Expired CAs are loaded anyway (Go ignores ErrExpired here); verifying against one then fails.
    let (pool, _expired_warnings) = CaPool::from_pem(&raw_ca)
        .map_err(|e| CliError::failed(format!("error while adding ca cert to pool: {e}")))?;

    let raw_crt = read_input("crt", &crt_path, &mut claims)
        .map_err(|e| CliError::failed(format!("unable to read crt: {e}")))?;

    let now = unix_secs(now_nanos());
    let mut failures = Vec::new();
    let mut rest: &[u8] = &raw_crt;
    // Go stops only at an empty remainder; trailing whitespace after the last block is accepted here.
    while !rest.iter().all(u8::is_ascii_whitespace) {
        let (cert, r) = Certificate::from_pem(rest)
            .map_err(|e| CliError::failed(format!("error while parsing crt: {e}")))?;
        rest = r;
        if let Err(e) = pool.verify(now, &cert) {
            failures.push(describe_failure(&cert, &e));
        }
    }
    if raw_crt.iter().all(u8::is_ascii_whitespace) {
        return Err(CliError::failed(
            "error while parsing crt: input did not contain a valid PEM encoded block",
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(failures.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_matches_go() {
        let want = concat!(
            "Usage of nc verify <flags>: verifies a certificate isn't expired and was signed by a trusted authority.\n",
            "  Pass \"-\" to any path flag to read from stdin or write to stdout.\n",
            "  -ca string\n",
            "    \tRequired: path to a file containing one or more ca certificates\n",
            "  -crt string\n",
            "    \tRequired: path to a file containing a single certificate\n",
        );
        assert_eq!(help("nc"), want);
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn errors_like_go() {
        assert_eq!(
            run(&args(&["-ca", "derp"])),
            Err(CliError::Usage("-crt is required".into()))
        );
        assert_eq!(
            run(&args(&["-crt", "derp"])),
            Err(CliError::Usage("-ca is required".into()))
        );
        assert_eq!(
            run(&args(&["-ca", "does_not_exist", "-crt", "does_not_exist"])),
            Err(CliError::Failed(
                "error while reading ca: open does_not_exist: no such file or directory".into()
            ))
        );
        assert_eq!(
            run(&args(&["-ca", "-", "-crt", "-"])),
            Err(CliError::Failed(
                "-ca and -crt both set to \"-\", only one input may read from stdin".into()
            ))
        );
    }
}
