//! File and stdio plumbing as in Go's `cmd/nebula-cert/stdio.go` @ v1.11: `-` selects stdin/stdout,
//! at most one flag may claim each stream, outputs are created mode 0600, I/O errors read like Go's.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The path value that means stdin (inputs) or stdout (outputs).
pub const STDIO_PATH: &str = "-";

/// Printed under each mode's usage line.
pub const STDIO_HELP_TEXT: &str =
    "  Pass \"-\" to any path flag to read from stdin or write to stdout.\n";

/// Whether `path` is the stdio sentinel (and so skips "refusing to overwrite" checks).
pub fn is_stdio(path: &str) -> bool {
    path == STDIO_PATH
}

/// Which flags claimed stdin and stdout during one invocation.
#[derive(Debug, Default)]
pub struct IoClaims {
    input: Option<String>,
    output: Option<String>,
}

impl IoClaims {
    fn claim_in(&mut self, flag: &str) -> Result<(), String> {
        match &self.input {
            Some(prev) if prev != flag => Err(format!(
                "-{prev} and -{flag} both set to \"{STDIO_PATH}\", only one input may read from stdin"
            )),
            _ => {
                self.input = Some(flag.to_string());
                Ok(())
            }
        }
    }

    fn claim_out(&mut self, flag: &str) -> Result<(), String> {
        match &self.output {
            Some(prev) if prev != flag => Err(format!(
                "-{prev} and -{flag} both set to \"{STDIO_PATH}\", only one output may write to stdout"
            )),
            _ => {
                self.output = Some(flag.to_string());
                Ok(())
            }
        }
    }

    /// Claims stdin for every `(flag, path)` whose path is `-`, before anything is read.
    pub fn reserve_inputs(&mut self, pairs: &[(&str, &str)]) -> Result<(), String> {
        for (flag, path) in pairs {
            if is_stdio(path) {
                self.claim_in(flag)?;
            }
        }
        Ok(())
    }

    /// Claims stdout for every `(flag, path)` whose path is `-`, before anything is written.
    pub fn reserve_outputs(&mut self, pairs: &[(&str, &str)]) -> Result<(), String> {
        for (flag, path) in pairs {
            if is_stdio(path) {
                self.claim_out(flag)?;
            }
        }
        Ok(())
    }
}

/// Go's text for an OS error: the lowercase `strerror` without Rust's " (os error N)".
pub fn go_errno_text(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => {
            let s = io::Error::from_raw_os_error(code).to_string();
            match s.split_once(" (os error ") {
                Some((text, _)) => text.to_string(),
                None => s,
            }
        }
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Go's `*PathError` text: `open ./nope: no such file or directory`.
pub fn path_error(op: &str, path: &str, e: &io::Error) -> String {
    format!("{op} {path}: {}", go_errno_text(e))
}

/// Reads the whole input named by `path` (stdin for `-`), claiming stdin if needed.
pub fn read_input(flag: &str, path: &str, claims: &mut IoClaims) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    if is_stdio(path) {
        claims.claim_in(flag)?;
        io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| path_error("read", "/dev/stdin", &e))?;
        return Ok(buf);
    }
    let mut f = std::fs::File::open(path).map_err(|e| path_error("open", path, &e))?;
    f.read_to_end(&mut buf)
        .map_err(|e| path_error("read", path, &e))?;
    Ok(buf)
}

/// [`write_output`] for the path given to flag `flag` (`out-key`, `out-crt`, ...): a failure
/// reads `error while writing <flag>: <why>`, as Go's.
pub fn write_flag_output(
    flag: &str,
    path: &str,
    data: &[u8],
    stdout: &mut dyn Write,
) -> Result<(), crate::common::CliError> {
    write_output(path, data, stdout)
        .map_err(|e| crate::common::CliError::failed(format!("error while writing {flag}: {e}")))
}

/// Writes `data` to `path` (created 0600 if new, truncated if not), or to `stdout` for `-`.
/// The caller must have reserved stdout with [`IoClaims::reserve_outputs`].
pub fn write_output(path: &str, data: &[u8], stdout: &mut dyn Write) -> Result<(), String> {
    if is_stdio(path) {
        stdout
            .write_all(data)
            .and_then(|()| stdout.flush())
            .map_err(|e| path_error("write", "/dev/stdout", &e))?;
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| path_error("open", path, &e))?;
    f.write_all(data)
        .map_err(|e| path_error("write", path, &e))?;
    Ok(())
}

/// Whether something exists at `path` (Go's `os.Stat(path) == nil`).
pub fn exists(path: &str) -> bool {
    Path::new(path).metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stdin_claimed_once() {
        let mut c = IoClaims::default();
        c.reserve_inputs(&[("ca-key", "-"), ("ca-crt", "x"), ("in-pub", "")])
            .unwrap();
        let e = c
            .reserve_inputs(&[("ca-key", "-"), ("ca-crt", "-")])
            .unwrap_err();
        assert_eq!(
            e,
            "-ca-key and -ca-crt both set to \"-\", only one input may read from stdin"
        );
    }

    #[test]
    fn stdout_claimed_once() {
        let mut c = IoClaims::default();
        let e = c
            .reserve_outputs(&[("out-key", "-"), ("out-crt", "-"), ("out-qr", "")])
            .unwrap_err();
        assert_eq!(
            e,
            "-out-key and -out-crt both set to \"-\", only one output may write to stdout"
        );
    }

    #[test]
    fn errors_read_like_go() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(
            path_error("open", "./nope", &e),
            "open ./nope: no such file or directory"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing/x");
        let p = p.to_str().unwrap();
        assert_eq!(
            write_output(p, b"x", &mut Vec::new()).unwrap_err(),
            format!("open {p}: no such file or directory")
        );
        let d = dir.path().to_str().unwrap();
        assert_eq!(
            read_input("path", d, &mut IoClaims::default()).unwrap_err(),
            format!("read {d}: is a directory")
        );
    }

    #[test]
    fn outputs_are_0600_and_stdout_works() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let ps = p.to_str().unwrap();
        write_output(ps, b"hello", &mut Vec::new()).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(exists(ps));
        write_output(ps, b"hi", &mut Vec::new()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hi");
        let mut out = Vec::new();
        write_output("-", b"to stdout", &mut out).unwrap();
        assert_eq!(out, b"to stdout");
    }
}
