//! The daemon's logger: installed once from `logging.*`, with a level that can change at run time
//! (the debug console's `log-level`) and a format that can be read back (`log-format`).
//!
//! The level is a `tracing_subscriber` reload layer in front of the formatter.

use std::sync::OnceLock;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, Layer, Registry};

use crate::config::{LogFormat, LogLevel, LoggingConfig};

static LEVEL: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Go's name for a level.
pub fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::ERROR => "error",
        LevelFilter::WARN => "warn",
        LevelFilter::INFO => "info",
        LevelFilter::DEBUG => "debug",
        LevelFilter::TRACE => "trace",
        _ => "off",
    }
}

/// A level by Go's name (`warning` is accepted for `warn`).
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    Some(match name {
        "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// Install the process's logger (stdout) from `cfg`. Errors if a logger is installed already.
pub fn install(cfg: &LoggingConfig, ansi: bool) -> Result<(), String> {
    let (level, handle) = reload::Layer::new(filter(cfg.level));
    type Below = tracing_subscriber::layer::Layered<reload::Layer<LevelFilter, Registry>, Registry>;
    let base = fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    let out: Box<dyn Layer<Below> + Send + Sync> = match (cfg.format, cfg.disable_timestamp) {
        (LogFormat::Json, false) => base.json().boxed(),
        (LogFormat::Json, true) => base.json().without_time().boxed(),
        (LogFormat::Text, false) => base.boxed(),
        (LogFormat::Text, true) => base.without_time().boxed(),
    };
    tracing_subscriber::registry()
        .with(level)
        .with(out)
        .try_init()
        .map_err(|e| e.to_string())?;
    let _ = LEVEL.set(handle);
    let _ = FORMAT.set(cfg.format);
    Ok(())
}

/// The level logged now (`None`: no logger installed through [`install`]).
pub fn level() -> Option<LevelFilter> {
    LEVEL.get().and_then(|h| h.clone_current())
}

/// Change the level; false if no logger was installed through [`install`].
pub fn set_level(level: LevelFilter) -> bool {
    LEVEL.get().is_some_and(|h| h.reload(level).is_ok())
}

/// The format the logger writes (`None`: no logger installed through [`install`]).
pub fn format() -> Option<&'static str> {
    FORMAT.get().map(|f| match f {
        LogFormat::Json => "json",
        LogFormat::Text => "text",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_round_trip_as_go_spells_them() {
        for name in ["error", "warn", "info", "debug", "trace"] {
            let l = parse_level(name).expect(name);
            assert_eq!(level_name(l), name);
        }
        assert_eq!(parse_level("warning"), Some(LevelFilter::WARN));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn the_installed_level_changes_at_run_time() {
        let cfg = LoggingConfig {
            level: LogLevel::Info,
            format: LogFormat::Json,
            disable_timestamp: true,
        };
        install(&cfg, false).expect("the only logger of this test process");
        assert_eq!(level(), Some(LevelFilter::INFO));
        assert_eq!(format(), Some("json"));
        assert!(tracing::enabled!(tracing::Level::INFO));
        assert!(!tracing::enabled!(tracing::Level::DEBUG));
        assert!(set_level(LevelFilter::DEBUG));
        assert_eq!(level(), Some(LevelFilter::DEBUG));
        assert!(tracing::enabled!(tracing::Level::DEBUG));
    }
}
