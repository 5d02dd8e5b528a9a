//! The shadow policy: after the live decision (`proxy/conn.rs`), the same
//! hello is handed to a second policy on a blocking-pool thread, off the
//! connection's path; a different answer is counted and logged with a
//! summary of the hello, both decisions in the words `explain` uses
//! (`hearth_edge_policy::describe`). Its answer is never used, so it cannot change an
//! outcome; a failing or slow shadow costs only its own comparisons.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hearth_edge_policy::{ClientHello, Decision, PolicyError, describe};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use crate::decide::Decide;
use crate::metrics::Metrics;

/// Shadow calls in flight at once; past this, comparisons are skipped and
/// counted rather than queued, so a slow shadow cannot build a backlog.
const MAX_IN_FLIGHT: usize = 64;

/// A shadow policy and its in-flight bound.
pub(crate) struct Shadow {
    policy: Arc<dyn Decide>,
    in_flight: Arc<Semaphore>,
}

impl Shadow {
    pub(crate) fn new(policy: Arc<dyn Decide>) -> Shadow {
        Shadow {
            policy,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Starts the comparison of `live` with the shadow's decision for
    /// `hello` and returns at once.
    pub(crate) fn compare(
        &self,
        hello: &ClientHello,
        live: &Result<Decision, PolicyError>,
        metrics: &Arc<Metrics>,
    ) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            metrics.shadow_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let live = describe::outcome(live);
        let hello = hello.clone();
        let policy = self.policy.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let shadow = describe::outcome(&policy.decide(&hello));
            metrics.shadow_decisions.fetch_add(1, Ordering::Relaxed);
            if shadow == live {
                debug!(sni = %hello.server_name.as_deref().unwrap_or("-"), decision = %live, "shadow agrees");
                return;
            }
            metrics.shadow_disagreements.fetch_add(1, Ordering::Relaxed);
            info!(
                source = %hello.source_addr,
                sni = %hello.server_name.as_deref().unwrap_or("-"),
                alpn = %hello.alpn.join(","),
                ja4 = %hello.ja4,
                hello_bytes = hello.hello_bytes,
                live = %live,
                shadow = %shadow,
                shadow_policy = %policy.name(),
                "shadow policy disagrees"
            );
        });
    }
}
