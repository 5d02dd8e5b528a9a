//! `lk-jwt`: the LiveKit JWT service of Element Call / MatrixRTC as a
//! standard `wasi:http/proxy` component, compatible with
//! element-hq/lk-jwt-service v0.5. It exchanges a Matrix OpenID token for
//! a LiveKit access token:
//!
//! - `POST /sfu/get` (legacy) and `POST /get_token`: check the OpenID token
//!   against the user's homeserver (`/_matrix/federation/v1/openid/userinfo`),
//!   then answer `{"url","jwt"}`. Users of homeservers in
//!   `LIVEKIT_FULL_ACCESS_HOMESERVERS` also get the room created on the SFU
//!   first (`CreateRoom`); others get a token only.
//! - `GET /healthz`: 200.
//!
//! Settings come from the environment (`env` / `env_files` at the edge):
//! `LIVEKIT_URL`, `LIVEKIT_KEY`, `LIVEKIT_SECRET`,
//! `LIVEKIT_FULL_ACCESS_HOMESERVERS`. Homeservers are found by their name:
//! an IP literal or a name with a port is used as given, else
//! `/.well-known/matrix/server`, else port 8448 (a component cannot look
//! up SRV records).

// The export glue of `wstd::http_server` is generated `unsafe` FFI.
#![allow(unsafe_code)]

pub mod request;
pub mod token;

#[cfg(target_family = "wasm")]
mod server;
