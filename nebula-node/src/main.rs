//! `nebula`: the daemon binary, command-line compatible with Go Nebula's (`-config`, `-test`,
//! `-version`, `-help`, with Go's flag syntax). Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use goflag::{FlagError, FlagSet};
use nebula_node::config::{Config, LoggingConfig};
use nebula_node::daemon::{self, Node};
use nebula_node::device;

fn usage(fs: &FlagSet) -> String {
    format!("Usage of nebula:\n{}", fs.print_defaults())
}

fn init_logging(cfg: &LoggingConfig) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if let Err(e) = nebula_node::logctl::install(cfg, ansi) {
        eprintln!("failed to apply logging config: {e}");
    }
}

fn main() -> ExitCode {
    let mut fs = FlagSet::new("nebula");
    let config = fs.string(
        "config",
        "",
        "Path to either a file or directory to load configuration from",
    );
    let test = fs.bool(
        "test",
        false,
        "Test the config and print the end result. Non zero exit indicates a faulty config",
    );
    let version = fs.bool("version", false, "Print version");
    let help = fs.bool("help", false, "Print command line usage");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match fs.parse(&args) {
        Ok(()) => {}
        Err(FlagError::Help) => {
            eprint!("{}", usage(&fs));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            eprint!("{}", usage(&fs));
            return ExitCode::from(2);
        }
    }
    if fs.get(&version) {
        println!("Version: {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if fs.get(&help) {
        eprint!("{}", usage(&fs));
        return ExitCode::SUCCESS;
    }
    let path = fs.get(&config);
    if path.is_empty() {
        println!("-config flag must be set");
        eprint!("{}", usage(&fs));
        return ExitCode::from(1);
    }
    let path = PathBuf::from(path);
    let loaded = match Config::load(&path) {
        Ok(l) => l,
        Err(e) => {
            println!("failed to load config: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(&loaded.config.logging);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if fs.get(&test) {
        return match daemon::validate(&loaded) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "Failed to start");
                println!("{e}");
                ExitCode::from(1)
            }
        };
    }
    let tun = match device::open(&loaded.config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "Failed to get a tun/tap device");
            return ExitCode::from(1);
        }
    };
    let mut node = match Node::new(&loaded, &path, tun) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "Failed to start");
            return ExitCode::from(1);
        }
    };
    if let Some(t) = node.device() {
        match device::configure(t, &loaded.config, &node.pki()) {
            Ok(offloads) => node.set_tun_offloads(offloads),
            Err(e) => {
                tracing::error!(error = %e, "Failed to configure the tun device");
                return ExitCode::from(1);
            }
        }
    }
    match node.run() {
        Ok(()) => {
            tracing::info!("Goodbye");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "Nebula stopped due to fatal error");
            ExitCode::from(2)
        }
    }
}
