//! `hearth-wasm-edge call --config FILE HANDLER PATH`: one request to a
//! handler of a config, without a running edge, printing the answer as
//! curl -i would. The handler runs as it would at the edge: the config's
//! environment (with `env_files`), limits and outbound allow list.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use hearth_edge_policy::handler::{BodyError, NoObserver};

use super::serve::{handler_runtime, load_config};

/// Arguments of `call`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The edge config (YAML) that defines the handler.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The handler's name (a key of `handlers`).
    #[arg(value_name = "HANDLER")]
    pub handler: String,
    /// The request target as the handler sees it (`/sfu/get`, `/x?y=1`).
    #[arg(value_name = "PATH")]
    pub path: String,
    /// The method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// A request header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub data: Option<String>,
    /// The host the request names.
    #[arg(long, default_value = "localhost")]
    pub host: String,
}

/// Runs one request through the handler; exit 0 on any answer, 1 when the
/// handler gave none.
pub fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(Some(&args.config), None)?;
    let settings = config.handlers.get(&args.handler).with_context(|| {
        let known: Vec<&str> = config.handlers.keys().map(String::as_str).collect();
        format!(
            "no handler {:?} in {} (known: {})",
            args.handler,
            args.config.display(),
            known.join(", ")
        )
    })?;
    let handler = handler_runtime()?
        .load(&settings.name, &settings.settings, Arc::new(NoObserver))
        .map_err(|e| anyhow::anyhow!("{}: {}", settings.component_at, e.message))?;
    let mut request = http::Request::builder()
        .method(args.method.as_str())
        .uri(format!("https://{}{}", args.host, args.path));
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header {header:?}: expected `name: value`"))?;
        request = request.header(name.trim(), value.trim());
    }
    let body = Full::new(Bytes::from(args.data.unwrap_or_default()))
        .map_err(|never| -> BodyError { match never {} });
    let request = request.body(body).context("invalid request")?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    tokio.block_on(async {
        match handler.serve(request, true).await {
            Ok(answer) => {
                let (parts, body) = answer.into_parts();
                println!("HTTP/1.1 {}", parts.status);
                for (name, value) in &parts.headers {
                    println!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
                }
                println!();
                let body = body.collect().await.context("reading the body")?;
                print!("{}", String::from_utf8_lossy(&body.to_bytes()));
                Ok(ExitCode::SUCCESS)
            }
            Err(failure) => {
                eprintln!("handler {}: {failure}", args.handler);
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
