//! What the query endpoints serve: the live view's snapshot and the candidate views' snapshots,
//! swapped as a whole so that one query sees one consistent set of tables.

use std::sync::Arc;

use crate::Snapshot;

/// Every view being served, each at one log position. The projector sends a new `Catalog`
/// (usually on a `tokio::sync::watch` channel) after each commit; readers take an
/// `Arc<Catalog>` and keep reading it for as long as their query runs.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The live view: what `public` means in SQL.
    pub live: Arc<Snapshot>,
    /// Candidate views built by `baton replay`, each served under its own name.
    pub candidates: Vec<Arc<Snapshot>>,
}

impl Catalog {
    /// A catalog with only the live view.
    pub fn new(live: Arc<Snapshot>) -> Catalog {
        Catalog {
            live,
            candidates: Vec::new(),
        }
    }

    /// Adds a candidate view.
    pub fn with_candidate(mut self, candidate: Arc<Snapshot>) -> Catalog {
        self.candidates.push(candidate);
        self
    }

    /// A view by name: the live one or a candidate.
    pub fn view(&self, name: &str) -> Option<&Arc<Snapshot>> {
        std::iter::once(&self.live)
            .chain(&self.candidates)
            .find(|snapshot| snapshot.view == name)
    }
}
