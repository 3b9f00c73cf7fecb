//! The query side: the views as typed tables ([`tables`]), and their JSON and CSV forms. The
//! HTTP API and the SQL endpoint serve these tables from inside the projector's process.

mod format;
mod table;

pub use format::{csv, rows_json, tables_json};
pub use table::{
    ColumnType, Snapshot, Table, Value, ViewKind, marketing_tables, sales_tables, shared_tables,
    stages_table, tables,
};
