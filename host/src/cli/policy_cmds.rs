//! `hearth-wasm-edge test` and `hearth-wasm-edge explain`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The policy component (.wasm).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The server name the client asks for; omit for a hello without SNI.
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// An offered ALPN protocol; repeat for several.
    #[arg(long, value_name = "PROTO")]
    pub alpn: Vec<String>,
    /// The client's address.
    #[arg(long, value_name = "ADDR", default_value = "203.0.113.7")]
    pub source: String,
    /// A `key=value` entry of the policy config; repeat for several.
    #[arg(long = "policy-config", value_name = "KEY=VALUE")]
    pub policy_config: Vec<String>,
}

/// Runs case files against a policy; exit code 1 if any case fails.
pub fn test(policy: &Path, cases: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let _ = (policy, cases);
    anyhow::bail!("not yet implemented")
}

/// Prints the decision for one hello.
pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("not yet implemented")
}
