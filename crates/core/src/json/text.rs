//! A JSON value read for validation only: strings without escapes borrow from the text,
//! objects keep their keys in order, arrays keep only the fact that they were arrays.
//!
//! Reading an event through it instead of `serde_json::Value` skips a map and a string
//! allocation per object and per string, which was most of the cost of taking in the edge form
//! (docs/benchmarks.md, `bench collect`). The validator in the parent module reads this type
//! only, so text and `Value` input go through the same checks.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;

/// One key and its value, in the order the object gave them.
pub(super) type Entry<'a> = (Cow<'a, str>, Json<'a>);

#[derive(Debug, PartialEq)]
pub(super) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    /// Elements are checked for syntax and dropped: no field of the edge form is an array.
    Array,
    /// Keys in document order. A repeated key is kept twice; lookups take the last one, as
    /// `serde_json::Value` does.
    Object(Vec<Entry<'a>>),
}

impl<'a> Json<'a> {
    /// The same value, borrowing the strings of an already parsed `Value`.
    pub(super) fn borrow(value: &'a Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(_) => Json::Array,
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(key, value)| (Cow::Borrowed(key.as_str()), Json::borrow(value)))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Number::from_f64(value)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Key(key)) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed from the text when it has no escapes (serde's own `Cow` impl
/// always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(value)))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_text(text: &str) -> Json<'_> {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn text_and_value_read_the_same() {
        let text = r#"{"a":"plain","b":"esc\"aped","c":1,"d":-2,"e":48000.50,"f":null,
                      "g":[1,{"x":2}],"h":{"i":true},"a":"again"}"#;
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        let read = from_text(text);
        let Json::Object(entries) = &read else {
            panic!("an object reads as an object")
        };
        // The text keeps the repeated key; `Value` keeps its last value in the first place.
        assert_eq!(entries.len(), 9);
        assert!(matches!(
            &entries[0].1,
            Json::String(Cow::Borrowed("plain"))
        ));
        assert!(matches!(&entries[1].1, Json::String(Cow::Owned(s)) if s == "esc\"aped"));
        let Json::Object(from_value) = Json::borrow(&value) else {
            panic!("an object reads as an object")
        };
        for (key, value) in &from_value {
            let last = entries
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .expect("every key of the value is in the text");
            assert_eq!(&last.1, value, "key {key}");
        }
    }

    #[test]
    fn bad_syntax_inside_an_array_is_still_an_error() {
        assert!(serde_json::from_str::<Json>(r#"{"a":[1,}"#).is_err());
    }
}
