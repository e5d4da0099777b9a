//! The `nebula-cert` command, a drop-in for Go's `nebula-cert` 1.11: global flags, mode dispatch,
//! help texts, error reporting and exit codes (`cmd/nebula-cert/main.go`); each mode has its own module.
#![forbid(unsafe_code)]

mod ca;
mod common;
mod keygen;
mod passwords;
mod print;
mod qr;
mod sign;
mod stdio;
mod verify;

use std::io::{self, Write};

use common::CliError;
use goflag::FlagSet;
use passwords::TerminalPasswordReader;

fn main() {
    let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let argv0 = argv.next().unwrap_or_else(|| "nebula-cert".to_string());
    let args: Vec<String> = argv.collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut err = io::stderr();
    let code = run(&argv0, &args, &mut out, &mut err);
    let _ = out.flush();
    std::process::exit(code);
}

/// The global usage text (Go's `help`), preceded by `Error: <msg>` and a blank line when `msg` is set.
fn help(msg: &str, argv0: &str) -> String {
    let mut s = String::new();
    if !msg.is_empty() {
        s.push_str(&format!("Error: {msg}\n\n"));
    }
    s.push_str(&format!("Usage of {argv0} <global flags> <mode>:\n"));
    s.push_str("  Global flags:\n");
    s.push_str("    -version: Prints the version\n");
    s.push_str("    -h, -help: Prints this help message\n");
    s.push('\n');
    s.push_str("  Modes:\n");
    for summary in [
        ca::summary(),
        keygen::summary(),
        sign::summary(),
        print::summary(),
        verify::summary(),
    ] {
        s.push_str(&format!("    {summary}\n"));
    }
    s.push('\n');
    s.push_str(&format!(
        "  To see usage for a given mode, use {argv0} <mode> -h\n"
    ));
    s
}

/// A mode's usage text, or nothing for an unknown mode (as Go).
fn mode_help(mode: &str, argv0: &str) -> String {
    match mode {
        "ca" => ca::help(argv0),
        "keygen" => keygen::help(argv0),
        "sign" => sign::help(argv0),
        "print" => print::help(argv0),
        "verify" => verify::help(argv0),
        _ => String::new(),
    }
}

/// Prints a mode's error the way Go's `handleError` does and returns the exit code.
fn handle_error(mode: &str, e: &CliError, argv0: &str, errout: &mut dyn Write) -> i32 {
    let _ = match e {
        CliError::HelpRequested => write!(errout, "{}", mode_help(mode, argv0)),
        CliError::Usage(msg) if msg.is_empty() => write!(errout, "{}", mode_help(mode, argv0)),
        CliError::Usage(msg) => write!(errout, "Error: {msg}\n{}", mode_help(mode, argv0)),
        // Go's flag package prints the bare message itself before nebula-cert adds "Error:".
        CliError::Flag(msg) => write!(errout, "{msg}\nError: {msg}\n"),
        CliError::Failed(msg) => writeln!(errout, "Error: {msg}"),
    };
    match e {
        CliError::HelpRequested => 0,
        _ => 1,
    }
}

/// Runs the command with `args` (without the program name); returns the exit code.
fn run(argv0: &str, args: &[String], out: &mut dyn Write, errout: &mut dyn Write) -> i32 {
    let mut global = FlagSet::new(argv0);
    let version = global.bool("version", false, "Print version");
    let help_long = global.bool("help", false, "Print command line usage");
    let help_short = global.bool("h", false, "Print command line usage");
    if let Err(e) = global.parse(args) {
        // Go's CommandLine set prints the error, then its Usage prints the help and exits 1.
        let _ = write!(errout, "{e}\n{}", help("", argv0));
        return 1;
    }
    let print_usage = global.get(&help_long) || global.get(&help_short);

    if global.get(&version) {
        let _ = writeln!(out, "Version: {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }

    let rest = global.args();
    let Some((mode, mode_args)) = rest.split_first() else {
        if print_usage {
            let _ = write!(errout, "{}", help("", argv0));
            return 0;
        }
        let _ = write!(errout, "{}", help("No mode was provided", argv0));
        return 1;
    };
    if print_usage {
        handle_error(mode, &CliError::Usage(String::new()), argv0, errout);
        return 0;
    }

    let mut pr = TerminalPasswordReader;
    let result = match mode.as_str() {
        "ca" => ca::run(mode_args, out, errout, &mut pr),
        "keygen" => keygen::run(mode_args, out),
        "sign" => sign::run(mode_args, out, errout, &mut pr),
        "print" => print::run(mode_args, out),
        "verify" => verify::run(mode_args),
        other => Err(CliError::failed(format!("unknown mode: {other}"))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => handle_error(mode, &e, argv0, errout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_str(args: &[&str]) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run("nc", &args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    const GLOBAL_HELP: &str = concat!(
        "Usage of nc <global flags> <mode>:\n",
        "  Global flags:\n",
        "    -version: Prints the version\n",
        "    -h, -help: Prints this help message\n",
        "\n",
        "  Modes:\n",
        "    ca <flags>: create a self signed certificate authority\n",
        "    keygen <flags>: create a public/private key pair. the public key can be passed to `nebula-cert sign`\n",
        "    sign <flags>: create and sign a certificate\n",
        "    print <flags>: prints details about a certificate\n",
        "    verify <flags>: verifies a certificate isn't expired and was signed by a trusted authority.\n",
        "\n",
        "  To see usage for a given mode, use nc <mode> -h\n",
    );

    #[test]
    fn global_help_matches_go() {
        assert_eq!(help("", "nc"), GLOBAL_HELP);
        assert_eq!(
            help("test error", "nc"),
            format!("Error: test error\n\n{GLOBAL_HELP}")
        );
    }

    #[test]
    fn no_mode() {
        assert_eq!(
            run_str(&[]),
            (
                1,
                String::new(),
                format!("Error: No mode was provided\n\n{GLOBAL_HELP}")
            )
        );
        assert_eq!(
            run_str(&["-h"]),
            (0, String::new(), GLOBAL_HELP.to_string())
        );
        assert_eq!(
            run_str(&["-help"]),
            (0, String::new(), GLOBAL_HELP.to_string())
        );
    }

    #[test]
    fn version() {
        assert_eq!(
            run_str(&["-version"]),
            (
                0,
                format!("Version: {}\n", env!("CARGO_PKG_VERSION")),
                String::new()
            )
        );
        assert_eq!(run_str(&["-version", "ca"]).0, 0);
    }

    #[test]
    fn unknown_global_flag() {
        assert_eq!(
            run_str(&["-x"]),
            (
                1,
                String::new(),
                format!("flag provided but not defined: -x\n{GLOBAL_HELP}")
            )
        );
    }

    #[test]
    fn unknown_mode() {
        assert_eq!(
            run_str(&["nope"]),
            (1, String::new(), "Error: unknown mode: nope\n".to_string())
        );
        assert_eq!(run_str(&["-h", "nope"]), (0, String::new(), String::new()));
    }

    #[test]
    fn mode_help_requests() {
        let (code, out, err) = run_str(&["-h", "verify"]);
        assert_eq!((code, out.as_str()), (0, ""));
        assert_eq!(err, verify::help("nc"));
        let (code, _, err) = run_str(&["verify", "-h"]);
        assert_eq!(code, 0);
        assert_eq!(err, verify::help("nc"));
        let (code, _, err) = run_str(&["verify", "--help"]);
        assert_eq!(code, 0);
        assert_eq!(err, verify::help("nc"));
    }

    #[test]
    fn mode_errors() {
        let (code, _, err) = run_str(&["verify", "-x"]);
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "flag provided but not defined: -x\nError: flag provided but not defined: -x\n"
        );
        let (code, _, err) = run_str(&["verify", "-ca", "x"]);
        assert_eq!(code, 1);
        assert_eq!(
            err,
            format!("Error: -crt is required\n{}", verify::help("nc"))
        );
    }

    #[test]
    fn handle_error_like_go() {
        let mut buf = Vec::new();
        assert_eq!(
            handle_error("", &CliError::failed("test error"), "nc", &mut buf),
            1
        );
        assert_eq!(String::from_utf8(buf).unwrap(), "Error: test error\n");
        for mode in ["ca", "keygen", "sign", "print", "verify"] {
            let mut buf = Vec::new();
            handle_error(mode, &CliError::usage("test error"), "nc", &mut buf);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                format!("Error: test error\n{}", mode_help(mode, "nc"))
            );
        }
    }
}
