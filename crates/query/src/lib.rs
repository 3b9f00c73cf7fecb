//! The query side: the views as typed tables ([`tables`], [`Snapshot`]), their JSON and CSV
//! forms, the [`Catalog`] of snapshots the endpoints serve, the HTTP routes ([`router`]) and
//! (feature `sql`, on by default) the SQL endpoint over the PostgreSQL wire protocol
//! ([`serve_sql`]), all inside the projector's process, fed by a [`SnapshotPublisher`] on the
//! projector's commits.

mod attribution;
pub mod backtest;
mod catalog;
pub mod comparison;
mod customer;
pub mod dashboard;
mod describe;
mod error;
mod format;
mod http;
mod known_at;
mod metrics;
mod openapi;
#[cfg(feature = "sql")]
mod sql;
mod table;

pub use attribution::{LEDGER_ROWS_LIMIT, attribution_tables, ledger_table};
pub use catalog::Catalog;
pub use customer::customer_tables;
pub use describe::{TableDoc, key_of, table_doc};
pub use error::{ErrorKind, QueryError};
pub use format::{csv, rows_json, tables_json};
pub use http::{
    ApiError, DEFAULT_STATEMENT_TIMEOUT, MAX_SQL_BYTES, MAX_SQL_ROWS, QueryMetrics, QueryState,
    SnapshotPublisher, router,
};
pub use known_at::{FoldKnownAt, KnownAt, KnownAtError};
pub use openapi::document as openapi_document;
#[cfg(feature = "sql")]
pub use sql::{SqlConfig, SqlServer, SqlTls, serve_sql};
pub use table::{
    ColumnType, Snapshot, Table, Value, ViewKind, marketing_tables, sales_tables, shared_tables,
    stages_table, tables,
};
