//! The query routes served on a real socket, asked by a real HTTP client: tables as JSON and
//! CSV, filters and pages, read-your-writes with `min_position`, SQL over `POST /v1/sql`,
//! read tokens, readiness, metrics and the OpenAPI document.

use baton_core::{Event, FunnelDefinition, FunnelProjection};
use baton_producer::{History, HistoryConfig};
use baton_projector::{Position, Status};
use baton_query::{QueryState, Snapshot, SnapshotPublisher};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn history() -> Vec<Event> {
    History::new(HistoryConfig::new(31, 60)).stored().collect()
}

fn project(events: &[Event]) -> FunnelProjection {
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection
}

struct Server {
    base: String,
    publisher: SnapshotPublisher,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(tokens: &[&str]) -> Server {
    serve_views(tokens, None).await
}

/// With `candidates`, the publisher also publishes catalogs (the live view beside them), and
/// `POST /v1/sql` reads those.
async fn serve_views(tokens: &[&str], candidates: Option<Vec<Arc<Snapshot>>>) -> Server {
    let (mut publisher, snapshots, wanted) = SnapshotPublisher::new("live", Duration::ZERO);
    let mut state = QueryState::new(
        snapshots,
        Arc::new(Status::default()),
        tokens.iter().map(|t| (*t).to_owned()).collect(),
        wanted,
    );
    if let Some(candidates) = candidates {
        let empty = FunnelProjection::new(FunnelDefinition::default_funnel());
        let initial = Arc::new(Snapshot::build("live", &empty, Position::ZERO));
        state = state.with_catalogs(publisher.with_catalogs(initial, candidates));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = baton_query::router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .expect("serves");
    });
    Server {
        base: format!("http://{addr}"),
        publisher,
        _stop: stop,
    }
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_come_as_json_and_csv_with_filters_pages_and_positions() {
    let events = history();
    let projection = project(&events);
    let mut server = serve(&[]).await;
    // Before the first snapshot: not ready, and views are a clear 503.
    let response = get(&format!("{}/readyz", server.base)).await;
    assert_eq!(response.status().as_u16(), 503);
    let response = get(&format!("{}/v1/views?wait_ms=20", server.base)).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().ok()),
        Some(Some("1"))
    );
    assert!(response.text().await.expect("body").contains("catching up"));

    let head = Position::new(events.len() as u64);
    server.publisher.committed(&projection, head);
    let response = get(&format!("{}/readyz", server.base)).await;
    assert_eq!(response.status().as_u16(), 200);

    let response = get(&format!("{}/v1/views", server.base)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["baton-position"]
            .to_str()
            .expect("ascii"),
        head.get().to_string()
    );
    let listing: serde_json::Value = response.json().await.expect("json");
    let names: Vec<&str> = listing["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["table"].as_str().expect("name"))
        .collect();
    for expected in [
        "campaigns",
        "sla_by_owner",
        "cohorts",
        "handoffs",
        "opportunities",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }

    // JSON rows: the people table holds everyone, paginated.
    let summary = projection.summary();
    let url = format!("{}/v1/views/person_scores?limit=7&offset=3", server.base);
    let page: serde_json::Value = get(&url).await.json().await.expect("json");
    assert_eq!(page["total"], summary.people);
    assert_eq!(page["rows"].as_array().expect("rows").len(), 7);
    assert_eq!(page["position"], head.get());
    // The page says it is one, and where the next starts.
    assert_eq!(page["offset"], 3);
    assert_eq!(page["limit"], 7);
    assert_eq!(page["next_offset"], 10);

    // Without `limit`, the whole table (issue 25: a CSV download stopped at 1,000 rows, with
    // the total only in a header), streamed, in JSON and in CSV.
    let people = summary.people as usize;
    assert!(
        people > 100,
        "the answer takes several chunks of 100 rows: {people}"
    );
    let all: serde_json::Value = get(&format!("{}/v1/views/person_scores", server.base))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["rows"].as_array().expect("rows").len(), people);
    assert_eq!(all["total"], people);
    assert!(all.get("next_offset").is_none(), "no paging asked for");
    let csv = get(&format!(
        "{}/v1/views/person_scores?format=csv",
        server.base
    ))
    .await
    .text()
    .await
    .expect("csv");
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .is_some_and(|header| header.starts_with("person,"))
    );
    assert_eq!(lines.count(), people, "every person, one line each");

    // A filter on a column: one owner's SLA row.
    let sales = projection.sales_view();
    let owner = &sales.sla_by_owner[0];
    let url = format!(
        "{}/v1/views/sla_by_owner?owner={}",
        server.base, owner.owner
    );
    let rows: serde_json::Value = get(&url).await.json().await.expect("json");
    assert_eq!(rows["total"], 1);
    assert_eq!(rows["rows"][0]["handoffs"], owner.handoffs);

    // By account segment: every size band's rows add up to the accounts with a known size.
    let accounts: serde_json::Value = get(&format!(
        "{}/v1/views/account_scores?limit=100000",
        server.base
    ))
    .await
    .json()
    .await
    .expect("json");
    let sized = accounts["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|row| row["size"].is_string())
        .count() as u64;
    assert!(sized > 0, "the history has firmographics");
    let mut by_band = 0;
    for band in ["1-49", "50-199", "200-999", "1000-9999", "10000+"] {
        let url = format!("{}/v1/views/account_scores?size={band}", server.base);
        let rows: serde_json::Value = get(&url).await.json().await.expect("json");
        for row in rows["rows"].as_array().expect("rows") {
            assert_eq!(row["size"], band);
        }
        by_band += rows["total"].as_u64().expect("total");
    }
    assert_eq!(by_band, sized);

    // A date range on the table's time column.
    let all: serde_json::Value = get(&format!("{}/v1/views/handoffs?limit=100000", server.base))
        .await
        .json()
        .await
        .expect("json");
    let times: Vec<&str> = all["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["at"].as_str().expect("at"))
        .collect();
    let middle = times[times.len() / 2];
    let url = format!("{}/v1/views/handoffs?to={middle}", server.base);
    let before: serde_json::Value = get(&url).await.json().await.expect("json");
    let expected = times.iter().filter(|t| **t < middle).count();
    assert_eq!(before["total"], expected as u64);

    // CSV by parameter and by Accept: a header row and one line per row.
    let csv = get(&format!("{}/v1/views/campaigns?format=csv", server.base))
        .await
        .text()
        .await
        .expect("csv");
    let marketing = projection.marketing_view();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("campaign,touches,people"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), marketing.campaigns.len() + 1);
    let response = reqwest::Client::new()
        .get(format!("{}/v1/views/loss_reasons", server.base))
        .header("accept", "text/csv")
        .send()
        .await
        .expect("request");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/csv")
    );
    assert!(
        response
            .text()
            .await
            .expect("csv")
            .starts_with("reason,opportunities\r\n")
    );

    // Mistakes name what is wrong.
    let response = get(&format!("{}/v1/views/campaigns?colour=red", server.base)).await;
    assert_eq!(response.status().as_u16(), 400);
    let error: serde_json::Value = response.json().await.expect("json");
    assert!(
        error["error"]
            .as_str()
            .expect("message")
            .contains("`colour`")
    );
    let response = get(&format!("{}/v1/views/nope", server.base)).await;
    assert_eq!(response.status().as_u16(), 404);
    let response = get(&format!("{}/v1/views/cohorts?from=yesterday", server.base)).await;
    assert_eq!(response.status().as_u16(), 400);

    // One person, and the funnel summary.
    let person = &marketing.people[0].person;
    let body: serde_json::Value = get(&format!("{}/v1/people/{person}", server.base))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["person"]["person"], person.as_str());
    // Every person's lookup holds exactly their rows of handoffs and opportunities, as the
    // tables filtered by person give them, and as the whole tables hold them (the lookup and
    // the filter read the person's rows; the whole table is built from everyone's).
    let mut whole = BTreeMap::new();
    for table in ["handoffs", "opportunities"] {
        let body: serde_json::Value = get(&format!("{}/v1/views/{table}?limit=10000", server.base))
            .await
            .json()
            .await
            .expect("json");
        assert!(
            body["total"].as_u64().is_some_and(|total| total < 10_000),
            "{body}"
        );
        whole.insert(table, body["rows"].as_array().expect("rows").clone());
    }
    let mut checked = 0;
    for person in marketing.people.iter().map(|p| &p.person).take(40) {
        let lookup: serde_json::Value = get(&format!("{}/v1/people/{person}", server.base))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(lookup["person"]["person"], person.as_str());
        for table in ["handoffs", "opportunities"] {
            let filtered: serde_json::Value = get(&format!(
                "{}/v1/views/{table}?person={person}&limit=1000",
                server.base
            ))
            .await
            .json()
            .await
            .expect("json");
            assert_eq!(lookup[table], filtered["rows"], "{table} of {person}");
            let theirs: Vec<&serde_json::Value> = whole[table]
                .iter()
                .filter(|row| row["person"] == person.as_str())
                .collect();
            let found: Vec<&serde_json::Value> =
                lookup[table].as_array().expect("rows").iter().collect();
            assert_eq!(found, theirs, "{table} of {person} in the whole table");
            checked += lookup[table].as_array().map_or(0, Vec::len);
        }
    }
    assert!(
        checked > 0,
        "some of these people have hand-offs or opportunities"
    );
    let funnel: serde_json::Value = get(&format!("{}/v1/funnel", server.base))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(funnel["totals"]["events"], summary.events);
    assert_eq!(
        funnel["stages"].as_array().expect("stages").len(),
        summary.stages.len()
    );
    let response = get(&format!("{}/v1/people/nobody", server.base)).await;
    assert_eq!(response.status().as_u16(), 404);

    // Metrics and the OpenAPI document.
    let metrics = get(&format!("{}/metrics", server.base))
        .await
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("baton_projector_lag 0"), "{metrics}");
    assert!(metrics.contains(&format!("baton_query_published_position {}", head.get())));
    let openapi: serde_json::Value = get(&format!("{}/openapi.json", server.base))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(
        openapi["paths"]["/v1/sql"]["post"]["responses"]["403"].is_object(),
        "{openapi}"
    );
    let tables = &openapi["paths"]["/v1/views/{table}"]["get"]["parameters"][0]["schema"]["enum"];
    assert!(tables.as_array().expect("enum").len() >= names.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_position_waits_for_the_views_to_reflect_it() {
    let events = history();
    let (early, _) = events.split_at(events.len() / 2);
    let mut server = serve(&[]).await;
    let first = Position::new(early.len() as u64);
    server.publisher.committed(&project(early), first);
    let target = Position::new(events.len() as u64);

    // Not there within the wait: 503, naming both positions.
    let url = format!(
        "{}/v1/funnel?min_position={}&wait_ms=50",
        server.base,
        target.get()
    );
    let response = get(&url).await;
    assert_eq!(response.status().as_u16(), 503);
    let text = response.text().await.expect("body");
    assert!(
        text.contains(&first.to_string()) && text.contains(&target.to_string()),
        "{text}"
    );

    // A waiting request is answered once the projector publishes the position.
    let url = format!("{}/v1/funnel?min_position={}", server.base, target.get());
    let waiting = tokio::spawn(async move { get(&url).await.json::<serde_json::Value>().await });
    let projection = project(&events);
    // The publisher builds at once for a position a request waits for, whatever its pace.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !waiting.is_finished() {
        server.publisher.committed(&projection, target);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wait never ended"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let body = waiting.await.expect("join").expect("json");
    assert_eq!(body["position"], target.get());
    assert_eq!(body["totals"]["events"], events.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_tokens_guard_every_route_but_health() {
    let events = history();
    let mut server = serve(&["rt_secret"]).await;
    server
        .publisher
        .committed(&project(&events), Position::new(events.len() as u64));
    let client = reqwest::Client::new();
    let url = format!("{}/v1/views/campaigns", server.base);
    let response = client.get(&url).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let response = client
        .get(&url)
        .bearer_auth("rt_wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let response = client
        .get(&url)
        .bearer_auth("rt_secret")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let response = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
}

/// A counter's value in a Prometheus text exposition.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .parse()
        .expect("a whole number")
}

/// Regression: answers refused with 400 (a bad parameter, before any snapshot was looked up)
/// were not counted in `baton_query_errors_total`; now every 4xx and 5xx of the read API is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_read_is_counted_in_metrics() {
    let events = history();
    let mut server = serve(&["rt_secret"]).await;
    server
        .publisher
        .committed(&project(&events), Position::new(events.len() as u64));
    let client = reqwest::Client::new();
    let scrape = |server: &Server| {
        let url = format!("{}/metrics", server.base);
        let client = client.clone();
        async move {
            let text = client
                .get(url)
                .bearer_auth("rt_secret")
                .send()
                .await
                .expect("request")
                .text()
                .await
                .expect("text");
            (
                counter(&text, "baton_query_requests_total"),
                counter(&text, "baton_query_errors_total"),
            )
        }
    };
    let (requests_before, errors_before) = scrape(&server).await;
    let statuses = [
        // 200
        ("/v1/views/campaigns", Some("rt_secret")),
        // 400: `format` is checked before the snapshot is looked up.
        ("/v1/views/campaigns?format=xml", Some("rt_secret")),
        // 400: a filter on a column the table does not have.
        ("/v1/views/campaigns?nope=1", Some("rt_secret")),
        // 404
        ("/v1/views/nope", Some("rt_secret")),
        // 401
        ("/v1/views/campaigns", None),
    ];
    let mut seen = Vec::new();
    for (path, token) in statuses {
        let mut request = client.get(format!("{}{path}", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        seen.push(request.send().await.expect("request").status().as_u16());
    }
    assert_eq!(seen, [200, 400, 400, 404, 401]);
    let (requests_after, errors_after) = scrape(&server).await;
    assert_eq!(requests_after - requests_before, 5);
    assert_eq!(errors_after - errors_before, 4);
}

#[cfg(not(feature = "sql"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_http_says_the_build_has_no_sql() {
    let server = serve(&[]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/sql", server.base))
        .body("select 1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 501);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("`sql` feature"),
        "{body}"
    );
}

#[cfg(feature = "sql")]
mod sql {
    use super::*;

    async fn metric(server: &Server, name: &str) -> u64 {
        let metrics = get(&format!("{}/metrics", server.base))
            .await
            .text()
            .await
            .expect("text");
        counter(&metrics, name)
    }

    async fn post(
        server: &Server,
        query: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/sql{query}", server.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    async fn error(response: reqwest::Response, status: u16) -> serde_json::Value {
        assert_eq!(response.status().as_u16(), status);
        response.json().await.expect("a JSON error")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_query_answers_as_json_or_csv_at_one_position() {
        let events = history();
        let projection = project(&events);
        let summary = projection.summary();
        let mut server = serve(&[]).await;
        let head = Position::new(events.len() as u64);
        server.publisher.committed(&projection, head);

        // Raw SQL: typed columns, rows as objects, the position.
        let sql = "select count(*) as people, max(created_at) as latest, 1.5 as half \
                   from person_scores, (select created_at from opportunities) o";
        let response = post(&server, "", "text/plain", sql).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["baton-position"],
            head.get().to_string().as_str()
        );
        assert_eq!(response.headers()["baton-truncated"], "false");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["position"], head.get());
        assert_eq!(body["view"], "live");
        assert_eq!(body["truncated"], false);
        assert_eq!(body["row_count"], 1);
        assert_eq!(
            body["columns"],
            serde_json::json!([
                {"name": "people", "type": "int"},
                {"name": "latest", "type": "time"},
                {"name": "half", "type": "float"},
            ])
        );
        let opportunities = projection.sales_view().opportunities.len() as u64;
        assert_eq!(body["rows"][0]["people"], summary.people * opportunities);
        let latest = body["rows"][0]["latest"].as_str().expect("a time");
        baton_core::Timestamp::parse_rfc3339(latest).expect("RFC 3339");
        assert_eq!(body["rows"][0]["half"], 1.5);

        // JSON body, CSV by parameter: the same CSV as the tables'.
        let query = serde_json::json!({
            "query": "select campaign, touches from campaigns order by touches desc, campaign limit 3"
        });
        let response = post(
            &server,
            "?format=csv",
            "application/json",
            query.to_string(),
        )
        .await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        let text = response.text().await.expect("csv");
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "campaign,touches");
        assert_eq!(lines.len(), 5, "{text:?}");
        let mut campaigns = projection.marketing_view().campaigns.clone();
        campaigns.sort_by(|a, b| b.touches.cmp(&a.touches).then(a.campaign.cmp(&b.campaign)));
        assert_eq!(
            lines[1],
            format!("{},{}", campaigns[0].campaign, campaigns[0].touches)
        );

        // CSV by Accept, application/sql.
        let response = reqwest::Client::new()
            .post(format!("{}/v1/sql", server.base))
            .header("content-type", "application/sql")
            .header("accept", "text/csv")
            .body("select 'a,b' as x, null as y")
            .send()
            .await
            .expect("request");
        assert_eq!(response.text().await.expect("csv"), "x,y\r\n\"a,b\",\r\n");

        // Read-your-writes: a position reached answers, one not reached within the wait is a 503.
        let response = post(
            &server,
            &format!("?min_position={}&wait_ms=20", head.get()),
            "text/plain",
            "select count(*) as n from stages",
        )
        .await;
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["position"], head.get());
        assert_eq!(body["rows"][0]["n"], summary.stages.len());
        let response = post(
            &server,
            &format!("?min_position={}&wait_ms=20", head.get() + 1),
            "text/plain",
            "select 1",
        )
        .await;
        assert_eq!(response.status().as_u16(), 503);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_sql_writes_and_failures_are_named() {
        let events = history();
        let mut server = serve(&[]).await;
        server
            .publisher
            .committed(&project(&events), Position::new(events.len() as u64));

        // Refused before running: each answer names the problem.
        for (sql, sqlstate, says) in [
            ("selec 1", Some("42601"), "syntax error"),
            (
                "set datafusion.execution.target_partitions = 1",
                None,
                "only queries",
            ),
            ("select 1; select 2", None, "one statement"),
            ("select nope from campaigns", Some("42703"), "nope"),
        ] {
            let body = error(post(&server, "", "text/plain", sql).await, 400).await;
            if let Some(sqlstate) = sqlstate {
                assert_eq!(body["sqlstate"], sqlstate, "{sql}");
            }
            assert!(
                body["error"].as_str().expect("error").contains(says),
                "{sql}: {body}"
            );
        }

        let body = error(
            post(&server, "", "text/plain", "select * from nope").await,
            400,
        )
        .await;
        assert_eq!(body["sqlstate"], "42P01");
        assert!(
            body["error"].as_str().expect("error").contains("nope"),
            "{body}"
        );
        assert!(
            body["hint"].as_str().expect("hint").contains("public"),
            "{body}"
        );

        let body = error(
            post(&server, "", "text/plain", "delete from campaigns").await,
            403,
        )
        .await;
        assert_eq!(body["sqlstate"], "25006");
        assert_eq!(
            body["error"],
            "cannot execute DELETE in a read-only transaction"
        );
        for write in [
            "create table t (a int)",
            "insert into campaigns select * from campaigns",
            "select 1 into t",
            "copy campaigns to '/tmp/campaigns.csv'",
        ] {
            let response = post(&server, "", "text/plain", write).await;
            assert_eq!(response.status().as_u16(), 403, "{write}");
        }

        // Plans, then fails on the data: the person ids are not numbers.
        let body = error(
            post(
                &server,
                "",
                "text/plain",
                "select cast(person as bigint) from person_scores",
            )
            .await,
            422,
        )
        .await;
        assert_eq!(body["sqlstate"], "22P02", "{body}");
        let body = error(
            post(
                &server,
                "",
                "text/plain",
                "select count(*) / 0 from campaigns",
            )
            .await,
            422,
        )
        .await;
        assert_eq!(body["sqlstate"], "22012", "{body}");

        // Bodies: empty, not JSON, no `query`, an unknown type, too large.
        error(post(&server, "", "text/plain", "  ").await, 400).await;
        let body = error(post(&server, "", "application/json", "select 1").await, 400).await;
        assert!(
            body["error"].as_str().expect("error").contains("not JSON"),
            "{body}"
        );
        let body = error(
            post(&server, "", "application/json", r#"{"sql": "select 1"}"#).await,
            400,
        )
        .await;
        assert!(
            body["error"].as_str().expect("error").contains("`query`"),
            "{body}"
        );
        error(post(&server, "", "application/xml", "<q/>").await, 415).await;
        let huge = format!("select 1 -- {}", "x".repeat(baton_query::MAX_SQL_BYTES));
        let body = error(post(&server, "", "text/plain", huge).await, 413).await;
        assert!(
            body["error"].as_str().expect("error").contains("larger"),
            "{body}"
        );
        let body = error(
            post(&server, "?limit=3", "text/plain", "select 1").await,
            400,
        )
        .await;
        assert!(
            body["error"].as_str().expect("error").contains("`limit`"),
            "{body}"
        );

        // Two columns of one name cannot be a JSON object; CSV holds them.
        let join = "select a.campaign, b.campaign from campaigns a join campaigns b on a.campaign = b.campaign";
        error(post(&server, "", "text/plain", join).await, 400).await;
        let response = post(&server, "?format=csv", "text/plain", join).await;
        assert_eq!(response.status().as_u16(), 200);

        // Every one of those 19 failures is counted, and the one success is not.
        assert_eq!(metric(&server, "baton_query_errors_total").await, 19);
        assert_eq!(metric(&server, "baton_query_requests_total").await, 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_answer_is_cut_at_the_row_cap_and_says_so() {
        let events = history();
        let mut server = serve(&[]).await;
        server
            .publisher
            .committed(&project(&events), Position::new(events.len() as u64));
        let cap = baton_query::MAX_SQL_ROWS;
        let sql = format!(
            "select value from generate_series(1, {}) order by value",
            cap + 5
        );
        let response = post(&server, "", "text/plain", sql).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["baton-truncated"], "true");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["truncated"], true);
        assert_eq!(body["row_count"], cap);
        let rows = body["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), cap);
        assert_eq!(rows[cap - 1]["value"], cap);
        let sql = format!("select value from generate_series(1, {cap})");
        let body: serde_json::Value = post(&server, "", "text/plain", sql)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(body["truncated"], false);
        assert_eq!(body["row_count"], cap);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn candidate_views_are_schemas_and_tokens_apply() {
        let events = history();
        let (early, _) = events.split_at(events.len() / 2);
        let early_projection = project(early);
        let candidate = Arc::new(Snapshot::build(
            "trial",
            &early_projection,
            Position::new(early.len() as u64),
        ));
        let mut server = serve_views(&["rt_secret"], Some(vec![candidate])).await;
        let projection = project(&events);
        let head = Position::new(events.len() as u64);
        server.publisher.committed(&projection, head);
        let client = reqwest::Client::new();
        let url = format!("{}/v1/sql", server.base);
        let sql = "select (select count(*) from public.person_scores) as live, \
                   (select count(*) from trial.person_scores) as candidate";
        let response = client.post(&url).body(sql).send().await.expect("request");
        assert_eq!(response.status().as_u16(), 401);
        let response = client
            .post(&url)
            .bearer_auth("rt_wrong")
            .body(sql)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 401);
        let response = client
            .post(&url)
            .bearer_auth("rt_secret")
            .body(sql)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["position"], head.get());
        assert_eq!(body["rows"][0]["live"], projection.summary().people);
        assert_eq!(
            body["rows"][0]["candidate"],
            early_projection.summary().people
        );
        assert_ne!(body["rows"][0]["live"], body["rows"][0]["candidate"]);
    }
}

/// A candidate's kept comparison over HTTP: stages matched by name (a candidate with more
/// stages, one of them renamed), each side's counts those of its own definition's stage of
/// that name; a candidate without one, and one not served, are 404s saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidates_comparison_is_served_with_stages_matched_by_name() {
    let events = history();
    let live = project(&events);
    let more = FunnelDefinition::parse(
        "more_stages.toml",
        include_str!("../../core/tests/fixtures/more_stages.toml"),
    )
    .expect("the fixture parses");
    let mut candidate = FunnelProjection::new(more);
    for event in &events {
        candidate.apply(event);
    }
    candidate.refresh();
    let head = Position::new(events.len() as u64);
    let comparison = baton_core::compare(&live, &candidate);
    let report =
        baton_query::comparison::comparison_json(&comparison, ("live", head), ("more", head), head);
    let with = Arc::new(Snapshot::build("more", &candidate, head).with_comparison(report));
    let without = Arc::new(Snapshot::build("bare", &candidate, head));
    let mut server = serve_views(&[], Some(vec![with, without])).await;
    server.publisher.committed(&live, head);

    let listing: serde_json::Value = get(&format!("{}/v1/comparisons", server.base))
        .await
        .json()
        .await
        .expect("json");
    let listed: Vec<(&str, bool)> = listing["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| {
            (
                c["candidate"].as_str().expect("name"),
                c["comparison"].as_bool().expect("flag"),
            )
        })
        .collect();
    assert_eq!(listed, [("more", true), ("bare", false)]);

    let response = get(&format!("{}/v1/comparisons/more", server.base)).await;
    assert_eq!(response.status().as_u16(), 200);
    let report: serde_json::Value = response.json().await.expect("json");
    let summary_stage = |side: &str, summary: &baton_core::FunnelSummary, name: &str| {
        summary
            .stages
            .iter()
            .find(|stage| stage.name == name)
            .map(|stage| serde_json::json!(stage.entered))
            .unwrap_or_else(|| panic!("{side} has no stage {name}"))
    };
    let (live_summary, candidate_summary) = (live.summary(), candidate.summary());
    let mut only = (Vec::new(), Vec::new());
    for pair in report["stages"].as_array().expect("stages") {
        let name = pair["name"].as_str().expect("name");
        match (pair["live"].is_null(), pair["candidate"].is_null()) {
            (false, false) => {
                assert_eq!(
                    pair["live"]["entered"],
                    summary_stage("live", &live_summary, name)
                );
                assert_eq!(
                    pair["candidate"]["entered"],
                    summary_stage("candidate", &candidate_summary, name)
                );
            }
            (false, true) => only.0.push(name.to_owned()),
            (true, false) => only.1.push(name.to_owned()),
            (true, true) => panic!("{name} is in neither"),
        }
    }
    let live_names: Vec<&str> = live_summary
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        only.0
            .iter()
            .all(|name| live_names.contains(&name.as_str()))
    );
    assert!(!only.0.is_empty() && !only.1.is_empty(), "{only:?}");

    let response = get(&format!("{}/v1/comparisons/bare", server.base)).await;
    assert_eq!(response.status().as_u16(), 404);
    let text = response.text().await.expect("body");
    assert!(text.contains("baton compare bare"), "{text}");
    let response = get(&format!("{}/v1/comparisons/nope", server.base)).await;
    assert_eq!(response.status().as_u16(), 404);
    let text = response.text().await.expect("body");
    assert!(text.contains("more, bare"), "{text}");
}

/// The dashboard's page is served to anyone (it holds no data); its data only with a token.
/// Asking again while nothing moved is a 304 that builds nothing; a new position is a new
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_is_open_and_its_data_behind_the_tokens() {
    let events = history();
    let mut server = serve(&["tok"]).await;
    let half = events.len() / 2;
    server
        .publisher
        .committed(&project(&events[..half]), Position::new(half as u64));
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("/dashboard/dashboard.js")
    );
    for file in ["/dashboard/dashboard.js", "/dashboard/dashboard.css"] {
        let response = client
            .get(format!("{}{file}", server.base))
            .send()
            .await
            .expect("file");
        assert_eq!(response.status().as_u16(), 200, "{file}");
    }
    let response = client
        .get(format!("{}/v1/dashboard", server.base))
        .send()
        .await
        .expect("data");
    assert_eq!(response.status().as_u16(), 401);

    let ask = |etag: Option<String>| {
        let mut request = client
            .get(format!("{}/v1/dashboard", server.base))
            .bearer_auth("tok");
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };
    let first = ask(None).await.expect("dashboard");
    assert_eq!(first.status().as_u16(), 200);
    let etag = first.headers()["etag"].to_str().expect("ascii").to_owned();
    let body: serde_json::Value = first.json().await.expect("json");
    assert_eq!(body["position"], serde_json::json!(half));
    let panels: Vec<&str> = body["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        panels,
        [
            "funnel",
            "cohorts",
            "handoffs",
            "marketing",
            "sales",
            "customer",
            "definitions"
        ]
    );
    let again = ask(Some(etag.clone())).await.expect("again");
    assert_eq!(again.status().as_u16(), 304, "nothing moved");

    let head = events.len() as u64;
    server
        .publisher
        .committed(&project(&events), Position::new(head));
    let moved = ask(Some(etag.clone())).await.expect("moved");
    assert_eq!(moved.status().as_u16(), 200, "a new position");
    assert_ne!(moved.headers()["etag"].to_str().expect("ascii"), etag);
    let body: serde_json::Value = moved.json().await.expect("json");
    assert_eq!(body["position"], serde_json::json!(head));

    let response = client
        .get(format!("{}/v1/dashboard?from=yesterday", server.base))
        .bearer_auth("tok")
        .send()
        .await
        .expect("bad filter");
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.expect("body").contains("`from`"));
}
