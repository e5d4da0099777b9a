//! The debug console's commands (Go Nebula 1.11's `sshd` command set): the table, line splitting,
//! Go-style flags, dispatch, tab completion, and each command's output (text and Go's JSON).
//!
//! Commands read the engine through [`Plane::with_engine`] and copy what they print out of it
//! ([`nebula_core::engine::inspect`]); nothing here holds the engine while writing.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use goflag::{FlagError, FlagSet};
use ipnet::IpNet;
use nebula_core::engine::inspect::{AddrCache, CreateTunnel, HostView, RelayView};
use nebula_core::engine::Outputs;
use serde::Serialize;
use serde_json::Value;

use crate::logctl;
use crate::plane::Plane;

/// What a command needs from the node besides the engine.
pub struct Context<'a> {
    pub plane: &'a Plane,
    /// The TUN device's name ("" when `tun.disabled`) and our networks.
    pub device_name: String,
    pub networks: Vec<IpNet>,
    /// Sends the outputs a command made (close, create, query) to the network.
    pub flush: &'a dyn Fn(&mut Outputs),
    /// Asks the node to reload its config, as SIGHUP does.
    pub reload: &'a dyn Fn(),
    /// `sshd.sandbox_dir` (`None`: Go's `$TMP/nebula-debug`).
    pub sandbox_dir: Option<PathBuf>,
}

/// What the session does after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Continue,
    /// `logout`: end the session.
    Logout,
}

type Run = fn(&Context<'_>, &FlagSet, &[String], &mut Vec<u8>);

/// One command of the console.
pub struct Command {
    pub name: &'static str,
    pub short: &'static str,
    pub help: &'static str,
    /// Bool flags (name, usage) and string flags (name, usage).
    bools: &'static [(&'static str, &'static str)],
    strings: &'static [(&'static str, &'static str)],
    run: Run,
}

impl Command {
    fn flags(&self) -> FlagSet {
        let mut fs = FlagSet::new("");
        for (n, u) in self.bools {
            fs.bool(n, false, u);
        }
        for (n, u) in self.strings {
            fs.string(n, "", u);
        }
        fs
    }
}

const HOSTMAP_FLAGS: &[(&str, &str)] = &[
    ("json", "outputs as json with more information"),
    ("pretty", "pretty prints json, assumes -json"),
    (
        "by-index",
        "gets all hosts in the hostmap from the index table",
    ),
];
const JSON_FLAGS: &[(&str, &str)] = &[
    ("json", "outputs as json with more information"),
    ("pretty", "pretty prints json, assumes -json"),
];
const PRETTY: &[(&str, &str)] = &[("pretty", "pretty prints json")];
const PROFILE_ANSWER: &str = "Go runtime profiling is not available in this implementation \
                              (a Rust build has no pprof); try `memory-summary` for the engine's \
                              table sizes";

/// Every command, `help` and `logout` included.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "block-profile-rate",
        short: "Go's block profiling: not available in this implementation",
        help: "",
        bools: &[],
        strings: &[],
        run: not_available,
    },
    Command {
        name: "change-remote",
        short: "Changes the remote address used in the tunnel for the provided vpn addr",
        help: "",
        bools: &[],
        strings: &[("address", "The new remote address, ip:port")],
        run: change_remote,
    },
    Command {
        name: "close-tunnel",
        short: "Closes a tunnel for the provided vpn addr",
        help: "",
        bools: &[(
            "local-only",
            "Disables notifying the remote that the tunnel is shutting down",
        )],
        strings: &[],
        run: close_tunnel,
    },
    Command {
        name: "create-tunnel",
        short: "Creates a tunnel for the provided vpn address",
        help: "The lighthouses will be queried for real addresses but you can provide one as well.",
        bools: &[],
        strings: &[(
            "address",
            "Optionally provide a real remote address, ip:port ",
        )],
        run: create_tunnel,
    },
    Command {
        name: "device-info",
        short: "Prints information about the network device.",
        help: "",
        bools: JSON_FLAGS,
        strings: &[],
        run: device_info,
    },
    Command {
        name: "help",
        short: "prints available commands or help <command> for specific usage info",
        help: "",
        bools: &[],
        strings: &[],
        run: help,
    },
    Command {
        name: "list-hostmap",
        short: "List all known previously connected hosts",
        help: "",
        bools: HOSTMAP_FLAGS,
        strings: &[],
        run: list_hostmap,
    },
    Command {
        name: "list-lighthouse-addrmap",
        short: "List all lighthouse map entries",
        help: "",
        bools: JSON_FLAGS,
        strings: &[],
        run: list_lighthouse_addrmap,
    },
    Command {
        name: "list-pending-hostmap",
        short: "List all handshaking hosts",
        help: "",
        bools: HOSTMAP_FLAGS,
        strings: &[],
        run: list_pending_hostmap,
    },
    Command {
        name: "log-format",
        short: "Gets or sets the current log format",
        help: "",
        bools: &[],
        strings: &[],
        run: log_format,
    },
    Command {
        name: "log-level",
        short: "Gets or sets the current log level",
        help: "",
        bools: &[],
        strings: &[],
        run: log_level,
    },
    Command {
        name: "logout",
        short: "Ends the current session",
        help: "",
        bools: &[],
        strings: &[],
        run: |_, _, _, _| {},
    },
    Command {
        name: "memory-summary",
        short: "Prints the sizes of the engine's tables (what this implementation offers instead of Go's heap profiles)",
        help: "",
        bools: &[],
        strings: &[],
        run: memory_summary,
    },
    Command {
        name: "mutex-profile-fraction",
        short: "Go's runtime.SetMutexProfileFraction: not available in this implementation",
        help: "",
        bools: &[],
        strings: &[],
        run: not_available,
    },
    Command {
        name: "print-cert",
        short: "Prints the current certificate being used or the certificate for the provided vpn addr",
        help: "",
        bools: &[
            ("json", "outputs as json"),
            ("pretty", "pretty prints json, assumes -json"),
            (
                "raw",
                "raw prints the PEM encoded certificate, not compatible with -json or -pretty",
            ),
        ],
        strings: &[],
        run: print_cert,
    },
    Command {
        name: "print-relays",
        short: "Prints json details about all relay info",
        help: "",
        bools: PRETTY,
        strings: &[],
        run: print_relays,
    },
    Command {
        name: "print-tunnel",
        short: "Prints json details about a tunnel for the provided vpn addr",
        help: "",
        bools: PRETTY,
        strings: &[],
        run: print_tunnel,
    },
    Command {
        name: "query-lighthouse",
        short: "Query the lighthouses for the provided vpn address",
        help: "This command is asynchronous. Only currently known udp addresses will be printed.",
        bools: &[],
        strings: &[],
        run: query_lighthouse,
    },
    Command {
        name: "reload",
        short: "Reloads configuration from disk, same as sending HUP to the process",
        help: "",
        bools: &[],
        strings: &[],
        run: reload,
    },
    Command {
        name: "save-heap-profile",
        short: "Go's heap profile: not available in this implementation",
        help: "",
        bools: &[],
        strings: &[],
        run: not_available,
    },
    Command {
        name: "save-mutex-profile",
        short: "Go's mutex profile: not available in this implementation",
        help: "",
        bools: &[],
        strings: &[],
        run: not_available,
    },
    Command {
        name: "start-cpu-profile",
        short: "Go's cpu profile: not available in this implementation",
        help: "",
        bools: &[],
        strings: &[],
        run: not_available,
    },
    Command {
        name: "stop-cpu-profile",
        short: "Go's cpu profile: not available in this implementation",
        help: "",
        bools: &[],
        strings: &[],
        run: not_available,
    },
    Command {
        name: "version",
        short: "Prints the currently running version of nebula",
        help: "",
        bools: &[],
        strings: &[],
        run: |_, _, _, w| line(w, env!("CARGO_PKG_VERSION")),
    },
];

/// The command named exactly `name`.
pub fn lookup(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Command names starting with `prefix`, sorted (tab completion).
pub fn complete(prefix: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = COMMANDS
        .iter()
        .map(|c| c.name)
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort_unstable();
    v
}

fn line(w: &mut Vec<u8>, s: &str) {
    w.extend_from_slice(s.as_bytes());
    w.push(b'\n');
}

/// Split a command line as a POSIX shell would (quotes and backslashes); `None` for an
/// unterminated quote or a trailing backslash.
pub fn split_line(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => cur.push(x),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            x @ ('"' | '\\' | '$' | '`') => cur.push(x),
                            '\n' => {}
                            x => {
                                cur.push('\\');
                                cur.push(x);
                            }
                        },
                        x => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => {}
                    x => cur.push(x),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

fn dump_commands(w: &mut Vec<u8>) {
    line(w, "Available commands:");
    let mut cmds: Vec<String> = COMMANDS
        .iter()
        .map(|c| format!("{} - {}", c.name, c.short))
        .collect();
    cmds.sort();
    w.extend_from_slice(cmds.join("\n").as_bytes());
    w.extend_from_slice(b"\n\n");
}

/// Run one command line, writing what it prints to `w`.
pub fn dispatch(ctx: &Context<'_>, text: &str, w: &mut Vec<u8>) -> After {
    let Some(args) = split_line(text) else {
        return After::Continue;
    };
    let Some(first) = args.first() else {
        dump_commands(w);
        return After::Continue;
    };
    let Some(cmd) = lookup(first) else {
        line(w, &format!("did not understand: {text}"));
        dump_commands(w);
        return After::Continue;
    };
    if args.iter().any(|a| a == "-h" || a == "-help") {
        help(ctx, &FlagSet::new(""), &[cmd.name.to_string()], w);
        return After::Continue;
    }
    if cmd.name == "logout" {
        return After::Logout;
    }
    let mut fs = cmd.flags();
    match fs.parse(&args[1..]) {
        Ok(()) => {}
        Err(FlagError::Help) => {
            help(ctx, &fs, &[cmd.name.to_string()], w);
            return After::Continue;
        }
        Err(e) => {
            // Go's flag package with ContinueOnError: the error, then the usage.
            line(w, &e.to_string());
            line(w, "Usage:");
            w.extend_from_slice(fs.print_defaults().as_bytes());
            return After::Continue;
        }
    }
    let rest: Vec<String> = fs.args().to_vec();
    (cmd.run)(ctx, &fs, &rest, w);
    After::Continue
}

fn flag(fs: &FlagSet, name: &str) -> bool {
    matches!(fs.lookup(name), Some(v) if v.go_string() == "true")
}

fn flag_str(fs: &FlagSet, name: &str) -> String {
    fs.lookup(name).map(|v| v.go_string()).unwrap_or_default()
}

fn help(_: &Context<'_>, _: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let Some(name) = a.first() else {
        dump_commands(w);
        return;
    };
    let Some(cmd) = lookup(name) else {
        line(w, &format!("Command not available {name}"));
        return;
    };
    line(w, &format!("{} - {}", cmd.name, cmd.short));
    if !cmd.help.is_empty() {
        line(w, &format!("  {}", cmd.help));
    }
    if !cmd.bools.is_empty() || !cmd.strings.is_empty() {
        w.extend_from_slice(cmd.flags().print_defaults().as_bytes());
    }
}

fn not_available(_: &Context<'_>, _: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    line(w, PROFILE_ANSWER);
}

fn log_level(_: &Context<'_>, _: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let Some(now) = logctl::level() else {
        line(w, "Log level is not reconfigurable on this logger");
        return;
    };
    if let Some(want) = a.first() {
        match logctl::parse_level(&want.to_lowercase()) {
            Some(l) => {
                logctl::set_level(l);
            }
            None => {
                line(
                    w,
                    &format!(
                        "Unknown log level {}. Possible log levels: trace, debug, info, warn, error",
                        go_list(a)
                    ),
                );
                return;
            }
        }
    }
    let level = logctl::level().unwrap_or(now);
    line(w, &format!("Log level is: {}", logctl::level_name(level)));
}

fn log_format(_: &Context<'_>, _: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let Some(format) = logctl::format() else {
        line(w, "Log format is not reconfigurable on this logger");
        return;
    };
    if a.first().is_some_and(|f| f.to_lowercase() != format) {
        line(
            w,
            "Changing the log format at run time is not available in this implementation",
        );
    }
    line(w, &format!("Log format is: {format}"));
}

fn reload(ctx: &Context<'_>, _: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    line(w, "Reloading config");
    (ctx.reload)();
}

/// Parse the vpn address argument, writing Go's message when missing or bad. `noun`: Go says
/// "vpn address" in some commands and "vpn addr" in others.
fn vpn_arg(a: &[String], noun: &str, w: &mut Vec<u8>) -> Option<IpAddr> {
    let Some(s) = a.first() else {
        line(w, "No vpn address was provided");
        return None;
    };
    match s.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            line(w, &format!("The provided {noun} could not be parsed: {s}"));
            None
        }
    }
}

/// Go's `encoding/json` Encoder: HTML-safe escapes, optional four-space indent, newline after.
pub fn go_json<T: Serialize>(v: &T, pretty: bool) -> Vec<u8> {
    let text = if pretty {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        match v.serialize(&mut ser) {
            Ok(()) => String::from_utf8(buf).unwrap_or_default(),
            Err(_) => String::new(),
        }
    } else {
        serde_json::to_string(v).unwrap_or_default()
    };
    // Those characters appear in serde's output only inside strings, where an escape is the
    // same value: Go writes them escaped.
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out.into_bytes()
}

/// Go's `ControlHostInfo`, field for field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostJson {
    vpn_addrs: Vec<IpAddr>,
    local_index: u32,
    remote_index: u32,
    remote_addrs: Vec<SocketAddr>,
    cert: Value,
    message_counter: u64,
    current_remote: String,
    current_relays_to_me: Vec<IpAddr>,
    current_relays_through_me: Vec<IpAddr>,
}

impl From<&HostView> for HostJson {
    fn from(h: &HostView) -> HostJson {
        HostJson {
            vpn_addrs: h.vpn_addrs.clone(),
            local_index: h.local_index,
            remote_index: h.remote_index,
            remote_addrs: h.remote_addrs.clone(),
            cert: h.cert.as_ref().map(|c| c.to_json()).unwrap_or(Value::Null),
            message_counter: h.message_counter,
            current_remote: h.current_remote.map(|a| a.to_string()).unwrap_or_default(),
            current_relays_to_me: h.relays_to_me.clone(),
            current_relays_through_me: h.relays_through_me.clone(),
        }
    }
}

/// Go's `%s` of a slice: `[a b c]`.
fn go_list<T: std::fmt::Display>(v: &[T]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(" "))
}

/// The host list the `list-*hostmap` commands print.
pub fn write_hosts(hosts: &[HostView], fs: &FlagSet, w: &mut Vec<u8>) {
    if flag(fs, "json") || flag(fs, "pretty") {
        let js: Vec<HostJson> = hosts.iter().map(HostJson::from).collect();
        w.extend(go_json(&js, flag(fs, "pretty")));
    } else {
        for h in hosts {
            line(
                w,
                &format!("{}: {}", go_list(&h.vpn_addrs), go_list(&h.remote_addrs)),
            );
        }
    }
}

fn list_hostmap(ctx: &Context<'_>, fs: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    let by_index = flag(fs, "by-index");
    let hosts = ctx.plane.with_engine(|e| e.host_views(by_index));
    write_hosts(&hosts, fs, w);
}

fn list_pending_hostmap(ctx: &Context<'_>, fs: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    let hosts = ctx.plane.with_engine(|e| e.pending_views());
    write_hosts(&hosts, fs, w);
}

/// One entry of Go's `CacheMap` (`learned`/`reported` left out when empty, as Go's omitempty).
#[derive(Serialize)]
struct CacheJson {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    learned: Vec<SocketAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reported: Vec<SocketAddr>,
    relay: Vec<IpAddr>,
}

/// Go's `CacheMap`: owner (as text) -> what it told us; sources of one owner merged.
pub fn cache_map(caches: &[AddrCache]) -> std::collections::BTreeMap<String, impl Serialize> {
    let mut m: std::collections::BTreeMap<String, CacheJson> = std::collections::BTreeMap::new();
    for c in caches {
        let e = m.entry(c.owner.to_string()).or_insert_with(|| CacheJson {
            learned: Vec::new(),
            reported: Vec::new(),
            relay: Vec::new(),
        });
        e.learned.extend(c.learned.iter().copied());
        e.reported.extend(c.reported.iter().copied());
        e.relay.extend(c.relays.iter().copied());
    }
    m
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LighthouseInfo<M: Serialize> {
    vpn_addr: String,
    addrs: M,
}

fn list_lighthouse_addrmap(ctx: &Context<'_>, fs: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    let map = ctx.plane.with_engine(|e| e.addr_map());
    let mut entries: Vec<_> = map
        .iter()
        .map(|(vpn, caches)| LighthouseInfo {
            vpn_addr: vpn.to_string(),
            addrs: cache_map(caches),
        })
        .collect();
    // Go sorts by the address's text.
    entries.sort_by(|a, b| a.vpn_addr.cmp(&b.vpn_addr));
    if flag(fs, "json") || flag(fs, "pretty") {
        w.extend(go_json(&entries, flag(fs, "pretty")));
    } else {
        for e in &entries {
            let mut js = go_json(&e.addrs, false);
            js.pop();
            line(
                w,
                &format!("{}: {}", e.vpn_addr, String::from_utf8_lossy(&js)),
            );
        }
    }
}

fn print_cert(ctx: &Context<'_>, fs: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let cert = if a.is_empty() {
        ctx.plane.with_engine(|e| {
            let pki = e.pki();
            pki.cert(pki.initiating_version()).map(|c| (**c).clone())
        })
    } else {
        let Ok(vpn) = a[0].parse::<IpAddr>() else {
            line(
                w,
                &format!("The provided vpn addr could not be parsed: {}", a[0]),
            );
            return;
        };
        match ctx.plane.with_engine(|e| e.peer_cert(&vpn).cloned()) {
            Some(c) => Some(c),
            None => {
                line(w, &format!("Could not find tunnel for vpn addr: {}", a[0]));
                return;
            }
        }
    };
    let Some(cert) = cert else {
        return;
    };
    if flag(fs, "json") || flag(fs, "pretty") {
        let mut b = go_json(&cert.to_json(), flag(fs, "pretty"));
        // Go writes the certificate's MarshalJSON bytes as they are: no newline after.
        b.pop();
        w.extend(b);
        return;
    }
    if flag(fs, "raw") {
        w.extend_from_slice(cert.marshal_pem().as_bytes());
        return;
    }
    line(w, &cert.to_string());
}

fn print_tunnel(ctx: &Context<'_>, fs: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let Some(vpn) = vpn_arg(a, "vpn addr", w) else {
        return;
    };
    match ctx.plane.with_engine(|e| e.host_view_for(&vpn)) {
        Some(h) => w.extend(go_json(&HostJson::from(&h), flag(fs, "pretty"))),
        None => line(w, &format!("Could not find tunnel for vpn addr: {}", a[0])),
    }
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct RelayFor {
    Error: Option<Value>,
    Type: &'static str,
    State: &'static str,
    PeerAddr: IpAddr,
    LocalIndex: u32,
    RemoteIndex: u32,
    RelayedThrough: Option<Vec<IpAddr>>,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct RelayOutput {
    NebulaAddr: IpAddr,
    RelayForAddrs: Vec<RelayFor>,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct RelaysJson {
    Relays: Option<Vec<RelayOutput>>,
}

/// `print-relays`: our relay indexes grouped by the host whose tunnel carries them.
pub fn relays_json(relays: &[RelayView]) -> impl Serialize {
    let mut out: Vec<RelayOutput> = Vec::new();
    for r in relays {
        let rf = RelayFor {
            Error: None,
            Type: if r.forwarding {
                "forwarding"
            } else {
                "terminal"
            },
            State: if r.established {
                "established"
            } else {
                "requested"
            },
            PeerAddr: r.peer,
            LocalIndex: r.local_index,
            RemoteIndex: r.remote_index,
            RelayedThrough: None,
        };
        match out.iter_mut().find(|o| o.NebulaAddr == r.hop) {
            Some(o) => o.RelayForAddrs.push(rf),
            None => out.push(RelayOutput {
                NebulaAddr: r.hop,
                RelayForAddrs: vec![rf],
            }),
        }
    }
    RelaysJson {
        Relays: if out.is_empty() { None } else { Some(out) },
    }
}

fn print_relays(ctx: &Context<'_>, fs: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    let relays = ctx.plane.with_engine(|e| e.relay_views());
    w.extend(go_json(&relays_json(&relays), flag(fs, "pretty")));
}

fn close_tunnel(ctx: &Context<'_>, fs: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let Some(vpn) = vpn_arg(a, "vpn address", w) else {
        return;
    };
    let local_only = flag(fs, "local-only");
    let mut out = Outputs::default();
    let closed = ctx.plane.with_engine(|e| {
        if e.tunnel_to(&vpn).is_none() {
            return false;
        }
        if local_only {
            e.close_tunnel_quietly(&vpn, &mut out)
        } else {
            e.close_tunnel(&vpn, &mut out);
            true
        }
    });
    (ctx.flush)(&mut out);
    if closed {
        line(w, "Closed");
    } else {
        line(
            w,
            &format!("Could not find tunnel for vpn address: {}", a[0]),
        );
    }
}

fn create_tunnel(ctx: &Context<'_>, fs: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let Some(vpn) = vpn_arg(a, "vpn address", w) else {
        return;
    };
    let address = flag_str(fs, "address");
    let parsed: Result<Option<SocketAddr>, ()> = if address.is_empty() {
        Ok(None)
    } else {
        address.parse::<SocketAddr>().map(Some).map_err(|_| ())
    };
    let mut out = Outputs::default();
    let r = ctx.plane.with_engine(|e| match parsed {
        Ok(addr) => Some(e.create_tunnel(Instant::now(), vpn, addr, &mut out)),
        // Go looks for an existing tunnel before it reads the address.
        Err(()) if e.tunnel_to(&vpn).is_some() => Some(CreateTunnel::AlreadyExists),
        Err(()) if e.is_handshaking(&vpn) => Some(CreateTunnel::AlreadyHandshaking),
        Err(()) => None,
    });
    let Some(r) = r else {
        line(w, "Address could not be parsed");
        return;
    };
    (ctx.flush)(&mut out);
    line(
        w,
        match r {
            CreateTunnel::AlreadyExists => "Tunnel already exists",
            CreateTunnel::AlreadyHandshaking => "Tunnel already handshaking",
            CreateTunnel::Created => "Created",
            CreateTunnel::Refused => "Could not start a handshake to that address",
        },
    );
}

fn change_remote(ctx: &Context<'_>, fs: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    if a.is_empty() {
        line(w, "No vpn address was provided");
        return;
    }
    let address = flag_str(fs, "address");
    if address.is_empty() {
        line(w, "No address was provided");
        return;
    }
    let Ok(addr) = address.parse::<SocketAddr>() else {
        line(w, "Address could not be parsed");
        return;
    };
    let Some(vpn) = vpn_arg(a, "vpn address", w) else {
        return;
    };
    if ctx.plane.with_engine(|e| e.change_remote(&vpn, addr)) {
        line(w, "Changed");
    } else {
        line(
            w,
            &format!("Could not find tunnel for vpn address: {}", a[0]),
        );
    }
}

fn query_lighthouse(ctx: &Context<'_>, _: &FlagSet, a: &[String], w: &mut Vec<u8>) {
    let Some(vpn) = vpn_arg(a, "vpn address", w) else {
        return;
    };
    let mut out = Outputs::default();
    let known = ctx
        .plane
        .with_engine(|e| e.query_lighthouse(Instant::now(), vpn, &mut out));
    (ctx.flush)(&mut out);
    match known {
        Some(c) => w.extend(go_json(&cache_map(&c), false)),
        None => w.extend(go_json(&Value::Null, false)),
    }
}

fn device_info(ctx: &Context<'_>, fs: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Device<'a> {
        name: &'a str,
        cidr: Vec<String>,
    }
    let d = Device {
        name: &ctx.device_name,
        cidr: ctx.networks.iter().map(|n| n.to_string()).collect(),
    };
    if flag(fs, "json") || flag(fs, "pretty") {
        w.extend(go_json(&d, flag(fs, "pretty")));
    } else {
        line(
            w,
            &format!("name={} cidr={}", d.name, go_list(&ctx.networks)),
        );
    }
}

fn memory_summary(ctx: &Context<'_>, _: &FlagSet, _: &[String], w: &mut Vec<u8>) {
    let text = ctx.plane.with_engine(|e| {
        let (tunnels, pending) = e.counts();
        format!(
            "tunnels={tunnels} pending_handshakes={pending} queued_bytes={} \
             address_lists={} relays={} queued_punches={}",
            e.queued_bytes(),
            e.remote_lists(),
            e.relays().len(),
            e.queued_punches()
        )
    });
    line(w, &text);
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use nebula_cert::{Curve, Version};
    use nebula_core::sim::TestCa;

    use super::*;

    fn plane() -> Plane {
        Plane::bare_for_test()
    }

    /// Run `line` on a fresh node; (output, what dispatch said, reloads asked).
    fn run(line: &str) -> (String, After, u32) {
        let plane = plane();
        let reloads = Cell::new(0);
        let reload = || reloads.set(reloads.get() + 1);
        let flush = |_: &mut Outputs| {};
        let ctx = Context {
            plane: &plane,
            device_name: "nebula1".into(),
            networks: vec!["10.1.0.1/16".parse().expect("net")],
            flush: &flush,
            reload: &reload,
            sandbox_dir: None,
        };
        let mut out = Vec::new();
        let after = dispatch(&ctx, line, &mut out);
        (String::from_utf8(out).expect("utf-8"), after, reloads.get())
    }

    fn out(line: &str) -> String {
        run(line).0
    }

    #[test]
    fn lines_split_like_a_posix_shell() {
        assert_eq!(
            split_line(r#"a  'b c' "d\"e" f\ g"#),
            Some(vec!["a".into(), "b c".into(), "d\"e".into(), "f g".into()])
        );
        assert_eq!(split_line("  "), Some(vec![]));
        assert_eq!(split_line("x ''"), Some(vec!["x".into(), "".into()]));
        assert_eq!(split_line("'open"), None);
    }

    #[test]
    fn completion_lists_matching_names_sorted() {
        assert_eq!(
            complete("list-"),
            vec![
                "list-hostmap",
                "list-lighthouse-addrmap",
                "list-pending-hostmap"
            ]
        );
        assert_eq!(complete("vers"), vec!["version"]);
        assert!(complete("zzz").is_empty());
        assert_eq!(complete("").len(), COMMANDS.len());
    }

    #[test]
    fn every_go_command_is_there() {
        for name in [
            "list-hostmap",
            "list-pending-hostmap",
            "list-lighthouse-addrmap",
            "print-cert",
            "print-tunnel",
            "print-relays",
            "change-remote",
            "close-tunnel",
            "create-tunnel",
            "query-lighthouse",
            "reload",
            "log-level",
            "log-format",
            "version",
            "device-info",
            "help",
            "logout",
            "start-cpu-profile",
            "stop-cpu-profile",
            "save-heap-profile",
            "mutex-profile-fraction",
            "save-mutex-profile",
        ] {
            assert!(lookup(name).is_some(), "{name}");
        }
    }

    #[test]
    fn dispatch_answers_as_go_does() {
        assert!(out("").starts_with("Available commands:\nblock-profile-rate - "));
        assert!(out("bogus x").starts_with("did not understand: bogus x\nAvailable commands:"));
        assert_eq!(out("version"), format!("{}\n", env!("CARGO_PKG_VERSION")));
        assert_eq!(out("list-hostmap"), "");
        assert_eq!(out("list-hostmap -json"), "[]\n");
        assert_eq!(out("list-pending-hostmap -pretty"), "[]\n");
        assert_eq!(out("print-tunnel"), "No vpn address was provided\n");
        assert_eq!(
            out("print-tunnel 10.1.0.9"),
            "Could not find tunnel for vpn addr: 10.1.0.9\n"
        );
        assert_eq!(
            out("close-tunnel nope"),
            "The provided vpn address could not be parsed: nope\n"
        );
        assert_eq!(
            out("close-tunnel 10.1.0.9"),
            "Could not find tunnel for vpn address: 10.1.0.9\n"
        );
        assert_eq!(out("change-remote 10.1.0.9"), "No address was provided\n");
        assert_eq!(
            out("change-remote -address bad 10.1.0.9"),
            "Address could not be parsed\n"
        );
        assert_eq!(
            out("create-tunnel -address bad 10.1.0.9"),
            "Address could not be parsed\n"
        );
        assert_eq!(out("create-tunnel 10.1.0.9"), "Created\n");
        assert_eq!(out("query-lighthouse 10.1.0.9"), "null\n");
        assert_eq!(out("print-relays"), "{\"Relays\":null}\n");
        assert_eq!(out("device-info"), "name=nebula1 cidr=[10.1.0.1/16]\n");
        assert_eq!(
            out("device-info -json"),
            "{\"name\":\"nebula1\",\"cidr\":[\"10.1.0.1/16\"]}\n"
        );
        let bad = out("list-hostmap -bogus");
        assert!(
            bad.starts_with("flag provided but not defined: -bogus\nUsage:\n"),
            "{bad}"
        );
        assert!(bad.contains("-by-index"), "{bad}");
        let help = out("list-hostmap -h");
        assert!(
            help.starts_with("list-hostmap - List all known previously connected hosts\n"),
            "{help}"
        );
        assert_eq!(help, out("help list-hostmap"));
        assert!(out("help create-tunnel").contains("\n  The lighthouses will be queried"));
        assert_eq!(out("help nope"), "Command not available nope\n");
        assert!(out("start-cpu-profile x.pb.gz").contains("not available in this implementation"));
        assert!(out("memory-summary").starts_with("tunnels=0 pending_handshakes=0"));
        // Whether logctl's own test installed the process logger yet depends on test order.
        let level = out("log-level loud");
        assert!(
            level
                == "Unknown log level [loud]. Possible log levels: trace, debug, info, warn, error\n"
                || level == "Log level is not reconfigurable on this logger\n",
            "{level}"
        );
        assert_eq!(run("logout").1, After::Logout);
        let (text, after, reloads) = run("reload");
        assert_eq!(
            (text.as_str(), after, reloads),
            ("Reloading config\n", After::Continue, 1)
        );
    }

    #[test]
    fn print_cert_json_is_the_certificates_own_without_newline() {
        let js = out("print-cert -json");
        assert!(!js.ends_with('\n'));
        let v: Value = serde_json::from_str(&js).expect("json");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ["details", "fingerprint", "signature", "version"]);
        assert_eq!(v["details"]["name"], "a");
        let pretty = out("print-cert -pretty");
        assert!(
            pretty.contains("\n    \"details\": {\n        \"curve\""),
            "{pretty}"
        );
        assert!(out("print-cert -raw").starts_with("-----BEGIN NEBULA CERTIFICATE"));
        assert!(out("print-cert").contains("\"details\""));
        assert_eq!(
            out("print-cert 10.1.0.9"),
            "Could not find tunnel for vpn addr: 10.1.0.9\n"
        );
    }

    #[test]
    fn host_json_has_gos_fields_in_gos_order() {
        let ca = TestCa::new("ca", Curve::Curve25519, Version::V1);
        let (cert, _) = ca.host("b<&>", "10.1.0.2/16", &[]);
        let h = HostView {
            vpn_addrs: vec!["10.1.0.2".parse().expect("ip")],
            local_index: 7,
            remote_index: 9,
            remote_addrs: vec!["192.0.2.2:4242".parse().expect("addr")],
            cert: Some(cert),
            message_counter: 3,
            current_remote: Some("192.0.2.2:4242".parse().expect("addr")),
            relays_to_me: vec![],
            relays_through_me: vec![],
        };
        let text = String::from_utf8(go_json(&HostJson::from(&h), false)).expect("utf-8");
        let v: Value = serde_json::from_str(&text).expect("json");
        let order: Vec<usize> = [
            "vpnAddrs",
            "localIndex",
            "remoteIndex",
            "remoteAddrs",
            "cert",
            "messageCounter",
            "currentRemote",
            "currentRelaysToMe",
            "currentRelaysThroughMe",
        ]
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {text}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(v["currentRemote"], "192.0.2.2:4242");
        assert_eq!(v["cert"]["details"]["name"], "b<&>");
        assert!(
            text.contains("b\\u003c\\u0026\\u003e"),
            "Go's HTML escapes: {text}"
        );
        let mut fs = FlagSet::new("");
        fs.bool("json", false, "");
        fs.bool("pretty", false, "");
        let mut w = Vec::new();
        write_hosts(&[h], &fs, &mut w);
        assert_eq!(
            String::from_utf8(w).expect("utf-8"),
            "[10.1.0.2]: [192.0.2.2:4242]\n"
        );
    }

    #[test]
    fn cache_map_omits_empty_learned_and_reported_like_go() {
        let lh: IpAddr = "10.1.0.1".parse().expect("ip");
        let c = vec![AddrCache {
            owner: lh,
            learned: vec![],
            reported: vec!["192.0.2.3:4242".parse().expect("addr")],
            relays: vec![],
        }];
        assert_eq!(
            String::from_utf8(go_json(&cache_map(&c), false)).expect("utf-8"),
            "{\"10.1.0.1\":{\"reported\":[\"192.0.2.3:4242\"],\"relay\":[]}}\n"
        );
        let r = relays_json(&[RelayView {
            hop: lh,
            peer: "10.1.0.3".parse().expect("ip"),
            local_index: 1,
            remote_index: 2,
            forwarding: true,
            established: true,
        }]);
        assert_eq!(
            String::from_utf8(go_json(&r, false)).expect("utf-8"),
            "{\"Relays\":[{\"NebulaAddr\":\"10.1.0.1\",\"RelayForAddrs\":[{\"Error\":null,\"Type\":\"forwarding\",\"State\":\"established\",\"PeerAddr\":\"10.1.0.3\",\"LocalIndex\":1,\"RemoteIndex\":2,\"RelayedThrough\":null}]}]}\n"
        );
    }
}
