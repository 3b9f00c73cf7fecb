//! Prints the example event of every kind in the JSON form, as used in `docs/events.md`.
fn main() {
    for event in baton_core::example::one_of_each_kind() {
        let mut value = baton_core::event_to_json(&event);
        if let Some(object) = value.as_object_mut() {
            // The id follows from (source, message_id) and `recorded_at` is assigned on arrival.
            object.shift_remove("recorded_at");
            object.shift_remove("event_id");
        }
        println!("#### `{}`\n", event.kind().name());
        println!("```json\n{}\n```\n", value);
    }
}
