//! The JSON edge form: round trips, event ids, and errors that name the field.

use baton_core::example::one_of_each_kind;
use baton_core::{
    EventId, EventJsonError, Kind, ParseContext, Payload, Timestamp, event_from_json,
    event_to_json, parse_event,
};
use serde_json::json;
use uuid::Uuid;

fn context() -> ParseContext {
    ParseContext {
        recorded_at: Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").expect("valid"),
        fresh_event_id: EventId::from_uuid(Uuid::from_u128(7)),
        max_future_skew_millis: ParseContext::DEFAULT_MAX_FUTURE_SKEW_MILLIS,
    }
}

#[test]
fn every_kind_round_trips_through_json() {
    for mut event in one_of_each_kind() {
        let text = event_to_json(&event).to_string();
        let parsed = parse_event(&text, &context()).unwrap_or_else(|e| panic!("{text}: {e}"));
        event.recorded_at = context().recorded_at;
        assert_eq!(parsed, event, "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(event_from_json(&value, &context()), Ok(parsed), "{text}");
    }
}

#[test]
fn escaped_strings_and_repeated_keys_read_as_serde_json_reads_them() {
    // Escapes cannot be borrowed from the text; a repeated key counts with its last value.
    let text = r#"{"kind":"content_viewed","occurred_at":"2026-05-01T10:00:00Z","source":"w\u0065b",
        "anonymous_id":"first","anonymous_id":"a\"n\non",
        "data":{"url":"https://example.com/\u00e9","content_type":"blog"}}"#;
    let event = parse_event(text, &context()).expect("valid");
    assert_eq!(event.source.system, "web");
    assert_eq!(event.identity.anonymous_id.as_deref(), Some("a\"n\non"));
    let value: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    assert_eq!(event_from_json(&value, &context()), Ok(event));
}

fn minimal() -> serde_json::Value {
    json!({
        "kind": "content_viewed",
        "occurred_at": "2026-05-01T10:00:00Z",
        "source": "web",
        "anonymous_id": "anon-1",
        "data": {"url": "https://example.com/pricing", "content_type": "pricing"}
    })
}

#[test]
fn event_id_is_kept_derived_or_fresh() {
    let mut value = minimal();
    let fresh = parse_event(&value.to_string(), &context()).expect("valid");
    assert_eq!(fresh.event_id, context().fresh_event_id);

    value["message_id"] = json!("m-17");
    let derived = parse_event(&value.to_string(), &context()).expect("valid");
    assert_eq!(
        derived.event_id,
        EventId::from_source_message("web", "m-17")
    );
    let mut other_context = context();
    other_context.fresh_event_id = EventId::from_uuid(Uuid::from_u128(8));
    let again = parse_event(&value.to_string(), &other_context).expect("valid");
    assert_eq!(
        again.event_id, derived.event_id,
        "same source + message id, same event id"
    );

    let supplied = "0195f3a0-0000-7000-8000-00000000abcd";
    value["event_id"] = json!(supplied);
    let kept = parse_event(&value.to_string(), &context()).expect("valid");
    assert_eq!(kept.event_id.to_string(), supplied);
}

#[test]
fn source_may_be_an_object() {
    let mut value = minimal();
    value["source"] = json!({"system": "web", "connector": "analytics.js"});
    let event = parse_event(&value.to_string(), &context()).expect("valid");
    assert_eq!(event.source.connector.as_deref(), Some("analytics.js"));
}

#[test]
fn money_accepts_numbers_and_decimal_strings() {
    for (amount, currency, minor) in [
        (json!(48000), "EUR", 4_800_000),
        (json!(48000.5), "EUR", 4_800_050),
        (json!("12.05"), "EUR", 1205),
        // Minor units follow the currency: yen have no decimals, Kuwaiti dinars three.
        (json!(5000), "JPY", 5000),
        (json!("5000.00"), "JPY", 5000),
        (json!("1.234"), "KWD", 1234),
    ] {
        let value = json!({
            "kind": "opportunity_closed_won", "occurred_at": "2026-05-01T10:00:00Z",
            "source": "salesforce", "opportunity_id": "o-1",
            "data": {"amount": amount, "currency": currency}
        });
        let event = parse_event(&value.to_string(), &context()).expect("valid");
        match &event.payload {
            Payload::OpportunityClosedWon { amount } => {
                assert_eq!(amount.minor_units, minor);
                assert_eq!(amount.currency, currency);
            }
            other => panic!("{other:?}"),
        }
        // Rendered back with the currency's own decimals.
        let rendered = event_to_json(&event);
        let back = parse_event(&rendered.to_string(), &context()).expect("valid");
        assert_eq!(back.payload, event.payload, "{rendered}");
    }
}

/// Applies `change` to a valid event and expects an error on `field` mentioning `fragment`.
fn assert_refused(change: impl FnOnce(&mut serde_json::Value), field: &str, fragment: &str) {
    let mut value = minimal();
    change(&mut value);
    let error = parse_event(&value.to_string(), &context()).expect_err("must be refused");
    // Text and an already parsed value go through the same validator.
    assert_eq!(event_from_json(&value, &context()), Err(error.clone()));
    assert_eq!(error.field(), Some(field), "{error}");
    assert!(
        error.to_string().contains(fragment),
        "{error} lacks {fragment:?}"
    );
}

#[test]
fn errors_name_the_field_and_the_problem() {
    assert_refused(
        |v| v["occurred_at"] = json!("yesterday"),
        "occurred_at",
        "not an RFC 3339 timestamp: \"yesterday\"",
    );
    assert_refused(
        |v| v["occurred_at"] = json!("2026-06-05T00:00:00Z"),
        "occurred_at",
        "in the future",
    );
    assert_refused(
        |v| v["kind"] = json!("page_view"),
        "kind",
        "unknown event kind \"page_view\"",
    );
    assert_refused(
        |v| {
            v.as_object_mut().expect("object").remove("kind");
        },
        "kind",
        "required",
    );
    assert_refused(
        |v| v["occured_at"] = json!("2026-05-01T10:00:00Z"),
        "occured_at",
        "unknown field",
    );
    assert_refused(
        |v| v["data"]["content_type"] = json!("podcast"),
        "data.content_type",
        "expected one of blog",
    );
    assert_refused(
        |v| v["data"]["url"] = json!(5),
        "data.url",
        "expected a string, got 5",
    );
    assert_refused(
        |v| {
            v.as_object_mut().expect("object").remove("anonymous_id");
        },
        "person_id",
        "at least one of",
    );
    assert_refused(
        |v| v["source"] = json!(true),
        "source",
        "expected a string or an object",
    );
    assert_refused(|v| v["event_id"] = json!("nope"), "event_id", "not a UUID");
    assert_refused(
        |v| v["person_id"] = json!(""),
        "person_id",
        "must not be empty",
    );
    assert_refused(
        |v| {
            v["kind"] = json!("proposal_sent");
            v["person_id"] = json!("p");
            v["data"] = json!({"proposal_id": "x", "amount": "12.345", "currency": "USD"});
        },
        "data.amount",
        "more than 2 decimals for USD",
    );
    assert_refused(
        |v| {
            v["kind"] = json!("proposal_sent");
            v["person_id"] = json!("p");
            v["data"] = json!({"proposal_id": "x", "amount": "5000.5", "currency": "JPY"});
        },
        "data.amount",
        "JPY has no decimals",
    );
    assert_refused(
        |v| {
            v["kind"] = json!("opportunity_closed_won");
            v["data"] = json!({"amount": 5, "currency": "USD"});
        },
        "opportunity_id",
        "required for `opportunity_closed_won` events",
    );
    assert_refused(
        |v| {
            v["kind"] = json!("nps_responded");
            v["data"] = json!({"score": 11});
        },
        "data.score",
        "between 0 and 10",
    );
}

#[test]
fn syntax_errors_are_reported_as_such() {
    let error = parse_event("{\"kind\": ", &context()).expect_err("broken");
    assert!(matches!(error, EventJsonError::Syntax(_)));
    let error = parse_event("[1,2]", &context()).expect_err("not an object");
    assert!(
        error.to_string().contains("expected a JSON object"),
        "{error}"
    );
}

#[test]
fn docs_examples_parse_and_cover_every_kind() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md"))
            .expect("docs/events.md exists");
    let mut seen = std::collections::HashSet::new();
    for block in docs.split("```json").skip(1) {
        let body = block.split("```").next().expect("closed block");
        let event = parse_event(body.trim(), &context()).unwrap_or_else(|e| panic!("{body}: {e}"));
        seen.insert(event.kind());
    }
    for kind in Kind::ALL {
        assert!(
            seen.contains(kind),
            "docs/events.md has no example of {kind}"
        );
    }
}

/// The post-sale kinds: a subscription is an account's, advocacy a person's; a term is whole
/// months; only a referral names a referred account. Each refusal names its field.
#[test]
fn post_sale_facts_are_checked_field_by_field() {
    let subscription = || {
        json!({
            "kind": "subscription_started", "occurred_at": "2026-05-01T10:00:00Z",
            "source": "chargebee", "account_id": "acct-1",
            "data": {"subscription_id": "sub-1", "amount": "1200.00", "currency": "EUR", "term_months": 12}
        })
    };
    let event = event_from_json(&subscription(), &context()).expect("valid");
    assert_eq!(
        event.payload,
        Payload::SubscriptionStarted {
            subscription_id: "sub-1".into(),
            amount: baton_core::Money {
                minor_units: 120_000,
                currency: "EUR".into()
            },
            term_months: 12,
            plan: None,
        }
    );
    let refused = |value: serde_json::Value, field: &str, fragment: &str| {
        let error = event_from_json(&value, &context()).expect_err("refused");
        let text = error.to_string();
        assert!(text.contains(field) && text.contains(fragment), "{text}");
    };
    let mut no_account = subscription();
    no_account
        .as_object_mut()
        .expect("object")
        .remove("account_id");
    refused(no_account, "account_id", "a subscription is an account's");
    let mut long = subscription();
    long["data"]["term_months"] = json!(121);
    refused(long, "data.term_months", "between 1 and 120");
    let mut zero = subscription();
    zero["data"]["term_months"] = json!(0);
    refused(zero, "data.term_months", "got 0");
    let churned = json!({
        "kind": "subscription_churned", "occurred_at": "2026-05-01T10:00:00Z",
        "source": "stripe", "account_id": "acct-1", "data": {"subscription_id": "sub-1"}
    });
    refused(churned, "data.reason", "");
    let expanded = json!({
        "kind": "subscription_expanded", "occurred_at": "2026-05-01T10:00:00Z",
        "source": "chargebee", "account_id": "acct-1",
        "data": {"subscription_id": "sub-1", "amount": "1500", "currency": "EUR", "motion": "downsell"}
    });
    refused(expanded, "data.motion", "upsell");
    let review = |data: serde_json::Value, person: bool| {
        let mut value = json!({
            "kind": "advocated", "occurred_at": "2026-05-01T10:00:00Z",
            "source": "hubspot", "account_id": "acct-1", "data": data
        });
        if person {
            value["person_id"] = json!("p-1");
        }
        value
    };
    let event = event_from_json(
        &review(json!({"act": "review", "channel": "g2"}), true),
        &context(),
    )
    .expect("valid");
    assert_eq!(event.kind(), Kind::Advocated);
    refused(
        review(json!({"act": "review"}), false),
        "person_id",
        "a person advocates",
    );
    refused(
        review(
            json!({"act": "review", "referred_account_id": "acct-2"}),
            true,
        ),
        "data.referred_account_id",
        "only a referral",
    );
}
