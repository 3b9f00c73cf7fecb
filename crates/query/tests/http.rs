//! The query routes served on a real socket, asked by a real HTTP client: tables as JSON and
//! CSV, filters and pages, read-your-writes with `min_position`, read tokens, readiness,
//! metrics and the OpenAPI document.

use baton_core::{Event, FunnelDefinition, FunnelProjection};
use baton_producer::{History, HistoryConfig};
use baton_projector::{Position, Status};
use baton_query::{QueryState, SnapshotPublisher};
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
    let (publisher, snapshots, wanted) = SnapshotPublisher::new("live", Duration::ZERO);
    let state = QueryState::new(
        snapshots,
        Arc::new(Status::default()),
        tokens.iter().map(|t| (*t).to_owned()).collect(),
        wanted,
    );
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
