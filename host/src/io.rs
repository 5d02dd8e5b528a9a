//! Byte plumbing both modes share, below `proxy` and `http`:
//!
//! - `io/copy.rs`: the two-way relay with half-close, bounded buffers and
//!   an idle timeout ([`relay`]): passthrough, terminate, WebSocket.
//! - `io/replay.rs`: [`Replay`], bytes already read served before the
//!   socket's (the ClientHello, what followed a `101`).
//! - `io/counting.rs`: [`Counting`], byte counts of a stream hyper owns.

mod copy;
mod counting;
mod replay;

pub use copy::{RELAY_BUFFER_BYTES, RelayEnd, Relayed, relay};
pub use counting::{Counting, Counts};
pub use replay::Replay;
