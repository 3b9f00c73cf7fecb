//! Write keys and what each may write: the source it writes as, the kinds of events, the
//! routes, the browser origins, and its rates.
//!
//! A key on a web page is public: anyone who reads the page has it. So a key says what it may
//! do, and the collector checks every event against it: a browser key that may write touches
//! and identifications cannot write a closed-won opportunity, claim another source, or be used
//! from a page on another site.

use crate::adapter::Adapter;
use crate::rate::KeyRate;
use baton_core::{Event, Kind};
use std::collections::BTreeSet;
use subtle::ConstantTimeEq;

/// A write key, the source it belongs to, and its scope.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteKey {
    /// The `source.system` every event written with this key carries.
    pub source: String,
    pub key: String,
    pub scope: KeyScope,
}

impl std::fmt::Debug for WriteKey {
    // Keys are secrets; they never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteKey")
            .field("source", &self.source)
            .field("key", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

impl std::str::FromStr for WriteKey {
    type Err = String;

    /// `SOURCE:KEY`, as `--write-key` takes it: a key that may write anything as `SOURCE`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            Some((source, key)) if !source.trim().is_empty() && !key.is_empty() => {
                Ok(WriteKey::new(source.trim(), key))
            }
            _ => Err("a write key is written SOURCE:KEY, e.g. web:wk_live_1234".into()),
        }
    }
}

impl WriteKey {
    /// A key with no limits of scope besides its source.
    pub fn new(source: impl Into<String>, key: impl Into<String>) -> Self {
        WriteKey {
            source: source.into(),
            key: key.into(),
            scope: KeyScope::default(),
        }
    }

    /// The name its rate is counted under: its own name, else its source. Two keys of one
    /// name (the old and the new one during a rotation) share one budget.
    pub fn rate_name(&self) -> &str {
        self.scope.name.as_deref().unwrap_or(&self.source)
    }

    /// Whether a request through `adapter` may use this key.
    pub fn allows_route(&self, adapter: &Adapter) -> bool {
        match &self.scope.routes {
            None => true,
            Some(routes) => routes.iter().any(|route| route.admits(adapter)),
        }
    }

    /// Whether a page from `origin` (the request's `Origin` header) may use this key.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.scope
            .origins
            .iter()
            .any(|allowed| allowed == "*" || same_origin(allowed, origin))
    }

    /// Why this key may not write `event`, naming the field: another source, or a kind
    /// outside its scope.
    pub fn refusal(&self, event: &Event) -> Option<(&'static str, String)> {
        if event.source.system != self.source {
            return Some((
                "source.system",
                format!(
                    "{:?} is not this write key's source {:?}: a key writes as its own source only",
                    event.source.system, self.source
                ),
            ));
        }
        if let Some(kinds) = &self.scope.kinds
            && !kinds.contains(&event.kind())
        {
            return Some((
                "kind",
                format!(
                    "{} is outside this write key's scope (it may write {})",
                    event.kind().name(),
                    self.scope.kinds_text()
                ),
            ));
        }
        None
    }
}

/// What a key may do beyond writing as its source. The default: anything, from servers only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyScope {
    /// The name its rate, metrics and log lines go by; the source when unset.
    pub name: Option<String>,
    /// The kinds it may write; `None`: every kind.
    pub kinds: Option<BTreeSet<Kind>>,
    /// The routes it may use; `None`: every route.
    pub routes: Option<Vec<Route>>,
    /// The browser origins (`https://www.example.com`) that may use it; CORS is answered for
    /// these only. Empty: no browser page may use it. `*` allows every origin.
    pub origins: Vec<String>,
    /// Its rate, over the collector's default for every key.
    pub rate: Option<KeyRate>,
    /// The rate of each client address using it (a browser key: each visitor); none when
    /// unset.
    pub per_address: Option<KeyRate>,
}

impl KeyScope {
    /// Parses the names of kinds and families (`touch`, `action`, `crm`, `identity`,
    /// `governance`) a key may write.
    pub fn parse_kinds<S: AsRef<str>>(names: &[S]) -> Result<BTreeSet<Kind>, String> {
        let mut kinds = BTreeSet::new();
        for name in names {
            let name = name.as_ref().trim();
            let family: Vec<Kind> = Kind::ALL
                .iter()
                .copied()
                .filter(|kind| kind.family().as_str() == name)
                .collect();
            if !family.is_empty() {
                kinds.extend(family);
            } else if let Some(kind) = Kind::from_name(name) {
                kinds.insert(kind);
            } else {
                return Err(format!(
                    "unknown kind or family {name:?}; a family (touch, action, crm, identity, governance) or a kind of docs/events.md (content_viewed, identified, ...)"
                ));
            }
        }
        Ok(kinds)
    }

    fn kinds_text(&self) -> String {
        match &self.kinds {
            None => "every kind".into(),
            Some(kinds) => kinds
                .iter()
                .map(|kind| kind.name())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A route a key may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v1/events`.
    Native,
    /// The Segment-compatible paths, long and short (`/v1/track`, `/v1/t`, `/v1/batch`, ...).
    Segment,
    /// `/v1/webhooks/sendgrid`.
    Sendgrid,
    /// `/v1/webhooks/NAME`, one mapping.
    Mapping(String),
    /// Every webhook: SendGrid's and the mapped ones.
    Webhooks,
}

impl Route {
    fn admits(&self, adapter: &Adapter) -> bool {
        match (self, adapter) {
            (Route::Native, Adapter::Native)
            | (Route::Segment, Adapter::Segment)
            | (Route::Sendgrid, Adapter::Sendgrid)
            | (Route::Webhooks, Adapter::Sendgrid | Adapter::Mapping(_)) => true,
            (Route::Mapping(allowed), Adapter::Mapping(name)) => allowed == name,
            _ => false,
        }
    }
}

impl std::str::FromStr for Route {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "native" | "events" => Ok(Route::Native),
            "segment" => Ok(Route::Segment),
            "sendgrid" => Ok(Route::Sendgrid),
            "webhooks" => Ok(Route::Webhooks),
            other => match other.strip_prefix("mapping:") {
                Some(name) if !name.is_empty() => Ok(Route::Mapping(name.to_owned())),
                _ => Err(format!(
                    "unknown route {other:?}; expected native, segment, sendgrid, webhooks or mapping:NAME"
                )),
            },
        }
    }
}

/// Two origins are the same when scheme, host and port are (hosts without regard to case).
fn same_origin(allowed: &str, origin: &str) -> bool {
    allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
}

/// Whether `origin` has the form browsers send: `scheme://host[:port]`, nothing after.
pub fn valid_origin(origin: &str) -> bool {
    match origin.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && !rest.is_empty()
                && !rest.contains('/')
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// The keys in force. Replaced whole when the configuration is reloaded, so a rotation
/// (the new key added, then the old one removed) takes effect without a restart.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<WriteKey>,
}

impl KeySet {
    pub(crate) fn new(keys: Vec<WriteKey>) -> Self {
        KeySet { keys }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key presented, compared with every key in constant time, so the time taken does
    /// not say which one nearly matched.
    pub(crate) fn find(&self, presented: &str) -> Option<&WriteKey> {
        let mut found = None;
        for write_key in &self.keys {
            if bool::from(write_key.key.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(write_key);
            }
        }
        found
    }

    /// Whether any key lets a page from `origin` use a route of `adapter` (what a CORS
    /// preflight, which carries no key, is answered by).
    pub(crate) fn any_allows(&self, origin: &str, adapter: &Adapter) -> bool {
        self.keys
            .iter()
            .any(|key| key.allows_origin(origin) && key.allows_route(adapter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_keys_parse_from_source_colon_key() {
        let key: WriteKey = "web:wk:with:colons".parse().expect("valid");
        assert_eq!(key.source, "web");
        assert_eq!(key.key, "wk:with:colons");
        assert_eq!(key.scope, KeyScope::default());
        assert!("nokey".parse::<WriteKey>().is_err());
        assert!(!format!("{key:?}").contains("wk:with"));
    }

    #[test]
    fn kinds_are_named_by_family_or_kind() {
        let kinds = KeyScope::parse_kinds(&["touch", "identified"]).expect("valid");
        assert!(kinds.contains(&Kind::ContentViewed));
        assert!(kinds.contains(&Kind::DemoRequested));
        assert!(kinds.contains(&Kind::Identified));
        assert!(!kinds.contains(&Kind::Merged));
        assert!(!kinds.contains(&Kind::OpportunityClosedWon));
        let error = KeyScope::parse_kinds(&["touches"]).expect_err("unknown");
        assert!(error.contains("\"touches\""), "{error}");
    }

    #[test]
    fn routes_and_origins_are_matched_exactly() {
        let mut key = WriteKey::new("web", "k");
        key.scope.routes = Some(vec![
            Route::Segment,
            "mapping:linkedin".parse().expect("a route"),
        ]);
        key.scope.origins = vec!["https://www.example.com".into()];
        assert!(key.allows_route(&Adapter::Segment));
        assert!(key.allows_route(&Adapter::Mapping("linkedin".into())));
        assert!(!key.allows_route(&Adapter::Native));
        assert!(!key.allows_route(&Adapter::Sendgrid));
        assert!(!key.allows_route(&Adapter::Mapping("hubspot".into())));
        assert!(key.allows_origin("https://WWW.example.com"));
        assert!(!key.allows_origin("http://www.example.com"));
        assert!(!key.allows_origin("https://www.example.com.evil.net"));
        assert!(!WriteKey::new("web", "k").allows_origin("https://www.example.com"));
        assert!(valid_origin("http://127.0.0.1:8080"));
        assert!(!valid_origin("null"));
        assert!(!valid_origin("https://a.example/path"));
    }
}
