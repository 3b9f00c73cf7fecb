//! Baton's core: the touchpoint event model, its JSON edge form, the log codec and event ids.
//!
//! Pure by rule: no IO, no async, no clock, no randomness. Time and fresh ids come in as
//! values (see [`ParseContext`]). A workspace test fails if an IO crate becomes a dependency.

pub mod attribution;
mod codec;
mod compare;
pub mod currency;
mod event;
pub mod example;
mod funnel;
mod journey;
mod json;
pub mod restate;
mod symbol;
mod timestamp;
mod view;

pub use codec::{
    CodecError, MAX_FRAME_BYTES, SCHEMA_VERSION, decode, encode, encode_into, event_id_of,
    schema_version,
};
pub use compare::{
    ChannelCredit, Comparison, OutcomeGroup, SAMPLE_PEOPLE, SlaLoad, StagePair, compare,
    compare_with,
};
pub use currency::{decimal_amount, major_units, minor_unit_exponent};
pub use event::{
    ActivityKind, AdvocacyAct, Campaign, ContentType, Event, EventId, ExpansionMotion, Family,
    FormKind, Identity, Kind, Money, Payload, SocialAction, Source,
};
pub use funnel::{
    DEFAULT_FUNNEL_TOML, DefinitionError, DefinitionErrors, Detour, EngagementRule, FitCondition,
    FitRule, FunnelDefinition, MqlRule, Outcome, Owner, Sla, Stage, Trait, Trigger,
};
pub use journey::{
    Attributed, Attributes, Direction, Fact, FollowUp, Handoff, Journey, Place, Traits, Transition,
    fit_score, intern_payload, owner_of,
};
pub use json::{
    EventJsonError, ParseContext, event_from_json, event_to_json, parse_event, parse_event_or,
};
pub use symbol::{AttributeTable, AttributesId, Symbol, Symbols};
pub use timestamp::{Timestamp, TimestampError};
pub use view::attribution::{
    AttributionCreditRow, AttributionModelRow, AttributionView, DIMENSIONS, LedgerRow,
    UNATTRIBUTED_LABEL,
};
pub use view::customer::{AdvocacyRow, CustomerView, NpsRow};
pub use view::customer_accounts::{
    AdvocateRow, ConcentrationRow, CustomerAccountRow, CustomerTables, LoyaltyRow, MovementRow,
    ReferralRow, RetentionRow, advocacy_acts,
};
pub use view::marketing::{
    AccountScoreRow, AttributionRow, CampaignRow, ContentRow, MarketingView, NurtureRow,
    PersonScoreRow, Segment,
};
pub use view::report::{Amounts, DealStatus, NONE_LABEL};
pub use view::rows::{PersonRow, PersonRows};
pub use view::sales::{OpportunityRow, PipelineRow, SalesView, SlaOwnerRow};
pub use view::shared::{CohortRow, HandoffRow, SharedView};
pub use view::state::{
    FactFile, Keeping, MemoryFactFile, STATE_VERSION, StateEntry, StateError, gathered_entry,
};
pub use view::{
    AccountRevenue, FollowUpSummary, FunnelProjection, FunnelSummary, Outcomes, PersonOutcome,
    StageSummary,
};
