//! The log encoding: golden bytes per kind, round trips, and clear errors on foreign bytes.

use baton_core::example::one_of_each_kind;
use baton_core::{
    CodecError, Event, EventId, Identity, Kind, SCHEMA_VERSION, Timestamp, decode, encode,
};
use proptest::prelude::*;
use std::fmt::Write as _;
use std::path::PathBuf;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/schema-v1.hex")
}

fn render_golden() -> String {
    let mut out = String::from(
        "# Golden frames of schema version 1: `kind hex`. A diff here is a log format change.\n\
         # Regenerate only for a deliberate new schema version: BATON_BLESS=1 cargo test -p baton-core --test codec\n",
    );
    for event in one_of_each_kind() {
        let frame = encode(&event).expect("examples encode");
        let hex: String = frame.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        let _ = writeln!(out, "{} {hex}", event.kind().name());
    }
    out
}

#[test]
fn encoding_matches_golden_fixtures() {
    let rendered = render_golden();
    if std::env::var_os("BATON_BLESS").is_some() {
        std::fs::write(golden_path(), &rendered).expect("write golden file");
    }
    let stored = std::fs::read_to_string(golden_path())
        .expect("golden file exists (BATON_BLESS=1 writes it once)");
    for (want, got) in stored.lines().zip(rendered.lines()) {
        assert_eq!(want, got, "the log format changed");
    }
    assert_eq!(stored.lines().count(), rendered.lines().count());
}

#[test]
fn golden_frames_decode_to_the_examples() {
    // Old bytes must stay readable: decode what was stored, not what this build writes.
    let stored = std::fs::read_to_string(golden_path()).expect("golden file");
    let examples = one_of_each_kind();
    let mut decoded = 0;
    for line in stored.lines().filter(|line| !line.starts_with('#')) {
        let (kind, hex) = line.split_once(' ').expect("`kind hex` lines");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let event = decode(&bytes).expect("golden frame decodes");
        assert_eq!(event.kind().name(), kind);
        let example = examples
            .iter()
            .find(|e| e.kind().name() == kind)
            .expect("example");
        assert_eq!(&event, example);
        decoded += 1;
    }
    assert_eq!(decoded, Kind::ALL.len(), "one golden frame per kind");
}

#[test]
fn golden_ids_peek_as_decoded() {
    for event in one_of_each_kind() {
        let frame = encode(&event).expect("encode");
        assert_eq!(baton_core::event_id_of(&frame), Ok(event.event_id));
    }
    assert!(baton_core::event_id_of(b"BT\x01\x00short").is_err());
    assert!(matches!(
        baton_core::event_id_of(b"nope"),
        Err(CodecError::NotBaton(_))
    ));
}

#[test]
fn frame_carries_magic_and_schema_version() {
    let frame = encode(&one_of_each_kind()[0]).expect("encode");
    assert_eq!(&frame[..2], b"BT");
    assert_eq!(u16::from_le_bytes([frame[2], frame[3]]), SCHEMA_VERSION);
}

#[test]
fn foreign_bytes_are_named_not_panicked_on() {
    let error = decode(b"{\"hello\":1}").expect_err("json is not a frame");
    assert!(matches!(error, CodecError::NotBaton(_)), "{error}");
    assert!(error.to_string().contains("not a Baton event"));

    let error = decode(b"").expect_err("empty");
    assert!(matches!(error, CodecError::NotBaton(_)));

    let error = decode(&[b'B', b'T', 99, 0, 1, 2]).expect_err("future schema");
    assert_eq!(error, CodecError::UnknownSchema { found: 99 });

    let mut frame = encode(&one_of_each_kind()[0]).expect("encode");
    frame.truncate(frame.len() - 3);
    let error = decode(&frame).expect_err("truncated");
    assert!(
        matches!(error, CodecError::Corrupt { version: 1, .. }),
        "{error}"
    );

    let mut frame = encode(&one_of_each_kind()[0]).expect("encode");
    frame.push(0);
    let error = decode(&frame).expect_err("trailing byte");
    assert!(error.to_string().contains("trailing"), "{error}");
}

#[test]
fn huge_length_prefix_is_refused_without_allocating() {
    // A frame whose first string claims to be 2^40 bytes long.
    let mut frame = vec![b'B', b'T', 1, 0];
    frame.extend_from_slice(&[0u8; 16]); // event id
    frame.extend_from_slice(&[0u8; 16]); // two timestamps
    frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let error = decode(&frame).expect_err("limit");
    assert!(matches!(error, CodecError::Corrupt { .. }), "{error}");
}

#[test]
fn oversized_event_is_refused() {
    let mut event = one_of_each_kind()[0].clone();
    event.identity.person_id = Some("x".repeat(70_000));
    let error = encode(&event).expect_err("too large");
    assert!(
        matches!(error, CodecError::TooLarge { .. } | CodecError::Encode(_)),
        "{error}"
    );
}

fn arbitrary_event() -> impl Strategy<Value = Event> {
    (
        0..Kind::ALL.len(),
        any::<u128>(),
        0i64..4_000_000_000_000,
        0i64..1_000_000,
        proptest::option::of("[a-z0-9@.\\-]{1,40}"),
        proptest::option::of("\\PC{1,30}"),
        proptest::option::of("[a-z0-9\\-]{1,20}"),
    )
        .prop_map(|(kind, id, occurred, lag, person, anonymous, account)| {
            let mut event = baton_core::example::example_event(Kind::ALL[kind], kind);
            event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(id));
            event.occurred_at = Timestamp::from_unix_millis(occurred);
            event.recorded_at = Timestamp::from_unix_millis(occurred + lag);
            event.identity = Identity {
                anonymous_id: anonymous,
                person_id: person,
                account_id: account,
            };
            event
        })
}

proptest! {
    #[test]
    fn any_event_round_trips(event in arbitrary_event()) {
        let frame = encode(&event).expect("encode");
        prop_assert_eq!(decode(&frame).expect("decode"), event);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut frame = vec![b'B', b'T', 1, 0];
        frame.extend_from_slice(&bytes);
        let _ = decode(&frame);
    }
}
