//! The projection's stored state: what a projector commits beside its checkpoint, and the
//! fact file its commits write facts to. Restoring it and carrying on must give exactly what
//! one uninterrupted fold gives, whatever the batching and wherever the facts went, and the
//! stored bytes are locked by a golden fixture.

use baton_core::example::example_event;
use baton_core::{
    Event, EventId, FactFile, FunnelDefinition, FunnelProjection, Identity, Kind, MemoryFactFile,
    Money, Payload, StateEntry, Timestamp,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Store = BTreeMap<Vec<u8>, Vec<u8>>;

fn commit(store: &mut Store, changes: Vec<StateEntry>) {
    for entry in changes {
        match entry.value {
            Some(value) => store.insert(entry.key, value),
            None => store.remove(&entry.key),
        };
    }
}

/// The kinds that exercise every table of the state: touches, identity, traits, governance
/// and closes.
const KINDS: &[Kind] = &[
    Kind::ContentViewed,
    Kind::DemoRequested,
    Kind::EmailClicked,
    Kind::WebinarAttended,
    Kind::LeadAccepted,
    Kind::LeadRecycled,
    Kind::MeetingHeld,
    Kind::OpportunityCreated,
    Kind::ProposalSent,
    Kind::OpportunityClosedWon,
    Kind::OpportunityClosedLost,
    Kind::Identified,
    Kind::LinkedToAccount,
    Kind::Merged,
    Kind::AccountUpdated,
    Kind::PersonUpdated,
    Kind::Retracted,
    Kind::Corrected,
    // Kept in the account's ledger (`view/ledger.rs`).
    Kind::SubscriptionStarted,
    Kind::SubscriptionChurned,
    Kind::ProductUsageSummarized,
    Kind::Advocated,
];

/// A small random history: few people, visitors and accounts so that events collide.
fn history(spec: &[(usize, u8, u8, u8, i64)]) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    for (index, &(kind, person, visitor, account, hours)) in spec.iter().enumerate() {
        let kind = KINDS[kind % KINDS.len()];
        let mut event = example_event(kind, index);
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(index as u128 + 1));
        event.occurred_at = Timestamp::from_unix_millis(1_767_225_600_000 + hours * 3_600_000);
        let person_id = format!("person-{}", person % 5);
        let anonymous_id = format!("anon-{}", visitor % 3);
        let account_id = format!("acct-{}", account % 3);
        event.identity = if visitor % 2 == 0 {
            Identity {
                anonymous_id: Some(anonymous_id.clone()),
                person_id: None,
                account_id: None,
            }
        } else {
            Identity {
                anonymous_id: None,
                person_id: Some(person_id.clone()),
                account_id: Some(account_id.clone()),
            }
        };
        match &mut event.payload {
            Payload::Identified {
                anonymous_id: a,
                person_id: p,
            } => {
                *a = anonymous_id;
                *p = person_id;
            }
            Payload::LinkedToAccount {
                person_id: p,
                account_id: a,
            } => {
                *p = person_id;
                *a = account_id.clone();
            }
            Payload::Merged {
                from_person_id,
                into_person_id,
            } => {
                *from_person_id = person_id;
                *into_person_id = format!("person-{}", (person % 5 + 1) % 5);
            }
            Payload::AccountUpdated { .. } => {
                event.identity.account_id = Some(account_id);
            }
            Payload::Retracted { target, .. } | Payload::Corrected { target, .. } => {
                // Target an earlier event (or a future id, which must be harmless too).
                *target = EventId::from_uuid(uuid::Uuid::from_u128(u128::from(person) + 1));
            }
            Payload::OpportunityClosedWon { amount } => {
                *amount = Money {
                    minor_units: i64::from(account) * 1000,
                    currency: "USD".into(),
                };
            }
            _ => {}
        }
        events.push(event);
    }
    events
}

fn one_fold(events: &[Event]) -> (Store, FunnelProjection) {
    one_fold_spilling(events, usize::MAX)
}

/// One fold, committed once, its holders writing their facts to the fact file from `spill_at`.
fn one_fold_spilling(events: &[Event], spill_at: usize) -> (Store, FunnelProjection) {
    let mut projection = FunnelProjection::tracking_changes(FunnelDefinition::default_funnel())
        .with_spill_at(spill_at);
    for event in events {
        projection.apply(event);
    }
    let mut store = Store::new();
    commit(&mut store, projection.take_changes().expect("encodes"));
    projection.refresh();
    (store, projection)
}

/// A store with every fact back in its holder's entry: what two stores of the same fold
/// are compared in, whatever runs their commits wrote.
fn gathered(store: &Store, file: &dyn FactFile) -> Store {
    store
        .iter()
        .map(|(key, value)| {
            let value = baton_core::gathered_entry(key, value, file).expect("reads back");
            (key.clone(), value)
        })
        .collect()
}

/// The bytes appended to a fact file in memory.
fn file_bytes(file: &dyn FactFile, length: u64) -> Vec<u8> {
    let mut bytes = vec![0; length as usize];
    file.read_at(0, &mut bytes).expect("reads");
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Rebuild equals live: folding in any batching, committing after each batch (each
    /// holder's facts going to the fact file from a few on), and sometimes restarting from
    /// what was committed, stores the same facts and values and gives the same summary as
    /// one uninterrupted fold that kept every fact in its entry.
    #[test]
    fn any_batching_with_restarts_stores_what_one_fold_stores(
        spec in proptest::collection::vec((0usize..64, any::<u8>(), any::<u8>(), any::<u8>(), 0i64..2000), 1..120),
        cuts in proptest::collection::vec((1usize..20, any::<bool>()), 1..30),
        spill_at in 1usize..6,
    ) {
        let events = history(&spec);
        let (expected, uninterrupted) = one_fold(&events);

        let definition = FunnelDefinition::default_funnel();
        let mut store = Store::new();
        let file: std::sync::Arc<dyn FactFile> = std::sync::Arc::new(MemoryFactFile::default());
        let mut projection = FunnelProjection::tracking_changes(definition.clone())
            .with_fact_file(file.clone())
            .with_spill_at(spill_at);
        let one = std::num::NonZeroUsize::MIN;
        let mut next = 0;
        let mut cuts = cuts.into_iter().cycle();
        while next < events.len() {
            let (size, restart) = cuts.next().expect("cycle never ends");
            let end = (next + size).min(events.len());
            for event in &events[next..end] {
                projection.apply(event);
            }
            next = end;
            commit(&mut store, projection.take_changes().expect("encodes"));
            if restart {
                projection = FunnelProjection::restore_with(definition.clone(), store.iter(), one, file.clone())
                    .expect("restores what it stored")
                    .with_spill_at(spill_at);
            }
        }
        // The uninterrupted fold kept every fact in its entry: its file is empty.
        let nothing_written = MemoryFactFile::default();
        prop_assert_eq!(gathered(&store, &*file), gathered(&expected, &nothing_written));
        projection.refresh();
        prop_assert_eq!(projection.summary(), uninterrupted.summary());
        prop_assert_eq!(projection.outcomes(), uninterrupted.outcomes());
        for person in 0..5 {
            let person = format!("person-{person}");
            prop_assert_eq!(
                projection.facts_of(&person).expect("reads back"),
                uninterrupted.facts_of(&person).expect("in memory")
            );
        }
        let restored = FunnelProjection::restore_with(definition, store.iter(), one, file)
            .expect("restores");
        prop_assert_eq!(restored.summary(), uninterrupted.summary());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// The order events arrive in changes no one's results: the log shuffled (events of
    /// different people interleaved anyhow, and one person's out of order too) gives every
    /// person the same facts, MQL entries and outcomes, and the same summary, as the log in
    /// order. Event time drives the funnel; an identification, retraction or correction counts
    /// wherever it arrives.
    #[test]
    fn the_order_events_arrive_in_changes_no_ones_results(
        spec in proptest::collection::vec((0usize..64, any::<u8>(), any::<u8>(), any::<u8>(), 0i64..2000), 1..120),
        seed in any::<u64>(),
    ) {
        let events = history(&spec);
        let mut shuffled = events.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            // xorshift64: a shuffle decided by the seed.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let fold = |events: &[Event]| {
            let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
            for event in events {
                projection.apply(event);
            }
            projection.refresh();
            projection
        };
        let (in_order, anyhow) = (fold(&events), fold(&shuffled));
        let mqls = |projection: &FunnelProjection| {
            projection
                .mqls()
                .map(|(id, times)| (id.to_owned(), times))
                .collect::<BTreeMap<_, _>>()
        };
        prop_assert_eq!(mqls(&in_order), mqls(&anyhow));
        prop_assert_eq!(in_order.outcomes(), anyhow.outcomes());
        for person in 0..5 {
            let person = format!("person-{person}");
            prop_assert_eq!(
                in_order.facts_of(&person).expect("in memory"),
                anyhow.facts_of(&person).expect("in memory")
            );
        }
        prop_assert_eq!(in_order.summary(), anyhow.summary());
    }
}

#[test]
fn an_untracked_projection_hands_out_no_changes() {
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    projection.apply(&example_event(Kind::DemoRequested, 0));
    assert!(projection.take_changes().expect("encodes").is_empty());
}

#[test]
fn a_merge_removes_the_absorbed_person() {
    let spec = [(1, 0, 1, 0, 0), (0, 1, 1, 0, 1), (13, 0, 1, 0, 2)];
    let events = history(&spec);
    assert_eq!(events[2].kind(), Kind::Merged);
    let (store, projection) = one_fold(&events);
    assert!(!store.contains_key(b"pperson-0".as_slice()));
    assert!(store.contains_key(b"pperson-1".as_slice()));
    // The merge group is kept under its survivor.
    assert!(!store.contains_key(b"mperson-0".as_slice()));
    assert!(store.contains_key(b"mperson-1".as_slice()));
    assert_eq!(projection.people(), 1);
}

#[test]
fn a_corrupt_entry_is_an_error_naming_its_key() {
    let mut store = one_fold(&history(&[(1, 0, 1, 0, 0)])).0;
    store.insert(b"pperson-0".to_vec(), vec![0xff; 3]);
    let error = FunnelProjection::restore(FunnelDefinition::default_funnel(), store.iter())
        .expect_err("three bytes are no person");
    assert!(error.to_string().contains("\"pperson-0\""), "{error}");
    let mut store = Store::new();
    store.insert(b"zzz".to_vec(), Vec::new());
    let error = FunnelProjection::restore(FunnelDefinition::default_funnel(), store.iter())
        .expect_err("no table z");
    assert!(
        error.to_string().contains("unknown table tag 'z'"),
        "{error}"
    );
}

/// Facts refer to attribute sets stored beside them: a store missing a set a fact refers to
/// is an error naming the person, not a panic when the views read the fact.
#[test]
fn a_fact_whose_attribute_set_is_missing_is_an_error_naming_its_holder() {
    let mut store = one_fold(&history(&[(1, 0, 1, 0, 0)])).0;
    let sets: Vec<Vec<u8>> = store
        .keys()
        .filter(|key| key.first() == Some(&b't'))
        .cloned()
        .collect();
    assert!(!sets.is_empty(), "the fold stored its attribute sets");
    FunnelProjection::restore(FunnelDefinition::default_funnel(), store.iter())
        .expect("restores with its sets");
    sets.iter().for_each(|key| {
        store.remove(key);
    });
    let error = FunnelProjection::restore(FunnelDefinition::default_funnel(), store.iter())
        .expect_err("a fact refers to a set not stored");
    assert!(
        error.to_string().contains("\"pperson-0\"") && error.to_string().contains("attribute set"),
        "{error}"
    );
}

/// The stored bytes of a fixed history. A failure here means the stored format changed:
/// bump `STATE_VERSION` (stores written before are then rebuilt, not misread) and
/// regenerate with `BATON_BLESS=1 cargo test -p baton-core --test state`.
#[test]
fn stored_state_matches_golden_fixture() {
    let spec: Vec<(usize, u8, u8, u8, i64)> = (0..KINDS.len())
        .map(|k| (k, k as u8, (k % 2) as u8 + 1, k as u8, k as i64 * 5))
        .chain([(11, 1, 0, 0, 100), (0, 0, 0, 0, 101)])
        .collect();
    // Every holder with two facts or more writes them to the fact file.
    let (store, projection) = one_fold_spilling(&history(&spec), 2);
    let mut text = format!("# state version {}\n", baton_core::STATE_VERSION);
    for (key, value) in &store {
        text.push_str(&format!("{} {}\n", hex(key), hex(value)));
    }
    let file = projection.fact_file();
    let length = (0u64..)
        .find(|length| file.read_at(*length, &mut [0]).is_err())
        .expect("a file in memory ends");
    assert!(length > 0, "runs were written");
    text.push_str(&format!(
        "# fact file\n{}\n",
        hex(&file_bytes(&**file, length))
    ));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/state-v8.hex");
    if std::env::var_os("BATON_BLESS").is_some() {
        std::fs::write(path, &text).expect("writes the fixture");
    }
    let golden = std::fs::read_to_string(path).expect("the golden fixture exists");
    assert_eq!(text, golden, "the stored state format changed");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
