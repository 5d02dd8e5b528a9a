//! The command-line actions. `main.rs` parses arguments and calls these.
//!
//! - [`run`] and [`check`]: serve traffic / validate a config (`cli/serve.rs`).
//! - [`test`] and [`explain`]: the policy harness (`cli/policy_cmds.rs`).
//! - [`probe`]: a health check against the admin listener (`cli/probe.rs`).
//! - [`call`]: one request to a handler, without an edge (`cli/call.rs`).
//! - [`new`]: a policy crate to start from (`cli/new.rs`, templates in
//!   `host/templates/policy/`); [`dev`]: build, test and reload it on each
//!   save, with development backends (`cli/dev.rs`, `cli/dev_backends.rs`).

mod call;
mod dev;
mod dev_backends;
mod new;
mod policy_cmds;
mod probe;
mod serve;

pub use call::{CallArgs, call};
pub use dev::{DevArgs, dev};
pub use new::{NewArgs, new};
pub(crate) use policy_cmds::config_cases;
pub use policy_cmds::{ExplainArgs, TestArgs, explain, test};
pub use probe::{DEFAULT_ADMIN, probe};
pub use serve::{check, run};
