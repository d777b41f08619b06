//! A private Redis server: `redis-server` on a free loopback port, without persistence and
//! with a password.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::{Ctx, HOST, ServerProcess, TestkitError, command, find_binary, launch, random_password, temp_dir};

const SERVER: &str = "Redis";
const PACKAGE: &str = "redis-server";

/// A throwaway Redis server that requires [`password`](Self::password) and saves nothing.
///
/// Dropping it stops the server and removes its directory.
pub struct RedisServer {
    // Fields drop in order: the server stops before its directory is removed.
    _process: ServerProcess,
    dir: TempDir,
    port: u16,
    password: String,
}

impl RedisServer {
    /// Starts a server.
    pub fn start() -> Result<Self, TestkitError> {
        let redis_server = find_binary(&["redis-server"], &[], PACKAGE)?;
        let dir = temp_dir(SERVER, "ferry-redis-", None)?;
        let password = random_password(SERVER)?;
        let log: PathBuf = dir.path().join("redis.log");
        let ctx = Ctx { server: SERVER, secret: &password, log: &log };

        let server_command = |port: u16| {
            let mut server = command(&redis_server, None, dir.path());
            server
                .args(["--port", &port.to_string(), "--bind", HOST, "--daemonize", "no"])
                .args(["--save", "", "--appendonly", "no", "--requirepass", &password])
                .arg("--dir")
                .arg(dir.path());
            server
        };
        let (process, port) =
            launch(&ctx, libc::SIGKILL, server_command, |port| ping(port, &password).is_ok_and(|reply| reply))?;
        Ok(Self { _process: process, dir, port, password })
    }

    /// The address the server listens on, `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `requirepass` password, random per server.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's private directory (working directory, `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL to connect with, `redis://:<password>@127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://:{}@{HOST}:{}/", self.password, self.port)
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer").field("port", &self.port).field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

/// Whether the server accepts `password` and answers PING, spoken in raw RESP so that no client
/// binary is needed.
fn ping(port: u16, password: &str) -> io::Result<bool> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n", password.len());
    stream.write_all(auth.as_bytes())?;
    let mut replies = Vec::new();
    let mut buffer = [0u8; 64];
    // "+OK\r\n+PONG\r\n", possibly in pieces; anything else (an error) ends the wait.
    while replies.len() < 12 && !replies.starts_with(b"-") {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        replies.extend_from_slice(&buffer[..read]);
    }
    Ok(replies == b"+OK\r\n+PONG\r\n")
}
