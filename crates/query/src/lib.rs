//! The query side: the views as typed tables ([`tables`]), their JSON and CSV forms, the
//! [`Catalog`] of snapshots the endpoints serve, and (feature `sql`, on by default) the SQL
//! endpoint over the PostgreSQL wire protocol ([`serve_sql`]). The HTTP API and the SQL
//! endpoint serve these tables from inside the projector's process.

mod catalog;
mod error;
mod format;
#[cfg(feature = "sql")]
mod sql;
mod table;

pub use catalog::Catalog;
pub use error::{ErrorKind, QueryError};
pub use format::{csv, rows_json, tables_json};
#[cfg(feature = "sql")]
pub use sql::{SqlConfig, SqlServer, serve_sql};
pub use table::{
    ColumnType, Snapshot, Table, Value, ViewKind, marketing_tables, sales_tables, shared_tables,
    stages_table, tables,
};
