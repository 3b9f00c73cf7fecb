//! The query crate's errors.

use std::net::SocketAddr;

/// What kind of failure an error is, for callers deciding what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong (e.g. an address that cannot be bound): fix it.
    InvalidInput,
    /// A defect in baton or a library it uses: report it.
    Bug,
}

/// Why a query endpoint could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot listen for SQL clients on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("SQL endpoint TLS: {}: {message}", path.display())]
    Tls {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("cannot set up the SQL engine: {message}")]
    Engine { message: String },
    #[error("the SQL server stopped abnormally: {message}")]
    Stopped { message: String },
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Bind { .. } | QueryError::Tls { .. } => ErrorKind::InvalidInput,
            QueryError::Engine { .. } | QueryError::Stopped { .. } => ErrorKind::Bug,
        }
    }
}
