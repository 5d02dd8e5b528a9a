//! A policy gets no capabilities: no files, environment, arguments, sockets
//! or name lookups, even though the edge process has all of them.

use hearth_edge_policy::guests::{WASI_PROBE, guest};
use hearth_edge_policy::{Decision, Limits, Policy};

use super::support::{hello, runtime};

const NOTHING_GRANTED: &str = "file=denied env=denied args=denied tcp=denied dns=denied";

fn probe(policy: &Policy) -> String {
    match policy
        .decide(&hello(Some("probe.test")))
        .expect("the probe decides")
    {
        Decision::Reject(r) => r.reason,
        other => panic!("the probe always rejects, got {other:?}"),
    }
}

#[test]
fn the_probe_finds_nothing() {
    // The host itself can do all of these, so a leak would show.
    assert!(std::fs::read("/etc/hostname").is_ok() || std::fs::read_dir("/").is_ok());
    assert!(std::env::var_os("PATH").is_some());
    let policy = Policy::load(&runtime(), &guest(WASI_PROBE), vec![], Limits::default()).unwrap();
    assert_eq!(probe(&policy), NOTHING_GRANTED);
}

#[test]
fn the_probe_finds_nothing_from_inside_a_tokio_task() {
    let policy = Policy::load(&runtime(), &guest(WASI_PROBE), vec![], Limits::default()).unwrap();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let reason = tokio_rt.block_on(async {
        let policy = policy.clone();
        tokio::spawn(async move { probe(&policy) }).await.unwrap()
    });
    assert_eq!(reason, NOTHING_GRANTED);
}
