//! The persistent projector over a real log and real sled: state and checkpoint committed
//! together, resuming after a stop, following live appends, replays bounded by position or
//! time, and the view store's rules (live pointer, names, locks, versions).

use baton_core::{Event, FunnelDefinition, FunnelProjection, Timestamp};
use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog, Position};
use baton_producer::{History, HistoryConfig};
use baton_projector::{
    Bound, Outcome, RunOptions, Status, StoreError, StoredEntry, Until, View, ViewStore,
};
use baton_testkit::NatsServer;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A seeded history without its retried deliveries: what the log stores of it, in order.
fn history() -> Vec<Event> {
    History::new(HistoryConfig::new(5, 80)).stored().collect()
}

async fn embedded_with(events: &[Event]) -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().expect("dir");
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open");
    for chunk in events.chunks(900) {
        log.append(chunk.to_vec()).await.expect("append");
    }
    (dir, log)
}

fn new_view(store: &ViewStore, name: &str, bound: Option<Bound>) -> View {
    let definition = FunnelDefinition::default_funnel();
    store
        .create_view(
            name,
            &definition,
            baton_core::DEFAULT_FUNNEL_TOML,
            "default.toml",
            bound,
        )
        .expect("create view")
}

async fn run_to(
    log: &impl EventLog,
    view: View,
    until: Until,
    commit_every: usize,
) -> (Outcome, Arc<Status>) {
    let options = RunOptions {
        until,
        commit_every,
        ..RunOptions::default()
    };
    run_with(log, view, options).await
}

async fn run_with(log: &impl EventLog, view: View, options: RunOptions) -> (Outcome, Arc<Status>) {
    let status = Arc::new(Status::default());
    let outcome = baton_projector::run(
        log,
        view,
        options,
        status.clone(),
        |_: &_, _| {},
        std::future::pending(),
    )
    .await
    .expect("run");
    (outcome, status)
}

fn in_memory(events: &[Event]) -> baton_core::FunnelSummary {
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection.summary()
}

fn dump(store: &ViewStore, name: &str) -> Vec<StoredEntry> {
    store.open_view(name).expect("open").dump().expect("dump")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_commits_what_an_in_memory_fold_computes() {
    let events = history();
    let (_dir, log) = embedded_with(&events).await;
    let views = tempfile::tempdir().expect("dir");
    let store = ViewStore::open(views.path()).expect("store");
    let (outcome, status) = run_to(&log, new_view(&store, "a", None), Until::CaughtUp, 1000).await;
    let head = log.stat().await.expect("stat").head;
    assert_eq!(outcome.checkpoint, head);
    assert!(outcome.reached);
    assert_eq!(status.checkpoint(), head);
    assert_eq!(status.lag(), 0);
    assert!(status.commits() > 1, "commits every 1000 events");
    assert_eq!(outcome.projection.summary(), in_memory(&events));
    // What is stored reads back to the same summary.
    let (restored, checkpoint) = store.open_view("a").expect("open").load().expect("load");
    assert_eq!(checkpoint, head);
    assert_eq!(restored.summary(), in_memory(&events));
}

/// Rebuild equals live: stopping and resuming at many points, with small and large commits,
/// stores exactly the bytes of one uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_resuming_anywhere_stores_what_one_run_stores() {
    let (_dir, log, head, _views, store) = with_a_whole_run().await;

    new_view(&store, "pieces", None);
    let stops = [1, 2, 977, 978, 2500, head / 2, head - 1];
    for (index, stop) in stops.into_iter().enumerate() {
        let view = store.open_view("pieces").expect("open");
        let commit_every = [1, 7, 333, 100_000][index % 4];
        let bound = Until::Bound(Bound::Position(Position::new(stop)));
        let (outcome, _) = run_to(&log, view, bound, commit_every).await;
        assert_eq!(outcome.checkpoint.get(), stop);
    }
    let view = store.open_view("pieces").expect("open");
    run_to(&log, view, Until::CaughtUp, 500).await;
    let (whole, pieces) = (dump(&store, "whole"), dump(&store, "pieces"));
    assert!(whole.len() > 100, "the state has entries");
    // Facts went to the fact files, in different runs: compared read back into the entries.
    let facts = |name: &str| fact_file(&store, name).len();
    assert!(
        facts("whole") > 0 && facts("pieces") > 0,
        "runs were written"
    );
    assert!(whole == pieces, "the stored bytes differ");
}

/// A commit comes early once enough stored entries changed, however few events that took,
/// and what those commits store is what one run stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_comes_once_enough_entries_changed() {
    let (_dir, log, head, _views, store) = with_a_whole_run().await;
    // The entries a commit counts: all but the symbol and attribute tables and the globals.
    let counted = dump(&store, "whole")
        .iter()
        .filter(|(key, _)| !matches!(key.first(), Some(b'g' | b's' | b't')))
        .count();
    assert!(counted > 200, "{counted} entries");

    new_view(&store, "small", None);
    let options = RunOptions {
        until: Until::CaughtUp,
        commit_every: usize::MAX,
        commit_entries: 25,
    };
    let view = store.open_view("small").expect("open");
    let (outcome, status) = run_with(&log, view, options).await;
    assert_eq!(outcome.checkpoint.get(), head);
    // Without the bound this is one commit. With it, a commit holds 25 entries and what the
    // event that reached 25 changed besides (a handful at most), and every entry was
    // written at least once.
    let fewest = (counted / (25 + 16)) as u64;
    assert!(
        status.commits() >= fewest,
        "{} commits for {counted} entries, expected at least {fewest}",
        status.commits()
    );
    assert!(
        dump(&store, "whole") == dump(&store, "small"),
        "the stored bytes differ"
    );
}

/// The seeded history in an embedded log, its head, and a view store holding "whole", built
/// by one uninterrupted run.
async fn with_a_whole_run() -> (
    tempfile::TempDir,
    EmbeddedLog,
    u64,
    tempfile::TempDir,
    ViewStore,
) {
    let (dir, log) = embedded_with(&history()).await;
    let head = log.stat().await.expect("stat").head.get();
    let views = tempfile::tempdir().expect("dir");
    let store = ViewStore::open(views.path()).expect("store");
    let whole = new_view(&store, "whole", None);
    run_to(&log, whole, Until::CaughtUp, 1_000_000).await;
    (dir, log, head, views, store)
}

fn fact_file(store: &ViewStore, name: &str) -> std::fs::Metadata {
    std::fs::metadata(store.dir().join(name).join("facts")).expect("a fact file")
}

/// A commit that never finished may leave facts appended past the committed length: opening
/// the view cuts them off, and what is stored is what one run stores. A fact file shorter
/// than committed lost facts, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_appended_past_the_last_commit_are_cut_off_and_lost_ones_are_named() {
    let (_dir, log, head, _views, store) = with_a_whole_run().await;
    let view = new_view(&store, "torn", None);
    let bound = Until::Bound(Bound::Position(Position::new(head / 2)));
    run_to(&log, view, bound, 100).await;

    let path = store.dir().join("torn").join("facts");
    let committed = std::fs::metadata(&path).expect("fact file").len();
    assert!(committed > 0, "half the history wrote runs");
    let mut bytes = std::fs::read(&path).expect("reads");
    bytes.extend_from_slice(&[0xAB; 4096]);
    std::fs::write(&path, &bytes).expect("writes a torn tail");
    let view = store.open_view("torn").expect("open");
    run_to(&log, view, Until::CaughtUp, 100).await;
    assert!(
        dump(&store, "whole") == dump(&store, "torn"),
        "the stored bytes differ"
    );
    let bytes = std::fs::read(&path).expect("reads");
    assert!(
        !bytes.windows(64).any(|w| w.iter().all(|b| *b == 0xAB)),
        "the torn tail was cut off before the next append"
    );

    let length = bytes.len() as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_len(length - 10))
        .expect("cuts the file short");
    let error = store
        .open_view("torn")
        .expect("open")
        .load()
        .expect_err("facts the entries point to are gone");
    let text = error.to_string();
    assert!(
        text.contains("facts") && text.contains(&format!("recorded {length}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_follows_appends_and_stops_on_shutdown() {
    live_run_follows_appends(10_000).await;
}

/// Regression: when the chunk that reached the head also reached `commit_every`, the batch
/// commit left the journeys unrefreshed and nothing was published until the next append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_publishes_when_a_batch_commit_reaches_the_head() {
    live_run_follows_appends(1).await;
}

async fn live_run_follows_appends(commit_every: usize) {
    let events = history();
    let (first, second) = events.split_at(events.len() / 2);
    let (_dir, log) = embedded_with(first).await;
    let log = Arc::new(log);
    let views = tempfile::tempdir().expect("dir");
    let store = ViewStore::open(views.path()).expect("store");
    let view = new_view(&store, "live", None);
    let status = Arc::new(Status::default());
    let seen: Arc<Mutex<Vec<(Position, u64)>>> = Arc::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let (log, status, seen) = (log.clone(), status.clone(), seen.clone());
        tokio::spawn(async move {
            let on_commit = move |projection: &FunnelProjection, position: Position| {
                seen.lock()
                    .expect("lock")
                    .push((position, projection.events()));
            };
            let options = RunOptions {
                until: Until::Forever,
                commit_every,
                ..RunOptions::default()
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            baton_projector::run(&*log, view, options, status, on_commit, shutdown).await
        })
    };
    // Waits until a commit reflecting `target` was published to the query side (after the
    // checkpoint is stored, so checked separately).
    let wait_for = |target: Position| {
        let (status, seen) = (status.clone(), seen.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let published = seen.lock().expect("lock").last().map(|(p, _)| *p);
                if published >= Some(target) && status.checkpoint() >= target {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "checkpoint {} (published {published:?}) stuck before {target}",
                    status.checkpoint()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(log.stat().await.expect("stat").head).await;
    for chunk in second.chunks(500) {
        log.append(chunk.to_vec()).await.expect("append");
    }
    let head = log.stat().await.expect("stat").head;
    wait_for(head).await;
    // The commit that reached the head was published refreshed, with every event folded.
    let last = *seen
        .lock()
        .expect("lock")
        .last()
        .expect("a commit was published");
    assert_eq!(last, (head, head.get()));
    stop.send(()).expect("runner listening");
    let outcome = runner.await.expect("join").expect("run");
    assert_eq!(outcome.checkpoint, head);
    assert!(!outcome.reached, "a live run has no bound to reach");
    assert_eq!(outcome.projection.summary(), in_memory(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_stops_at_its_bound_and_records_it() {
    let events = history();
    let (_dir, log) = embedded_with(&events).await;
    let views = tempfile::tempdir().expect("dir");
    let store = ViewStore::open(views.path()).expect("store");
    let bound = Bound::Position(Position::new(1234));
    let (outcome, _) = run_to(
        &log,
        new_view(&store, "to-1234", Some(bound)),
        Until::Bound(bound),
        100,
    )
    .await;
    assert_eq!(outcome.checkpoint.get(), 1234);
    assert_eq!(outcome.projection.summary(), in_memory(&events[..1234]));
    let view = store.open_view("to-1234").expect("open");
    assert!(view.complete().expect("meta"));
    assert_eq!(view.bound().expect("meta"), Some(bound));
    assert_eq!(view.detail().expect("detail").position.get(), 1234);

    // By recorded time: stop before the first event the log learned after the bound. The
    // embedded log keeps each event's recorded_at as given, so set them here.
    let dir = tempfile::tempdir().expect("dir");
    let timed = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open");
    let mut stamped = events[..300].to_vec();
    for (index, event) in stamped.iter_mut().enumerate() {
        event.recorded_at = Timestamp::from_unix_millis(1_800_000_000_000 + index as i64);
    }
    timed.append(stamped.clone()).await.expect("append");
    let cut = Timestamp::from_unix_millis(1_800_000_000_000 + 199);
    let bound = Bound::RecordedBy(cut);
    let (outcome, _) = run_to(
        &timed,
        new_view(&store, "by-time", Some(bound)),
        Until::Bound(bound),
        64,
    )
    .await;
    assert_eq!(outcome.checkpoint.get(), 200);
    assert!(outcome.reached);
    assert_eq!(outcome.projection.summary(), in_memory(&stamped[..200]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_store_the_same_state() {
    let events = history();
    let (_dir, embedded) = embedded_with(&events).await;
    let server = NatsServer::start();
    let jetstream = JetStreamLog::connect(JetStreamConfig::new(server.url()))
        .await
        .expect("connect");
    for chunk in events.chunks(1_500) {
        jetstream.append(chunk.to_vec()).await.expect("append");
    }
    let views = tempfile::tempdir().expect("dir");
    let store = ViewStore::open(views.path()).expect("store");
    let (a, _) = run_to(
        &embedded,
        new_view(&store, "embedded", None),
        Until::CaughtUp,
        700,
    )
    .await;
    let (b, _) = run_to(
        &jetstream,
        new_view(&store, "jetstream", None),
        Until::CaughtUp,
        5_000,
    )
    .await;
    assert_eq!(a.checkpoint, b.checkpoint);
    assert!(dump(&store, "embedded") == dump(&store, "jetstream"));
}

#[test]
fn the_store_keeps_one_live_view_and_guards_names_and_drops() {
    let views = tempfile::tempdir().expect("dir");
    let store = ViewStore::open(views.path()).expect("store");
    assert_eq!(store.live().expect("live"), None);
    new_view(&store, "first", None);
    new_view(&store, "second", None);
    store.set_live("first").expect("promote");
    assert_eq!(store.live().expect("live").as_deref(), Some("first"));
    store.set_live("second").expect("promote");
    assert_eq!(store.live().expect("live").as_deref(), Some("second"));
    assert!(matches!(
        store.set_live("missing"),
        Err(StoreError::NoSuchView { .. })
    ));
    assert!(matches!(
        store.drop_view("second"),
        Err(StoreError::DropLive { .. })
    ));
    let definition = FunnelDefinition::default_funnel();
    for bad in ["", "../up", "a b", "-dash", "x".repeat(65).as_str()] {
        let error = store
            .create_view(bad, &definition, baton_core::DEFAULT_FUNNEL_TOML, "f", None)
            .expect_err("a bad name");
        assert!(
            matches!(error, StoreError::BadName { .. }),
            "{bad:?}: {error}"
        );
    }
    assert!(matches!(
        store.create_view(
            "first",
            &definition,
            baton_core::DEFAULT_FUNNEL_TOML,
            "f",
            None
        ),
        Err(StoreError::Exists { .. })
    ));
    // A view open here is in use for anyone else: dropping it is refused.
    let open = store.open_view("first").expect("open");
    let error = store.drop_view("first").expect_err("in use");
    assert!(
        error.to_string().contains("open in another process"),
        "{error}"
    );
    drop(open);
    store.drop_view("first").expect("drop");
    assert_eq!(store.names().expect("names"), vec!["second".to_owned()]);
}

/// Regression: a `baton project` killed while creating the live view left a database with no
/// definition, and every later run failed on it. Such a view is now removed and made again.
/// Regression too: listing the views (`baton views`) met the torn view and failed on it.
/// State written in another format is never misread: reading it is an error that says what
/// to do, and the projector empties the view and builds it again from the start of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_written_in_another_state_format_is_built_again() {
    let (_dir, log, _head, views, store) = with_a_whole_run().await;
    run_to(&log, new_view(&store, "old", None), Until::CaughtUp, 700).await;
    // What an earlier build left: its version, and an entry this build cannot read.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let db = loop {
        match sled::open(views.path().join("old")) {
            Ok(db) => break db,
            // sled lets go of its lock a moment after the run's handles drop.
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("cannot open the view's database: {error}"),
        }
    };
    db.insert(b"state_version", 3u16.to_le_bytes().as_slice())
        .expect("insert");
    let state = db.open_tree(b"state").expect("tree");
    state
        .insert(b"pperson-x", [0xffu8; 3].as_slice())
        .expect("insert");
    db.flush().expect("flush");
    drop((state, db));

    let view = store.open_view("old").expect("open");
    match view.load() {
        Err(error @ StoreError::StateVersion { found: 3, .. }) => {
            assert!(error.to_string().contains("`baton project`"), "{error}");
        }
        other => panic!(
            "expected a state version error, got {:?}",
            other.map(|(_, p)| p)
        ),
    }
    let (outcome, _) = run_to(&log, view, Until::CaughtUp, 700).await;
    assert_eq!(outcome.projection.summary(), in_memory(&history()));
    assert!(
        dump(&store, "old") == dump(&store, "whole"),
        "built again, it stores what one run stores"
    );
}

#[test]
fn a_view_whose_creation_was_cut_short_is_made_again() {
    let views = tempfile::tempdir().expect("dir");
    let store = ViewStore::open(views.path()).expect("store");
    let tear = || {
        let torn = sled::open(views.path().join("torn")).expect("sled");
        torn.insert(b"definition_file", b"x".as_slice())
            .expect("insert");
        torn.flush().expect("flush");
    };
    new_view(&store, "whole", None);
    tear();
    let listed: Vec<String> = store
        .list()
        .expect("a torn view does not stop the listing")
        .into_iter()
        .map(|info| info.name)
        .collect();
    assert_eq!(listed, vec!["whole".to_owned()]);
    assert!(
        !views.path().join("torn").exists(),
        "listing removed the torn view"
    );
    tear();
    assert!(matches!(
        store.open_view("torn"),
        Err(StoreError::NoSuchView { .. })
    ));
    assert!(
        !views.path().join("torn").exists(),
        "the torn view is removed"
    );
    new_view(&store, "torn", None);
    assert_eq!(
        store
            .open_view("torn")
            .expect("open")
            .checkpoint()
            .expect("checkpoint"),
        Position::ZERO
    );
}

/// A candidate folded in memory and kept whole afterwards (`baton replay` without folding
/// again) stores the bytes a persistent build of the same bound stores, reads back to the
/// same summary, and is complete to its bound; one stopped part-way is no view at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_kept_whole_stores_what_a_persistent_build_stores() {
    let (_dir, log, head, _views, store) = with_a_whole_run().await;
    let definition = FunnelDefinition::default_funnel();
    for stop in [head / 3, head] {
        let bound = Bound::Position(Position::new(stop));
        let built = format!("built-{stop}");
        run_to(
            &log,
            new_view(&store, &built, Some(bound)),
            Until::Bound(bound),
            700,
        )
        .await;
        let mut folded =
            baton_projector::fold_log_to(&log, definition.clone(), Position::new(stop), |_, _| ())
                .await
                .expect("fold");
        let summary = folded.projection.summary();
        let kept = format!("kept-{stop}");
        let mut batches = 0;
        let view = store
            .keep_view(
                &kept,
                baton_core::DEFAULT_FUNNEL_TOML,
                "default.toml",
                bound,
                &mut folded.projection,
                folded.position,
                |written, total| {
                    batches += 1;
                    assert!(written <= total);
                    std::ops::ControlFlow::Continue(())
                },
            )
            .expect("keep");
        assert!(batches >= 1);
        assert!(view.complete().expect("meta"));
        assert_eq!(view.bound().expect("meta"), Some(bound));
        assert_eq!(view.checkpoint().expect("checkpoint").get(), stop);
        drop(view);
        let (stored, kept_dump) = (dump(&store, &built), dump(&store, &kept));
        assert!(stored.len() > 100, "the state has entries");
        assert!(
            fact_file(&store, &kept).len() > 0,
            "the facts went to the fact file"
        );
        assert!(
            stored == kept_dump,
            "the kept view's bytes differ from the built one's"
        );
        let (restored, at) = store.open_view(&kept).expect("open").load().expect("load");
        assert_eq!(at.get(), stop);
        assert_eq!(restored.summary(), summary);
    }

    // Kept whole at the head as `name`, stopped after the first batch when `stop`.
    let keep_at_head = |name: &str, folded: &mut baton_projector::Folded, stop: bool| {
        store.keep_view(
            name,
            baton_core::DEFAULT_FUNNEL_TOML,
            "default.toml",
            Bound::Position(Position::new(head)),
            &mut folded.projection,
            folded.position,
            |_, _| {
                if stop {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            },
        )
    };
    // Kept again under a taken name: refused, nothing written over.
    let mut folded =
        baton_projector::fold_log_to(&log, definition.clone(), Position::new(head), |_, _| ())
            .await
            .expect("fold");
    let taken = keep_at_head(&format!("kept-{head}"), &mut folded, false);
    assert!(matches!(taken, Err(StoreError::Exists { .. })), "{taken:?}");

    // Stopped after its first batch: no view, and the name is free again.
    let stopped = keep_at_head("stopped", &mut folded, true);
    let error = stopped.expect_err("stopped part-way");
    assert!(error.to_string().contains("stopped part-way"), "{error}");
    assert!(matches!(
        store.open_view("stopped"),
        Err(StoreError::NoSuchView { .. })
    ));
    assert!(
        !store
            .names()
            .expect("names")
            .contains(&"stopped".to_owned())
    );
    // The projection tracked changes from the first keeping: it cannot be kept a second time.
    let again = keep_at_head("again", &mut folded, false);
    assert!(
        matches!(
            again,
            Err(StoreError::State {
                error: baton_core::StateError::AlreadyStored,
                ..
            })
        ),
        "{again:?}"
    );
    assert!(!store.names().expect("names").contains(&"again".to_owned()));
}

/// Several definitions folded in one reading of the log (a backtest's candidate and the live
/// definition, a thread each) come out as each folded alone, at the same position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reading_folds_each_definition_as_alone() {
    let events = history();
    let (_dir, log) = embedded_with(&events).await;
    let head = log.stat().await.expect("stat").head;
    let other = FunnelDefinition::parse(
        "other.toml",
        &baton_core::DEFAULT_FUNNEL_TOML.replacen("daily_cap = 40", "daily_cap = 3", 1),
    )
    .expect("a definition");
    for until in [
        Position::new(head.get() / 2),
        head,
        Position::new(head.get() + 10),
    ] {
        let mut reached = Vec::new();
        let both = baton_projector::fold_log_to_each(
            &log,
            vec![FunnelDefinition::default_funnel(), other.clone()],
            until,
            |at, last| reached.push((at, last)),
        )
        .await
        .expect("fold");
        assert_eq!(both.len(), 2);
        let last = until.min(head);
        assert_eq!(reached.last(), Some(&(last, last)));
        for (folded, definition) in both
            .iter()
            .zip([FunnelDefinition::default_funnel(), other.clone()])
        {
            let alone = baton_projector::fold_log_to(&log, definition, until, |_, _| ())
                .await
                .expect("fold");
            assert_eq!(folded.position, last);
            assert_eq!(folded.projection.summary(), alone.projection.summary());
        }
        assert_ne!(
            both[0].projection.summary(),
            both[1].projection.summary(),
            "the definitions differ in what they count"
        );
    }

    // To a recorded time: up to the first event recorded after it, as one fold alone.
    let dir = tempfile::tempdir().expect("dir");
    let timed = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open");
    let mut stamped = events[..600].to_vec();
    for (index, event) in stamped.iter_mut().enumerate() {
        event.recorded_at = Timestamp::from_unix_millis(1_800_000_000_000 + index as i64);
    }
    timed.append(stamped).await.expect("append");
    let cut = Timestamp::from_unix_millis(1_800_000_000_000 + 399);
    let both = baton_projector::fold_log_recorded_by_each(
        &timed,
        vec![FunnelDefinition::default_funnel(), other.clone()],
        cut,
        |_, _| (),
    )
    .await
    .expect("fold");
    for (folded, definition) in both.iter().zip([FunnelDefinition::default_funnel(), other]) {
        let alone = baton_projector::fold_log_recorded_by(&timed, definition, cut, |_, _| ())
            .await
            .expect("fold");
        assert_eq!(folded.position.get(), 400);
        assert_eq!(alone.position.get(), 400);
        assert_eq!(folded.projection.summary(), alone.projection.summary());
    }
}
