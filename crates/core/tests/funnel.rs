//! Funnel definitions: the shipped default is valid, and every kind of mistake is reported
//! with the file, the line and what is wrong.

use baton_core::{DEFAULT_FUNNEL_TOML, FunnelDefinition, Kind, Outcome, Owner, Trigger};

#[test]
fn the_default_funnel_is_valid_and_shaped_as_designed() {
    let definition = FunnelDefinition::default_funnel();
    let names: Vec<&str> = definition
        .stages()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "inquiry",
            "engaged",
            "mql",
            "sal",
            "sql",
            "opportunity",
            "proposal",
            "won",
            "lost",
            "onboarding",
            "adopted",
            "renewed",
            "expanded",
            "advocate",
            "churned"
        ]
    );
    assert_eq!(definition.mql_stage(), 2);
    let owners: Vec<Owner> = definition.stages().iter().map(|s| s.owner).collect();
    assert_eq!(owners.iter().filter(|o| **o == Owner::Marketing).count(), 3);
    assert_eq!(definition.stages()[7].outcome, Some(Outcome::Won));
    // The bow tie: customer stages after won and lost, churned last.
    assert_eq!(definition.customer_from(), Some(9));
    assert_eq!(definition.stages()[9].owner, Owner::CustomerSuccess);
    assert_eq!(definition.stages()[13].owner, Owner::CustomerMarketing);
    assert_eq!(definition.stages()[14].outcome, Some(Outcome::Churned));
    let at_risk = &definition.detours()[2];
    assert_eq!(at_risk.back_to, Some(9), "at_risk goes back to onboarding");
    assert!(definition.is_customer_detour(at_risk));
    assert!(!definition.is_customer_detour(&definition.detours()[0]));
    assert!(
        definition.stages()[4]
            .enter_on
            .contains(&Trigger::MeetingWithNeed)
    );
    assert_eq!(
        definition.detours()[0].back_to,
        Some(1),
        "recycled goes back to engaged"
    );
    assert!(definition.mql().high_intent.contains(&Kind::DemoRequested));
    assert_eq!(definition.sla().follow_up_millis, 24 * 3_600_000);
    let hash = definition.hash();
    assert!(
        hash.starts_with("sha256:") && hash.len() == 7 + 16,
        "{hash}"
    );
}

#[test]
fn the_hash_follows_the_text() {
    let a = FunnelDefinition::parse("a.toml", DEFAULT_FUNNEL_TOML).expect("valid");
    let b = FunnelDefinition::parse("b.toml", DEFAULT_FUNNEL_TOML).expect("valid");
    assert_eq!(
        a.hash(),
        b.hash(),
        "the file name is not part of the identity"
    );
    let edited = DEFAULT_FUNNEL_TOML.replace("min_engagement = 40", "min_engagement = 45");
    let c = FunnelDefinition::parse("c.toml", &edited).expect("valid");
    assert_ne!(a.hash(), c.hash());
    assert_eq!(c.mql().min_engagement, Some(45.0));
}

/// Replaces `from` with `to` in the default and returns the error text.
fn errors_after(from: &str, to: &str) -> String {
    assert!(
        DEFAULT_FUNNEL_TOML.contains(from),
        "fixture text {from:?} not in the default"
    );
    let text = DEFAULT_FUNNEL_TOML.replacen(from, to, 1);
    FunnelDefinition::parse("funnels/mine.toml", &text)
        .expect_err("must be refused")
        .to_string()
}

fn line_of(needle: &str) -> usize {
    DEFAULT_FUNNEL_TOML
        .lines()
        .position(|line| line.contains(needle))
        .expect("needle in default")
        + 1
}

#[test]
fn an_unknown_event_kind_names_file_line_and_stage() {
    let line = line_of("enter_on = [\"proposal_sent\"]");
    let message = errors_after(
        "enter_on = [\"proposal_sent\"]",
        "enter_on = [\"proposal_emailed\"]",
    );
    assert_eq!(
        message,
        format!(
            "funnels/mine.toml:{line}: stage `proposal`: unknown event kind \"proposal_emailed\" (see docs/events.md)"
        )
    );
}

#[test]
fn an_unknown_stage_in_a_rule_is_named() {
    let line = line_of("back_to = \"engaged\"");
    let message = errors_after("back_to = \"engaged\"", "back_to = \"nurture\"");
    assert!(
        message.contains(&format!(
            ":{line}: detour `recycled`: back_to names unknown stage \"nurture\""
        )),
        "{message}"
    );
}

#[test]
fn a_threshold_of_the_wrong_type_is_named() {
    let line = line_of("min_engagement = 40");
    let message = errors_after("min_engagement = 40", "min_engagement = \"forty\"");
    assert!(
        message.starts_with(&format!("funnels/mine.toml:{line}:")),
        "{message}"
    );
    assert!(
        message.contains("invalid type") || message.contains("expected"),
        "{message}"
    );
}

#[test]
fn a_detour_back_into_sales_would_loop_and_is_refused() {
    let message = errors_after("back_to = \"engaged\"", "back_to = \"sal\"");
    assert!(
        message.contains("back_to must name a marketing stage before the MQL stage"),
        "{message}"
    );
    let message = errors_after("back_to = \"engaged\"", "back_to = \"mql\"");
    assert!(
        message.contains("back_to must name a marketing stage"),
        "{message}"
    );
}

#[test]
fn marketing_after_sales_is_refused() {
    let message = errors_after(
        "name = \"proposal\"\nowner = \"sales\"",
        "name = \"proposal\"\nowner = \"marketing\"",
    );
    assert!(
        message.contains(
            "stage `proposal`: marketing stages must all come before the first sales stage (`sal`)"
        ),
        "{message}"
    );
}

#[test]
fn unknown_keys_and_other_mistakes_are_all_reported_at_once() {
    let text = DEFAULT_FUNNEL_TOML.replacen("mql = true", "mql = true\nmql_threshold = 5", 1);
    let message = FunnelDefinition::parse("x.toml", &text)
        .expect_err("unknown key")
        .to_string();
    assert!(
        message.contains("unknown field `mql_threshold`"),
        "{message}"
    );

    let text = DEFAULT_FUNNEL_TOML
        .replacen("\"lead_disqualified\"]\n", "\"lead_fired\"]\n", 1)
        .replacen(
            "trait = \"person.department\"",
            "trait = \"person.shoe_size\"",
            1,
        )
        .replacen("half_life_days = 30", "half_life_days = 0", 1);
    let errors = FunnelDefinition::parse("x.toml", &text).expect_err("three problems");
    assert_eq!(errors.0.len(), 3, "{errors}");
    assert!(
        errors.0.windows(2).all(|w| w[0].line <= w[1].line),
        "in file order"
    );
    let message = errors.to_string();
    assert!(
        message.contains("half_life_days must be more than 0"),
        "{message}"
    );
    assert!(
        message.contains("unknown trait \"person.shoe_size\""),
        "{message}"
    );
    assert!(
        message.contains("unknown event kind \"lead_fired\""),
        "{message}"
    );
}

#[test]
fn structural_rules_are_enforced() {
    let message = errors_after(
        "name = \"mql\"\nowner = \"marketing\"\nmql = true",
        "name = \"mql\"\nowner = \"marketing\"",
    );
    assert!(
        message.contains("stage `mql` can never be entered"),
        "{message}"
    );
    assert!(message.contains("no stage has `mql = true`"), "{message}");

    let message = errors_after(
        "name = \"sal\"\nowner = \"sales\"",
        "name = \"sal\"\nowner = \"sales\"\nmql = true",
    );
    assert!(
        message.contains("only one stage is entered by the MQL rule"),
        "{message}"
    );

    let message = errors_after("outcome = \"won\"", "outcome = \"victory\"");
    assert!(
        message.contains("outcome must be \"won\", \"lost\" or \"churned\""),
        "{message}"
    );

    // Customer stages come after won and lost, are not marketing's, and churned ends them.
    let message = errors_after(
        "name = \"sal\"\nowner = \"sales\"",
        "name = \"sal\"\nowner = \"customer_success\"",
    );
    assert!(
        message.contains("stage `sal`: customer_success owns customer stages, which come after the won and lost outcomes"),
        "{message}"
    );
    let message = errors_after(
        "name = \"adopted\"\nowner = \"customer_success\"",
        "name = \"adopted\"\nowner = \"marketing\"",
    );
    assert!(
        message.contains("stage `adopted`: a customer stage (after the won and lost outcomes) is owned by customer_marketing, customer_success or sales"),
        "{message}"
    );
    let message = errors_after(
        "name = \"lost\"\nowner = \"sales\"\noutcome = \"lost\"",
        "name = \"lost\"\nowner = \"sales\"\noutcome = \"churned\"",
    );
    assert!(
        message
            .contains("stage `onboarding` comes after a churned outcome; churned stages come last"),
        "{message}"
    );
    let message = errors_after(
        "name = \"opportunity\"\nowner = \"sales\"",
        "name = \"opportunity\"\nowner = \"sales\"\noutcome = \"churned\"",
    );
    assert!(
        message.contains("stage `opportunity`: a churned outcome ends a customer's life and comes after the won and lost outcomes"),
        "{message}"
    );
    let message = errors_after(
        "name = \"advocate\"\nowner = \"customer_marketing\"\nenter_on = [\"advocated\"]",
        "name = \"advocate\"\nowner = \"customer_marketing\"\nmin_engagement = 50",
    );
    assert!(
        message.contains("stage `advocate`: a customer stage is entered by `enter_on` only"),
        "{message}"
    );
    let message = errors_after("back_to = \"onboarding\"", "back_to = \"won\"");
    assert!(
        message.contains("back_to must name a marketing stage before the MQL stage, or a customer stage, got \"won\""),
        "{message}"
    );
    let message = errors_after(
        "owner = \"customer_marketing\"",
        "owner = \"customer_care\"",
    );
    assert!(
        message.contains("owner must be \"marketing\", \"sales\", \"customer_marketing\" or \"customer_success\", got \"customer_care\""),
        "{message}"
    );

    let message = errors_after("name = \"inquiry\"", "name = \"Inquiry Stage\"");
    assert!(
        message.contains("must be lowercase letters, digits and `_`"),
        "{message}"
    );

    let message = errors_after("name = \"engaged\"", "name = \"inquiry\"");
    assert!(
        message.contains("stage name \"inquiry\" is used twice"),
        "{message}"
    );

    let message = errors_after(
        "trait = \"account.employees\"\nat_least = 200",
        "trait = \"account.employees\"\nany_of = [\"big\"]\nat_least = 200",
    );
    assert!(
        message.contains("account.employees is a number"),
        "{message}"
    );
}

#[test]
fn broken_toml_points_at_its_line() {
    let text = "[funnel]\nname = \"x\"\n[mql\nmin_engagement = 1\n";
    let errors = FunnelDefinition::parse("broken.toml", text).expect_err("syntax");
    assert_eq!(errors.0[0].line, 3, "{errors}");
}
