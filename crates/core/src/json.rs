//! The JSON form of an event, used at the edges (files, HTTP, SQL): parsing with validation
//! that names the field and what is wrong, and rendering back to the same form.
//!
//! The form is documented in `docs/events.md`; a test there keeps the examples parseable.

use crate::currency;
use crate::event::{
    ActivityKind, AdvocacyAct, Campaign, ContentType, Event, EventId, ExpansionMotion, FormKind,
    Identity, Kind, Money, Payload, SocialAction, Source,
};
use crate::timestamp::Timestamp;
use serde_json::{Map, Value, json};
use text::{Entry, Json};
use uuid::Uuid;

mod text;

/// What the caller supplies that core cannot know: the time now and a fresh id.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext {
    /// Becomes the event's `recorded_at`.
    pub recorded_at: Timestamp,
    /// Used as the event id when the JSON has neither `event_id` nor `message_id`.
    pub fresh_event_id: EventId,
    /// How far `occurred_at` may lie after `recorded_at` before it is refused as a clock error.
    pub max_future_skew_millis: i64,
}

impl ParseContext {
    /// A day of tolerance for clock skew between sources and Baton.
    pub const DEFAULT_MAX_FUTURE_SKEW_MILLIS: i64 = Timestamp::MILLIS_PER_DAY;
}

/// Why a JSON event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventJsonError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("field `{field}`: {problem}")]
    Field { field: String, problem: String },
}

impl EventJsonError {
    /// The offending field's path (`data.amount`), when the problem is with one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            EventJsonError::Syntax(_) => None,
            EventJsonError::Field { field, .. } => Some(field),
        }
    }
}

type Result<T> = std::result::Result<T, EventJsonError>;

/// Longest accepted string value. Longer values are almost always a mapping mistake.
const MAX_STRING_CHARS: usize = 4096;

const ENVELOPE_KEYS: &[&str] = &[
    // Exports (`baton log read`) carry the log position; it is not part of the fact.
    "position",
    "event_id",
    "message_id",
    "kind",
    "occurred_at",
    "recorded_at",
    "source",
    "anonymous_id",
    "person_id",
    "account_id",
    "opportunity_id",
    "campaign_id",
    "channel",
    "content_id",
    "data",
];

/// Parses one event from JSON text.
pub fn parse_event(text: &str, context: &ParseContext) -> Result<Event> {
    parse_event_or(text, context, || context.fresh_event_id)
}

/// Parses one event from JSON text, calling `fresh` for its id only when the JSON has
/// neither `event_id` nor `message_id` (a bulk load derives that id from the line's bytes,
/// which costs a hash a line; `context.fresh_event_id` is not used).
pub fn parse_event_or(
    text: &str,
    context: &ParseContext,
    fresh: impl FnOnce() -> EventId,
) -> Result<Event> {
    let value: Json<'_> =
        serde_json::from_str(text).map_err(|error| EventJsonError::Syntax(error.to_string()))?;
    event_from_parsed(&value, context, fresh)
}

/// Validates and converts one JSON value into an event.
pub fn event_from_json(value: &Value, context: &ParseContext) -> Result<Event> {
    event_from_parsed(&Json::borrow(value), context, || context.fresh_event_id)
}

fn event_from_parsed(
    value: &Json<'_>,
    context: &ParseContext,
    fresh: impl FnOnce() -> EventId,
) -> Result<Event> {
    let object = Fields::root(value)?;
    object.only(ENVELOPE_KEYS)?;

    let kind_name = object.required_text("kind")?;
    let kind = Kind::from_name(kind_name).ok_or_else(|| {
        object.problem(
            "kind",
            format!("unknown event kind {kind_name:?} (see docs/events.md)"),
        )
    })?;
    let occurred_at = object.required_timestamp("occurred_at")?;
    if occurred_at.unix_millis()
        > context.recorded_at.unix_millis() + context.max_future_skew_millis
    {
        return Err(object.problem(
            "occurred_at",
            format!(
                "{} lies in the future (received at {})",
                occurred_at, context.recorded_at
            ),
        ));
    }
    // `recorded_at` is assigned on the way in; an exported value is checked but not kept.
    object.optional_timestamp("recorded_at")?;

    let source = parse_source(&object)?;
    let message_id = object.optional_str("message_id")?;
    let event_id = match (object.optional_uuid("event_id")?, &message_id) {
        (Some(uuid), _) => EventId::from_uuid(uuid),
        (None, Some(message_id)) => EventId::from_source_message(&source.0, message_id),
        (None, None) => fresh(),
    };
    let identity = Identity {
        anonymous_id: object.optional_str("anonymous_id")?,
        person_id: object.optional_str("person_id")?,
        account_id: object.optional_str("account_id")?,
    };
    let opportunity_id = object.optional_str("opportunity_id")?;
    let campaign = Campaign {
        campaign_id: object.optional_str("campaign_id")?,
        channel: object.optional_str("channel")?,
        content_id: object.optional_str("content_id")?,
    };
    let data = object.nested("data")?;
    let payload = parse_payload(kind, &data)?;
    check_identity(&object, kind, &identity, opportunity_id.as_deref())?;

    Ok(Event {
        event_id,
        occurred_at,
        recorded_at: context.recorded_at,
        source: Source {
            system: source.0,
            connector: source.1,
            message_id,
        },
        identity,
        opportunity_id,
        campaign,
        payload,
    })
}

fn parse_source(object: &Fields<'_>) -> Result<(String, Option<String>)> {
    match object.get("source") {
        None | Some(Json::Null) => Err(object.problem("source", "required, but missing".into())),
        Some(Json::String(_)) => Ok((object.required_str("source")?, None)),
        Some(Json::Object(_)) => {
            let source = object.nested("source")?;
            source.only(&["system", "connector"])?;
            Ok((
                source.required_str("system")?,
                source.optional_str("connector")?,
            ))
        }
        Some(other) => Err(object.problem(
            "source",
            format!(
                "expected a string or an object with `system`, got {}",
                describe(other)
            ),
        )),
    }
}

/// Which identity hints each family needs, so that every event can be tied to a journey.
fn check_identity(
    object: &Fields<'_>,
    kind: Kind,
    identity: &Identity,
    opportunity_id: Option<&str>,
) -> Result<()> {
    use crate::event::Family;
    let has_any = identity.anonymous_id.is_some()
        || identity.person_id.is_some()
        || identity.account_id.is_some();
    match kind.family() {
        Family::Touch if !has_any => Err(object.problem(
            "person_id",
            format!(
                "a {kind} event needs at least one of `anonymous_id`, `person_id`, `account_id`"
            ),
        )),
        Family::Action if kind == Kind::ProposalSent => {
            if identity.person_id.is_none() && opportunity_id.is_none() {
                return Err(object.problem(
                    "opportunity_id",
                    "a proposal_sent event needs `opportunity_id` or `person_id`".into(),
                ));
            }
            Ok(())
        }
        Family::Action if identity.person_id.is_none() => Err(object.problem(
            "person_id",
            format!("required for `{kind}` events, but missing"),
        )),
        Family::Crm if opportunity_id.is_none() => Err(object.problem(
            "opportunity_id",
            format!("required for `{kind}` events, but missing"),
        )),
        Family::Crm if kind == Kind::OpportunityCreated && identity.account_id.is_none() => {
            Err(object.problem(
                "account_id",
                "required for an opportunity_created event, but missing".into(),
            ))
        }
        Family::Identity if kind == Kind::AccountUpdated && identity.account_id.is_none() => {
            Err(object.problem(
                "account_id",
                "required for `account_updated` events, but missing".into(),
            ))
        }
        // The account is the unit of a contract; people carry advocacy.
        Family::Customer if kind != Kind::Advocated && identity.account_id.is_none() => Err(object
            .problem(
                "account_id",
                format!(
                    "required for `{kind}` events (a subscription is an account's), but missing"
                ),
            )),
        Family::Customer if kind == Kind::Advocated && identity.person_id.is_none() => Err(object
            .problem(
                "person_id",
                "required for `advocated` events (a person advocates), but missing".into(),
            )),
        Family::Identity if kind == Kind::PersonUpdated && identity.person_id.is_none() => {
            Err(object.problem(
                "person_id",
                "required for `person_updated` events, but missing".into(),
            ))
        }
        _ => Ok(()),
    }
}

fn parse_payload(kind: Kind, data: &Fields<'_>) -> Result<Payload> {
    let payload = match kind {
        Kind::ContentViewed => {
            data.only(&["url", "content_type", "title"])?;
            Payload::ContentViewed {
                url: data.required_str("url")?,
                content_type: data.required_enum(
                    "content_type",
                    ContentType::from_name,
                    names(ContentType::ALL, |v| v.as_str()),
                )?,
                title: data.optional_str("title")?,
            }
        }
        Kind::FormSubmitted => {
            data.only(&["form_id", "form_kind"])?;
            Payload::FormSubmitted {
                form_id: data.required_str("form_id")?,
                form_kind: data.required_enum(
                    "form_kind",
                    FormKind::from_name,
                    names(FormKind::ALL, |v| v.as_str()),
                )?,
            }
        }
        Kind::EmailSent => Payload::EmailSent {
            email_id: email_id(data)?,
        },
        Kind::EmailDelivered => Payload::EmailDelivered {
            email_id: email_id(data)?,
        },
        Kind::EmailOpened => Payload::EmailOpened {
            email_id: email_id(data)?,
        },
        Kind::EmailUnsubscribed => Payload::EmailUnsubscribed {
            email_id: email_id(data)?,
        },
        Kind::EmailClicked => {
            data.only(&["email_id", "link_url"])?;
            Payload::EmailClicked {
                email_id: data.required_str("email_id")?,
                link_url: data.optional_str("link_url")?,
            }
        }
        Kind::EmailBounced => {
            data.only(&["email_id", "hard"])?;
            Payload::EmailBounced {
                email_id: data.required_str("email_id")?,
                hard: data.optional_bool("hard")?.unwrap_or(false),
            }
        }
        Kind::SocialInteraction => {
            data.only(&["network", "action", "paid", "post_id"])?;
            Payload::SocialInteraction {
                network: data.required_str("network")?,
                action: data.required_enum(
                    "action",
                    SocialAction::from_name,
                    names(SocialAction::ALL, |v| v.as_str()),
                )?,
                paid: data.optional_bool("paid")?.unwrap_or(false),
                post_id: data.optional_str("post_id")?,
            }
        }
        Kind::AdClicked => {
            data.only(&["network", "ad_id"])?;
            Payload::AdClicked {
                network: data.required_str("network")?,
                ad_id: data.optional_str("ad_id")?,
            }
        }
        Kind::WebinarRegistered => {
            data.only(&["webinar_id"])?;
            Payload::WebinarRegistered {
                webinar_id: data.required_str("webinar_id")?,
            }
        }
        Kind::WebinarAttended => {
            data.only(&["webinar_id", "minutes"])?;
            Payload::WebinarAttended {
                webinar_id: data.required_str("webinar_id")?,
                minutes: data.optional_u32("minutes")?.unwrap_or(0),
            }
        }
        Kind::ExecutiveEventInvited => {
            data.only(&["exec_event_id"])?;
            Payload::ExecutiveEventInvited {
                exec_event_id: data.required_str("exec_event_id")?,
            }
        }
        Kind::ExecutiveEventAttended => {
            data.only(&["exec_event_id"])?;
            Payload::ExecutiveEventAttended {
                exec_event_id: data.required_str("exec_event_id")?,
            }
        }
        Kind::DemoRequested => {
            data.only(&["product"])?;
            Payload::DemoRequested {
                product: data.optional_str("product")?,
            }
        }
        Kind::ProposalViewed => {
            data.only(&["proposal_id"])?;
            Payload::ProposalViewed {
                proposal_id: data.required_str("proposal_id")?,
            }
        }
        Kind::NpsResponded => {
            data.only(&["score", "comment"])?;
            let score = data.required_u32("score")?;
            if score > 10 {
                return Err(data.problem("score", format!("must be between 0 and 10, got {score}")));
            }
            Payload::NpsResponded {
                score: u8::try_from(score).expect("invariant: checked to be at most 10"),
                comment: data.optional_str("comment")?,
            }
        }
        Kind::ProductUsageSummarized => {
            data.only(&["period_days", "active_users"])?;
            Payload::ProductUsageSummarized {
                period_days: data.required_u32("period_days")?,
                active_users: data.required_u32("active_users")?,
            }
        }
        Kind::CustomTouch => {
            data.only(&["name"])?;
            Payload::CustomTouch {
                name: data.required_str("name")?,
            }
        }
        Kind::LeadAssigned => {
            data.only(&["owner"])?;
            Payload::LeadAssigned {
                owner: data.required_str("owner")?,
            }
        }
        Kind::LeadAccepted => {
            data.only(&["owner"])?;
            Payload::LeadAccepted {
                owner: data.required_str("owner")?,
            }
        }
        Kind::LeadRejected => {
            data.only(&["owner", "reason"])?;
            Payload::LeadRejected {
                owner: data.optional_str("owner")?,
                reason: data.required_str("reason")?,
            }
        }
        Kind::LeadRecycled => {
            data.only(&["reason"])?;
            Payload::LeadRecycled {
                reason: data.required_str("reason")?,
            }
        }
        Kind::LeadDisqualified => {
            data.only(&["reason"])?;
            Payload::LeadDisqualified {
                reason: data.required_str("reason")?,
            }
        }
        Kind::SalesActivity => {
            data.only(&["owner", "activity"])?;
            Payload::SalesActivity {
                owner: data.required_str("owner")?,
                activity: data.required_enum(
                    "activity",
                    ActivityKind::from_name,
                    names(ActivityKind::ALL, |v| v.as_str()),
                )?,
            }
        }
        Kind::MeetingHeld => {
            data.only(&["owner", "need_declared"])?;
            Payload::MeetingHeld {
                owner: data.optional_str("owner")?,
                need_declared: data
                    .optional_bool("need_declared")?
                    .ok_or_else(|| data.problem("need_declared", "required, but missing".into()))?,
            }
        }
        Kind::ProposalSent => {
            data.only(&["proposal_id", "amount", "currency"])?;
            Payload::ProposalSent {
                proposal_id: data.required_str("proposal_id")?,
                amount: data.required_money()?,
            }
        }
        Kind::NurtureEnrolled => {
            data.only(&["track_id"])?;
            Payload::NurtureEnrolled {
                track_id: data.required_str("track_id")?,
            }
        }
        Kind::NurtureExited => {
            data.only(&["track_id"])?;
            Payload::NurtureExited {
                track_id: data.required_str("track_id")?,
            }
        }
        Kind::OpportunityCreated => {
            data.only(&["amount", "currency", "stage"])?;
            let amount = match data.get("amount") {
                None | Some(Json::Null) => None,
                Some(_) => Some(data.required_money()?),
            };
            Payload::OpportunityCreated {
                amount,
                stage: data.optional_str("stage")?,
            }
        }
        Kind::OpportunityStageChanged => {
            data.only(&["from", "to"])?;
            Payload::OpportunityStageChanged {
                from: data.optional_str("from")?,
                to: data.required_str("to")?,
            }
        }
        Kind::OpportunityAmountChanged => {
            data.only(&["amount", "currency"])?;
            Payload::OpportunityAmountChanged {
                amount: data.required_money()?,
            }
        }
        Kind::OpportunityClosedWon => {
            data.only(&["amount", "currency"])?;
            Payload::OpportunityClosedWon {
                amount: data.required_money()?,
            }
        }
        Kind::OpportunityClosedLost => {
            data.only(&["reason"])?;
            Payload::OpportunityClosedLost {
                reason: data.required_str("reason")?,
            }
        }
        Kind::Identified => {
            data.only(&["anonymous_id", "person_id"])?;
            Payload::Identified {
                anonymous_id: data.required_str("anonymous_id")?,
                person_id: data.required_str("person_id")?,
            }
        }
        Kind::LinkedToAccount => {
            data.only(&["person_id", "account_id"])?;
            Payload::LinkedToAccount {
                person_id: data.required_str("person_id")?,
                account_id: data.required_str("account_id")?,
            }
        }
        Kind::Merged => {
            data.only(&["from_person_id", "into_person_id"])?;
            Payload::Merged {
                from_person_id: data.required_str("from_person_id")?,
                into_person_id: data.required_str("into_person_id")?,
            }
        }
        Kind::AccountUpdated => {
            data.only(&["name", "domain", "industry", "employees", "region"])?;
            Payload::AccountUpdated {
                name: data.optional_str("name")?,
                domain: data.optional_str("domain")?,
                industry: data.optional_str("industry")?,
                employees: data.optional_u32("employees")?,
                region: data.optional_str("region")?,
            }
        }
        Kind::PersonUpdated => {
            data.only(&["title", "seniority", "department", "country"])?;
            Payload::PersonUpdated {
                title: data.optional_str("title")?,
                seniority: data.optional_str("seniority")?,
                department: data.optional_str("department")?,
                country: data.optional_str("country")?,
            }
        }
        Kind::Retracted => {
            data.only(&["target", "reason"])?;
            Payload::Retracted {
                target: EventId::from_uuid(data.required_uuid("target")?),
                reason: data.required_str("reason")?,
            }
        }
        Kind::SubscriptionStarted => {
            data.only(&[
                "subscription_id",
                "amount",
                "currency",
                "term_months",
                "plan",
            ])?;
            Payload::SubscriptionStarted {
                subscription_id: data.required_str("subscription_id")?,
                amount: data.required_money()?,
                term_months: term_months(data)?,
                plan: data.optional_str("plan")?,
            }
        }
        Kind::SubscriptionRenewed => {
            data.only(&["subscription_id", "amount", "currency", "term_months"])?;
            Payload::SubscriptionRenewed {
                subscription_id: data.required_str("subscription_id")?,
                amount: data.required_money()?,
                term_months: term_months(data)?,
            }
        }
        Kind::SubscriptionExpanded => {
            data.only(&["subscription_id", "amount", "currency", "motion", "plan"])?;
            Payload::SubscriptionExpanded {
                subscription_id: data.required_str("subscription_id")?,
                amount: data.required_money()?,
                motion: data.required_enum(
                    "motion",
                    ExpansionMotion::from_name,
                    names(ExpansionMotion::ALL, |v| v.as_str()),
                )?,
                plan: data.optional_str("plan")?,
            }
        }
        Kind::SubscriptionContracted => {
            data.only(&["subscription_id", "amount", "currency", "reason"])?;
            Payload::SubscriptionContracted {
                subscription_id: data.required_str("subscription_id")?,
                amount: data.required_money()?,
                reason: data.optional_str("reason")?,
            }
        }
        Kind::SubscriptionChurned => {
            data.only(&["subscription_id", "reason"])?;
            Payload::SubscriptionChurned {
                subscription_id: data.required_str("subscription_id")?,
                reason: data.required_str("reason")?,
            }
        }
        Kind::Advocated => {
            data.only(&["act", "referred_account_id", "channel"])?;
            let act = data.required_enum(
                "act",
                AdvocacyAct::from_name,
                names(AdvocacyAct::ALL, |v| v.as_str()),
            )?;
            let referred_account_id = data.optional_str("referred_account_id")?;
            if referred_account_id.is_some() && act != AdvocacyAct::Referral {
                return Err(data.problem(
                    "referred_account_id",
                    format!(
                        "only a referral names a referred account, and this act is {}",
                        act.as_str()
                    ),
                ));
            }
            Payload::Advocated {
                act,
                referred_account_id,
                channel: data.optional_str("channel")?,
            }
        }
        Kind::Corrected => {
            data.only(&["target", "reason", "occurred_at", "replacement"])?;
            let replacement = match data.get("replacement") {
                None | Some(Json::Null) => None,
                Some(_) => {
                    let replacement = data.nested("replacement")?;
                    replacement.only(&["kind", "data"])?;
                    let name = replacement.required_text("kind")?;
                    let kind = Kind::from_name(name).ok_or_else(|| {
                        replacement.problem("kind", format!("unknown event kind {name:?}"))
                    })?;
                    if matches!(kind, Kind::Retracted | Kind::Corrected) {
                        return Err(replacement.problem(
                            "kind",
                            format!("a correction cannot replace a fact with a {kind} event"),
                        ));
                    }
                    let inner = replacement.nested("data")?;
                    Some(Box::new(parse_payload(kind, &inner)?))
                }
            };
            let occurred_at = data.optional_timestamp("occurred_at")?;
            if occurred_at.is_none() && replacement.is_none() {
                return Err(data.problem(
                    "replacement",
                    "a correction needs `occurred_at`, `replacement` or both".into(),
                ));
            }
            Payload::Corrected {
                target: EventId::from_uuid(data.required_uuid("target")?),
                reason: data.required_str("reason")?,
                occurred_at,
                replacement,
            }
        }
    };
    Ok(payload)
}

fn email_id(data: &Fields<'_>) -> Result<String> {
    data.only(&["email_id"])?;
    data.required_str("email_id")
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|value| name(*value)).collect()
}

/// A subscription's term: whole months, 1 to 120.
fn term_months(data: &Fields<'_>) -> Result<u32> {
    let months = data.required_u32("term_months")?;
    if !(1..=120).contains(&months) {
        return Err(data.problem(
            "term_months",
            format!("must be between 1 and 120 (months), got {months}"),
        ));
    }
    Ok(months)
}

fn describe(value: &Json<'_>) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("{:?}", truncate(s)),
        Json::Array => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

fn truncate(text: &str) -> String {
    const SHOWN: usize = 60;
    if text.chars().count() <= SHOWN {
        text.to_owned()
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head}…")
    }
}

/// A JSON object being read, with the path that leads to it for error messages.
struct Fields<'a> {
    entries: &'a [Entry<'a>],
    path: String,
}

impl<'a> Fields<'a> {
    fn root(value: &'a Json<'a>) -> Result<Self> {
        match value {
            Json::Object(entries) => Ok(Fields {
                entries,
                path: String::new(),
            }),
            other => Err(EventJsonError::Field {
                field: "(event)".into(),
                problem: format!("expected a JSON object, got {}", describe(other)),
            }),
        }
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn problem(&self, key: &str, problem: String) -> EventJsonError {
        EventJsonError::Field {
            field: self.path_of(key),
            problem,
        }
    }

    /// The value of `key`; of a repeated key, the last one (as `serde_json::Value` keeps it).
    fn get(&self, key: &str) -> Option<&'a Json<'a>> {
        self.entries
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Refuses keys outside `allowed`, so that a misspelt field is an error, not a silent loss.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        match self
            .entries
            .iter()
            .map(|(key, _)| key)
            .find(|key| !allowed.contains(&key.as_ref()))
        {
            None => Ok(()),
            Some(key) => Err(self.problem(
                key,
                format!("unknown field; expected one of {}", allowed.join(", ")),
            )),
        }
    }

    /// A nested object; a missing or null one reads as empty.
    fn nested(&self, key: &str) -> Result<Fields<'a>> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(Fields {
                entries: &[],
                path: self.path_of(key),
            }),
            Some(Json::Object(entries)) => Ok(Fields {
                entries,
                path: self.path_of(key),
            }),
            Some(other) => {
                Err(self.problem(key, format!("expected an object, got {}", describe(other))))
            }
        }
    }

    /// A string field, checked (not empty, not too long) but not copied.
    fn optional_text(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(text)) if text.trim().is_empty() => {
                Err(self.problem(key, "must not be empty".into()))
            }
            // A string has at least as many bytes as characters: count only long ones.
            Some(Json::String(text))
                if text.len() > MAX_STRING_CHARS && text.chars().count() > MAX_STRING_CHARS =>
            {
                Err(self.problem(key, format!("longer than {MAX_STRING_CHARS} characters")))
            }
            Some(Json::String(text)) => Ok(Some(text)),
            Some(other) => {
                Err(self.problem(key, format!("expected a string, got {}", describe(other))))
            }
        }
    }

    fn required_text(&self, key: &str) -> Result<&'a str> {
        self.optional_text(key)?
            .ok_or_else(|| self.problem(key, "required, but missing".into()))
    }

    fn optional_str(&self, key: &str) -> Result<Option<String>> {
        Ok(self.optional_text(key)?.map(str::to_owned))
    }

    fn required_str(&self, key: &str) -> Result<String> {
        self.required_text(key).map(str::to_owned)
    }

    fn optional_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.problem(
                key,
                format!("expected true or false, got {}", describe(other)),
            )),
        }
    }

    fn optional_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.problem(key, format!("expected a whole number ≥ 0, got {n}"))),
            Some(other) => Err(self.problem(
                key,
                format!("expected a whole number, got {}", describe(other)),
            )),
        }
    }

    fn required_u32(&self, key: &str) -> Result<u32> {
        self.optional_u32(key)?
            .ok_or_else(|| self.problem(key, "required, but missing".into()))
    }

    fn required_enum<T>(
        &self,
        key: &str,
        parse: fn(&str) -> Option<T>,
        allowed: Vec<&'static str>,
    ) -> Result<T> {
        let text = self.required_text(key)?;
        parse(text).ok_or_else(|| {
            self.problem(
                key,
                format!(
                    "unknown value {text:?}; expected one of {}",
                    allowed.join(", ")
                ),
            )
        })
    }

    fn optional_timestamp(&self, key: &str) -> Result<Option<Timestamp>> {
        match self.optional_text(key)? {
            None => Ok(None),
            Some(text) => Timestamp::parse_rfc3339(text)
                .map(Some)
                .map_err(|error| self.problem(key, error.to_string())),
        }
    }

    fn required_timestamp(&self, key: &str) -> Result<Timestamp> {
        self.optional_timestamp(key)?
            .ok_or_else(|| self.problem(key, "required, but missing".into()))
    }

    fn optional_uuid(&self, key: &str) -> Result<Option<Uuid>> {
        match self.optional_text(key)? {
            None => Ok(None),
            Some(text) => Uuid::parse_str(text)
                .map(Some)
                .map_err(|_| self.problem(key, format!("not a UUID: {:?}", truncate(text)))),
        }
    }

    fn required_uuid(&self, key: &str) -> Result<Uuid> {
        self.optional_uuid(key)?
            .ok_or_else(|| self.problem(key, "required, but missing".into()))
    }

    /// `currency` (three capital letters) and `amount` (a number or a decimal string, not
    /// negative, with at most the currency's decimals: two for USD, none for JPY, three for
    /// KWD), as minor units of that currency.
    fn required_money(&self) -> Result<Money> {
        let currency = self.required_text("currency")?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(self.problem(
                "currency",
                format!("expected an ISO 4217 code such as \"USD\", got {currency:?}"),
            ));
        }
        let minor_units = match self.get("amount") {
            None | Some(Json::Null) => {
                return Err(self.problem("amount", "required, but missing".into()));
            }
            Some(Json::Number(n)) => currency::parse_decimal(&n.to_string(), currency),
            Some(Json::String(s)) => currency::parse_decimal(s, currency),
            Some(other) => {
                return Err(self.problem(
                    "amount",
                    format!("expected a number, got {}", describe(other)),
                ));
            }
        }
        .map_err(|problem| self.problem("amount", problem))?;
        Ok(Money {
            minor_units,
            currency: currency.to_owned(),
        })
    }
}

fn money_text(money: &Money) -> String {
    currency::decimal_amount(money.minor_units, &money.currency)
}

/// Renders an event in the documented JSON form; [`event_from_json`] reads it back unchanged
/// (except `recorded_at`, which the reader assigns).
pub fn event_to_json(event: &Event) -> Value {
    let mut object = Map::new();
    object.insert("event_id".into(), json!(event.event_id.to_string()));
    insert_opt(&mut object, "message_id", &event.source.message_id);
    object.insert("kind".into(), json!(event.kind().name()));
    object.insert("occurred_at".into(), json!(event.occurred_at.to_rfc3339()));
    object.insert("recorded_at".into(), json!(event.recorded_at.to_rfc3339()));
    let mut source = Map::new();
    source.insert("system".into(), json!(event.source.system));
    insert_opt(&mut source, "connector", &event.source.connector);
    object.insert("source".into(), Value::Object(source));
    insert_opt(&mut object, "anonymous_id", &event.identity.anonymous_id);
    insert_opt(&mut object, "person_id", &event.identity.person_id);
    insert_opt(&mut object, "account_id", &event.identity.account_id);
    insert_opt(&mut object, "opportunity_id", &event.opportunity_id);
    insert_opt(&mut object, "campaign_id", &event.campaign.campaign_id);
    insert_opt(&mut object, "channel", &event.campaign.channel);
    insert_opt(&mut object, "content_id", &event.campaign.content_id);
    object.insert("data".into(), payload_to_json(&event.payload));
    Value::Object(object)
}

fn insert_opt(object: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        object.insert(key.into(), json!(value));
    }
}

fn payload_to_json(payload: &Payload) -> Value {
    let mut data = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            data.insert(key.to_owned(), value);
        }
    };
    let money = |key_amount: &str, money: &Money, put: &mut dyn FnMut(&str, Value)| {
        put(key_amount, json!(money_text(money)));
        put("currency", json!(money.currency));
    };
    match payload {
        Payload::ContentViewed {
            url,
            content_type,
            title,
        } => {
            put("url", json!(url));
            put("content_type", json!(content_type.as_str()));
            put("title", json!(title));
        }
        Payload::FormSubmitted { form_id, form_kind } => {
            put("form_id", json!(form_id));
            put("form_kind", json!(form_kind.as_str()));
        }
        Payload::EmailSent { email_id }
        | Payload::EmailDelivered { email_id }
        | Payload::EmailOpened { email_id }
        | Payload::EmailUnsubscribed { email_id } => put("email_id", json!(email_id)),
        Payload::EmailClicked { email_id, link_url } => {
            put("email_id", json!(email_id));
            put("link_url", json!(link_url));
        }
        Payload::EmailBounced { email_id, hard } => {
            put("email_id", json!(email_id));
            put("hard", json!(hard));
        }
        Payload::SocialInteraction {
            network,
            action,
            paid,
            post_id,
        } => {
            put("network", json!(network));
            put("action", json!(action.as_str()));
            put("paid", json!(paid));
            put("post_id", json!(post_id));
        }
        Payload::AdClicked { network, ad_id } => {
            put("network", json!(network));
            put("ad_id", json!(ad_id));
        }
        Payload::WebinarRegistered { webinar_id } => put("webinar_id", json!(webinar_id)),
        Payload::WebinarAttended {
            webinar_id,
            minutes,
        } => {
            put("webinar_id", json!(webinar_id));
            put("minutes", json!(minutes));
        }
        Payload::ExecutiveEventInvited { exec_event_id }
        | Payload::ExecutiveEventAttended { exec_event_id } => {
            put("exec_event_id", json!(exec_event_id));
        }
        Payload::DemoRequested { product } => put("product", json!(product)),
        Payload::ProposalViewed { proposal_id } => put("proposal_id", json!(proposal_id)),
        Payload::NpsResponded { score, comment } => {
            put("score", json!(score));
            put("comment", json!(comment));
        }
        Payload::ProductUsageSummarized {
            period_days,
            active_users,
        } => {
            put("period_days", json!(period_days));
            put("active_users", json!(active_users));
        }
        Payload::CustomTouch { name } => put("name", json!(name)),
        Payload::LeadAssigned { owner } | Payload::LeadAccepted { owner } => {
            put("owner", json!(owner));
        }
        Payload::LeadRejected { owner, reason } => {
            put("owner", json!(owner));
            put("reason", json!(reason));
        }
        Payload::LeadRecycled { reason }
        | Payload::LeadDisqualified { reason }
        | Payload::OpportunityClosedLost { reason } => put("reason", json!(reason)),
        Payload::SalesActivity { owner, activity } => {
            put("owner", json!(owner));
            put("activity", json!(activity.as_str()));
        }
        Payload::MeetingHeld {
            owner,
            need_declared,
        } => {
            put("owner", json!(owner));
            put("need_declared", json!(need_declared));
        }
        Payload::ProposalSent {
            proposal_id,
            amount,
        } => {
            put("proposal_id", json!(proposal_id));
            money("amount", amount, &mut put);
        }
        Payload::NurtureEnrolled { track_id } | Payload::NurtureExited { track_id } => {
            put("track_id", json!(track_id));
        }
        Payload::OpportunityCreated { amount, stage } => {
            if let Some(amount) = amount {
                money("amount", amount, &mut put);
            }
            put("stage", json!(stage));
        }
        Payload::OpportunityStageChanged { from, to } => {
            put("from", json!(from));
            put("to", json!(to));
        }
        Payload::OpportunityAmountChanged { amount } | Payload::OpportunityClosedWon { amount } => {
            money("amount", amount, &mut put);
        }
        Payload::Identified {
            anonymous_id,
            person_id,
        } => {
            put("anonymous_id", json!(anonymous_id));
            put("person_id", json!(person_id));
        }
        Payload::LinkedToAccount {
            person_id,
            account_id,
        } => {
            put("person_id", json!(person_id));
            put("account_id", json!(account_id));
        }
        Payload::Merged {
            from_person_id,
            into_person_id,
        } => {
            put("from_person_id", json!(from_person_id));
            put("into_person_id", json!(into_person_id));
        }
        Payload::AccountUpdated {
            name,
            domain,
            industry,
            employees,
            region,
        } => {
            put("name", json!(name));
            put("domain", json!(domain));
            put("industry", json!(industry));
            put("employees", json!(employees));
            put("region", json!(region));
        }
        Payload::PersonUpdated {
            title,
            seniority,
            department,
            country,
        } => {
            put("title", json!(title));
            put("seniority", json!(seniority));
            put("department", json!(department));
            put("country", json!(country));
        }
        Payload::Retracted { target, reason } => {
            put("target", json!(target.to_string()));
            put("reason", json!(reason));
        }
        Payload::Corrected {
            target,
            reason,
            occurred_at,
            replacement,
        } => {
            put("target", json!(target.to_string()));
            put("reason", json!(reason));
            put("occurred_at", json!(occurred_at.map(Timestamp::to_rfc3339)));
            if let Some(replacement) = replacement {
                put(
                    "replacement",
                    json!({"kind": replacement.kind().name(), "data": payload_to_json(replacement)}),
                );
            }
        }
        Payload::SubscriptionStarted {
            subscription_id,
            amount,
            term_months,
            plan,
        } => {
            put("subscription_id", json!(subscription_id));
            money("amount", amount, &mut put);
            put("term_months", json!(term_months));
            put("plan", json!(plan));
        }
        Payload::SubscriptionRenewed {
            subscription_id,
            amount,
            term_months,
        } => {
            put("subscription_id", json!(subscription_id));
            money("amount", amount, &mut put);
            put("term_months", json!(term_months));
        }
        Payload::SubscriptionExpanded {
            subscription_id,
            amount,
            motion,
            plan,
        } => {
            put("subscription_id", json!(subscription_id));
            money("amount", amount, &mut put);
            put("motion", json!(motion.as_str()));
            put("plan", json!(plan));
        }
        Payload::SubscriptionContracted {
            subscription_id,
            amount,
            reason,
        } => {
            put("subscription_id", json!(subscription_id));
            money("amount", amount, &mut put);
            put("reason", json!(reason));
        }
        Payload::SubscriptionChurned {
            subscription_id,
            reason,
        } => {
            put("subscription_id", json!(subscription_id));
            put("reason", json!(reason));
        }
        Payload::Advocated {
            act,
            referred_account_id,
            channel,
        } => {
            put("act", json!(act.as_str()));
            put("referred_account_id", json!(referred_account_id));
            put("channel", json!(channel));
        }
    }
    Value::Object(data)
}
