//! Passphrases for encrypted CA keys: `NEBULA_CA_PASSPHRASE`, or the terminal on stdin with echo off,
//! re-prompting up to 5 times on an empty answer (Go's `passwords.go` and the loops in ca.go/sign.go).

use std::io::{self, BufRead, IsTerminal, Write};
use std::os::fd::AsFd;

use rustix::termios::{self, LocalModes, OptionalActions};
use zeroize::Zeroizing;

/// The environment variable Go's `nebula-cert` reads the CA passphrase from.
pub const PASSPHRASE_ENV: &str = "NEBULA_CA_PASSPHRASE";

/// How many times an empty passphrase is asked for again.
pub const PROMPT_TRIES: usize = 5;

/// The prompt Go prints (on stderr).
pub const PROMPT: &str = "Enter passphrase: ";

/// The confirmation prompt for a new passphrase (`ca -encrypt` at a terminal).
pub const CONFIRM_PROMPT: &str = "Confirm passphrase: ";

/// Why a passphrase could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Stdin is not a terminal (Go's `ErrNoTerminal`).
    NoTerminal,
    /// Reading failed, or stdin ended before a line.
    Io(String),
}

/// A source of passphrases typed by a person.
pub trait PasswordReader {
    /// Reads one line without echo.
    /// The answer is wiped when dropped.
    fn read_password(&mut self) -> Result<Zeroizing<Vec<u8>>, ReadError>;
}

/// Reads from stdin when it is a terminal, with echo turned off for the duration of the read.
pub struct TerminalPasswordReader;

impl PasswordReader for TerminalPasswordReader {
    fn read_password(&mut self) -> Result<Zeroizing<Vec<u8>>, ReadError> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Err(ReadError::NoTerminal);
        }
        let fd = stdin.as_fd();
        let saved = termios::tcgetattr(fd).map_err(|e| ReadError::Io(e.to_string()))?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet
            .local_modes
            .insert(LocalModes::ICANON | LocalModes::ISIG);
        termios::tcsetattr(fd, OptionalActions::Now, &quiet)
            .map_err(|e| ReadError::Io(e.to_string()))?;
        // Room for any passphrase a person types, so the line is not reallocated (which would
        // leave an unwiped copy) unless it is longer than that.
        let mut line = Zeroizing::new(Vec::with_capacity(1024));
        let read = stdin.lock().read_until(b'\n', &mut line);
        // Restore echo whatever happened; a failure here cannot be reported more usefully.
        let _ = termios::tcsetattr(fd, OptionalActions::Now, &saved);
        // Echo is off, so the user's Enter did not move the cursor: end the prompt line.
        let _ = writeln!(io::stderr());
        match read {
            Ok(0) => Err(ReadError::Io("EOF".into())),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Ok(line)
            }
            Err(e) => Err(ReadError::Io(e.to_string())),
        }
    }
}

/// The passphrase from `NEBULA_CA_PASSPHRASE`, if set and not empty.
pub fn passphrase_from_env() -> Option<Zeroizing<Vec<u8>>> {
    std::env::var_os(PASSPHRASE_ENV)
        .filter(|v| !v.is_empty())
        .map(|v| Zeroizing::new(v.into_encoded_bytes()))
}

/// Messages for the ways prompting can fail; they differ between `ca` and `sign` as in Go.
pub struct PromptMessages {
    /// When stdin is not a terminal.
    pub no_terminal: &'static str,
    /// Prefix for a read error (`<prefix>: <error>`).
    pub read_error: &'static str,
    /// When every try gave an empty answer.
    pub none_given: &'static str,
}

/// Prompts on `errout` until a non-empty passphrase is typed, at most [`PROMPT_TRIES`] times.
pub fn prompt_passphrase(
    reader: &mut dyn PasswordReader,
    errout: &mut dyn Write,
    msgs: &PromptMessages,
) -> Result<Zeroizing<Vec<u8>>, String> {
    for _ in 0..PROMPT_TRIES {
        let _ = errout.write_all(PROMPT.as_bytes());
        let _ = errout.flush();
        match reader.read_password() {
            Ok(p) if !p.is_empty() => return Ok(p),
            Ok(_) => continue,
            Err(ReadError::NoTerminal) => return Err(msgs.no_terminal.to_string()),
            Err(ReadError::Io(e)) => return Err(format!("{}: {e}", msgs.read_error)),
        }
    }
    Err(msgs.none_given.to_string())
}

/// Asks for the new passphrase a second time and checks both match.
pub fn confirm_passphrase(
    reader: &mut dyn PasswordReader,
    errout: &mut dyn Write,
    first: &[u8],
    msgs: &PromptMessages,
) -> Result<(), String> {
    let _ = errout.write_all(CONFIRM_PROMPT.as_bytes());
    let _ = errout.flush();
    match reader.read_password() {
        Ok(p) if p.as_slice() == first => Ok(()),
        Ok(_) => Err("passphrases did not match, nothing was written".to_string()),
        Err(ReadError::NoTerminal) => Err(msgs.no_terminal.to_string()),
        Err(ReadError::Io(e)) => Err(format!("{}: {e}", msgs.read_error)),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Replays canned answers; counts calls.
    pub struct StubReader {
        pub answers: Vec<Result<Vec<u8>, &'static str>>,
        pub calls: usize,
        pub no_terminal: bool,
    }

    impl PasswordReader for StubReader {
        fn read_password(&mut self) -> Result<Zeroizing<Vec<u8>>, ReadError> {
            self.calls += 1;
            if self.no_terminal {
                return Err(ReadError::NoTerminal);
            }
            match self.answers.get(self.calls - 1) {
                Some(Ok(p)) => Ok(Zeroizing::new(p.clone())),
                Some(Err(e)) => Err(ReadError::Io(e.to_string())),
                None => Ok(Zeroizing::new(Vec::new())),
            }
        }
    }

    const MSGS: PromptMessages = PromptMessages {
        no_terminal: "no terminal",
        read_error: "error reading passphrase",
        none_given: "none given",
    };

    fn stub(answers: Vec<Result<Vec<u8>, &'static str>>) -> StubReader {
        StubReader {
            answers,
            calls: 0,
            no_terminal: false,
        }
    }

    #[test]
    fn first_non_empty_answer_wins() {
        let mut r = stub(vec![Ok(vec![]), Ok(b"pw".to_vec())]);
        let mut err = Vec::new();
        assert_eq!(*prompt_passphrase(&mut r, &mut err, &MSGS).unwrap(), b"pw");
        assert_eq!(String::from_utf8(err).unwrap(), PROMPT.repeat(2));
    }

    #[test]
    fn gives_up_after_five_empty_answers() {
        let mut r = stub(vec![]);
        let mut err = Vec::new();
        assert_eq!(
            prompt_passphrase(&mut r, &mut err, &MSGS).unwrap_err(),
            "none given"
        );
        assert_eq!(r.calls, 5);
        assert_eq!(String::from_utf8(err).unwrap(), PROMPT.repeat(5));
    }

    #[test]
    fn read_errors_and_no_terminal() {
        let mut r = stub(vec![Err("stub error")]);
        assert_eq!(
            prompt_passphrase(&mut r, &mut Vec::new(), &MSGS).unwrap_err(),
            "error reading passphrase: stub error"
        );
        let mut r = stub(vec![]);
        r.no_terminal = true;
        assert_eq!(
            prompt_passphrase(&mut r, &mut Vec::new(), &MSGS).unwrap_err(),
            "no terminal"
        );
        assert_eq!(r.calls, 1);
    }

    #[test]
    fn confirmation() {
        let mut r = stub(vec![Ok(b"pw".to_vec())]);
        assert!(confirm_passphrase(&mut r, &mut Vec::new(), b"pw", &MSGS).is_ok());
        let mut r = stub(vec![Ok(b"px".to_vec())]);
        assert!(confirm_passphrase(&mut r, &mut Vec::new(), b"pw", &MSGS).is_err());
    }
}
