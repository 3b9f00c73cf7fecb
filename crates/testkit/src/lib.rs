//! Test fixtures shared by the workspace's tests: a real `nats-server` per test, and event
//! builders. A dev-dependency only; nothing in production links it.

mod nats;

pub use nats::{NatsCluster, NatsServer};

use baton_core::example::example_event;
use baton_core::{Event, EventId, Kind};

/// `count` valid events cycling through every kind, with ids unique to `salt`: the same
/// (salt, count) always gives the same events.
pub fn events(salt: &str, count: usize) -> Vec<Event> {
    (0..count)
        .map(|index| {
            let kind = Kind::ALL[index % Kind::ALL.len()];
            let mut event = example_event(kind, index % 1000);
            event.event_id = EventId::from_source_message("testkit", &format!("{salt}-{index}"));
            event.source.message_id = Some(format!("{salt}-{index}"));
            event.identity.person_id = Some(format!("p-{}", index % 97));
            event
        })
        .collect()
}
