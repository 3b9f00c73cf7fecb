//! Fit against the best customers (`docs/funnels.md`, *Fit against the best customers*): a
//! definition's fit rule may read `account.lookalike`, which is `yes` for an account whose
//! industry and size are those of one of the best current customers.
//!
//! The best customers are the top tenth (rounded up) of the accounts with recurring revenue
//! now, ranked by their ARR within their currency (as `concentration`'s first decile). Their
//! (industry, size) pairs are the *profile*. It is kept only for a definition that reads it:
//! every refresh first reads the ARR of the accounts whose ledgers changed, works the profile
//! out again, and marks dirty the people of every account whose pair came into the profile or
//! left it, so their fit is folded again with the rest.

use super::ledger::LedgerPart;
use super::marketing::Segment;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// An (industry, size) pair.
pub(crate) type Pair = (String, &'static str);

#[derive(Debug, Default)]
pub(crate) struct Lookalike {
    /// Accounts with recurring revenue now: their currency and ARR.
    revenue: BTreeMap<String, (String, i64)>,
    profile: BTreeSet<Pair>,
}

impl Lookalike {
    /// Reads an account's revenue now from its ledger part (`None`: no part any more).
    pub(crate) fn update(&mut self, account: &str, part: Option<&LedgerPart>, now: Timestamp) {
        let revenue = part
            .and_then(|part| super::customer_accounts::account_revenue(part, now))
            .filter(|revenue| revenue.arr > 0);
        match revenue {
            Some(revenue) => {
                self.revenue
                    .insert(account.to_owned(), (revenue.currency, revenue.arr));
            }
            None => {
                self.revenue.remove(account);
            }
        }
    }

    /// Works the profile out again from the best customers' segments; returns the pairs that
    /// came into it or left it.
    pub(crate) fn settle(&mut self, segment: impl Fn(&str) -> Segment) -> BTreeSet<Pair> {
        let mut by_currency: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
        for (account, (currency, arr)) in &self.revenue {
            by_currency
                .entry(currency.as_str())
                .or_default()
                .push((*arr, account.as_str()));
        }
        let mut profile = BTreeSet::new();
        for ranked in by_currency.values_mut() {
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            let top = ranked.len().div_ceil(10);
            for (_, account) in ranked.iter().take(top) {
                if let Some(pair) = pair_of(&segment(account)) {
                    profile.insert(pair);
                }
            }
        }
        let changed: BTreeSet<Pair> = profile
            .symmetric_difference(&self.profile)
            .cloned()
            .collect();
        self.profile = profile;
        changed
    }

    /// `yes` when the segment's pair is in the profile, `no` when it is not, `None` when
    /// its industry or size is unknown.
    pub(crate) fn of(&self, segment: &Segment) -> Option<&'static str> {
        let pair = pair_of(segment)?;
        Some(if self.profile.contains(&pair) {
            "yes"
        } else {
            "no"
        })
    }
}

pub(crate) fn pair_of(segment: &Segment) -> Option<Pair> {
    Some((segment.industry.clone()?, segment.size()?))
}
