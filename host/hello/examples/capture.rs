//! Fixture capture listener for `testdata/capture.sh`: accepts one connection on
//! `127.0.0.1:0`, prints the port, reads until a [`Reader`] has a whole ClientHello (or
//! refuses the bytes, or the client stops, or a deadline passes), writes the raw bytes
//! it read to the file named by its one argument, and closes.
//!
//! Usage: `cargo run -p hearth-edge-hello --example capture -- OUT.bin`

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use hearth_edge_hello::Reader;

/// How long to wait for a client to connect before giving up.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client gets to send its whole hello once connected.
const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Generous bound on what a capture keeps; real hellos are a few KB.
const MAX_CAPTURE_BYTES: usize = 64 * 1024;
/// Socket read size.
const READ_CHUNK: usize = 4096;
/// How often the accept loop checks its deadline.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

fn main() -> std::io::Result<()> {
    let out = std::env::args().nth(1).expect("usage: capture OUT.bin");
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;

    listener.set_nonblocking(true)?;
    let started = Instant::now();
    let (mut stream, peer) = loop {
        match listener.accept() {
            Ok(conn) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() > ACCEPT_TIMEOUT {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no client connected",
                    ));
                }
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;

    let deadline = Instant::now() + READ_DEADLINE;
    let mut reader = Reader::new(MAX_CAPTURE_BYTES);
    let mut chunk = [0u8; READ_CHUNK];
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "deadline".to_string();
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break reader.finish().to_string(),
            Ok(n) => match reader.push(&chunk[..n]) {
                Ok(None) => continue,
                Ok(Some(hello)) => {
                    break format!(
                        "hello from {:?}, {} bytes",
                        hello.server_name, hello.hello_bytes
                    );
                }
                Err(e) => break e.to_string(),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break "deadline".to_string();
            }
            Err(e) => break e.to_string(),
        }
    };
    std::fs::write(&out, reader.buffered())?;
    eprintln!(
        "capture: {peer}: {outcome}; wrote {} bytes to {out}",
        reader.buffered().len()
    );
    Ok(())
}
