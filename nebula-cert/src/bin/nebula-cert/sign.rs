//! `nebula-cert sign`: issue a host certificate from a CA key and certificate (the key possibly
//! encrypted), generating the host key pair or using `-in-pub`; Go 1.11's `cmd/nebula-cert/sign.go`.

use std::io::Write;

use goflag::{Flag, FlagSet, GoDuration};
use ipnet::IpNet;
use nebula_cert::cert::{Certificate, TbsCertificate};
use nebula_cert::encrypted::decrypt_and_unmarshal_ca_private_key;
use nebula_cert::keys::{
    keygen, marshal_private_key, unmarshal_ca_private_key, unmarshal_public_key, KeyError,
};
use nebula_cert::signing::CaSigningKey;
use nebula_cert::Version;

use crate::common::{
    must_flag_string, now_nanos, parse_flags, parse_prefix, pkcs11_flag, refuse_pkcs11,
    split_groups, split_networks, unix_secs, CliError,
};
use crate::passwords::{passphrase_from_env, prompt_passphrase, PasswordReader, PromptMessages};
use crate::qr;
use crate::stdio::{exists, is_stdio, read_input, write_flag_output, IoClaims, STDIO_HELP_TEXT};

/// The mode's one-line summary.
pub fn summary() -> &'static str {
    "sign <flags>: create and sign a certificate"
}

struct SignFlags {
    set: FlagSet,
    version: Flag<u64>,
    ca_key: Flag<String>,
    ca_crt: Flag<String>,
    name: Flag<String>,
    networks: Flag<String>,
    unsafe_networks: Flag<String>,
    duration: Flag<GoDuration>,
    in_pub: Flag<String>,
    out_key: Flag<String>,
    out_crt: Flag<String>,
    out_qr: Flag<String>,
    groups: Flag<String>,
    pkcs11: Flag<String>,
    ip: Flag<String>,
    subnets: Flag<String>,
}

fn flags() -> SignFlags {
    let mut set = FlagSet::new("sign");
    let version = set.uint(
        "version",
        0,
        "Optional: version of the certificate format to use. The default is to match the version of the signing CA",
    );
    let ca_key = set.string("ca-key", "ca.key", "Optional: path to the signing CA key");
    let ca_crt = set.string("ca-crt", "ca.crt", "Optional: path to the signing CA cert");
    let name = set.string("name", "", "Required: name of the cert, usually a hostname");
    let networks = set.string(
        "networks",
        "",
        "Required: comma separated list of ip address and network in CIDR notation to assign to this cert",
    );
    let unsafe_networks = set.string(
        "unsafe-networks",
        "",
        "Optional: comma separated list of ip address and network in CIDR notation. Unsafe networks this cert can route for",
    );
    let duration = set.duration(
        "duration",
        GoDuration::ZERO,
        "Optional: how long the cert should be valid for. The default is 1 second before the signing cert expires. Valid time units are seconds: \"s\", minutes: \"m\", hours: \"h\"",
    );
    let in_pub = set.string(
        "in-pub",
        "",
        "Optional (if out-key not set): path to read a previously generated public key",
    );
    let out_key = set.string(
        "out-key",
        "",
        "Optional (if in-pub not set): path to write the private key to",
    );
    let out_crt = set.string("out-crt", "", "Optional: path to write the certificate to");
    let out_qr = set.string(
        "out-qr",
        "",
        "Optional: output a qr code image (png) of the certificate",
    );
    let groups = set.string("groups", "", "Optional: comma separated list of groups");
    let pkcs11 = pkcs11_flag(&mut set);
    let ip = set.string("ip", "", "Deprecated, see -networks");
    let subnets = set.string("subnets", "", "Deprecated, see -unsafe-networks");
    SignFlags {
        set,
        version,
        ca_key,
        ca_crt,
        name,
        networks,
        unsafe_networks,
        duration,
        in_pub,
        out_key,
        out_crt,
        out_qr,
        groups,
        pkcs11,
        ip,
        subnets,
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

/// Splits a network list into (IPv4, IPv6) prefixes; `flag` names the flag in messages.
fn parse_host_networks(list: &str, flag: &str) -> Result<(Vec<IpNet>, Vec<IpNet>), CliError> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for rs in split_networks(list) {
        match parse_prefix(rs) {
            Some(n @ IpNet::V4(_)) => v4.push(n),
            Some(n @ IpNet::V6(_)) => v6.push(n),
            None => return Err(CliError::usage(format!("invalid -{flag} definition: {rs}"))),
        }
    }
    Ok((v4, v6))
}

/// Reads the CA key, asking for the passphrase (env or terminal) when it is encrypted.
fn load_ca_key(
    raw: &[u8],
    errout: &mut dyn Write,
    pr: &mut dyn PasswordReader,
) -> Result<CaSigningKey, CliError> {
    match unmarshal_ca_private_key(raw) {
        Ok((key, _)) => Ok(key),
        Err(KeyError::Encrypted) => {
            let passphrase = match passphrase_from_env() {
                Some(p) => p,
                None => prompt_passphrase(
                    pr,
                    errout,
                    &PromptMessages {
                        no_terminal: "ca-key is encrypted and must be decrypted interactively",
                        read_error: "error reading password",
                        none_given: "cannot open encrypted ca-key without passphrase",
                    },
                )
                .map_err(CliError::Failed)?,
            };
            decrypt_and_unmarshal_ca_private_key(&passphrase, raw)
                .map(|(k, _)| k)
                .map_err(|e| CliError::failed(format!("error while parsing encrypted ca-key: {e}")))
        }
        Err(e) => Err(CliError::failed(format!("error while parsing ca-key: {e}"))),
    }
}

/// Runs `nebula-cert sign`.
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

    let ca_key_path = s.get(&f.ca_key);
    let ca_crt_path = s.get(&f.ca_crt);
    let name = s.get(&f.name);
    let in_pub = s.get(&f.in_pub);
    let mut out_key = s.get(&f.out_key);
    let mut out_crt = s.get(&f.out_crt);
    let out_qr = s.get(&f.out_qr);
    must_flag_string("ca-key", &ca_key_path)?;
    must_flag_string("ca-crt", &ca_crt_path)?;
    must_flag_string("name", &name)?;
    if !in_pub.is_empty() && !out_key.is_empty() {
        return Err(CliError::usage("cannot set both -in-pub and -out-key"));
    }

    let mut networks = s.get(&f.networks);
    if networks.is_empty() {
        networks = s.get(&f.ip);
    }
    if networks.is_empty() {
        return Err(CliError::usage("-networks is required"));
    }

    let requested_version = match s.get(&f.version) {
        0 => None,
        1 => Some(Version::V1),
        2 => Some(Version::V2),
        _ => return Err(CliError::usage("-version must be either 1 or 2")),
    };

    if out_key.is_empty() {
        out_key = format!("{name}.key");
    }
    if out_crt.is_empty() {
        out_crt = format!("{name}.crt");
    }

    let mut claims = IoClaims::default();
    claims
        .reserve_inputs(&[
            ("ca-key", &ca_key_path),
            ("ca-crt", &ca_crt_path),
            ("in-pub", &in_pub),
        ])
        .map_err(CliError::Failed)?;
    claims
        .reserve_outputs(&[
            ("out-key", &out_key),
            ("out-crt", &out_crt),
            ("out-qr", &out_qr),
        ])
        .map_err(CliError::Failed)?;

    let raw_ca_key = zeroize::Zeroizing::new(
        read_input("ca-key", &ca_key_path, &mut claims)
            .map_err(|e| CliError::failed(format!("error while reading ca-key: {e}")))?,
    );
    let ca_key = load_ca_key(&raw_ca_key, errout, pr)?;

    let raw_ca_crt = read_input("ca-crt", &ca_crt_path, &mut claims)
        .map_err(|e| CliError::failed(format!("error while reading ca-crt: {e}")))?;
    let (ca_cert, _) = Certificate::from_pem(&raw_ca_crt)
        .map_err(|e| CliError::failed(format!("error while parsing ca-crt: {e}")))?;

    if ca_cert
        .verify_private_key(ca_key.curve(), &ca_key.to_raw())
        .is_err()
    {
        return Err(CliError::failed(
            "refusing to sign, root certificate does not match private key",
        ));
    }
    let curve = ca_key.curve();

    let now = now_nanos();
    let now_secs = unix_secs(now);
    if now_secs > ca_cert.not_after() {
        return Err(CliError::failed("ca certificate is expired"));
    }
    if now_secs < ca_cert.not_before() {
        return Err(CliError::failed(
            "ca certificate is not valid yet (its notBefore is in the future)",
        ));
    }

    let version = requested_version.unwrap_or(ca_cert.version());

    // No duration: expire one second before the CA does.
    let mut duration = i128::from(s.get(&f.duration).nanos());
    if duration <= 0 {
        duration = i128::from(ca_cert.not_after()) * 1_000_000_000 - now - 1_000_000_000;
    }

    let (v4_networks, v6_networks) = parse_host_networks(&networks, "networks")?;
    let mut unsafe_networks = s.get(&f.unsafe_networks);
    if unsafe_networks.is_empty() {
        unsafe_networks = s.get(&f.subnets);
    }
    let (v4_unsafe, v6_unsafe) = parse_host_networks(&unsafe_networks, "unsafe-networks")?;
    let groups = split_groups(&s.get(&f.groups));

    let (public_key, private_key) = if !in_pub.is_empty() {
        let raw = read_input("in-pub", &in_pub, &mut claims)
            .map_err(|e| CliError::failed(format!("error while reading in-pub: {e}")))?;
        let (public, pub_curve, _) = unmarshal_public_key(&raw)
            .map_err(|e| CliError::failed(format!("error while parsing in-pub: {e}")))?;
        if pub_curve != curve {
            return Err(CliError::failed("curve of in-pub does not match ca"));
        }
        (public, None)
    } else {
        let (private, public) = keygen(curve);
        (public, Some(private))
    };

    if !is_stdio(&out_crt) && exists(&out_crt) {
        return Err(CliError::failed(format!(
            "refusing to overwrite existing cert: {out_crt}"
        )));
    }

    let (networks, unsafe_networks) = match version {
        Version::V1 => {
            if v4_networks.len() != 1 {
                return Err(CliError::usage(
                    "invalid -networks definition: v1 certificates can only have a single ipv4 address",
                ));
            }
            if !v6_networks.is_empty() {
                return Err(CliError::usage(
                    "invalid -networks definition: v1 certificates can only contain ipv4 addresses",
                ));
            }
            if !v6_unsafe.is_empty() {
                return Err(CliError::usage(
                    "invalid -unsafe-networks definition: v1 certificates can only contain ipv4 addresses",
                ));
            }
            (v4_networks, v4_unsafe)
        }
        Version::V2 => (
            v4_networks.into_iter().chain(v6_networks).collect(),
            v4_unsafe.into_iter().chain(v6_unsafe).collect(),
        ),
    };

    let tbs = TbsCertificate {
        version,
        name,
        networks,
        unsafe_networks,
        groups,
        is_ca: false,
        not_before: unix_secs(now),
        not_after: unix_secs(now.saturating_add(duration)),
        public_key,
        curve,
    };
    let cert = tbs
        .sign(Some(&ca_cert), &ca_key)
        .map_err(|e| CliError::failed(format!("error while signing: {e}")))?;

    if let Some(private) = private_key {
        if !is_stdio(&out_key) && exists(&out_key) {
            return Err(CliError::failed(format!(
                "refusing to overwrite existing key: {out_key}"
            )));
        }
        let key = zeroize::Zeroizing::new(marshal_private_key(curve, &private));
        write_flag_output("out-key", &out_key, key.as_bytes(), out)?;
    }
    qr::write_cert(&out_crt, &out_qr, &cert, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passwords::tests::StubReader;

    #[test]
    fn help_matches_go() {
        let want = concat!(
            "Usage of nc sign <flags>: create and sign a certificate\n",
            "  Pass \"-\" to any path flag to read from stdin or write to stdout.\n",
            "  -ca-crt string\n",
            "    \tOptional: path to the signing CA cert (default \"ca.crt\")\n",
            "  -ca-key string\n",
            "    \tOptional: path to the signing CA key (default \"ca.key\")\n",
            "  -duration duration\n",
            "    \tOptional: how long the cert should be valid for. The default is 1 second before the signing cert expires. Valid time units are seconds: \"s\", minutes: \"m\", hours: \"h\"\n",
            "  -groups string\n",
            "    \tOptional: comma separated list of groups\n",
            "  -in-pub string\n",
            "    \tOptional (if out-key not set): path to read a previously generated public key\n",
            "  -ip string\n",
            "    \tDeprecated, see -networks\n",
            "  -name string\n",
            "    \tRequired: name of the cert, usually a hostname\n",
            "  -networks string\n",
            "    \tRequired: comma separated list of ip address and network in CIDR notation to assign to this cert\n",
            "  -out-crt string\n",
            "    \tOptional: path to write the certificate to\n",
            "  -out-key string\n",
            "    \tOptional (if in-pub not set): path to write the private key to\n",
            "  -out-qr string\n",
            "    \tOptional: output a qr code image (png) of the certificate\n",
            "  -subnets string\n",
            "    \tDeprecated, see -unsafe-networks\n",
            "  -unsafe-networks string\n",
            "    \tOptional: comma separated list of ip address and network in CIDR notation. Unsafe networks this cert can route for\n",
            "  -version uint\n",
            "    \tOptional: version of the certificate format to use. The default is to match the version of the signing CA\n",
        );
        assert_eq!(help("nc"), want);
    }

    fn run_sign(a: &[&str]) -> Result<(), CliError> {
        let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let mut pr = StubReader {
            answers: vec![],
            calls: 0,
            no_terminal: false,
        };
        run(&args, &mut Vec::new(), &mut Vec::new(), &mut pr)
    }

    #[test]
    fn usage_errors_like_go() {
        let base = ["-version", "1", "-ca-crt", "./nope", "-ca-key", "./nope"];
        let cases: &[(&[&str], &str)] = &[
            (
                &["-ip", "1.1.1.1/24", "-out-key", "nope", "-out-crt", "nope"],
                "-name is required",
            ),
            (
                &["-name", "test", "-out-key", "nope", "-out-crt", "nope"],
                "-networks is required",
            ),
            (
                &[
                    "-name",
                    "test",
                    "-in-pub",
                    "nope",
                    "-ip",
                    "1.1.1.1/24",
                    "-out-crt",
                    "nope",
                    "-out-key",
                    "nope",
                ],
                "cannot set both -in-pub and -out-key",
            ),
        ];
        for (extra, msg) in cases {
            let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
            assert_eq!(run_sign(&args), Err(CliError::Usage(msg.to_string())));
        }
        assert_eq!(
            run_sign(&["-name", "t", "-networks", "10.0.0.1/8", "-version", "3"]),
            Err(CliError::Usage("-version must be either 1 or 2".into()))
        );
        assert_eq!(
            run_sign(&["-name", "t", "-networks", "10.0.0.1/8", "-ca-crt", ""]),
            Err(CliError::Usage("-ca-crt is required".into()))
        );
    }

    #[test]
    fn read_failures_like_go() {
        assert_eq!(
            run_sign(&[
                "-ca-crt",
                "./nope",
                "-ca-key",
                "./nope",
                "-name",
                "test",
                "-ip",
                "1.1.1.1/24",
                "-out-crt",
                "nope",
                "-out-key",
                "nope"
            ]),
            Err(CliError::Failed(
                "error while reading ca-key: open ./nope: no such file or directory".into()
            ))
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            run_sign(&[
                "-ca-crt",
                "./nope",
                "-ca-key",
                empty.to_str().unwrap(),
                "-name",
                "test",
                "-ip",
                "1.1.1.1/24"
            ]),
            Err(CliError::Failed(
                "error while parsing ca-key: input did not contain a valid PEM encoded block"
                    .into()
            ))
        );
    }

    #[test]
    fn stdin_conflict_before_reading() {
        assert_eq!(
            run_sign(&[
                "-ca-crt",
                "-",
                "-ca-key",
                "-",
                "-name",
                "t",
                "-ip",
                "1.1.1.1/24"
            ]),
            Err(CliError::Failed(
                "-ca-key and -ca-crt both set to \"-\", only one input may read from stdin".into()
            ))
        );
        assert_eq!(
            run_sign(&[
                "-ca-key",
                "-",
                "-name",
                "t",
                "-ip",
                "1.1.1.1/24",
                "-out-crt",
                "-",
                "-out-key",
                "-"
            ]),
            Err(CliError::Failed(
                "-out-key and -out-crt both set to \"-\", only one output may write to stdout"
                    .into()
            ))
        );
    }
}
