//! Handlers: `wasi:http/proxy` components answering routes at the edge.
//! `handlers/lk-jwt.wasm` (the LiveKit JWT service) against stand-in
//! Matrix homeservers over HTTPS with a test CA and a stand-in LiveKit
//! (`tests/peers/matrix_livekit.py`), through a real curl; and the test
//! guest `http-probe` (wstd) trapping, spinning, hogging memory and
//! reaching out where it may not, each costing one request; and both
//! engines under an address-space limit, with instances on demand.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use hearth_edge_policy::guests::{HOG, HTTP_PROBE, guest};

use crate::support::edge::{EDGE_BIN, Edge, EdgeBuilder};
use crate::support::hello::rustls_hello;
use crate::support::process::{Peer, START_TIMEOUT, TempDir, ToolOutput, require_binary};
use crate::support::recorder::{Mode, Recorder};
use crate::support::tls::{curl_edge, response_header as header, status};
use crate::support::{APEX_NAME, STEP_TIMEOUT, TURN_NAME, poll_until, repo_root};

const LK_KEY: &str = "lk-api-key";
const LK_SECRET: &str = "lk-secret-0123456789abcdef0123456789";
const ALICE_TOKEN: &str = "openid-alice-4f9a1c";
const BOB_TOKEN: &str = "openid-bob-77d2e0";
const FOREIGN_TOKEN: &str = "openid-foreign-5b3c";

/// A test CA and a leaf for 127.0.0.1–127.0.0.3 (the stand-ins' names).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("handler-pki");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "handler test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
            .map(String::from)
            .to_vec();
        let leaf = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// A running `matrix_livekit.py`.
struct StandIn {
    peer: Peer,
    addr: SocketAddr,
}

impl StandIn {
    fn spawn(args: &[String]) -> StandIn {
        let mut command = Command::new(require_binary("python3", "python3"));
        command
            .arg("-u")
            .arg(repo_root().join("tests/peers/matrix_livekit.py"))
            .args(args);
        let peer = Peer::spawn("matrix_livekit", command);
        let line = peer
            .logs
            .wait_for(&["listening on "], START_TIMEOUT)
            .unwrap_or_else(|| panic!("stand-in did not start:\n{}", peer.logs.dump()));
        let addr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
        StandIn { peer, addr }
    }

    /// A homeserver on `host` that knows alice's and bob's tokens, and one
    /// whose user is on another server.
    fn homeserver(host: &str, pki: &Pki) -> StandIn {
        StandIn::spawn(&[
            "homeserver".into(),
            host.into(),
            pki.path("leaf.pem").display().to_string(),
            pki.path("leaf.key").display().to_string(),
            format!("{ALICE_TOKEN}=@alice"),
            format!("{BOB_TOKEN}=@bob"),
            format!("{FOREIGN_TOKEN}=@mallory:evil.example"),
        ])
    }

    fn livekit() -> StandIn {
        StandIn::spawn(&[
            "livekit".into(),
            "127.0.0.1".into(),
            LK_KEY.into(),
            LK_SECRET.into(),
        ])
    }

    /// Userinfo requests served so far.
    fn userinfo_calls(&self) -> usize {
        self.peer.logs.count("userinfo ")
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.peer.logs.count("connection accepted")
    }

    /// Rooms created so far.
    fn created(&self) -> Vec<String> {
        self.peer
            .logs
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("created ").map(str::to_owned))
            .collect()
    }
}

/// The edge with `handlers_yaml` and the route set `pocketbase` (the apex)
/// holding `routes_yaml`.
fn handler_edge(handlers_yaml: &str, routes_yaml: &str) -> Edge {
    handler_builder(handlers_yaml, routes_yaml).admin().start()
}

fn handler_builder(handlers_yaml: &str, routes_yaml: &str) -> EdgeBuilder {
    EdgeBuilder::hearth()
        .without_backend("pocketbase")
        .yaml(&format!(
            "handlers:\n{handlers_yaml}http_routes:\n  pocketbase:\n    routes:\n{routes_yaml}"
        ))
}

fn post(edge: &Edge, path: &str, body: &str) -> ToolOutput {
    curl_edge(
        edge.addr,
        APEX_NAME,
        path,
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ],
    )
}

fn json(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn b64url_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (value(*c) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn b64_std(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The claims of `jwt` after checking its HS256 signature with the secret.
fn verified_claims(jwt: &str) -> serde_yaml::Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header = json(&String::from_utf8(b64url_decode(parts[0])).unwrap());
    assert_eq!(header["alg"].as_str(), Some("HS256"));
    let mut mac = Hmac::<Sha256>::new_from_slice(LK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&b64url_decode(parts[2]))
        .expect("the JWT is signed with LIVEKIT_SECRET");
    json(&String::from_utf8(b64url_decode(parts[1])).unwrap())
}

/// base64(SHA-256(JSON array)), the way the reference service names rooms.
fn hashed(parts: &[&str]) -> String {
    let array = format!(
        "[{}]",
        parts
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    b64_std(&Sha256::digest(array.as_bytes()))
}

fn sfu_get(room: &str, token: &str, server: &str, device: &str) -> String {
    format!(
        r#"{{"room":"{room}","openid_token":{{"access_token":"{token}","token_type":"Bearer","matrix_server_name":"{server}","expires_in":3600}},"device_id":"{device}"}}"#
    )
}

fn get_token(room: &str, slot: &str, token: &str, server: &str, claimed: &str) -> String {
    format!(
        r#"{{"room_id":"{room}","slot_id":"{slot}","openid_token":{{"access_token":"{token}","token_type":"Bearer","matrix_server_name":"{server}","expires_in":3600}},"member":{{"id":"member-1","claimed_user_id":"{claimed}","claimed_device_id":"DEVICE9"}}}}"#
    )
}

#[test]
fn lk_jwt_exchanges_openid_tokens_for_livekit_tokens() {
    let pki = Pki::new();
    let full = StandIn::homeserver("127.0.0.1", &pki);
    let restricted = StandIn::homeserver("127.0.0.3", &pki);
    let outside = StandIn::homeserver("127.0.0.2", &pki);
    let livekit = StandIn::livekit();
    let secrets = TempDir::new("lk-secrets");
    std::fs::write(secrets.join("key"), format!("{LK_KEY}\n")).unwrap();
    std::fs::write(secrets.join("secret"), format!("{LK_SECRET}\n\n")).unwrap();
    let livekit_url = format!("ws://{}", livekit.addr);
    let (hs_full, hs_restricted, hs_outside) = (
        full.addr.to_string(),
        restricted.addr.to_string(),
        outside.addr.to_string(),
    );
    let lk = |name: &str, url: &str| {
        format!(
            "  {name}:\n    component: \"{}\"\n    env: {{ LIVEKIT_URL: \"{url}\", LIVEKIT_FULL_ACCESS_HOMESERVERS: \"{hs_full}\" }}\n    env_files: {{ LIVEKIT_KEY: \"{}\", LIVEKIT_SECRET: \"{}\" }}\n    outbound:\n      allow: [\"https://127.0.0.1:{}\", \"https://127.0.0.3:{}\", \"http://127.0.0.1:{}\"]\n      ca_roots: \"{}\"\n    limits: {{ max_memory: 32MiB, request_timeout: 10s }}\n",
            repo_root().join("handlers/lk-jwt.wasm").display(),
            secrets.join("key").display(),
            secrets.join("secret").display(),
            full.addr.port(),
            restricted.addr.port(),
            livekit.addr.port(),
            pki.path("ca.pem").display(),
        )
    };
    let dead_sfu = format!("ws://{}", crate::support::process::dead_addr());
    let edge = handler_edge(
        &(lk("lk-jwt", &livekit_url) + &lk("lk-jwt-down", &dead_sfu)),
        "      - { path_prefix: /livekit/jwt, handler: lk-jwt, strip_prefix: true }\n      - { path_prefix: /down/jwt, handler: lk-jwt-down, strip_prefix: true }\n",
    );

    // /sfu/get for a full-access homeserver: the room is created first.
    let room = "!room:hearth.test";
    let out = post(
        &edge,
        "/livekit/jwt/sfu/get",
        &sfu_get(room, ALICE_TOKEN, &hs_full, "DEV1"),
    );
    assert_eq!(
        status(&out),
        Some(200),
        "{}\n--- livekit:\n{}\n--- edge:\n{}",
        out.stdout,
        livekit.peer.logs.dump(),
        edge.logs().dump()
    );
    assert_eq!(header(&out, "access-control-allow-origin"), Some("*"));
    let answer = json(&out.stdout);
    assert_eq!(answer["url"].as_str(), Some(livekit_url.as_str()));
    let claims = verified_claims(answer["jwt"].as_str().unwrap());
    let alias = hashed(&[room, "m.call#ROOM"]);
    assert_eq!(claims["iss"].as_str(), Some(LK_KEY));
    let alice = format!("@alice:{hs_full}");
    assert_eq!(
        claims["sub"].as_str(),
        Some(format!("{alice}:DEV1").as_str())
    );
    let video = &claims["video"];
    assert_eq!(video["room"].as_str(), Some(alias.as_str()));
    for grant in [
        "roomJoin",
        "canPublish",
        "canSubscribe",
        "canUpdateOwnMetadata",
    ] {
        assert_eq!(video[grant].as_bool(), Some(true), "{grant}");
    }
    let (nbf, exp) = (
        claims["nbf"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - nbf, 3600);
    assert_eq!(livekit.created(), vec![alias.clone()]);

    // /get_token: the identity is hashed from the membership.
    let out = post(
        &edge,
        "/livekit/jwt/get_token",
        &get_token(room, "slot-7", ALICE_TOKEN, &hs_full, &alice),
    );
    assert_eq!(status(&out), Some(200), "{}{}", out.stdout, out.stderr);
    let claims = verified_claims(json(&out.stdout)["jwt"].as_str().unwrap());
    assert_eq!(
        claims["sub"].as_str(),
        Some(hashed(&[&alice, "DEVICE9", "member-1"]).as_str())
    );
    assert_eq!(
        claims["video"]["room"].as_str(),
        Some(hashed(&[room, "slot-7"]).as_str())
    );
    assert_eq!(livekit.created().len(), 2);

    // A homeserver not listed for full access: a token, no room.
    let out = post(
        &edge,
        "/livekit/jwt/sfu/get",
        &sfu_get(room, BOB_TOKEN, &hs_restricted, "DEV2"),
    );
    assert_eq!(status(&out), Some(200), "{}{}", out.stdout, out.stderr);
    assert_eq!(livekit.created().len(), 2, "no room for restricted users");
    assert_eq!(restricted.userinfo_calls(), 1);

    // Refusals, each with the reference service's code.
    let refusals = [
        (
            sfu_get(room, "forged", &hs_full, "D"),
            401,
            "M_UNAUTHORIZED",
        ),
        (
            sfu_get(room, FOREIGN_TOKEN, &hs_full, "D"),
            401,
            "M_UNAUTHORIZED",
        ),
        (
            get_token(room, "s", ALICE_TOKEN, &hs_full, "@eve:hearth.test"),
            401,
            "M_UNAUTHORIZED",
        ),
        ("{not json".to_owned(), 400, "M_NOT_JSON"),
        (
            sfu_get(room, ALICE_TOKEN, &hs_full, "D")
                .replace("\"device_id\"", "\"extra\":1,\"device_id\""),
            400,
            "M_NOT_JSON",
        ),
        (format!(r#"{{"room":"{room}"}}"#), 400, "M_BAD_JSON"),
        (
            sfu_get(room, ALICE_TOKEN, &hs_outside, "D"),
            401,
            "M_UNAUTHORIZED",
        ),
    ];
    for (body, want_status, errcode) in &refusals {
        let path = if body.contains("room_id") {
            "/livekit/jwt/get_token"
        } else {
            "/livekit/jwt/sfu/get"
        };
        let out = post(&edge, path, body);
        assert_eq!(
            status(&out),
            Some(*want_status),
            "{body}: {}{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(
            json(&out.stdout)["errcode"].as_str(),
            Some(*errcode),
            "{body}"
        );
    }
    // The handler's client keeps its connections: fewer than requests.
    let (calls, connections) = (full.userinfo_calls(), full.connections());
    assert!(
        calls >= 5 && connections < calls,
        "{calls} userinfo requests over {connections} connections"
    );
    assert_eq!(
        outside.userinfo_calls(),
        0,
        "a homeserver outside outbound.allow is never contacted"
    );

    // CORS preflight, wrong method, health.
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        "/livekit/jwt/sfu/get",
        &["-X", "OPTIONS"],
    );
    assert_eq!(status(&out), Some(200));
    assert_eq!(header(&out, "access-control-allow-methods"), Some("POST"));
    assert_eq!(
        header(&out, "access-control-allow-headers"),
        Some("Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token")
    );
    let out = curl_edge(edge.addr, APEX_NAME, "/livekit/jwt/get_token", &[]);
    assert_eq!(status(&out), Some(405));
    let out = curl_edge(edge.addr, APEX_NAME, "/livekit/jwt/healthz", &[]);
    assert_eq!(status(&out), Some(200));

    // The SFU down: full access cannot create the room.
    let out = post(
        &edge,
        "/down/jwt/sfu/get",
        &sfu_get(room, ALICE_TOKEN, &hs_full, "D"),
    );
    assert_eq!(status(&out), Some(500), "{}{}", out.stdout, out.stderr);
    assert_eq!(json(&out.stdout)["errcode"].as_str(), Some("M_UNKNOWN"));

    // Metrics by handler, and nothing secret in the log.
    let refused = poll_until(STEP_TIMEOUT, || {
        let n = edge.metric(
            "hearth_edge_handler_outbound_requests_total{handler=\"lk-jwt\",result=\"refused\"}",
        )?;
        (n >= 1.0).then_some(n)
    });
    assert!(refused.is_some(), "refused outbound counted");
    assert!(
        edge.metric("hearth_edge_handler_requests_total{handler=\"lk-jwt\",status=\"200\"}")
            .unwrap()
            >= 3.0
    );
    let logs = edge.logs().dump();
    assert!(
        logs.contains("outbound request refused") && logs.contains("handler=lk-jwt"),
        "{logs}"
    );
    for secret in [LK_SECRET, LK_KEY, ALICE_TOKEN, BOB_TOKEN, FOREIGN_TOKEN] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
}

fn probe_yaml(limits: &str, allow: &str) -> String {
    probe_handler("probe", limits, &format!("{{ allow: [{allow}] }}"))
}

fn probe_handler(name: &str, limits: &str, outbound: &str) -> String {
    format!(
        "  {name}:\n    component: \"{}\"\n    env: {{ PUBLIC_NAME: \"probe\" }}\n    outbound: {outbound}\n    limits: {{ {limits} }}\n",
        guest(HTTP_PROBE).display()
    )
}

const PROBE_ROUTE: &str = "      - { path_prefix: /p, handler: probe, strip_prefix: true }\n";

/// `RLIMIT_AS` for the test below: far below what the instance pools
/// reserve (terabytes), ample for everything else.
const ADDRESS_SPACE_LIMIT: u64 = 4 << 30;

#[test]
fn under_an_address_space_limit_instances_are_allocated_on_demand() {
    let backend = Recorder::start(Mode::Record);
    let edge = handler_builder(
        &probe_yaml(
            "max_memory: 16MiB, request_timeout: 1s",
            "\"https://*:443\"",
        ),
        PROBE_ROUTE,
    )
    .backend("turn", backend.addr)
    .address_space_limit(ADDRESS_SPACE_LIMIT)
    .admin()
    .start();
    // One warning per engine, naming why.
    for what in ["policy", "handler"] {
        edge.expect_log(
            &[
                &format!("{what} instances are allocated on demand"),
                "cannot reserve its address space",
            ],
            STEP_TIMEOUT,
        );
    }
    // The policy decides: a hello for the TURN name is passed through whole.
    let hello = rustls_hello(TURN_NAME);
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&hello).unwrap();
    assert_eq!(
        backend.wait_received(0, hello.len(), STEP_TIMEOUT),
        Some(hello)
    );
    // A handler answers, and its limits still cost one request each.
    let out = curl_edge(edge.addr, APEX_NAME, "/p/hello", &[]);
    assert_eq!(status(&out), Some(200), "{}", out.stderr);
    each_costs_one_request(
        &edge,
        &[("/p/hog", 500, "memory"), ("/p/spin", 504, "timeout")],
    );

    // A policy's `max_memory` holds too: the hog guest is stopped on its
    // fault name, and the next hello is routed.
    let ok = Recorder::start(Mode::Record);
    let edge = EdgeBuilder::with_policy(&guest(HOG))
        .policy_yaml("on_error", "reject")
        .policy_yaml("limits", "{ max_memory: 2MiB, max_time: 200ms }")
        .backend("ok", ok.addr)
        .address_space_limit(ADDRESS_SPACE_LIMIT)
        .start();
    edge.expect_log(&["policy instances are allocated on demand"], STEP_TIMEOUT);
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&rustls_hello("hog.test")).unwrap();
    edge.expect_log(&["policy failed", "kind=memory"], STEP_TIMEOUT);
    let hello = rustls_hello("ok.test");
    let mut sock = TcpStream::connect(edge.addr).unwrap();
    sock.write_all(&hello).unwrap();
    assert_eq!(ok.wait_received(0, hello.len(), STEP_TIMEOUT), Some(hello));
}

/// Asks the `probe` handler for each `(path, status, failure kind)`: the
/// answer has that status, the failure is counted once under that kind, and
/// the next request is served.
fn each_costs_one_request(edge: &Edge, failures: &[(&str, u16, &str)]) {
    let get = |path: &str| curl_edge(edge.addr, APEX_NAME, path, &[]);
    for &(path, want, kind) in failures {
        let out = get(path);
        assert_eq!(status(&out), Some(want), "{path}: {}", out.stderr);
        let counted = edge.metric(&format!(
            "hearth_edge_handler_failures_total{{handler=\"probe\",kind=\"{kind}\"}}"
        ));
        assert_eq!(counted, Some(1.0), "{path}");
        assert_eq!(status(&get("/p/hello")), Some(200), "after {path}");
    }
}

#[test]
fn a_misbehaving_handler_costs_one_request() {
    let edge = handler_edge(
        &probe_yaml(
            "max_memory: 16MiB, request_timeout: 1s, max_request_body: 1KiB, max_response_body: 64KiB",
            "\"https://*:443\"",
        ),
        PROBE_ROUTE,
    );
    let get = |path: &str| curl_edge(edge.addr, APEX_NAME, path, &[]);
    let out = get("/p/hello?x=1");
    assert_eq!(status(&out), Some(200), "{}", out.stderr);
    assert!(out.stdout.contains("path=/hello?x=1"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("authority={APEX_NAME}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("scheme=https"), "{}", out.stdout);
    assert!(
        out.stdout.contains("x-forwarded-for=127.0.0.1"),
        "{}",
        out.stdout
    );
    each_costs_one_request(
        &edge,
        &[
            ("/p/trap", 500, "trap"),
            ("/p/spin", 504, "timeout"),
            ("/p/hog", 500, "memory"),
            ("/p/no-answer", 500, "no_answer"),
        ],
    );
    assert!(
        edge.logs().count("http-probe was asked to trap") >= 1,
        "the panic message is logged"
    );
    // Bodies: streamed both ways within the limits.
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        "/p/echo",
        &["--data-binary", "ping-pong"],
    );
    assert_eq!(out.stdout, "ping-pong");
    let big = "x".repeat(4096);
    // Over HTTP/1.1: curl 7.88 over h2 reports the early answer's stream
    // reset (sent while it still uploads) instead of the 413 itself.
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        "/p/echo",
        &["--http1.1", "--data-binary", &big],
    );
    assert_eq!(
        status(&out),
        Some(413),
        "{}\n{}",
        out.stderr,
        edge.logs().dump()
    );
    let out = get("/p/big?n=60000");
    assert_eq!(out.stdout.len(), 60000);
    let out = get("/p/big?n=200000");
    assert!(
        out.stdout.len() < 200_000,
        "the response is cut at max_response_body"
    );
    // WASI: env only; no sockets except wasi:http.
    assert!(
        get("/p/env?name=PUBLIC_NAME")
            .stdout
            .contains("is set (5 bytes)")
    );
    assert!(get("/p/env?name=HOME").stdout.contains("is not set"));
}

#[test]
fn outbound_requests_are_denied_by_default() {
    let pki = Pki::new();
    let hs = StandIn::homeserver("127.0.0.1", &pki);
    let edge = handler_edge(
        &probe_yaml(
            "request_timeout: 5s",
            "\"https://*:443\", \"https://localhost:*\"",
        ),
        PROBE_ROUTE,
    );
    let fetch = |url: &str| curl_edge(edge.addr, APEX_NAME, &format!("/p/fetch?url={url}"), &[]);
    // Not in the allow list: no connection at all.
    let out = fetch(&format!(
        "https://{}/_matrix/federation/v1/openid/userinfo",
        hs.addr
    ));
    assert_eq!(status(&out), Some(502), "{}", out.stdout);
    assert!(out.stdout.contains("HttpRequestDenied"), "{}", out.stdout);
    // A name that resolves to loopback, allowed by name: refused by address.
    let out = fetch(&format!("https://localhost:{}/x", hs.addr.port()));
    assert!(
        out.stdout.contains("DestinationIpProhibited"),
        "{}",
        out.stdout
    );
    // The inbound Host does not steer it: a client's Host is not an outbound authority.
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        "/p/fetch?url=/relative",
        &["-H", &format!("host: {}", hs.addr)],
    );
    assert_eq!(status(&out), Some(502));
    assert_eq!(hs.userinfo_calls(), 0);
    assert!(edge.logs().count("outbound request refused") >= 2);

    // Allowed by a literal IP pattern: verified against ca_roots, and
    // refused without them (the stand-in's CA is not in the Web PKI).
    let allow = format!("\"https://127.0.0.1:{}\"", hs.addr.port());
    let edge = handler_edge(
        &(probe_handler(
            "probe",
            "request_timeout: 5s",
            &format!(
                "{{ allow: [{allow}], ca_roots: \"{}\" }}",
                pki.path("ca.pem").display()
            ),
        ) + &probe_handler(
            "webpki",
            "request_timeout: 5s",
            &format!("{{ allow: [{allow}] }}"),
        )),
        &format!(
            "{PROBE_ROUTE}      - {{ path_prefix: /w, handler: webpki, strip_prefix: true }}\n"
        ),
    );
    let userinfo = format!(
        "https://{}/_matrix/federation/v1/openid/userinfo?access_token={ALICE_TOKEN}",
        hs.addr
    )
    .replace('?', "%3F")
    .replace('=', "%3D");
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        &format!("/p/fetch?url={userinfo}"),
        &[],
    );
    assert_eq!(status(&out), Some(200), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("status=200") && out.stdout.contains("@alice"),
        "{}",
        out.stdout
    );
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        &format!("/w/fetch?url={userinfo}"),
        &[],
    );
    assert_eq!(status(&out), Some(502), "{}", out.stdout);
    assert!(out.stdout.contains("TlsCertificateError"), "{}", out.stdout);
    assert_eq!(hs.userinfo_calls(), 1);
    assert!(
        edge.metric("hearth_edge_handler_outbound_requests_total{handler=\"probe\",result=\"ok\"}")
            == Some(1.0)
    );
}

#[test]
fn bad_handler_configs_are_named_with_file_line_and_field() {
    let dir = TempDir::new("handler-check");
    let policy = repo_root().join("policies/hearth.wasm");
    let cases = [
        (
            format!("handlers:\n  x:\n    component: \"{}\"\n", policy.display()),
            "handlers.x.component",
            "not a wasi:http/proxy component",
        ),
        (
            format!(
                "handlers:\n  x:\n    component: \"{}\"\n    env_files: {{ A: /nonexistent/secret }}\n",
                guest(HTTP_PROBE).display()
            ),
            "handlers.x.env_files.A",
            "cannot read /nonexistent/secret",
        ),
        (
            format!(
                "handlers:\n  x:\n    component: \"{}\"\n    outbound: {{ allow: [\"matrix.org\"] }}\n",
                guest(HTTP_PROBE).display()
            ),
            "handlers.x.outbound.allow[0]",
            "expected scheme://host:port",
        ),
        (
            "http_routes:\n  web:\n    routes:\n      - { handler: nope }\n".to_owned(),
            "http_routes.web.routes[0].handler",
            "unknown handler \"nope\"",
        ),
    ];
    for (yaml, field, message) in cases {
        let path = dir.join("edge.yaml");
        let text = format!(
            "listen: \"127.0.0.1:0\"\npolicy: {{ path: \"{}\", config: {{ domain: hearth.test }} }}\n{yaml}",
            policy.display()
        );
        std::fs::write(&path, &text).unwrap();
        let out = Command::new(EDGE_BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}");
        let line = text
            .lines()
            .position(|l| l.contains(field.rsplit('.').next().unwrap().split('[').next().unwrap()))
            .map(|i| i + 1)
            .unwrap();
        let at = format!("{}:{line}:", path.display());
        assert!(
            stderr.contains(&at) && stderr.contains(field) && stderr.contains(message),
            "want {at} {field}: {message}\n{stderr}"
        );
    }
}

#[test]
fn handlers_reload_with_the_config_and_a_broken_one_keeps_the_old() {
    let named = |name: &str| {
        probe_handler("probe", "request_timeout: 10s", "{ allow: [] }").replace(
            "PUBLIC_NAME: \"probe\"",
            &format!("PUBLIC_NAME: \"{name}\""),
        )
    };
    let builder = handler_builder(&named("first"), PROBE_ROUTE).admin();
    let edge = builder.clone().start();
    let get = |path: &str| curl_edge(edge.addr, APEX_NAME, path, &[]);
    assert!(get("/p/sleep?ms=0").stdout.contains("as first"));
    // A request in flight across the reload finishes on its handler.
    let addr = edge.addr;
    let in_flight = std::thread::spawn(move || curl_edge(addr, APEX_NAME, "/p/sleep?ms=1500", &[]));
    poll_until(STEP_TIMEOUT, || {
        edge.metric("hearth_edge_connections_active")
            .filter(|n| *n >= 1.0)
    })
    .expect("the slow request is in flight");
    let second = handler_builder(&named("second"), PROBE_ROUTE);
    edge.rewrite_config(&second);
    edge.signal("HUP");
    edge.expect_log(&["reloaded"], STEP_TIMEOUT);
    assert!(get("/p/sleep?ms=0").stdout.contains("as second"));
    let out = in_flight.join().unwrap();
    assert_eq!(status(&out), Some(200), "{}", out.stderr);
    assert!(out.stdout.contains("as first"), "{}", out.stdout);
    // A component that is not a wasi:http/proxy one: refused, the old stays.
    let broken = handler_builder(
        &named("third").replace(
            &guest(HTTP_PROBE).display().to_string(),
            &repo_root()
                .join("policies/hearth.wasm")
                .display()
                .to_string(),
        ),
        PROBE_ROUTE,
    );
    edge.rewrite_config(&broken);
    edge.signal("HUP");
    let line = edge.expect_log(&["reload failed"], STEP_TIMEOUT);
    assert!(
        line.contains("handlers.probe.component")
            && line.contains("not a wasi:http/proxy component"),
        "{line}"
    );
    assert!(get("/p/sleep?ms=0").stdout.contains("as second"));
}

#[test]
fn a_python_handler_is_served_by_the_same_routes() {
    let component = std::path::Path::new(hearth_edge_policy::guests::GUEST_DIR)
        .join(hearth_edge_policy::guests::PY_HELLO);
    assert!(
        component.is_file(),
        "{} is missing: run handlers/py-hello/build.sh (needs componentize-py from PyPI)",
        component.display()
    );
    let edge = handler_edge(
        &format!(
            "  py:\n    component: \"{}\"\n    limits: {{ max_memory: 64MiB }}\n",
            component.display()
        ),
        "      - { path_prefix: /py, handler: py }\n",
    );
    let out = curl_edge(edge.addr, APEX_NAME, "/py/hello?lang=python", &[]);
    assert_eq!(status(&out), Some(200), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "hello from python at /py/hello?lang=python\n");
}

#[test]
fn call_runs_one_request_through_a_handler_without_an_edge() {
    let dir = TempDir::new("handler-call");
    let path = dir.join("edge.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\npolicy: {{ path: \"{}\", config: {{ domain: hearth.test }} }}\nhandlers:\n{}",
            repo_root().join("policies/hearth.wasm").display(),
            probe_yaml("request_timeout: 2s", "")
        ),
    )
    .unwrap();
    let call = |args: &[&str]| {
        Command::new(EDGE_BIN)
            .args(["call", "--config"])
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    let out = call(&["probe", "/echo", "-X", "POST", "-d", "from call"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("HTTP/1.1 200 OK") && stdout.ends_with("from call"),
        "{stdout}"
    );
    let out = call(&["probe", "/env?name=PUBLIC_NAME"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("is set (5 bytes)"));
    let out = call(&["probe", "/trap"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http-probe was asked to trap"));
    let out = call(&["nope", "/"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no handler \"nope\""));
}
