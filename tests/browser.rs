//! A website tracks with Segment's browser library (`@segment/analytics-next`, pinned in
//! `tests/browser/package-lock.json`, installed by `.ci/run`) against `baton serve`: a real
//! page in headless Chromium, from one origin, sending to Baton on another. And what a public
//! browser key may not do: other origins, other kinds, other sources, other routes, its rate.

mod common;

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Served, baton, chromium};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BROWSER_KEY: &str = "wk_browser_test";
const CRM_KEY: &str = "wk_crm_test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The library's built files, from npm (`npm ci --prefix tests/browser`, which `.ci/run` does).
fn library_dir() -> PathBuf {
    let dir = repo().join("tests/browser/node_modules/@segment/analytics-next/dist/umd");
    assert!(
        dir.join("standalone.js").is_file(),
        "{} is missing: run `npm ci --prefix tests/browser` (.ci/run does)",
        dir.display()
    );
    dir
}

/// The config of a `baton serve` with a browser key for `origin` and a CRM key.
fn config(dir: &Path, origin: &str, extra: &str) -> PathBuf {
    let path = dir.join("baton.toml");
    std::fs::write(
        &path,
        format!(
            r#"http = "127.0.0.1:0"
sql = "off"
publish_every_ms = 100
browser_library = "{library}"

[[write_keys]]
source = "web"
key = "{BROWSER_KEY}"
kinds = ["touch", "identified", "linked_to_account", "person_updated", "account_updated"]
routes = ["segment"]
origins = ["{origin}"]

[[write_keys]]
source = "salesforce"
key = "{CRM_KEY}"
kinds = ["crm", "action", "identity"]
{extra}
"#,
            library = library_dir().display()
        ),
    )
    .expect("config written");
    path
}

/// The events on the log, as `baton log read` prints them.
fn events(dir: &Path) -> Vec<Value> {
    let output = baton(dir, &["log", "read"]);
    assert!(
        output.status.success(),
        "log read: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("an event per line"))
        .collect()
}

/// `message_id` → kinds stored under it (a call that makes two events stores the second as
/// `ID#traits`, counted under `ID`).
fn stored(dir: &Path, run: &str) -> HashMap<String, Vec<String>> {
    let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
    for event in events(dir) {
        let Some(id) = event["message_id"].as_str() else {
            continue;
        };
        if !id.starts_with(&format!("{run}-")) {
            continue;
        }
        let call = id.split('#').next().unwrap_or(id).to_owned();
        by_id
            .entry(call)
            .or_default()
            .push(event["kind"].as_str().unwrap_or_default().to_owned());
    }
    for kinds in by_id.values_mut() {
        kinds.sort();
    }
    by_id
}

/// What the pages report (`/done?run=..&outcome=..`), and the host serving them: the page,
/// and for a forger's page, the library and settings pointing at Baton from its own origin.
#[derive(Clone)]
struct PageHost {
    reports: Arc<Mutex<Vec<(String, String)>>>,
    baton: String,
}

async fn page() -> Response {
    let html = std::fs::read(repo().join("tests/browser/page.html")).expect("page.html");
    ([("content-type", "text/html; charset=utf-8")], html).into_response()
}

async fn done(
    State(host): State<PageHost>,
    Query(query): Query<HashMap<String, String>>,
) -> &'static str {
    host.reports.lock().expect("reports").push((
        query.get("run").cloned().unwrap_or_default(),
        query.get("outcome").cloned().unwrap_or_default(),
    ));
    "ok"
}

async fn own_settings(State(host): State<PageHost>, UrlPath(key): UrlPath<String>) -> Response {
    axum::Json(json!({
        "integrations": {"Segment.io": {"apiKey": key, "apiHost": format!("{}/v1", host.baton), "protocol": "http"}},
        "metrics": {"sampleRate": 0},
        "remotePlugins": []
    }))
    .into_response()
}

async fn own_library(UrlPath(_key): UrlPath<String>) -> Response {
    let script = std::fs::read(library_dir().join("standalone.js")).expect("standalone.js");
    ([("content-type", "application/javascript")], script).into_response()
}

async fn own_bundle(UrlPath(file): UrlPath<String>) -> Response {
    match std::fs::read(library_dir().join(file.replace('/', ""))) {
        Ok(body) => ([("content-type", "application/javascript")], body).into_response(),
        Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_page_host(baton: &str) -> (u16, PageHost) {
    let host = PageHost {
        reports: Arc::new(Mutex::new(Vec::new())),
        baton: baton.to_owned(),
    };
    let app = axum::Router::new()
        .route("/page.html", get(page))
        .route("/done", get(done))
        .route("/v1/projects/{key}/settings", get(own_settings))
        .route("/analytics.js/v1/{key}/analytics.min.js", get(own_library))
        .route("/analytics-next/bundles/{file}", get(own_bundle))
        .with_state(host.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("page host binds");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, host)
}

/// Headless Chromium on `url`, killed when dropped.
struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
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
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        Browser {
            child,
            _profile: profile,
        }
    }

    async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool, detail: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            detail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn reports_of(host: &PageHost, run: &str) -> Vec<String> {
    host.reports
        .lock()
        .expect("reports")
        .iter()
        .filter(|(r, _)| r == run)
        .map(|(_, outcome)| outcome.clone())
        .collect()
}

/// The kinds each call of a page load must store, once.
fn expected(run: &str) -> HashMap<String, Vec<String>> {
    let mut expected = HashMap::new();
    for (call, kinds) in [
        ("page", vec!["content_viewed"]),
        ("track", vec!["demo_requested"]),
        ("identify", vec!["identified", "person_updated"]),
        ("group", vec!["account_updated", "linked_to_account"]),
        ("beacon", vec!["webinar_registered"]),
        ("fetch", vec!["webinar_registered"]),
    ] {
        expected.insert(
            format!("{run}-{call}"),
            kinds.into_iter().map(str::to_owned).collect(),
        );
    }
    expected
}

/// The ids and properties the page gave are the events': the person, the account, the page's
/// URL, the product, the webinar; every event is the browser key's source.
fn check_what_was_said(dir: &Path, run: &str) {
    let all = events(dir);
    let event = |id: &str| {
        all.iter()
            .find(|e| e["message_id"] == format!("{run}-{id}"))
            .unwrap_or_else(|| panic!("{run}-{id} is stored"))
    };
    assert_eq!(
        event("page")["data"]["url"],
        format!("https://acme.example/pricing?run={run}")
    );
    assert_eq!(event("page")["data"]["title"], "Pricing");
    assert_eq!(event("track")["data"]["product"], "baton");
    assert_eq!(event("identify")["person_id"], format!("person-{run}"));
    let anonymous = event("identify")["anonymous_id"].clone();
    assert!(
        anonymous.is_string(),
        "identify links the browser's anonymous id"
    );
    assert_eq!(event("page")["anonymous_id"], anonymous, "one browser");
    assert_eq!(event("group")["account_id"], format!("account-{run}"));
    assert_eq!(event("beacon")["data"]["webinar_id"], format!("w-{run}"));
    for e in all.iter().filter(|e| {
        e["message_id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("{run}-")))
    }) {
        assert_eq!(e["source"]["system"], "web", "{e}");
    }
}

async fn load(
    page_port: u16,
    host_name: &str,
    cdn: &str,
    api: &str,
    run: &str,
    batching: bool,
) -> Browser {
    let url = format!(
        "http://{host_name}:{page_port}/page.html?cdn={cdn}&api={api}&key={BROWSER_KEY}&run={run}&batching={}",
        u8::from(batching)
    );
    Browser::open(&url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_tracks_through_segments_browser_library_exactly_once() {
    let dir = tempfile::tempdir().expect("dir");
    // The page host binds first, so its origin can go in the key's config; Baton's address is
    // only known once it serves, so the host learns it after.
    let (page_port, host) = start_page_host("").await;
    let origin = format!("http://127.0.0.1:{page_port}");
    let config = config(dir.path(), &origin, "");
    let served = Served::start(dir.path(), &["--config", config.to_str().expect("utf-8")]);
    let baton_url = format!("http://{}", served.addr);
    let api = format!("{baton_url}/v1");
    // The forger's host serves the library itself, pointed at Baton.
    let (forger_port, forger) = start_page_host(&served.addr).await;

    // 1. Standard delivery: a request per call, to the short paths, with Baton serving the
    //    library and its settings.
    let browser = load(page_port, "127.0.0.1", &baton_url, &api, "std", false).await;
    let detail = |run: &'static str| {
        let reports = host.reports.clone();
        let stderr = served.stderr();
        let dir = dir.path().to_owned();
        move || {
            format!(
                "stored: {:?}
reports: {:?}
serve: {stderr}",
                stored(&dir, run),
                reports.lock().expect("reports")
            )
        }
    };
    wait_for(
        "the standard page's calls",
        || stored(dir.path(), "std") == expected("std"),
        detail("std"),
    )
    .await;
    wait_for(
        "the standard page's report",
        || !reports_of(&host, "std").is_empty(),
        detail("std"),
    )
    .await;
    browser.close().await;
    assert_eq!(
        reports_of(&host, "std"),
        ["called beacon=true fetch=sent"],
        "{}",
        served.stderr()
    );
    check_what_was_said(dir.path(), "std");

    // 2. Batching delivery: one /v1/b request, flushed when the page is left.
    let browser = load(page_port, "127.0.0.1", &baton_url, &api, "batch", true).await;
    wait_for(
        "the batching page's calls",
        || stored(dir.path(), "batch") == expected("batch"),
        detail("batch"),
    )
    .await;
    browser.close().await;
    check_what_was_said(dir.path(), "batch");

    // 3. The standard page again, same messageIds: nothing more is stored.
    let before = events(dir.path()).len();
    let browser = load(page_port, "127.0.0.1", &baton_url, &api, "std", false).await;
    wait_for(
        "the second load's report",
        || reports_of(&host, "std").len() == 2,
        detail("std"),
    )
    .await;
    // The report comes after every call was answered (the library's calls resolve when
    // delivered, the no-cors fetch when answered); the beacon may still be on its way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.close().await;
    assert_eq!(stored(dir.path(), "std"), expected("std"));
    assert_eq!(
        events(dir.path()).len(),
        before,
        "a second load stored nothing new"
    );

    // 4. A page from an origin the key does not allow (`localhost` is another origin than
    //    `127.0.0.1`), even with the library hosted elsewhere: Baton refuses the preflight and
    //    the preflight-free posts alike, and stores nothing.
    let forged_origin_url = format!("http://localhost:{forger_port}");
    let browser = load(
        forger_port,
        "localhost",
        &forged_origin_url,
        &api,
        "forged",
        false,
    )
    .await;
    wait_for(
        "the forged page's report",
        || !reports_of(&forger, "forged").is_empty(),
        detail("forged"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.close().await;
    assert!(
        stored(dir.path(), "forged").is_empty(),
        "nothing from a page of another origin: {:?}",
        stored(dir.path(), "forged")
    );

    // What Baton serves a browser is for browser keys and their origins only.
    let client = reqwest::Client::new();
    let settings = client
        .get(format!("{baton_url}/v1/projects/{BROWSER_KEY}/settings"))
        .header("origin", &origin)
        .send()
        .await
        .expect("settings");
    assert_eq!(settings.status(), 200);
    assert_eq!(
        settings.headers()["access-control-allow-origin"],
        origin.as_str()
    );
    let body: Value = serde_json::from_slice(&settings.bytes().await.expect("body")).expect("json");
    assert_eq!(
        body["integrations"]["Segment.io"]["apiHost"],
        format!("{}/v1", served.addr)
    );
    let crm_settings = client
        .get(format!("{baton_url}/v1/projects/{CRM_KEY}/settings"))
        .send()
        .await
        .expect("settings");
    assert_eq!(crm_settings.status(), 404, "a server key is no browser's");
    let script = client
        .get(format!(
            "{baton_url}/analytics.js/v1/{BROWSER_KEY}/analytics.min.js"
        ))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), 200);
    let script = script.text().await.expect("text");
    assert!(
        script.contains(&format!("\"{BROWSER_KEY}\"")),
        "the key is written into the script"
    );
    assert!(!script.contains("\"__WRITE_KEY__\""));
    drop(served);
}

/// A request to `baton serve`: status, headers, body as JSON (or `null`).
async fn send(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("baton answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn closed_won(message_id: &str, source: &str) -> String {
    json!({
        "message_id": message_id, "kind": "opportunity_closed_won",
        "occurred_at": "2026-03-03T17:30:00.000Z", "source": source,
        "account_id": "acct-acme", "opportunity_id": "opp-forged",
        "data": {"amount": "9999999", "currency": "USD"}
    })
    .to_string()
}

fn kinds_stored(dir: &Path, kind: &str) -> usize {
    events(dir).iter().filter(|e| e["kind"] == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_key_writes_only_what_its_scope_allows() {
    let dir = tempfile::tempdir().expect("dir");
    let origin = "https://www.acme.example";
    // A second key of the web team, for servers: every route, touches and identity only.
    // A mapped webhook that says it is the CRM. The browser key's rate is tiny.
    let extra = r#"
[[write_keys]]
source = "web"
key = "wk_web_server"
kinds = ["touch", "identity"]

[mappings.crmhook]
system = "salesforce"
message_id = "/id"
occurred_at = "/at"
account_id = "/account"
opportunity_id = "/opportunity"
kind = { constant = "opportunity_closed_won" }
[mappings.crmhook.data.opportunity_closed_won]
amount = "/amount"
currency = { constant = "USD" }
"#;
    let config_path = config(dir.path(), origin, extra);
    let rated = std::fs::read_to_string(&config_path)
        .expect("config")
        .replace(
            "origins = [\"https://www.acme.example\"]",
            "origins = [\"https://www.acme.example\"]\nrate = { items_per_second = 1, burst = 4 }",
        );
    std::fs::write(&config_path, &rated).expect("config");
    let served = Served::start(
        dir.path(),
        &["--config", config_path.to_str().expect("utf-8")],
    );
    let base = format!("http://{}", served.addr);
    let client = reqwest::Client::new();
    let webhook = json!({"id": "hook-1", "at": "2026-03-03T17:30:00Z", "account": "acct-acme",
        "opportunity": "opp-forged", "amount": "9999999"})
    .to_string();

    // The browser key on routes it does not have: refused whole, naming its routes.
    for (path, body) in [
        ("/v1/events", closed_won("forged-1", "web")),
        ("/v1/webhooks/crmhook", webhook.clone()),
    ] {
        let (status, _, answer) = send(
            client
                .post(format!("{base}{path}"))
                .header("authorization", bearer(BROWSER_KEY))
                .body(body),
        )
        .await;
        assert_eq!(status, 403, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("its routes are segment"), "{path}: {error}");
    }

    // A key with every route but only touches and identity: the CRM fact is refused per item,
    // by source first (it claims salesforce), then by kind.
    let (status, _, answer) = send(
        client
            .post(format!("{base}/v1/events"))
            .header("authorization", bearer("wk_web_server"))
            .body(format!(
                "[{}, {}]",
                closed_won("forged-2", "salesforce"),
                closed_won("forged-3", "web")
            )),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["refused"], 2, "{answer}");
    assert_eq!(answer["items"][0]["status"], "refused");
    assert_eq!(answer["items"][0]["field"], "source.system");
    assert_eq!(answer["items"][1]["field"], "kind");
    assert!(
        answer["items"][1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("opportunity_closed_won is outside this write key's scope"),
        "{answer}"
    );
    let (status, _, answer) = send(
        client
            .post(format!("{base}/v1/webhooks/crmhook"))
            .header("authorization", bearer("wk_web_server"))
            .body(webhook.clone()),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["items"][0]["field"], "source.system", "{answer}");

    // Through Segment's paths the events are the key's own source: it cannot claim another.
    let (status, _, answer) = send(
        client
            .post(format!("{base}/v1/t"))
            .header("content-type", "text/plain")
            .header("origin", origin)
            .body(
                json!({"type": "track", "event": "Demo Requested", "messageId": "seg-1",
                    "anonymousId": "anon-1", "writeKey": BROWSER_KEY,
                    "context": {"library": {"name": "salesforce"}}})
                .to_string(),
            ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let stored = events(dir.path());
    let demo = stored
        .iter()
        .find(|e| e["message_id"] == "seg-1")
        .expect("the Segment call is stored");
    assert_eq!(demo["source"]["system"], "web");

    // The CRM's own key writes the CRM fact.
    let (status, _, answer) = send(
        client
            .post(format!("{base}/v1/events"))
            .header("authorization", bearer(CRM_KEY))
            .body(closed_won("crm-1", "salesforce")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        kinds_stored(dir.path(), "opportunity_closed_won"),
        1,
        "only the CRM's closed-won is stored"
    );

    // CORS: a preflight from the key's origin is answered; from another, refused, and a post
    // from another origin stores nothing even without a preflight.
    let (status, headers, _) = send(
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/v1/t"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            ),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], origin);
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .expect("text")
            .contains("Authorization")
    );
    for path in ["/v1/t", "/v1/events"] {
        let (status, headers, _) = send(
            client
                .request(reqwest::Method::OPTIONS, format!("{base}{path}"))
                .header("origin", "https://evil.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
        assert_eq!(status, 403, "{path}");
        assert!(!headers.contains_key("access-control-allow-origin"));
    }
    let (status, headers, answer) = send(
        client
            .post(format!("{base}/v1/t"))
            .header("content-type", "text/plain")
            .header("origin", "https://evil.example")
            .body(
                json!({"type": "track", "event": "Demo Requested", "messageId": "evil-1",
                    "anonymousId": "anon-2", "writeKey": BROWSER_KEY})
                .to_string(),
            ),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert!(
        !events(dir.path())
            .iter()
            .any(|e| e["message_id"] == "evil-1")
    );

    // The browser key's rate (1 a second, bursts of 4): 429 with Retry-After, nothing of that
    // request stored; the CRM key goes on.
    let mut limited = None;
    for n in 0..10 {
        let (status, headers, answer) = send(
            client
                .post(format!("{base}/v1/t"))
                .header("content-type", "text/plain")
                .header("origin", origin)
                .body(
                    json!({"type": "track", "event": "Demo Requested",
                        "messageId": format!("burst-{n}"), "anonymousId": "anon-3",
                        "writeKey": BROWSER_KEY})
                    .to_string(),
                ),
        )
        .await;
        if status == 429 {
            assert!(headers.contains_key("retry-after"), "{answer}");
            assert_eq!(
                headers["access-control-allow-origin"], origin,
                "the page can read it"
            );
            limited = Some(n);
            break;
        }
        assert_eq!(status, 200, "{answer}");
    }
    let limited = limited.expect("the browser key was limited");
    assert!((3..=6).contains(&limited), "limited at request {limited}");
    assert!(
        !events(dir.path())
            .iter()
            .any(|e| e["message_id"] == format!("burst-{limited}"))
    );
    let (status, _, answer) = send(
        client
            .post(format!("{base}/v1/events"))
            .header("authorization", bearer(CRM_KEY))
            .body(closed_won("crm-2", "salesforce")),
    )
    .await;
    assert_eq!(status, 200, "other keys go on: {answer}");

    // Rotation without a restart: the new key added and reloaded (SIGHUP), both work; the old
    // one removed and reloaded, it is refused.
    let hangup = |served: &Served| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &served.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    let appended = format!(
        "{rated}\n[[write_keys]]\nsource = \"salesforce\"\nkey = \"wk_crm_next\"\nkinds = [\"crm\", \"action\", \"identity\"]\n"
    );
    std::fs::write(&config_path, &appended).expect("config");
    hangup(&served);
    let reloaded = |count: usize| {
        served
            .stderr()
            .contains(&format!("SIGHUP: {count} write keys from"))
    };
    wait_for("the first reload", || reloaded(4), || served.stderr()).await;
    for (key, id) in [(CRM_KEY, "rot-1"), ("wk_crm_next", "rot-2")] {
        let (status, _, answer) = send(
            client
                .post(format!("{base}/v1/events"))
                .header("authorization", bearer(key))
                .body(closed_won(id, "salesforce")),
        )
        .await;
        assert_eq!(status, 200, "{key} during the rotation: {answer}");
    }
    let without_old = appended.replace(
        &format!("[[write_keys]]\nsource = \"salesforce\"\nkey = \"{CRM_KEY}\"\nkinds = [\"crm\", \"action\", \"identity\"]\n"),
        "",
    );
    assert_ne!(without_old, appended, "the old key's table was found");
    std::fs::write(&config_path, &without_old).expect("config");
    hangup(&served);
    wait_for("the second reload", || reloaded(3), || served.stderr()).await;
    let (status, _, _) = send(
        client
            .post(format!("{base}/v1/events"))
            .header("authorization", bearer(CRM_KEY))
            .body(closed_won("rot-3", "salesforce")),
    )
    .await;
    assert_eq!(status, 401, "the old key is gone");
    let (status, _, answer) = send(
        client
            .post(format!("{base}/v1/events"))
            .header("authorization", bearer("wk_crm_next"))
            .body(closed_won("rot-4", "salesforce")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // Reloading keys does not keep the collector from stopping cleanly.
    let status = served.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
