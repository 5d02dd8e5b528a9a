//! `handlers`: `wasi:http/proxy` components the edge runs, answering the
//! requests of routes that name them (`handler: <name>`). Raw serde
//! structs and their validation; the component itself is loaded by
//! `cli/serve.rs` through `hearth_edge_policy::handler`. Values of
//! `env_files` are read here, at load and at every reload, and never
//! printed ([`Secret`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hearth_edge_policy::handler::{
    AllowPattern, HandlerLimits, HandlerSettings, MAX_HANDLER_MEMORY, OutboundSettings, Secret,
};
use serde::Deserialize;

use super::duration::{ByteSize, ConfigDuration};
use super::field::{FieldError, fail, nonzero};
use super::validate::Context;
use super::values::BackendName;

// === raw ===

/// `handlers.<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandler {
    /// The `.wasm` component.
    pub component: PathBuf,
    /// Environment variables, as written.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are read from files.
    #[serde(default)]
    pub env_files: BTreeMap<String, PathBuf>,
    /// What outgoing requests may reach.
    #[serde(default)]
    pub outbound: RawOutbound,
    /// Per-request limits.
    #[serde(default)]
    pub limits: RawHandlerLimits,
}

/// `handlers.<name>.outbound`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    /// `scheme://host:port` patterns; nothing when empty.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Extra trust anchors (PEM) besides the Web PKI.
    pub ca_roots: Option<PathBuf>,
    /// Connect plus answer head, per outgoing request.
    pub timeout: Option<ConfigDuration>,
    /// Outgoing requests in flight at once.
    pub max_concurrent: Option<usize>,
}

/// `handlers.<name>.limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandlerLimits {
    /// Linear memory per request.
    pub max_memory: Option<ByteSize>,
    /// The whole request, body included.
    pub request_timeout: Option<ConfigDuration>,
    /// Request body bytes the component may read.
    pub max_request_body: Option<ByteSize>,
    /// Response body bytes before the answer is cut.
    pub max_response_body: Option<ByteSize>,
}

// === validated ===

/// One validated handler: what `hearth_edge_policy` loads.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Its name.
    pub name: String,
    /// Component, environment, outbound rules, limits.
    pub settings: HandlerSettings,
    /// Where `component` is written (`file:line:column: handlers.<name>.component`),
    /// for errors found when it is loaded.
    pub component_at: String,
}

/// `handlers`, with files resolved against the config's directory and
/// `env_files` read.
pub fn handlers(
    raw: BTreeMap<BackendName, RawHandler>,
    cx: &Context<'_>,
) -> Result<BTreeMap<String, HandlerConfig>, FieldError> {
    let mut out = BTreeMap::new();
    for (BackendName(name), raw) in raw {
        let at = |field: &str| format!("handlers.{name}.{field}");
        let component = cx.base_dir.join(&raw.component);
        if !component.is_file() {
            return fail(
                at("component"),
                format!("no such file {}", component.display()),
            );
        }
        let mut env = Vec::new();
        for (key, value) in raw.env {
            check_env_name(&key).or_else(|m| fail(at(&format!("env.{key}")), m))?;
            env.push((key, Secret(value)));
        }
        for (key, file) in raw.env_files {
            let field = at(&format!("env_files.{key}"));
            check_env_name(&key).or_else(|m| fail(field.clone(), m))?;
            if env.iter().any(|(k, _)| *k == key) {
                return fail(field, "also set in env");
            }
            let path = cx.base_dir.join(&file);
            let text = std::fs::read_to_string(&path).or_else(|e| {
                fail(
                    field.clone(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            env.push((key, Secret(text.trim_end().to_owned())));
        }
        let outbound = outbound(raw.outbound, &at, cx)?;
        let limits = limits(raw.limits, &at)?;
        let component_at = at("component");
        out.insert(
            name.clone(),
            HandlerConfig {
                name,
                settings: HandlerSettings {
                    component,
                    env,
                    outbound,
                    limits,
                },
                component_at,
            },
        );
    }
    Ok(out)
}

fn outbound(
    raw: RawOutbound,
    at: &dyn Fn(&str) -> String,
    cx: &Context<'_>,
) -> Result<OutboundSettings, FieldError> {
    let mut allow = Vec::new();
    for (i, text) in raw.allow.iter().enumerate() {
        allow.push(
            AllowPattern::parse(text).or_else(|m| fail(at(&format!("outbound.allow[{i}]")), m))?,
        );
    }
    let ca_roots = match raw.ca_roots {
        None => Vec::new(),
        Some(file) => crate::pem::load_roots(&cx.base_dir.join(file))
            .or_else(|e| fail(at("outbound.ca_roots"), e.to_string()))?,
    };
    if raw.max_concurrent == Some(0) {
        return fail(at("outbound.max_concurrent"), "must be at least 1");
    }
    Ok(OutboundSettings {
        allow,
        ca_roots,
        timeout: raw
            .timeout
            .map(|t| nonzero(at("outbound.timeout"), Some(t), t.0))
            .transpose()?,
        max_concurrent: raw.max_concurrent,
    })
}

fn limits(raw: RawHandlerLimits, at: &dyn Fn(&str) -> String) -> Result<HandlerLimits, FieldError> {
    let defaults = HandlerLimits::default();
    let max_memory = raw.max_memory.map_or(defaults.max_memory, |s| s.0);
    if !(64 << 10..=MAX_HANDLER_MEMORY).contains(&max_memory) {
        return fail(
            at("limits.max_memory"),
            format!("must be between 64KiB and {}MiB", MAX_HANDLER_MEMORY >> 20),
        );
    }
    Ok(HandlerLimits {
        max_memory,
        request_timeout: nonzero(
            at("limits.request_timeout"),
            raw.request_timeout,
            defaults.request_timeout,
        )?,
        max_request_body: raw
            .max_request_body
            .map_or(defaults.max_request_body, |s| s.0),
        max_response_body: raw
            .max_response_body
            .map_or(defaults.max_response_body, |s| s.0),
    })
}

/// A POSIX-ish environment variable name.
fn check_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid variable name {name:?}"))
    }
}
