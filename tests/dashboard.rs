//! The dashboard in a real browser: headless Chromium (Debian's package, driven over the
//! DevTools protocol) loads `baton serve`'s page against a seeded history with a candidate
//! view, and the test reads from the rendered page that every panel shows what the HTTP API
//! returns at the same log position; that a wrong token gets the login prompt and the right
//! one, typed once, the panels; that a segment filter narrows what carries a segment; and
//! that an event appended shows up without a reload. Screenshots of every panel, at laptop
//! and phone widths, are kept under `target/dashboard/` for a person to look at.

mod common;

use base64::Engine;
use common::{Served, baton, chromium, generate};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "dashboard-test-token";

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Headless Chromium with one page, driven over the DevTools protocol; killed on drop.
struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Browser {
    async fn start() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // Chromium writes the port it listens on into the profile.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&active)
                && let Some(port) = text.lines().next().and_then(|l| l.parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium did not open its DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let targets: Value = loop {
            let listed = reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await;
            if let Ok(response) = listed
                && let Ok(text) = response.text().await
                && let Ok(targets) = serde_json::from_str::<Value>(&text)
                && targets
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["type"] == "page"))
            {
                break targets;
            }
            assert!(Instant::now() < deadline, "Chromium lists no page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let url = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page to drive")
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools socket");
        Browser {
            _child: child,
            _profile: profile,
            socket,
            next: 0,
        }
    }

    /// One DevTools command and its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::Text(message.into()))
            .await
            .expect("DevTools send");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("DevTools socket open")
                .expect("DevTools frame");
            let Message::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.enable", json!({})).await;
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// Waits until `expression` is true in the page.
    async fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if self.eval(expression).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let status = self
                    .eval("document.getElementById('status')?.textContent ?? ''")
                    .await;
                panic!("timed out waiting for {what}; the page says {status}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&mut self, path: &Path, selector: Option<&str>) {
        let mut params = json!({"format": "png", "captureBeyondViewport": true});
        if let Some(selector) = selector {
            let rect = self
                .eval(&format!(
                    "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
                     return {{x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height}}; }})()"
                ))
                .await;
            params["clip"] = json!({
                "x": rect["x"], "y": rect["y"], "width": rect["width"], "height": rect["height"], "scale": 1
            });
        }
        let shot = self.call("Page.captureScreenshot", params).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("png data"))
            .expect("base64");
        std::fs::write(path, bytes).expect("screenshot written");
    }
}

/// A GET of the query API with the token, and its JSON.
async fn api(client: &reqwest::Client, addr: &str, path: &str) -> Value {
    let response = client
        .get(format!("http://{addr}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("json")
}

/// A table's rows from the API at `position` (the views do not move: nothing is appended).
async fn rows(client: &reqwest::Client, addr: &str, table: &str, position: u64) -> Vec<Value> {
    let body = api(
        client,
        addr,
        &format!("/v1/views/{table}?min_position={position}"),
    )
    .await;
    assert_eq!(
        body["position"],
        json!(position),
        "{table} at the page's position"
    );
    body["rows"].as_array().expect("rows").clone()
}

/// Whether a page cell (`data-value`, a string) holds a JSON value from the API.
fn same(cell: &Value, api: &Value) -> bool {
    let text = cell.as_str().unwrap_or_default();
    match api {
        Value::Null => text.is_empty(),
        Value::Number(n) => text
            .parse::<f64>()
            .is_ok_and(|x| (x - n.as_f64().expect("f64")).abs() <= 1e-9 * x.abs().max(1.0)),
        Value::String(s) => text == s,
        Value::Bool(b) => text == b.to_string(),
        other => panic!("unexpected {other}"),
    }
}

fn assert_rows(chart: &str, page: &Value, api: &[Value], columns: &[&str]) {
    let page_rows = page["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{chart}: no table on the page"));
    assert_eq!(page_rows.len(), api.len(), "{chart}: rows");
    for (index, (shown, wanted)) in page_rows.iter().zip(api).enumerate() {
        for column in columns {
            assert!(
                same(&shown[*column], &wanted[*column]),
                "{chart} row {index} column {column}: page {} api {}",
                shown[*column],
                wanted[*column]
            );
        }
    }
}

/// Everything the page shows, read from its DOM: KPIs by panel, and the table behind every
/// chart by chart id (cells as their `data-value`).
const READ_PAGE: &str = r#"(() => {
  const kpis = {};
  for (const panel of document.querySelectorAll("[data-panel]")) {
    const values = {};
    for (const kpi of panel.querySelectorAll(":scope > dl [data-kpi]")) values[kpi.dataset.kpi] = kpi.dataset.value;
    kpis[panel.dataset.panel] = values;
  }
  const tables = {};
  for (const figure of document.querySelectorAll("[data-chart]")) {
    const rows = [...figure.querySelectorAll("tbody tr")].map((tr) => {
      const row = {};
      for (const td of tr.querySelectorAll("td")) row[td.dataset.column] = td.dataset.value;
      return row;
    });
    const img = figure.querySelector("img");
    tables[figure.dataset.chart] = { rows, drawn: !!img, alt: img ? img.alt : null };
  }
  return { position: Number(document.body.dataset.position), kpis, tables,
           status: document.getElementById("status").textContent };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_serves_and_follows_the_log() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "7", "80", "history.ndjson");
    let output = baton(dir.path(), &["ingest", "history.ndjson"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A candidate with other stages, compared and kept, for the definitions panel.
    std::fs::write(
        dir.path().join("candidate.toml"),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/tests/fixtures/more_stages.toml"
        ))
        .expect("fixture"),
    )
    .expect("candidate");
    let output = baton(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--name",
            "more",
            "--json",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(
        dir.path().join("baton.toml"),
        format!(
            "http = \"127.0.0.1:0\"\nsql = \"127.0.0.1:0\"\npublish_every_ms = 100\nread_tokens = [\"{TOKEN}\"]\n"
        ),
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let addr = served.addr.clone();
    let client = reqwest::Client::new();
    let head = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = client
                .get(format!("http://{addr}/readyz"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break api(&client, &addr, "/v1/funnel").await["position"]
                    .as_u64()
                    .expect("position");
            }
            assert!(
                Instant::now() < deadline,
                "serve never got ready:\n{}",
                served.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    let mut browser = Browser::start().await;
    let page = format!("http://{addr}/");
    // A wrong token kept in the browser: the login prompt, saying why.
    browser.goto(&page).await;
    browser
        .wait_for("the page", "document.readyState === 'complete'")
        .await;
    browser
        .eval("localStorage.setItem('baton-read-token', 'not-the-token'); location.reload(); true")
        .await;
    browser
        .wait_for(
            "the login prompt",
            "(() => { const f = document.getElementById('login'); return !!f && !f.hidden && document.getElementById('login-reason').textContent.includes('unknown read token'); })()",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('[data-panel]').length")
            .await,
        json!(0),
        "no panel without the right token"
    );
    browser
        .screenshot(&screenshots().join("login.png"), None)
        .await;
    // The right token, typed once.
    browser
        .eval(&format!(
            "document.getElementById('token').value = {TOKEN:?}; document.getElementById('login').requestSubmit(); true"
        ))
        .await;
    browser
        .wait_for(
            "the panels",
            &format!("Number(document.body.dataset.position) === {head}"),
        )
        .await;
    let shown = browser.eval(READ_PAGE).await;
    assert_eq!(shown["position"], json!(head));
    assert!(
        shown["status"].as_str().is_some_and(
            |s| s.contains(&format!("log position {head}")) && s.contains("b2b-default")
        ),
        "the page names its position and definition: {}",
        shown["status"]
    );
    assert_eq!(
        browser
            .eval("localStorage.getItem('baton-read-token')")
            .await,
        json!(TOKEN),
        "the token is kept in the browser"
    );

    // Funnel: the summary's figures and the stages table.
    let funnel = &rows(&client, &addr, "funnel_totals", head).await[0];
    let marketing = &rows(&client, &addr, "marketing_totals", head).await[0];
    let sales = &rows(&client, &addr, "sales_totals", head).await[0];
    let kpis = &shown["kpis"];
    for (panel, kpi, source) in [
        ("funnel", "people", funnel),
        ("funnel", "won_deals", funnel),
        ("funnel", "revenue", funnel),
        ("handoffs", "handoffs", funnel),
        ("handoffs", "handbacks", funnel),
        ("handoffs", "ping_pong_journeys", funnel),
        ("handoffs", "follow_up_breached", funnel),
        ("handoffs", "follow_up_untouched", funnel),
        ("handoffs", "median_hours_to_first_action", funnel),
        ("marketing", "mqls", marketing),
        ("marketing", "acceptance_rate", marketing),
        ("sales", "open", sales),
        ("sales", "won", sales),
        ("sales", "lost", sales),
        ("sales", "win_rate", sales),
        ("sales", "cycle_days_median", sales),
        ("sales", "velocity_per_day", sales),
    ] {
        assert!(
            same(&kpis[panel][kpi], &source[kpi]),
            "{panel} {kpi}: page {} api {}",
            kpis[panel][kpi],
            source[kpi]
        );
    }
    assert!(same(&kpis["funnel"]["mqls"], &marketing["mqls"]));
    let tables = &shown["tables"];
    let stages = rows(&client, &addr, "stages", head).await;
    assert_rows(
        "funnel-stages",
        &tables["funnel-stages"],
        &stages,
        &[
            "stage",
            "owner",
            "entered",
            "current",
            "converted",
            "conversion_rate",
            "median_days_in_stage",
            "returned",
        ],
    );
    assert_eq!(tables["funnel-stages"]["drawn"], json!(true));
    // Cohorts, unfiltered: the API's rows.
    let cohorts = rows(&client, &addr, "cohorts", head).await;
    assert_rows(
        "cohorts",
        &tables["cohorts"],
        &cohorts,
        &[
            "cohort",
            "stage",
            "reached",
            "converted",
            "in_flight",
            "dropped",
        ],
    );
    // Hand-offs per week: the ledger counted by the Monday of each hand-off's week.
    let handoffs = rows(&client, &addr, "handoffs", head).await;
    let mut weeks: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in &handoffs {
        let at = time::OffsetDateTime::parse(
            row["at"].as_str().expect("at"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc 3339");
        let monday =
            at.date() - time::Duration::days(i64::from(at.weekday().number_days_from_monday()));
        let week = weeks.entry(monday.to_string()).or_default();
        if row["direction"] == "to_sales" {
            week.0 += 1;
        } else {
            week.1 += 1;
        }
    }
    let expected: Vec<Value> = weeks
        .iter()
        .map(|(week, (to_sales, back))| json!({"week": week, "to_sales": to_sales, "to_marketing": back}))
        .collect();
    assert_rows(
        "handoffs-weekly",
        &tables["handoffs-weekly"],
        &expected,
        &["week", "to_sales", "to_marketing"],
    );
    let sla = rows(&client, &addr, "sla_by_owner", head).await;
    assert_rows(
        "sla-by-owner",
        &tables["sla-by-owner"],
        &sla,
        &[
            "owner",
            "handoffs",
            "responded",
            "breached",
            "untouched",
            "median_hours_to_first_action",
            "p90_hours_to_first_action",
        ],
    );
    // Marketing: the ten campaigns and content items with the most influenced pipeline.
    for (chart, table, key) in [
        ("campaigns", "campaigns", "campaign"),
        ("content", "content", "content"),
    ] {
        let mut api_rows = rows(&client, &addr, table, head).await;
        let pipeline = |row: &Value| row["influenced_pipeline"].as_f64().unwrap_or(0.0);
        api_rows.sort_by(|a, b| {
            pipeline(b)
                .total_cmp(&pipeline(a))
                .then_with(|| a[key].as_str().cmp(&b[key].as_str()))
        });
        api_rows.truncate(10);
        assert_rows(
            chart,
            &tables[chart],
            &api_rows,
            &[
                key,
                "influenced_pipeline",
                "influenced_opportunities",
                "people",
            ],
        );
    }
    let people = rows(&client, &addr, "person_scores", head).await;
    let bands: i64 = tables["engagement"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            row["people"]
                .as_str()
                .and_then(|n| n.parse::<i64>().ok())
                .expect("count")
        })
        .sum();
    assert_eq!(
        bands as usize,
        people.len(),
        "every person in one engagement band"
    );
    // Sales: open pipeline by CRM stage and loss reasons, as the API's tables.
    let pipeline = rows(&client, &addr, "pipeline", head).await;
    let page_pipeline = tables["pipeline"]["rows"].as_array().expect("rows");
    assert_eq!(page_pipeline.len(), pipeline.len(), "pipeline stages");
    for wanted in &pipeline {
        let shown = page_pipeline
            .iter()
            .find(|row| same(&row["stage"], &wanted["stage"]))
            .unwrap_or_else(|| panic!("pipeline: no stage {}", wanted["stage"]));
        for column in ["opportunities", "amount", "currency"] {
            assert!(
                same(&shown[column], &wanted[column]),
                "pipeline {} {column}: {} vs {}",
                wanted["stage"],
                shown[column],
                wanted[column]
            );
        }
    }
    let reasons = rows(&client, &addr, "loss_reasons", head).await;
    let page_reasons = tables["loss-reasons"]["rows"].as_array().expect("rows");
    assert_eq!(page_reasons.len(), reasons.len());
    for wanted in &reasons {
        assert!(
            page_reasons
                .iter()
                .any(|row| same(&row["reason"], &wanted["reason"])
                    && same(&row["opportunities"], &wanted["opportunities"])),
            "loss reason {wanted}"
        );
    }
    // Customers: NPS as the customer view's `nps` table has it.
    let nps = rows(&client, &addr, "nps", head).await;
    let whole = |basis: &str| {
        nps.iter()
            .find(|row| row["basis"] == basis && row["dimension"] == "all")
            .unwrap_or_else(|| panic!("no whole-view NPS row for {basis}"))
            .clone()
    };
    assert!(same(&kpis["customer"]["nps_all"], &whole("all")["nps"]));
    assert!(same(
        &kpis["customer"]["nps_latest"],
        &whole("latest")["nps"]
    ));
    assert!(same(
        &kpis["customer"]["nps_people"],
        &whole("latest")["responses"]
    ));
    let monthly: Vec<Value> = nps
        .iter()
        .filter(|row| row["basis"] == "all" && row["dimension"] == "month")
        .cloned()
        .collect();
    assert!(!monthly.is_empty(), "the history has NPS answers");
    assert_rows(
        "nps-monthly",
        &tables["nps-monthly"],
        &monthly,
        &[
            "value",
            "responses",
            "promoters",
            "passives",
            "detractors",
            "nps",
        ],
    );

    // Customers: recurring revenue, retention, churn reasons and loyalty, as the account
    // tables have them (the history's customers pay in USD).
    let accounts = rows(&client, &addr, "customer_accounts", head).await;
    let usd: Vec<&Value> = accounts
        .iter()
        .filter(|row| row["currency"] == "USD")
        .collect();
    assert!(!usd.is_empty(), "the history has customers");
    let arr: f64 = usd
        .iter()
        .map(|row| row["arr"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(
        same(&kpis["customer"]["arr"], &json!(arr)),
        "{}",
        kpis["customer"]
    );
    let active = usd.iter().filter(|row| row["status"] == "active").count();
    assert!(same(&kpis["customer"]["customers_active"], &json!(active)));
    let mut latest: std::collections::BTreeMap<String, Value> = Default::default();
    for row in rows(&client, &addr, "retention", head).await {
        if row["currency"] == "USD" {
            latest.insert(row["cohort"].as_str().expect("cohort").to_owned(), row);
        }
    }
    let latest: Vec<Value> = latest.into_values().collect();
    assert_rows(
        "retention",
        &tables["retention"],
        &latest,
        &[
            "cohort",
            "months_since",
            "accounts",
            "retained",
            "logo_retention",
            "gross_retention",
            "net_retention",
        ],
    );
    let mut reasons: std::collections::BTreeMap<String, (i64, f64)> = Default::default();
    for row in rows(&client, &addr, "revenue_movements", head).await {
        if row["currency"] == "USD" && row["movement"] == "churn" {
            let entry = reasons
                .entry(row["reason"].as_str().expect("reason").to_owned())
                .or_default();
            entry.0 += row["accounts"].as_i64().expect("accounts");
            entry.1 -= row["arr_change"].as_f64().expect("change");
        }
    }
    let mut reasons: Vec<(String, (i64, f64))> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.1.total_cmp(&a.1.1).then(a.0.cmp(&b.0)));
    let reasons: Vec<Value> = reasons
        .into_iter()
        .map(|(reason, (accounts, lost))| {
            json!({"reason": reason, "accounts": accounts, "arr_lost": lost})
        })
        .collect();
    assert_rows(
        "churn-reasons",
        &tables["churn-reasons"],
        &reasons,
        &["reason", "accounts", "arr_lost"],
    );
    let loyalty: Vec<Value> = rows(&client, &addr, "loyalty", head)
        .await
        .into_iter()
        .filter(|row| row["dimension"] == "first_touch_channel" && row["currency"] == "USD")
        .collect();
    assert!(!loyalty.is_empty(), "customers by first-touch channel");
    assert_rows(
        "loyalty-channel",
        &tables["loyalty-channel"],
        &loyalty,
        &["value", "accounts", "churn_rate", "net_retention", "nps"],
    );

    let advocacy = rows(&client, &addr, "advocacy", head).await;
    assert_rows(
        "advocacy",
        &tables["advocacy"],
        &advocacy,
        &["act", "acts", "people"],
    );

    // Definitions: the candidate beside the live definition, stages matched by name.
    let comparison = api(&client, &addr, "/v1/comparisons/more").await;
    let pairs = comparison["stages"].as_array().expect("stages");
    let shown_pairs = tables["compare-more"]["rows"]
        .as_array()
        .expect("comparison rows");
    assert_eq!(shown_pairs.len(), pairs.len());
    for (shown, pair) in shown_pairs.iter().zip(pairs) {
        assert!(same(&shown["stage"], &pair["name"]));
        assert!(
            same(&shown["live_entered"], &pair["live"]["entered"]),
            "{pair}"
        );
        assert!(
            same(&shown["candidate_entered"], &pair["candidate"]["entered"]),
            "{pair}"
        );
    }
    assert_eq!(
        browser.eval("document.querySelector('[data-candidate=more]').textContent.includes('baton promote more')").await,
        json!(true)
    );

    // The funnel chart's CSV, downloaded by its button, is the stages table at this position
    // (the API's own CSV, cell for cell).
    let downloads = tempfile::tempdir().expect("downloads");
    browser
        .call(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": downloads.path().display().to_string()}),
        )
        .await;
    browser
        .eval("document.querySelector('[data-chart=funnel-stages] .actions button').click(); true")
        .await;
    let file = downloads.path().join(format!("stages-at-{head}.csv"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !file.is_file() {
        assert!(
            Instant::now() < deadline,
            "no CSV downloaded to {}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let downloaded = std::fs::read_to_string(&file).expect("csv");
    let api_csv = client
        .get(format!(
            "http://{addr}/v1/views/stages?format=csv&min_position={head}"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("body");
    let cells = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|line| line.split(',').map(str::to_owned).collect())
            .collect()
    };
    let (downloaded, api_csv) = (cells(&downloaded), cells(&api_csv));
    assert_eq!(downloaded.len(), api_csv.len(), "CSV rows");
    for (got, want) in downloaded.iter().zip(&api_csv) {
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            let numbers = a.parse::<f64>().ok().zip(b.parse::<f64>().ok());
            match numbers {
                Some((x, y)) => assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{a} vs {b}"),
                None => assert_eq!(a, b),
            }
        }
    }

    // Screenshots of every panel at a laptop's width, and the page at a phone's.
    for panel in [
        "funnel",
        "cohorts",
        "handoffs",
        "marketing",
        "sales",
        "customer",
        "definitions",
    ] {
        browser
            .screenshot(
                &screenshots().join(format!("{panel}.png")),
                Some(&format!("#{panel}")),
            )
            .await;
    }
    browser
        .call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
        )
        .await;
    let overflow = browser
        .eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    browser
        .screenshot(&screenshots().join("phone.png"), None)
        .await;
    assert_eq!(overflow, json!(true), "the page fits a phone's width");
    browser
        .call("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;

    // A segment filter narrows what carries a segment (people's scores).
    let industry = people
        .iter()
        .find_map(|row| row["industry"].as_str())
        .expect("a person with an industry")
        .to_owned();
    browser
        .eval(&format!(
            "(() => {{ const f = document.getElementById('filters'); f.elements.industry.value = {industry:?}; f.requestSubmit(); return true; }})()"
        ))
        .await;
    browser
        .wait_for(
            "the filtered panels",
            "document.getElementById('status').textContent.includes('filtered')",
        )
        .await;
    let filtered = browser.eval(READ_PAGE).await;
    let in_industry = people
        .iter()
        .filter(|row| row["industry"] == json!(industry))
        .count();
    let bands: i64 = filtered["tables"]["engagement"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            row["people"]
                .as_str()
                .and_then(|n| n.parse::<i64>().ok())
                .expect("count")
        })
        .sum();
    assert_eq!(
        bands as usize, in_industry,
        "the engagement bands hold {industry} only"
    );
    browser
        .eval("document.getElementById('filters').reset(); true")
        .await;
    browser
        .wait_for(
            "the unfiltered panels",
            "!document.getElementById('status').textContent.includes('filtered')",
        )
        .await;

    // A new person's touch, appended through the collector, shows up without a reload.
    let before = browser
        .eval("Number(document.querySelector('[data-kpi=people]').dataset.value)")
        .await;
    let event = json!({
        "message_id": "dashboard-follow-1",
        "kind": "content_viewed",
        "occurred_at": "2026-06-01T10:00:00Z",
        "source": "web",
        "person_id": "dashboard-new-person",
        "data": {"url": "https://example.com/pricing", "content_type": "pricing"}
    });
    let response = client
        .post(format!("http://{addr}/v1/events"))
        .body(event.to_string())
        .send()
        .await
        .expect("post");
    let status = response.status();
    assert!(
        status.is_success(),
        "append: {status} {}",
        response.text().await.unwrap_or_default()
    );
    browser.eval("window.__same_page = true; true").await;
    let people_before = before.as_i64().expect("people");
    browser
        .wait_for(
            "the new person on the page",
            &format!(
                "Number(document.body.dataset.position) > {head} && Number(document.querySelector('[data-kpi=people]').dataset.value) === {}",
                people_before + 1
            ),
        )
        .await;
    assert_eq!(
        browser.eval("window.__same_page === true").await,
        json!(true),
        "followed without a reload"
    );
    let after = api(&client, &addr, "/v1/funnel").await;
    assert!(after["position"].as_u64().expect("position") > head);
    drop(browser);
    served.terminate();
}
