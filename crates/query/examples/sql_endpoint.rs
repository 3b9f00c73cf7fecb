//! Serves a seeded synthetic history over SQL, to try the endpoint with psql or a BI tool
//! without the rest of baton: `cargo run -p baton-query --example sql_endpoint -- [PORT]
//! [ACCOUNTS]`, then `psql -h 127.0.0.1 -p PORT -d baton`. Stops on Ctrl-C.

use std::sync::Arc;

use anyhow::Context;
use baton_core::{FunnelDefinition, FunnelProjection};
use baton_producer::{History, HistoryConfig};
use baton_projector::Position;
use baton_query::{Catalog, Snapshot, SqlConfig, serve_sql};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .map_or(Ok(5433), |port| port.parse())
        .context("PORT")?;
    let accounts: u64 = args
        .next()
        .map_or(Ok(200), |n| n.parse())
        .context("ACCOUNTS")?;

    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    let mut events = 0;
    for event in History::new(HistoryConfig::new(1, accounts)) {
        projection.apply(&event);
        events += 1;
    }
    projection.refresh();
    let snapshot = Snapshot::build("main", &projection, Position::new(events));
    let (_catalogs, receiver) =
        tokio::sync::watch::channel(Arc::new(Catalog::new(Arc::new(snapshot))));

    let config = SqlConfig {
        addr: ([127, 0, 0, 1], port).into(),
        read_tokens: Vec::new(),
        tls: None,
        statement_timeout: baton_query::DEFAULT_STATEMENT_TIMEOUT,
        known_at: None,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let server = serve_sql(config, receiver, shutdown).await?;
    println!(
        "{events} events from {accounts} accounts; psql -h 127.0.0.1 -p {} -d baton",
        server.local_addr().port()
    );
    server.join().await?;
    Ok(())
}
