//! Write hearth-wasm-edge routing policies in Rust.
//!
//! A policy is a WebAssembly component targeting the `policy` world of
//! `wit/edge.wit` (package `hearth:edge@0.1.1`). The edge reads a TLS
//! ClientHello without terminating it, calls the policy's `decide` with the
//! parsed fields, and passes the connection through, terminates it, or rejects
//! it as told. This crate hides the generated bindings behind:
//!
//! - the [`Policy`] trait and the one-line [`export_policy!`] macro;
//! - constructors on [`Decision`] ([`Decision::passthrough`],
//!   [`Decision::terminate`], [`Decision::reject`],
//!   [`Decision::with_proxy_protocol`]);
//! - [`Config`], typed access to the `policy.config` map, and [`ConfigError`],
//!   whose message becomes `init`'s error;
//! - helpers for server [`names`], [`alpn`] protocols and source-address
//!   [`cidr`] ranges;
//! - the host imports: [`log`](mod@log) (with the [`info!`]-style macros),
//!   [`now_ms`] and [`take_token`].
//!
//! # Example
//!
//! ```
//! use hearth_edge_sdk::{alpn, names, Alert, ClientHello, Config, ConfigError, Decision, Policy};
//!
//! /// Sends `turn.<domain>` to the TURN server untouched, terminates `<domain>`.
//! struct Example {
//!     domain: String,
//!     turn: String,
//! }
//!
//! impl Policy for Example {
//!     fn init(config: &Config) -> Result<Self, ConfigError> {
//!         config.deny_unknown_keys(&["domain"])?;
//!         let domain = config.dns_name("domain")?;
//!         Ok(Example { turn: format!("turn.{domain}"), domain })
//!     }
//!
//!     fn decide(&self, hello: &ClientHello) -> Decision {
//!         let Some(sni) = hello.server_name.as_deref() else {
//!             return Decision::reject("no-sni", Alert::UnrecognizedName);
//!         };
//!         if names::matches(&self.turn, sni) {
//!             Decision::passthrough("turn")
//!         } else if names::matches(&self.domain, sni) && alpn::offers(hello, alpn::H2) {
//!             Decision::terminate("web")
//!         } else {
//!             hearth_edge_sdk::debug!("no route for {sni}");
//!             Decision::reject("unknown-sni", Alert::UnrecognizedName)
//!         }
//!     }
//! }
//!
//! hearth_edge_sdk::export_policy!(Example);
//!
//! # fn main() {
//! // Policies are plain Rust, so their logic is unit-tested natively.
//! let config = Config::from_pairs([("domain", "Example.COM.")]);
//! let policy = Example::init(&config).unwrap();
//! let hello = ClientHello::for_server_name("turn.example.com");
//! assert_eq!(policy.decide(&hello), Decision::passthrough("turn"));
//! let err = Example::init(&Config::default()).err().unwrap();
//! assert_eq!(err.to_string(), r#"missing required key "domain""#);
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (a crate
//! made by `hearth-wasm-edge new` has a size-optimised release profile); the
//! resulting `target/wasm32-wasip2/release/<crate>.wasm` is a component the
//! edge loads directly. The policies inside the edge's repository use the
//! workspace's `--profile policy` instead, which is the same profile made
//! reproducible.
//!
//! # Testing a policy
//!
//! Three layers, cheapest first:
//!
//! 1. Unit tests of the Rust type, natively (`cargo test -p my-policy`):
//!    call [`Policy::init`] with [`Config::from_pairs`] and
//!    [`Policy::decide`] with hellos built by
//!    [`ClientHello::for_server_name`] and its `with_*` methods.
//! 2. A YAML case file (`my-policy.tests.yaml`: a `config:` map and
//!    `cases:` of `hello:` fields → `expect:`), run natively by the feature
//!    `cases` (`cases::run::<MyPolicy>(include_str!(…))` in a dev-dependency
//!    build), so `cargo test` checks it too.
//! 3. The same file against the built component, in the real runtime:
//!    `hearth-wasm-edge test --policy my-policy.wasm my-policy.tests.yaml`.
//!
//! `policies/hearth` and `policies/sni-table` in this repository do all three.
//!
//! # Native builds
//!
//! The crate also compiles for the host target so policies can be unit-tested
//! with `cargo test`. There the host imports are replaced by stand-ins (see
//! [`host`]): log lines go to stderr, [`now_ms`] reads a per-thread test clock
//! and [`take_token`] keeps per-thread token buckets on that clock.
//!
//! # Layout
//!
//! - `bindings` (hidden): the generated WIT bindings, generated once, here.
//! - [`decision`]: constructors and `Display` for the WIT decision types.
//! - [`hello`]: `ClientHello` helpers (test constructors, source address).
//! - [`config`]: [`Config`] and [`ConfigError`].
//! - [`names`], [`alpn`], [`cidr`]: matching helpers.
//! - `cases` (feature `cases`, native only): runs a policy's YAML case file
//!   against the Rust type in `cargo test`.
//! - [`host`]: the host imports and their native stand-ins; [`log`](mod@log)
//!   the logging wrappers.
//! - `export` (hidden): the instance slot behind [`export_policy!`].
#![deny(missing_docs)]

pub mod alpn;
#[cfg(all(feature = "cases", not(target_arch = "wasm32")))]
pub mod cases;
pub mod cidr;
pub mod config;
pub mod decision;
#[doc(hidden)]
pub mod export;
pub mod hello;
pub mod host;
#[cfg(feature = "http")]
pub mod http;
pub mod log;
pub mod names;

/// The bindings generated from `wit/edge.wit`, committed under
/// `src/bindings/` so that policy crates never compile wit-bindgen's code
/// generator (`tests/bindings.rs` checks they match the WIT). Use the
/// re-exports at the crate root instead; this module is public only so that
/// [`export_policy!`] can reach it from a policy crate.
///
/// Without the `http` feature the component targets `policy`; with it,
/// `http-policy` (which includes `policy` and adds `on-request`). Only one
/// world per build: the generated custom section names the world the
/// component claims, and a claimed export must exist.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
#[rustfmt::skip]
#[cfg_attr(not(feature = "http"), path = "bindings/policy.rs")]
#[cfg_attr(feature = "http", path = "bindings/http_policy.rs")]
pub mod bindings;

#[cfg(feature = "http")]
pub use bindings::hearth::edge::http_types::{
    Forward, HttpDecision, HttpRequest, LocalResponse, Redirect,
};
pub use bindings::hearth::edge::types::{
    Alert, ClientHello, Decision, Level, ProxyProtocol, Rejection, Route,
};
pub use config::{Config, ConfigError};
pub use host::{now_ms, take_token};
#[cfg(feature = "http")]
pub use http::HttpPolicy;

/// A routing policy: built once per instance from the config, then asked to
/// decide about each connection.
///
/// `decide` takes `&self`: the edge runs several instances of a policy and
/// discards any instance that traps, so state kept inside one instance is
/// neither shared nor durable. Decisions should be a function of the config
/// and the hello; state that must span connections (rate limits) lives in
/// the host, behind [`take_token`]. A policy that really wants a per-instance
/// cache can still use a `Cell`/`RefCell` field.
pub trait Policy: Sized + 'static {
    /// Builds the policy from the `policy.config` map. An error refuses the
    /// configuration; its message is shown to the operator.
    fn init(config: &Config) -> Result<Self, ConfigError>;

    /// Chooses what happens to one connection.
    fn decide(&self, hello: &ClientHello) -> Decision;
}

/// Exports a [`Policy`] implementation as the component's `init` and
/// `decide`: `hearth_edge_sdk::export_policy!(MyPolicy);` at the top level
/// of the policy crate (see the [crate example](crate#example)). Use it once
/// per component.
///
/// `init` builds the policy with [`Policy::init`] and keeps it for later
/// calls (a second `init` replaces it; a failed one leaves the instance
/// uninitialised). `decide` before a successful `init` rejects with reason
/// [`export::NOT_INITIALISED`] and the `internal_error` alert.
///
/// With the SDK's `http` feature on (e.g. unified into the build by another
/// crate), the component targets `http-policy` and its `on-request` always
/// answers `follow-routes`: the same behaviour as a plain policy, one call
/// per request dearer. Policies that want requests use
/// `export_http_policy!`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        $crate::__export_component!($policy, follow_routes);
    };
}

/// Exports an [`HttpPolicy`] as the component's `init`, `decide` and
/// `on-request` (the `http-policy` world): `hearth_edge_sdk::export_http_policy!(MyPolicy);`.
/// Needs the SDK's `http` feature. `on-request` before a successful `init`
/// answers 503 (see [`export::NOT_INITIALISED`]).
#[cfg(feature = "http")]
#[macro_export]
macro_rules! export_http_policy {
    ($policy:ty) => {
        $crate::__export_component!($policy, on_request);
    };
}

/// The export glue behind [`export_policy!`] and `export_http_policy!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($policy:ty, $requests:ident) => {
        // The generated export glue is `unsafe` FFI; it is reviewed code of
        // `wit-bindgen`, not of the policy.
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                static HEARTH_EDGE_INSTANCE: $crate::export::Slot<$policy> =
                    const { $crate::export::Slot::new() };
            }

            struct HearthEdgeExport;

            impl $crate::bindings::Guest for HearthEdgeExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    HEARTH_EDGE_INSTANCE.with(|slot| slot.init(config))
                }

                fn decide(hello: $crate::ClientHello) -> $crate::Decision {
                    HEARTH_EDGE_INSTANCE.with(|slot| slot.decide(&hello))
                }

                $crate::__export_on_request!($requests);
            }

    $crate::bindings::export!(HearthEdgeExport with_types_in $crate::bindings);
        };
    };
}

/// `on-request` in the export glue: absent from a `policy` world build.
#[cfg(not(feature = "http"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_on_request {
    (follow_routes) => {};
}

/// `on-request` in the export glue of an `http-policy` build: the policy's
/// answer, or `follow-routes` for a policy exported with `export_policy!`.
#[cfg(feature = "http")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_on_request {
    (follow_routes) => {
        fn on_request(_request: $crate::HttpRequest) -> $crate::HttpDecision {
            $crate::HttpDecision::FollowRoutes
        }
    };
    (on_request) => {
        fn on_request(request: $crate::HttpRequest) -> $crate::HttpDecision {
            HEARTH_EDGE_INSTANCE.with(|slot| slot.on_request(&request))
        }
    };
}
