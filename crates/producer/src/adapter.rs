//! Source adapters: how one item a source sent (a native JSON event, a Segment call, a SendGrid
//! webhook event, an item of a declaratively mapped webhook) becomes zero or more events.
//!
//! Every adapter first builds events in the documented JSON edge form (`docs/events.md`) and
//! then hands them to core's `event_from_json`, so the one validator in core decides what is a
//! valid event and its messages name the field. The collector and `baton quarantine retry`
//! share this module, so a retried item goes through exactly what a live one does.

mod mapping;
mod segment;
mod sendgrid;

pub use mapping::{FieldRule, Mapping, MappingError, RuleSpec, SkipRule, TimeFormat};
pub use segment::{TrackRule, default_track_rules};

use baton_core::{Event, EventId, ParseContext, Timestamp, event_from_json, parse_event};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Which translation an item goes through; stored with quarantined items.
/// Written as `native`, `segment`, `sendgrid` or `mapping:NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Adapter {
    /// Baton's own JSON form.
    Native,
    /// Segment's HTTP tracking API (track, page, screen, identify, group, alias).
    Segment,
    /// SendGrid's Event Webhook.
    Sendgrid,
    /// A declarative mapping from the configuration, by name.
    Mapping(String),
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Adapter::Native => f.write_str("native"),
            Adapter::Segment => f.write_str("segment"),
            Adapter::Sendgrid => f.write_str("sendgrid"),
            Adapter::Mapping(name) => write!(f, "mapping:{name}"),
        }
    }
}

impl From<Adapter> for String {
    fn from(adapter: Adapter) -> Self {
        adapter.to_string()
    }
}

impl TryFrom<String> for Adapter {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "native" => Ok(Adapter::Native),
            "segment" => Ok(Adapter::Segment),
            "sendgrid" => Ok(Adapter::Sendgrid),
            other => match other.strip_prefix("mapping:") {
                Some(name) if !name.is_empty() => Ok(Adapter::Mapping(name.to_owned())),
                _ => Err(format!(
                    "unknown adapter {other:?}; expected native, segment, sendgrid or mapping:NAME"
                )),
            },
        }
    }
}

/// What is wrong with one item: the field (in the source's own vocabulary where the adapter
/// knows it) and the problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

/// What one item became.
#[derive(Clone, Debug, PartialEq)]
pub enum Translation {
    /// Valid events, in the order they should be appended.
    Events(Vec<Event>),
    /// Nothing to record, on purpose (a SendGrid `deferred`, a LinkedIn test lead), and why.
    Ignored(String),
}

/// The translation tables: Segment track names and the declarative webhook mappings.
#[derive(Clone, Debug)]
pub struct Adapters {
    track_rules: BTreeMap<String, TrackRule>,
    mappings: BTreeMap<String, Mapping>,
    max_future_skew_millis: i64,
}

/// The shipped declarative mapping for LinkedIn lead gen form responses, the worked example of
/// `docs/ingest.md`.
pub const LINKEDIN_MAPPING_TOML: &str = include_str!("../mappings/linkedin.toml");

impl Adapters {
    /// Tables from configuration. `track_rules` extend and override the defaults; `mappings`
    /// extend and override the shipped ones (`linkedin`).
    pub fn new(
        track_rules: BTreeMap<String, TrackRule>,
        mappings: BTreeMap<String, Mapping>,
        max_future_skew_millis: i64,
    ) -> Result<Self, MappingError> {
        let mut all_rules = default_track_rules();
        all_rules.extend(track_rules);
        for (name, rule) in &all_rules {
            rule.validate(name)?;
        }
        let mut all_mappings = BTreeMap::new();
        all_mappings.insert(
            "linkedin".to_owned(),
            Mapping::from_toml(LINKEDIN_MAPPING_TOML)?,
        );
        all_mappings.extend(mappings);
        for (name, mapping) in &all_mappings {
            mapping.validate(name)?;
        }
        Ok(Adapters {
            track_rules: all_rules,
            mappings: all_mappings,
            max_future_skew_millis,
        })
    }

    /// Whether a declarative mapping of this name exists.
    pub fn has_mapping(&self, name: &str) -> bool {
        self.mappings.contains_key(name)
    }

    /// The mapping of this name, to find its item array in a request body.
    pub fn mapping(&self, name: &str) -> Option<&Mapping> {
        self.mappings.get(name)
    }

    /// Translates and validates one item. `source` is the source the write key belongs to
    /// (`None` when no keys are configured); `received_at` becomes the events' `recorded_at`.
    pub fn translate(
        &self,
        adapter: &Adapter,
        item: &Value,
        source: Option<&str>,
        received_at: Timestamp,
    ) -> Result<Translation, Problem> {
        let drafts = match adapter {
            // Native items are validated in place; only translated ones are built.
            Adapter::Native => {
                return self
                    .validate(adapter, std::slice::from_ref(item), received_at)
                    .map(Translation::Events);
            }
            Adapter::Segment => segment::translate(item, source, received_at, &self.track_rules)?,
            Adapter::Sendgrid => sendgrid::translate(item)?,
            Adapter::Mapping(name) => {
                let mapping = self.mappings.get(name).ok_or_else(|| {
                    Problem::new(
                        "(source)",
                        format!("no mapping named {name:?} is configured"),
                    )
                })?;
                mapping.translate(item)?
            }
        };
        match drafts {
            Drafts::Ignored(reason) => Ok(Translation::Ignored(reason)),
            Drafts::Events(drafts) => self
                .validate(adapter, &drafts, received_at)
                .map(Translation::Events),
        }
    }

    /// A native item given as JSON text (an NDJSON line, an element of a JSON array),
    /// validated straight from the text: the same checks and the same event as [`translate`]
    /// on the parsed item, without building a `serde_json::Value` first.
    ///
    /// [`translate`]: Adapters::translate
    pub fn translate_native_text(
        &self,
        text: &str,
        received_at: Timestamp,
    ) -> Result<Translation, Problem> {
        let context = ParseContext {
            recorded_at: received_at,
            fresh_event_id: unnamed(),
            max_future_skew_millis: self.max_future_skew_millis,
        };
        match parse_event(text, &context) {
            Ok(event) if event.event_id != unnamed() => Ok(Translation::Events(vec![event])),
            // No id of its own: the id comes from the item's content, which `translate`
            // derives from the parsed item (so spacing and escapes do not change it).
            Ok(_) => match serde_json::from_str::<Value>(text) {
                Ok(value) => self.translate(&Adapter::Native, &value, None, received_at),
                Err(error) => Err(Problem::new("(item)", format!("not valid JSON: {error}"))),
            },
            Err(baton_core::EventJsonError::Syntax(error)) => {
                Err(Problem::new("(item)", format!("not valid JSON: {error}")))
            }
            Err(baton_core::EventJsonError::Field { field, problem }) => {
                Err(Problem::new(field, problem))
            }
        }
    }

    /// Core's validation of edge-form drafts, with problems named in the source's terms.
    fn validate(
        &self,
        adapter: &Adapter,
        drafts: &[Value],
        received_at: Timestamp,
    ) -> Result<Vec<Event>, Problem> {
        let mut context = ParseContext {
            recorded_at: received_at,
            fresh_event_id: unnamed(),
            max_future_skew_millis: self.max_future_skew_millis,
        };
        let mut events = Vec::with_capacity(drafts.len());
        for (slot, draft) in drafts.iter().enumerate() {
            // An item without its own id gets one derived from its content (and its place among
            // the events it produced), so sending the same item again stores nothing new.
            if draft.get("event_id").is_none() && draft.get("message_id").is_none() {
                context.fresh_event_id = EventId::from_source_message(
                    &format!("baton-collector/{adapter}/{slot}"),
                    &draft.to_string(),
                );
            }
            let event = event_from_json(draft, &context).map_err(|error| {
                let field = error.field().unwrap_or("(item)").to_owned();
                let reason = match &error {
                    baton_core::EventJsonError::Field { problem, .. } => problem.clone(),
                    baton_core::EventJsonError::Syntax(text) => text.clone(),
                };
                match adapter {
                    Adapter::Native => Problem::new(field, reason),
                    Adapter::Segment => segment::rename_problem(draft, field, reason),
                    Adapter::Sendgrid | Adapter::Mapping(_) => {
                        let kind = draft.get("kind").and_then(Value::as_str).unwrap_or("?");
                        Problem::new(field, format!("{reason} (mapped to a {kind} event)"))
                    }
                }
            })?;
            events.push(event);
        }
        Ok(events)
    }
}

/// The placeholder id of an item that has no id of its own, replaced before it is used.
/// Derived once: a UUIDv5 costs a SHA-1, and every native item needs the placeholder.
fn unnamed() -> EventId {
    static UNNAMED: std::sync::OnceLock<EventId> = std::sync::OnceLock::new();
    *UNNAMED.get_or_init(|| EventId::from_source_message("baton-collector", ""))
}

/// Events in the JSON edge form, not yet validated.
#[derive(Debug)]
pub(crate) enum Drafts {
    Events(Vec<Value>),
    Ignored(String),
}

/// Builds a JSON edge-form object, leaving out absent values so core sees only what is there.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    envelope: Map<String, Value>,
    data: Map<String, Value>,
}

impl Draft {
    pub(crate) fn new(kind: &str, occurred_at: Timestamp) -> Self {
        let mut draft = Draft::default();
        draft.set("kind", Some(kind.to_owned()));
        draft.set("occurred_at", Some(occurred_at.to_rfc3339()));
        draft
    }

    pub(crate) fn set(&mut self, key: &str, value: Option<String>) {
        if let Some(value) = value {
            self.envelope.insert(key.to_owned(), Value::String(value));
        }
    }

    pub(crate) fn source(&mut self, system: &str, connector: Option<&str>) {
        let mut source = Map::new();
        source.insert("system".into(), Value::String(system.to_owned()));
        if let Some(connector) = connector {
            source.insert("connector".into(), Value::String(connector.to_owned()));
        }
        self.envelope.insert("source".into(), Value::Object(source));
    }

    pub(crate) fn data(&mut self, key: &str, value: Value) {
        if !value.is_null() {
            self.data.insert(key.to_owned(), value);
        }
    }

    pub(crate) fn has_data(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }

    pub(crate) fn build(mut self) -> Value {
        if !self.data.is_empty() {
            self.envelope
                .insert("data".into(), Value::Object(self.data));
        }
        Value::Object(self.envelope)
    }
}

/// A JSON value as a non-empty string: strings as they are, numbers in decimal (sources send
/// ids both ways), anything else absent.
pub(crate) fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A short description of a JSON value's type, for messages.
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
