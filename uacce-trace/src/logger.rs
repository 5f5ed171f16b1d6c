//! Diagnostics on standard error: a small [`log`] backend and the
//! [`status!`](crate::status) macro for progress lines. Imports nothing
//! from the crate.
//!
//! - `log::error!`/`log::warn!` print `uacce-trace: error: …` /
//!   `uacce-trace: warning: …`; `info`/`debug`/`trace` print
//!   `uacce-trace: <level>: …`. The level comes from `-v` (info), `-vv`
//!   (debug), `-vvv` (trace), else from `UACCE_TRACE_LOG`, else from
//!   `RUST_LOG` (a level, or `uacce_trace=LEVEL` among its directives)
//!   (`off`, `error`, `warn`, `info`, `debug`, `trace`; default `warn`).
//! - `status!` prints `uacce-trace: …` whatever the level: the lines that
//!   say what a command does and did ("tracing started", "stopped: …"),
//!   which scripts and tests read.
//! - Writing never panics: std's `eprintln!` does when standard error is
//!   a broken pipe (`uacce-trace record … 2>&1 | head`), which would turn a
//!   finished recording into a crash with exit status 101.
//! - [`hold`] keeps lines back while a full-screen view owns the terminal
//!   (`top`) and prints them when it gives the terminal back.

use std::{
    io::Write as _,
    sync::{Mutex, OnceLock},
};

/// The environment variable with the log level.
pub const LEVEL_ENV: &str = "UACCE_TRACE_LOG";

/// Lines kept back while the terminal is held (`None`: not held).
static HELD: Mutex<Option<Vec<String>>> = Mutex::new(None);

struct Logger;

static LOGGER: Logger = Logger;
static INIT: OnceLock<()> = OnceLock::new();

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            emit(&format!(
                "uacce-trace: {}: {}",
                level_word(record.level()),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

fn level_word(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// The level `UACCE_TRACE_LOG` asks for (`warn` when unset or unknown).
pub fn parse_level(value: Option<&str>) -> log::LevelFilter {
    value
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(log::LevelFilter::Warn)
}

/// The level `RUST_LOG` asks of this crate: a bare level, or the level
/// of a `uacce_trace=LEVEL` directive (the last one wins); `None` when it
/// names neither.
pub fn rust_log_level(value: &str) -> Option<log::LevelFilter> {
    value
        .split(',')
        .filter_map(|d| match d.trim().split_once('=') {
            Some((target, level)) if target.trim() == "uacce_trace" => level.trim().parse().ok(),
            Some(_) => None,
            None => d.trim().parse().ok(),
        })
        .next_back()
}

/// Install the logger (once; later calls do nothing), at the level of
/// `UACCE_TRACE_LOG`, else `RUST_LOG`, else `warn`.
pub fn init() {
    INIT.get_or_init(|| {
        let level = match std::env::var(LEVEL_ENV) {
            Ok(v) => parse_level(Some(&v)),
            Err(_) => std::env::var("RUST_LOG")
                .ok()
                .and_then(|v| rust_log_level(&v))
                .unwrap_or(log::LevelFilter::Warn),
        };
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level);
        }
    });
}

/// `-v` given `count` times: info, debug, trace (never less than the
/// environment asked for).
pub fn set_verbosity(count: u8) {
    let level = match count {
        0 => return,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    log::set_max_level(level.max(log::max_level()));
}

/// Write one line to standard error (or keep it back while held).
pub fn emit(line: &str) {
    if let Ok(mut held) = HELD.lock() {
        if let Some(lines) = held.as_mut() {
            lines.push(line.to_string());
            return;
        }
    }
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Keeps diagnostics back until dropped, then prints them.
#[must_use = "lines are printed when the guard is dropped"]
pub struct Held(());

/// Keep lines back from now until the returned guard is dropped.
pub fn hold() -> Held {
    if let Ok(mut held) = HELD.lock() {
        held.get_or_insert_with(Vec::new);
    }
    Held(())
}

impl Drop for Held {
    fn drop(&mut self) {
        let lines = HELD.lock().ok().and_then(|mut h| h.take());
        let mut err = std::io::stderr().lock();
        for line in lines.into_iter().flatten() {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// A progress line on standard error: `uacce-trace: ` and the message,
/// printed whatever the log level (see the [module docs](crate::logger)).
#[macro_export]
macro_rules! status {
    ($($arg:tt)*) => {
        $crate::logger::emit(&format!("uacce-trace: {}", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level(None), log::LevelFilter::Warn);
        assert_eq!(parse_level(Some("debug")), log::LevelFilter::Debug);
        assert_eq!(parse_level(Some("OFF")), log::LevelFilter::Off);
        assert_eq!(parse_level(Some("loud")), log::LevelFilter::Warn);
        assert_eq!(level_word(log::Level::Warn), "warning");
    }

    #[test]
    fn rust_log_directives() {
        use log::LevelFilter::*;
        assert_eq!(rust_log_level("debug"), Some(Debug));
        assert_eq!(rust_log_level("aya=trace,uacce_trace=info"), Some(Info));
        assert_eq!(rust_log_level("aya=trace"), None);
        assert_eq!(rust_log_level("nonsense"), None);
    }

    #[test]
    fn held_lines_wait_for_the_guard() {
        let held = hold();
        emit("uacce-trace: kept back");
        let kept = HELD.lock().ok().and_then(|h| {
            h.as_ref()
                .map(|l| l.iter().any(|x| x == "uacce-trace: kept back"))
        });
        assert_eq!(kept, Some(true));
        drop(held);
        assert!(HELD.lock().is_ok_and(|h| h.is_none()));
    }
}
