//! Attribution models, as a funnel definition declares them (`[attribution]`,
//! `docs/funnels.md`), and how one model divides an opportunity's amount among its touches:
//! exactly, in the currency's minor units, so that the credits of every model add up to the
//! amount, never a cent off.
//!
//! A model is a weight for each *component* of the credit: five milestones (the first touch,
//! the touch that led to the lead, to the MQL, to the opportunity, and the last touch before
//! the close), `middle` (shared by the touches that hold no milestone) and `each` (shared by
//! every touch). A milestone's share goes whole to its touch (a touch that holds no milestone
//! the model weighs is a middle touch); a shared one is divided by
//! the touches' spread weights (their kind's weight, times a decay by age when the model has
//! a half-life). Components absent from an opportunity (no touch before the opportunity was
//! created, no middle touch) give their share to the others in proportion.

use crate::event::{Family, Kind};
use crate::timestamp::Timestamp;
use toml::Spanned;

/// Whose touches count for an opportunity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every person of the opportunity's account (the people named on it when it has none).
    Account,
    /// Only the people named on the opportunity: those with a fact naming it.
    People,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::People => "people",
        }
    }
}

/// The components of a credit, in the order weights are given and remainders placed.
pub const COMPONENTS: [&str; 7] = [
    "first",
    "lead",
    "mql",
    "opportunity",
    "close",
    "middle",
    "each",
];

/// How many components are milestones (the first five).
pub const MILESTONES: usize = 5;

/// A weight of 1, in the millionths weights are kept in.
pub const UNIT: u64 = 1_000_000;

/// The built-in kinds of model, and `custom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    FirstTouch,
    LastTouch,
    Linear,
    UShaped,
    WShaped,
    FullPath,
    TimeDecay,
    Custom,
}

impl ModelKind {
    pub const ALL: [ModelKind; 8] = [
        ModelKind::FirstTouch,
        ModelKind::LastTouch,
        ModelKind::Linear,
        ModelKind::UShaped,
        ModelKind::WShaped,
        ModelKind::FullPath,
        ModelKind::TimeDecay,
        ModelKind::Custom,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ModelKind::FirstTouch => "first_touch",
            ModelKind::LastTouch => "last_touch",
            ModelKind::Linear => "linear",
            ModelKind::UShaped => "u_shaped",
            ModelKind::WShaped => "w_shaped",
            ModelKind::FullPath => "full_path",
            ModelKind::TimeDecay => "time_decay",
            ModelKind::Custom => "custom",
        }
    }

    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// The weights of a built-in kind, per component, in millionths; `None` for `custom`.
    pub const fn weights(self) -> Option<[u64; 7]> {
        const fn w(first: u64, lead: u64, opportunity: u64, close: u64, middle: u64) -> [u64; 7] {
            [first, lead, 0, opportunity, close, middle, 0]
        }
        Some(match self {
            ModelKind::FirstTouch => w(UNIT, 0, 0, 0, 0),
            ModelKind::LastTouch => w(0, 0, UNIT, 0, 0),
            ModelKind::Linear | ModelKind::TimeDecay => [0, 0, 0, 0, 0, 0, UNIT],
            ModelKind::UShaped => w(400_000, 400_000, 0, 0, 200_000),
            ModelKind::WShaped => w(300_000, 300_000, 300_000, 0, 100_000),
            ModelKind::FullPath => w(225_000, 225_000, 225_000, 225_000, 100_000),
            ModelKind::Custom => return None,
        })
    }
}

/// One declared model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    pub kind: ModelKind,
    /// Per component (`COMPONENTS`), in millionths.
    pub weights: [u64; 7],
    /// Shared components are divided with each touch's weight halved every this many
    /// milliseconds of age, counted back from the latest touch of the opportunity's set.
    pub half_life_millis: Option<i64>,
    /// Spread weights by touch kind, in millionths; a kind not listed weighs 1.
    pub touch_weights: Vec<(Kind, u64)>,
}

impl Model {
    /// A touch's weight in shared components, before decay, in millionths.
    pub fn touch_weight(&self, kind: Kind) -> u64 {
        self.touch_weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(UNIT, |(_, weight)| *weight)
    }

    /// The weights as text: `first 0.4, lead 0.4, middle 0.2`, then the half-life and the
    /// touch weights when set.
    pub fn describe(&self) -> String {
        let decimal = |millionths: u64| {
            let text = format!("{}.{:06}", millionths / UNIT, millionths % UNIT);
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        };
        let mut parts: Vec<String> = COMPONENTS
            .iter()
            .zip(self.weights)
            .filter(|(_, weight)| *weight > 0)
            .map(|(name, weight)| format!("{name} {}", decimal(weight)))
            .collect();
        if let Some(half_life) = self.half_life_millis {
            let days = half_life as f64 / 86_400_000.0;
            parts.push(format!("half-life {days} days"));
        }
        for (kind, weight) in &self.touch_weights {
            parts.push(format!("{} {}", kind.name(), decimal(*weight)));
        }
        parts.join(", ")
    }
}

/// The touch kinds that count when a definition does not list them: every touch but the
/// ones that are not engagements (an email sent, delivered, bounced, an unsubscribe) and the
/// customer's own after the sale (NPS answers, usage summaries).
pub const NOT_ENGAGEMENTS: [Kind; 6] = [
    Kind::EmailSent,
    Kind::EmailDelivered,
    Kind::EmailBounced,
    Kind::EmailUnsubscribed,
    Kind::NpsResponded,
    Kind::ProductUsageSummarized,
];

/// A definition's attribution: whose touches, which kinds, which models.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub scope: Scope,
    /// The touch kinds that count, one bit per `Kind` (by its index in `Kind::ALL`).
    touches: u64,
    pub models: Vec<Model>,
}

impl Default for Attribution {
    /// No models.
    fn default() -> Self {
        Attribution::new(Scope::Account, &default_touches(), Vec::new())
    }
}

/// The kinds [`NOT_ENGAGEMENTS`] leaves.
pub fn default_touches() -> Vec<Kind> {
    Kind::ALL
        .iter()
        .copied()
        .filter(|kind| kind.family() == Family::Touch && !NOT_ENGAGEMENTS.contains(kind))
        .collect()
}

impl Attribution {
    pub fn new(scope: Scope, touches: &[Kind], models: Vec<Model>) -> Attribution {
        const _: () = assert!(Kind::ALL.len() <= 64, "a kind's bit fits in the mask");
        let touches = touches
            .iter()
            .fold(0_u64, |mask, kind| mask | (1 << *kind as u32));
        Attribution {
            scope,
            touches,
            models,
        }
    }

    /// Whether a fact of this kind is a touch attribution credits.
    pub fn counts(&self, kind: Kind) -> bool {
        self.touches & (1 << kind as u32) != 0
    }

    /// The kinds that count, in `Kind::ALL` order.
    pub fn touch_kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .filter(|kind| self.counts(*kind))
            .collect()
    }
}

/// What one model gave one touch: its exact credit in minor units, and its share of the
/// amount (for display; the credit is what adds up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Credit {
    pub credited: i64,
    pub share: f64,
}

/// Divides `total` among `weights` in proportion, exactly: each gets the whole part of its
/// proportional share, and the units left over go one each to the largest remainders, ties
/// to the earlier weight (the largest-remainder method). Weights are not all zero.
fn largest_remainder(total: u128, weights: &[u128]) -> Vec<u128> {
    let sum: u128 = weights.iter().sum();
    debug_assert!(sum > 0, "invariant: some weight is not zero");
    let mut parts: Vec<u128> = weights.iter().map(|w| total * w / sum).collect();
    let given: u128 = parts.iter().sum();
    let mut left = total - given;
    if left > 0 {
        let mut order: Vec<usize> = (0..weights.len()).filter(|i| weights[*i] > 0).collect();
        // Largest remainder first; a stable sort keeps ties in index order.
        order.sort_by_key(|i| std::cmp::Reverse(total * weights[*i] % sum));
        for index in order.iter().cycle() {
            if left == 0 {
                break;
            }
            parts[*index] += 1;
            left -= 1;
        }
    }
    parts
}

/// A touch's decay in a model with a half-life: 2^(−age ÷ half-life), age counted from the
/// latest touch, in millionths rounded to the nearest.
pub fn decay(age_millis: i64, half_life_millis: i64) -> u64 {
    let factor = (-(age_millis as f64) / half_life_millis as f64).exp2();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let millionths = (factor * UNIT as f64).round() as u64;
    millionths
}

/// How `model` credits an opportunity of `amount` minor units whose set of touches is
/// `touches` (business time and kind, in (business time, event id) order) with these
/// milestone touches (indexes into `touches`, in `COMPONENTS` order). One credit per touch;
/// `None` when the model gives no touch any weight (no touch at all, or only absent
/// components): the amount is then unattributed.
pub fn allocate(
    model: &Model,
    touches: &[(Timestamp, Kind)],
    milestones: &[Option<usize>; MILESTONES],
    amount: i64,
) -> Option<Vec<Credit>> {
    let n = touches.len();
    if n == 0 {
        return None;
    }
    // A touch holding a milestone the model weighs is not a middle touch.
    let mut holds_milestone = vec![false; n];
    for (component, index) in milestones.iter().enumerate() {
        if let Some(index) = index
            && model.weights[component] > 0
        {
            holds_milestone[*index] = true;
        }
    }
    let latest = touches[n - 1].0;
    let spread: Vec<u128> = touches
        .iter()
        .map(|(at, kind)| {
            let decay = model.half_life_millis.map_or(1, |half_life| {
                decay(latest.unix_millis() - at.unix_millis(), half_life)
            });
            u128::from(model.touch_weight(*kind)) * u128::from(decay)
        })
        .collect();
    // Each component's touches and their weights within it.
    let middle: Vec<u128> = (0..n)
        .map(|i| if holds_milestone[i] { 0 } else { spread[i] })
        .collect();
    let mut present = [0_u128; 7];
    for (component, weight) in model.weights.iter().enumerate() {
        let has_touch = match component {
            c if c < MILESTONES => milestones[c].is_some(),
            5 => middle.iter().any(|w| *w > 0),
            _ => spread.iter().any(|w| *w > 0),
        };
        if has_touch {
            present[component] = u128::from(*weight);
        }
    }
    let whole: u128 = present.iter().sum();
    if whole == 0 {
        return None;
    }
    let magnitude = u128::from(amount.unsigned_abs());
    let by_component = largest_remainder(magnitude, &present);
    let mut credited = vec![0_u128; n];
    let mut shares = vec![0.0_f64; n];
    for (component, part) in by_component.iter().enumerate() {
        if present[component] == 0 {
            continue;
        }
        let fraction = present[component] as f64 / whole as f64;
        if component < MILESTONES {
            let index = milestones[component].expect("invariant: a present milestone has a touch");
            credited[index] += part;
            shares[index] += fraction;
            continue;
        }
        let weights = if component == 5 { &middle } else { &spread };
        let sum: u128 = weights.iter().sum();
        for (index, given) in largest_remainder(*part, weights).into_iter().enumerate() {
            credited[index] += given;
            shares[index] += fraction * weights[index] as f64 / sum as f64;
        }
    }
    Some(
        credited
            .into_iter()
            .zip(shares)
            .map(|(credit, share)| {
                let credit = i64::try_from(credit).expect("invariant: a part of an i64 fits one");
                Credit {
                    // A negative amount is divided as its magnitude: −(|a| ÷ n), not floors.
                    credited: if amount < 0 { -credit } else { credit },
                    share,
                }
            })
            .collect(),
    )
}

/// `[attribution]` as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttribution {
    scope: Option<Spanned<String>>,
    touches: Option<Vec<Spanned<String>>>,
    #[serde(rename = "model", default)]
    models: Vec<Spanned<RawModel>>,
}

/// One `[[attribution.model]]` as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    kind: Spanned<String>,
    half_life_days: Option<Spanned<f64>>,
    first: Option<Spanned<f64>>,
    lead: Option<Spanned<f64>>,
    mql: Option<Spanned<f64>>,
    opportunity: Option<Spanned<f64>>,
    close: Option<Spanned<f64>>,
    middle: Option<Spanned<f64>>,
    each: Option<Spanned<f64>>,
    touch_weights: Option<Spanned<std::collections::BTreeMap<String, f64>>>,
}

/// The largest weight a definition may give: with amounts of up to 2^63 minor units, the
/// products the division works with stay within 128 bits.
const MAX_WEIGHT: f64 = 1000.0;

/// A weight as written, in millionths; an error for one that is negative, not finite or
/// over [`MAX_WEIGHT`].
fn millionths(value: f64, what: &str, context: &str) -> Result<u64, String> {
    if !(value.is_finite() && (0.0..=MAX_WEIGHT).contains(&value)) {
        return Err(format!(
            "{context}: `{what}` must be a number from 0 to {MAX_WEIGHT}, got {value}"
        ));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let weight = (value * UNIT as f64).round() as u64;
    Ok(weight)
}

/// Validates `[attribution]`, reporting each mistake at its place through `error`.
pub(crate) fn check(
    raw: RawAttribution,
    error: &mut dyn FnMut(std::ops::Range<usize>, String),
) -> Attribution {
    let scope = match &raw.scope {
        None => Scope::Account,
        Some(text) => match text.get_ref().as_str() {
            "account" => Scope::Account,
            "people" => Scope::People,
            other => {
                error(
                    text.span(),
                    format!("attribution.scope must be \"account\" or \"people\", got {other:?}"),
                );
                Scope::Account
            }
        },
    };
    let touches = match &raw.touches {
        None => default_touches(),
        Some(names) => {
            let mut kinds = Vec::new();
            for name in names {
                match Kind::from_name(name.get_ref()) {
                    Some(kind) if kind.family() == Family::Touch => kinds.push(kind),
                    Some(kind) => error(
                        name.span(),
                        format!("attribution.touches: {kind} is not a touch (see docs/events.md)"),
                    ),
                    None => error(
                        name.span(),
                        format!(
                            "attribution.touches: unknown event kind {:?} (see docs/events.md)",
                            name.get_ref()
                        ),
                    ),
                }
            }
            kinds
        }
    };
    let mut models: Vec<Model> = Vec::new();
    for spanned in raw.models {
        let span = spanned.span();
        let raw = spanned.into_inner();
        let name = raw.name.get_ref().clone();
        let context = format!("attribution.model `{name}`");
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            error(
                raw.name.span(),
                format!(
                    "attribution.model name {name:?} must be lowercase letters, digits and `_`"
                ),
            );
        }
        if models.iter().any(|m| m.name == name) {
            error(
                raw.name.span(),
                format!("attribution.model name {name:?} is used twice"),
            );
        }
        let Some(kind) = ModelKind::from_name(raw.kind.get_ref()) else {
            let kinds: Vec<&str> = ModelKind::ALL.iter().map(|k| k.as_str()).collect();
            error(
                raw.kind.span(),
                format!(
                    "{context}: unknown kind {:?}; expected one of {}",
                    raw.kind.get_ref(),
                    kinds.join(", ")
                ),
            );
            continue;
        };
        let given = [
            &raw.first,
            &raw.lead,
            &raw.mql,
            &raw.opportunity,
            &raw.close,
            &raw.middle,
            &raw.each,
        ];
        let weights = match kind.weights() {
            Some(weights) => {
                for (component, value) in COMPONENTS.iter().zip(given) {
                    if let Some(value) = value {
                        error(
                            value.span(),
                            format!(
                                "{context}: `{component}` is for kind = \"custom\"; {} has its own weights",
                                kind.as_str()
                            ),
                        );
                    }
                }
                weights
            }
            None => {
                let mut weights = [0; 7];
                for (index, (component, value)) in COMPONENTS.iter().zip(given).enumerate() {
                    if let Some(value) = value {
                        match millionths(*value.get_ref(), component, &context) {
                            Ok(weight) => weights[index] = weight,
                            Err(message) => error(value.span(), message),
                        }
                    }
                }
                if weights.iter().all(|w| *w == 0) {
                    error(
                        span.clone(),
                        format!(
                            "{context}: a custom model gives some weight to at least one of {}",
                            COMPONENTS.join(", ")
                        ),
                    );
                }
                weights
            }
        };
        let half_life_millis = match (&raw.half_life_days, kind) {
            (Some(days), ModelKind::TimeDecay | ModelKind::Custom) => {
                let value = *days.get_ref();
                if value.is_finite() && value > 0.0 && value <= 36_500.0 {
                    #[allow(clippy::cast_possible_truncation)]
                    let millis = (value * 86_400_000.0).round() as i64;
                    Some(millis.max(1))
                } else {
                    error(
                        days.span(),
                        format!(
                            "{context}: half_life_days must be more than 0 and at most 36500, got {value}"
                        ),
                    );
                    None
                }
            }
            (Some(days), _) => {
                error(
                    days.span(),
                    format!(
                        "{context}: half_life_days is for kind = \"time_decay\" or \"custom\", not {}",
                        kind.as_str()
                    ),
                );
                None
            }
            (None, ModelKind::TimeDecay) => {
                error(
                    span.clone(),
                    format!("{context}: a time_decay model needs half_life_days"),
                );
                None
            }
            (None, _) => None,
        };
        let mut touch_weights = Vec::new();
        if let Some(table) = &raw.touch_weights {
            if kind != ModelKind::Custom {
                error(
                    table.span(),
                    format!("{context}: touch_weights is for kind = \"custom\""),
                );
            }
            for (name, value) in table.get_ref() {
                let Some(kind) = Kind::from_name(name) else {
                    error(
                        table.span(),
                        format!(
                            "{context}: touch_weights: unknown event kind {name:?} (see docs/events.md)"
                        ),
                    );
                    continue;
                };
                if !touches.contains(&kind) {
                    error(
                        table.span(),
                        format!(
                            "{context}: touch_weights: {kind} is not among the touches attribution counts (attribution.touches)"
                        ),
                    );
                }
                match millionths(*value, &format!("touch_weights.{name}"), &context) {
                    Ok(weight) => touch_weights.push((kind, weight)),
                    Err(message) => error(table.span(), message),
                }
            }
        }
        models.push(Model {
            name,
            kind,
            weights,
            half_life_millis,
            touch_weights,
        });
    }
    Attribution::new(scope, &touches, models)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(kind: ModelKind) -> Model {
        Model {
            name: kind.as_str().into(),
            kind,
            weights: kind.weights().unwrap_or([0, 0, 0, 0, 0, 0, UNIT]),
            half_life_millis: (kind == ModelKind::TimeDecay).then_some(7 * 86_400_000),
            touch_weights: Vec::new(),
        }
    }

    fn at(day: i64) -> Timestamp {
        Timestamp::from_unix_millis(day * 86_400_000)
    }

    fn touches(days: &[i64]) -> Vec<(Timestamp, Kind)> {
        days.iter()
            .map(|day| (at(*day), Kind::ContentViewed))
            .collect()
    }

    fn credits(
        model: &Model,
        days: &[i64],
        milestones: [Option<usize>; 5],
        amount: i64,
    ) -> Vec<i64> {
        allocate(model, &touches(days), &milestones, amount)
            .expect("attributed")
            .iter()
            .map(|c| c.credited)
            .collect()
    }

    #[test]
    fn linear_places_the_remainder_on_the_earliest_touches() {
        let linear = model(ModelKind::Linear);
        // 100 minor units over three touches: 33 each, one left, to the first.
        assert_eq!(
            credits(&linear, &[1, 2, 3], [Some(0), None, None, None, None], 100),
            [34, 33, 33]
        );
        assert_eq!(
            credits(&linear, &[1, 2, 3], [Some(0), None, None, None, None], -100),
            [-34, -33, -33]
        );
    }

    #[test]
    fn w_shaped_gives_absent_milestones_share_to_the_rest() {
        let w = model(ModelKind::WShaped);
        // Four touches; first = 0, lead = 1, opportunity = 3; touch 2 is the middle.
        assert_eq!(
            credits(
                &w,
                &[1, 2, 3, 4],
                [Some(0), Some(1), None, Some(3), None],
                1000
            ),
            [300, 300, 100, 300]
        );
        // No middle touch: 30/30/30 of 90, a third each.
        assert_eq!(
            credits(
                &w,
                &[1, 2, 3],
                [Some(0), Some(1), None, Some(2), None],
                1000
            ),
            [334, 333, 333]
        );
        // One touch holding every milestone gets everything.
        assert_eq!(
            credits(&w, &[1], [Some(0), Some(0), None, Some(0), None], 999),
            [999]
        );
    }

    #[test]
    fn last_touch_without_a_touch_before_the_opportunity_is_unattributed() {
        let last = model(ModelKind::LastTouch);
        assert!(
            allocate(
                &last,
                &touches(&[5]),
                &[Some(0), None, None, None, None],
                10
            )
            .is_none()
        );
        assert_eq!(
            credits(&last, &[1, 5], [Some(0), None, None, Some(0), None], 10),
            [10, 0]
        );
    }

    #[test]
    fn time_decay_halves_a_touch_a_half_life_older() {
        let decayed = model(ModelKind::TimeDecay);
        // Ages 7 and 0 days: weights 0.5 and 1 of 1.5.
        assert_eq!(
            credits(&decayed, &[0, 7], [Some(0), None, None, None, None], 300),
            [100, 200]
        );
        assert_eq!(decay(0, 1), UNIT);
        assert_eq!(decay(7 * 86_400_000, 7 * 86_400_000), UNIT / 2);
    }

    #[test]
    fn credits_add_up_to_the_amount_for_every_model() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for round in 0..2_000 {
            let n = 1 + next(40) as usize;
            let mut days: Vec<i64> = (0..n).map(|_| next(400) as i64).collect();
            days.sort_unstable();
            let pick =
                |next: &mut dyn FnMut(u64) -> u64| (next(3) > 0).then(|| next(n as u64) as usize);
            let milestones = [
                Some(0),
                pick(&mut next),
                pick(&mut next),
                pick(&mut next),
                pick(&mut next),
            ];
            let amount = next(10_000_000) as i64 - 1_000 * i64::from(round % 2 == 0);
            for kind in ModelKind::ALL {
                let mut m = model(kind);
                if kind == ModelKind::Custom {
                    m.weights = [1, 2, 3, 4, 5, 6, 7].map(|w| w * 100_000);
                    m.touch_weights = vec![(Kind::ContentViewed, 3 * UNIT)];
                }
                if let Some(credits) = allocate(&m, &touches(&days), &milestones, amount) {
                    let sum: i64 = credits.iter().map(|c| c.credited).sum();
                    assert_eq!(sum, amount, "{kind:?} over {days:?} {milestones:?}");
                    let shares: f64 = credits.iter().map(|c| c.share).sum();
                    assert!((shares - 1.0).abs() < 1e-9, "{kind:?}: shares {shares}");
                }
            }
        }
    }
}
