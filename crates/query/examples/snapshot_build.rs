//! Times what freshness costs: computing the views and building a served snapshot of a seeded
//! synthetic history, first for the whole history, then after each of a few small batches of
//! new events (what the live publisher does every quarter second while ingesting). A snapshot
//! builds its row-level tables when first read; the figure after it per batch is that read,
//! then what the dashboard's answer costs at that position (unfiltered, then filtered).
//! `cargo run --release -p baton-query --example snapshot_build -- [ACCOUNTS] [BATCHES]`;
//! 16,667 accounts is about a million events.

use std::time::Instant;

use anyhow::Context;
use baton_core::{FunnelDefinition, FunnelProjection};
use baton_producer::{History, HistoryConfig};
use baton_projector::Position;
use baton_query::Snapshot;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let accounts: u64 = args
        .next()
        .map_or(Ok(16_667), |n| n.parse())
        .context("ACCOUNTS")?;
    let batches: usize = args
        .next()
        .map_or(Ok(5), |n| n.parse())
        .context("BATCHES")?;

    // The last 1,250 events per batch are held back and applied a batch at a time: a quarter
    // second of ingest at 5,000 events/s.
    const BATCH: usize = 1_250;
    let mut events: Vec<_> = History::new(HistoryConfig::new(7, accounts)).collect();
    let later = events.split_off(events.len().saturating_sub(BATCH * batches));
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    let started = Instant::now();
    for event in &events {
        projection.apply(event);
    }
    projection.refresh();
    println!(
        "{} events, {} people, folded in {:.0} ms",
        events.len(),
        projection.people(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut position = events.len() as u64;
    let started = Instant::now();
    let snapshot = Snapshot::build("main", &projection, Position::new(position));
    println!(
        "history: snapshot {:.1} ms ({} tables)",
        started.elapsed().as_secs_f64() * 1e3,
        snapshot.table_names().count()
    );
    drop(snapshot);
    for batch in later.chunks(BATCH) {
        let started = Instant::now();
        for event in batch {
            projection.apply(event);
        }
        projection.refresh();
        let folded = started.elapsed();
        position += batch.len() as u64;
        let started = Instant::now();
        let views = projection.views();
        let views_took = started.elapsed();
        drop(views);
        let started = Instant::now();
        let snapshot = Snapshot::build("main", &projection, Position::new(position));
        let built = started.elapsed();
        // What a reader of every row-level table pays, once per snapshot.
        let started = Instant::now();
        let rows: usize = snapshot.tables().map(|(_, table)| table.rows.len()).sum();
        let read = started.elapsed();
        // What the dashboard's answer costs at a new position (built once, then shared by
        // every page that follows the log), unfiltered and with a segment filter.
        let started = Instant::now();
        let dashboard = baton_query::dashboard::dashboard(
            &snapshot,
            &[],
            &baton_query::dashboard::Filters::default(),
        );
        let dashboard_took = started.elapsed();
        let bytes = dashboard.to_string().len();
        let filters = baton_query::dashboard::Filters {
            industry: Some("software".to_owned()),
            ..Default::default()
        };
        let started = Instant::now();
        drop(baton_query::dashboard::dashboard(&snapshot, &[], &filters));
        let filtered_took = started.elapsed();
        println!(
            "batch of {}: fold {:.1} ms, views {:.1} ms, snapshot {:.1} ms, \
             reading all {rows} rows {:.1} ms, dashboard {:.1} ms ({} KB), \
             filtered {:.1} ms",
            batch.len(),
            folded.as_secs_f64() * 1e3,
            views_took.as_secs_f64() * 1e3,
            built.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            dashboard_took.as_secs_f64() * 1e3,
            bytes / 1024,
            filtered_took.as_secs_f64() * 1e3,
        );
        drop(snapshot);
    }
    Ok(())
}
