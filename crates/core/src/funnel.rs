//! Funnel definitions: TOML files that say what the stages are, how people enter them, how
//! engagement and fit are scored, what makes an MQL and what closes the follow-up loop.
//!
//! A definition is validated as a whole; every problem is reported with the file, the line and
//! what is wrong. A definition is identified by a hash of its text. The reference for the
//! format and its semantics is `docs/funnels.md`; the shipped default is `funnels/default.toml`.

use crate::event::{ContentType, Kind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// The conversion window when a definition sets none.
pub const DEFAULT_CONVERSION_WINDOW_DAYS: f64 = 90.0;

/// The shipped default definition's text.
pub const DEFAULT_FUNNEL_TOML: &str = include_str!("../../../funnels/default.toml");

/// One problem in a definition file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefinitionError {
    pub file: String,
    /// 1-based; 0 when the problem is with the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// Every problem found in one definition, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionErrors(pub Vec<DefinitionError>);

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Which team owns a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Marketing,
    Sales,
    /// Customer stages only (after the sale): marketing to customers.
    CustomerMarketing,
    /// Customer stages only: onboarding, adoption, renewals.
    CustomerSuccess,
}

impl Owner {
    pub const ALL: [Owner; 4] = [
        Owner::Marketing,
        Owner::Sales,
        Owner::CustomerMarketing,
        Owner::CustomerSuccess,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Owner::Marketing => "marketing",
            Owner::Sales => "sales",
            Owner::CustomerMarketing => "customer_marketing",
            Owner::CustomerSuccess => "customer_success",
        }
    }

    /// Whether the team owns only customer stages.
    pub const fn is_customer(self) -> bool {
        matches!(self, Owner::CustomerMarketing | Owner::CustomerSuccess)
    }
}

/// How a journey ended, for stages that end one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Won,
    Lost,
    /// A customer stage: the customer left.
    Churned,
}

impl Outcome {
    /// Whether reaching it is a loss (lost, churned): not a conversion, not further along.
    pub const fn is_loss(self) -> bool {
        matches!(self, Outcome::Lost | Outcome::Churned)
    }
}

/// An event that moves a person into a stage or detour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Any event of this kind.
    Kind(Kind),
    /// `meeting_held:need_declared`: a meeting where the buyer declared a need.
    MeetingWithNeed,
    /// `meeting_held:no_need`: a meeting where they did not.
    MeetingWithoutNeed,
}

impl Trigger {
    fn parse(text: &str) -> Result<Trigger, String> {
        match text {
            "meeting_held:need_declared" => Ok(Trigger::MeetingWithNeed),
            "meeting_held:no_need" => Ok(Trigger::MeetingWithoutNeed),
            other => parse_kind(other).map(Trigger::Kind),
        }
    }
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::from_name(text).ok_or_else(|| {
        let hint = if text.contains(':') {
            " (the only qualified triggers are meeting_held:need_declared and meeting_held:no_need)"
        } else {
            " (see docs/events.md)"
        };
        format!("unknown event kind {text:?}{hint}")
    })
}

/// A stage of the funnel, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub name: String,
    pub owner: Owner,
    pub enter_on: Vec<Trigger>,
    /// Also entered when the engagement score reaches this.
    pub min_engagement: Option<f64>,
    /// Entered by the MQL rule.
    pub by_mql: bool,
    pub outcome: Option<Outcome>,
}

/// A detour off the main line: recycled, disqualified and the like.
#[derive(Clone, Debug, PartialEq)]
pub struct Detour {
    pub name: String,
    pub enter_on: Vec<Trigger>,
    /// The stage a person in this detour counts as being nurtured in; `None` ends the journey.
    pub back_to: Option<usize>,
}

/// Points for a touch.
#[derive(Clone, Debug, PartialEq)]
pub struct EngagementRule {
    pub kind: Kind,
    /// For `content_viewed`: only these content types (empty: any).
    pub content_types: Vec<ContentType>,
    pub points: f64,
}

/// A person or account trait a fit rule reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trait {
    AccountEmployees,
    AccountIndustry,
    AccountRegion,
    PersonTitle,
    PersonSeniority,
    PersonDepartment,
    PersonCountry,
    /// `yes` when the account's industry and size are those of one of the best current
    /// customers (`docs/funnels.md`, *Fit against the best customers*), else `no`.
    AccountLookalike,
}

impl Trait {
    const ALL: &'static [(&'static str, Trait)] = &[
        ("account.employees", Trait::AccountEmployees),
        ("account.industry", Trait::AccountIndustry),
        ("account.region", Trait::AccountRegion),
        ("person.title", Trait::PersonTitle),
        ("person.seniority", Trait::PersonSeniority),
        ("person.department", Trait::PersonDepartment),
        ("person.country", Trait::PersonCountry),
        ("account.lookalike", Trait::AccountLookalike),
    ];

    pub fn name(self) -> &'static str {
        Trait::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(name, _)| *name)
            .expect("invariant: every trait is listed")
    }

    pub const fn is_numeric(self) -> bool {
        matches!(self, Trait::AccountEmployees)
    }
}

/// What a fit rule checks.
#[derive(Clone, Debug, PartialEq)]
pub enum FitCondition {
    /// A text trait equal to one of these (case-insensitive).
    AnyOf(Vec<String>),
    /// A numeric trait within these bounds, inclusive.
    Between {
        at_least: Option<f64>,
        at_most: Option<f64>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct FitRule {
    pub on: Trait,
    pub condition: FitCondition,
    pub points: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MqlRule {
    pub min_engagement: Option<f64>,
    pub min_fit: f64,
    pub high_intent: Vec<Kind>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sla {
    pub follow_up_millis: i64,
    pub met_by: Vec<Kind>,
}

/// A validated funnel definition.
#[derive(Clone, Debug, PartialEq)]
pub struct FunnelDefinition {
    name: String,
    description: Option<String>,
    conversion_window_days: f64,
    hash: String,
    half_life_days: f64,
    daily_cap: Option<f64>,
    engagement: Vec<EngagementRule>,
    fit: Vec<FitRule>,
    mql: MqlRule,
    sla: Sla,
    stages: Vec<Stage>,
    detours: Vec<Detour>,
    /// The first customer stage (see `customer_from`), worked out once: the fold asks for
    /// every fact.
    customer_from: Option<usize>,
    /// Which detours are customer detours, by index.
    customer_detours: Vec<bool>,
    /// Attribution models and whose touches they credit (`[attribution]`).
    attribution: crate::attribution::Attribution,
}

impl FunnelDefinition {
    /// The shipped default (`funnels/default.toml`).
    pub fn default_funnel() -> FunnelDefinition {
        FunnelDefinition::parse("funnels/default.toml", DEFAULT_FUNNEL_TOML)
            .expect("invariant: the shipped default is valid (a test checks it)")
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<FunnelDefinition, DefinitionErrors> {
        let raw: RawDefinition = toml::from_str(text).map_err(|error| {
            let line = error.span().map_or(0, |span| line_of(text, span.start));
            DefinitionErrors(vec![DefinitionError {
                file: file.to_owned(),
                line,
                message: error.message().trim().to_owned(),
            }])
        })?;
        let mut check = Checker {
            file,
            text,
            errors: Vec::new(),
        };
        let definition = check.definition(raw, text);
        if check.errors.is_empty() {
            Ok(definition)
        } else {
            check.errors.sort_by_key(|e| e.line);
            Err(DefinitionErrors(check.errors))
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// How long a person may stay in a stage and still count as "in flight" (not dropped) in
    /// cohort conversion, in days.
    pub fn conversion_window_days(&self) -> f64 {
        self.conversion_window_days
    }
    /// `sha256:` and the first 16 hex digits of the SHA-256 of the file's bytes.
    pub fn hash(&self) -> &str {
        &self.hash
    }
    pub fn half_life_days(&self) -> f64 {
        self.half_life_days
    }
    pub fn daily_cap(&self) -> Option<f64> {
        self.daily_cap
    }
    pub fn engagement_rules(&self) -> &[EngagementRule] {
        &self.engagement
    }
    /// Whether a fit rule reads `account.lookalike`: journeys then depend on who the best
    /// customers are.
    pub fn reads_lookalike(&self) -> bool {
        self.fit
            .iter()
            .any(|rule| rule.on == Trait::AccountLookalike)
    }

    pub fn fit_rules(&self) -> &[FitRule] {
        &self.fit
    }
    pub fn mql(&self) -> &MqlRule {
        &self.mql
    }
    pub fn sla(&self) -> &Sla {
        &self.sla
    }
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }
    pub fn detours(&self) -> &[Detour] {
        &self.detours
    }
    /// The index of the first customer stage (the bow tie past the sale: the stages after
    /// every `won` and `lost` outcome), when the definition has any.
    pub fn customer_from(&self) -> Option<usize> {
        self.customer_from
    }

    /// Whether a stage is a customer stage.
    pub fn is_customer_stage(&self, index: usize) -> bool {
        self.customer_from().is_some_and(|from| index >= from)
    }

    /// Whether a detour is a customer one: it returns to a customer stage, and only customers
    /// take it.
    pub fn is_customer_detour(&self, detour: &Detour) -> bool {
        detour
            .back_to
            .is_some_and(|stage| self.is_customer_stage(stage))
    }

    /// Whether the detour at `index` is a customer detour.
    pub fn is_customer_detour_at(&self, index: usize) -> bool {
        self.customer_detours.get(index).copied().unwrap_or(false)
    }

    /// The attribution models and the touches they credit; no models without
    /// `[attribution]`.
    pub fn attribution(&self) -> &crate::attribution::Attribution {
        &self.attribution
    }

    /// The index of the stage entered by the MQL rule.
    pub fn mql_stage(&self) -> usize {
        self.stages
            .iter()
            .position(|stage| stage.by_mql)
            .expect("invariant: validation requires one MQL stage")
    }
}

/// More than zero and finite (NaN is neither).
fn is_positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    funnel: RawFunnel,
    engagement: Option<RawEngagement>,
    fit: Option<RawFit>,
    mql: Spanned<RawMql>,
    sla: Spanned<RawSla>,
    #[serde(rename = "stage", default)]
    stages: Vec<Spanned<RawStage>>,
    #[serde(rename = "detour", default)]
    detours: Vec<Spanned<RawDetour>>,
    attribution: Option<crate::attribution::RawAttribution>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunnel {
    name: Spanned<String>,
    description: Option<String>,
    conversion_window_days: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngagement {
    half_life_days: Spanned<f64>,
    daily_cap: Option<Spanned<f64>>,
    #[serde(default)]
    points: Vec<Spanned<RawEngagementRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngagementRule {
    kind: Spanned<String>,
    #[serde(default)]
    content_type: Vec<Spanned<String>>,
    points: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFit {
    #[serde(default)]
    points: Vec<Spanned<RawFitRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFitRule {
    #[serde(rename = "trait")]
    on: Spanned<String>,
    any_of: Option<Vec<String>>,
    at_least: Option<f64>,
    at_most: Option<f64>,
    points: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMql {
    min_engagement: Option<f64>,
    #[serde(default)]
    min_fit: f64,
    #[serde(default)]
    high_intent: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    follow_up_hours: Spanned<f64>,
    met_by: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Spanned<String>,
    owner: Spanned<String>,
    #[serde(default)]
    enter_on: Vec<Spanned<String>>,
    min_engagement: Option<Spanned<f64>>,
    #[serde(default)]
    mql: bool,
    outcome: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetour {
    name: Spanned<String>,
    #[serde(default)]
    enter_on: Vec<Spanned<String>>,
    back_to: Option<Spanned<String>>,
}

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<DefinitionError>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push(DefinitionError {
            file: self.file.to_owned(),
            line: line_of(self.text, span.start),
            message,
        });
    }

    fn kind(&mut self, text: &Spanned<String>, context: &str) -> Option<Kind> {
        match parse_kind(text.get_ref()) {
            Ok(kind) => Some(kind),
            Err(message) => {
                self.error(text.span(), format!("{context}: {message}"));
                None
            }
        }
    }

    fn triggers(&mut self, texts: &[Spanned<String>], context: &str) -> Vec<Trigger> {
        let mut triggers = Vec::new();
        for text in texts {
            match Trigger::parse(text.get_ref()) {
                Ok(trigger) => triggers.push(trigger),
                Err(message) => self.error(text.span(), format!("{context}: {message}")),
            }
        }
        triggers
    }

    fn name(&mut self, name: &Spanned<String>, what: &str, seen: &mut Vec<String>) -> String {
        let text = name.get_ref();
        // Stage names become SQL column and table names; a funnel's name may also use `-`.
        let hyphen = what == "funnel";
        let valid = !text.is_empty()
            && text.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (hyphen && b == b'-')
            });
        if !valid {
            let allowed = if hyphen {
                "digits, `_` and `-`"
            } else {
                "digits and `_`"
            };
            self.error(
                name.span(),
                format!("{what} name {text:?} must be lowercase letters, {allowed}"),
            );
        }
        if seen.contains(text) {
            self.error(name.span(), format!("{what} name {text:?} is used twice"));
        }
        seen.push(text.clone());
        text.clone()
    }

    fn definition(&mut self, raw: RawDefinition, text: &str) -> FunnelDefinition {
        let hash = {
            let digest = Sha256::digest(text.as_bytes());
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        };
        let mut seen = Vec::new();
        let name = self.name(&raw.funnel.name, "funnel", &mut Vec::new());
        let conversion_window_days = match &raw.funnel.conversion_window_days {
            None => DEFAULT_CONVERSION_WINDOW_DAYS,
            Some(days) => {
                let value = *days.get_ref();
                if !(value > 0.0 && value.is_finite()) {
                    self.error(
                        days.span(),
                        format!(
                            "funnel: conversion_window_days must be a positive number of days, got {value}"
                        ),
                    );
                }
                value
            }
        };

        let (half_life_days, daily_cap, engagement) = match raw.engagement {
            None => (30.0, None, Vec::new()),
            Some(engagement) => {
                let half_life = *engagement.half_life_days.get_ref();
                if !is_positive(half_life) {
                    self.error(
                        engagement.half_life_days.span(),
                        format!("engagement.half_life_days must be more than 0, got {half_life}"),
                    );
                }
                let cap = engagement.daily_cap.map(|cap| {
                    if !is_positive(*cap.get_ref()) {
                        self.error(
                            cap.span(),
                            format!(
                                "engagement.daily_cap must be more than 0, got {}",
                                cap.get_ref()
                            ),
                        );
                    }
                    *cap.get_ref()
                });
                let mut rules = Vec::new();
                for rule in engagement.points {
                    let span = rule.span();
                    let rule = rule.into_inner();
                    let Some(kind) = self.kind(&rule.kind, "engagement.points") else {
                        continue;
                    };
                    let mut content_types = Vec::new();
                    if !rule.content_type.is_empty() && kind != Kind::ContentViewed {
                        self.error(span.clone(), format!("engagement.points: `content_type` only applies to content_viewed, not {kind}"));
                    }
                    for value in &rule.content_type {
                        match ContentType::from_name(value.get_ref()) {
                            Some(content_type) => content_types.push(content_type),
                            None => self.error(
                                value.span(),
                                format!(
                                    "engagement.points: unknown content type {:?}; expected one of {}",
                                    value.get_ref(),
                                    ContentType::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                                ),
                            ),
                        }
                    }
                    if !rule.points.is_finite() {
                        self.error(
                            span,
                            "engagement.points: `points` must be a finite number".into(),
                        );
                    }
                    rules.push(EngagementRule {
                        kind,
                        content_types,
                        points: rule.points,
                    });
                }
                (half_life, cap, rules)
            }
        };

        let mut fit = Vec::new();
        for rule in raw.fit.map(|f| f.points).unwrap_or_default() {
            let span = rule.span();
            let rule = rule.into_inner();
            let Some(on) = Trait::ALL
                .iter()
                .find(|(n, _)| n == rule.on.get_ref())
                .map(|(_, t)| *t)
            else {
                let names: Vec<&str> = Trait::ALL.iter().map(|(n, _)| *n).collect();
                self.error(
                    rule.on.span(),
                    format!(
                        "fit.points: unknown trait {:?}; expected one of {}",
                        rule.on.get_ref(),
                        names.join(", ")
                    ),
                );
                continue;
            };
            let condition = match (rule.any_of, rule.at_least, rule.at_most) {
                (Some(values), None, None)
                    if on == Trait::AccountLookalike
                        && values.iter().any(|v| !matches!(v.as_str(), "yes" | "no")) =>
                {
                    self.error(span, format!("fit.points: account.lookalike is `yes` or `no`, got any_of = {values:?}"));
                    continue;
                }
                (Some(values), None, None) if !on.is_numeric() => {
                    FitCondition::AnyOf(values.into_iter().map(|v| v.to_lowercase()).collect())
                }
                (None, at_least, at_most)
                    if on.is_numeric() && (at_least.is_some() || at_most.is_some()) =>
                {
                    FitCondition::Between { at_least, at_most }
                }
                _ if on.is_numeric() => {
                    self.error(span, format!("fit.points: {} is a number: give `at_least` and/or `at_most`, not `any_of`", on.name()));
                    continue;
                }
                _ => {
                    self.error(
                        span,
                        format!(
                            "fit.points: {} is text: give `any_of = [...]`, not bounds",
                            on.name()
                        ),
                    );
                    continue;
                }
            };
            fit.push(FitRule {
                on,
                condition,
                points: rule.points,
            });
        }

        let mql_span = raw.mql.span();
        let raw_mql = raw.mql.into_inner();
        let mut high_intent = Vec::new();
        for text in &raw_mql.high_intent {
            if let Some(kind) = self.kind(text, "mql.high_intent") {
                high_intent.push(kind);
            }
        }
        if raw_mql.min_engagement.is_none() && high_intent.is_empty() {
            self.error(
                mql_span.clone(),
                "mql: give `min_engagement`, `high_intent` or both, or nobody can become an MQL"
                    .into(),
            );
        }
        let mql = MqlRule {
            min_engagement: raw_mql.min_engagement,
            min_fit: raw_mql.min_fit,
            high_intent,
        };

        let sla_span = raw.sla.span();
        let raw_sla = raw.sla.into_inner();
        let hours = *raw_sla.follow_up_hours.get_ref();
        if !is_positive(hours) {
            self.error(
                raw_sla.follow_up_hours.span(),
                format!("sla.follow_up_hours must be more than 0, got {hours}"),
            );
        }
        let mut met_by = Vec::new();
        for text in &raw_sla.met_by {
            if let Some(kind) = self.kind(text, "sla.met_by") {
                met_by.push(kind);
            }
        }
        if met_by.is_empty() {
            self.error(
                sla_span,
                "sla.met_by: name at least one event kind that closes the loop".into(),
            );
        }
        #[allow(clippy::cast_possible_truncation)]
        let sla = Sla {
            follow_up_millis: (hours * 3_600_000.0) as i64,
            met_by,
        };

        let mut stages = Vec::new();
        let mut stage_spans = Vec::new();
        for stage in &raw.stages {
            let span = stage.span();
            let stage = stage.get_ref();
            let name = self.name(&stage.name, "stage", &mut seen);
            let context = format!("stage `{name}`");
            let owner = match Owner::ALL
                .into_iter()
                .find(|owner| owner.as_str() == stage.owner.get_ref().as_str())
            {
                Some(owner) => owner,
                None => {
                    self.error(
                        stage.owner.span(),
                        format!(
                            "{context}: owner must be \"marketing\", \"sales\", \"customer_marketing\" or \"customer_success\", got {:?}",
                            stage.owner.get_ref()
                        ),
                    );
                    Owner::Marketing
                }
            };
            let enter_on = self.triggers(&stage.enter_on, &context);
            let outcome = match stage
                .outcome
                .as_ref()
                .map(|o| (o.get_ref().as_str(), o.span()))
            {
                None => None,
                Some(("won", _)) => Some(Outcome::Won),
                Some(("lost", _)) => Some(Outcome::Lost),
                Some(("churned", _)) => Some(Outcome::Churned),
                Some((other, span)) => {
                    self.error(
                        span,
                        format!("{context}: outcome must be \"won\", \"lost\" or \"churned\", got {other:?}"),
                    );
                    None
                }
            };
            let min_engagement = stage.min_engagement.as_ref().map(|m| *m.get_ref());
            if stage.enter_on.is_empty() && min_engagement.is_none() && !stage.mql {
                self.error(span.clone(), format!("{context} can never be entered: give `enter_on`, `min_engagement` or `mql = true`"));
            }
            if stage.mql && (owner != Owner::Marketing) {
                self.error(span.clone(), format!("{context}: the MQL stage is where marketing hands off, so its owner must be marketing"));
            }
            if matches!(outcome, Some(Outcome::Won | Outcome::Lost)) && owner != Owner::Sales {
                self.error(
                    span.clone(),
                    format!("{context}: a stage that ends a deal must be owned by sales"),
                );
            }
            stage_spans.push(span);
            stages.push(Stage {
                name,
                owner,
                enter_on,
                min_engagement,
                by_mql: stage.mql,
                outcome,
            });
        }
        if stages.is_empty() {
            self.error(0..0, "no [[stage]]: a funnel needs stages".into());
        }
        let mql_stages: Vec<usize> = stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.by_mql)
            .map(|(i, _)| i)
            .collect();
        match mql_stages.as_slice() {
            [] if !stages.is_empty() => self.error(
                0..0,
                "no stage has `mql = true`: one stage must be entered by the MQL rule".into(),
            ),
            [_, second, ..] => self.error(
                stage_spans[*second].clone(),
                "a second stage with `mql = true`: only one stage is entered by the MQL rule"
                    .into(),
            ),
            _ => {}
        }
        // The acquisition line ends with its won and lost outcomes; the stages after them are
        // the customer's (the bow tie), entered only after the sale.
        let customer_from = stages
            .iter()
            .rposition(|s| matches!(s.outcome, Some(Outcome::Won | Outcome::Lost)))
            .map_or(stages.len(), |last| last + 1);
        for (index, stage) in stages.iter().enumerate() {
            let customer = index >= customer_from;
            if !customer && stage.owner.is_customer() {
                self.error(stage_spans[index].clone(), format!("stage `{}`: {} owns customer stages, which come after the won and lost outcomes", stage.name, stage.owner.as_str()));
            }
            if !customer && stage.outcome == Some(Outcome::Churned) {
                self.error(stage_spans[index].clone(), format!("stage `{}`: a churned outcome ends a customer's life and comes after the won and lost outcomes, with the customer stages", stage.name));
            }
            if customer && stage.owner == Owner::Marketing {
                self.error(stage_spans[index].clone(), format!("stage `{}`: a customer stage (after the won and lost outcomes) is owned by customer_marketing, customer_success or sales", stage.name));
            }
            if customer && (stage.by_mql || stage.min_engagement.is_some()) {
                self.error(stage_spans[index].clone(), format!("stage `{}`: a customer stage is entered by `enter_on` only (no `mql` or `min_engagement`)", stage.name));
            }
        }
        let first_churned = stages
            .iter()
            .position(|s| s.outcome == Some(Outcome::Churned));
        if let Some(first_churned) = first_churned {
            for (index, stage) in stages.iter().enumerate().skip(first_churned) {
                if stage.outcome != Some(Outcome::Churned) {
                    self.error(
                        stage_spans[index].clone(),
                        format!(
                            "stage `{}` comes after a churned outcome; churned stages come last",
                            stage.name
                        ),
                    );
                }
            }
        }
        let stages_acquired = &stages[..customer_from.min(stages.len())];
        // Marketing stages come first, then sales: the hand-off is one step, never a loop.
        if let Some(first_sales) = stages_acquired.iter().position(|s| s.owner == Owner::Sales) {
            for (index, stage) in stages_acquired.iter().enumerate().skip(first_sales) {
                if stage.owner == Owner::Marketing {
                    self.error(stage_spans[index].clone(), format!("stage `{}`: marketing stages must all come before the first sales stage (`{}`); hand-backs are detours", stage.name, stages[first_sales].name));
                }
            }
        } else if !stages.is_empty() {
            self.error(
                0..0,
                "no stage is owned by sales: a funnel hands off to sales somewhere".into(),
            );
        }
        let first_outcome = stages_acquired.iter().position(|s| s.outcome.is_some());
        if let Some(first_outcome) = first_outcome {
            for (index, stage) in stages_acquired.iter().enumerate().skip(first_outcome) {
                if stage.outcome.is_none() {
                    self.error(stage_spans[index].clone(), format!("stage `{}` comes after an outcome stage; outcome stages (won, lost) come last", stage.name));
                }
            }
        }
        if !stages.iter().any(|s| s.outcome == Some(Outcome::Won)) && !stages.is_empty() {
            self.error(
                0..0,
                "no stage has `outcome = \"won\"`: revenue needs a won stage".into(),
            );
        }

        let mut detours = Vec::new();
        for detour in &raw.detours {
            let span = detour.span();
            let detour = detour.get_ref();
            let name = self.name(&detour.name, "detour", &mut seen);
            let context = format!("detour `{name}`");
            let enter_on = self.triggers(&detour.enter_on, &context);
            if enter_on.is_empty() {
                self.error(
                    span,
                    format!("{context} can never be entered: give `enter_on`"),
                );
            }
            let back_to = match &detour.back_to {
                None => None,
                Some(target) => match stages.iter().position(|s| s.name == *target.get_ref()) {
                    Some(index)
                        if stages[index].owner == Owner::Marketing && !stages[index].by_mql =>
                    {
                        Some(index)
                    }
                    // A customer detour: back to a customer stage (a customer at risk returns
                    // to onboarding, say).
                    Some(index) if index >= customer_from && stages[index].outcome.is_none() => {
                        Some(index)
                    }
                    Some(_) => {
                        // Going back to a sales stage or to MQL itself would loop without nurture.
                        self.error(target.span(), format!("{context}: back_to must name a marketing stage before the MQL stage, or a customer stage, got {:?}", target.get_ref()));
                        None
                    }
                    None => {
                        self.error(
                            target.span(),
                            format!(
                                "{context}: back_to names unknown stage {:?}",
                                target.get_ref()
                            ),
                        );
                        None
                    }
                },
            };
            detours.push(Detour {
                name,
                enter_on,
                back_to,
            });
        }

        let customer_from = stages
            .iter()
            .rposition(|stage| matches!(stage.outcome, Some(Outcome::Won | Outcome::Lost)))
            .map(|last| last + 1)
            .filter(|end| *end < stages.len());
        let customer_detours = detours
            .iter()
            .map(|detour: &Detour| {
                detour
                    .back_to
                    .is_some_and(|stage| customer_from.is_some_and(|from| stage >= from))
            })
            .collect();
        let attribution = match raw.attribution {
            None => crate::attribution::Attribution::default(),
            Some(raw) => crate::attribution::check(raw, &mut |span, message| {
                self.error(span, message);
            }),
        };
        FunnelDefinition {
            attribution,
            customer_from,
            customer_detours,
            name,
            description: raw.funnel.description,
            conversion_window_days,
            hash,
            half_life_days,
            daily_cap,
            engagement,
            fit,
            mql,
            sla,
            stages,
            detours,
        }
    }
}
