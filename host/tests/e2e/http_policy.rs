//! The policy at L7: a component of the `http-policy` world answers
//! `on-request` for every request of the HTTP mode. `policies/web-gate.wasm`
//! redirects, refuses, rate-limits and picks backends per request behind a
//! real curl over HTTP/1.1 and HTTP/2; the misbehaving test guest `spin`
//! shows that a failing or invalid answer costs one request (503, or the
//! routes when `on_error` fails open) and is counted by kind.

use std::net::SocketAddr;

use hearth_edge_policy::guests::{SPIN, guest};

use crate::support::edge::{Edge, EdgeBuilder};
use crate::support::http_echo::{HttpEcho, echoed_header};
use crate::support::process::dead_addr;
use crate::support::tls::{curl_edge, curl_plain, response_header, status};
use crate::support::{APEX_NAME, LK_NAME, STEP_TIMEOUT, poll_until, repo_root};

/// web-gate in front of route set `site` (everything to `web`), with a
/// `next` backend for the canary header.
fn web_gate_edge(web: &HttpEcho, next: &HttpEcho, extra: &[(&str, &str)]) -> Edge {
    let mut builder = EdgeBuilder::with_policy(&repo_root().join("policies/web-gate.wasm"))
        .policy_config("names", &format!("{APEX_NAME}, {LK_NAME}"))
        .policy_config("routes", "site")
        .policy_config("canonical_host", APEX_NAME)
        .policy_config("admin_prefix", "/_/")
        .policy_config("admin_sources", "10.0.0.0/8")
        .policy_config("canary_header", "x-canary")
        .policy_config("canary_backend", "next")
        .backend("web", web.addr)
        .backend("next", next.addr)
        .yaml("http_routes:\n  site:\n    routes:\n      - { backend: web }\n")
        .admin();
    for (key, value) in extra {
        builder = builder.policy_config(key, value);
    }
    builder.start()
}

#[test]
fn an_http_policy_redirects_refuses_and_picks_backends_per_request() {
    let web = HttpEcho::start("web");
    let next = HttpEcho::start("next");
    let edge = web_gate_edge(&web, &next, &[]);

    // Followed routes, over HTTP/1.1 and HTTP/2.
    for version in ["--http1.1", "--http2"] {
        let out = curl_edge(edge.addr, APEX_NAME, "/page?x=1", &[version]);
        assert_eq!(status(&out), Some(200), "{}", out.stderr);
        assert_eq!(out.stdout.lines().next(), Some("web GET /page?x=1"));
    }

    // Another of its names: redirected to the canonical host, path and query kept.
    let out = curl_edge(edge.addr, LK_NAME, "/a/b?c=1", &["--http2"]);
    assert_eq!(status(&out), Some(308), "{}", out.stderr);
    assert_eq!(
        response_header(&out, "location"),
        Some("https://hearth.test/a/b?c=1")
    );
    assert_eq!(web.hits("/a/b?c=1"), 0, "a redirect is not forwarded");

    // The admin area, from outside `admin_sources`: refused by the edge.
    let out = curl_edge(edge.addr, APEX_NAME, "/_/", &["--http1.1"]);
    assert_eq!(status(&out), Some(403), "{}", out.stderr);
    assert_eq!(out.stdout, "forbidden\n");
    assert_eq!(
        response_header(&out, "content-type"),
        Some("text/plain; charset=utf-8")
    );

    // The canary header: another backend, with the header the policy set.
    let out = curl_edge(edge.addr, APEX_NAME, "/", &["-H", "X-Canary: yes"]);
    assert_eq!(status(&out), Some(200), "{}", out.stderr);
    assert_eq!(out.stdout.lines().next(), Some("next GET /"));
    assert_eq!(echoed_header(&out.stdout, "x-canary"), Some("1"));
    assert_eq!(
        echoed_header(&out.stdout, "x-forwarded-for"),
        Some("127.0.0.1")
    );

    edge.expect_log(
        &["http request", "path=/_/", "status=403", "policy=respond"],
        STEP_TIMEOUT,
    );
    edge.expect_log(
        &[
            "http request",
            "status=200",
            "backend=next",
            "policy=forward",
        ],
        STEP_TIMEOUT,
    );
    assert_eq!(
        edge.metric("hearth_edge_http_responses_total{code=\"308\"}"),
        Some(1.0)
    );
    assert_eq!(
        edge.metric("hearth_edge_http_responses_total{code=\"403\"}"),
        Some(1.0)
    );
    // Answer times by backend; the edge's own answers (redirect, 403) as `-`.
    let count = |backend: &str| {
        edge.metric(&format!(
            "hearth_edge_http_request_duration_seconds_count{{backend=\"{backend}\"}}"
        ))
    };
    assert_eq!(count("web"), Some(2.0));
    assert_eq!(count("next"), Some(1.0));
    assert_eq!(count("-"), Some(2.0));
}

#[test]
fn an_http_policy_rate_limits_requests_per_source() {
    let web = HttpEcho::start("web");
    let next = HttpEcho::start("next");
    // One request per second after a burst of two: four requests on one
    // connection, milliseconds apart, cannot all get a token.
    let edge = web_gate_edge(&web, &next, &[("rate_per_ip", "1"), ("burst_per_ip", "2")]);
    let url = format!("https://{APEX_NAME}:{}/r", edge.addr.port());
    let out = curl_edge(
        edge.addr,
        APEX_NAME,
        "/r",
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            &url,
            "-o",
            "/dev/null",
            &url,
            "-o",
            "/dev/null",
            &url,
        ],
    );
    let statuses: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("< HTTP/1.1 "))
        .collect();
    assert_eq!(statuses.len(), 4, "{}", out.stderr);
    assert!(
        statuses[..2].iter().all(|s| s.starts_with("200")),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.starts_with("429")),
        "{statuses:?}"
    );
    assert_eq!(response_header(&out, "retry-after"), Some("1"));
}

/// The `spin` guest behind a plain listener into route set `site` (`web`).
fn spin_edge(web: &HttpEcho, on_error: &str) -> (Edge, SocketAddr) {
    let plain = dead_addr();
    let edge = EdgeBuilder::with_policy(&guest(SPIN))
        .backend("ok", dead_addr())
        .backend("web", web.addr)
        .policy_yaml("on_error", on_error)
        .policy_yaml("limits", "{ max_time: 50ms }")
        .yaml(&format!(
            "http_routes:\n  site:\n    routes:\n      - {{ backend: web }}\n\
             plain_listen:\n  - {{ addr: \"{plain}\", routes: site }}\n"
        ))
        .admin()
        .start();
    (edge, plain)
}

#[test]
fn a_failing_or_invalid_on_request_costs_one_request_and_is_counted() {
    let web = HttpEcho::start("web");
    let (edge, plain) = spin_edge(&web, "reject");
    let failing = [
        ("spin.test", "timeout"),
        ("bad-status.test", "invalid_answer"),
        ("bad-redirect.test", "invalid_answer"),
        ("bad-header.test", "invalid_answer"),
        ("no-backend.test", "unknown_backend"),
    ];
    for (host, kind) in failing {
        let out = curl_plain(plain, host, "/");
        assert_eq!(status(&out), Some(503), "{host}: {}", out.stderr);
        edge.expect_log(&["policy failed", &format!("kind={kind}")], STEP_TIMEOUT);
        // The next request is served: one request paid.
        let out = curl_plain(plain, "fine.test", "/fine");
        assert_eq!(status(&out), Some(200), "after {host}: {}", out.stderr);
        assert_eq!(out.stdout.lines().next(), Some("web GET /fine"));
    }
    let errors = |kind: &str| {
        edge.metric(&format!(
            "hearth_edge_policy_errors_total{{kind=\"{kind}\"}}"
        ))
    };
    assert_eq!(errors("timeout"), Some(1.0));
    assert_eq!(errors("invalid_answer"), Some(3.0));
    assert_eq!(errors("unknown_backend"), Some(1.0));
    assert_eq!(web.hits("/"), 0, "no failed request reached the backend");
}

#[test]
fn a_failing_on_request_follows_the_routes_when_on_error_fails_open() {
    let web = HttpEcho::start("web");
    let (edge, plain) = spin_edge(&web, "ok");
    let out = curl_plain(plain, "spin.test", "/open");
    assert_eq!(status(&out), Some(200), "{}", out.stderr);
    assert_eq!(out.stdout.lines().next(), Some("web GET /open"));
    edge.expect_log(
        &["policy failed", "kind=timeout", "on_error=ok"],
        STEP_TIMEOUT,
    );
}

#[test]
fn a_reload_that_swaps_a_plain_policy_for_an_http_policy_and_back_takes_effect() {
    let web = HttpEcho::start("web");
    let plain = EdgeBuilder::hearth()
        .without_backend("pocketbase")
        .backend("web", web.addr)
        .yaml("http_routes:\n  pocketbase:\n    routes:\n      - { backend: web }\n");
    // web-gate refuses keys it does not know, such as Hearth's `domain`.
    let gate = plain
        .clone()
        .policy(repo_root().join("policies/web-gate.wasm"))
        .without_policy_config("domain")
        .policy_config("names", APEX_NAME)
        .policy_config("routes", "pocketbase")
        .policy_config("admin_prefix", "/_/")
        .policy_config("admin_sources", "10.0.0.0/8");
    let edge = plain.clone().start();
    let admin = || status(&curl_edge(edge.addr, APEX_NAME, "/_/", &[]));

    assert_eq!(
        admin(),
        Some(200),
        "the Hearth policy has no say per request"
    );
    edge.rewrite_config(&gate);
    edge.signal("HUP");
    edge.expect_log(&["reloaded"], STEP_TIMEOUT * 3);
    assert_eq!(admin(), Some(403), "web-gate guards the admin area");
    edge.rewrite_config(&plain);
    edge.signal("HUP");
    poll_until(STEP_TIMEOUT * 3, || {
        (edge.logs().count("reloaded") >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("second reload: {}", edge.logs().dump()));
    assert_eq!(admin(), Some(200), "back to the Hearth policy");
}
