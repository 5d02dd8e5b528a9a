//! `log.capture`: live ClientHellos and the decisions taken, appended to a
//! YAML case file that `hearth-wasm-edge test` reads back. A connection
//! only formats its case (when sampled) and hands it to a writer thread
//! over a bounded queue; a full queue drops the case, and a file that
//! cannot be written is reported once until it can be again.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use hearth_edge_policy::harness::{CASES_HEADER, emit_case};
use hearth_edge_policy::{ClientHello, Decision};
use tracing::{error, info};

use crate::config::CaptureSettings;

/// Cases waiting for the writer; more are dropped.
const QUEUE: usize = 256;

/// The sampler and the queue to the writer thread of one generation.
pub(crate) struct Capture {
    sample: f64,
    mask_source: bool,
    /// Connections offered so far, for the sampler.
    offered: AtomicU64,
    queue: SyncSender<String>,
}

impl Capture {
    /// Starts the writer thread; it ends when the generation is dropped.
    pub(crate) fn start(settings: &CaptureSettings) -> Capture {
        let (queue, cases) = sync_channel(QUEUE);
        let file = settings.file.clone();
        let spawned = std::thread::Builder::new()
            .name("hello-capture".into())
            .spawn(move || write_cases(&file, &cases));
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the log.capture writer; nothing is captured");
        }
        Capture {
            sample: settings.sample,
            mask_source: settings.mask_source,
            offered: AtomicU64::new(0),
            queue,
        }
    }

    /// Captures this connection's hello and decision if it is sampled.
    pub(crate) fn offer(&self, hello: &ClientHello, decision: &Decision) {
        let n = self.offered.fetch_add(1, Ordering::Relaxed);
        if !sampled(n, self.sample) {
            return;
        }
        let mut hello = hello.clone();
        if self.mask_source {
            hello.source_addr = mask(&hello.source_addr);
            hello.source_port = 0;
        }
        let name = format!(
            "{} from {} at {}",
            hello.server_name.as_deref().unwrap_or("no SNI"),
            hello.source_addr,
            unix_seconds()
        );
        match self.queue.try_send(emit_case(&name, &hello, decision)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                tracing::debug!("log.capture queue full: a case was dropped");
            }
        }
    }
}

/// Whether the `n`th connection (from 0) is captured: exactly a `sample`
/// share of every run of connections, spread evenly.
fn sampled(n: u64, sample: f64) -> bool {
    if sample >= 1.0 {
        return true;
    }
    let n = n as f64;
    ((n + 1.0) * sample).floor() > (n * sample).floor()
}

/// The address's network: IPv4 /24, IPv6 /48.
fn mask(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0]).to_string()
        }
        Ok(IpAddr::V6(v6)) => {
            let mut segments = v6.segments();
            segments[3..].fill(0);
            IpAddr::from(segments).to_string()
        }
        Err(_) => addr.to_owned(),
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Appends queued cases to `file` until the queue closes; each wake-up
/// writes all that waits in one open and write.
fn write_cases(file: &Path, cases: &Receiver<String>) {
    let mut failing = false;
    while let Ok(first) = cases.recv() {
        let mut batch = first;
        while let Ok(next) = cases.try_recv() {
            batch.push_str(&next);
        }
        match append(file, &batch) {
            Ok(()) if failing => {
                failing = false;
                info!(file = %file.display(), "log.capture file writable again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                error!(file = %file.display(), error = %e, "cannot write log.capture file; cases are dropped until it can be written");
            }
            Err(_) => {}
        }
    }
}

/// Appends `text`, starting the file with the case file header if empty.
fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut out = String::new();
    if file.metadata()?.len() == 0 {
        out.push_str(CASES_HEADER);
    }
    out.push_str(text);
    file.write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_takes_exactly_the_share() {
        for (sample, of, want) in [
            (1.0, 10, 10),
            (0.5, 10, 5),
            (0.1, 100, 10),
            (0.25, 8, 2),
            (0.001, 1000, 1),
        ] {
            let taken = (0..of).filter(|&n| sampled(n, sample)).count();
            assert_eq!(taken, want, "sample {sample} of {of}");
        }
    }

    #[test]
    fn sources_are_masked_to_their_network() {
        assert_eq!(mask("203.0.113.77"), "203.0.113.0");
        assert_eq!(mask("2001:db8:aa:bb:cc::1"), "2001:db8:aa::");
        assert_eq!(mask("not an address"), "not an address");
    }
}
