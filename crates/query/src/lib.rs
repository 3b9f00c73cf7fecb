//! The query service: HTTP (JSON and CSV) and SQL over the PostgreSQL wire protocol, over the
//! projector's state, inside the projector's process.
//!
//! Not built yet: it arrives with the query issue. The crate exists now so that the
//! workspace's dependency chain is fixed and tested.
