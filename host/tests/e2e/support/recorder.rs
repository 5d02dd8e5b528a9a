//! An in-process TCP backend that counts the connections it accepts and
//! records (and optionally echoes) what each one sends. Used where a test
//! must see the exact bytes the edge relayed, or prove the edge never dialed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{STEP_TIMEOUT, poll_until};

/// What the backend does with the bytes it receives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep them; send nothing.
    Record,
    /// Keep them and write them back.
    Echo,
}

/// A running recording backend; stops accepting when dropped.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

/// Size of each read from an accepted connection.
const READ_CHUNK: usize = 16 * 1024;

impl Recorder {
    /// Binds 127.0.0.1:0 and serves each connection on its own thread.
    pub fn start(mode: Mode) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (accepts2, received2, stop2) = (accepts.clone(), received.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                accepts2.fetch_add(1, Ordering::SeqCst);
                let index = {
                    let mut all = received2.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let received = received2.clone();
                std::thread::spawn(move || serve(stream, mode, index, received));
            }
        });
        Recorder {
            addr,
            accepts,
            received,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Waits until connection `index` has delivered at least `len` bytes and
    /// returns everything it delivered.
    pub fn wait_received(&self, index: usize, len: usize, timeout: Duration) -> Option<Vec<u8>> {
        poll_until(timeout, || {
            let all = self.received.lock().unwrap();
            all.get(index).filter(|bytes| bytes.len() >= len).cloned()
        })
    }

    /// Bytes received so far on connection `index`.
    pub fn received(&self, index: usize) -> Vec<u8> {
        self.received
            .lock()
            .unwrap()
            .get(index)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Reads until EOF (or a long quiet spell), recording and maybe echoing.
fn serve(mut stream: TcpStream, mode: Mode, index: usize, received: Arc<Mutex<Vec<Vec<u8>>>>) {
    let _ = stream.set_read_timeout(Some(STEP_TIMEOUT * 3));
    let mut buf = vec![0; READ_CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                received.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                if mode == Mode::Echo && stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}
