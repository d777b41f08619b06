//! A TCP proxy between a client under test and a server, which the test can make misbehave
//! the way networks do: [`pause`](FaultProxy::pause) (a black hole: nothing is accepted or
//! forwarded, so every connection hangs half-open), [`cut`](FaultProxy::cut) (every connection
//! is reset) and [`restore`](FaultProxy::restore).
//!
//! It runs on plain threads (one accepting, two per connection), like the rest of the test kit,
//! so it needs no async runtime.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use super::{HOST, TestkitError};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Paused,
    Closed,
}

struct Shared {
    mode: Mutex<Mode>,
    changed: Condvar,
    /// Both sockets of every connection carried, to reset them on a cut.
    connections: Mutex<Vec<(TcpStream, TcpStream)>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
        self.changed.notify_all();
    }

    /// Blocks while paused; false once the proxy is closed.
    fn wait_forwarding(&self) -> bool {
        let mut mode = self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        while *mode == Mode::Paused {
            mode = self.changed.wait(mode).unwrap_or_else(PoisonError::into_inner);
        }
        *mode == Mode::Forward
    }

    /// Resets every connection carried (RST to both ends).
    fn reset_all(&self) {
        let connections = std::mem::take(&mut *self.connections.lock().unwrap_or_else(PoisonError::into_inner));
        for (a, b) in connections {
            for s in [a, b] {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A proxy on a free port of 127.0.0.1 forwarding to `127.0.0.1:upstream`. Dropping it resets
/// every connection and stops it.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts forwarding to the server on `upstream`.
    pub fn start(upstream: u16) -> Result<FaultProxy, TestkitError> {
        let io_error = |context: &str, source: io::Error| TestkitError::Io {
            server: "fault proxy",
            context: context.to_owned(),
            source,
        };
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| io_error("could not bind the proxy", e))?;
        let port = listener.local_addr().map_err(|e| io_error("could not read the proxy's address", e))?.port();
        listener.set_nonblocking(true).map_err(|e| io_error("could not set up the proxy's listener", e))?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Forward),
            changed: Condvar::new(),
            connections: Mutex::default(),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || accept_loop(&listener, upstream, &accepting));
        Ok(FaultProxy { port, shared })
    }

    /// The port clients connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// Stops accepting and forwarding: connections stay open but nothing passes, and new ones
    /// wait in the listen queue (a connect succeeds, the server's greeting never comes).
    pub fn pause(&self) {
        self.shared.set(Mode::Paused);
    }

    /// Resets every connection carried; new ones are forwarded (or held, while paused).
    pub fn cut(&self) {
        self.shared.reset_all();
    }

    /// Forwards again; connections held by a pause go on where they stopped.
    pub fn restore(&self) {
        self.shared.set(Mode::Forward);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.set(Mode::Closed);
        self.shared.reset_all();
    }
}

fn accept_loop(listener: &TcpListener, upstream: u16, shared: &Arc<Shared>) {
    loop {
        match shared.mode() {
            Mode::Closed => return,
            Mode::Paused => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            Mode::Forward => {}
        }
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)) else {
            // The server is down: the client sees its connection closed, as it would.
            continue;
        };
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let clones = (|| {
            Some((
                (client.try_clone().ok()?, server.try_clone().ok()?),
                (client.try_clone().ok()?, server.try_clone().ok()?),
            ))
        })();
        let Some(((c1, s1), (c2, s2))) = clones else { continue };
        shared.connections.lock().unwrap_or_else(PoisonError::into_inner).push((client, server));
        for (from, to) in [(c1, s1), (s2, c2)] {
            let shared = Arc::clone(shared);
            thread::spawn(move || pump(from, to, &shared));
        }
    }
}

/// Copies `from` to `to` while the proxy forwards; ends both on an error or the end of input.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !shared.wait_forwarding() {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // What was read before a pause is held until the restore.
        if !shared.wait_forwarding() || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
