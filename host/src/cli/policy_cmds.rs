//! `hearth-wasm-edge test` and `hearth-wasm-edge explain`: thin command-line
//! faces of the policy harness in `hearth_edge_policy::harness` (which owns
//! the case format and the comparison); this file only prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use hearth_edge_policy::harness::{self, HarnessError, HelloSpec, Report, Targets};
use hearth_edge_policy::{Limits, LoadError, LogRecord, Policy, Runtime, RuntimeOptions};

use crate::config::Config;
use crate::sync::lock;

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
    /// Also ask `on-request` about a request for this path (and `?query`)
    /// on the `--sni` host (an `http-policy` only).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// The request's method, with `--path`.
    #[arg(long, value_name = "METHOD", default_value = "GET", requires = "path")]
    pub method: String,
    /// A request header `name: value`, with `--path`; repeat for several.
    #[arg(long, value_name = "NAME: VALUE", requires = "path")]
    pub header: Vec<String>,
    /// Print the hello and the decision as a test case (an entry for a
    /// case file's `cases:`) instead of the explanation.
    #[arg(long)]
    pub emit_case: bool,
}

/// Arguments of `test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The policy component (.wasm); with `--config`, default its
    /// `policy.path`.
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    pub policy: Option<PathBuf>,
    /// An edge config: the cases run with its `policy.config` (cases with
    /// a `config` of their own keep it), and a decision expected or made
    /// that names a backend or route set the config lacks fails.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// One or more case files (YAML).
    #[arg(required = true, value_name = "CASES.yaml")]
    pub cases: Vec<PathBuf>,
}

/// The backends and route sets of `config`, for the harness.
fn targets(config: &Config, file: &Path) -> Targets {
    Targets {
        file: file.display().to_string(),
        backends: config.backends.keys().cloned().collect(),
        route_sets: config.http_routes.keys().cloned().collect(),
    }
}

/// Runs `policy.cases` of `config` (if set) against its policy with its
/// `policy.config` and backends: a load or reload is refused when one
/// fails, so a policy that routes to nowhere never goes live.
pub(crate) fn config_cases(
    config: &Config,
    config_file: &Path,
    runtime: &Runtime,
) -> anyhow::Result<()> {
    let Some(report) = config_cases_report(config, config_file, runtime)? else {
        return Ok(());
    };
    if report.failures.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
    // One line: a refused reload is one log line.
    anyhow::bail!(
        "policy.cases: {} ({}): {}",
        config
            .policy
            .cases
            .as_deref()
            .unwrap_or(Path::new("-"))
            .display(),
        report.summary(),
        lines.join("; ")
    )
}

/// The report of `policy.cases`, `None` when the config names no case file.
pub(crate) fn config_cases_report(
    config: &Config,
    config_file: &Path,
    runtime: &Runtime,
) -> anyhow::Result<Option<harness::Report>> {
    let Some(cases_path) = &config.policy.cases else {
        return Ok(None);
    };
    let mut file = harness::read_case_file(cases_path)?;
    file.config = config.policy.config.clone();
    let wasm = std::fs::read(&config.policy.path)
        .with_context(|| format!("reading {}", config.policy.path.display()))?;
    let report = harness::run_cases_for(
        runtime,
        &config.policy.path,
        &wasm,
        cases_path,
        &file,
        config.policy.limits,
        Some(&targets(config, config_file)),
    )?;
    Ok(Some(report))
}

/// Runs case files against a policy; exit code 1 if any case fails.
pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let edge = match &args.config {
        Some(path) => Some(Config::load(path, args.policy.as_deref())?),
        None => None,
    };
    let policy = match (&edge, &args.policy) {
        (Some(config), _) => config.policy.path.clone(),
        (None, Some(policy)) => policy.clone(),
        (None, None) => anyhow::bail!("--policy or --config is required"),
    };
    let policy = policy.as_path();
    let targets = edge
        .as_ref()
        .zip(args.config.as_deref())
        .map(|(config, file)| targets(config, file));
    let runtime = runtime()?;
    let mut report = Report::default();
    let mut broken_files = 0;
    let wasm = match std::fs::read(policy) {
        Ok(wasm) => wasm,
        Err(source) => {
            println!(
                "{}",
                LoadError::Read {
                    path: policy.to_owned(),
                    source
                }
            );
            println!("{}", report.summary());
            return Ok(ExitCode::FAILURE);
        }
    };
    for path in &args.cases {
        let outcome = harness::read_case_file(path).and_then(|mut file| {
            if let Some(config) = &edge {
                file.config = config.policy.config.clone();
            }
            harness::run_cases_for(
                &runtime,
                policy,
                &wasm,
                path,
                &file,
                Limits::default(),
                targets.as_ref(),
            )
        });
        match outcome {
            Ok(file_report) => {
                for failure in &file_report.failures {
                    println!("{failure}");
                }
                report.merge(file_report);
            }
            Err(HarnessError::Load(e)) => {
                // The policy itself is unusable: no case file can pass.
                println!("{e}");
                println!("{}", report.summary());
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => {
                println!("{e}");
                broken_files += 1;
            }
        }
    }
    println!("{}", report.summary());
    Ok(if report.failures.is_empty() && broken_files == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the decision for one hello (and, with `--path`, the policy's
/// answer to one request on it).
pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let request = match &args.path {
        Some(path) => Some(
            request_spec(&args, path)?
                .to_request()
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let spec = HelloSpec {
        sni: args.sni,
        alpn: args.alpn,
        source: args.source,
        ..HelloSpec::default()
    };
    let hello = spec.to_hello().map_err(anyhow::Error::msg)?;
    let config = harness::config_pairs(&args.policy_config).map_err(anyhow::Error::msg)?;

    let runtime = runtime()?;
    if args.emit_case {
        anyhow::ensure!(
            request.is_none(),
            "--emit-case writes a hello case: drop --path"
        );
        let policy = Policy::load(&runtime, &args.policy, config, Limits::default())?;
        let decision = policy.decide(&hello)?;
        let name = format!(
            "{} (from explain)",
            hello.server_name.as_deref().unwrap_or("no SNI")
        );
        print!("{}", harness::emit_case(&name, &hello, &decision));
        return Ok(ExitCode::SUCCESS);
    }
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    runtime.set_log_sink(Some(Arc::new(move |r: &LogRecord<'_>| {
        let line = format!("{:<5} {}", level_name(r.level), r.message);
        lock(&sink).push(line);
    })));

    println!("policy:   {}", args.policy.display());
    for (k, v) in &config {
        println!("config:   {k} = {v}");
    }
    println!("hello:");
    println!(
        "  server_name:          {}",
        hello.server_name.as_deref().unwrap_or("(none)")
    );
    println!("  alpn:                 {}", list(&hello.alpn));
    println!(
        "  source:               {}:{}",
        hello.source_addr, hello.source_port
    );
    println!("  local_port:           {}", hello.local_port);
    println!(
        "  supported_versions:   {}",
        hex_list(&hello.supported_versions)
    );
    println!("  cipher_suites:        {}", hex_list(&hello.cipher_suites));
    println!(
        "  supported_groups:     {}",
        hex_list(&hello.supported_groups)
    );
    println!(
        "  key_share_groups:     {}",
        hex_list(&hello.key_share_groups)
    );
    println!(
        "  signature_algorithms: {}",
        hex_list(&hello.signature_algorithms)
    );
    println!("  extensions:           {}", hex_list(&hello.extensions));

    let policy = Policy::load(&runtime, &args.policy, config, Limits::default());
    let outcome = policy
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|policy| policy.decide(&hello).map_err(|e| e.to_string()));
    let mut code = match &outcome {
        Ok(decision) => {
            println!("decision: {}", harness::describe(decision));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error:    {e}");
            ExitCode::FAILURE
        }
    };
    if let (Some(request), Ok(policy)) = (&request, &policy) {
        let query = request
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        println!(
            "request:  {} {}{}{query}",
            request.method, request.host, request.path
        );
        for (name, value) in &request.headers {
            println!("  {name}: {value}");
        }
        if !policy.handles_requests() {
            println!("on-request: (not an http-policy: requests follow the routes)");
        } else {
            match policy.on_request(request) {
                Ok(answer) => println!("on-request: {}", harness::describe_request(&answer)),
                Err(e) => {
                    println!("error:    {e}");
                    code = ExitCode::FAILURE;
                }
            }
        }
    }
    let lines = lock(&lines);
    if lines.is_empty() {
        println!("policy log: (nothing)");
    } else {
        println!("policy log:");
        for line in lines.iter() {
            println!("  {line}");
        }
    }
    Ok(code)
}

/// The request `--path` and its options describe, on the `--sni` host.
fn request_spec(args: &ExplainArgs, path: &str) -> anyhow::Result<harness::RequestSpec> {
    let host = args
        .sni
        .clone()
        .context("--path needs --sni: the request's host is the connection's name")?;
    let headers = args
        .header
        .iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header {h:?}: expected `name: value`"))?;
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(harness::RequestSpec {
        method: args.method.clone(),
        host,
        path: path.to_owned(),
        headers,
        source: args.source.clone(),
        ..harness::RequestSpec::default()
    })
}

/// A runtime with the per-user precompiled cache, so repeated runs start fast.
fn runtime() -> anyhow::Result<Runtime> {
    let options = RuntimeOptions {
        cache_dir: RuntimeOptions::default_cache_dir(),
        ..RuntimeOptions::default()
    };
    Runtime::new(options).context("starting the policy runtime")
}

fn level_name(level: hearth_edge_policy::Level) -> &'static str {
    use hearth_edge_policy::Level;
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

fn hex_list(items: &[u16]) -> String {
    let parts: Vec<String> = items.iter().map(|v| format!("{v:#06x}")).collect();
    list(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_edge_policy::guests::{SPIN, TRAP, guest};

    /// Writes `text` as a case file in a fresh temp directory.
    fn case_file(tag: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hearth-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trap.tests.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `test --policy POLICY CASES…`.
    fn test_policy(policy: &Path, cases: &[PathBuf]) -> anyhow::Result<ExitCode> {
        test(TestArgs {
            policy: Some(policy.to_owned()),
            config: None,
            cases: cases.to_vec(),
        })
    }

    const PASSING: &str =
        "cases:\n  - name: ok\n    hello: { sni: a.test }\n    expect: { passthrough: ok }\n";

    #[test]
    fn passing_cases_exit_zero() {
        let cases = case_file("pass", PASSING);
        assert_eq!(
            test_policy(&guest(TRAP), &[cases]).unwrap(),
            ExitCode::SUCCESS
        );
    }

    #[test]
    fn a_failing_case_exits_one() {
        let cases = case_file(
            "fail",
            "cases:\n  - name: wrong\n    hello: { sni: a.test }\n    expect: { terminate: ok }\n",
        );
        assert_eq!(
            test_policy(&guest(TRAP), &[cases]).unwrap(),
            ExitCode::FAILURE
        );
    }

    #[test]
    fn a_malformed_case_file_exits_one_even_if_others_pass() {
        let good = case_file("good", PASSING);
        let bad = case_file("bad", "cases:\n  - name: x\n    expect: { passthru: ok }\n");
        assert_eq!(
            test_policy(&guest(TRAP), &[good, bad]).unwrap(),
            ExitCode::FAILURE
        );
    }

    #[test]
    fn a_missing_policy_exits_one() {
        let cases = case_file("nopolicy", PASSING);
        let code = test_policy(Path::new("/nonexistent/policy.wasm"), &[cases]).unwrap();
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[test]
    fn explain_exits_zero_on_a_decision_and_one_on_a_trap() {
        let args = |sni: &str| ExplainArgs {
            policy: guest(TRAP),
            sni: Some(sni.into()),
            alpn: vec!["h2".into()],
            source: "203.0.113.7".into(),
            policy_config: vec!["mode=test".into()],
            path: None,
            method: "GET".into(),
            header: Vec::new(),
            emit_case: false,
        };
        assert_eq!(explain(args("a.test")).unwrap(), ExitCode::SUCCESS);
        assert_eq!(explain(args("trap.test")).unwrap(), ExitCode::FAILURE);
    }

    #[test]
    fn explain_with_a_path_asks_on_request_and_fails_on_a_failing_answer() {
        // The spin guest is an `http-policy`; it spins in `decide` for
        // `spin.test` and follows the routes for other requests.
        let args = |sni: &str, path: Option<&str>| ExplainArgs {
            policy: guest(SPIN),
            sni: Some(sni.into()),
            alpn: Vec::new(),
            source: "203.0.113.7".into(),
            policy_config: Vec::new(),
            path: path.map(str::to_owned),
            method: "GET".into(),
            header: vec!["X-Test: 1".into()],
            emit_case: false,
        };
        assert_eq!(
            explain(args("fine.test", Some("/a?b=1"))).unwrap(),
            ExitCode::SUCCESS
        );
        assert_eq!(explain(args("spin.test", None)).unwrap(), ExitCode::FAILURE);
        let no_sni = ExplainArgs {
            sni: None,
            ..args("x", Some("/"))
        };
        assert!(explain(no_sni).unwrap_err().to_string().contains("--sni"));
        let bad_header = ExplainArgs {
            header: vec!["no colon".into()],
            ..args("fine.test", Some("/"))
        };
        assert!(
            explain(bad_header)
                .unwrap_err()
                .to_string()
                .contains("name: value")
        );
    }
}
