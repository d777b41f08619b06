//! Spec parts shared by more than one resource: database endpoints, Secret references and the
//! selection of databases, schemas, tables and columns.
//!
//! Plain data only: validation lives in [`crate::api::validate`], behaviour elsewhere.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A database engine Ferry can read from or write to.
///
/// `mysql` (MySQL 8), `mariadb` (MariaDB 10.6 and later), `postgresql` (PostgreSQL 12 and later;
/// before 15 row filters and column lists are applied by the change stream). A SyncJob transfers
/// postgresql → postgresql, mysql/mariadb → mysql/mariadb and mysql/mariadb → postgresql (every
/// task type; the MySQL → PostgreSQL type mapping is in docs/mysql-to-postgresql.md); any other
/// pair is refused when the job is created (phase `CREATE_FAILED`, naming `spec.target.engine`). A
/// CompareTask compares any two of them.
// The pairs come from `crate::engine::pairs::PAIRS`; tests/crd.rs holds this text to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Mysql,
    Mariadb,
    Postgresql,
}

impl Engine {
    /// The engine's name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Mysql => "mysql",
            Engine::Mariadb => "mariadb",
            Engine::Postgresql => "postgresql",
        }
    }

    /// Whether the engine speaks the MySQL protocol (MySQL or MariaDB).
    pub fn is_mysql_family(self) -> bool {
        matches!(self, Engine::Mysql | Engine::Mariadb)
    }

    /// Whether the engine has a database → schema → table hierarchy.
    pub fn has_schemas(self) -> bool {
        matches!(self, Engine::Postgresql)
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key of a Secret in the same namespace as the resource that refers to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret. It must live in the same namespace as the resource; Ferry never reads
    /// Secrets from other namespaces.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's `data` whose value is used.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// How the connection to a database is encrypted and whose certificate is trusted.
///
/// `disable`: plain TCP. `require`: TLS, the server certificate is not verified (encryption
/// against eavesdroppers, not against a server in the middle). `verify-ca`: TLS, the server
/// certificate must be signed by the CA (`caSecretRef`/`caConfigMapRef`, else the public roots
/// compiled into Ferry). `verify-full`: as `verify-ca`, and the certificate must also name `host`
/// (a DNS or IP subject alternative name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    #[default]
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    /// The mode as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key of a ConfigMap in the same namespace as the resource that refers to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap, in the resource's own namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap's `data` whose value is used.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A Secret holding a PEM client certificate and its private key, for servers that require
/// mutual TLS. A `kubernetes.io/tls` Secret (as cert-manager writes) works with the default keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertSecretRef {
    /// Name of the Secret, in the resource's own namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the PEM certificate (chain). Default `tls.crt`.
    #[serde(default = "default_cert_key")]
    #[schemars(length(min = 1, max = 253))]
    pub cert_key: String,
    /// Key holding the PEM private key (PKCS#8, PKCS#1 or SEC1). Default `tls.key`.
    #[serde(default = "default_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key_key: String,
}

fn default_cert_key() -> String {
    "tls.crt".to_owned()
}

fn default_key_key() -> String {
    "tls.key".to_owned()
}

/// Transport encryption of a database connection. Applies to every connection Ferry makes to
/// the endpoint: SQL sessions, the PostgreSQL replication stream, the MySQL binlog stream and
/// compare sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// TLS mode: `disable`, `require`, `verify-ca` or `verify-full`. Default `disable`.
    #[serde(default)]
    pub mode: TlsMode,
    /// Secret key holding the PEM CA certificate(s) that sign the server certificate, for
    /// `verify-ca` and `verify-full`. At most one of `caSecretRef` and `caConfigMapRef`; with
    /// neither, the public (Mozilla) roots compiled into Ferry are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// ConfigMap key holding the PEM CA certificate(s), as an alternative to `caSecretRef` (CA
    /// bundles are public; cloud providers publish them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<ConfigMapKeyRef>,
    /// Client certificate and key for mutual TLS (Cloud SQL, servers with `clientcert=verify-full`
    /// or `REQUIRE X509`). Any mode but `disable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<ClientCertSecretRef>,
}

impl TlsConfig {
    /// The effective mode of an endpoint's optional TLS settings.
    pub fn mode_of(tls: Option<&TlsConfig>) -> TlsMode {
        tls.map_or(TlsMode::Disable, |t| t.mode)
    }
}

/// Diagnostics that give up some confidentiality for detail. Off unless set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebugOptions {
    /// Show the row values a database quotes in its error messages. Off (the default), Ferry
    /// reports a database error by its class — the SQLSTATE, or the MariaDB/MySQL error number
    /// and name — and the table, column, constraint and key it concerns, and writes
    /// `<redacted>` where the server quoted a value (`Key (email)=(…)`, `Failing row contains
    /// (…)`, `Duplicate entry '…'`, `invalid input syntax for type integer: "…"`): status
    /// (`lastError`, conditions, `message`), Events, the pod's termination message, the worker's
    /// log and `ferry run` output are readable by more people than the tables. On, those places
    /// show the server's full message, values included, for as long as it stays on: set it while
    /// investigating one failure, on a job whose readers may see its data.
    #[serde(default)]
    pub row_values_in_errors: bool,
}

impl DebugOptions {
    /// Whether `debug` asks for row values in errors.
    pub fn row_values(debug: Option<&DebugOptions>) -> bool {
        debug.is_some_and(|d| d.row_values_in_errors)
    }
}

/// Where a database is and how to log in to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Database engine: `mysql`, `mariadb` or `postgresql`. A SyncJob transfers postgresql →
    /// postgresql, mysql/mariadb → mysql/mariadb and mysql/mariadb → postgresql (every task type);
    /// any other pair is refused
    /// when the job is created (phase `CREATE_FAILED`, naming `spec.target.engine`). A CompareTask
    /// compares any two engines. Cannot be changed after the resource is created.
    #[x_kube(validation = Rule::new("self == oldSelf").message("engine is immutable: create a new resource to change it"))]
    pub engine: Engine,
    /// Host name or IP address the worker pods connect to (a Service name works inside the
    /// cluster).
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port, 1–65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Database to connect to. Required for PostgreSQL (the database that holds the selected
    /// schemas); optional for MySQL and MariaDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// User name to log in as. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The Secret key holding the password. Passwords are never written inline in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Transport encryption. Default: no TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// How much of the source is selected.
///
/// `all`: every user database (schema) of the source. `database`: the whole databases listed in
/// `databases`. `table`: the tables listed under each database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectScope {
    All,
    Database,
    #[default]
    Table,
}

/// Which objects are transferred or compared, and what they are called on the target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSelection {
    /// Selection scope: `all`, `database` or `table` (default `table`).
    #[serde(default)]
    pub scope: ObjectScope,
    /// Database on the target that receives every selected object, whatever its source
    /// database. When unset each database keeps its name (or its `mappedName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<String>,
    /// Selected databases. Empty only with scope `all`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseSelection>,
}

/// One source database and what is selected in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSelection {
    /// Database name on the source.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Database name on the target. Default: the same as `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_name: Option<String>,
    /// Select every table of the database (every schema on PostgreSQL). Table-level settings
    /// (filters, column selection) cannot be combined with it.
    #[serde(default)]
    pub all: bool,
    /// Schemas of a PostgreSQL database and the tables selected in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<SchemaSelection>,
    /// Tables of a MySQL or MariaDB database. On PostgreSQL, tables listed here belong to the
    /// `public` schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableSelection>,
}

/// One PostgreSQL schema and what is selected in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaSelection {
    /// Schema name on the source.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Schema name on the target. Default: the same as `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_name: Option<String>,
    /// Select every table of the schema. Cannot be combined with table-level settings.
    #[serde(default)]
    pub all: bool,
    /// Tables selected in the schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableSelection>,
}

/// One source table, its row filter, its column selection and its name on the target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableSelection {
    /// Table name on the source.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Table name on the target. Default: the same as `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_name: Option<String>,
    /// Row filter: an SQL boolean expression over the table's own columns in the source
    /// engine's dialect (the body of a WHERE clause, e.g. `region = 'eu' AND id > 1000`). Only
    /// matching rows are transferred, in the full and in the incremental phase, and compared.
    /// Comparisons, IN and BETWEEN with literals, LIKE, IS [NOT] NULL, AND/OR/NOT and literals
    /// only: functions, subqueries, arithmetic and other tables' columns are refused. The filter
    /// is parsed and rendered anew before it reaches a server (docs/filters.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Which columns are transferred and under which names. Default: every column, same names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<ColumnSelection>,
}

/// Column selection and renaming for one table. `include` and `exclude` are exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnSelection {
    /// Only these columns are transferred. Primary key columns must be included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Every column but these is transferred. Primary key columns cannot be excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Column renames: source column name → target column name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// MySQL/MariaDB → PostgreSQL only (any other pair refuses the field when the job is
    /// created): the PostgreSQL type of a column in place of the one the type mapping gives it
    /// (docs/mysql-to-postgresql.md), by source column name, e.g. `{flag: boolean, payload: text,
    /// price: "numeric(12,2)", email: public.citext}`. A type name of letters, digits,
    /// underscores and spaces (further words only `precision`, `varying`, `with`, `without`,
    /// `time`, `zone`), with its schema and a dot when it is not a built-in type (Ferry's
    /// sessions resolve names in `pg_catalog` only), an optional `(n)` or `(p,s)` and an optional
    /// `[]`; nothing else is accepted, as the name goes into the target's DDL. The precheck
    /// (`target.types`) fails on a column the table does not have and on a type the target
    /// server does not know (`public.citext` needs `CREATE EXTENSION citext`). Values are still
    /// written in the mapped type's text form and PostgreSQL converts them: a value the type
    /// cannot take stops the job, naming the table and column (in the change stream: the table
    /// and the type). A `DATETIME` overridden to `timestamptz` is taken as UTC. The change stream
    /// stops on a `MODIFY`/`CHANGE` of an overridden column. A SyncJob field: a CompareTask's
    /// own selection refuses it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_types: BTreeMap<String, String>,
}

/// A reference to a resource by name in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the referenced resource, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl ObjectSelection {
    /// Every selected table with its source and target coordinates, in manifest order.
    ///
    /// `schema` is `None` for engines without schemas. Databases or schemas selected with
    /// `all: true` yield no entries here: their tables are only known after listing the source.
    pub fn tables(&self, engine: Engine) -> Vec<SelectedTable<'_>> {
        let mut out = Vec::new();
        for db in &self.databases {
            let target_db = self.target_database.as_deref().or(db.mapped_name.as_deref()).unwrap_or(&db.name);
            let default_schema = engine.has_schemas().then_some("public");
            for table in &db.tables {
                out.push(SelectedTable {
                    database: &db.name,
                    schema: default_schema,
                    table,
                    target_database: target_db,
                    target_schema: default_schema,
                });
            }
            for schema in &db.schemas {
                for table in &schema.tables {
                    out.push(SelectedTable {
                        database: &db.name,
                        schema: Some(&schema.name),
                        table,
                        target_database: target_db,
                        target_schema: Some(schema.mapped_name.as_deref().unwrap_or(&schema.name)),
                    });
                }
            }
        }
        out
    }
}

/// A table picked by an [`ObjectSelection`], with where it lands on the target.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectedTable<'a> {
    /// Source database.
    pub database: &'a str,
    /// Source schema, for engines that have schemas.
    pub schema: Option<&'a str>,
    /// The table's selection entry (name, mapped name, filter, columns).
    pub table: &'a TableSelection,
    /// Target database after mapping.
    pub target_database: &'a str,
    /// Target schema after mapping, for engines that have schemas.
    pub target_schema: Option<&'a str>,
}

impl SelectedTable<'_> {
    /// The table's name on the target after mapping.
    pub fn target_table(&self) -> &str {
        self.table.mapped_name.as_deref().unwrap_or(&self.table.name)
    }
}
