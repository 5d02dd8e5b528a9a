//! Pool picking, ejection and recovery, and dialing with a dead member, on
//! real loopback sockets.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{Eject, UpstreamProtocol};

const DIAL: Duration = Duration::from_secs(2);

fn backend(addrs: &[SocketAddr], balance: Balance, eject: Eject) -> Backend {
    let addrs: Vec<BackendAddr> = addrs
        .iter()
        .map(|a| BackendAddr::parse(&a.to_string()).unwrap())
        .collect();
    Backend {
        name: "pool".to_owned(),
        addrs,
        pool: PoolSettings {
            balance,
            health_check: None,
            eject,
            resolve_interval: Duration::from_secs(30),
            protocol: UpstreamProtocol::Http1,
        },
        proxy_protocol_v2: false,
        alpn: vec!["http/1.1".to_owned()],
        fast_open: false,
    }
}

fn eject(failures: u32, cooldown: Duration) -> Eject {
    Eject {
        failures,
        cooldown,
        all_5xx: false,
    }
}

/// A port nothing listens on: bound, then closed.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn round_robin_visits_every_member_in_turn() {
    let addrs: Vec<SocketAddr> = (1..=3)
        .map(|i| SocketAddr::from(([127, 0, 0, i], 80)))
        .collect();
    let pool = Pool::new(&backend(&addrs, Balance::RoundRobin, eject(5, DIAL)));
    let picked: Vec<SocketAddr> = (0..6).map(|_| pool.pick(&[]).unwrap().addr).collect();
    assert_eq!(&picked[..3], &picked[3..]);
    let mut distinct = picked[..3].to_vec();
    distinct.sort();
    assert_eq!(distinct, addrs);
    // Tried members are skipped, and an exhausted pool says so.
    assert!(pool.pick(&addrs).is_none());
    assert_eq!(pool.pick(&addrs[..2]).unwrap().addr, addrs[2]);
}

#[test]
fn least_conn_prefers_the_member_with_fewest_in_flight() {
    let addrs = [
        SocketAddr::from(([127, 0, 0, 1], 80)),
        SocketAddr::from(([127, 0, 0, 2], 80)),
    ];
    let pool = Pool::new(&backend(&addrs, Balance::LeastConn, eject(5, DIAL)));
    let busy = pool.members()[0].clone();
    let _leases: Vec<Lease> = (0..3).map(|_| Lease::new(busy.clone())).collect();
    for _ in 0..4 {
        assert_eq!(pool.pick(&[]).unwrap().addr, addrs[1]);
    }
    drop(_leases);
    assert_eq!(busy.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_a_member_until_the_cooldown_ends() {
    let addrs = [
        SocketAddr::from(([127, 0, 0, 1], 80)),
        SocketAddr::from(([127, 0, 0, 2], 80)),
    ];
    let pool = Pool::new(&backend(
        &addrs,
        Balance::RoundRobin,
        eject(2, Duration::from_secs(10)),
    ));
    let bad = pool.members()[0].clone();
    pool.failed(&bad);
    assert!((0..4).any(|_| pool.pick(&[]).unwrap().addr == bad.addr));
    pool.failed(&bad);
    for _ in 0..4 {
        assert_eq!(
            pool.pick(&[]).unwrap().addr,
            addrs[1],
            "ejected member picked"
        );
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!((0..4).any(|_| pool.pick(&[]).unwrap().addr == bad.addr));
}

#[test]
fn when_every_member_is_down_all_are_tried_anyway() {
    let addrs = [SocketAddr::from(([127, 0, 0, 1], 80))];
    let pool = Pool::new(&backend(&addrs, Balance::RoundRobin, eject(1, DIAL)));
    let only = pool.members()[0].clone();
    pool.failed(&only);
    assert_eq!(pool.pick(&[]).unwrap().addr, addrs[0]);
}

#[tokio::test]
async fn connect_skips_a_dead_member_and_reaches_the_live_one() {
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_addr = live.local_addr().unwrap();
    let dead = dead_addr();
    let pool = Arc::new(Pool::new(&backend(
        &[dead, live_addr],
        Balance::RoundRobin,
        eject(1, Duration::from_secs(60)),
    )));
    for _ in 0..4 {
        let (stream, lease, _) = pool.connect(DIAL, &[]).await.expect("a live member");
        assert_eq!(stream.peer_addr().unwrap(), live_addr);
        assert_eq!(lease.member().addr, live_addr);
        let _ = live.accept().await.unwrap();
    }
    // The dead member failed once and is now ejected: no more dials to it.
    let dead_member = pool
        .members()
        .iter()
        .find(|m| m.addr == dead)
        .cloned()
        .unwrap();
    assert!(!dead_member.is_up(pool.now_ms()));
}

#[tokio::test]
async fn host_names_resolve_into_members() {
    let mut b = backend(
        &[SocketAddr::from(([127, 0, 0, 1], 1))],
        Balance::RoundRobin,
        eject(5, DIAL),
    );
    b.addrs = vec![BackendAddr::parse("localhost:8090").unwrap()];
    let pool = Pool::new(&b);
    assert!(pool.members().is_empty(), "names wait for resolution");
    pool.resolve().await;
    let members = pool.members();
    assert!(!members.is_empty());
    assert!(
        members
            .iter()
            .all(|m| m.addr.ip().is_loopback() && m.addr.port() == 8090)
    );
    assert!(members.iter().all(|m| m.host == "localhost"));
}
