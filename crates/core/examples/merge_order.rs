//! What merges that arrive out of time order cost: folds one history with many merges in time
//! order (the baseline: every merge joins at once) and in shuffled arrival orders, side by
//! side in one run, and prints the rates and their ratio. Also checks that every order leaves
//! the same survivors.
//!
//! `cargo run --release -p baton-core --example merge_order [-- PEOPLE [HUB]]`

use baton_core::example::example_event;
use baton_core::{
    Event, EventId, FunnelDefinition, FunnelProjection, Identity, Kind, Payload, Timestamp,
};
use std::time::Instant;

/// xorshift64: a fixed, seeded sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn event(id: &mut u128, hours: i64, person: Option<String>, payload: Payload) -> Event {
    let mut event = example_event(payload.kind(), 0);
    *id += 1;
    event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(*id));
    event.occurred_at = Timestamp::from_unix_millis(1_767_225_600_000 + hours * 3_600_000);
    event.identity = Identity {
        anonymous_id: None,
        person_id: person,
        account_id: None,
    };
    event.opportunity_id = None;
    event.payload = payload;
    event
}

/// `people` people with a demo request and a content view each; a tenth of them have five
/// duplicates merged in, some of those chained into each other and some merged the other way
/// (cycles); the first person has `hub` duplicates. In time order.
fn history(people: usize, hub: usize, rng: &mut Rng) -> Vec<Event> {
    let mut id = 0u128;
    let mut events = Vec::new();
    let merge = |from: String, into: String| Payload::Merged {
        from_person_id: from,
        into_person_id: into,
    };
    for p in 0..people {
        let person = format!("p-{p}");
        let at = rng.below(24 * 365) as i64;
        events.push(event(
            &mut id,
            at,
            Some(person.clone()),
            Payload::DemoRequested { product: None },
        ));
        events.push(event(
            &mut id,
            at + 1,
            Some(person.clone()),
            baton_core::example::example_payload(Kind::ContentViewed),
        ));
        let duplicates = match p {
            0 => hub,
            p if p % 10 == 0 => 5,
            _ => 0,
        };
        for d in 0..duplicates {
            let duplicate = format!("{person}-dup-{d}");
            let at = rng.below(24 * 365) as i64;
            events.push(event(
                &mut id,
                at,
                Some(duplicate.clone()),
                baton_core::example::example_payload(Kind::ContentViewed),
            ));
            let when = at + rng.below(240) as i64;
            events.push(event(
                &mut id,
                when,
                None,
                merge(duplicate.clone(), person.clone()),
            ));
            if d > 0 && rng.below(3) == 0 {
                let other = format!("{person}-dup-{}", d - 1);
                events.push(event(&mut id, when + 1, None, merge(duplicate, other)));
            }
        }
        if duplicates > 0 && rng.below(4) == 0 {
            let duplicate = format!("{person}-dup-0");
            let at = rng.below(24 * 365) as i64;
            events.push(event(&mut id, at, None, merge(person, duplicate)));
        }
    }
    events.sort_by_key(|event| (event.occurred_at, event.event_id));
    events
}

fn fold(events: &[Event]) -> (f64, FunnelProjection) {
    let started = Instant::now();
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    (started.elapsed().as_secs_f64(), projection)
}

fn survivors(projection: &FunnelProjection) -> Vec<String> {
    let mut ids: Vec<String> = projection.mqls().map(|(id, _)| id.to_owned()).collect();
    ids.sort();
    ids
}

fn main() {
    let people: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("PEOPLE is a number"))
        .unwrap_or(100_000);
    let hub: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse().expect("HUB is a number"))
        .unwrap_or(5_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let in_time = history(people, hub, &mut rng);
    let merges = in_time
        .iter()
        .filter(|event| event.kind() == Kind::Merged)
        .count();
    println!("{} events, {merges} merges, {people} people", in_time.len());
    let mut shuffled = in_time.clone();
    let (mut baseline, mut arrival) = (Vec::new(), Vec::new());
    let mut expected = None;
    for round in 0..3 {
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (seconds, projection) = fold(&in_time);
        baseline.push(in_time.len() as f64 / seconds);
        let expected = expected.get_or_insert_with(|| survivors(&projection));
        let (seconds, projection) = fold(&shuffled);
        arrival.push(shuffled.len() as f64 / seconds);
        assert_eq!(&survivors(&projection), expected, "round {round}");
        println!(
            "round {round}: in time order {:>9.0} events/s, shuffled {:>9.0} events/s",
            baseline[round], arrival[round]
        );
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (baseline, arrival) = (median(&mut baseline), median(&mut arrival));
    println!(
        "median: in time order {baseline:.0} events/s, shuffled {arrival:.0} events/s, ratio {:.3}; the same {} survivors in every order",
        arrival / baseline,
        expected.map_or(0, |ids| ids.len())
    );
}
