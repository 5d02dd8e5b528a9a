//! Where connections run: `workers` threads, each with its own
//! single-threaded tokio runtime and its own listening socket per address
//! (`listener::bind_group`), like nginx's worker processes. A connection
//! lives on the thread that accepted it, with its backend connections, so
//! its tasks never wait for another thread to pick them up. With one
//! shared multi-threaded runtime, requests queued behind the thread that
//! polled their readiness while the other core sat idle (about a tenth of
//! the machine idle at 50 keep-alive clients; `benches/RESULTS.md`).
//!
//! `workers: 1` runs the accept loops on the caller's runtime instead.
//! Everything else (reloads, the admin listener, ACME, health checks, idle
//! sweeps) stays on the caller's runtime either way.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, warn};

use super::Live;
use super::listener::{self, Serve};

/// What every accept loop shares.
#[derive(Clone)]
pub(super) struct Accept {
    pub live: Arc<Live>,
    pub limiter: Arc<Semaphore>,
    /// Turns true when accepting stops.
    pub stopped: watch::Receiver<bool>,
    /// Turns true when the drain has run out.
    pub closing: watch::Receiver<bool>,
}

/// Running accept loops.
pub(super) struct Workers {
    /// Loops on the caller's runtime (`workers: 1`).
    inline: JoinSet<()>,
    /// Closes once every thread's loops have returned.
    accepting: mpsc::UnboundedReceiver<()>,
    /// Tells the threads to stop (their remaining tasks are dropped).
    exit: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts the accept loops: `per_worker[i]` are worker `i`'s sockets.
pub(super) fn start(
    per_worker: Vec<Vec<(std::net::TcpListener, Serve)>>,
    accept: &Accept,
) -> Workers {
    let (accepting_tx, accepting) = mpsc::unbounded_channel();
    let (exit, exit_rx) = watch::channel(false);
    let mut workers = Workers {
        inline: JoinSet::new(),
        accepting,
        exit,
        threads: Vec::new(),
    };
    if per_worker.len() == 1 {
        for sockets in per_worker {
            spawn_loops(&mut workers.inline, sockets, accept);
        }
        return workers;
    }
    for (index, sockets) in per_worker.into_iter().enumerate() {
        let accept_for_thread = accept.clone();
        let accepting_tx = accepting_tx.clone();
        let exit_rx = exit_rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("edge-worker-{index}"))
            .spawn(move || {
                crate::worker::set(index + 1);
                worker(sockets, &accept_for_thread, accepting_tx, exit_rx);
            });
        match spawned {
            Ok(thread) => workers.threads.push(thread),
            // Its sockets were dropped with it, so closed: the kernel
            // sends the port's connections to the other workers' sockets.
            Err(error) => error!(worker = index, error = %error, "worker thread not started"),
        }
    }
    workers
}

/// One worker thread: its runtime runs the accept loops until accepting
/// stops, then its connections until told to exit.
fn worker(
    sockets: Vec<(std::net::TcpListener, Serve)>,
    accept: &Accept,
    accepting: mpsc::UnboundedSender<()>,
    mut exit: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            // Its sockets close with it, leaving the port to the others.
            error!(error = %error, "worker runtime not started");
            return;
        }
    };
    runtime.block_on(async move {
        let mut loops = JoinSet::new();
        spawn_loops(&mut loops, sockets, accept);
        while loops.join_next().await.is_some() {}
        drop(accepting);
        let _ = exit.wait_for(|exit| *exit).await;
    });
}

/// Registers `sockets` with the current runtime and spawns their loops.
fn spawn_loops(
    loops: &mut JoinSet<()>,
    sockets: Vec<(std::net::TcpListener, Serve)>,
    accept: &Accept,
) {
    for (socket, serve) in sockets {
        let listener = match TcpListener::from_std(socket) {
            Ok(listener) => listener,
            Err(error) => {
                // Dropped, so closed: the kernel sends its share of the
                // port's connections to the other workers' sockets.
                warn!(error = %error, "listening socket not registered");
                continue;
            }
        };
        loops.spawn(listener::accept_loop(
            listener,
            accept.live.clone(),
            accept.limiter.clone(),
            accept.stopped.clone(),
            accept.closing.clone(),
            serve,
        ));
    }
}

impl Workers {
    /// Waits until every accept loop has returned (after `stopped` turned
    /// true): the listening sockets are closed.
    pub async fn accepting_stopped(&mut self) {
        while self.inline.join_next().await.is_some() {}
        while self.accepting.recv().await.is_some() {}
    }

    /// Stops the worker threads; connections still open on them are
    /// dropped (closed).
    pub async fn finish(self) {
        let _ = self.exit.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
