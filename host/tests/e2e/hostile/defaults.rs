//! The security-relevant defaults, checked through the real binary:
//! - a policy gets no WASI capabilities: the `wasi-probe` guest, run as the
//!   edge's policy, finds no file, environment, arguments, socket or resolver;
//! - terminated TLS speaks only TLS 1.2 and 1.3 with AEAD suites:
//!   `openssl s_client` offering TLS 1.0 / 1.1, or only CBC / RSA-key-exchange
//!   / 3DES suites, is refused by the edge (and the edge says so in its log);
//! - private keys never reach the log, even at `trace` level;
//! - the local CA writes its key owner-only (0600, in a 0700 directory).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

use hearth_edge_policy::guests::{WASI_PROBE, guest};

use super::RELAXED_POLICY_LIMITS;
use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::hello::rustls_hello;
use crate::support::process::TempDir;
use crate::support::recorder::{Mode, Recorder};
use crate::support::tls::openssl_s_client;
use crate::support::{APEX_NAME, STEP_TIMEOUT, cert_path};

/// What the probe reports when every capability is denied.
const NOTHING_GRANTED: &str = "file=denied env=denied args=denied tcp=denied dns=denied";
/// Lets `openssl s_client` itself offer what Debian's default policy
/// (SECLEVEL 2, TLS ≥ 1.2) would not send, so the edge is what refuses.
const ANY_CLIENT_POLICY: &str = "DEFAULT:@SECLEVEL=0";
/// Cipher suites no one should accept: CBC with SHA-1 MACs, RSA key
/// exchange (no forward secrecy), 3DES.
const WEAK_SUITES: &str = "AES128-SHA:AES256-SHA:DES-CBC3-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA256:@SECLEVEL=0";

#[test]
fn a_policy_in_the_edge_finds_no_capabilities() {
    let edge = EdgeBuilder::with_policy(&guest(WASI_PROBE))
        .policy_yaml("limits", RELAXED_POLICY_LIMITS)
        .start();
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    sock.write_all(&rustls_hello("probe.test")).unwrap();
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    let line = edge.expect_log(&["connection rejected"], STEP_TIMEOUT);
    assert!(line.contains(NOTHING_GRANTED), "{line}");
}

/// An edge terminating TLS for the apex name in front of a live backend
/// (the dial precedes the handshake), at `log_level`.
fn terminating_edge(log_level: &'static str) -> (Edge, Recorder) {
    let backend = Recorder::start(Mode::Echo);
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", backend.addr)
        .policy_yaml("limits", RELAXED_POLICY_LIMITS)
        .log_level(log_level)
        .start();
    (edge, backend)
}

/// `s_client` with `args`: did the handshake complete?
fn handshake(edge: &Edge, args: &[&str]) -> (bool, String) {
    let out = openssl_s_client(edge.addr, Some(APEX_NAME), args);
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let done =
        out.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)");
    (done, text)
}

#[test]
fn terminated_tls_refuses_old_versions_and_weak_suites() {
    let (edge, _backend) = terminating_edge("info");
    // Controls: the modern versions work with s_client's defaults.
    for version in ["-tls1_2", "-tls1_3"] {
        let (done, text) = handshake(&edge, &[version]);
        assert!(done, "{version} handshake failed:\n{text}");
    }
    let mut refusals = 0;
    let attempts: [&[&str]; 3] = [
        &["-tls1", "-cipher", ANY_CLIENT_POLICY],
        &["-tls1_1", "-cipher", ANY_CLIENT_POLICY],
        &["-tls1_2", "-cipher", WEAK_SUITES],
    ];
    for args in attempts {
        let (done, text) = handshake(&edge, args);
        assert!(!done, "the edge accepted {args:?}:\n{text}");
        // The client did send its hello: the refusal is the edge's.
        refusals += 1;
        let failed = edge
            .logs()
            .wait_for_n(&["TLS handshake failed"], refusals, STEP_TIMEOUT);
        assert!(
            failed.is_some(),
            "no edge-side handshake failure for {args:?}; client said:\n{text}\nedge:\n{}",
            edge.logs().dump()
        );
    }
}

/// Bytes per key fragment searched for in the log.
const FRAGMENT_BYTES: usize = 12;

/// Every fragment of the key in `pem` that could show up in a log: each
/// base64 line of the PEM body, and every [`FRAGMENT_BYTES`]-byte window of
/// the DER as lowercase hex and as a Rust byte list (`48, 130, …`), except
/// windows found in `public` (the certificates carry the public key, which
/// the log may print).
fn key_fragments(pem: &str, public: &[Vec<u8>]) -> Vec<String> {
    use rustls_pki_types::pem::PemObject;
    let mut fragments: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect();
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("a PEM key");
    for window in der.secret_der().windows(FRAGMENT_BYTES) {
        if public
            .iter()
            .any(|p| p.windows(FRAGMENT_BYTES).any(|w| w == window))
        {
            continue;
        }
        fragments.push(window.iter().map(|b| format!("{b:02x}")).collect());
        fragments.push(
            window
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    fragments
}

/// The DER of every certificate in the PEM file at `path`.
fn cert_ders(path: &std::path::Path) -> Vec<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .expect("a PEM file")
        .map(|c| c.expect("a certificate").to_vec())
        .collect()
}

#[test]
fn private_keys_stay_out_of_the_log_and_key_files_are_owner_only() {
    let ca_dir = TempDir::new("local-ca");
    let data = ca_dir.join("data");
    let backend = Recorder::start(Mode::Echo);
    let edge = EdgeBuilder::hearth()
        .backend("pocketbase", backend.addr)
        .policy_yaml("limits", RELAXED_POLICY_LIMITS)
        .log_level("trace")
        .tls_yaml(&format!(
            "tls:\n  certificates:\n    - {{ cert: \"{}\", key: \"{}\" }}\n  local_ca: {{ dir: \"{}\", names: [local.hearth.test] }}\n",
            cert_path("edge.crt").display(),
            cert_path("edge.key").display(),
            data.display(),
        ))
        .start();
    // Handshakes that succeed and fail, with both certificates.
    for (name, args) in [
        (APEX_NAME, &["-tls1_3"][..]),
        ("local.hearth.test", &["-tls1_2"][..]),
        (APEX_NAME, &["-tls1_1", "-cipher", ANY_CLIENT_POLICY][..]),
    ] {
        let _ = openssl_s_client(edge.addr, Some(name), args);
    }
    edge.expect_log(&["TLS handshake failed"], STEP_TIMEOUT);

    let ca_key = data.join("ca.key");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca_key), 0o600, "{}", ca_key.display());
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.contains("PRIVATE KEY") {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }

    let log = edge.logs().dump();
    assert!(log.lines().count() > 10, "trace logging is on:\n{log}");
    assert!(!log.contains("PRIVATE KEY"), "a PEM key header in the log");
    let mut public = cert_ders(&cert_path("edge.crt"));
    public.extend(cert_ders(&data.join("ca.crt")));
    let keys = [
        std::fs::read_to_string(cert_path("edge.key")).unwrap(),
        std::fs::read_to_string(&ca_key).unwrap(),
    ];
    for key in keys {
        let fragments = key_fragments(&key, &public);
        assert!(
            fragments.len() > 40,
            "too few secret fragments: {}",
            fragments.len()
        );
        for fragment in fragments {
            assert!(
                !log.contains(&fragment),
                "key material in the log: {fragment}"
            );
        }
    }
}
