//! `tls.export`: an ACME certificate written to files for a backend that
//! terminates TLS itself (LiveKit's TURN), then the `on_renew` action that
//! makes the backend pick it up.
//!
//! Files are written atomically (a temporary file in the same directory,
//! then `rename`), the key with mode 0600, missing directories created, and
//! only when their content changes. Called by `tls/acme.rs` whenever a
//! certificate is deployed; failures are logged, never fatal.

use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use crate::config::{ExportSettings, OnRenew};
use crate::metrics::Metrics;

/// Mode of exported key files: readable by their owner only.
const KEY_MODE: u32 = 0o600;
/// Mode of exported certificate files: public data.
const CERT_MODE: u32 = 0o644;
/// Bytes of a failed command's stderr kept for the log line.
const STDERR_LOG_BYTES: usize = 512;

/// Writes `chain_pem` and `key_pem` for `export` when they differ from what
/// is on disk. Returns whether anything was written.
pub fn write(export: &ExportSettings, chain_pem: &[u8], key_pem: &[u8]) -> io::Result<bool> {
    let cert_same = std::fs::read(&export.cert).is_ok_and(|old| old == chain_pem);
    let key_same = std::fs::read(&export.key).is_ok_and(|old| old == key_pem);
    if cert_same && key_same {
        return Ok(false);
    }
    // The key first: a reader that sees the new chain finds its key.
    write_atomic(&export.key, key_pem, KEY_MODE)?;
    write_atomic(&export.cert, chain_pem, CERT_MODE)?;
    Ok(true)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader sees either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        // The umask may have narrowed the mode; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Runs `action` for the certificate of `name`; failures are logged and
/// counted, the edge keeps serving.
pub async fn run_on_renew(name: String, action: OnRenew, metrics: std::sync::Arc<Metrics>) {
    match run(&action).await {
        Ok(done) => info!(name = %name, action = %done, "on_renew done"),
        Err(error) => {
            metrics.on_renew_failures.fetch_add(1, Ordering::Relaxed);
            warn!(name = %name, error = %error, "on_renew failed");
        }
    }
}

async fn run(action: &OnRenew) -> Result<String, String> {
    match action {
        OnRenew::Signal {
            signal,
            name,
            pid_file,
        } => {
            let text = std::fs::read_to_string(pid_file)
                .map_err(|e| format!("cannot read {}: {e}", pid_file.display()))?;
            let pid: i32 = text
                .trim()
                .parse()
                .map_err(|_| format!("{}: no pid in {:?}", pid_file.display(), text.trim()))?;
            let target = rustix::process::Pid::from_raw(pid)
                .ok_or_else(|| format!("{}: invalid pid {pid}", pid_file.display()))?;
            let sig = rustix::process::Signal::from_named_raw(*signal)
                .ok_or_else(|| format!("unsupported signal {name}"))?;
            rustix::process::kill_process(target, sig)
                .map_err(|e| format!("sending {name} to {pid}: {e}"))?;
            Ok(format!("sent {name} to {pid}"))
        }
        OnRenew::Command { argv, timeout } => {
            let mut command = tokio::process::Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let child = command
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
            let output = tokio::time::timeout(*timeout, child.wait_with_output())
                .await
                .map_err(|_| format!("{} killed after {timeout:?}", argv[0]))?
                .map_err(|e| format!("waiting for {}: {e}", argv[0]))?;
            if output.status.success() {
                Ok(format!("{} exited 0", argv[0]))
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: String = stderr
                    .chars()
                    .rev()
                    .take(STDERR_LOG_BYTES)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Err(format!(
                    "{} {}: {}",
                    argv[0],
                    output.status,
                    tail.trim_end()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn temp_dir(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hearth-export-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn write_creates_directories_sets_modes_and_skips_unchanged_content() {
        let dir = temp_dir("write");
        let export = ExportSettings {
            name: "turn.example".to_owned(),
            cert: dir.join("a/b/turn.crt"),
            key: dir.join("a/b/turn.key"),
            on_renew: None,
        };
        assert!(write(&export, b"chain", b"key").unwrap());
        assert_eq!(std::fs::read(&export.cert).unwrap(), b"chain");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&export.key), 0o600);
        assert_eq!(mode(&export.cert), 0o644);
        assert!(!write(&export, b"chain", b"key").unwrap(), "unchanged");
        assert!(write(&export, b"chain2", b"key").unwrap());
        // No temporary files are left behind.
        let left: Vec<_> = std::fs::read_dir(dir.join("a/b")).unwrap().collect();
        assert_eq!(left.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_command_that_fails_or_hangs_is_an_error_with_its_reason() {
        let fail = OnRenew::Command {
            argv: vec!["sh".into(), "-c".into(), "echo broken >&2; exit 3".into()],
            timeout: Duration::from_secs(5),
        };
        let error = run(&fail).await.unwrap_err();
        assert!(
            error.contains("exit status: 3") && error.contains("broken"),
            "{error}"
        );
        let hang = OnRenew::Command {
            argv: vec!["sleep".into(), "10".into()],
            timeout: Duration::from_millis(100),
        };
        assert!(run(&hang).await.unwrap_err().contains("killed after"));
        let ok = OnRenew::Command {
            argv: vec!["true".into()],
            timeout: Duration::from_secs(5),
        };
        assert!(run(&ok).await.is_ok());
    }

    #[tokio::test]
    async fn a_signal_reaches_the_pid_in_the_file() {
        let dir = temp_dir("signal");
        std::fs::create_dir_all(&dir).unwrap();
        // A real process that reports SIGHUP by exiting with a marker
        // status; it creates `ready` once its trap is installed.
        let ready = dir.join("ready");
        let script = format!(
            "trap 'exit 42' HUP; touch '{}'; while :; do sleep 0.05; done",
            ready.display()
        );
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let pid_file = dir.join("child.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id().unwrap())).unwrap();
        let action = OnRenew::Signal {
            signal: libc::SIGHUP,
            name: "SIGHUP".to_owned(),
            pid_file: pid_file.clone(),
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            while !ready.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the child installs its trap");
        run(&action).await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("child exits on SIGHUP")
            .unwrap();
        assert_eq!(status.code(), Some(42));
        std::fs::write(&pid_file, "not a pid").unwrap();
        assert!(run(&action).await.unwrap_err().contains("no pid"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
