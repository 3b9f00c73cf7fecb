//! Declarative webhook mappings: for a source Baton has no adapter for, the configuration says
//! where in each item the envelope fields and the payload fields are (JSON pointers), with
//! constants and lookups for what the source does not say directly (the kind, an enum value).
//!
//! ```toml
//! [mappings.linkedin]
//! system = "linkedin"
//! items = "/elements"                       # where the item array is; absent: the body
//! message_id = "/id"
//! occurred_at = { path = "/submittedAt", format = "unix_millis" }
//! person_id = "/submitter"
//! kind = { constant = "social_interaction" }
//! [mappings.linkedin.data.social_interaction]
//! network = { constant = "linkedin" }
//! paid = { path = "/leadType", lookup = { SPONSORED = true }, default = false }
//! ```

use super::{Draft, Drafts, Problem, describe};
use baton_core::{Kind, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A track rule or a mapping that cannot work, found when the configuration is loaded.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mapping file is not valid TOML: {0}")]
    Toml(String),
    #[error("mapping `{name}`: {problem}")]
    Mapping { name: String, problem: String },
    #[error("track rule {name:?}: {problem}")]
    Track { name: String, problem: String },
}

/// How a timestamp is written in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
}

/// Where one field's value comes from: a JSON pointer (`"/submittedAt"`), or a rule.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum FieldRule {
    Path(String),
    Rule(RuleSpec),
}

/// A constant, or a pointer with an optional lookup table, default and time format.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub path: Option<String>,
    pub constant: Option<Value>,
    /// The value at `path` (as text) is replaced by the table's entry.
    pub lookup: Option<BTreeMap<String, Value>>,
    /// Used when `path` is absent or, with `lookup`, its value is not in the table.
    pub default: Option<Value>,
    pub format: Option<TimeFormat>,
}

/// An item whose value at `path` equals `equals` is answered `ignored` with `reason`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipRule {
    pub path: String,
    pub equals: Value,
    pub reason: String,
}

/// One source's declarative mapping.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub system: String,
    pub connector: Option<String>,
    /// JSON pointer to the array of items in a request body. Without it, a body that is an
    /// array is the items, and an object is one item.
    pub items: Option<String>,
    pub kind: FieldRule,
    pub occurred_at: FieldRule,
    pub message_id: Option<FieldRule>,
    pub anonymous_id: Option<FieldRule>,
    pub person_id: Option<FieldRule>,
    pub account_id: Option<FieldRule>,
    pub opportunity_id: Option<FieldRule>,
    pub campaign_id: Option<FieldRule>,
    pub channel: Option<FieldRule>,
    pub content_id: Option<FieldRule>,
    #[serde(default)]
    pub skip: Vec<SkipRule>,
    /// Per event kind, the payload fields.
    #[serde(default)]
    pub data: BTreeMap<String, BTreeMap<String, FieldRule>>,
}

impl Mapping {
    /// Parses a mapping from its own TOML document (the shipped mappings are such files).
    pub fn from_toml(text: &str) -> Result<Self, MappingError> {
        toml::from_str(text).map_err(|error| MappingError::Toml(error.to_string()))
    }

    pub(crate) fn validate(&self, name: &str) -> Result<(), MappingError> {
        let problem = |problem: String| MappingError::Mapping {
            name: name.to_owned(),
            problem,
        };
        if let Some(kind) = self
            .data
            .keys()
            .find(|kind| Kind::from_name(kind).is_none())
        {
            return Err(problem(format!("data for unknown event kind {kind:?}")));
        }
        let mut rules: Vec<(String, &FieldRule)> = vec![
            ("kind".into(), &self.kind),
            ("occurred_at".into(), &self.occurred_at),
        ];
        for (key, rule) in [
            ("message_id", &self.message_id),
            ("anonymous_id", &self.anonymous_id),
            ("person_id", &self.person_id),
            ("account_id", &self.account_id),
            ("opportunity_id", &self.opportunity_id),
            ("campaign_id", &self.campaign_id),
            ("channel", &self.channel),
            ("content_id", &self.content_id),
        ] {
            if let Some(rule) = rule {
                rules.push((key.into(), rule));
            }
        }
        for (kind, fields) in &self.data {
            for (field, rule) in fields {
                rules.push((format!("data.{kind}.{field}"), rule));
            }
        }
        let pointers = rules
            .iter()
            .filter_map(|(key, rule)| match rule {
                FieldRule::Path(path) => Some((key.clone(), path)),
                FieldRule::Rule(spec) => spec.path.as_ref().map(|path| (key.clone(), path)),
            })
            .chain(self.items.iter().map(|path| ("items".to_owned(), path)))
            .chain(self.skip.iter().map(|skip| ("skip".to_owned(), &skip.path)));
        for (key, path) in pointers {
            if !path.is_empty() && !path.starts_with('/') {
                return Err(problem(format!(
                    "`{key}`: {path:?} is not a JSON pointer (it must start with `/`)"
                )));
            }
        }
        for (key, rule) in &rules {
            if let FieldRule::Rule(spec) = rule
                && spec.path.is_none()
                && spec.constant.is_none()
            {
                return Err(problem(format!(
                    "`{key}`: a rule needs `path` or `constant`"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn translate(&self, item: &Value) -> Result<Drafts, Problem> {
        for skip in &self.skip {
            if item.pointer(&skip.path) == Some(&skip.equals) {
                return Ok(Drafts::Ignored(skip.reason.clone()));
            }
        }
        let kind = text(resolve("kind", &self.kind, item)?)
            .ok_or_else(|| Problem::new("kind", "the mapping gives no event kind for this item"))?;
        let occurred_at = match resolve("occurred_at", &self.occurred_at, item)? {
            Some(Value::String(text)) => Timestamp::parse_rfc3339(&text)
                .map_err(|error| Problem::new("occurred_at", error.to_string()))?,
            Some(other) => {
                return Err(Problem::new(
                    "occurred_at",
                    format!("expected a timestamp, got {}", describe(&other)),
                ));
            }
            None => return Err(Problem::new("occurred_at", "required, but missing")),
        };
        let mut draft = Draft::new(&kind, occurred_at);
        draft.source(&self.system, self.connector.as_deref());
        for (key, rule) in [
            ("message_id", &self.message_id),
            ("anonymous_id", &self.anonymous_id),
            ("person_id", &self.person_id),
            ("account_id", &self.account_id),
            ("opportunity_id", &self.opportunity_id),
            ("campaign_id", &self.campaign_id),
            ("channel", &self.channel),
            ("content_id", &self.content_id),
        ] {
            if let Some(rule) = rule {
                draft.set(key, text(resolve(key, rule, item)?));
            }
        }
        if let Some(fields) = self.data.get(&kind) {
            for (field, rule) in fields {
                if let Some(value) = resolve(&format!("data.{field}"), rule, item)? {
                    draft.data(field, value);
                }
            }
        }
        Ok(Drafts::Events(vec![draft.build()]))
    }
}

/// Strings stay strings; numbers become their decimal text (ids come both ways).
fn text(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.trim().is_empty() => Some(text),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn resolve(key: &str, rule: &FieldRule, item: &Value) -> Result<Option<Value>, Problem> {
    let spec;
    let spec = match rule {
        FieldRule::Path(path) => {
            spec = RuleSpec {
                path: Some(path.clone()),
                ..RuleSpec::default()
            };
            &spec
        }
        FieldRule::Rule(spec) => spec,
    };
    if let Some(constant) = &spec.constant {
        return Ok(Some(constant.clone()));
    }
    let path = spec.path.as_deref().unwrap_or("");
    let found = item.pointer(path).filter(|value| !value.is_null());
    let value = match (found, &spec.lookup) {
        (None, _) => spec.default.clone(),
        (Some(value), None) => Some(value.clone()),
        (Some(value), Some(table)) => {
            let key_text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            match table.get(&key_text).or(spec.default.as_ref()) {
                Some(mapped) => Some(mapped.clone()),
                None => {
                    return Err(Problem::new(
                        path.trim_start_matches('/').replace('/', "."),
                        format!(
                            "{key_text:?} is not in the lookup for `{key}` and the mapping has no default"
                        ),
                    ));
                }
            }
        }
    };
    match (value, spec.format) {
        (Some(value), Some(format)) => format_time(path, &value, format).map(Some),
        (value, _) => Ok(value),
    }
}

fn format_time(path: &str, value: &Value, format: TimeFormat) -> Result<Value, Problem> {
    let field = || path.trim_start_matches('/').replace('/', ".");
    let millis = match (format, value) {
        (TimeFormat::Rfc3339, Value::String(_)) => return Ok(value.clone()),
        (TimeFormat::UnixMillis, Value::Number(number)) => number.as_i64(),
        (TimeFormat::UnixSeconds, Value::Number(number)) => {
            number.as_i64().map(|seconds| seconds.saturating_mul(1000))
        }
        (TimeFormat::UnixMillis | TimeFormat::UnixSeconds, Value::String(text)) => {
            let number = text.trim().parse::<i64>().ok();
            match format {
                TimeFormat::UnixSeconds => number.map(|seconds| seconds.saturating_mul(1000)),
                _ => number,
            }
        }
        _ => None,
    };
    let millis = millis.ok_or_else(|| {
        Problem::new(
            field(),
            format!("expected a {format:?} timestamp, got {value}"),
        )
    })?;
    let timestamp = Timestamp::try_from_unix_millis(millis)
        .map_err(|error| Problem::new(field(), error.to_string()))?;
    Ok(Value::String(timestamp.to_rfc3339()))
}
