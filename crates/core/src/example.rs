//! One example event of every kind, used by `docs/events.md`, the codec's golden fixtures and
//! tests across the workspace. Deterministic: the same values every time.

use crate::event::{
    ActivityKind, AdvocacyAct, Campaign, ContentType, Event, EventId, ExpansionMotion, FormKind,
    Identity, Kind, Money, Payload, SocialAction, Source,
};
use crate::timestamp::Timestamp;
use uuid::Uuid;

/// 2026-03-02T09:30:00Z, the business time of the first example.
const BASE_MILLIS: i64 = 1_772_443_800_000;

fn usd(units: i64) -> Money {
    Money {
        minor_units: units * 100,
        currency: "USD".into(),
    }
}

fn text(value: &str) -> String {
    value.to_owned()
}

/// The example payload of a kind.
pub fn example_payload(kind: Kind) -> Payload {
    match kind {
        Kind::ContentViewed => Payload::ContentViewed {
            url: text("https://example.com/blog/pipeline-math"),
            content_type: ContentType::Blog,
            title: Some(text("Pipeline math for B2B teams")),
        },
        Kind::FormSubmitted => Payload::FormSubmitted {
            form_id: text("ebook-2026"),
            form_kind: FormKind::ContentDownload,
        },
        Kind::EmailSent => Payload::EmailSent {
            email_id: text("nurture-3"),
        },
        Kind::EmailDelivered => Payload::EmailDelivered {
            email_id: text("nurture-3"),
        },
        Kind::EmailOpened => Payload::EmailOpened {
            email_id: text("nurture-3"),
        },
        Kind::EmailClicked => Payload::EmailClicked {
            email_id: text("nurture-3"),
            link_url: Some(text("https://example.com/case-studies/acme")),
        },
        Kind::EmailBounced => Payload::EmailBounced {
            email_id: text("nurture-3"),
            hard: true,
        },
        Kind::EmailUnsubscribed => Payload::EmailUnsubscribed {
            email_id: text("nurture-3"),
        },
        Kind::SocialInteraction => Payload::SocialInteraction {
            network: text("linkedin"),
            action: SocialAction::Click,
            paid: true,
            post_id: Some(text("urn:li:share:42")),
        },
        Kind::AdClicked => Payload::AdClicked {
            network: text("google"),
            ad_id: Some(text("ad-7")),
        },
        Kind::WebinarRegistered => Payload::WebinarRegistered {
            webinar_id: text("web-2026-03"),
        },
        Kind::WebinarAttended => Payload::WebinarAttended {
            webinar_id: text("web-2026-03"),
            minutes: 48,
        },
        Kind::ExecutiveEventInvited => Payload::ExecutiveEventInvited {
            exec_event_id: text("cfo-dinner-nyc"),
        },
        Kind::ExecutiveEventAttended => Payload::ExecutiveEventAttended {
            exec_event_id: text("cfo-dinner-nyc"),
        },
        Kind::DemoRequested => Payload::DemoRequested {
            product: Some(text("baton-cloud")),
        },
        Kind::ProposalViewed => Payload::ProposalViewed {
            proposal_id: text("prop-118"),
        },
        Kind::NpsResponded => Payload::NpsResponded {
            score: 9,
            comment: Some(text("fast onboarding")),
        },
        Kind::ProductUsageSummarized => Payload::ProductUsageSummarized {
            period_days: 7,
            active_users: 31,
        },
        Kind::CustomTouch => Payload::CustomTouch {
            name: text("Pricing Calculator Used"),
        },
        Kind::LeadAssigned => Payload::LeadAssigned {
            owner: text("sdr.maya"),
        },
        Kind::LeadAccepted => Payload::LeadAccepted {
            owner: text("sdr.maya"),
        },
        Kind::LeadRejected => Payload::LeadRejected {
            owner: Some(text("sdr.maya")),
            reason: text("timing"),
        },
        Kind::LeadRecycled => Payload::LeadRecycled {
            reason: text("no_budget_this_quarter"),
        },
        Kind::LeadDisqualified => Payload::LeadDisqualified {
            reason: text("student"),
        },
        Kind::SalesActivity => Payload::SalesActivity {
            owner: text("sdr.maya"),
            activity: ActivityKind::Call,
        },
        Kind::MeetingHeld => Payload::MeetingHeld {
            owner: Some(text("ae.jon")),
            need_declared: true,
        },
        Kind::ProposalSent => Payload::ProposalSent {
            proposal_id: text("prop-118"),
            amount: usd(48_000),
        },
        Kind::NurtureEnrolled => Payload::NurtureEnrolled {
            track_id: text("cfo-track"),
        },
        Kind::NurtureExited => Payload::NurtureExited {
            track_id: text("cfo-track"),
        },
        Kind::OpportunityCreated => Payload::OpportunityCreated {
            amount: Some(usd(50_000)),
            stage: Some(text("discovery")),
        },
        Kind::OpportunityStageChanged => Payload::OpportunityStageChanged {
            from: Some(text("discovery")),
            to: text("proposal"),
        },
        Kind::OpportunityAmountChanged => Payload::OpportunityAmountChanged {
            amount: usd(48_000),
        },
        Kind::OpportunityClosedWon => Payload::OpportunityClosedWon {
            amount: usd(48_000),
        },
        Kind::OpportunityClosedLost => Payload::OpportunityClosedLost {
            reason: text("competitor"),
        },
        Kind::Identified => Payload::Identified {
            anonymous_id: text("anon-5f2c"),
            person_id: text("p-ada"),
        },
        Kind::LinkedToAccount => Payload::LinkedToAccount {
            person_id: text("p-ada"),
            account_id: text("acct-acme"),
        },
        Kind::Merged => Payload::Merged {
            from_person_id: text("p-ada-dup"),
            into_person_id: text("p-ada"),
        },
        Kind::AccountUpdated => Payload::AccountUpdated {
            name: Some(text("Acme Corp")),
            domain: Some(text("acme.example")),
            industry: Some(text("manufacturing")),
            employees: Some(1200),
            region: Some(text("emea")),
        },
        Kind::PersonUpdated => Payload::PersonUpdated {
            title: Some(text("VP Finance")),
            seniority: Some(text("vp")),
            department: Some(text("finance")),
            country: Some(text("DE")),
        },
        Kind::Retracted => Payload::Retracted {
            target: EventId::from_uuid(Uuid::from_u128(0x0195_5a3c_0000_7000_8000_0000_0000_0001)),
            reason: text("bot"),
        },
        Kind::SubscriptionStarted => Payload::SubscriptionStarted {
            subscription_id: text("sub-acme-1"),
            amount: usd(48_000),
            term_months: 12,
            plan: Some(text("business")),
        },
        Kind::SubscriptionRenewed => Payload::SubscriptionRenewed {
            subscription_id: text("sub-acme-1"),
            amount: usd(52_000),
            term_months: 12,
        },
        Kind::SubscriptionExpanded => Payload::SubscriptionExpanded {
            subscription_id: text("sub-acme-1"),
            amount: usd(64_000),
            motion: ExpansionMotion::Upsell,
            plan: Some(text("enterprise")),
        },
        Kind::SubscriptionContracted => Payload::SubscriptionContracted {
            subscription_id: text("sub-acme-1"),
            amount: usd(40_000),
            reason: Some(text("fewer_seats")),
        },
        Kind::SubscriptionChurned => Payload::SubscriptionChurned {
            subscription_id: text("sub-acme-1"),
            reason: text("budget_cut"),
        },
        Kind::Advocated => Payload::Advocated {
            act: AdvocacyAct::Referral,
            referred_account_id: Some(text("acct-globex")),
            channel: None,
        },
        Kind::Corrected => Payload::Corrected {
            target: EventId::from_uuid(Uuid::from_u128(0x0195_5a3c_0000_7000_8000_0000_0000_0002)),
            reason: text("wrong amount keyed in CRM"),
            occurred_at: None,
            replacement: Some(Box::new(Payload::OpportunityClosedWon {
                amount: usd(46_500),
            })),
        },
    }
}

/// One example event of `kind`, the `index`-th of the examples (which sets its time and id).
pub fn example_event(kind: Kind, index: usize) -> Event {
    let index_i64 = i64::try_from(index).expect("invariant: few examples");
    let occurred_at = Timestamp::from_unix_millis(BASE_MILLIS + index_i64 * 3_600_000);
    let family = kind.family();
    let (source, connector) = match family {
        crate::event::Family::Touch => ("web", "analytics.js"),
        crate::event::Family::Action => ("salesforce", "webhook"),
        crate::event::Family::Crm => ("salesforce", "cdc"),
        crate::event::Family::Identity => ("segment", "identify"),
        crate::event::Family::Governance => ("baton", "admin"),
        crate::event::Family::Customer if kind == Kind::Advocated => ("hubspot", "webhook"),
        crate::event::Family::Customer => ("chargebee", "webhook"),
    };
    let touch = family == crate::event::Family::Touch;
    Event {
        event_id: EventId::from_source_message(source, &format!("example-{index}")),
        occurred_at,
        recorded_at: occurred_at.add_millis(1_500),
        source: Source {
            system: text(source),
            connector: Some(text(connector)),
            message_id: Some(format!("example-{index}")),
        },
        identity: Identity {
            anonymous_id: touch.then(|| text("anon-5f2c")),
            // A contract is the account's: billing systems name the customer account only.
            person_id: (family != crate::event::Family::Customer || kind == Kind::Advocated)
                .then(|| text("p-ada")),
            account_id: Some(text("acct-acme")),
        },
        opportunity_id: matches!(family, crate::event::Family::Crm)
            .then(|| text("opp-9"))
            .or_else(|| (kind == Kind::ProposalSent).then(|| text("opp-9"))),
        campaign: Campaign {
            campaign_id: touch.then(|| text("q1-cfo-webinar")),
            channel: touch.then(|| text("paid_social")),
            content_id: (kind == Kind::ContentViewed).then(|| text("blog-pipeline-math")),
        },
        payload: example_payload(kind),
    }
}

/// One example of every kind, in catalogue order.
pub fn one_of_each_kind() -> Vec<Event> {
    Kind::ALL
        .iter()
        .enumerate()
        .map(|(index, kind)| example_event(*kind, index))
        .collect()
}
