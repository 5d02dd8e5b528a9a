//! Logging through the edge: [`log`] at a [`Level`], one function per level,
//! and the `format!`-style macros [`error!`](crate::error),
//! [`warn!`](crate::warn), [`info!`](crate::info), [`debug!`](crate::debug)
//! and [`trace!`](crate::trace).
//!
//! The edge tags each line with the policy's name and applies its own level
//! filter. Logging costs a host call: keep it off the common path, or at
//! `debug`/`trace`. The import itself is wrapped in [`host`](crate::host).

use std::fmt;

use crate::Level;
pub use crate::host::log;

/// Logs `message` at `error`.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Logs `message` at `warn`.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs `message` at `info`.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs `message` at `debug`.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs `message` at `trace`.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

impl Level {
    /// The WIT case name: `error`, `warn`, `info`, `debug` or `trace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Logs a `format!`-style message at `error` through the edge.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::log($crate::Level::Error, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `warn` through the edge.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::log($crate::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `info` through the edge.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::log($crate::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `debug` through the edge.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::log($crate::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at `trace` through the edge.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::log($crate::Level::Trace, &::std::format!($($arg)+)) };
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::host::native;

    #[test]
    fn macros_format_and_log_at_their_level() {
        native::reset();
        crate::info!("routed {} to {}", "a.example", "web");
        crate::trace!("t");
        warn("w");
        assert_eq!(
            native::take_logs(),
            [
                (Level::Info, "routed a.example to web".to_owned()),
                (Level::Trace, "t".to_owned()),
                (Level::Warn, "w".to_owned()),
            ]
        );
    }
}
