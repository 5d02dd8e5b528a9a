//! The `hearth-wasm-edge` command: parses the command line and dispatches to
//! [`hearth_wasm_edge::cli`]. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hearth_wasm_edge::cli;

/// A programmable TLS edge proxy: routes connections by their ClientHello
/// through a WebAssembly policy.
#[derive(Parser)]
#[command(
    name = "hearth-wasm-edge",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Command {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    run: RunArgs,
}

/// Arguments of the default action: run the edge.
#[derive(Args)]
struct RunArgs {
    /// The policy component (.wasm); overrides `policy.path` in the config.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The edge config (YAML). Without it the embedded local profile runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Action {
    /// Validate a config (and load and init its policy), then exit 0 or 1.
    Check(RunArgs),
    /// Run a policy's test cases; exits non-zero if any fails.
    Test(cli::TestArgs),
    /// Create a policy crate that builds and passes its cases: Cargo.toml,
    /// src/lib.rs, cases.yaml and a dev.yaml for a local edge.
    New(cli::NewArgs),
    /// Develop a policy crate: build it, run its cases and serve it on its
    /// dev config, then build, test and reload on every saved change, with
    /// `echo` and `sink` development backends.
    Dev(cli::DevArgs),
    /// Print the decision a policy makes for a ClientHello, and why.
    Explain(cli::ExplainArgs),
    /// Send one request to a handler of a config, without running the
    /// edge, and print the answer.
    Call(cli::CallArgs),
    /// Ask a running edge's admin listener for PATH; exit 0 on 200 (for
    /// container health checks).
    Probe {
        /// The admin listener.
        #[arg(long, value_name = "ADDR", default_value = cli::DEFAULT_ADMIN)]
        admin: std::net::SocketAddr,
        /// `/readyz`, `/healthz` or `/metrics`.
        #[arg(value_name = "PATH", default_value = "/readyz")]
        path: String,
    },
}

fn main() -> ExitCode {
    let command = Command::parse();
    let result = match command.action {
        None => cli::run(command.run.config, command.run.policy),
        Some(Action::Check(args)) => cli::check(args.config, args.policy),
        Some(Action::Test(args)) => cli::test(args),
        Some(Action::Explain(args)) => cli::explain(args),
        Some(Action::Probe { admin, path }) => cli::probe(admin, &path),
        Some(Action::Call(args)) => cli::call(args),
        Some(Action::New(args)) => cli::new(args),
        Some(Action::Dev(args)) => cli::dev(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
