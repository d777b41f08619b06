//! A private PostgreSQL server: `initdb` into a temporary directory, then `postgres` on a free
//! loopback port, set up for logical replication.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{
    Ctx, HOST, ServerProcess, ServerTls, TestkitError, command, find_binary, launch, random_password, service_account,
    temp_dir, write_tls_files,
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
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            wal_level: "logical".to_owned(),
            max_replication_slots: 10,
            max_wal_senders: 10,
            password_auth: "scram-sha-256".to_owned(),
            tls: None,
        }
    }
}

/// A throwaway PostgreSQL server with a password user [`user`](Self::user) that is SUPERUSER and
/// REPLICATION, and a database [`database`](Self::database) it owns.
///
/// Dropping it stops the server and removes its directory.
pub struct PostgresServer {
    // Fields drop in order: the server stops before its directory is removed.
    _process: ServerProcess,
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
        let bin_dir = newest_bin_dir();
        let find = |name: &str| find_binary(&[name], bin_dir.as_slice(), PACKAGE);
        let (postgres, initdb, psql) = (find("postgres")?, find("initdb")?, find("psql")?);
        let account = service_account(SERVER, "postgres", PACKAGE)?;
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
        let server_command = |port: u16| {
            let mut server = command(&postgres, account, dir.path());
            server.arg("-D").arg(&data).args(["-p", &port.to_string()]).arg("-k").arg(dir.path());
            for setting in &settings {
                server.arg("-c").arg(setting);
            }
            server
        };
        let answers = |port: u16| {
            let output = psql_over_socket(&psql, dir.path(), port).args(["-c", "SELECT 1"]).output();
            output.is_ok_and(|output| output.status.success())
        };
        let (process, port) = launch(&ctx, libc::SIGQUIT, server_command, answers)?;

        let mut server = Self { _process: process, dir, psql, log, port, password, version: String::new() };
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

    /// The server's private directory (data directory, unix socket, `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
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

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
