//! The one place where events become bytes on the log and back.
//!
//! A stored event is a frame: the magic bytes `BT`, the schema version as a little-endian
//! `u16`, then the event in bincode 2.0.1's legacy layout (little-endian, fixed-width integers:
//! byte-identical to bincode 1.x, so other readers exist). Reading goes through [`decode`],
//! which upcasts every older schema version to the current types, live or in replay alike.
//! Golden byte fixtures (`tests/golden/`) make any change to the format fail a test.

use crate::event::{Event, EventId};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u16 = 1;

/// The largest encoded event accepted, in bytes (frame included).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

const MAGIC: [u8; 2] = *b"BT";
const HEADER_BYTES: usize = 4;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MAX_FRAME_BYTES>,
>;

/// The legacy layout with a size limit, so that a corrupt length prefix cannot ask for gigabytes.
const CONFIG: Config = bincode::config::legacy().with_limit::<MAX_FRAME_BYTES>();

/// Why bytes could not become an event, or an event bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("not a Baton event: the frame does not start with \"BT\" (first bytes {0:02x?})")]
    NotBaton(Vec<u8>),
    #[error(
        "event schema version {found} is newer than this build reads (up to {SCHEMA_VERSION}); upgrade baton"
    )]
    UnknownSchema { found: u16 },
    #[error("corrupt event (schema version {version}): {reason}")]
    Corrupt { version: u16, reason: String },
    #[error("event of {size} bytes is larger than the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("event could not be encoded: {0}")]
    Encode(String),
}

/// Encodes an event as a current-version frame.
pub fn encode(event: &Event) -> Result<Vec<u8>, CodecError> {
    let mut frame = Vec::with_capacity(256);
    encode_into(event, &mut frame)?;
    Ok(frame)
}

/// Encodes into a buffer the caller reuses; the buffer is cleared first.
pub fn encode_into(event: &Event, frame: &mut Vec<u8>) -> Result<(), CodecError> {
    frame.clear();
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    bincode::serde::encode_into_std_write(event, frame, CONFIG)
        .map_err(|error| CodecError::Encode(error.to_string()))?;
    if frame.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { size: frame.len() });
    }
    Ok(())
}

/// The schema version of a frame, without decoding it.
pub fn schema_version(frame: &[u8]) -> Result<u16, CodecError> {
    if frame.len() < HEADER_BYTES || frame[..2] != MAGIC {
        return Err(CodecError::NotBaton(
            frame.iter().take(8).copied().collect(),
        ));
    }
    Ok(u16::from_le_bytes([frame[2], frame[3]]))
}

/// The event id of a frame without decoding the rest: indexes read millions of these.
pub fn event_id_of(frame: &[u8]) -> Result<EventId, CodecError> {
    let version = schema_version(frame)?;
    match version {
        // In the legacy layout the event starts with its id: serde writes a UUID as 16 bytes
        // behind a u64 length. `golden_ids_peek_as_decoded` pins this to the real encoding.
        SCHEMA_VERSION => {
            let body = &frame[HEADER_BYTES..];
            let corrupt = |reason: &str| CodecError::Corrupt {
                version,
                reason: reason.to_owned(),
            };
            let length = body
                .get(..8)
                .ok_or_else(|| corrupt("frame too short for an event id"))?;
            if length != 16u64.to_le_bytes() {
                return Err(corrupt("event id is not 16 bytes"));
            }
            let bytes: [u8; 16] = body
                .get(8..24)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("frame too short for an event id"))?;
            Ok(EventId::from_uuid(uuid::Uuid::from_bytes(bytes)))
        }
        found => Err(CodecError::UnknownSchema { found }),
    }
}

/// Decodes a frame of any known schema version into the current event types.
pub fn decode(frame: &[u8]) -> Result<Event, CodecError> {
    let version = schema_version(frame)?;
    let body = &frame[HEADER_BYTES..];
    match version {
        // Upcasters plug in here: when version 2 arrives, version 1's types move to a frozen
        // `v1` module and this arm becomes `1 => decode_body::<v1::Event>(..).map(upcast_v1)`.
        SCHEMA_VERSION => decode_body(version, body),
        found => Err(CodecError::UnknownSchema { found }),
    }
}

fn decode_body<T: serde::de::DeserializeOwned>(version: u16, body: &[u8]) -> Result<T, CodecError> {
    let (value, read) =
        bincode::serde::decode_from_slice(body, CONFIG).map_err(|error| CodecError::Corrupt {
            version,
            reason: error.to_string(),
        })?;
    if read != body.len() {
        return Err(CodecError::Corrupt {
            version,
            reason: format!("{} trailing bytes after the event", body.len() - read),
        });
    }
    Ok(value)
}
