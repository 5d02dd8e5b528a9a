//! `hearth-wasm-edge [--config FILE] [--policy FILE]` and `check`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Runs the edge until it is told to stop.
pub fn run(config: Option<PathBuf>, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let _ = (config, policy);
    anyhow::bail!("not yet implemented")
}

/// Validates a config, loads and inits its policy, and reports.
pub fn check(config: Option<PathBuf>, policy: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let _ = (config, policy);
    anyhow::bail!("not yet implemented")
}
