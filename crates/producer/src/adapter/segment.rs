//! Segment's HTTP tracking API: track, page, screen, identify, group and alias calls as
//! Baton events.
//!
//! The event id is derived from (source, `messageId`), so Segment's retries are stored once; a
//! call without `messageId` gets one derived from its content.
//! `occurred_at` follows Segment's clock-skew correction: `receivedAt - (sentAt - timestamp)`.
//! Track event names map to event kinds through a table (defaults below, extended by config);
//! a name not in the table becomes a `custom_touch`, not a loss.

use super::{Draft, Drafts, MappingError, Problem, describe, text_of};
use baton_core::{ContentType, Kind, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Segment's limit on `messageId`.
const MAX_MESSAGE_ID_CHARS: usize = 100;

/// How one track event name becomes an event: the kind, and constant data used where the
/// call's `properties` do not say (`{ kind = "form_submitted", data = { form_kind = "trial" } }`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "TrackRuleText")]
pub struct TrackRule {
    pub kind: String,
    pub data: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TrackRuleText {
    Kind(String),
    Full {
        kind: String,
        #[serde(default)]
        data: BTreeMap<String, Value>,
    },
}

impl From<TrackRuleText> for TrackRule {
    fn from(text: TrackRuleText) -> Self {
        match text {
            TrackRuleText::Kind(kind) => TrackRule {
                kind,
                data: BTreeMap::new(),
            },
            TrackRuleText::Full { kind, data } => TrackRule { kind, data },
        }
    }
}

impl TrackRule {
    fn new(kind: Kind, data: &[(&str, &str)]) -> Self {
        TrackRule {
            kind: kind.name().to_owned(),
            data: data
                .iter()
                .map(|(key, value)| ((*key).to_owned(), Value::String((*value).to_owned())))
                .collect(),
        }
    }

    pub(crate) fn validate(&self, name: &str) -> Result<(), MappingError> {
        let problem = |problem: String| MappingError::Track {
            name: name.to_owned(),
            problem,
        };
        let kind = Kind::from_name(&self.kind)
            .ok_or_else(|| problem(format!("unknown event kind {:?}", self.kind)))?;
        let fields = touch_fields(kind).ok_or_else(|| {
            problem(format!(
                "kind {:?} is not a buyer touch; track calls map to touch kinds only",
                self.kind
            ))
        })?;
        if let Some(key) = self.data.keys().find(|key| !fields.contains(&key.as_str())) {
            return Err(problem(format!(
                "data field {key:?} is not a field of {}; expected one of {}",
                self.kind,
                fields.join(", ")
            )));
        }
        Ok(())
    }
}

/// The shipped track table: Segment's semantic event names (and common B2B ones) to kinds.
pub fn default_track_rules() -> BTreeMap<String, TrackRule> {
    let rules = [
        ("Demo Requested", TrackRule::new(Kind::DemoRequested, &[])),
        (
            "Form Submitted",
            TrackRule::new(Kind::FormSubmitted, &[("form_kind", "other")]),
        ),
        (
            "Trial Started",
            TrackRule::new(
                Kind::FormSubmitted,
                &[("form_kind", "trial"), ("form_id", "trial")],
            ),
        ),
        (
            "Webinar Registered",
            TrackRule::new(Kind::WebinarRegistered, &[]),
        ),
        (
            "Webinar Attended",
            TrackRule::new(Kind::WebinarAttended, &[]),
        ),
        ("Email Sent", TrackRule::new(Kind::EmailSent, &[])),
        ("Email Delivered", TrackRule::new(Kind::EmailDelivered, &[])),
        ("Email Opened", TrackRule::new(Kind::EmailOpened, &[])),
        (
            "Email Link Clicked",
            TrackRule::new(Kind::EmailClicked, &[]),
        ),
        ("Email Bounced", TrackRule::new(Kind::EmailBounced, &[])),
        ("Unsubscribed", TrackRule::new(Kind::EmailUnsubscribed, &[])),
        ("Ad Clicked", TrackRule::new(Kind::AdClicked, &[])),
        ("Proposal Viewed", TrackRule::new(Kind::ProposalViewed, &[])),
        (
            "NPS Survey Responded",
            TrackRule::new(Kind::NpsResponded, &[]),
        ),
        (
            "Executive Event Attended",
            TrackRule::new(Kind::ExecutiveEventAttended, &[]),
        ),
    ];
    rules
        .into_iter()
        .map(|(name, rule)| (name.to_owned(), rule))
        .collect()
}

/// The data fields of each touch kind, which track `properties` fill by name.
fn touch_fields(kind: Kind) -> Option<&'static [&'static str]> {
    let fields: &'static [&'static str] = match kind {
        Kind::ContentViewed => &["url", "content_type", "title"],
        Kind::FormSubmitted => &["form_id", "form_kind"],
        Kind::EmailSent | Kind::EmailDelivered | Kind::EmailOpened | Kind::EmailUnsubscribed => {
            &["email_id"]
        }
        Kind::EmailClicked => &["email_id", "link_url"],
        Kind::EmailBounced => &["email_id", "hard"],
        Kind::SocialInteraction => &["network", "action", "paid", "post_id"],
        Kind::AdClicked => &["network", "ad_id"],
        Kind::WebinarRegistered => &["webinar_id"],
        Kind::WebinarAttended => &["webinar_id", "minutes"],
        Kind::ExecutiveEventInvited | Kind::ExecutiveEventAttended => &["exec_event_id"],
        Kind::DemoRequested => &["product"],
        Kind::ProposalViewed => &["proposal_id"],
        Kind::NpsResponded => &["score", "comment"],
        Kind::ProductUsageSummarized => &["period_days", "active_users"],
        Kind::CustomTouch => &["name"],
        _ => return None,
    };
    Some(fields)
}

/// `form_id` → `formId`, the other spelling Segment sources use for properties.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads the fields every call has, checks them, and translates by `type`.
pub(super) fn translate(
    item: &Value,
    source: Option<&str>,
    received_at: Timestamp,
    rules: &BTreeMap<String, TrackRule>,
) -> Result<Drafts, Problem> {
    let Value::Object(call) = item else {
        return Err(Problem::new(
            "(item)",
            format!(
                "expected a Segment call (a JSON object), got {}",
                describe(item)
            ),
        ));
    };
    let call_type = match call.get("type") {
        Some(Value::String(text)) => text.as_str(),
        Some(other) => {
            return Err(Problem::new(
                "type",
                format!("expected a string, got {}", describe(other)),
            ));
        }
        None => return Err(Problem::new("type", "required, but missing")),
    };
    let envelope = Envelope::read(call, source, received_at)?;
    let drafts = match call_type {
        "track" => vec![track(call, &envelope, rules)?],
        "page" | "screen" => vec![page(call, &envelope, call_type == "screen")?],
        "identify" => identify(call, &envelope)?,
        "group" => group(call, &envelope)?,
        "alias" => alias(call, &envelope)?,
        other => {
            return Err(Problem::new(
                "type",
                format!(
                    "unknown call type {other:?}; expected track, page, screen, identify, group or alias"
                ),
            ));
        }
    };
    if drafts.is_empty() {
        return Ok(Drafts::Ignored(format!(
            "this {call_type} call asserts nothing Baton records (no anonymousId to identify, \
             no traits Baton keeps)"
        )));
    }
    Ok(Drafts::Events(drafts))
}

/// What every call carries, read once.
struct Envelope {
    system: String,
    connector: String,
    message_id: String,
    occurred_at: Timestamp,
    anonymous_id: Option<String>,
    user_id: Option<String>,
    group_id: Option<String>,
    campaign_id: Option<String>,
    channel: Option<String>,
    content_id: Option<String>,
    context: Map<String, Value>,
}

impl Envelope {
    fn read(
        call: &Map<String, Value>,
        source: Option<&str>,
        received_at: Timestamp,
    ) -> Result<Self, Problem> {
        let context = match call.get("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(context)) => context.clone(),
            Some(other) => {
                return Err(Problem::new(
                    "context",
                    format!("expected an object, got {}", describe(other)),
                ));
            }
        };
        let message_id = match call.get("messageId") {
            None | Some(Value::Null) => content_message_id(call),
            Some(value) => text_of(Some(value)).ok_or_else(|| {
                Problem::new(
                    "messageId",
                    format!("expected a non-empty string, got {}", describe(value)),
                )
            })?,
        };
        if message_id.chars().count() > MAX_MESSAGE_ID_CHARS {
            return Err(Problem::new(
                "messageId",
                format!("longer than {MAX_MESSAGE_ID_CHARS} characters"),
            ));
        }
        let anonymous_id = text_of(call.get("anonymousId"));
        let user_id = text_of(call.get("userId"));
        if anonymous_id.is_none() && user_id.is_none() {
            return Err(Problem::new(
                "userId",
                "a Segment call needs `userId` or `anonymousId`, and has neither",
            ));
        }
        let occurred_at = occurred_at(call, received_at)?;
        let campaign = context.get("campaign").and_then(Value::as_object);
        let campaign_text = |key: &str| campaign.and_then(|c| text_of(c.get(key)));
        let connector = context
            .get("library")
            .and_then(|library| text_of(library.get("name")))
            .unwrap_or_else(|| "segment-http".to_owned());
        Ok(Envelope {
            system: source.unwrap_or("segment").to_owned(),
            connector,
            message_id,
            occurred_at,
            anonymous_id,
            user_id,
            group_id: text_of(context.get("groupId")),
            campaign_id: campaign_text("name"),
            channel: campaign_text("medium").map(|medium| channel_of(&medium)),
            content_id: campaign_text("content"),
            context,
        })
    }

    /// A draft with the envelope filled in; `suffix` tells apart the several events one call
    /// may produce (the first has none, so its id is exactly (source, messageId)).
    fn draft(&self, kind: Kind, suffix: &str) -> Draft {
        let mut draft = Draft::new(kind.name(), self.occurred_at);
        draft.source(&self.system, Some(&self.connector));
        draft.set("message_id", Some(format!("{}{suffix}", self.message_id)));
        draft.set("anonymous_id", self.anonymous_id.clone());
        draft.set("person_id", self.user_id.clone());
        draft.set("account_id", self.group_id.clone());
        draft.set("campaign_id", self.campaign_id.clone());
        draft.set("channel", self.channel.clone());
        draft.set("content_id", self.content_id.clone());
        draft
    }
}

/// The message id of a call that has none (hand-written calls; Segment's libraries always send
/// one): derived from the call's content less the transport times that change when a client
/// sends it again (`sentAt`, `receivedAt`), so a retried call is still stored once.
fn content_message_id(call: &Map<String, Value>) -> String {
    /// Namespace of content-derived Segment message ids (UUIDv5).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x2b7c_51e4_8d0a_4f3b_a6c1_93e2_0d5f_7a18);
    let mut content = call.clone();
    content.remove("sentAt");
    content.remove("receivedAt");
    let text = Value::Object(content).to_string();
    format!(
        "baton-content-{}",
        uuid::Uuid::new_v5(&NAMESPACE, text.as_bytes())
    )
}

/// `utm_medium` to Baton's channel names; unknown media are kept as sent, lowercased.
fn channel_of(medium: &str) -> String {
    let medium = medium.trim().to_lowercase();
    let channel = match medium.as_str() {
        "cpc" | "ppc" | "paid" | "paidsearch" | "paid_search" | "sem" => "paid_search",
        "paid_social" | "paidsocial" | "social_paid" => "paid_social",
        "social" | "organic_social" => "organic_social",
        "email" | "e-mail" | "newsletter" => "email",
        "organic" | "seo" => "organic_search",
        "referral" => "referral",
        "event" | "events" => "events",
        other => return other.to_owned(),
    };
    channel.to_owned()
}

fn timestamp_field(call: &Map<String, Value>, key: &str) -> Result<Option<Timestamp>, Problem> {
    match call.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Timestamp::parse_rfc3339(text)
            .map(Some)
            .map_err(|error| Problem::new(key, error.to_string())),
        Some(other) => Err(Problem::new(
            key,
            format!(
                "expected an RFC 3339 timestamp string, got {}",
                describe(other)
            ),
        )),
    }
}

/// Segment's rule: the client's clock is trusted for the gap between the call and its sending,
/// not for the absolute time, so `occurred = receivedAt - (sentAt - timestamp)`. Without
/// `sentAt` (server-side and historical imports) the timestamp is taken as given.
fn occurred_at(call: &Map<String, Value>, received_at: Timestamp) -> Result<Timestamp, Problem> {
    let client = match timestamp_field(call, "timestamp")? {
        Some(timestamp) => Some(timestamp),
        None => timestamp_field(call, "originalTimestamp")?,
    };
    let sent_at = timestamp_field(call, "sentAt")?;
    let received = timestamp_field(call, "receivedAt")?.unwrap_or(received_at);
    Ok(match (client, sent_at) {
        (Some(client), Some(sent)) => {
            received.add_millis(client.unix_millis() - sent.unix_millis())
        }
        (Some(client), None) => client,
        (None, _) => received,
    })
}

fn properties(call: &Map<String, Value>) -> Result<Map<String, Value>, Problem> {
    match call.get("properties") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(properties)) => Ok(properties.clone()),
        Some(other) => Err(Problem::new(
            "properties",
            format!("expected an object, got {}", describe(other)),
        )),
    }
}

fn traits(call: &Map<String, Value>) -> Result<Map<String, Value>, Problem> {
    match call.get("traits") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(traits)) => Ok(traits.clone()),
        Some(other) => Err(Problem::new(
            "traits",
            format!("expected an object, got {}", describe(other)),
        )),
    }
}

fn track(
    call: &Map<String, Value>,
    envelope: &Envelope,
    rules: &BTreeMap<String, TrackRule>,
) -> Result<Value, Problem> {
    let name = text_of(call.get("event"))
        .ok_or_else(|| Problem::new("event", "a track call needs its event name"))?;
    let properties = properties(call)?;
    let Some(rule) = rules.get(&name) else {
        let mut draft = envelope.draft(Kind::CustomTouch, "");
        draft.data("name", Value::String(name));
        return Ok(draft.build());
    };
    let kind = Kind::from_name(&rule.kind)
        .expect("invariant: track rules are validated when the tables are built");
    let fields =
        touch_fields(kind).expect("invariant: track rules are validated to name touch kinds");
    let mut draft = envelope.draft(kind, "");
    for field in fields {
        let value = properties
            .get(*field)
            .or_else(|| properties.get(&camel_case(field)))
            .filter(|value| !value.is_null())
            .or_else(|| rule.data.get(*field));
        if let Some(value) = value {
            draft.data(field, value.clone());
        }
    }
    Ok(draft.build())
}

/// The content type a URL's path suggests; `other` when nothing matches.
pub(crate) fn guess_content_type(url: &str) -> ContentType {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| {
            rest.find('/').map_or("", |slash| &rest[slash..])
        })
        .to_lowercase();
    let path = path.split(['?', '#']).next().unwrap_or("");
    let rules: &[(&[&str], ContentType)] = &[
        (&["/blog", "/articles", "/news"], ContentType::Blog),
        (
            &[
                "/case-study",
                "/case-studies",
                "/case_studies",
                "/customers",
                "/customer-stories",
            ],
            ContentType::CaseStudy,
        ),
        (&["/pricing", "/plans"], ContentType::Pricing),
        (
            &[
                "/docs",
                "/documentation",
                "/developers",
                "/api-reference",
                "/help",
            ],
            ContentType::Docs,
        ),
        (
            &[
                "/whitepaper",
                "/white-paper",
                "/ebook",
                "/e-book",
                "/reports",
                "/guides",
            ],
            ContentType::Whitepaper,
        ),
        (&["/video", "/watch", "/webinars"], ContentType::Video),
        (&["/careers", "/jobs"], ContentType::Careers),
        (
            &[
                "/product",
                "/features",
                "/platform",
                "/solutions",
                "/integrations",
            ],
            ContentType::Product,
        ),
    ];
    for (prefixes, content_type) in rules {
        if prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '-', 's']))
        }) {
            return *content_type;
        }
    }
    ContentType::Other
}

fn page(call: &Map<String, Value>, envelope: &Envelope, screen: bool) -> Result<Value, Problem> {
    let properties = properties(call)?;
    let context_page = envelope.context.get("page").and_then(Value::as_object);
    let name = text_of(call.get("name"));
    let url = if screen {
        let name = name
            .clone()
            .ok_or_else(|| Problem::new("name", "a screen call needs the screen's name"))?;
        Some(format!("app://screen/{name}"))
    } else {
        text_of(properties.get("url")).or_else(|| context_page.and_then(|p| text_of(p.get("url"))))
    };
    let url = url.ok_or_else(|| {
        Problem::new(
            "properties.url",
            "a page call needs the page's URL in `properties.url` or `context.page.url`",
        )
    })?;
    let content_type = match text_of(properties.get("content_type")) {
        Some(text) => ContentType::from_name(&text).ok_or_else(|| {
            let names: Vec<&str> = ContentType::ALL.iter().map(|c| c.as_str()).collect();
            Problem::new(
                "properties.content_type",
                format!("{text:?} is not one of {}", names.join(", ")),
            )
        })?,
        None if screen => ContentType::Product,
        None => guess_content_type(&url),
    };
    let title = text_of(properties.get("title"))
        .or_else(|| context_page.and_then(|p| text_of(p.get("title"))))
        .or(name);
    let mut draft = envelope.draft(Kind::ContentViewed, "");
    draft.data("url", Value::String(url));
    draft.data(
        "content_type",
        Value::String(content_type.as_str().to_owned()),
    );
    if let Some(title) = title {
        draft.data("title", Value::String(title));
    }
    Ok(draft.build())
}

/// An identify call can say three things: this anonymous visitor is this person (`identified`),
/// the person's traits (`person_updated`), and, with `context.groupId`, their account
/// (`linked_to_account`).
fn identify(call: &Map<String, Value>, envelope: &Envelope) -> Result<Vec<Value>, Problem> {
    let traits = traits(call)?;
    let mut drafts = Vec::new();
    // An anonymous-only identify (traits of a visitor) says nothing Baton records.
    let Some(user_id) = envelope.user_id.clone() else {
        return Ok(drafts);
    };
    if let Some(anonymous_id) = envelope.anonymous_id.clone() {
        let mut draft = envelope.draft(Kind::Identified, "");
        draft.data("anonymous_id", Value::String(anonymous_id));
        draft.data("person_id", Value::String(user_id.clone()));
        drafts.push(draft.build());
    }
    let mut person = envelope.draft(Kind::PersonUpdated, "#traits");
    let country = text_of(traits.get("country")).or_else(|| {
        traits
            .get("address")
            .and_then(|address| text_of(address.get("country")))
    });
    for (field, value) in [
        ("title", text_of(traits.get("title"))),
        ("seniority", text_of(traits.get("seniority"))),
        ("department", text_of(traits.get("department"))),
        ("country", country),
    ] {
        if let Some(value) = value {
            person.data(field, Value::String(value));
        }
    }
    if ["title", "seniority", "department", "country"]
        .iter()
        .any(|field| person.has_data(field))
    {
        drafts.push(person.build());
    }
    if let Some(account_id) = envelope.group_id.clone() {
        let mut draft = envelope.draft(Kind::LinkedToAccount, "#group");
        draft.data("person_id", Value::String(user_id));
        draft.data("account_id", Value::String(account_id));
        drafts.push(draft.build());
    }
    Ok(drafts)
}

/// A group call links the person to the account and may carry the account's traits.
fn group(call: &Map<String, Value>, envelope: &Envelope) -> Result<Vec<Value>, Problem> {
    let account_id = text_of(call.get("groupId"))
        .ok_or_else(|| Problem::new("groupId", "a group call needs `groupId`"))?;
    let traits = traits(call)?;
    let mut drafts = Vec::new();
    if let Some(user_id) = envelope.user_id.clone() {
        let mut draft = envelope.draft(Kind::LinkedToAccount, "");
        draft.set("account_id", Some(account_id.clone()));
        draft.data("person_id", Value::String(user_id));
        draft.data("account_id", Value::String(account_id.clone()));
        drafts.push(draft.build());
    }
    let mut account = envelope.draft(Kind::AccountUpdated, "#traits");
    account.set("account_id", Some(account_id));
    let domain = text_of(traits.get("domain")).or_else(|| {
        text_of(traits.get("website")).map(|site| {
            let host = site
                .split_once("://")
                .map_or(site.as_str(), |(_, rest)| rest);
            host.split('/').next().unwrap_or(host).to_owned()
        })
    });
    let employees = match traits.get("employees") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => Some(Value::Number(number.clone())),
        Some(Value::String(text)) => text.trim().parse::<u32>().ok().map(Value::from),
        Some(other) => {
            return Err(Problem::new(
                "traits.employees",
                format!("expected a number, got {}", describe(other)),
            ));
        }
    };
    let region = text_of(traits.get("region")).or_else(|| {
        traits
            .get("address")
            .and_then(|address| text_of(address.get("country")))
    });
    for (field, value) in [
        ("name", text_of(traits.get("name")).map(Value::String)),
        ("domain", domain.map(Value::String)),
        (
            "industry",
            text_of(traits.get("industry")).map(Value::String),
        ),
        ("employees", employees),
        ("region", region.map(Value::String)),
    ] {
        if let Some(value) = value {
            account.data(field, value);
        }
    }
    if ["name", "domain", "industry", "employees", "region"]
        .iter()
        .any(|field| account.has_data(field))
    {
        drafts.push(account.build());
    }
    if drafts.is_empty() {
        return Err(Problem::new(
            "userId",
            "a group call needs `userId` to link a person, or traits of the account",
        ));
    }
    Ok(drafts)
}

/// Alias says two person ids are one person: `previousId` merges into `userId`.
fn alias(call: &Map<String, Value>, envelope: &Envelope) -> Result<Vec<Value>, Problem> {
    let previous = text_of(call.get("previousId"))
        .ok_or_else(|| Problem::new("previousId", "an alias call needs `previousId`"))?;
    let user_id = envelope
        .user_id
        .clone()
        .ok_or_else(|| Problem::new("userId", "an alias call needs `userId`"))?;
    let mut draft = envelope.draft(Kind::Merged, "");
    draft.data("from_person_id", Value::String(previous));
    draft.data("into_person_id", Value::String(user_id));
    Ok(vec![draft.build()])
}

/// Names a core problem in Segment's vocabulary: a track event's `data.x` came from
/// `properties.x`; envelope fields keep their Baton names with the Segment source in the reason.
pub(super) fn rename_problem(draft: &Value, field: String, reason: String) -> Problem {
    let kind = draft.get("kind").and_then(Value::as_str).unwrap_or("?");
    match field.strip_prefix("data.") {
        Some(rest) => Problem::new(
            format!("properties.{rest}"),
            format!("{reason} (for a {kind} event)"),
        ),
        None if field == "data" => {
            Problem::new("properties", format!("{reason} (for a {kind} event)"))
        }
        None => Problem::new(field, format!("{reason} (for a {kind} event)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_content_types_from_paths() {
        let cases = [
            ("https://acme.io/blog/why-funnels", ContentType::Blog),
            ("https://acme.io/pricing", ContentType::Pricing),
            (
                "https://acme.io/case-studies/globex",
                ContentType::CaseStudy,
            ),
            ("https://acme.io/docs/ingest?x=1", ContentType::Docs),
            ("https://acme.io/", ContentType::Other),
            ("https://acme.io/blogger-outreach", ContentType::Other),
            ("/features/sync", ContentType::Product),
        ];
        for (url, expected) in cases {
            assert_eq!(guess_content_type(url), expected, "{url}");
        }
    }

    #[test]
    fn corrects_client_clock_skew_like_segment() {
        let call: Map<String, Value> = serde_json::from_str(
            r#"{"timestamp":"2026-03-01T11:59:00Z","sentAt":"2026-03-01T12:00:00Z"}"#,
        )
        .expect("json");
        // The client clock runs an hour late: received at 13:00 means sent at 13:00, so the
        // call happened a minute before.
        let received = Timestamp::parse_rfc3339("2026-03-01T13:00:00Z").expect("time");
        let occurred = occurred_at(&call, received).expect("valid");
        assert_eq!(occurred.to_rfc3339(), "2026-03-01T12:59:00.000Z");
    }

    #[test]
    fn camel_case_spelling() {
        assert_eq!(camel_case("form_id"), "formId");
        assert_eq!(camel_case("exec_event_id"), "execEventId");
    }
}
