//! A deterministic synthetic B2B history: accounts with firmographics, several people each,
//! touches across every family, marketing→sales hand-offs and hand-backs, recycled and
//! rejected leads, meetings with and without a declared need, opportunities, proposals, wins
//! and losses; after a win, the customer's life: a subscription, monthly usage, NPS answers,
//! expansions, contractions, renewals or churn with reasons, and advocacy by promoters, all
//! more likely to go well when the deal was sold well (little discount, a short cycle, no
//! hand-backs, a referral or search as first touch); plus the dirt real feeds carry: retried (duplicate) deliveries, late and
//! out-of-order arrivals, retractions and corrections.
//!
//! Same seed and account count, same events, in the same order. Accounts are generated in
//! small chunks and streamed, so memory stays flat however long the history.

use baton_core::{
    ActivityKind, AdvocacyAct, Campaign, ContentType, Event, EventId, ExpansionMotion, FormKind,
    Identity, Money, Payload, SocialAction, Source, Timestamp,
};
use std::collections::VecDeque;

const DAY: i64 = Timestamp::MILLIS_PER_DAY;
const HOUR: i64 = 3_600_000;
/// Accounts generated and shuffled together. Bounds memory and how far a late event travels.
const CHUNK_ACCOUNTS: u64 = 64;

/// What history to make.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    pub seed: u64,
    pub accounts: u64,
    /// The first day of the history.
    pub start: Timestamp,
    /// Days the history covers; nothing happens after `start + span_days`.
    pub span_days: u32,
    /// Share of events delivered twice (a retried delivery with the same message id).
    pub duplicate_rate: f64,
    /// Share of events that arrive late, after events that happened after them.
    pub late_rate: f64,
    /// Nurture touches per person, as a multiple of the default (1): a larger value gives
    /// longer histories over the same people (each round of nurture draws 2 to 13 touches,
    /// times this, over the same weeks).
    pub engagement: u32,
}

impl HistoryConfig {
    pub fn new(seed: u64, accounts: u64) -> Self {
        HistoryConfig {
            seed,
            accounts,
            // 2025-01-01T00:00:00Z
            start: Timestamp::from_unix_millis(1_735_689_600_000),
            span_days: 540,
            duplicate_rate: 0.01,
            late_rate: 0.02,
            engagement: 1,
        }
    }
}

/// SplitMix64: small, fast, and the same everywhere.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    /// Independent streams per (seed, stream). SplitMix64 advances its state by a constant,
    /// so seeding streams with nearby values would give overlapping sequences; hashing the
    /// stream number first scatters the starting states.
    fn new(seed: u64, stream: u64) -> Self {
        let mut scatter = Rng(stream);
        let mut rng = Rng(seed ^ scatter.next_u64());
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    fn between(&mut self, low: i64, high: i64) -> i64 {
        let span = u64::try_from(high - low).unwrap_or(0);
        low + i64::try_from(self.below(span + 1)).unwrap_or(0)
    }

    fn chance(&mut self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[index]
    }
}

const NAME_PARTS: &[&str] = &[
    "acme", "globex", "initech", "umbra", "stark", "wayne", "tyrell", "cyber", "hooli", "vandelay",
    "soylent", "wonka", "nimbus", "vertex", "quanta", "helio", "nova", "lumen", "apex", "orbit",
];
const NAME_SUFFIXES: &[&str] = &[
    "labs",
    "systems",
    "corp",
    "works",
    "group",
    "logistics",
    "health",
    "bank",
];
const INDUSTRIES: &[&str] = &[
    "software",
    "manufacturing",
    "financial_services",
    "healthcare",
    "retail",
    "logistics",
    "education",
];
const REGIONS: &[&str] = &["na", "emea", "apac", "latam"];
const TITLES: &[(&str, &str, &str)] = &[
    ("CFO", "c_level", "finance"),
    ("VP Finance", "vp", "finance"),
    ("Head of Revenue Operations", "director", "operations"),
    ("Marketing Manager", "manager", "marketing"),
    ("Sales Director", "director", "sales"),
    ("Data Analyst", "individual", "operations"),
    ("CTO", "c_level", "engineering"),
    ("Student", "individual", "education"),
];
const COUNTRIES: &[&str] = &["US", "DE", "GB", "FR", "JP", "BR", "CA", "AU"];
const CHANNELS: &[(&str, &str)] = &[
    ("organic_search", "seo-evergreen"),
    ("paid_search", "ppc-brand-2025"),
    ("paid_social", "li-cfo-abm"),
    ("email", "newsletter-weekly"),
    ("events", "field-roadshow"),
    ("referral", "partner-referrals"),
    ("direct", "direct"),
];
const CHURN_REASONS: &[&str] = &[
    "budget_cut",
    "competitor",
    "low_adoption",
    "acquired",
    "missing_feature",
];
const CONTRACTION_REASONS: &[&str] = &["fewer_seats", "budget_cut", "downgrade"];
const PLANS: &[&str] = &["team", "business", "enterprise"];
const SDRS: &[&str] = &["sdr.maya", "sdr.omar", "sdr.lena", "sdr.raj"];
const AES: &[&str] = &["ae.jon", "ae.sofia", "ae.kenji"];
const REJECT_REASONS: &[&str] = &["timing", "no_budget", "not_icp", "bad_data", "competitor"];
const DISQUALIFY_REASONS: &[&str] = &["student", "competitor", "duplicate", "spam"];
const LOSS_REASONS: &[&str] = &[
    "price",
    "competitor",
    "no_decision",
    "timing",
    "missing_feature",
];

/// Generates the history chunk by chunk. An iterator of events, in delivery order.
#[derive(Debug)]
pub struct History {
    config: HistoryConfig,
    next_account: u64,
    buffer: VecDeque<Event>,
}

impl History {
    pub fn new(config: HistoryConfig) -> Self {
        History {
            config,
            next_account: 0,
            buffer: VecDeque::new(),
        }
    }

    /// What the log stores of the history: its events without the retried deliveries (the
    /// first copy of each event id), in order. Keeps one id per event seen.
    pub fn stored(self) -> impl Iterator<Item = Event> {
        let mut seen = std::collections::HashSet::new();
        self.filter(move |event| seen.insert(event.event_id))
    }

    /// Accounts generated so far (for progress reporting).
    pub fn accounts_done(&self) -> u64 {
        self.next_account
    }

    fn fill(&mut self) {
        let end = (self.next_account + CHUNK_ACCOUNTS).min(self.config.accounts);
        let mut chunk = Vec::new();
        for index in self.next_account..end {
            chunk.extend(AccountJourney::generate(&self.config, index));
        }
        let chunk_index = self.next_account / CHUNK_ACCOUNTS;
        self.next_account = end;
        // Delivery order: mostly by business time, then the dirt.
        chunk.sort_by_key(|event| event.occurred_at);
        let mut rng = Rng::new(self.config.seed, u64::MAX - chunk_index);
        let mut delivered: Vec<Event> = Vec::with_capacity(chunk.len() + chunk.len() / 50);
        let mut late: Vec<(usize, Event)> = Vec::new();
        for event in chunk {
            if rng.chance(self.config.late_rate) {
                let delay = usize::try_from(rng.between(20, 400)).unwrap_or(20);
                late.push((delivered.len() + delay, event));
                continue;
            }
            if rng.chance(self.config.duplicate_rate) {
                let delay = usize::try_from(rng.between(1, 200)).unwrap_or(1);
                late.push((delivered.len() + delay, event.clone()));
            }
            delivered.push(event);
            late.sort_by_key(|(due, _)| std::cmp::Reverse(*due));
            while late.last().is_some_and(|(due, _)| *due <= delivered.len()) {
                let (_, event) = late.pop().expect("invariant: checked non-empty");
                delivered.push(event);
            }
        }
        late.sort_by_key(|(due, _)| *due);
        delivered.extend(late.into_iter().map(|(_, event)| event));
        self.buffer.extend(delivered);
    }
}

impl Iterator for History {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        while self.buffer.is_empty() {
            if self.next_account >= self.config.accounts {
                return None;
            }
            self.fill();
        }
        self.buffer.pop_front()
    }
}

/// Who a journey event is about.
#[derive(Clone)]
struct Person {
    id: String,
    anonymous_id: String,
    known: bool,
}

/// Builds the events of one account: its people's journeys and its opportunity.
struct AccountJourney<'a> {
    config: &'a HistoryConfig,
    rng: Rng,
    account_id: String,
    index: u64,
    counter: u64,
    end: Timestamp,
    events: Vec<Event>,
    opportunity: Option<Opportunity>,
    opportunities: u32,
    /// Hand-backs to marketing in the account so far: a deal sold after several goes worse.
    handbacks: u32,
    subscriptions: u32,
}

/// How a won deal was sold, which the customer's life after it depends on.
struct Sale {
    at: Timestamp,
    amount: i64,
    discounted: bool,
    cycle_days: i64,
    handbacks: u32,
    channel: Option<String>,
}

struct Opportunity {
    id: String,
    closed: bool,
}

impl<'a> AccountJourney<'a> {
    fn generate(config: &'a HistoryConfig, index: u64) -> Vec<Event> {
        let span = i64::from(config.span_days) * DAY;
        let mut journey = AccountJourney {
            config,
            rng: Rng::new(config.seed, index),
            account_id: format!("acct-{index:06}"),
            index,
            counter: 0,
            end: config.start.add_millis(span),
            events: Vec::new(),
            opportunity: None,
            opportunities: 0,
            handbacks: 0,
            subscriptions: 0,
        };
        journey.run(span);
        journey.events
    }

    fn run(&mut self, span: i64) {
        let start = self
            .config
            .start
            .add_millis(self.rng.between(0, span * 4 / 5));
        let name = format!(
            "{} {}",
            self.rng.pick(NAME_PARTS),
            self.rng.pick(NAME_SUFFIXES)
        );
        let domain = format!("{}-{}.example", name.replace(' ', "-"), self.index);
        let employees = u32::try_from(10 * (1 + self.rng.below(1000))).unwrap_or(10);
        let industry = (*self.rng.pick(INDUSTRIES)).to_owned();
        let region = (*self.rng.pick(REGIONS)).to_owned();
        self.emit(
            start,
            None,
            ("clearbit", "enrichment"),
            Campaign::default(),
            Payload::AccountUpdated {
                name: Some(name),
                domain: Some(domain),
                industry: Some(industry),
                employees: Some(employees),
                region: Some(region),
            },
        );
        let people = 1 + self.rng.below(5);
        for number in 0..people {
            let first_touch = start.add_millis(self.rng.between(HOUR, 60 * DAY));
            self.person_journey(number, first_touch);
        }
    }

    fn emit(
        &mut self,
        at: Timestamp,
        person: Option<&Person>,
        (system, connector): (&str, &str),
        campaign: Campaign,
        payload: Payload,
    ) -> Option<EventId> {
        if at > self.end {
            return None;
        }
        self.counter += 1;
        let message_id = format!("s{}-a{}-{}", self.config.seed, self.index, self.counter);
        let event_id = EventId::from_source_message(system, &message_id);
        let identity = Identity {
            anonymous_id: person.filter(|p| !p.known).map(|p| p.anonymous_id.clone()),
            person_id: person.filter(|p| p.known).map(|p| p.id.clone()),
            account_id: Some(self.account_id.clone()),
        };
        let opportunity_id = match &payload {
            Payload::OpportunityCreated { .. }
            | Payload::OpportunityStageChanged { .. }
            | Payload::OpportunityAmountChanged { .. }
            | Payload::OpportunityClosedWon { .. }
            | Payload::OpportunityClosedLost { .. }
            | Payload::ProposalSent { .. }
            | Payload::ProposalViewed { .. } => self.opportunity.as_ref().map(|o| o.id.clone()),
            _ => None,
        };
        self.events.push(Event {
            event_id,
            occurred_at: at,
            // The log assigns knowledge time on arrival; a generated history arrives at once.
            recorded_at: at,
            source: Source {
                system: system.to_owned(),
                connector: Some(connector.to_owned()),
                message_id: Some(message_id),
            },
            identity,
            opportunity_id,
            campaign,
            payload,
        });
        Some(event_id)
    }

    fn later(&mut self, at: Timestamp, min_hours: i64, max_hours: i64) -> Timestamp {
        at.add_millis(self.rng.between(min_hours * HOUR, max_hours * HOUR))
    }

    fn person_journey(&mut self, number: u64, mut at: Timestamp) {
        let mut person = Person {
            id: format!("{}-p{number}", self.account_id),
            anonymous_id: format!("anon-{:016x}", self.rng.next_u64()),
            known: false,
        };
        let (channel, campaign_id) = *self.rng.pick(CHANNELS);
        let campaign = Campaign {
            campaign_id: Some(campaign_id.to_owned()),
            channel: Some(channel.to_owned()),
            content_id: None,
        };

        // Anonymous research.
        for _ in 0..1 + self.rng.below(5) {
            at = self.later(at, 1, 72);
            self.anonymous_touch(at, &person, channel, &campaign);
        }
        if !self.rng.chance(0.75) {
            return; // A visitor who never identifies.
        }

        // Conversion: a form, then identity and traits.
        at = self.later(at, 1, 96);
        let form_kind = *self.rng.pick(&[
            FormKind::ContentDownload,
            FormKind::Newsletter,
            FormKind::WebinarRegistration,
            FormKind::ContactUs,
        ]);
        self.emit(
            at,
            Some(&person),
            ("web", "analytics.js"),
            campaign.clone(),
            Payload::FormSubmitted {
                form_id: format!("form-{}", form_kind.as_str()),
                form_kind,
            },
        );
        let anonymous_id = person.anonymous_id.clone();
        person.known = true;
        let identified_at = at.add_millis(1_000);
        self.emit(
            identified_at,
            None,
            ("segment", "identify"),
            Campaign::default(),
            Payload::Identified {
                anonymous_id,
                person_id: person.id.clone(),
            },
        );
        let (title, seniority, department) = *self.rng.pick(TITLES);
        let country = (*self.rng.pick(COUNTRIES)).to_owned();
        self.emit(
            identified_at,
            Some(&person),
            ("clearbit", "enrichment"),
            Campaign::default(),
            Payload::PersonUpdated {
                title: Some(title.to_owned()),
                seniority: Some(seniority.to_owned()),
                department: Some(department.to_owned()),
                country: Some(country),
            },
        );
        self.emit(
            identified_at,
            None,
            ("salesforce", "cdc"),
            Campaign::default(),
            Payload::LinkedToAccount {
                person_id: person.id.clone(),
                account_id: self.account_id.clone(),
            },
        );
        if self.rng.chance(0.01) {
            // A duplicate record created by a second form fill, later merged.
            let duplicate = format!("{}-dup", person.id);
            let when = self.later(at, 24, 240);
            self.emit(
                when,
                None,
                ("salesforce", "dedupe"),
                Campaign::default(),
                Payload::Merged {
                    from_person_id: duplicate,
                    into_person_id: person.id.clone(),
                },
            );
        }

        // Nurture, hand-offs and hand-backs, until the journey ends one way or another.
        let mut handoffs = 0;
        loop {
            at = self.later(at, 2, 48);
            let track = format!("track-{}", department);
            self.emit(
                at,
                Some(&person),
                ("hubspot", "workflows"),
                Campaign::default(),
                Payload::NurtureEnrolled {
                    track_id: track.clone(),
                },
            );
            let (next, high_intent, unsubscribed) = self.nurture(at, &person, &campaign);
            at = next;
            if unsubscribed {
                return;
            }
            self.emit(
                at,
                Some(&person),
                ("hubspot", "workflows"),
                Campaign::default(),
                Payload::NurtureExited { track_id: track },
            );
            if !high_intent && !self.rng.chance(0.45) {
                return; // Never engaged enough to be handed to sales.
            }
            handoffs += 1;
            match self.sales_follow_up(&mut at, &person, &campaign) {
                FollowUp::HandedBack if handoffs < 4 => {
                    self.handbacks += 1;
                    continue;
                }
                _ => return,
            }
        }
    }

    fn anonymous_touch(
        &mut self,
        at: Timestamp,
        person: &Person,
        channel: &str,
        campaign: &Campaign,
    ) {
        match self.rng.below(4) {
            0 if channel == "paid_search" || channel == "paid_social" => {
                let network = if channel == "paid_search" {
                    "google"
                } else {
                    "linkedin"
                };
                let ad_id = Some(format!("ad-{}", self.rng.below(40)));
                self.emit(
                    at,
                    Some(person),
                    ("google_ads", "click"),
                    campaign.clone(),
                    Payload::AdClicked {
                        network: network.to_owned(),
                        ad_id,
                    },
                );
            }
            1 => {
                let action =
                    *self
                        .rng
                        .pick(&[SocialAction::Click, SocialAction::Like, SocialAction::Share]);
                let post_id = Some(format!("urn:li:share:{}", self.rng.below(500)));
                self.emit(
                    at,
                    Some(person),
                    ("linkedin", "webhook"),
                    campaign.clone(),
                    Payload::SocialInteraction {
                        network: "linkedin".into(),
                        action,
                        paid: channel == "paid_social",
                        post_id,
                    },
                );
            }
            _ => {
                let content_type = *self.rng.pick(&[
                    ContentType::Blog,
                    ContentType::Docs,
                    ContentType::Product,
                    ContentType::Careers,
                ]);
                self.content_view(at, person, content_type, campaign.clone());
            }
        }
    }

    fn content_view(
        &mut self,
        at: Timestamp,
        person: &Person,
        content_type: ContentType,
        mut campaign: Campaign,
    ) {
        let asset = self.rng.below(60);
        let slug = format!("{}-{asset}", content_type.as_str());
        campaign.content_id = Some(slug.clone());
        let id = self.emit(
            at,
            Some(person),
            ("web", "analytics.js"),
            campaign,
            Payload::ContentViewed {
                url: format!("https://baton.example/{}/{slug}", content_type.as_str()),
                content_type,
                title: None,
            },
        );
        if let Some(target) = id
            && self.rng.chance(0.004)
        {
            // Traffic later found to be a bot.
            let at = self.later(at, 24, 24 * 14);
            self.emit(
                at,
                None,
                ("baton", "admin"),
                Campaign::default(),
                Payload::Retracted {
                    target,
                    reason: "bot".into(),
                },
            );
        }
    }

    /// Nurture touches; returns (time, high intent shown, unsubscribed).
    fn nurture(
        &mut self,
        mut at: Timestamp,
        person: &Person,
        campaign: &Campaign,
    ) -> (Timestamp, bool, bool) {
        let mut high_intent = false;
        // More engagement packs more touches into the same weeks, so the history's span does
        // not cut them off.
        let engagement = self.config.engagement.max(1);
        let touches = (2 + self.rng.below(12)) * u64::from(engagement);
        let (soonest, latest) = (12 / i64::from(engagement), 24 * 9 / i64::from(engagement));
        for _ in 0..touches {
            at = self.later(at, soonest.max(1), latest.max(2));
            match self.rng.below(10) {
                0..=3 => {
                    let email_id = format!("nurture-{}", self.rng.below(20));
                    let email = Campaign {
                        channel: Some("email".into()),
                        ..campaign.clone()
                    };
                    self.emit(
                        at,
                        Some(person),
                        ("sendgrid", "webhook"),
                        email.clone(),
                        Payload::EmailSent {
                            email_id: email_id.clone(),
                        },
                    );
                    // Exits scale down with engagement, so more touches are not cut short.
                    if self.rng.chance(0.01 / f64::from(engagement)) {
                        self.emit(
                            at.add_millis(2_000),
                            Some(person),
                            ("sendgrid", "webhook"),
                            email,
                            Payload::EmailBounced {
                                email_id,
                                hard: true,
                            },
                        );
                        return (at, false, true);
                    }
                    self.emit(
                        at.add_millis(2_000),
                        Some(person),
                        ("sendgrid", "webhook"),
                        email.clone(),
                        Payload::EmailDelivered {
                            email_id: email_id.clone(),
                        },
                    );
                    if self.rng.chance(0.55) {
                        let opened = self.later(at, 1, 30);
                        self.emit(
                            opened,
                            Some(person),
                            ("sendgrid", "webhook"),
                            email.clone(),
                            Payload::EmailOpened {
                                email_id: email_id.clone(),
                            },
                        );
                        if self.rng.chance(0.35) {
                            self.emit(
                                opened.add_millis(40_000),
                                Some(person),
                                ("sendgrid", "webhook"),
                                email.clone(),
                                Payload::EmailClicked {
                                    email_id: email_id.clone(),
                                    link_url: Some("https://baton.example/case-study/acme".into()),
                                },
                            );
                        }
                    }
                    if self.rng.chance(0.02 / f64::from(engagement)) {
                        let when = self.later(at, 1, 48);
                        self.emit(
                            when,
                            Some(person),
                            ("sendgrid", "webhook"),
                            email,
                            Payload::EmailUnsubscribed { email_id },
                        );
                        return (at, false, true);
                    }
                }
                4..=6 => {
                    let content_type = *self.rng.pick(&[
                        ContentType::CaseStudy,
                        ContentType::Pricing,
                        ContentType::Whitepaper,
                        ContentType::Video,
                        ContentType::Blog,
                    ]);
                    self.content_view(at, person, content_type, campaign.clone());
                }
                7 => {
                    let webinar_id = format!("webinar-{}", self.rng.below(12));
                    let webinar = Campaign {
                        channel: Some("events".into()),
                        campaign_id: Some(webinar_id.clone()),
                        content_id: None,
                    };
                    self.emit(
                        at,
                        Some(person),
                        ("zoom", "webhook"),
                        webinar.clone(),
                        Payload::WebinarRegistered {
                            webinar_id: webinar_id.clone(),
                        },
                    );
                    if self.rng.chance(0.5) {
                        let minutes = u32::try_from(self.rng.between(5, 60)).unwrap_or(5);
                        let when = self.later(at, 24, 24 * 7);
                        self.emit(
                            when,
                            Some(person),
                            ("zoom", "webhook"),
                            webinar,
                            Payload::WebinarAttended {
                                webinar_id,
                                minutes,
                            },
                        );
                    }
                }
                8 => {
                    let action = *self.rng.pick(&[
                        SocialAction::Like,
                        SocialAction::Comment,
                        SocialAction::Share,
                        SocialAction::Click,
                    ]);
                    let post_id = Some(format!("urn:li:share:{}", self.rng.below(500)));
                    self.emit(
                        at,
                        Some(person),
                        ("linkedin", "webhook"),
                        campaign.clone(),
                        Payload::SocialInteraction {
                            network: "linkedin".into(),
                            action,
                            paid: false,
                            post_id,
                        },
                    );
                }
                _ => {
                    if self.rng.chance(0.3) {
                        let exec_event_id = format!("exec-dinner-{}", self.rng.below(6));
                        let events = Campaign {
                            channel: Some("events".into()),
                            campaign_id: Some(exec_event_id.clone()),
                            content_id: None,
                        };
                        self.emit(
                            at,
                            Some(person),
                            ("salesforce", "campaigns"),
                            events.clone(),
                            Payload::ExecutiveEventInvited {
                                exec_event_id: exec_event_id.clone(),
                            },
                        );
                        if self.rng.chance(0.4) {
                            let when = self.later(at, 24 * 5, 24 * 20);
                            self.emit(
                                when,
                                Some(person),
                                ("salesforce", "campaigns"),
                                events,
                                Payload::ExecutiveEventAttended { exec_event_id },
                            );
                            high_intent = true;
                        }
                    } else if engagement > 1 && !self.rng.chance(1.0 / f64::from(engagement)) {
                        // A demo request ends the round; with more engagement it comes later.
                        self.content_view(at, person, ContentType::Pricing, campaign.clone());
                    } else {
                        self.emit(
                            at,
                            Some(person),
                            ("web", "analytics.js"),
                            campaign.clone(),
                            Payload::DemoRequested {
                                product: Some("baton-cloud".into()),
                            },
                        );
                        high_intent = true;
                        break;
                    }
                }
            }
        }
        (at, high_intent, false)
    }

    fn sales_follow_up(
        &mut self,
        at: &mut Timestamp,
        person: &Person,
        campaign: &Campaign,
    ) -> FollowUp {
        let sdr = (*self.rng.pick(SDRS)).to_owned();
        let crm = ("salesforce", "webhook");
        *at = self.later(*at, 0, 8);
        self.emit(
            *at,
            Some(person),
            crm,
            Campaign::default(),
            Payload::LeadAssigned { owner: sdr.clone() },
        );
        if self.rng.chance(0.08) {
            return FollowUp::Untouched;
        }
        // Time to first action: mostly hours, sometimes days (an SLA breach).
        *at = if self.rng.chance(0.8) {
            self.later(*at, 0, 20)
        } else {
            self.later(*at, 30, 24 * 6)
        };
        let activity = *self.rng.pick(&[
            ActivityKind::Call,
            ActivityKind::Email,
            ActivityKind::Social,
        ]);
        self.emit(
            *at,
            Some(person),
            crm,
            Campaign::default(),
            Payload::SalesActivity {
                owner: sdr.clone(),
                activity,
            },
        );
        *at = self.later(*at, 1, 72);
        match self.rng.below(100) {
            0..=59 => {
                self.emit(
                    *at,
                    Some(person),
                    crm,
                    Campaign::default(),
                    Payload::LeadAccepted { owner: sdr.clone() },
                );
                *at = self.later(*at, 24, 24 * 10);
                let need_declared = self.rng.chance(0.65);
                let ae = (*self.rng.pick(AES)).to_owned();
                self.emit(
                    *at,
                    Some(person),
                    crm,
                    Campaign::default(),
                    Payload::MeetingHeld {
                        owner: Some(ae.clone()),
                        need_declared,
                    },
                );
                if need_declared {
                    self.opportunity(at, person, campaign);
                    FollowUp::Qualified
                } else {
                    *at = self.later(*at, 1, 48);
                    self.emit(
                        *at,
                        Some(person),
                        crm,
                        Campaign::default(),
                        Payload::LeadRecycled {
                            reason: "no_need_yet".into(),
                        },
                    );
                    FollowUp::HandedBack
                }
            }
            60..=84 => {
                let reason = (*self.rng.pick(REJECT_REASONS)).to_owned();
                self.emit(
                    *at,
                    Some(person),
                    crm,
                    Campaign::default(),
                    Payload::LeadRejected {
                        owner: Some(sdr),
                        reason: reason.clone(),
                    },
                );
                if self.rng.chance(0.6) {
                    *at = self.later(*at, 1, 48);
                    self.emit(
                        *at,
                        Some(person),
                        crm,
                        Campaign::default(),
                        Payload::LeadRecycled { reason },
                    );
                    FollowUp::HandedBack
                } else {
                    FollowUp::Ended
                }
            }
            _ => {
                let reason = (*self.rng.pick(DISQUALIFY_REASONS)).to_owned();
                self.emit(
                    *at,
                    Some(person),
                    crm,
                    Campaign::default(),
                    Payload::LeadDisqualified { reason },
                );
                FollowUp::Ended
            }
        }
    }

    fn usd(cents: i64) -> Money {
        Money {
            minor_units: cents,
            currency: "USD".into(),
        }
    }

    /// Opens (or joins) the account's opportunity and takes it to a close.
    fn opportunity(&mut self, at: &mut Timestamp, person: &Person, campaign: &Campaign) {
        let crm = ("salesforce", "cdc");
        if self.opportunity.as_ref().is_some_and(|o| !o.closed) {
            return; // This person joins the buying group of the open opportunity.
        }
        self.opportunities += 1;
        let amount = 100 * self.rng.between(80, 2_000) * 100; // $8k–$200k, whole hundreds
        *at = self.later(*at, 1, 72);
        let created_at = *at;
        self.opportunity = Some(Opportunity {
            id: format!("opp-{:06}-{}", self.index, self.opportunities),
            closed: false,
        });
        self.emit(
            *at,
            Some(person),
            crm,
            Campaign::default(),
            Payload::OpportunityCreated {
                amount: Some(Self::usd(amount)),
                stage: Some("discovery".into()),
            },
        );
        let mut stage = "discovery";
        for next in ["evaluation", "proposal"] {
            *at = self.later(*at, 24 * 3, 24 * 21);
            self.emit(
                *at,
                Some(person),
                crm,
                Campaign::default(),
                Payload::OpportunityStageChanged {
                    from: Some(stage.into()),
                    to: next.into(),
                },
            );
            stage = next;
            if self.rng.chance(0.12) {
                return self.close_lost(at, person);
            }
        }
        let proposal_id = format!("prop-{:06}-{}", self.index, self.opportunities);
        let mut quoted = amount;
        if self.rng.chance(0.3) {
            quoted = amount * self.rng.between(80, 110) / 100 / 100 * 100;
            self.emit(
                *at,
                Some(person),
                crm,
                Campaign::default(),
                Payload::OpportunityAmountChanged {
                    amount: Self::usd(quoted),
                },
            );
        }
        *at = self.later(*at, 2, 24 * 5);
        self.emit(
            *at,
            Some(person),
            crm,
            Campaign::default(),
            Payload::ProposalSent {
                proposal_id: proposal_id.clone(),
                amount: Self::usd(quoted),
            },
        );
        *at = self.later(*at, 1, 24 * 4);
        self.emit(
            *at,
            Some(person),
            ("docsend", "webhook"),
            Campaign::default(),
            Payload::ProposalViewed { proposal_id },
        );
        // Marketing steps back in during the deal: a case study to the buying group.
        if self.rng.chance(0.5) {
            *at = self.later(*at, 24, 24 * 7);
            self.content_view(*at, person, ContentType::CaseStudy, campaign.clone());
        }
        *at = self.later(*at, 24 * 5, 24 * 45);
        if self.rng.chance(0.38) {
            // A third of the deals close below the proposal: a discount to get the signature.
            let signed = if self.rng.chance(0.33) {
                quoted * self.rng.between(70, 95) / 100 / 100 * 100
            } else {
                quoted
            };
            let won_id = self.emit(
                *at,
                Some(person),
                crm,
                Campaign::default(),
                Payload::OpportunityClosedWon {
                    amount: Self::usd(signed),
                },
            );
            if let Some(opportunity) = self.opportunity.as_mut() {
                opportunity.closed = true;
            }
            if let Some(target) = won_id
                && self.rng.chance(0.02)
            {
                let corrected = signed - signed / 10 / 100 * 100;
                let when = self.later(*at, 24, 24 * 10);
                self.emit(
                    when,
                    None,
                    ("salesforce", "cdc"),
                    Campaign::default(),
                    Payload::Corrected {
                        target,
                        reason: "discount keyed after close".into(),
                        occurred_at: None,
                        replacement: Some(Box::new(Payload::OpportunityClosedWon {
                            amount: Self::usd(corrected),
                        })),
                    },
                );
            }
            let sale = Sale {
                at: *at,
                amount: signed,
                discounted: signed < quoted * 95 / 100,
                cycle_days: (at.unix_millis() - created_at.unix_millis()) / DAY,
                handbacks: self.handbacks,
                channel: campaign.channel.clone(),
            };
            self.customer_life(&sale, person);
        } else if self.rng.chance(0.75) {
            self.close_lost(at, person);
        }
        // Otherwise the deal is still open when the history ends.
    }

    /// After a win: the subscription and what becomes of it, month by month, until the
    /// history ends or the customer churns.
    fn customer_life(&mut self, sale: &Sale, person: &Person) {
        let billing = ("chargebee", "webhook");
        // How well the deal was sold sets how likely the customer is to stay and to grow.
        let mut risk: f64 = 0.12;
        if sale.discounted {
            risk += 0.12;
        }
        if sale.cycle_days > 90 {
            risk += 0.08;
        }
        risk += 0.08 * f64::from(sale.handbacks.min(3));
        match sale.channel.as_deref() {
            Some("referral") | Some("organic_search") => risk -= 0.07,
            Some("paid_social") => risk += 0.04,
            _ => {}
        }
        let risk = risk.clamp(0.02, 0.8);
        self.subscriptions += 1;
        let subscription_id = format!("sub-{:06}-{}", self.index, self.subscriptions);
        let mut at = self.later(sale.at, 24, 24 * 14);
        let mut amount = sale.amount;
        let plan = (*self.rng.pick(PLANS)).to_owned();
        self.emit(
            at,
            None,
            billing,
            Campaign::default(),
            Payload::SubscriptionStarted {
                subscription_id: subscription_id.clone(),
                amount: Self::usd(amount),
                term_months: 12,
                plan: Some(plan),
            },
        );
        let mut users = u32::try_from(self.rng.between(3, 60)).unwrap_or(3);
        for month in 1..=36 {
            at = at.add_millis(30 * DAY);
            if at > self.end {
                return;
            }
            // Usage drifts up for a healthy customer and down for one at risk.
            let drift = if self.rng.chance(1.0 - risk) { 11 } else { 8 };
            users = (users * drift / 10).clamp(1, 5_000);
            self.emit(
                at,
                None,
                ("product", "usage"),
                Campaign::default(),
                Payload::ProductUsageSummarized {
                    period_days: 30,
                    active_users: users,
                },
            );
            if month % 4 == 2 {
                let score = self.nps_score(risk);
                self.emit(
                    at.add_millis(HOUR),
                    Some(person),
                    ("delighted", "webhook"),
                    Campaign::default(),
                    Payload::NpsResponded {
                        score,
                        comment: None,
                    },
                );
                if score >= 9 {
                    self.advocate(at.add_millis(2 * HOUR), person);
                }
            }
            if month % 12 == 0 {
                if self.rng.chance(risk) {
                    let reason = (*self.rng.pick(CHURN_REASONS)).to_owned();
                    self.emit(
                        at,
                        None,
                        billing,
                        Campaign::default(),
                        Payload::SubscriptionChurned {
                            subscription_id,
                            reason,
                        },
                    );
                    return;
                }
                amount = amount * self.rng.between(100, 112) / 100 / 100 * 100;
                self.emit(
                    at,
                    None,
                    billing,
                    Campaign::default(),
                    Payload::SubscriptionRenewed {
                        subscription_id: subscription_id.clone(),
                        amount: Self::usd(amount),
                        term_months: 12,
                    },
                );
            } else if self.rng.chance((1.0 - risk) * 0.06) {
                amount = amount * self.rng.between(110, 150) / 100 / 100 * 100;
                let motion = *self
                    .rng
                    .pick(&[ExpansionMotion::Upsell, ExpansionMotion::CrossSell]);
                self.emit(
                    at,
                    None,
                    billing,
                    Campaign::default(),
                    Payload::SubscriptionExpanded {
                        subscription_id: subscription_id.clone(),
                        amount: Self::usd(amount),
                        motion,
                        plan: None,
                    },
                );
            } else if self.rng.chance(risk * 0.05) {
                amount = (amount * self.rng.between(60, 90) / 100 / 100 * 100).max(100);
                let reason = (*self.rng.pick(CONTRACTION_REASONS)).to_owned();
                self.emit(
                    at,
                    None,
                    billing,
                    Campaign::default(),
                    Payload::SubscriptionContracted {
                        subscription_id: subscription_id.clone(),
                        amount: Self::usd(amount),
                        reason: Some(reason),
                    },
                );
            }
        }
    }

    /// An NPS answer: promoters are likelier the lower the risk.
    fn nps_score(&mut self, risk: f64) -> u8 {
        let roll = self.rng.next_u64() as f64 / u64::MAX as f64;
        let score = if roll < 0.7 - 1.5 * risk {
            self.rng.between(9, 10)
        } else if roll < 0.95 - 1.2 * risk {
            self.rng.between(7, 8)
        } else {
            self.rng.between(0, 6)
        };
        u8::try_from(score).unwrap_or(7)
    }

    /// A promoter sometimes gives a reference call, a review, a case study or a referral (of
    /// another account of the history).
    fn advocate(&mut self, at: Timestamp, person: &Person) {
        let act = match self.rng.below(100) {
            0..=14 => AdvocacyAct::ReferenceCall,
            15..=26 => AdvocacyAct::Review,
            27..=30 => AdvocacyAct::CaseStudy,
            31..=40 => AdvocacyAct::Referral,
            _ => return,
        };
        let referred_account_id = (act == AdvocacyAct::Referral).then(|| {
            let other = (self.index + 1 + self.rng.below(CHUNK_ACCOUNTS)) % self.config.accounts;
            format!("acct-{other:06}")
        });
        self.emit(
            at,
            Some(person),
            ("hubspot", "webhook"),
            Campaign::default(),
            Payload::Advocated {
                act,
                referred_account_id,
                channel: None,
            },
        );
    }

    fn close_lost(&mut self, at: &mut Timestamp, person: &Person) {
        *at = self.later(*at, 24, 24 * 20);
        let reason = (*self.rng.pick(LOSS_REASONS)).to_owned();
        self.emit(
            *at,
            Some(person),
            ("salesforce", "cdc"),
            Campaign::default(),
            Payload::OpportunityClosedLost { reason },
        );
        if let Some(opportunity) = self.opportunity.as_mut() {
            opportunity.closed = true;
        }
    }
}

enum FollowUp {
    Untouched,
    Qualified,
    HandedBack,
    Ended,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a: Vec<Event> = History::new(HistoryConfig::new(7, 40)).collect();
        let b: Vec<Event> = History::new(HistoryConfig::new(7, 40)).collect();
        let c: Vec<Event> = History::new(HistoryConfig::new(8, 40)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn accounts_draw_independent_numbers() {
        // Regression: streams seeded with seed ^ index * constant overlapped, so different
        // accounts gave their people the same anonymous ids.
        let mut anonymous = HashMap::new();
        for event in History::new(HistoryConfig::new(9, 200)) {
            if let Payload::Identified {
                anonymous_id,
                person_id,
            } = &event.payload
            {
                let previous = anonymous.insert(anonymous_id.clone(), person_id.clone());
                assert!(
                    previous.is_none_or(|p| p == *person_id),
                    "{anonymous_id} identified as two people"
                );
            }
        }
        assert!(anonymous.len() > 200);
    }

    #[test]
    fn more_engagement_gives_longer_histories_over_about_as_many_people() {
        let people = |engagement: u32| {
            let mut config = HistoryConfig::new(5, 200);
            config.engagement = engagement;
            let mut events = 0usize;
            let mut people = HashSet::new();
            for event in History::new(config) {
                events += 1;
                if let Some(person) = event.identity.person_id {
                    people.insert(person);
                }
            }
            (events, people)
        };
        let (plain, plain_people) = people(1);
        let (engaged, engaged_people) = people(8);
        assert!(engaged > 3 * plain, "{engaged} events against {plain}");
        // The same accounts; their later draws differ, so the number of people may a little.
        let (a, b) = (engaged_people.len() as f64, plain_people.len() as f64);
        assert!((a - b).abs() <= 0.05 * b, "{a} people against {b}");
    }

    #[test]
    fn history_is_realistic_and_dirty() {
        let events: Vec<Event> = History::new(HistoryConfig::new(42, 300)).collect();
        let mut kinds = HashSet::new();
        let mut ids = HashMap::new();
        let mut duplicates = 0;
        for event in &events {
            kinds.insert(event.kind());
            if ids.insert(event.event_id, event.clone()).is_some() {
                duplicates += 1;
            }
        }
        for kind in [
            "content_viewed",
            "form_submitted",
            "email_clicked",
            "identified",
            "lead_assigned",
            "lead_accepted",
            "lead_rejected",
            "lead_recycled",
            "lead_disqualified",
            "meeting_held",
            "opportunity_created",
            "proposal_sent",
            "opportunity_closed_won",
            "opportunity_closed_lost",
            "account_updated",
            "person_updated",
            "demo_requested",
            "webinar_attended",
            "social_interaction",
            "subscription_started",
            "subscription_renewed",
            "subscription_expanded",
            "subscription_contracted",
            "subscription_churned",
            "nps_responded",
            "product_usage_summarized",
            "advocated",
        ] {
            assert!(
                kinds.iter().any(|k| k.name() == kind),
                "no {kind} in the history"
            );
        }
        assert!(duplicates > 0, "some deliveries are retried");
        let out_of_order = events
            .windows(2)
            .filter(|w| w[1].occurred_at < w[0].occurred_at)
            .count();
        assert!(
            out_of_order > events.len() / 200,
            "late arrivals: {out_of_order}"
        );
        // Hand-backs: someone is recycled and then handed to sales again.
        let recycled: HashSet<_> = events
            .iter()
            .filter(|e| e.kind().name() == "lead_recycled")
            .filter_map(|e| e.identity.person_id.clone())
            .collect();
        let assigned_twice = events
            .iter()
            .filter(|e| e.kind().name() == "lead_assigned")
            .filter_map(|e| e.identity.person_id.clone())
            .fold(HashMap::new(), |mut m, p| {
                *m.entry(p).or_insert(0) += 1;
                m
            })
            .into_iter()
            .filter(|(p, n)| *n > 1 && recycled.contains(p))
            .count();
        assert!(
            assigned_twice > 0,
            "some people are handed to sales more than once"
        );
        // Every event is valid in its JSON form.
        let context = baton_core::ParseContext {
            recorded_at: Timestamp::from_unix_millis(i64::MAX / 4),
            fresh_event_id: EventId::from_source_message("t", "t"),
            max_future_skew_millis: 0,
        };
        for event in events.iter().take(5_000) {
            let json = baton_core::event_to_json(event).to_string();
            let parsed =
                baton_core::parse_event(&json, &context).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(parsed.event_id, event.event_id);
        }
    }

    #[test]
    fn a_customer_s_life_depends_on_how_the_deal_was_sold() {
        let config = HistoryConfig {
            span_days: 1_095,
            ..HistoryConfig::new(5, 2_000)
        };
        let events: Vec<Event> = History::new(config).stored().collect();
        // How each customer was sold: at a discount (won at under 95% of the proposal) or not.
        let mut proposed: HashMap<String, i64> = HashMap::new();
        let mut discounted: HashMap<String, bool> = HashMap::new();
        let mut scores: HashMap<String, Vec<u8>> = HashMap::new();
        let mut started = HashSet::new();
        let mut churned = HashSet::new();
        for event in &events {
            let account = event.identity.account_id.clone().unwrap_or_default();
            match &event.payload {
                Payload::ProposalSent { amount, .. } => {
                    proposed.insert(account, amount.minor_units);
                }
                Payload::OpportunityClosedWon { amount } => {
                    let quoted = proposed
                        .get(&account)
                        .copied()
                        .unwrap_or(amount.minor_units);
                    discounted.insert(account, amount.minor_units * 100 < quoted * 95);
                }
                Payload::NpsResponded { score, .. } => {
                    scores.entry(account).or_default().push(*score)
                }
                Payload::SubscriptionStarted { .. } => {
                    started.insert(account);
                }
                Payload::SubscriptionChurned { .. } => {
                    churned.insert(account);
                }
                _ => {}
            }
        }
        let group = |wanted: bool| -> Vec<&String> {
            started
                .iter()
                .filter(|a| discounted.get(*a) == Some(&wanted))
                .collect()
        };
        let (cut, full) = (group(true), group(false));
        assert!(
            cut.len() > 50 && full.len() > 50,
            "{} {}",
            cut.len(),
            full.len()
        );
        let mean_nps = |accounts: &[&String]| {
            let all: Vec<f64> = accounts
                .iter()
                .flat_map(|a| scores.get(*a).into_iter().flatten())
                .map(|s| f64::from(*s))
                .collect();
            all.iter().sum::<f64>() / all.len().max(1) as f64
        };
        let churn = |accounts: &[&String]| {
            accounts.iter().filter(|a| churned.contains(**a)).count() as f64 / accounts.len() as f64
        };
        let (nps_cut, nps_full) = (mean_nps(&cut), mean_nps(&full));
        assert!(
            nps_cut + 0.3 < nps_full,
            "mean NPS sold at a discount {nps_cut:.2}, at full price {nps_full:.2}"
        );
        let (churn_cut, churn_full) = (churn(&cut), churn(&full));
        assert!(
            churn_cut > churn_full * 1.2,
            "churned sold at a discount {churn_cut:.3}, at full price {churn_full:.3}"
        );
    }
}
