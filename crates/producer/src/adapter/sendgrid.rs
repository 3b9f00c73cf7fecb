//! SendGrid's Event Webhook: one JSON array of delivery and engagement events per request.
//!
//! `sg_event_id` is the message id, so SendGrid's redeliveries are stored once. The person is
//! the recipient's address (lowercased) unless the send carried a `person_id` custom argument;
//! custom arguments `anonymous_id`, `account_id` and `email_id` are honoured the same way.
//! Events with no email kind in Baton (`dropped`, `deferred`, `group_resubscribe`) are
//! answered `ignored` with the reason, not stored.

use super::{Draft, Drafts, Problem, describe, text_of};
use baton_core::{Kind, Timestamp};
use serde_json::{Map, Value};

pub(super) fn translate(item: &Value) -> Result<Drafts, Problem> {
    let Value::Object(event) = item else {
        return Err(Problem::new(
            "(item)",
            format!(
                "expected a SendGrid event (a JSON object), got {}",
                describe(item)
            ),
        ));
    };
    let name = text_of(event.get("event"))
        .ok_or_else(|| Problem::new("event", "required, but missing"))?;
    let kind = match name.as_str() {
        "processed" => Kind::EmailSent,
        "delivered" => Kind::EmailDelivered,
        "open" => Kind::EmailOpened,
        "click" => Kind::EmailClicked,
        "bounce" | "blocked" => Kind::EmailBounced,
        // A spam report suppresses the address like an unsubscribe does.
        "unsubscribe" | "group_unsubscribe" | "spamreport" => Kind::EmailUnsubscribed,
        "dropped" => {
            return Ok(Drafts::Ignored(
                "`dropped`: SendGrid never sent the email, so there is no touch to record".into(),
            ));
        }
        "deferred" => {
            return Ok(Drafts::Ignored(
                "`deferred`: a temporary delay; the `delivered` or `bounce` that follows is recorded"
                    .into(),
            ));
        }
        "group_resubscribe" => {
            return Ok(Drafts::Ignored(
                "`group_resubscribe`: Baton has no resubscribe kind".into(),
            ));
        }
        other => {
            return Err(Problem::new(
                "event",
                format!("unknown SendGrid event type {other:?}"),
            ));
        }
    };
    let occurred_at = match event.get("timestamp") {
        Some(Value::Number(number)) => {
            let seconds = number.as_i64().ok_or_else(|| {
                Problem::new(
                    "timestamp",
                    format!("expected whole Unix seconds, got {number}"),
                )
            })?;
            Timestamp::try_from_unix_seconds(seconds)
                .map_err(|error| Problem::new("timestamp", error.to_string()))?
        }
        Some(other) => {
            return Err(Problem::new(
                "timestamp",
                format!("expected Unix seconds (a number), got {}", describe(other)),
            ));
        }
        None => return Err(Problem::new("timestamp", "required, but missing")),
    };
    let email = text_of(event.get("email"))
        .ok_or_else(|| Problem::new("email", "required, but missing"))?;
    let message_id = text_of(event.get("sg_event_id")).ok_or_else(|| {
        Problem::new(
            "sg_event_id",
            "required, but missing (Baton derives the event id from it)",
        )
    })?;
    let campaign_id =
        text_of(event.get("singlesend_id")).or_else(|| text_of(event.get("marketing_campaign_id")));
    let email_id = text_of(event.get("email_id"))
        .or_else(|| campaign_id.clone())
        .or_else(|| category(event))
        .or_else(|| {
            // The part before the first dot names the send, the rest the recipient.
            text_of(event.get("sg_message_id"))
                .map(|id| id.split('.').next().unwrap_or(&id).to_owned())
        })
        .ok_or_else(|| {
            Problem::new(
                "sg_message_id",
                "cannot tell which email this is: no `email_id` custom argument, campaign, \
                 category or `sg_message_id`",
            )
        })?;

    let mut draft = Draft::new(kind.name(), occurred_at);
    draft.source("sendgrid", Some("event-webhook"));
    draft.set("message_id", Some(message_id));
    draft.set("anonymous_id", text_of(event.get("anonymous_id")));
    draft.set(
        "person_id",
        Some(text_of(event.get("person_id")).unwrap_or_else(|| email.trim().to_lowercase())),
    );
    draft.set("account_id", text_of(event.get("account_id")));
    draft.set("campaign_id", campaign_id);
    draft.set("channel", Some("email".into()));
    draft.data("email_id", Value::String(email_id));
    match kind {
        Kind::EmailClicked => {
            if let Some(url) = text_of(event.get("url")) {
                draft.data("link_url", Value::String(url));
            }
        }
        Kind::EmailBounced => {
            // `bounce` is a hard bounce; `blocked` (and a bounce event with type `blocked`)
            // is a soft one the next send may pass.
            let hard =
                name == "bounce" && event.get("type").and_then(Value::as_str) != Some("blocked");
            draft.data("hard", Value::Bool(hard));
        }
        _ => {}
    }
    Ok(Drafts::Events(vec![draft.build()]))
}

/// SendGrid's `category` is a string or an array of strings; the first names the email.
fn category(event: &Map<String, Value>) -> Option<String> {
    match event.get("category")? {
        Value::Array(items) => text_of(items.first()),
        other => text_of(Some(other)),
    }
}
