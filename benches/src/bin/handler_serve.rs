//! The per-request cost of a handler inside the edge's runtime, without
//! sockets: `Handler::serve` of `GET /hello` on the test guest http-probe
//! (a fresh instance from the pool, the call, the answer's head), the same
//! with the body read to the end, and the fresh instance alone. Prints µs
//! per request.
//!
//!   cargo run --release -p hearth-edge-benches --bin handler_serve [-- N]
//!
//! Needs the test guests (`policies/build.sh`).

use std::sync::Arc;
use std::time::Instant;

use hearth_edge_policy::guests::{HTTP_PROBE, guest};
use hearth_edge_policy::handler::{BodyError, HandlerRuntime, HandlerSettings, NoObserver};
use http_body_util::{BodyExt, Empty};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let runtime = HandlerRuntime::new(None).expect("handler runtime");
    let settings = HandlerSettings {
        component: guest(HTTP_PROBE),
        env: Vec::new(),
        outbound: Default::default(),
        limits: Default::default(),
    };
    let handler = runtime
        .load("probe", &settings, Arc::new(NoObserver))
        .expect("load http-probe");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let request = || {
        http::Request::get("http://bench/hello")
            .body(Empty::<bytes::Bytes>::new().map_err(|never| -> BodyError { match never {} }))
            .expect("request")
    };
    tokio.block_on(async {
        // Warm-up: the pool's slots are touched once.
        for _ in 0..1_000 {
            handler.serve(request(), false).await.expect("answer");
        }
        let started = Instant::now();
        for _ in 0..n {
            let answer = handler.serve(request(), false).await.expect("answer");
            assert_eq!(answer.status(), 200);
        }
        let head = started.elapsed();
        let started = Instant::now();
        for _ in 0..n {
            let answer = handler.serve(request(), false).await.expect("answer");
            let body = answer.into_body().collect().await.expect("body");
            assert!(!body.to_bytes().is_empty());
        }
        let full = started.elapsed();
        let started = Instant::now();
        for _ in 0..n {
            handler.instantiate_only().await.expect("instance");
        }
        let instantiate = started.elapsed();
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / f64::from(n);
        println!("handler_serve: {n} requests of GET /hello on http-probe, one thread");
        println!(
            "  a fresh instance (store + instantiate):     {:.1} µs/request",
            per(instantiate)
        );
        println!(
            "  instantiate + handle, to the answer's head: {:.1} µs/request",
            per(head)
        );
        println!(
            "  the same with the body read to its end:     {:.1} µs/request",
            per(full)
        );
    });
}
