//! [`FieldError`], what every validation step returns, and the small
//! checks they share. Below `config/raw.rs`, `config/http.rs` and
//! `config/validate.rs`, which all use it; `config.rs` adds the file and
//! line.

use std::time::Duration;

use super::duration::ConfigDuration;

/// A field that failed validation.
#[derive(Debug)]
pub struct FieldError {
    /// Its path, spelled like serde_path_to_error (`tls.certificates[0].cert`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Fails the field at `path` with `message`.
pub fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        path: path.into(),
        message: message.into(),
    })
}

/// A duration that must not be zero: `value`, else `default`.
pub fn nonzero(
    path: impl Into<String>,
    value: Option<ConfigDuration>,
    default: Duration,
) -> Result<Duration, FieldError> {
    let d = value.map_or(default, |d| d.0);
    if d.is_zero() {
        fail(path, "must be more than 0")
    } else {
        Ok(d)
    }
}
