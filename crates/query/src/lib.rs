//! The query side: the views as typed tables ([`tables`], [`Snapshot`]), their JSON and CSV
//! forms, and the HTTP routes that serve them ([`router`]) from inside the projector's process,
//! fed by a [`SnapshotPublisher`] on the projector's commits.

mod format;
mod http;
mod openapi;
mod table;

pub use format::{csv, rows_json, tables_json};
pub use http::{ApiError, QueryMetrics, QueryState, SnapshotPublisher, router};
pub use openapi::document as openapi_document;
pub use table::{
    ColumnType, Snapshot, Table, Value, ViewKind, marketing_tables, sales_tables, shared_tables,
    stages_table, tables,
};
