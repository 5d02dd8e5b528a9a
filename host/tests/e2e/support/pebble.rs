//! Pebble (Debian package `pebble`), Let's Encrypt's test ACME server, with
//! `pebble-challtestsrv` as its DNS server (every name → 127.0.0.1). Pebble
//! validates challenges against the edge's own listeners: `httpPort` and
//! `tlsPort` in its config are the edge's HTTP and TLS ports, so the ports
//! are picked before either starts.
//!
//! Pebble's HTTPS listener gets a leaf from a CA made here with rcgen (the
//! edge's `tls.acme.ca_root`); the root of the certificates it issues is
//! fetched from its management interface (`/roots/0`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use super::STEP_TIMEOUT;
use super::process::{Peer, TempDir, free_port, require_binary, run_tool};

/// A running Pebble and its DNS server; stopped on drop.
pub struct Pebble {
    /// The ACME server (its log is `peer.logs`).
    pub peer: Peer,
    /// The DNS server.
    pub dns: Peer,
    /// The directory URL.
    pub directory: String,
    /// PEM root trusted for the directory (`tls.acme.ca_root`).
    pub directory_root: PathBuf,
    /// PEM root of the certificates Pebble issues.
    pub issuer_root: PathBuf,
    dir: TempDir,
}

impl Pebble {
    /// Starts the DNS server and Pebble, validating against the edge's
    /// `edge_http_port` (HTTP-01) and `edge_tls_port` (TLS-ALPN-01).
    pub fn start(edge_http_port: u16, edge_tls_port: u16) -> Pebble {
        let pebble = require_binary("pebble", "pebble");
        let challtestsrv = require_binary("pebble-challtestsrv", "pebble");
        let dir = TempDir::new("pebble");

        let (dns_port, dns_admin_port) = (free_port(), free_port());
        let mut dns_command = Command::new(challtestsrv);
        dns_command.args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{dns_admin_port}"),
        ]);
        let mut dns = Peer::spawn("pebble-challtestsrv", dns_command);
        dns.wait_listening(dns_port)
            .expect("pebble-challtestsrv DNS");

        let (directory_root, cert, key) = listener_certificate(&dir);
        let (port, admin_port) = (free_port(), free_port());
        let config = format!(
            r#"{{"pebble": {{
                "listenAddress": "127.0.0.1:{port}",
                "managementListenAddress": "127.0.0.1:{admin_port}",
                "certificate": "{}",
                "privateKey": "{}",
                "httpPort": {edge_http_port},
                "tlsPort": {edge_tls_port},
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }}}}"#,
            cert.display(),
            key.display()
        );
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config).expect("write pebble config");
        let mut command = Command::new(pebble);
        command
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // Validate at once, accept every nonce, and never reuse a
            // validation: each order is validated against the edge.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        let mut peer = Peer::spawn("pebble", command);
        peer.wait_listening(port).expect("pebble ACME listener");
        peer.wait_listening(admin_port)
            .expect("pebble management listener");

        let issuer_root = dir.join("issuer-root.pem");
        let curl = require_binary("curl", "curl");
        let mut fetch = Command::new(curl);
        fetch
            .args(["-sS", "--fail", "--cacert"])
            .arg(&directory_root)
            .arg("-o")
            .arg(&issuer_root)
            .arg(format!("https://127.0.0.1:{admin_port}/roots/0"));
        let fetched = run_tool(fetch, b"", STEP_TIMEOUT);
        assert!(
            fetched.status.success(),
            "fetching pebble's root: {}",
            fetched.stderr
        );
        Pebble {
            peer,
            dns,
            directory: format!("https://127.0.0.1:{port}/dir"),
            directory_root,
            issuer_root,
            dir,
        }
    }

    /// The `tls:` section of an edge config getting `names` from this
    /// Pebble with `challenge`, caching in `cache_dir`, plus `extra` lines
    /// (e.g. `export:`), indented by two spaces.
    pub fn tls_yaml(
        &self,
        names: &[&str],
        challenge: &str,
        cache_dir: &str,
        extra: &str,
    ) -> String {
        format!(
            "tls:\n  names: [{}]\n  acme:\n    directory: \"{}\"\n    ca_root: \"{}\"\n    cache_dir: \"{cache_dir}\"\n    challenge: {challenge}\n    contact: [\"mailto:ops@hearth.test\"]\n{extra}",
            names.join(", "),
            self.directory,
            self.directory_root.display(),
        )
    }
}

/// A CA and a leaf for `localhost` / `127.0.0.1` signed by it, written to
/// `dir`: (CA file, leaf file, key file).
fn listener_certificate(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble listener test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let paths = (
        dir.join("listener-ca.pem"),
        dir.join("listener.pem"),
        dir.join("listener.key"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write CA");
    std::fs::write(&paths.1, leaf.pem()).expect("write leaf");
    std::fs::write(&paths.2, leaf_key.serialize_pem()).expect("write key");
    paths
}

/// `SocketAddr`s on loopback for an edge's TLS and HTTP listeners, free a
/// moment ago (Pebble must know them before the edge starts).
pub fn edge_ports() -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    )
}
