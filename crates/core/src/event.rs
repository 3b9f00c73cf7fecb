//! The touchpoint event: an envelope of who, when and where from, around a typed payload.
//!
//! These types are also the stored (schema version 1) form on the log. Bincode is not
//! self-describing, so: never reorder or remove a field or a variant; add new kinds as new
//! variants at the end of [`Payload`] and new enum values at the end of their enum. A change
//! that cannot follow those rules gets a new schema version and an upcaster in `codec`.

use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// The identity of one fact on the log. Never reused; the log stores each id at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(Uuid);

/// Namespace for ids derived from a source's own message ids (UUIDv5).
const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0c4e_52b1_4b8e_9a3c_0b7a_7e15_ba70);

impl EventId {
    pub const fn from_uuid(uuid: Uuid) -> Self {
        EventId(uuid)
    }

    /// The id of a source's message: the same (source system, message id) always gives the same
    /// event id, so a retried or re-imported message is recognised as the same fact.
    pub fn from_source_message(system: &str, message_id: &str) -> Self {
        let mut name = Vec::with_capacity(system.len() + message_id.len() + 1);
        name.extend_from_slice(system.as_bytes());
        // A separator that cannot appear in either part keeps ("ab","c") apart from ("a","bc").
        name.push(0);
        name.extend_from_slice(message_id.as_bytes());
        EventId(Uuid::new_v5(&MESSAGE_ID_NAMESPACE, &name))
    }

    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    pub const fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One fact, as stored on the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: EventId,
    /// Business time: when it happened. Drives the funnel.
    pub occurred_at: Timestamp,
    /// Knowledge time: when Baton learned of it.
    pub recorded_at: Timestamp,
    pub source: Source,
    pub identity: Identity,
    pub opportunity_id: Option<String>,
    pub campaign: Campaign,
    pub payload: Payload,
}

impl Event {
    pub fn kind(&self) -> Kind {
        self.payload.kind()
    }
}

/// Where an event came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The system of record, e.g. `web`, `sendgrid`, `salesforce`, `linkedin`, `import`.
    pub system: String,
    /// The connector or integration that delivered it, e.g. `analytics.js`, `webhook`.
    pub connector: Option<String>,
    /// The source's own id for the message, when it sent one.
    pub message_id: Option<String>,
}

/// Who the event is about, as far as the source knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub anonymous_id: Option<String>,
    pub person_id: Option<String>,
    pub account_id: Option<String>,
}

/// The marketing context of a touch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub campaign_id: Option<String>,
    /// e.g. `organic_search`, `paid_social`, `email`, `events`, `direct`, `referral`.
    pub channel: Option<String>,
    pub content_id: Option<String>,
}

/// An amount of money in minor units (cents), with its ISO 4217 currency code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor_units: i64,
    pub currency: String,
}

macro_rules! value_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn from_name(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

value_enum!(
    /// What a piece of content is. Scoring rules filter on it.
    ContentType {
        Blog => "blog", CaseStudy => "case_study", Pricing => "pricing", Docs => "docs",
        Product => "product", Whitepaper => "whitepaper", Video => "video", Careers => "careers",
        Other => "other",
    }
);
value_enum!(
    FormKind {
        ContactUs => "contact_us", ContentDownload => "content_download", Newsletter => "newsletter",
        WebinarRegistration => "webinar_registration", EventRegistration => "event_registration",
        DemoRequest => "demo_request", Trial => "trial", Other => "other",
    }
);
value_enum!(
    SocialAction {
        Impression => "impression", Click => "click", Like => "like", Comment => "comment",
        Share => "share", Follow => "follow", Message => "message", LeadForm => "lead_form",
    }
);
value_enum!(
    ActivityKind {
        Call => "call", Email => "email", Social => "social", Meeting => "meeting",
    }
);

value_enum!(
    /// How a subscription grew: more of the same product (upsell) or another one (cross-sell).
    ExpansionMotion {
        Upsell => "upsell", CrossSell => "cross_sell",
    }
);
value_enum!(
    /// What a customer did for the vendor in public or with a prospect.
    AdvocacyAct {
        ReferenceCall => "reference_call", CaseStudy => "case_study", Review => "review",
        Referral => "referral",
    }
);

/// What happened. Each variant is one event kind; see `docs/events.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    // Buyer touches.
    ContentViewed {
        url: String,
        content_type: ContentType,
        title: Option<String>,
    },
    FormSubmitted {
        form_id: String,
        form_kind: FormKind,
    },
    EmailSent {
        email_id: String,
    },
    EmailDelivered {
        email_id: String,
    },
    EmailOpened {
        email_id: String,
    },
    EmailClicked {
        email_id: String,
        link_url: Option<String>,
    },
    EmailBounced {
        email_id: String,
        hard: bool,
    },
    EmailUnsubscribed {
        email_id: String,
    },
    SocialInteraction {
        network: String,
        action: SocialAction,
        paid: bool,
        post_id: Option<String>,
    },
    AdClicked {
        network: String,
        ad_id: Option<String>,
    },
    WebinarRegistered {
        webinar_id: String,
    },
    WebinarAttended {
        webinar_id: String,
        minutes: u32,
    },
    ExecutiveEventInvited {
        exec_event_id: String,
    },
    ExecutiveEventAttended {
        exec_event_id: String,
    },
    DemoRequested {
        product: Option<String>,
    },
    ProposalViewed {
        proposal_id: String,
    },
    NpsResponded {
        score: u8,
        comment: Option<String>,
    },
    ProductUsageSummarized {
        period_days: u32,
        active_users: u32,
    },
    CustomTouch {
        name: String,
    },
    // Seller and marketer actions.
    LeadAssigned {
        owner: String,
    },
    LeadAccepted {
        owner: String,
    },
    LeadRejected {
        owner: Option<String>,
        reason: String,
    },
    LeadRecycled {
        reason: String,
    },
    LeadDisqualified {
        reason: String,
    },
    SalesActivity {
        owner: String,
        activity: ActivityKind,
    },
    MeetingHeld {
        owner: Option<String>,
        need_declared: bool,
    },
    ProposalSent {
        proposal_id: String,
        amount: Money,
    },
    NurtureEnrolled {
        track_id: String,
    },
    NurtureExited {
        track_id: String,
    },
    // CRM facts.
    OpportunityCreated {
        amount: Option<Money>,
        stage: Option<String>,
    },
    OpportunityStageChanged {
        from: Option<String>,
        to: String,
    },
    OpportunityAmountChanged {
        amount: Money,
    },
    OpportunityClosedWon {
        amount: Money,
    },
    OpportunityClosedLost {
        reason: String,
    },
    // Identity.
    Identified {
        anonymous_id: String,
        person_id: String,
    },
    LinkedToAccount {
        person_id: String,
        account_id: String,
    },
    Merged {
        from_person_id: String,
        into_person_id: String,
    },
    /// Traits of the account named in the envelope's `account_id`; absent fields are unchanged.
    AccountUpdated {
        name: Option<String>,
        domain: Option<String>,
        industry: Option<String>,
        employees: Option<u32>,
        region: Option<String>,
    },
    /// Traits of the person named in the envelope's `person_id`; absent fields are unchanged.
    PersonUpdated {
        title: Option<String>,
        seniority: Option<String>,
        department: Option<String>,
        country: Option<String>,
    },
    // Governance.
    Retracted {
        target: EventId,
        reason: String,
    },
    Corrected {
        target: EventId,
        reason: String,
        occurred_at: Option<Timestamp>,
        replacement: Option<Box<Payload>>,
    },
    // Customer: the account's contract after the sale, and what its people do for the vendor.
    // (Added after the governance kinds: the log's encoding numbers variants in order.)
    /// A subscription (contract) begins: `amount` is its value per term of `term_months`.
    SubscriptionStarted {
        subscription_id: String,
        amount: Money,
        term_months: u32,
        plan: Option<String>,
    },
    /// A subscription begins a new term, at `amount` per term of `term_months`.
    SubscriptionRenewed {
        subscription_id: String,
        amount: Money,
        term_months: u32,
    },
    /// A subscription grows: `amount` is its value per term after the change.
    SubscriptionExpanded {
        subscription_id: String,
        amount: Money,
        motion: ExpansionMotion,
        plan: Option<String>,
    },
    /// A subscription shrinks: `amount` is its value per term after the change.
    SubscriptionContracted {
        subscription_id: String,
        amount: Money,
        reason: Option<String>,
    },
    /// A subscription ends and is not renewed.
    SubscriptionChurned {
        subscription_id: String,
        reason: String,
    },
    /// A person acts for the vendor: a reference call, a case study, a review, a referral
    /// (naming the account referred, when known).
    Advocated {
        act: AdvocacyAct,
        referred_account_id: Option<String>,
        channel: Option<String>,
    },
}

/// The six families of event kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Touch,
    Action,
    Crm,
    Identity,
    Governance,
    Customer,
}

impl Family {
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Touch => "touch",
            Family::Action => "action",
            Family::Crm => "crm",
            Family::Identity => "identity",
            Family::Governance => "governance",
            Family::Customer => "customer",
        }
    }
}

macro_rules! kinds {
    ($($variant:ident => $name:literal, $family:ident;)*) => {
        /// The kind of an event, without its data. Serialized (by variant index) only in the
        /// projector's stored state; new kinds go at the end, as in [`Payload`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Kind { $($variant),* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The name used in JSON (`"kind": "content_viewed"`) and on the wire.
            pub const fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name),* }
            }

            pub const fn family(self) -> Family {
                match self { $(Kind::$variant => Family::$family),* }
            }

            pub fn from_name(text: &str) -> Option<Kind> {
                match text { $($name => Some(Kind::$variant),)* _ => None }
            }
        }

        impl Payload {
            pub fn kind(&self) -> Kind {
                match self { $(Payload::$variant { .. } => Kind::$variant),* }
            }
        }
    };
}

kinds! {
    ContentViewed => "content_viewed", Touch;
    FormSubmitted => "form_submitted", Touch;
    EmailSent => "email_sent", Touch;
    EmailDelivered => "email_delivered", Touch;
    EmailOpened => "email_opened", Touch;
    EmailClicked => "email_clicked", Touch;
    EmailBounced => "email_bounced", Touch;
    EmailUnsubscribed => "email_unsubscribed", Touch;
    SocialInteraction => "social_interaction", Touch;
    AdClicked => "ad_clicked", Touch;
    WebinarRegistered => "webinar_registered", Touch;
    WebinarAttended => "webinar_attended", Touch;
    ExecutiveEventInvited => "executive_event_invited", Touch;
    ExecutiveEventAttended => "executive_event_attended", Touch;
    DemoRequested => "demo_requested", Touch;
    ProposalViewed => "proposal_viewed", Touch;
    NpsResponded => "nps_responded", Touch;
    ProductUsageSummarized => "product_usage_summarized", Touch;
    CustomTouch => "custom_touch", Touch;
    LeadAssigned => "lead_assigned", Action;
    LeadAccepted => "lead_accepted", Action;
    LeadRejected => "lead_rejected", Action;
    LeadRecycled => "lead_recycled", Action;
    LeadDisqualified => "lead_disqualified", Action;
    SalesActivity => "sales_activity", Action;
    MeetingHeld => "meeting_held", Action;
    ProposalSent => "proposal_sent", Action;
    NurtureEnrolled => "nurture_enrolled", Action;
    NurtureExited => "nurture_exited", Action;
    OpportunityCreated => "opportunity_created", Crm;
    OpportunityStageChanged => "opportunity_stage_changed", Crm;
    OpportunityAmountChanged => "opportunity_amount_changed", Crm;
    OpportunityClosedWon => "opportunity_closed_won", Crm;
    OpportunityClosedLost => "opportunity_closed_lost", Crm;
    Identified => "identified", Identity;
    LinkedToAccount => "linked_to_account", Identity;
    Merged => "merged", Identity;
    AccountUpdated => "account_updated", Identity;
    PersonUpdated => "person_updated", Identity;
    Retracted => "retracted", Governance;
    Corrected => "corrected", Governance;
    SubscriptionStarted => "subscription_started", Customer;
    SubscriptionRenewed => "subscription_renewed", Customer;
    SubscriptionExpanded => "subscription_expanded", Customer;
    SubscriptionContracted => "subscription_contracted", Customer;
    SubscriptionChurned => "subscription_churned", Customer;
    Advocated => "advocated", Customer;
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_map_to_stable_distinct_ids() {
        // The worked example of docs/events.md, computed there with Python's uuid5.
        assert_eq!(
            EventId::from_source_message("web", "example-0").to_string(),
            "2fdf6883-dd68-5039-b944-1a60f80f8f67"
        );
        let a = EventId::from_source_message("web", "m-1");
        assert_eq!(a, EventId::from_source_message("web", "m-1"));
        assert_ne!(a, EventId::from_source_message("email", "m-1"));
        assert_ne!(a, EventId::from_source_message("web", "m-2"));
        assert_ne!(
            EventId::from_source_message("ab", "c"),
            EventId::from_source_message("a", "bc")
        );
    }

    #[test]
    fn kind_names_round_trip_and_are_unique() {
        let mut names = std::collections::HashSet::new();
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(*kind));
            assert!(names.insert(kind.name()), "duplicate name {}", kind.name());
        }
        assert_eq!(Kind::from_name("content_view"), None);
    }
}
