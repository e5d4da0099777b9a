//! Asking hosts for their status: `nebula-ctl status --json` over the ssh access `apply` uses,
//! several hosts at a time, each bounded in time (the ssh process is killed) and in answer size.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::apply::{ssh_common_args, ssh_destination};
use crate::error::StatusError;
use crate::model::{Host, Ssh};
use crate::status::wire::{parse_response, NodeStatus};

/// The most we read from one host (a lighthouse with 100k tunnels answers about 40 MB).
pub const MAX_ANSWER: usize = 64 << 20;
/// The most of a host's stderr we keep.
const MAX_STDERR: usize = 64 << 10;

/// One host's answer: its status and the whole response as sent, or why there is none.
pub type Answer = Result<(NodeStatus, serde_json::Value), StatusError>;

/// How to ask.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// The ssh program.
    pub ssh_program: String,
    /// Per host, for the whole exchange; ssh's own `ConnectTimeout` is half of it, so a host
    /// that does not answer is reported by ssh, and one that hangs after login is killed.
    pub timeout: Duration,
    /// Hosts asked at the same time.
    pub parallel: usize,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            ssh_program: "ssh".into(),
            timeout: Duration::from_secs(10),
            parallel: 16,
        }
    }
}

/// The command run on the host: through `sudo -n` when `apply` would use it for privileged steps
/// (`ssh.become`, by default whenever the SSH user is not root), since the control socket is
/// root's.
pub fn remote_command(ssh: &Ssh) -> &'static str {
    if ssh.become_root {
        "sudo -n nebula-ctl status --json"
    } else {
        "nebula-ctl status --json"
    }
}

/// Reads up to `limit` bytes, then drains the rest (so the writer never blocks); `true` when
/// there was more.
fn read_bounded(mut r: impl Read, limit: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let _ = (&mut r).take(limit as u64 + 1).read_to_end(&mut buf);
    let over = buf.len() > limit;
    if over {
        buf.truncate(limit);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    }
    (buf, over)
}

/// The last few non-empty lines of `bytes`, on one line, at most 300 characters.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(2);
    let mut s = lines[start..].join("; ");
    if s.chars().count() > 300 {
        s = s.chars().take(297).collect::<String>() + "...";
    }
    if s.is_empty() {
        "(nothing on stderr)".into()
    } else {
        s
    }
}

/// Decides what a finished `ssh host nebula-ctl status --json` means.
fn judge(status: ExitStatus, stdout: &[u8], over: bool, stderr: &[u8]) -> Answer {
    match status.code() {
        Some(0) if over => Err(StatusError::TooLarge { limit: MAX_ANSWER }),
        Some(0) => parse_response(stdout),
        Some(255) => Err(StatusError::Ssh {
            status: status.to_string(),
            stderr: tail(stderr),
        }),
        Some(127) => Err(StatusError::CtlMissing {
            stderr: tail(stderr),
        }),
        _ if String::from_utf8_lossy(stderr).contains("command not found") => {
            Err(StatusError::CtlMissing {
                stderr: tail(stderr),
            })
        }
        _ => match parse_response(stdout) {
            // nebula-ctl may print the node's error response before failing: it says most.
            Err(e @ StatusError::NotOk { .. }) => Err(e),
            _ => Err(StatusError::Ctl {
                status: status.to_string(),
                stderr: tail(if stderr.iter().all(u8::is_ascii_whitespace) {
                    stdout
                } else {
                    stderr
                }),
            }),
        },
    }
}

/// Asks one host.
pub fn ask_host(host: &Host, opts: &CollectOptions) -> Answer {
    let ssh = host.ssh.as_ref().ok_or(StatusError::NoSsh)?;
    let secs = opts.timeout.as_secs().max(1);
    let mut cmd = Command::new(&opts.ssh_program);
    ssh_common_args(ssh, &mut cmd, "-p");
    // After the inventory's options: ssh keeps the first value, so an operator's own wins.
    cmd.arg("-o")
        .arg(format!("ConnectTimeout={}", (secs / 2).max(1)));
    cmd.arg(ssh_destination(ssh)).arg(remote_command(ssh));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| StatusError::Spawn {
        command: opts.ssh_program.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            let _ = out_tx.send(read_bounded(out, MAX_ANSWER));
        });
    }
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            let _ = err_tx.send(read_bounded(err, MAX_STDERR).0);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StatusError::Timeout { seconds: secs });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_err(e));
            }
        }
    };
    // ssh has exited; its pipes close unless something it started still holds them.
    let grace = Duration::from_secs(2);
    let (stdout, over) = out_rx.recv_timeout(grace).unwrap_or_default();
    let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
    judge(status, &stdout, over, &stderr)
}

/// Asks every host, `opts.parallel` at a time; answers in the order of `hosts`.
pub fn ask_all(hosts: &[&Host], opts: &CollectOptions) -> Vec<Answer> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    let workers = opts.parallel.clamp(1, hosts.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(h) = hosts.get(i) else { break };
                let _ = tx.send((i, ask_host(h, opts)));
            });
        }
    });
    drop(tx);
    let mut answers: Vec<Option<Answer>> = hosts.iter().map(|_| None).collect();
    for (i, a) in rx {
        if let Some(slot) = answers.get_mut(i) {
            *slot = Some(a);
        }
    }
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or(Err(StatusError::Timeout {
                seconds: opts.timeout.as_secs(),
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn ssh(become_root: bool) -> Ssh {
        Ssh {
            host: "h".into(),
            port: 22,
            user: Some("ubuntu".into()),
            identity_file: None,
            options: Vec::new(),
            become_root,
            remote_root: None,
            systemctl: None,
        }
    }

    #[test]
    fn sudo_only_where_apply_would_use_it() {
        assert_eq!(
            remote_command(&ssh(true)),
            "sudo -n nebula-ctl status --json"
        );
        assert_eq!(remote_command(&ssh(false)), "nebula-ctl status --json");
    }

    #[test]
    fn exit_codes_and_output_become_clear_reasons() {
        let good = crate::status::wire::tests::GOOD.as_bytes();
        assert!(judge(exit(0), good, false, b"").is_ok());
        let e = judge(exit(0), good, true, b"").expect_err("too large");
        assert!(matches!(e, StatusError::TooLarge { .. }));
        let e = judge(
            exit(255),
            b"",
            false,
            b"Warning: x\nssh: connect to host 127.0.0.1 port 9: Connection refused\n",
        )
        .expect_err("ssh");
        assert_eq!(
            e.to_string(),
            "ssh failed (exit status: 255): Warning: x; ssh: connect to host 127.0.0.1 port 9: Connection refused"
        );
        let e = judge(exit(127), b"", false, b"sh: 1: nebula-ctl: not found\n").expect_err("127");
        assert!(matches!(e, StatusError::CtlMissing { .. }), "{e}");
        let e = judge(
            exit(1),
            b"",
            false,
            b"sudo: nebula-ctl: command not found\n",
        )
        .expect_err("sudo");
        assert!(matches!(e, StatusError::CtlMissing { .. }), "{e}");
        let e = judge(
            exit(1),
            b"",
            false,
            b"nebula-ctl: cannot connect to /run/nebula/control.sock: No such file or directory\n",
        )
        .expect_err("not running");
        assert_eq!(e.to_string(), "nebula-ctl failed (exit status: 1): nebula-ctl: cannot connect to /run/nebula/control.sock: No such file or directory");
        let e = judge(
            exit(1),
            br#"{"version":1,"ok":false,"error":"shutting down"}"#,
            false,
            b"",
        )
        .expect_err("error response");
        assert!(matches!(e, StatusError::NotOk { .. }), "{e}");
        let e = judge(exit(0), b"not json at all", false, b"").expect_err("garbage");
        assert!(
            e.to_string().starts_with("bad JSON from nebula-ctl: "),
            "{e}"
        );
        assert_eq!(tail(b""), "(nothing on stderr)");
        assert!(tail("x".repeat(1000).as_bytes()).len() <= 300);
    }

    #[test]
    fn reading_is_bounded() {
        let (b, over) = read_bounded(&b"0123456789"[..], 4);
        assert_eq!((b.as_slice(), over), (&b"0123"[..], true));
        let (b, over) = read_bounded(&b"0123"[..], 4);
        assert_eq!((b.as_slice(), over), (&b"0123"[..], false));
    }

    #[test]
    fn a_hanging_host_is_killed_at_the_timeout_and_others_are_not_held_up() {
        let t = tempfile::tempdir().expect("tempdir");
        // A stand-in for ssh: hangs for host "slow", answers at once for the others.
        let fake = t.path().join("fake-ssh");
        let good = crate::status::wire::tests::GOOD.replace('\n', " ");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in *@slow|slow) exec sleep 30;; esac; done\nprintf '%s' '{good}'\n"
            ),
        )
        .expect("fake ssh");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mesh = crate::testutil::mesh_in(t.path(), crate::testutil::INV);
        let mut hosts: Vec<Host> = mesh.hosts.clone();
        for (i, h) in hosts.iter_mut().enumerate() {
            let mut s = ssh(false);
            s.host = if i == 0 { "slow" } else { "fast" }.into();
            h.ssh = Some(s);
        }
        let refs: Vec<&Host> = hosts.iter().collect();
        let opts = CollectOptions {
            ssh_program: fake.display().to_string(),
            timeout: Duration::from_secs(1),
            parallel: 2,
        };
        let started = Instant::now();
        let answers = ask_all(&refs, &opts);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(
            matches!(answers[0], Err(StatusError::Timeout { seconds: 1 })),
            "{:?}",
            answers[0].as_ref().err()
        );
        for a in &answers[1..] {
            assert!(a.is_ok(), "{:?}", a.as_ref().err());
        }
    }
}
