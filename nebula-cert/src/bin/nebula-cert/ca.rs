//! `nebula-cert ca`: create a self-signed CA certificate and its signing key (optionally encrypted),
//! with Go 1.11's flags, defaults, checks and messages (`cmd/nebula-cert/ca.go`).

use std::io::Write;

use goflag::{Flag, FlagSet, GoDuration};
use ipnet::IpNet;
use nebula_cert::cert::TbsCertificate;
use nebula_cert::encrypted::{encrypt_and_marshal_ca_private_key, Argon2Params};
use nebula_cert::keys::{generate_ca_key, marshal_ca_private_key};
use nebula_cert::Version;

use crate::common::{
    must_flag_string, now_nanos, parse_curve, parse_flags, parse_prefix, pkcs11_flag,
    refuse_pkcs11, split_groups, split_networks, unix_secs, CliError,
};
use crate::passwords::{
    confirm_passphrase, passphrase_from_env, prompt_passphrase, PasswordReader, PromptMessages,
};
use crate::qr;
use crate::stdio::{exists, is_stdio, write_flag_output, IoClaims, STDIO_HELP_TEXT};

/// The mode's one-line summary.
pub fn summary() -> &'static str {
    "ca <flags>: create a self signed certificate authority"
}

struct CaFlags {
    set: FlagSet,
    name: Flag<String>,
    version: Flag<u64>,
    duration: Flag<GoDuration>,
    out_key: Flag<String>,
    out_crt: Flag<String>,
    out_qr: Flag<String>,
    groups: Flag<String>,
    networks: Flag<String>,
    unsafe_networks: Flag<String>,
    argon_memory: Flag<u64>,
    argon_parallelism: Flag<u64>,
    argon_iterations: Flag<u64>,
    encrypt: Flag<bool>,
    curve: Flag<String>,
    pkcs11: Flag<String>,
    ips: Flag<String>,
    subnets: Flag<String>,
}

fn flags() -> CaFlags {
    let defaults = Argon2Params::default();
    let mut set = FlagSet::new("ca");
    let name = set.string("name", "", "Required: name of the certificate authority");
    let version = set.uint(
        "version",
        2,
        "Optional: version of the certificate format to use",
    );
    let duration = set.duration(
        "duration",
        GoDuration::from_hours(8760),
        "Optional: amount of time the certificate should be valid for. Valid time units are seconds: \"s\", minutes: \"m\", hours: \"h\"",
    );
    let out_key = set.string(
        "out-key",
        "ca.key",
        "Optional: path to write the private key to",
    );
    let out_crt = set.string(
        "out-crt",
        "ca.crt",
        "Optional: path to write the certificate to",
    );
    let out_qr = set.string(
        "out-qr",
        "",
        "Optional: output a qr code image (png) of the certificate",
    );
    let groups = set.string(
        "groups",
        "",
        "Optional: comma separated list of groups. This will limit which groups subordinate certs can use",
    );
    let networks = set.string(
        "networks",
        "",
        "Optional: comma separated list of ip address and network in CIDR notation. This will limit which ip addresses and networks subordinate certs can use in networks",
    );
    let unsafe_networks = set.string(
        "unsafe-networks",
        "",
        "Optional: comma separated list of ip address and network in CIDR notation. This will limit which ip addresses and networks subordinate certs can use in unsafe networks",
    );
    let argon_memory = set.uint(
        "argon-memory",
        u64::from(defaults.memory_kib),
        "Optional: Argon2 memory parameter (in KiB) used for encrypted private key passphrase",
    );
    let argon_parallelism = set.uint(
        "argon-parallelism",
        u64::from(defaults.parallelism),
        "Optional: Argon2 parallelism parameter used for encrypted private key passphrase",
    );
    let argon_iterations = set.uint(
        "argon-iterations",
        u64::from(defaults.iterations),
        "Optional: Argon2 iterations parameter used for encrypted private key passphrase",
    );
    let encrypt = set.bool(
        "encrypt",
        false,
        "Optional: prompt for passphrase and write out-key in an encrypted format",
    );
    let curve = set.string("curve", "25519", "EdDSA/ECDSA Curve (25519, P256)");
    let pkcs11 = pkcs11_flag(&mut set);
    let ips = set.string("ips", "", "Deprecated, see -networks");
    let subnets = set.string("subnets", "", "Deprecated, see -unsafe-networks");
    CaFlags {
        set,
        name,
        version,
        duration,
        out_key,
        out_crt,
        out_qr,
        groups,
        networks,
        unsafe_networks,
        argon_memory,
        argon_parallelism,
        argon_iterations,
        encrypt,
        curve,
        pkcs11,
        ips,
        subnets,
    }
}

/// The mode's usage text (`nebula-cert ca -h`).
pub fn help(argv0: &str) -> String {
    format!(
        "Usage of {argv0} {}\n{STDIO_HELP_TEXT}{}",
        summary(),
        flags().set.print_defaults()
    )
}

/// Go's `parseArgonParameters` checks (its "be be" typo included, as scripts may match on it).
fn argon_params(memory: u64, parallelism: u64, iterations: u64) -> Result<Argon2Params, CliError> {
    let memory_kib = u32::try_from(memory)
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| {
            CliError::usage(format!(
                "-argon-memory must be be greater than 0 and no more than {} KiB",
                u32::MAX
            ))
        })?;
    let parallelism = u8::try_from(parallelism)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            CliError::usage(format!(
                "-argon-parallelism must be be greater than 0 and no more than {}",
                u8::MAX
            ))
        })?;
    let iterations = u32::try_from(iterations)
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| {
            CliError::usage(format!(
                "-argon-iterations must be be greater than 0 and no more than {}",
                u32::MAX
            ))
        })?;
    Ok(Argon2Params {
        memory_kib,
        iterations,
        parallelism,
    })
}

/// Parses `-networks` / `-unsafe-networks` for a CA (`flag` is the name used in messages).
fn parse_ca_networks(list: &str, flag: &str, version: Version) -> Result<Vec<IpNet>, CliError> {
    let mut out = Vec::new();
    for rs in split_networks(list) {
        let n = parse_prefix(rs)
            .ok_or_else(|| CliError::usage(format!("invalid -{flag} definition: {rs}")))?;
        if version == Version::V1 && !matches!(n, IpNet::V4(_)) {
            return Err(CliError::usage(format!(
                "invalid -{flag} definition: v1 certificates can only be ipv4, have {rs}"
            )));
        }
        out.push(n);
    }
    Ok(out)
}

/// Runs `nebula-cert ca`.
pub fn run(
    args: &[String],
    out: &mut dyn Write,
    errout: &mut dyn Write,
    pr: &mut dyn PasswordReader,
) -> Result<(), CliError> {
    let mut f = flags();
    parse_flags(&mut f.set, args)?;
    let s = &f.set;
    refuse_pkcs11(&s.get(&f.pkcs11))?;

    let name = s.get(&f.name);
    let out_key = s.get(&f.out_key);
    let out_crt = s.get(&f.out_crt);
    let out_qr = s.get(&f.out_qr);
    let encrypt = s.get(&f.encrypt);
    must_flag_string("name", &name)?;
    must_flag_string("out-key", &out_key)?;
    must_flag_string("out-crt", &out_crt)?;

    let kdf = if encrypt {
        Some(argon_params(
            s.get(&f.argon_memory),
            s.get(&f.argon_parallelism),
            s.get(&f.argon_iterations),
        )?)
    } else {
        None
    };

    let duration = s.get(&f.duration);
    if duration.nanos() <= 0 {
        return Err(CliError::usage("-duration must be greater than 0"));
    }

    let groups = split_groups(&s.get(&f.groups));

    let version = match s.get(&f.version) {
        1 => Version::V1,
        2 => Version::V2,
        _ => return Err(CliError::usage("-version must be either 1 or 2")),
    };

    let mut networks = s.get(&f.networks);
    if networks.is_empty() {
        networks = s.get(&f.ips);
    }
    let networks = parse_ca_networks(&networks, "networks", version)?;
    let mut unsafe_networks = s.get(&f.unsafe_networks);
    if unsafe_networks.is_empty() {
        unsafe_networks = s.get(&f.subnets);
    }
    let unsafe_networks = parse_ca_networks(&unsafe_networks, "unsafe-networks", version)?;

    let mut claims = IoClaims::default();
    claims
        .reserve_outputs(&[
            ("out-key", &out_key),
            ("out-crt", &out_crt),
            ("out-qr", &out_qr),
        ])
        .map_err(CliError::Failed)?;

    // Checked before prompting (Go checks after), so nobody types a passphrase for nothing.
    let curve_name = s.get(&f.curve);
    let curve = parse_curve(&curve_name)
        .ok_or_else(|| CliError::failed(format!("invalid curve: {curve_name}")))?;

    let passphrase = if encrypt {
        Some(match passphrase_from_env() {
            Some(p) => p,
            None => {
                let msgs = PromptMessages {
                    no_terminal: "out-key must be encrypted interactively",
                    read_error: "error reading passphrase",
                    none_given:
                        "no passphrase specified, remove -encrypt flag to write out-key in plaintext",
                };
                let p = prompt_passphrase(pr, errout, &msgs).map_err(CliError::Failed)?;
                confirm_passphrase(pr, errout, &p, &msgs).map_err(CliError::Failed)?;
                p
            }
        })
    } else {
        None
    };

    let key = generate_ca_key(curve);
    let now = now_nanos();
    let not_after = now.saturating_add(i128::from(duration.nanos()));
    let tbs = TbsCertificate {
        version,
        name,
        networks,
        unsafe_networks,
        groups,
        is_ca: true,
        not_before: unix_secs(now),
        not_after: unix_secs(not_after),
        public_key: key.public_key_bytes(),
        curve,
    };

    if !is_stdio(&out_key) && exists(&out_key) {
        return Err(CliError::failed(format!(
            "refusing to overwrite existing CA key: {out_key}"
        )));
    }
    if !is_stdio(&out_crt) && exists(&out_crt) {
        return Err(CliError::failed(format!(
            "refusing to overwrite existing CA cert: {out_crt}"
        )));
    }

    let cert = tbs
        .sign(None, &key)
        .map_err(|e| CliError::failed(format!("error while signing: {e}")))?;

    let key_pem = match (&passphrase, &kdf) {
        (Some(p), Some(params)) => zeroize::Zeroizing::new(
            encrypt_and_marshal_ca_private_key(&key, p, params)
                .map_err(|e| CliError::failed(format!("error while encrypting out-key: {e}")))?,
        ),
        _ => marshal_ca_private_key(&key),
    };
    write_flag_output("out-key", &out_key, key_pem.as_bytes(), out)?;
    qr::write_cert(&out_crt, &out_qr, &cert, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passwords::tests::StubReader;

    #[test]
    fn help_matches_go() {
        let want = concat!(
            "Usage of nebula-cert ca <flags>: create a self signed certificate authority\n",
            "  Pass \"-\" to any path flag to read from stdin or write to stdout.\n",
            "  -argon-iterations uint\n",
            "    \tOptional: Argon2 iterations parameter used for encrypted private key passphrase (default 1)\n",
            "  -argon-memory uint\n",
            "    \tOptional: Argon2 memory parameter (in KiB) used for encrypted private key passphrase (default 2097152)\n",
            "  -argon-parallelism uint\n",
            "    \tOptional: Argon2 parallelism parameter used for encrypted private key passphrase (default 4)\n",
            "  -curve string\n",
            "    \tEdDSA/ECDSA Curve (25519, P256) (default \"25519\")\n",
            "  -duration duration\n",
            "    \tOptional: amount of time the certificate should be valid for. Valid time units are seconds: \"s\", minutes: \"m\", hours: \"h\" (default 8760h0m0s)\n",
            "  -encrypt\n",
            "    \tOptional: prompt for passphrase and write out-key in an encrypted format\n",
            "  -groups string\n",
            "    \tOptional: comma separated list of groups. This will limit which groups subordinate certs can use\n",
            "  -ips string\n",
            "    \tDeprecated, see -networks\n",
            "  -name string\n",
            "    \tRequired: name of the certificate authority\n",
            "  -networks string\n",
            "    \tOptional: comma separated list of ip address and network in CIDR notation. This will limit which ip addresses and networks subordinate certs can use in networks\n",
            "  -out-crt string\n",
            "    \tOptional: path to write the certificate to (default \"ca.crt\")\n",
            "  -out-key string\n",
            "    \tOptional: path to write the private key to (default \"ca.key\")\n",
            "  -out-qr string\n",
            "    \tOptional: output a qr code image (png) of the certificate\n",
            "  -subnets string\n",
            "    \tDeprecated, see -unsafe-networks\n",
            "  -unsafe-networks string\n",
            "    \tOptional: comma separated list of ip address and network in CIDR notation. This will limit which ip addresses and networks subordinate certs can use in unsafe networks\n",
            "  -version uint\n",
            "    \tOptional: version of the certificate format to use (default 2)\n",
        );
        assert_eq!(help("nebula-cert"), want);
    }

    fn run_ca(args: &[&str], pr: &mut StubReader) -> (Result<(), CliError>, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let r = run(&args, &mut out, &mut err, pr);
        (r, String::from_utf8_lossy(&err).into_owned())
    }

    fn nopw() -> StubReader {
        StubReader {
            answers: vec![],
            calls: 0,
            no_terminal: false,
        }
    }

    #[test]
    fn usage_errors_like_go() {
        let cases: &[(&[&str], &str)] = &[
            (&["-version", "1", "-out-key", "nope", "-out-crt", "nope", "duration", "100m"], "-name is required"),
            (&["-version", "1", "-name", "ipv6", "-ips", "100::100/100"], "invalid -networks definition: v1 certificates can only be ipv4, have 100::100/100"),
            (&["-version", "1", "-name", "ipv6", "-subnets", "100::100/100"], "invalid -unsafe-networks definition: v1 certificates can only be ipv4, have 100::100/100"),
            (&["-name", "x", "-networks", "nope"], "invalid -networks definition: nope"),
            (&["-name", "x", "-version", "3"], "-version must be either 1 or 2"),
            (&["-name", "x", "-duration", "0"], "-duration must be greater than 0"),
            (&["-name", "x", "-duration", "-1h"], "-duration must be greater than 0"),
            (&["-name", "x", "-out-key", ""], "-out-key is required"),
            (&["-name", "x", "-encrypt", "-argon-memory", "0"], "-argon-memory must be be greater than 0 and no more than 4294967295 KiB"),
            (&["-name", "x", "-encrypt", "-argon-parallelism", "256"], "-argon-parallelism must be be greater than 0 and no more than 255"),
            (&["-name", "x", "-encrypt", "-argon-iterations", "0"], "-argon-iterations must be be greater than 0 and no more than 4294967295"),
        ];
        for (args, msg) in cases {
            let (r, err) = run_ca(args, &mut nopw());
            assert_eq!(r, Err(CliError::Usage(msg.to_string())), "{args:?}");
            assert!(err.is_empty());
        }
    }

    #[test]
    fn stdout_conflict_is_caught_before_prompting() {
        let mut pr = nopw();
        let (r, err) = run_ca(
            &["-name", "t", "-encrypt", "-out-crt", "-", "-out-key", "-"],
            &mut pr,
        );
        assert_eq!(
            r,
            Err(CliError::Failed(
                "-out-key and -out-crt both set to \"-\", only one output may write to stdout"
                    .into()
            ))
        );
        assert_eq!(pr.calls, 0);
        assert!(err.is_empty());
    }

    #[test]
    fn empty_passphrases_give_up_after_five_prompts() {
        if passphrase_from_env().is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k").to_str().unwrap().to_string();
        let crt = dir.path().join("c").to_str().unwrap().to_string();
        let mut pr = nopw();
        let (r, err) = run_ca(
            &["-name", "t", "-encrypt", "-out-crt", &crt, "-out-key", &key],
            &mut pr,
        );
        assert_eq!(
            r,
            Err(CliError::Failed(
                "no passphrase specified, remove -encrypt flag to write out-key in plaintext"
                    .into()
            ))
        );
        assert_eq!(err, "Enter passphrase: ".repeat(5));
        assert!(!exists(&key) && !exists(&crt));
    }

    #[test]
    fn unknown_curve() {
        let (r, _) = run_ca(&["-name", "t", "-curve", "ed448"], &mut nopw());
        assert_eq!(r, Err(CliError::Failed("invalid curve: ed448".into())));
    }
}
