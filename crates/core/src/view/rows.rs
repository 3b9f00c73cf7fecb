//! The row-level part of the views (a row per person, per account, per hand-off), kept per
//! person and shared between the snapshots that read it.
//!
//! Each person's row is worked out when their journey is folded, like the totals
//! (`totals.rs`), and kept in id order in chunks behind `Arc`s. Taking the rows for a
//! snapshot copies the list of chunks, not the rows; a later refresh copies only the chunks
//! it changes, and a chunk holds `Arc`s to rows, so copying one is a few hundred reference
//! counts. What depends on "now" (decayed engagement) is worked out when the rows are read.

use super::HashMap;
use super::marketing::{AccountScoreRow, PersonScoreRow, Segment};
use super::sales::OpportunityRow;
use super::shared::HandoffRow;
use crate::funnel::Owner;
use crate::symbol::Symbol;
use crate::timestamp::Timestamp;
use std::sync::Arc;

/// One person's row-level data as of their last fold.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonRow {
    pub person: String,
    pub account: Option<String>,
    pub segment: Segment,
    /// Where the journey is, by name.
    pub place: String,
    pub owner: Option<Owner>,
    /// The engagement score just after the last fact, and that fact's time.
    pub(crate) engagement: f64,
    pub(crate) engagement_at: Option<Timestamp>,
    pub fit: f64,
    /// Times the journey entered the MQL stage.
    pub mqls: u64,
    /// The furthest stage reached (a lost outcome is not further along), by index.
    pub(crate) furthest: Option<usize>,
    /// The person's hand-offs in journey order.
    pub handoffs: Vec<HandoffRow>,
    /// The opportunities the person's facts name (one of them carries each: see
    /// `PersonRows::opportunities_of`).
    pub(crate) deals: Vec<Symbol>,
    /// Their latest NPS answer's score, and their advocacy acts by act (`AdvocacyAct::ALL`
    /// order).
    pub latest_nps: Option<u8>,
    pub acts: [u32; 4],
    /// Their touches that attribution counts, and when they became a lead and an MQL.
    pub(crate) attribution: super::attribution::AttributionPart,
}

/// Rows per chunk: a refresh that changes a row copies its chunk's list of row pointers once
/// per snapshot taken since.
const CHUNK: usize = 256;

/// A row kept in [`RowChunks`], by its key.
pub(crate) trait Keyed {
    type Key: Ord + ?Sized;
    fn key(&self) -> &Self::Key;
}

impl Keyed for PersonRow {
    type Key = str;
    fn key(&self) -> &str {
        &self.person
    }
}

/// An opportunity's row, by its symbol.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OpportunityEntry {
    pub(crate) id: Symbol,
    pub(crate) row: OpportunityRow,
}

impl Keyed for OpportunityEntry {
    type Key = Symbol;
    fn key(&self) -> &Symbol {
        &self.id
    }
}

/// Rows in key order, in shared chunks. The projection keeps one per row-level table and
/// updates it as journeys are re-folded.
#[derive(Debug)]
pub(crate) struct RowChunks<T> {
    /// Never empty chunks, each in key order, and in key order one after the other.
    chunks: Vec<Arc<Vec<Arc<T>>>>,
    len: usize,
}

impl<T> Default for RowChunks<T> {
    fn default() -> Self {
        RowChunks {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Clone for RowChunks<T> {
    fn clone(&self) -> Self {
        RowChunks {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T: Keyed> RowChunks<T> {
    /// Chunks of rows already in key order.
    pub(crate) fn from_sorted(rows: impl IntoIterator<Item = T>) -> RowChunks<T> {
        let mut chunks = RowChunks::default();
        let mut chunk = Vec::with_capacity(CHUNK);
        for row in rows {
            debug_assert!(
                chunk
                    .last()
                    .is_none_or(|last: &Arc<T>| last.key() < row.key()),
                "invariant: rows come in key order"
            );
            chunk.push(Arc::new(row));
            chunks.len += 1;
            if chunk.len() == CHUNK {
                chunks.chunks.push(Arc::new(std::mem::take(&mut chunk)));
            }
        }
        if !chunk.is_empty() {
            chunks.chunks.push(Arc::new(chunk));
        }
        chunks
    }

    /// The chunk that holds `key`, or would.
    fn chunk_of(&self, key: &T::Key) -> usize {
        self.chunks
            .partition_point(|chunk| chunk[0].key() <= key)
            .saturating_sub(1)
    }

    /// Puts in a row, replacing the one with its key.
    pub(crate) fn upsert(&mut self, row: T) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![Arc::new(row)]));
            self.len = 1;
            return;
        }
        let at = self.chunk_of(row.key());
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        match chunk.binary_search_by(|held| held.key().cmp(row.key())) {
            Ok(index) => chunk[index] = Arc::new(row),
            Err(index) => {
                chunk.insert(index, Arc::new(row));
                self.len += 1;
                if chunk.len() >= 2 * CHUNK {
                    let tail = chunk.split_off(CHUNK);
                    self.chunks.insert(at + 1, Arc::new(tail));
                }
            }
        }
    }

    /// Takes out the row with this key.
    pub(crate) fn remove(&mut self, key: &T::Key) {
        if self.chunks.is_empty() {
            return;
        }
        let at = self.chunk_of(key);
        let Ok(index) = self.chunks[at].binary_search_by(|held| held.key().cmp(key)) else {
            return;
        };
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        chunk.remove(index);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(at);
        }
    }

    /// The row with this key.
    pub(crate) fn get(&self, key: &T::Key) -> Option<&T> {
        let chunk = self.chunks.get(self.chunk_of(key))?;
        let index = chunk.binary_search_by(|held| held.key().cmp(key)).ok()?;
        Some(&chunk[index])
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter().map(|row| &**row))
    }
}

/// The row-level part of the views at one moment: every folded person's row, with "now"
/// and what decay needs. Cheap to take and to clone; rows are worked out when read.
#[derive(Clone, Debug)]
pub struct PersonRows {
    rows: RowChunks<PersonRow>,
    opportunities: RowChunks<OpportunityEntry>,
    /// Every account ledger's part, by account.
    pub(crate) ledgers: RowChunks<super::ledger::LedgerPart>,
    now: Timestamp,
    half_life_days: f64,
    stage_names: Arc<[String]>,
    /// The definition's attribution models, and the text of the symbols the ledger shows.
    attribution: Arc<crate::attribution::Attribution>,
    attribution_labels: Arc<HashMap<Symbol, String>>,
}

impl Default for PersonRows {
    /// No rows.
    fn default() -> Self {
        PersonRows::new(
            RowChunks::default(),
            RowChunks::default(),
            RowChunks::default(),
            Timestamp::from_unix_millis(0),
            1.0,
            [].into(),
        )
        .with_attribution(Arc::default(), Arc::default())
    }
}

impl PersonRows {
    pub(crate) fn new(
        rows: RowChunks<PersonRow>,
        opportunities: RowChunks<OpportunityEntry>,
        ledgers: RowChunks<super::ledger::LedgerPart>,
        now: Timestamp,
        half_life_days: f64,
        stage_names: Arc<[String]>,
    ) -> PersonRows {
        PersonRows {
            rows,
            opportunities,
            ledgers,
            now,
            half_life_days,
            stage_names,
            attribution: Arc::default(),
            attribution_labels: Arc::default(),
        }
    }

    /// The rows with the definition's attribution and the labels of its symbols.
    pub(crate) fn with_attribution(
        mut self,
        settings: Arc<crate::attribution::Attribution>,
        labels: Arc<HashMap<Symbol, String>>,
    ) -> PersonRows {
        self.attribution = settings;
        self.attribution_labels = labels;
        self
    }

    pub(crate) fn attribution_settings(&self) -> &crate::attribution::Attribution {
        &self.attribution
    }

    pub(crate) fn attribution_labels(&self) -> &HashMap<Symbol, String> {
        &self.attribution_labels
    }

    /// Every opportunity's symbol and row, in no particular order.
    pub(crate) fn opportunity_entries(&self) -> impl Iterator<Item = (Symbol, &OpportunityRow)> {
        self.opportunities
            .iter()
            .map(|entry| (entry.id, &entry.row))
    }

    /// "Now": the latest business time of the snapshot.
    pub(crate) fn now(&self) -> Timestamp {
        self.now
    }

    /// How many people.
    pub fn len(&self) -> usize {
        self.rows.len
    }

    pub fn is_empty(&self) -> bool {
        self.rows.len == 0
    }

    /// Every person's row, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &PersonRow> {
        self.rows.iter()
    }

    /// One person's row.
    pub fn get(&self, person: &str) -> Option<&PersonRow> {
        self.rows.get(person)
    }

    /// Every opportunity's row, in no particular order, without copying them.
    pub(crate) fn opportunities(&self) -> impl Iterator<Item = &OpportunityRow> {
        self.opportunities.iter().map(|entry| &entry.row)
    }

    /// Every opportunity's row, by creation time, then id.
    pub fn opportunity_rows(&self) -> Vec<OpportunityRow> {
        let mut rows: Vec<OpportunityRow> = self
            .opportunities
            .iter()
            .map(|entry| entry.row.clone())
            .collect();
        rows.sort_by(|a, b| (a.created_at, &a.opportunity).cmp(&(b.created_at, &b.opportunity)));
        rows
    }

    /// The rows of the opportunities a person carries, by creation time, then id.
    pub fn opportunities_of(&self, person: &str) -> Vec<OpportunityRow> {
        let Some(row) = self.get(person) else {
            return Vec::new();
        };
        let mut rows: Vec<OpportunityRow> = row
            .deals
            .iter()
            .filter_map(|id| self.opportunities.get(id))
            .filter(|entry| entry.row.person == person)
            .map(|entry| entry.row.clone())
            .collect();
        rows.sort_by(|a, b| (a.created_at, &a.opportunity).cmp(&(b.created_at, &b.opportunity)));
        rows
    }

    /// A person's engagement decayed to "now".
    pub fn engagement(&self, row: &PersonRow) -> f64 {
        crate::journey::decayed(
            row.engagement,
            row.engagement_at,
            self.now,
            self.half_life_days,
        )
    }

    /// A person's scores now.
    pub fn score_row(&self, row: &PersonRow) -> PersonScoreRow {
        PersonScoreRow {
            person: row.person.clone(),
            account: row.account.clone(),
            segment: row.segment.clone(),
            place: row.place.clone(),
            owner: row.owner,
            engagement: self.engagement(row),
            fit: row.fit,
            mqls: row.mqls,
        }
    }

    /// Every person's scores now, in id order.
    pub fn score_rows(&self) -> Vec<PersonScoreRow> {
        self.iter().map(|row| self.score_row(row)).collect()
    }

    /// Every account's people rolled up, in account order.
    pub fn account_rows(&self) -> Vec<AccountScoreRow> {
        let mut accounts: HashMap<&str, (AccountScoreRow, Option<usize>)> = HashMap::default();
        for row in self.iter() {
            let Some(account) = row.account.as_deref() else {
                continue;
            };
            let engagement = self.engagement(row);
            // Looked up before inserting: most people share an account already seen.
            if !accounts.contains_key(account) {
                let empty = AccountScoreRow {
                    account: account.to_owned(),
                    segment: row.segment.clone(),
                    people: 0,
                    engaged_people: 0,
                    mql_people: 0,
                    engagement_total: 0.0,
                    // Every account row has a person, so this becomes theirs: the highest of
                    // negative engagements is negative.
                    engagement_max: f64::NEG_INFINITY,
                    fit_max: f64::NEG_INFINITY,
                    furthest_stage: None,
                };
                accounts.insert(account, (empty, None));
            }
            let (totals, furthest) = accounts
                .get_mut(account)
                .expect("invariant: inserted above");
            totals.people += 1;
            totals.engaged_people += u64::from(engagement > 0.0);
            totals.mql_people += u64::from(row.mqls > 0);
            totals.engagement_total += engagement;
            totals.engagement_max = totals.engagement_max.max(engagement);
            totals.fit_max = totals.fit_max.max(row.fit);
            *furthest = (*furthest).max(row.furthest);
        }
        let mut rows: Vec<AccountScoreRow> = accounts
            .into_values()
            .map(|(mut row, furthest)| {
                row.furthest_stage = furthest.map(|index| self.stage_names[index].clone());
                row
            })
            .collect();
        rows.sort_by(|a, b| a.account.cmp(&b.account));
        rows
    }

    /// Every hand-off, by time, then person.
    pub fn handoff_rows(&self) -> Vec<HandoffRow> {
        let mut rows: Vec<HandoffRow> = self
            .iter()
            .flat_map(|row| row.handoffs.iter().cloned())
            .collect();
        rows.sort_by(|a, b| a.at.cmp(&b.at).then(a.person.cmp(&b.person)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(person: &str, mqls: u64) -> PersonRow {
        PersonRow {
            person: person.to_owned(),
            account: None,
            segment: Segment::default(),
            place: "outside".to_owned(),
            owner: None,
            engagement: 0.0,
            engagement_at: None,
            fit: 0.0,
            mqls,
            furthest: None,
            handoffs: Vec::new(),
            deals: Vec::new(),
            latest_nps: None,
            acts: [0; 4],
            attribution: Default::default(),
        }
    }

    fn read(chunks: &RowChunks<PersonRow>) -> Vec<(String, u64)> {
        chunks.iter().map(|r| (r.person.clone(), r.mqls)).collect()
    }

    /// Inserts, replacements and removals in a scrambled order keep the rows in id order,
    /// split chunks as they fill, and leave the rows a snapshot took before unchanged.
    #[test]
    fn rows_stay_in_id_order_and_taken_rows_do_not_change() {
        let mut chunks = RowChunks::from_sorted((0..300).map(|n| row(&format!("p{n:05}"), 0)));
        let mut model: std::collections::BTreeMap<String, u64> =
            (0..300).map(|n| (format!("p{n:05}"), 0)).collect();
        let taken = chunks.clone();
        let before = read(&taken);
        for step in 0..3_000_u64 {
            let n = (step * 7_919) % 2_000;
            let person = format!("p{n:05}");
            if step % 5 == 4 {
                chunks.remove(&person);
                model.remove(&person);
            } else {
                chunks.upsert(row(&person, step));
                model.insert(person, step);
            }
        }
        let expected: Vec<(String, u64)> = model.into_iter().collect();
        assert_eq!(read(&chunks), expected);
        assert_eq!(chunks.len, expected.len());
        assert!(chunks.chunks.len() > 2, "chunks split as they filled");
        assert!(
            chunks
                .chunks
                .iter()
                .all(|chunk| !chunk.is_empty() && chunk.len() < 2 * CHUNK)
        );
        for (person, mqls) in &expected {
            assert_eq!(chunks.get(person).map(|r| r.mqls), Some(*mqls), "{person}");
        }
        assert!(chunks.get("p99999").is_none() && chunks.get("a").is_none());
        assert_eq!(read(&taken), before, "rows taken before are unchanged");
    }
}
