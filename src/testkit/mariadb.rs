//! A private MariaDB server: `mariadb-install-db` into a temporary directory, then `mariadbd`
//! on a free loopback port with a row-based binary log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{
    Ctx, HOST, Relaunch, Restartable, ServerTls, Shutdown, TestkitError, command, find_binary, launch, path_arg,
    random_password, service_account, temp_dir, write_tls_files,
};

const SERVER: &str = "MariaDB";
const PACKAGE: &str = "mariadb-server";
const CLIENT_PACKAGE: &str = "mariadb-client";
const USER: &str = "ferry";
/// Small InnoDB files: the default 100 MiB redo log would be written for every server.
const INNODB_SETTINGS: [&str; 2] = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"];

/// Settings a [`MariaDbServer`] starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MariaDbOptions {
    /// Whether the binary log is on (`--log-bin`); true by default.
    pub log_bin: bool,
    /// `--binlog-format`; `"ROW"` by default.
    pub binlog_format: String,
    /// Further `mariadbd` options, given last so they override the defaults.
    pub extra_args: Vec<String>,
    /// TLS: off when `None` (the default).
    pub tls: Option<ServerTls>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        Self { log_bin: true, binlog_format: "ROW".to_owned(), extra_args: Vec::new(), tls: None }
    }
}

/// A throwaway MariaDB server with a password user [`user`](Self::user) that has all privileges
/// on `*.*` WITH GRANT OPTION, from 127.0.0.1 and localhost.
///
/// It runs with `--binlog-row-image=FULL`, `--skip-name-resolve` and a server id of its own.
/// Dropping it stops the server and removes its directory.
pub struct MariaDbServer {
    // Fields drop in order: the server stops before its directory is removed.
    process: Restartable,
    dir: TempDir,
    client: PathBuf,
    log: PathBuf,
    port: u16,
    server_id: u32,
    password: String,
    version: String,
}

impl MariaDbServer {
    /// Starts a server with [`MariaDbOptions::default`] (row-based binary log).
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(MariaDbOptions::default())
    }

    /// Starts a server with the given options.
    pub fn start_with(opts: MariaDbOptions) -> Result<Self, TestkitError> {
        let mariadbd = find_binary(&["mariadbd", "mysqld"], &[], PACKAGE)?;
        let install_db = find_binary(&["mariadb-install-db", "mysql_install_db"], &[], PACKAGE)?;
        let client = find_binary(&["mariadb", "mysql"], &[], CLIENT_PACKAGE)?;
        let account = service_account(SERVER, "mysql", PACKAGE)?;
        let dir = temp_dir(SERVER, "ferry-mariadb-", account)?;
        let password = random_password(SERVER)?;
        let log = dir.path().join("mariadbd.log");
        let ctx = Ctx { server: SERVER, secret: &password, log: &log };
        let data = dir.path().join("data");
        let socket = dir.path().join("mariadbd.sock");

        // Options install-db does not know (--tmpdir, InnoDB sizes) go on to its bootstrap mariadbd;
        // a private --tmpdir keeps concurrent servers' temporary tables apart.
        let mut install = command(&install_db, account, dir.path());
        install
            .arg("--no-defaults")
            .arg(path_arg("--datadir=", &data))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(path_arg("--tmpdir=", dir.path()))
            .args(INNODB_SETTINGS);
        ctx.run(install, "mariadb-install-db")?;

        let mut tls_args = Vec::new();
        if let Some(tls) = &opts.tls {
            write_tls_files(SERVER, dir.path(), account, tls)?;
            tls_args.push(path_arg("--ssl-cert=", &dir.path().join("server.crt")));
            tls_args.push(path_arg("--ssl-key=", &dir.path().join("server.key")));
            if tls.client_ca_pem.is_some() {
                tls_args.push(path_arg("--ssl-ca=", &dir.path().join("client-ca.crt")));
            }
        }
        let home = dir.path().to_owned();
        let (data_dir, socket_path) = (data.clone(), socket.clone());
        let binlog_format = opts.binlog_format.clone();
        let (log_bin, extra_args) = (opts.log_bin, opts.extra_args.clone());
        let server_command = move |port: u16| {
            let (dir, data, socket) = (&home, &data_dir, &socket_path);
            let mut server = command(&mariadbd, account, dir);
            // --no-defaults must come first; it keeps /etc/mysql out.
            server
                .arg("--no-defaults")
                .arg(path_arg("--datadir=", data))
                .arg(path_arg("--socket=", socket))
                .arg(path_arg("--pid-file=", &dir.join("mariadbd.pid")))
                .arg(path_arg("--tmpdir=", dir))
                .arg(format!("--port={port}"))
                .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
                .arg(format!("--server-id={}", server_id(port)))
                .arg(format!("--binlog-format={binlog_format}"))
                .arg("--binlog-row-image=FULL")
                .args(INNODB_SETTINGS);
            if log_bin {
                server.arg("--log-bin=mariadb-bin");
            }
            server.args(&tls_args);
            server.args(&extra_args);
            server
        };
        let (client_path, home, socket_path) = (client.clone(), dir.path().to_owned(), socket.clone());
        let answers = move |_port: u16| {
            let output = root_client(&client_path, &home, &socket_path).args(["-e", "SELECT 1"]).output();
            output.is_ok_and(|output| output.status.success())
        };
        let (process, port) = launch(&ctx, libc::SIGKILL, &server_command, &answers)?;
        let relaunch = Relaunch {
            command: Box::new(server_command),
            ready: Box::new(answers),
            signals: (libc::SIGTERM, libc::SIGKILL),
            stop_signal: libc::SIGKILL,
        };
        let process = Restartable::new(process, relaunch);

        let mut server =
            Self { process, dir, client, log, port, server_id: server_id(port), password, version: String::new() };
        let mut setup = root_client(&server.client, server.dir.path(), &socket);
        setup.arg("-e").arg(format!(
            "CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{password}';
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION;
             CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{password}';
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'localhost' WITH GRANT OPTION;
             -- root, which has no password, keeps only its login over the private socket.
             DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';
             FLUSH PRIVILEGES;",
            password = server.password
        ));
        server.ctx().run(setup, "mariadb (create the ferry user)")?;
        let require = match &opts.tls {
            Some(t) if t.require_client_cert => Some("X509"),
            Some(t) if t.require_tls => Some("SSL"),
            _ => None,
        };
        if let Some(require) = require {
            let mut alter = root_client(&server.client, server.dir.path(), &socket);
            alter.arg("-e").arg(format!(
                "ALTER USER '{USER}'@'127.0.0.1' REQUIRE {require}; ALTER USER '{USER}'@'localhost' REQUIRE {require};"
            ));
            server.ctx().run(alter, "mariadb (require TLS of the ferry user)")?;
        }
        if require == Some("X509") {
            // The client has no certificate: ask over the socket; the tests log in over TCP.
            let mut version = root_client(&server.client, server.dir.path(), &socket);
            version.args(["--batch", "--skip-column-names", "-e", "SELECT VERSION()"]);
            server.version = server.ctx().run(version, "mariadb (server version)")?;
            return Ok(server);
        }

        let mut login = command(&server.client, None, server.dir.path());
        login
            .args(["--no-defaults", "--connect-timeout=5", "--protocol=TCP", "--batch", "--skip-column-names"])
            .args([format!("--host={HOST}"), format!("--port={}", server.port), format!("--user={USER}")])
            .args(["-e", "SELECT VERSION()"])
            .env("MYSQL_PWD", &server.password);
        if opts.tls.is_some() {
            login.arg("--ssl");
        }
        server.version = server.ctx().run(login, "mariadb (password login over TCP)")?;
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

    /// The password user, `ferry`, with all privileges WITH GRANT OPTION.
    pub fn user(&self) -> &str {
        USER
    }

    /// The password of [`user`](Self::user), random per server.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The `--server-id`, derived from the port and the test process id so that servers running
    /// at the same time differ.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The server version, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The server's private directory (data directory with the binary log, socket, `mariadbd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (`Fast`: a normal shutdown, `Immediate`: killed, recovered at the next
    /// start) and waits until it has exited. Its port and data stay.
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

    /// Client options for [`user`](Self::user) over TCP, with `database` as the default database.
    pub fn opts(&self, database: Option<&str>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(HOST)
            .tcp_port(self.port)
            .user(Some(USER))
            .pass(Some(self.password.as_str()))
            .db_name(database)
            // Otherwise the client switches to the server's unix socket.
            .prefer_socket(false)
            .into()
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { server: SERVER, secret: &self.password, log: &self.log }
    }
}

impl fmt::Debug for MariaDbServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDbServer")
            .field("port", &self.port)
            .field("server_id", &self.server_id)
            .field("dir", &self.dir.path())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The client as `root` (no password) over the server's unix socket.
fn root_client(client: &Path, dir: &Path, socket: &Path) -> Command {
    let mut client = command(client, None, dir);
    client
        .args(["--no-defaults", "--connect-timeout=5", "--batch", "--skip-column-names", "--user=root"])
        .arg(path_arg("--socket=", socket));
    client
}

/// A server id unique among the servers running at a time: the port in the low 16 bits, the
/// low bits of the process id above it.
fn server_id(port: u16) -> u32 {
    ((std::process::id() & 0xffff) << 16) | u32::from(port)
}
