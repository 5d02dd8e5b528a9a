//! The command-line actions. `main.rs` parses arguments and calls these.
//!
//! - [`run`] and [`check`]: serve traffic / validate a config (`cli/serve.rs`).
//! - [`test`] and [`explain`]: the policy harness (`cli/policy_cmds.rs`).

mod policy_cmds;
mod serve;

pub use policy_cmds::{ExplainArgs, explain, test};
pub use serve::{check, run};
