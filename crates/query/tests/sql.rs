//! The SQL endpoint end to end: a real server in-process on a free port, serving views built
//! from a seeded synthetic history, queried with real clients (tokio-postgres over both
//! protocols, and the `psql` binary).

#![cfg(feature = "sql")]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_core::{DEFAULT_FUNNEL_TOML, FunnelDefinition, FunnelProjection};
use baton_producer::{History, HistoryConfig};
use baton_projector::Position;
use baton_query::{Catalog, ColumnType, Snapshot, SqlConfig, SqlServer, SqlTls, Value, serve_sql};
use tokio::sync::{oneshot, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The snapshots every test serves, built once.
struct Views {
    /// The live view: the default definition over 40 accounts.
    live: Arc<Snapshot>,
    /// A candidate view `strict`: the same events under a definition with a higher MQL bar.
    strict: Arc<Snapshot>,
    /// The live view later on: 70 accounts.
    later: Arc<Snapshot>,
}

fn project(definition: FunnelDefinition, accounts: u64) -> (FunnelProjection, Position) {
    let mut projection = FunnelProjection::new(definition);
    let mut position = 0;
    for event in History::new(HistoryConfig::new(11, accounts)) {
        projection.apply(&event);
        position += 1;
    }
    projection.refresh();
    (projection, Position::new(position))
}

fn views() -> &'static Views {
    static VIEWS: OnceLock<Views> = OnceLock::new();
    VIEWS.get_or_init(|| {
        let strict_toml = DEFAULT_FUNNEL_TOML
            .replacen("name = \"b2b-default\"", "name = \"b2b-strict\"", 1)
            .replacen("min_engagement = 40", "min_engagement = 70", 1);
        assert_ne!(
            strict_toml, DEFAULT_FUNNEL_TOML,
            "the strict definition differs"
        );
        let strict = FunnelDefinition::parse("strict.toml", &strict_toml).expect("strict parses");
        let (projection, position) = project(FunnelDefinition::default_funnel(), 40);
        let live = Arc::new(Snapshot::build("main", &projection, position));
        let (projection, position) = project(strict, 40);
        let strict = Arc::new(Snapshot::build("strict", &projection, position));
        let (projection, position) = project(FunnelDefinition::default_funnel(), 70);
        let later = Arc::new(Snapshot::build("main", &projection, position));
        Views {
            live,
            strict,
            later,
        }
    })
}

fn catalog(live: &Arc<Snapshot>) -> Arc<Catalog> {
    Arc::new(Catalog::new(live.clone()).with_candidate(views().strict.clone()))
}

/// A served endpoint; dropping it stops the server.
struct Endpoint {
    server: Option<SqlServer>,
    catalogs: watch::Sender<Arc<Catalog>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Endpoint {
    async fn start(read_tokens: &[&str]) -> Endpoint {
        Endpoint::start_on("127.0.0.1:0", read_tokens).await
    }

    async fn start_on(addr: &str, read_tokens: &[&str]) -> Endpoint {
        Endpoint::start_with(addr, read_tokens, None).await
    }

    async fn start_with(addr: &str, read_tokens: &[&str], tls: Option<SqlTls>) -> Endpoint {
        Endpoint::start_config(
            addr,
            read_tokens,
            tls,
            baton_query::DEFAULT_STATEMENT_TIMEOUT,
        )
        .await
    }

    async fn start_config(
        addr: &str,
        read_tokens: &[&str],
        tls: Option<SqlTls>,
        statement_timeout: Duration,
    ) -> Endpoint {
        let (catalogs, receiver) = watch::channel(catalog(&views().live));
        let (stop, stopped) = oneshot::channel::<()>();
        let config = SqlConfig {
            addr: addr.parse().expect("address"),
            read_tokens: read_tokens
                .iter()
                .map(|token| (*token).to_owned())
                .collect(),
            tls,
            statement_timeout,
            known_at: None,
        };
        let server = serve_sql(config, receiver, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the endpoint starts");
        Endpoint {
            server: Some(server),
            catalogs,
            stop: Some(stop),
        }
    }

    fn port(&self) -> u16 {
        self.server.as_ref().expect("running").local_addr().port()
    }

    async fn try_connect(
        &self,
        password: &str,
        database: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        self.try_connect_from("127.0.0.1", password, database).await
    }

    async fn try_connect_from(
        &self,
        host: &str,
        password: &str,
        database: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let url = format!(
            "host={host} port={} user=analyst password={password} dbname={database} connect_timeout=10",
            self.port()
        );
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn connect(&self) -> Client {
        self.try_connect("unused", "baton").await.expect("connects")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.server.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), server.join())
            .await
            .expect("the server stops within 10 s")
            .expect("the server stops cleanly");
    }
}

/// A value of a snapshot table, by column name.
fn cell<'a>(snapshot: &'a Snapshot, table: &str, row: usize, column: &str) -> &'a Value {
    let table = snapshot.table(table).expect("table exists");
    let index = table
        .columns
        .iter()
        .position(|(name, _)| *name == column)
        .expect("column exists");
    &table.rows[row][index]
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(int) => *int,
        other => panic!("not an int: {other:?}"),
    }
}

fn people(snapshot: &Snapshot) -> i64 {
    int(cell(snapshot, "funnel_totals", 0, "people"))
}

/// `attribution` rows of one dimension: value → (people, mql_people).
fn attribution(snapshot: &Snapshot, dimension: &str) -> BTreeMap<String, (i64, i64)> {
    let table = snapshot.table("attribution").expect("attribution");
    table
        .rows
        .iter()
        .filter(|row| row[0] == Value::Text(dimension.to_owned()))
        .map(|row| {
            let Value::Text(value) = &row[1] else {
                panic!("value is text")
            };
            (value.clone(), (int(&row[2]), int(&row[3])))
        })
        .collect()
}

fn db_code(error: &tokio_postgres::Error) -> SqlState {
    error
        .code()
        .cloned()
        .unwrap_or_else(|| panic!("a database error, not {error:?}"))
}

fn simple_rows(messages: Vec<SimpleQueryMessage>) -> Vec<tokio_postgres::SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_with_parameters_read_the_live_view() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let live = &views().live;
    assert!(people(live) > 0, "the history has people");

    // Every person has one first-touch channel, so the channel rows add up to the people.
    let row = client
        .query_one(
            "select sum(people) from attribution where dimension = 'channel'",
            &[],
        )
        .await
        .expect("sum");
    assert_eq!(row.get::<_, i64>(0), people(live));

    let row = client
        .query_one(
            "select sum(people), count(*) from attribution where dimension = $1",
            &[&"campaign"],
        )
        .await
        .expect("sum with a text parameter");
    let campaigns = attribution(live, "campaign");
    assert_eq!(row.get::<_, i64>(0), people(live));
    assert_eq!(row.get::<_, i64>(1), campaigns.len() as i64);

    // An integer parameter, and every row checked against the snapshot.
    let threshold = 2_i64;
    let rows = client
        .query(
            "select value, people, mql_people from attribution \
             where dimension = 'campaign' and people >= $1 order by value",
            &[&threshold],
        )
        .await
        .expect("rows with an integer parameter");
    let expected: Vec<_> = campaigns
        .iter()
        .filter(|(_, (people, _))| *people >= threshold)
        .collect();
    assert!(!expected.is_empty(), "some campaign has 2 people or more");
    assert_eq!(rows.len(), expected.len());
    for (row, (value, (people, mqls))) in rows.iter().zip(expected) {
        assert_eq!(row.get::<_, String>(0), *value);
        assert_eq!(row.get::<_, i64>(1), *people);
        assert_eq!(row.get::<_, i64>(2), *mqls);
    }

    // Times arrive as timestamptz at the millisecond the view holds.
    let row = client
        .query_one("select as_of from marketing_totals", &[])
        .await
        .expect("as_of");
    assert_eq!(row.columns()[0].type_(), &Type::TIMESTAMPTZ);
    let Value::Time(as_of) = cell(live, "marketing_totals", 0, "as_of") else {
        panic!("as_of is a time")
    };
    let expected = UNIX_EPOCH + Duration::from_millis(as_of.unix_millis() as u64);
    assert_eq!(row.get::<_, SystemTime>(0), expected);

    // The same table under the live view's own name, and the position it reflects.
    let row = client
        .query_one(
            "select (select count(*) from main.opportunities) as named, \
             (select count(*) from opportunities) as public, \
             (select position from snapshots where live) as position",
            &[],
        )
        .await
        .expect("schemas");
    let opportunities = live.table("opportunities").expect("table").rows.len() as i64;
    assert_eq!(row.get::<_, i64>(0), opportunities);
    assert_eq!(row.get::<_, i64>(1), opportunities);
    assert_eq!(row.get::<_, i64>(2), live.position.get() as i64);

    // A prepared statement, executed twice with different parameters.
    let statement = client
        .prepare("select count(*) from opportunities where status = $1")
        .await
        .expect("prepare");
    for status in ["won", "lost", "open"] {
        let expected = live
            .table("opportunities")
            .expect("table")
            .rows
            .iter()
            .filter(|row| row[5] == Value::Text(status.to_owned()))
            .count() as i64;
        let row = client
            .query_one(&statement, &[&status])
            .await
            .expect("execute");
        assert_eq!(row.get::<_, i64>(0), expected, "{status} opportunities");
    }
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simple_protocol_answers_in_text() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let rows = simple_rows(
        client
            .simple_query(
                "select count(*) from campaigns; select sum(people) from attribution where dimension = 'source'",
            )
            .await
            .expect("two statements"),
    );
    assert_eq!(rows.len(), 2);
    let campaigns = views()
        .live
        .table("campaigns")
        .expect("campaigns")
        .rows
        .len();
    assert_eq!(rows[0].get(0), Some(campaigns.to_string().as_str()));
    assert_eq!(
        rows[1].get(0),
        Some(people(&views().live).to_string().as_str())
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_joins_the_live_view() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let rows = client
        .query(
            "select l.value, l.mql_people, c.mql_people \
             from public.attribution l join strict.attribution c \
               on l.dimension = c.dimension and l.value = c.value \
             where l.dimension = 'channel' order by l.value",
            &[],
        )
        .await
        .expect("join");
    let live = attribution(&views().live, "channel");
    let strict = attribution(&views().strict, "channel");
    assert_eq!(rows.len(), live.len());
    let mut differs = false;
    for row in &rows {
        let value: String = row.get(0);
        assert_eq!(row.get::<_, i64>(1), live[&value].1, "live mqls of {value}");
        assert_eq!(
            row.get::<_, i64>(2),
            strict[&value].1,
            "strict mqls of {value}"
        );
        differs |= live[&value].1 != strict[&value].1;
    }
    assert!(differs, "a higher MQL bar changes some channel's MQLs");

    let rows = client
        .query(
            "select view, live, definition from snapshots order by view",
            &[],
        )
        .await
        .expect("snapshots");
    let listed: Vec<(String, bool, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("main".to_owned(), true, "b2b-default".to_owned()),
            ("strict".to_owned(), false, "b2b-strict".to_owned()),
        ]
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_tokens_admit_and_refuse() {
    let endpoint = Endpoint::start(&["first-token", "second-token"]).await;
    for token in ["first-token", "second-token"] {
        let client = endpoint
            .try_connect(token, "baton")
            .await
            .expect("a token admits");
        let row = client
            .query_one("select 1::bigint", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, i64>(0), 1);
    }
    let error = endpoint
        .try_connect("wrong-token", "baton")
        .await
        .expect_err("a wrong token is refused");
    assert_eq!(db_code(&error), SqlState::INVALID_PASSWORD);
    assert_eq!(
        error.as_db_error().expect("db error").message(),
        "password authentication failed for user \"analyst\""
    );
    let error = endpoint
        .try_connect("first-token", "postgres")
        .await
        .expect_err("another database is refused");
    assert_eq!(db_code(&error), SqlState::INVALID_CATALOG_NAME);
    endpoint.stop().await;
}

/// An address of this machine that is not loopback: the source address the kernel would use
/// towards TEST-NET-1 (a UDP `connect` sends nothing).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_only_local_clients_are_admitted() {
    let Some(ip) = non_loopback_address() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs a non-loopback IPv4 address with a route (a network interface)"
        );
        eprintln!("no non-loopback address: the remote-peer half of this test did not run");
        return;
    };
    let endpoint = Endpoint::start_on("0.0.0.0:0", &[]).await;
    let client = endpoint
        .try_connect_from("127.0.0.1", "", "baton")
        .await
        .expect("a local client is admitted without a password");
    client.simple_query("select 1").await.expect("query");
    let error = endpoint
        .try_connect_from(&ip.to_string(), "", "baton")
        .await
        .expect_err("a client from another address is refused");
    assert_eq!(
        db_code(&error),
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    );
    let message = error.as_db_error().expect("db error").message().to_owned();
    assert!(
        message.contains("no read tokens are configured"),
        "{message}"
    );
    assert!(message.contains(&ip.to_string()), "{message}");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_as_read_only() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let writes = [
        "insert into campaigns (campaign) values ('x')",
        "update campaigns set touches = 0",
        "delete from campaigns",
        "create table t (a bigint)",
        "create table t as select * from campaigns",
        "drop table campaigns",
        "create schema s",
        "select * into t from campaigns",
        "copy campaigns to '/tmp/baton-campaigns.csv'",
        "truncate campaigns",
    ];
    for sql in writes {
        let error = client
            .simple_query(sql)
            .await
            .expect_err("refused (simple)");
        assert_eq!(
            db_code(&error),
            SqlState::READ_ONLY_SQL_TRANSACTION,
            "{sql}"
        );
        let error = client
            .execute(sql, &[])
            .await
            .expect_err("refused (extended)");
        assert_eq!(
            db_code(&error),
            SqlState::READ_ONLY_SQL_TRANSACTION,
            "{sql}"
        );
    }
    let error = client
        .simple_query("insert into campaigns (campaign) values ('x')")
        .await
        .expect_err("refused");
    let db = error.as_db_error().expect("db error");
    assert_eq!(
        db.message(),
        "cannot execute INSERT in a read-only transaction"
    );
    assert!(db.detail().is_some() && db.hint().is_some());

    let error = client
        .simple_query("set datafusion.execution.target_partitions = 1")
        .await
        .expect_err("engine settings refused");
    assert_eq!(db_code(&error), SqlState::INSUFFICIENT_PRIVILEGE);
    // Issue 24.6: quoted, the name was let through and lifted every session's memory guard.
    for quoted in [
        r#"set "datafusion.runtime.memory_limit" = '64G'"#,
        r#"set "datafusion.execution.batch_size" = 1"#,
    ] {
        let error = client.simple_query(quoted).await.expect_err("refused");
        assert_eq!(
            db_code(&error),
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{quoted}"
        );
    }
    // Text built outside the memory pool is bounded before it is built.
    for sql in [
        "select length(repeat('x', 1000000000))",
        "select length(lpad('x', 1000000000, 'y'))",
        "select length(repeat(campaign, 100000000)) from campaigns",
    ] {
        let error = client.simple_query(sql).await.expect_err("refused");
        assert_eq!(db_code(&error), SqlState::OUT_OF_MEMORY, "{sql}: {error:?}");
        assert!(format!("{error:?}").contains("would build"), "{error:?}");
    }
    let row = client
        .query_one("select length(repeat('ab', 1000)) as n", &[])
        .await
        .expect("a small repeat runs");
    assert_eq!(row.get::<_, i32>("n"), 2000);

    // Nothing changed, and the connection still works.
    let row = client
        .query_one("select count(*) from campaigns", &[])
        .await
        .expect("still serving");
    let campaigns = views()
        .live
        .table("campaigns")
        .expect("campaigns")
        .rows
        .len() as i64;
    assert_eq!(row.get::<_, i64>(0), campaigns);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sql_is_an_error_not_a_dropped_connection() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let cases = [
        ("selec 1", SqlState::SYNTAX_ERROR),
        ("select * from no_such_table", SqlState::UNDEFINED_TABLE),
        (
            "select no_such_column from campaigns",
            SqlState::UNDEFINED_COLUMN,
        ),
        ("select no_such_function(1)", SqlState::UNDEFINED_FUNCTION),
    ];
    for (sql, code) in cases {
        let error = client
            .simple_query(sql)
            .await
            .expect_err("an error (simple)");
        assert_eq!(db_code(&error), code, "{sql}: {error:?}");
        let error = client
            .query(sql, &[])
            .await
            .expect_err("an error (extended)");
        assert_eq!(db_code(&error), code, "{sql}: {error:?}");
        let row = client
            .query_one("select 41 + 1", &[])
            .await
            .expect("still serving");
        assert_eq!(row.get::<_, i64>(0), 42);
    }
    let error = client
        .simple_query("select * from no_such_table")
        .await
        .expect_err("an error");
    let db = error.as_db_error().expect("db error");
    assert!(db.message().contains("no_such_table"), "{}", db.message());
    assert!(db.hint().is_some_and(|hint| hint.contains("docs/views.md")));
    let error = client
        .query("select no_such_column from campaigns", &[])
        .await
        .expect_err("an error");
    let db = error.as_db_error().expect("db error");
    assert!(
        db.detail()
            .is_some_and(|detail| detail.contains("campaigns.touches")),
        "the valid columns are in DETAIL: {db:?}"
    );
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_snapshot_is_seen_by_the_next_query() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let statement = client
        .prepare(
            "select people, (select position from snapshots where live) as position from funnel_totals",
        )
        .await
        .expect("prepare");
    let before = client.query_one(&statement, &[]).await.expect("before");
    assert_eq!(before.get::<_, i64>(0), people(&views().live));
    assert_eq!(before.get::<_, i64>(1), views().live.position.get() as i64);

    endpoint.catalogs.send_replace(catalog(&views().later));
    assert_ne!(people(&views().later), people(&views().live));
    // The statement prepared against the old snapshot reads the new one.
    let after = client.query_one(&statement, &[]).await.expect("after");
    assert_eq!(after.get::<_, i64>(0), people(&views().later));
    assert_eq!(after.get::<_, i64>(1), views().later.position.get() as i64);
    let rows = simple_rows(
        client
            .simple_query("select people from funnel_totals")
            .await
            .expect("simple"),
    );
    assert_eq!(
        rows[0].get(0),
        Some(people(&views().later).to_string().as_str())
    );

    // A candidate that is no longer served is gone from the next query.
    endpoint
        .catalogs
        .send_replace(Arc::new(Catalog::new(views().later.clone())));
    let error = client
        .query("select count(*) from strict.campaigns", &[])
        .await
        .expect_err("the candidate is gone");
    assert_eq!(db_code(&error), SqlState::UNDEFINED_TABLE);
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_reads_one_snapshot_while_they_swap() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let (live, later) = (&views().live, &views().later);
    let first = (people(live), live.position.get() as i64);
    let second = (people(later), later.position.get() as i64);
    assert_ne!(first.0, second.0);

    // Swap the live view back and forth as fast as the channel allows while querying two
    // tables in one statement: each answer must come from one snapshot, never a mix.
    let catalogs = endpoint.catalogs.clone();
    let (done, mut stop) = oneshot::channel::<()>();
    let swapper = tokio::spawn(async move {
        let mut swaps = 0_u64;
        loop {
            let next = if swaps.is_multiple_of(2) { later } else { live };
            catalogs.send_replace(catalog(next));
            swaps += 1;
            tokio::task::yield_now().await;
            if stop.try_recv().is_ok() {
                return swaps;
            }
        }
    });
    let statement = client
        .prepare(
            "select t.people, s.position from funnel_totals t cross join snapshots s where s.live",
        )
        .await
        .expect("prepare");
    for round in 0_u32..60 {
        let row = if round.is_multiple_of(2) {
            client.query_one(&statement, &[]).await.expect("extended")
        } else {
            client
                .query_one(
                    "select (select people from funnel_totals), (select position from snapshots where live)",
                    &[],
                )
                .await
                .expect("subqueries")
        };
        let pair = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        assert!(pair == first || pair == second, "mixed snapshots: {pair:?}");
    }
    let _ = done.send(());
    let swaps = swapper.await.expect("swapper");
    assert!(swaps > 1, "the catalog was swapped during the queries");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_looks_like_postgresql() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    for sql in ["select version()", "select pg_catalog.version()"] {
        let row = client.query_one(sql, &[]).await.expect("version");
        let version: String = row.get(0);
        assert!(version.starts_with("PostgreSQL 16.6 "), "{version}");
    }
    let rows = simple_rows(
        client
            .simple_query(
                "show server_version; show transaction_read_only; select current_database(); \
                 show standard_conforming_strings",
            )
            .await
            .expect("settings"),
    );
    let values: Vec<_> = rows
        .iter()
        .map(|row| row.get(0).unwrap_or("NULL"))
        .collect();
    assert_eq!(values, ["16.6", "on", "baton", "on"]);
    for sql in [
        "DISCARD ALL",
        "SET extra_float_digits = 3",
        "SET search_path = public",
        "BEGIN",
        "COMMIT",
    ] {
        client.simple_query(sql).await.expect(sql);
        client.execute(sql, &[]).await.expect(sql);
    }
    endpoint.stop().await;
}

/// The entries of `fixtures/bi_startup.sql`: statements that must succeed.
fn bi_fixtures() -> Vec<CatalogCase> {
    sql_cases(include_str!("fixtures/bi_startup.sql"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_tool_startup_queries_succeed() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let fixtures = bi_fixtures();
    assert!(fixtures.len() >= 25, "{} fixtures", fixtures.len());
    let mut failures = Vec::new();
    for fixture in &fixtures {
        if let Err(error) = client.simple_query(&fixture.sql).await {
            failures.push(format!("{} (simple): {error:?}", fixture.client));
        }
        if let Err(error) = client.query(&fixture.sql, &[]).await {
            failures.push(format!("{} (extended): {error:?}", fixture.client));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Grafana's pickers list the live view's tables and a table's columns.
    let picker = |name: &str| {
        fixtures
            .iter()
            .find(|fixture| fixture.client == name)
            .unwrap_or_else(|| panic!("fixture {name}"))
            .sql
            .clone()
    };
    let listed: Vec<String> = client
        .query(&picker("Grafana: table picker"), &[])
        .await
        .expect("table picker")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(listed.contains(&"campaigns".to_owned()), "{listed:?}");
    let columns = client
        .query(&picker("Grafana: column picker"), &[])
        .await
        .expect("column picker");
    let campaigns = views().live.table("campaigns").expect("campaigns");
    assert_eq!(columns.len(), campaigns.columns.len());

    // What the catalog queries report: the live view's tables, and the views' schemas.
    let tables = client
        .query(
            "select table_name from information_schema.tables \
             where table_schema = 'public' order by table_name",
            &[],
        )
        .await
        .expect("tables");
    let mut expected: Vec<String> = views()
        .live
        .table_names()
        .map(|(_, name)| name.to_owned())
        .chain(["snapshots", "comparison_stages", "comparison_mqls"].map(str::to_owned))
        .collect();
    expected.sort();
    let listed: Vec<String> = tables.iter().map(|row| row.get(0)).collect();
    assert_eq!(listed, expected);
    let schemas = client
        .query(
            "select nspname from pg_catalog.pg_namespace order by 1",
            &[],
        )
        .await
        .expect("schemas");
    let schemas: Vec<String> = schemas.iter().map(|row| row.get(0)).collect();
    // The live view's own name works in queries but is not listed: tools would show every
    // table twice.
    assert!(
        schemas.contains(&"public".to_owned()) && schemas.contains(&"strict".to_owned()),
        "{schemas:?}"
    );
    assert!(!schemas.contains(&"main".to_owned()), "{schemas:?}");
    endpoint.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_describes_and_queries() {
    let endpoint = Endpoint::start(&["psql-token"]).await;
    let psql = |commands: &[&str]| {
        let mut command = tokio::process::Command::new("/usr/bin/psql");
        command
            .args(["-h", "127.0.0.1", "-p", &endpoint.port().to_string()])
            .args([
                "-U",
                "analyst",
                "-d",
                "baton",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .env("PGPASSWORD", "psql-token")
            .env("PGCONNECT_TIMEOUT", "10")
            .kill_on_drop(true);
        for sql in commands {
            command.args(["-c", sql]);
        }
        command.output()
    };
    let output = psql(&[
        "\\dt",
        "\\d campaigns",
        "select count(*) as n from campaigns",
    ])
    .await
    .expect("psql runs (is /usr/bin/psql installed? apt-get install postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "psql failed:\n{stdout}\n{stderr}");
    for (_, table) in views().live.tables() {
        assert!(
            stdout.contains(&format!(" {} ", table.name)),
            "\\dt lists {}:\n{stdout}",
            table.name
        );
    }
    assert!(
        stdout.contains("influenced_pipeline"),
        "\\d describes campaigns:\n{stdout}"
    );
    assert!(
        stdout.contains(" strict ") && !stdout.contains(" main "),
        "\\dt lists public and the candidate, not the live view twice:\n{stdout}"
    );
    let campaigns = views()
        .live
        .table("campaigns")
        .expect("campaigns")
        .rows
        .len();
    assert!(
        stdout.contains(&format!("\n{campaigns:>3}\n"))
            || stdout.contains(&format!(" {campaigns}\n")),
        "the count {campaigns} is printed:\n{stdout}"
    );

    // A wrong password: psql fails and says why.
    let mut command = tokio::process::Command::new("/usr/bin/psql");
    let output = command
        .args(["-h", "127.0.0.1", "-p", &endpoint.port().to_string()])
        .args(["-U", "analyst", "-d", "baton", "-X", "-w", "-c", "select 1"])
        .env("PGPASSWORD", "not-the-token")
        .kill_on_drop(true)
        .output()
        .await
        .expect("psql runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    endpoint.stop().await;
}

/// The catalog functions SQLAlchemy's column reflection calls, which DataFusion lacks.
/// A statement that runs for minutes unless stopped: DataFusion streams the series in batches.
const ENDLESS: &str = "select max(value) from generate_series(1, 1000000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_statement_is_cancelled_or_timed_out_and_the_connection_goes_on() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let cancel = client.cancel_token();
    // The cancel request is sent until the statement ends: one sent before the statement has
    // started cancels nothing, as in PostgreSQL.
    let canceller = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if cancel.cancel_query(NoTls).await.is_err() {
                return;
            }
        }
    });
    let outcome = tokio::time::timeout(Duration::from_secs(120), client.simple_query(ENDLESS))
        .await
        .expect("the statement was cancelled within two minutes");
    canceller.abort();
    let error = outcome.expect_err("a cancelled statement is an error");
    assert_eq!(db_code(&error), SqlState::QUERY_CANCELED, "{error:?}");
    assert!(
        format!("{error:?}").contains("canceling statement due to user request"),
        "{error:?}"
    );
    let rows = simple_rows(
        client
            .simple_query("select 41 + 1 as n")
            .await
            .expect("goes on"),
    );
    assert_eq!(rows[0].get("n"), Some("42"));

    // The extended protocol, with statement_timeout instead of a cancel request.
    client
        .simple_query("set statement_timeout = '300ms'")
        .await
        .expect("set");
    let outcome = tokio::time::timeout(Duration::from_secs(120), client.query(ENDLESS, &[]))
        .await
        .expect("the statement timed out within two minutes");
    let error = outcome.expect_err("a timed-out statement is an error");
    assert_eq!(db_code(&error), SqlState::QUERY_CANCELED, "{error:?}");
    assert!(
        format!("{error:?}").contains("canceling statement due to statement timeout"),
        "{error:?}"
    );
    let row = client
        .query_one("select 7 as n", &[])
        .await
        .expect("goes on");
    assert_eq!(row.get::<_, i64>("n"), 7);
    endpoint.stop().await;
}

/// Issue 24.5: a statement has a time limit even when the session sets none, and a session
/// may lower it but not lift it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_limits_how_long_a_statement_runs() {
    let endpoint =
        Endpoint::start_config("127.0.0.1:0", &[], None, Duration::from_millis(500)).await;
    let client = endpoint.connect().await;
    for session in [
        "",
        "set statement_timeout = '1h'",
        "set statement_timeout = 0",
    ] {
        if !session.is_empty() {
            client.simple_query(session).await.expect("set");
        }
        let outcome = tokio::time::timeout(Duration::from_secs(120), client.simple_query(ENDLESS))
            .await
            .expect("the statement was stopped within two minutes");
        let error = outcome.expect_err("a statement over the limit is an error");
        assert_eq!(
            db_code(&error),
            SqlState::QUERY_CANCELED,
            "{session}: {error:?}"
        );
        assert!(
            format!("{error:?}").contains("statement timeout"),
            "{error:?}"
        );
    }
    let row = client
        .query_one("select 7 as n", &[])
        .await
        .expect("goes on");
    assert_eq!(row.get::<_, i64>("n"), 7);
    endpoint.stop().await;
}

fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn test_tls() -> SqlTls {
    SqlTls {
        cert: tls_fixture("server.crt"),
        key: tls_fixture("server.key"),
    }
}

/// Runs psql with a connection string and commands; returns (success, stdout, stderr).
async fn psql_with(conninfo: &str, password: &str, commands: &[&str]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new("/usr/bin/psql");
    command
        .arg(conninfo)
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    for sql in commands {
        command.args(["-c", sql]);
    }
    let output = command
        .output()
        .await
        .expect("psql runs (is /usr/bin/psql installed? apt-get install postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_clients_must_use_tls_and_can_verify_it() {
    let endpoint = Endpoint::start_with("127.0.0.1:0", &["tls-token"], Some(test_tls())).await;
    let base = format!(
        "host=127.0.0.1 port={} user=analyst dbname=baton",
        endpoint.port()
    );
    let root = tls_fixture("ca.crt");

    // libpq checks the chain against the test CA and the address against the certificate.
    let verified = format!("{base} sslmode=verify-full sslrootcert={}", root.display());
    let (ok, stdout, stderr) = psql_with(
        &verified,
        "tls-token",
        &["\\conninfo", "select count(*) as n from stages"],
    )
    .await;
    assert!(ok, "psql over TLS failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1."),
        "{stdout}"
    );
    let stages = views().live.table("stages").expect("stages").rows.len();
    assert!(
        stdout.contains(&format!(" {stages}\n")),
        "{stages} stages:\n{stdout}"
    );

    // The default `prefer` asks for TLS first, so it needs no setting.
    let (ok, stdout, stderr) = psql_with(&base, "tls-token", &["\\conninfo"]).await;
    assert!(
        ok && stdout.contains("SSL connection"),
        "{stdout}\n{stderr}"
    );

    // A plaintext connection is refused before the password is asked for.
    let (ok, stdout, stderr) = psql_with(
        &format!("{base} sslmode=disable"),
        "tls-token",
        &["select 1"],
    )
    .await;
    assert!(!ok, "a plaintext connection was admitted:\n{stdout}");
    assert!(
        stderr.contains("accepts only TLS connections") && stderr.contains("sslmode=require"),
        "{stderr}"
    );

    // A client that trusts another CA refuses the server.
    let (ok, _, stderr) = psql_with(
        &format!(
            "{base} sslmode=verify-full sslrootcert={}",
            tls_fixture("server.crt").display()
        ),
        "tls-token",
        &["select 1"],
    )
    .await;
    assert!(!ok, "verified against the wrong root");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    endpoint.stop().await;
}

#[tokio::test]
async fn bad_tls_files_are_refused_at_start_naming_the_file() {
    let start = |tls: SqlTls| async move {
        let (_catalogs, receiver) = watch::channel(catalog(&views().live));
        let config = SqlConfig {
            addr: "127.0.0.1:0".parse().expect("address"),
            read_tokens: Vec::new(),
            tls: Some(tls),
            statement_timeout: baton_query::DEFAULT_STATEMENT_TIMEOUT,
            known_at: None,
        };
        serve_sql(config, receiver, std::future::pending())
            .await
            .expect_err("a bad TLS set-up must not start")
            .to_string()
    };
    // (certificate file, key file, what the error must say besides the file's name)
    let cases = [
        ("absent.crt", "server.key", "absent.crt", "cannot read it"),
        (
            "server.crt",
            "server.crt",
            "server.crt",
            "holds no private key",
        ),
        (
            "server.key",
            "server.key",
            "server.key",
            "holds no certificate",
        ),
        (
            "server.crt",
            "other.key",
            "other.key",
            "cannot be used with the certificate",
        ),
    ];
    for (cert, key, file, problem) in cases {
        let error = start(SqlTls {
            cert: tls_fixture(cert),
            key: tls_fixture(key),
        })
        .await;
        let named = tls_fixture(file).display().to_string();
        assert!(
            error.contains(&named) && error.contains(problem),
            "{cert} + {key}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_build_object_and_reflection_helpers_answer() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let row = client
        .query_one(
            "select json_build_object('n', 1, 'flag', true, 'text', 'x', 'none', null, 'stage', stage), \
             pg_get_serial_sequence('stages', 'stage') is null, pg_collation_is_visible(100) \
             from stages where stage = $1",
            &[&"inquiry"],
        )
        .await
        .expect("the functions plan and run");
    let object: serde_json::Value =
        serde_json::from_str(row.get::<_, &str>(0)).expect("json_build_object gives JSON");
    assert_eq!(
        object,
        serde_json::json!({"n": 1, "flag": true, "text": "x", "none": null, "stage": "inquiry"})
    );
    assert!(row.get::<_, bool>(1));
    assert!(row.get::<_, bool>(2));
    let odd = client
        .simple_query("select json_build_object('lonely')")
        .await
        .expect_err("keys and values come in pairs");
    assert!(
        odd.to_string().contains("pairs") || format!("{odd:?}").contains("pairs"),
        "{odd:?}"
    );
    endpoint.stop().await;
}

/// Superset connects through SQLAlchemy with psycopg2: the real library lists schemas and
/// tables, reflects every table of a candidate's schema as Superset does when a dataset is
/// added, previews one, and runs a query with a bound parameter
/// (`tests/clients/sqlalchemy_inspect.py`). CI installs them (`.ci/run`); elsewhere,
/// `python3 -m pip install sqlalchemy psycopg2-binary`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_reflects_tables_and_binds_parameters_like_superset() {
    let endpoint = Endpoint::start(&["bi-token"]).await;
    // psycopg 3 (current SQLAlchemy's default PostgreSQL driver, which binds parameters on the
    // server and streams through DECLARE/FETCH) and psycopg2 (which binds them in the client).
    for driver in ["psycopg", "psycopg2"] {
        sqlalchemy_with(&endpoint, driver).await;
    }
    endpoint.stop().await;
}

async fn sqlalchemy_with(endpoint: &Endpoint, driver: &str) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/sqlalchemy_inspect.py"
    );
    let output = tokio::process::Command::new("python3")
        .args([
            script,
            &endpoint.port().to_string(),
            "bi-token",
            "strict",
            driver,
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SQLAlchemy with {driver} failed (needs `python3 -m pip install sqlalchemy pandas psycopg2-binary 'psycopg[binary]'`):\n{stdout}\n{stderr}"
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert!(
        answer["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("PostgreSQL ")),
        "{answer}"
    );
    // SQLAlchemy leaves out schemas that start with `pg_` (its `LIKE ... ESCAPE '/'`).
    let schemas: Vec<&str> = answer["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(schemas.contains(&"public"), "{answer}");
    assert!(schemas.contains(&"strict"), "{answer}");
    assert!(!schemas.iter().any(|s| s.starts_with("pg_")), "{answer}");
    // Every table of the live view, in `public`.
    let tables: Vec<&str> = answer["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for (_, table) in views().live.tables() {
        assert!(
            tables.contains(&table.name),
            "{} listed: {answer}",
            table.name
        );
    }
    // Every table of the candidate reflects with its columns in order, each of its type, and
    // no keys, indexes or constraints (the views have none).
    let reflected = answer["reflected"].as_object().expect("reflected tables");
    assert_eq!(reflected.len(), views().strict.tables().count(), "{answer}");
    for (_, table) in views().strict.tables() {
        let got = &reflected[table.name];
        let columns: Vec<(String, String)> = got["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().expect("name").to_owned(),
                    pair[1].as_str().expect("type").to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = table
            .columns
            .iter()
            .map(|(name, column_type)| {
                let sqlalchemy_type = match column_type {
                    ColumnType::Text => "TEXT",
                    ColumnType::Int => "BIGINT",
                    ColumnType::Float => "DOUBLE_PRECISION",
                    ColumnType::Bool => "BOOLEAN",
                    ColumnType::Time => "TIMESTAMP",
                };
                ((*name).to_owned(), sqlalchemy_type.to_owned())
            })
            .collect();
        assert_eq!(columns, expected, "{}", table.name);
        // Each table's key is its primary key (issue 25); its index backs the key, so
        // SQLAlchemy lists no other index, and no table has foreign keys.
        assert_eq!(
            got["primary_key"],
            serde_json::json!(baton_query::key_of(table.name)),
            "{} primary_key",
            table.name
        );
        for empty in ["foreign_keys", "indexes", "unique"] {
            assert_eq!(got[empty], serde_json::json!([]), "{} {empty}", table.name);
        }
    }
    // The bound query returns the stage counts of the live view, the preview the candidate's.
    let entered = |snapshot: &Snapshot| {
        let stages = snapshot.table("stages").expect("stages");
        let mut counts: Vec<(String, i64)> = (0..stages.rows.len())
            .map(|row| {
                let Value::Text(stage) = cell(snapshot, "stages", row, "stage") else {
                    panic!("stage names are text");
                };
                (stage.clone(), int(cell(snapshot, "stages", row, "entered")))
            })
            .collect();
        counts.sort();
        counts
    };
    let pairs = |key: &str| -> Vec<(String, i64)> {
        answer[key]
            .as_array()
            .expect("pairs")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().expect("name").to_owned(),
                    pair[1].as_i64().expect("count"),
                )
            })
            .collect()
    };
    assert_eq!(pairs("stages"), entered(&views().live));
    assert_eq!(pairs("preview"), entered(&views().strict));
    assert_ne!(
        entered(&views().live),
        entered(&views().strict),
        "the preview could tell the candidate from the live view"
    );
    // pandas read the whole table with its columns; the named cursor streamed every row.
    let scores = views()
        .strict
        .table("person_scores")
        .expect("person_scores");
    let columns: Vec<&str> = scores.columns.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        answer["frame"],
        serde_json::json!([scores.rows.len(), columns]),
        "{driver}: pandas.read_sql_table"
    );
    let live = views().live.table("person_scores").expect("person_scores");
    assert_eq!(
        answer["streamed"],
        serde_json::json!(live.rows.len()),
        "{driver}: the streamed cursor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    client.simple_query("select 1").await.expect("serving");
    let port = endpoint.port();
    endpoint.stop().await;
    assert!(
        client.simple_query("select 1").await.is_err(),
        "the connection is closed"
    );
    let refused = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=a dbname=baton connect_timeout=5"),
        NoTls,
    )
    .await;
    assert!(refused.is_err(), "nothing listens any more");
}

/// `person = …` on a table with a row per person, hand-off or deal reads only that person's
/// rows (without converting the whole table); the answer must be what a scan of the whole
/// table gives. `person || ''` is not a column, so it is not pushed down and scans it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_by_person_answers_what_a_whole_scan_does() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let live = &views().live;
    let owners = live.table("opportunities").expect("table");
    let handoffs = live.table("handoffs").expect("table");
    // People with deals and hand-offs, and someone who is not there.
    let mut people: Vec<String> = [
        &owners.rows[0][1],
        &handoffs.rows[0][0],
        &owners.rows[owners.rows.len() - 1][1],
    ]
    .into_iter()
    .map(|cell| match cell {
        Value::Text(person) => person.clone(),
        other => panic!("a person is text, got {other:?}"),
    })
    .collect();
    people.push("nobody-at-all".to_owned());
    for table in ["person_scores", "handoffs", "opportunities"] {
        let pushed = client
            .prepare(&format!(
                "select * from {table} where person = $1 order by 1, 2, 3"
            ))
            .await
            .expect("prepare");
        let scanned = client
            .prepare(&format!(
                "select * from {table} where person || '' = $1 order by 1, 2, 3"
            ))
            .await
            .expect("prepare");
        for person in &people {
            let expected = live
                .table(table)
                .expect("table")
                .rows
                .iter()
                .filter(|row| row.iter().any(|cell| *cell == Value::Text(person.clone())))
                .count();
            let a = client.query(&pushed, &[person]).await.expect("lookup");
            let b = client.query(&scanned, &[person]).await.expect("scan");
            assert_eq!(a.len(), expected, "{table} rows of {person}");
            assert_eq!(a.len(), b.len(), "{table} rows of {person}");
            for (a, b) in a.iter().zip(&b) {
                for column in 0..a.len() {
                    let text = |row: &tokio_postgres::Row| {
                        format!(
                            "{:?}",
                            row.try_get::<_, Option<String>>(column)
                                .ok()
                                .or_else(|| row
                                    .try_get::<_, Option<f64>>(column)
                                    .ok()
                                    .map(|v| v.map(|v| v.to_string())))
                                .or_else(|| row
                                    .try_get::<_, Option<i64>>(column)
                                    .ok()
                                    .map(|v| v.map(|v| v.to_string())))
                                .or_else(|| row
                                    .try_get::<_, Option<SystemTime>>(column)
                                    .ok()
                                    .map(|v| v.map(|v| format!("{v:?}"))))
                        )
                    };
                    assert_eq!(text(a), text(b), "{table} of {person}, column {column}");
                }
            }
        }
        // The literal either way round, beside another condition.
        let person = &people[0];
        let row = client
            .query_one(
                &format!(
                    "select count(*) from {table} where '{person}' = person and person is not null"
                ),
                &[],
            )
            .await
            .expect("literal");
        let expected = client
            .query(&pushed, &[person])
            .await
            .expect("lookup")
            .len() as i64;
        assert_eq!(row.get::<_, i64>(0), expected, "{table}");
    }
    endpoint.stop().await;
}

/// Issue 25: every table is documented and every declared key names one row: its columns
/// exist, are never null and are unique, in every view built from the generated histories.
#[test]
fn every_table_is_documented_and_its_key_names_one_row() {
    for snapshot in [&views().live, &views().strict, &views().later] {
        for (_, table) in snapshot.tables() {
            let doc = baton_query::table_doc(table.name)
                .unwrap_or_else(|| panic!("{} is not in docs/views.md", table.name));
            assert!(doc.description.starts_with("One row"), "{}", table.name);
            for column in doc.columns.keys() {
                assert!(
                    table.columns.iter().any(|(name, _)| name == column),
                    "docs/views.md describes {}.{column}, which the table lacks",
                    table.name
                );
            }
            let key = baton_query::key_of(table.name);
            if table.name.ends_with("_totals") {
                assert!(key.is_empty(), "{} has one row", table.name);
                assert_eq!(table.rows.len(), 1, "{}", table.name);
                continue;
            }
            assert!(!key.is_empty(), "{} declares no key", table.name);
            let at: Vec<usize> = key
                .iter()
                .map(|column| {
                    table
                        .columns
                        .iter()
                        .position(|(name, _)| name == column)
                        .unwrap_or_else(|| panic!("{} has no key column {column}", table.name))
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            for row in &table.rows {
                let values: Vec<String> = at.iter().map(|i| format!("{:?}", row[*i])).collect();
                assert!(
                    at.iter().all(|i| row[*i] != Value::Null),
                    "{}: a key column is null in {values:?}",
                    table.name
                );
                assert!(
                    seen.insert(values.clone()),
                    "{}: the key {values:?} names two rows",
                    table.name
                );
            }
        }
    }
}

/// Issue 25: pgjdbc, the driver of Metabase, Tableau and DBeaver, runs every
/// `DatabaseMetaData` call a BI tool makes on connect on every table of the live view and
/// the candidate, then data, a prepared statement and a fetch-size cursor
/// (`tests/clients/JdbcMetadata.java`, run with Debian's `libpostgresql-jdbc-java`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_reads_every_table_the_way_bi_tools_sync() {
    let endpoint = Endpoint::start(&["bi-token"]).await;
    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/JdbcMetadata.java"
    );
    let output = tokio::process::Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar", client])
        .args([&endpoint.port().to_string(), "bi-token"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("java runs (apt-get install default-jdk-headless libpostgresql-jdbc-java)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAILED")).collect();
    assert!(
        output.status.success() && failed.is_empty(),
        "pgjdbc calls failed:\n{}\n{stderr}",
        failed.join("\n")
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |line: &str| lines.contains(&line);
    // getFunctions: PostgreSQL's built-in functions, set-returning ones told apart.
    let functions = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("function pg_catalog.{name} ")))
            .collect()
    };
    assert!(
        functions("abs").len() >= 6 && functions("abs").iter().all(|t| *t == "type=1"),
        "getFunctions abs: {:?}",
        functions("abs")
    );
    assert!(
        !functions("generate_series").is_empty()
            && functions("generate_series").iter().all(|t| *t == "type=2"),
        "getFunctions generate_series: {:?}",
        functions("generate_series")
    );
    for (schema, snapshot) in [("public", &views().live), ("strict", &views().strict)] {
        for (_, table) in snapshot.tables() {
            let name = format!("{schema}.{}", table.name);
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("table {name} TABLE remarks="))
                        && !l.ends_with("remarks=")),
                "{name} is listed with its description"
            );
            for (at, (column, column_type)) in table.columns.iter().enumerate() {
                let (type_name, jdbc) = match column_type {
                    ColumnType::Text => ("text", 12),
                    ColumnType::Int => ("int8", -5),
                    ColumnType::Float => ("float8", 8),
                    ColumnType::Bool => ("bool", -7),
                    ColumnType::Time => ("timestamptz", 93),
                };
                let prefix = format!("column {name}.{column} {type_name} {jdbc} {} ", at + 1);
                assert!(
                    lines.iter().any(|l| l.starts_with(&prefix)),
                    "getColumns: no `{prefix}`"
                );
            }
            let key = baton_query::key_of(table.name);
            let pk: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("pk {name} ")))
                .collect();
            let expected: Vec<String> = key
                .iter()
                .enumerate()
                .map(|(at, column)| format!("{column} {}", at + 1))
                .collect();
            assert_eq!(pk, expected, "getPrimaryKeys {name}");
            for column in key {
                assert!(
                    has(&format!(
                        "index {name} {}_pkey {column} unique=true",
                        table.name
                    )),
                    "getIndexInfo {name} {column}"
                );
            }
            let privileges: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("privilege {name} ")))
                .collect();
            assert_eq!(privileges, ["SELECT"], "getTablePrivileges {name}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.strip_prefix("types ").and_then(|n| n.parse::<u32>().ok()) > Some(100)),
        "getTypeInfo lists PostgreSQL's types"
    );
    let scores = views().live.table("person_scores").expect("person_scores");
    let at = scores
        .columns
        .iter()
        .position(|(name, _)| *name == "engagement")
        .expect("engagement");
    let engaged = scores
        .rows
        .iter()
        .filter(|row| matches!(row[at], Value::Float(f) if f >= 0.0))
        .count();
    assert!(has(&format!("prepared {engaged}")), "the prepared count");
    let people = scores.rows.len();
    assert!(
        has(&format!("cursor {people}")),
        "the cursor reads every row"
    );
    endpoint.stop().await;
}

/// One entry of a SQL test file (`fixtures/bi_startup.sql`, `fixtures/bi_catalog.sql`).
#[derive(Debug, Default)]
struct CatalogCase {
    client: String,
    sql: String,
    rows: Option<Vec<String>>,
    types: Option<Vec<String>>,
    /// The SQLSTATE it must fail with, instead of answering.
    error: Option<String>,
}

/// The entries of a SQL test file: each starts with a `-- client:` line, then its statement,
/// then what it must answer (`-- rows:`, `-- types:`, `-- error:`), if anything.
fn sql_cases(text: &str) -> Vec<CatalogCase> {
    let mut cases: Vec<CatalogCase> = Vec::new();
    // What the `-- ` lines after a marker fill.
    let mut filling_rows = false;
    for line in text.lines() {
        if let Some(client) = line.strip_prefix("-- client: ") {
            cases.push(CatalogCase {
                client: client.to_owned(),
                ..CatalogCase::default()
            });
            filling_rows = false;
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue;
        };
        if line == "-- rows:" {
            case.rows = Some(Vec::new());
            filling_rows = true;
        } else if let Some(code) = line.strip_prefix("-- error: ") {
            case.error = Some(code.to_owned());
            filling_rows = false;
        } else if let Some(types) = line.strip_prefix("-- types: ") {
            case.types = Some(types.split(' ').map(str::to_owned).collect());
            filling_rows = false;
        } else if let Some(row) = line.strip_prefix("-- ") {
            if filling_rows && let Some(rows) = case.rows.as_mut() {
                rows.push(row.to_owned());
            }
        } else if !line.starts_with("--") {
            filling_rows = false;
            case.sql.push_str(line);
            case.sql.push('\n');
        }
    }
    for case in &mut cases {
        case.sql = case.sql.trim().trim_end_matches(';').to_owned();
    }
    cases
}

/// Issue 25: the catalog queries of Metabase, DBeaver and Grafana answer what PostgreSQL would
/// for Baton's tables: keys, descriptions, PostgreSQL's type names, SELECT-only privileges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_catalog_queries_answer_as_postgresql_would() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let cases = sql_cases(include_str!("fixtures/bi_catalog.sql"));
    assert!(cases.len() >= 10, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        if let Some(code) = &case.error {
            for (protocol, outcome) in [
                ("simple", client.simple_query(&case.sql).await.map(|_| ())),
                ("extended", client.query(&case.sql, &[]).await.map(|_| ())),
            ] {
                match outcome {
                    Err(error) if error.code().map(SqlState::code) == Some(code.as_str()) => {}
                    other => failures.push(format!(
                        "{} ({protocol}): expected SQLSTATE {code}, got {other:?}",
                        case.client
                    )),
                }
            }
            continue;
        }
        match client.simple_query(&case.sql).await {
            Ok(messages) => {
                let got: Vec<String> = messages
                    .iter()
                    .filter_map(|message| match message {
                        SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|at| row.get(at).unwrap_or("").to_owned())
                                .collect::<Vec<_>>()
                                .join("|"),
                        ),
                        _ => None,
                    })
                    .collect();
                if let Some(rows) = &case.rows
                    && &got != rows
                {
                    failures.push(format!(
                        "{} (simple): expected\n{}\ngot\n{}",
                        case.client,
                        rows.join("\n"),
                        got.join("\n")
                    ));
                }
            }
            Err(error) => failures.push(format!("{} (simple): {error:?}", case.client)),
        }
        match client.prepare(&case.sql).await {
            Ok(statement) => {
                if let Some(types) = &case.types {
                    let got: Vec<&str> = statement
                        .columns()
                        .iter()
                        .map(|column| column.type_().name())
                        .collect();
                    if &got != types {
                        failures.push(format!("{}: types {got:?}, not {types:?}", case.client));
                    }
                }
                match client.query(&statement, &[]).await {
                    Ok(rows) if case.rows.as_ref().is_some_and(|r| r.len() != rows.len()) => {
                        failures.push(format!("{} (extended): {} rows", case.client, rows.len()))
                    }
                    Ok(_) => {}
                    Err(error) => failures.push(format!("{} (extended): {error:?}", case.client)),
                }
            }
            Err(error) => failures.push(format!("{} (prepare): {error:?}", case.client)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    endpoint.stop().await;
}

/// Issue 25: a Grafana time-series panel on each `timestamptz` column of every table. Grafana
/// expands its macros in the client: `$__timeGroupAlias(col, 1d)` to epoch arithmetic and
/// `$__timeFilter(col)` to a `BETWEEN` of RFC 3339 texts; the buckets add up to the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_time_series_work_on_every_time_column() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let mut columns = 0;
    for (_, table) in views().live.tables() {
        for (at, (column, kind)) in table.columns.iter().enumerate() {
            if *kind != ColumnType::Time {
                continue;
            }
            columns += 1;
            let sql = format!(
                "SELECT floor(extract(epoch from \"{column}\")/86400)*86400 AS \"time\", \
                 count(*) AS value FROM {} WHERE \"{column}\" BETWEEN \
                 '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z' GROUP BY 1 ORDER BY 1",
                table.name
            );
            let rows = client
                .query(&sql, &[])
                .await
                .unwrap_or_else(|error| panic!("{}.{column}: {error:?}", table.name));
            let counted: i64 = rows.iter().map(|row| row.get::<_, i64>("value")).sum();
            let expected = table
                .rows
                .iter()
                .filter(|row| row[at] != Value::Null)
                .count();
            assert_eq!(counted, expected as i64, "{}.{column}", table.name);
        }
    }
    assert!(columns >= 5, "{columns} time columns");
    endpoint.stop().await;
}

/// The kept comparisons of the candidates served, as SQL tables in `public`: stages matched by
/// name (each side's counts equal its own view's `stages` row of that name, checked by a join),
/// a stage of one definition only marked so, and the MQL groups adding up.
#[tokio::test]
async fn a_candidates_comparison_is_a_table_matched_by_stage_name() {
    let endpoint = Endpoint::start(&[]).await;
    let more = FunnelDefinition::parse(
        "more_stages.toml",
        include_str!("../../core/tests/fixtures/more_stages.toml"),
    )
    .expect("the fixture parses");
    let (live, position) = project(FunnelDefinition::default_funnel(), 40);
    let (candidate, _) = project(more, 40);
    let comparison = baton_core::compare(&live, &candidate);
    let report = baton_query::comparison::comparison_json(
        &comparison,
        ("main", position),
        ("more", position),
        position,
    );
    let more = Arc::new(Snapshot::build("more", &candidate, position).with_comparison(report));
    endpoint.catalogs.send_replace(Arc::new(
        Catalog::new(views().live.clone())
            .with_candidate(views().strict.clone())
            .with_candidate(more),
    ));
    let client = endpoint.connect().await;
    let rows = client
        .query(
            "select stage, present_in from comparison_stages \
             where candidate = 'more' order by ordinal",
            &[],
        )
        .await
        .expect("comparison_stages");
    let listed: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(String, String)> = comparison
        .stage_pairs()
        .iter()
        .map(|pair| {
            let present = match (pair.live.is_some(), pair.candidate.is_some()) {
                (true, true) => "both",
                (true, false) => "live only",
                _ => "candidate only",
            };
            (pair.name.to_owned(), present.to_owned())
        })
        .collect();
    assert_eq!(listed, expected);
    assert!(listed.iter().any(|(_, p)| p == "live only"));
    assert!(listed.iter().any(|(_, p)| p == "candidate only"));

    // Each side's figures are its own view's row of the same stage name.
    let mismatches = client
        .query(
            "select c.stage from comparison_stages c \
             left join public.stages l on l.stage = c.stage \
             left join more.stages m on m.stage = c.stage \
             where c.candidate = 'more' and ( \
               l.entered is distinct from c.live_entered \
               or l.converted is distinct from c.live_converted \
               or l.returned is distinct from c.live_returned \
               or m.entered is distinct from c.candidate_entered \
               or m.current is distinct from c.candidate_current \
               or m.conversion_rate is distinct from c.candidate_conversion_rate)",
            &[],
        )
        .await
        .expect("join");
    let mismatched: Vec<String> = mismatches.iter().map(|r| r.get(0)).collect();
    assert!(mismatched.is_empty(), "{mismatched:?}");

    let rows = client
        .query(
            "select mql_under, people, won + lost + open from comparison_mqls \
             where candidate = 'more' order by mql_under",
            &[],
        )
        .await
        .expect("comparison_mqls");
    let groups: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        groups,
        vec![
            (
                "both".to_owned(),
                comparison.mql_both.people as i64,
                comparison.mql_both.people as i64
            ),
            (
                "candidate only".to_owned(),
                comparison.mql_only_candidate.people as i64,
                comparison.mql_only_candidate.people as i64
            ),
            (
                "live only".to_owned(),
                comparison.mql_only_live.people as i64,
                comparison.mql_only_live.people as i64
            ),
        ]
    );
    // A candidate without a kept comparison has no rows.
    let strict = client
        .query(
            "select count(*) from comparison_stages where candidate = 'strict'",
            &[],
        )
        .await
        .expect("count");
    assert_eq!(strict[0].get::<_, i64>(0), 0);
    endpoint.stop().await;
}

/// Issue 28: the customer view's account tables, read over SQL, agree with each other on a
/// generated history: the latest month of each cohort in `retention` counts the cohort's
/// accounts and its active ones as `customer_accounts` has them, every movement of revenue
/// adds up to the revenue now, and the deciles and the loyalty breakdowns each cover every
/// customer once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_tables_agree_with_each_other_over_sql() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let count = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get::<_, i64>(0)
        }
    };
    let customers = count(
        "select count(*) from customer_accounts where cohort is not null and currency = 'USD'",
    )
    .await;
    assert!(customers >= 3, "the history has customers: {customers}");
    let active = count("select count(*) from customer_accounts where status = 'active'").await;
    assert!(active > 0, "some customers are active");

    let by_cohort = client
        .query(
            "select a.cohort, count(*) as accounts, \
                    count(*) filter (where a.status = 'active') as active, \
                    r.accounts as retention_accounts, r.retained \
             from customer_accounts a \
             join (select cohort, max(months_since) as latest from retention group by cohort) m \
               on m.cohort = a.cohort \
             join retention r on r.cohort = m.cohort and r.months_since = m.latest \
             group by a.cohort, r.accounts, r.retained \
             order by a.cohort",
            &[],
        )
        .await
        .expect("retention joined to the accounts");
    assert!(!by_cohort.is_empty());
    for row in &by_cohort {
        let cohort: String = row.get(0);
        assert_eq!(
            row.get::<_, i64>(1),
            row.get::<_, i64>(3),
            "accounts of {cohort}"
        );
        assert_eq!(
            row.get::<_, i64>(2),
            row.get::<_, i64>(4),
            "retained of {cohort}"
        );
    }

    // Revenue starts at nothing and every change of it is a movement.
    let row = client
        .query_one(
            "select (select sum(arr_change) from revenue_movements where currency = 'USD'), \
                    (select sum(arr) from customer_accounts where currency = 'USD')",
            &[],
        )
        .await
        .expect("sums");
    let (moved, now): (f64, f64) = (row.get(0), row.get(1));
    assert!(
        (moved - now).abs() < 0.005,
        "movements {moved}, revenue now {now}"
    );

    let ranked = count("select sum(accounts) from concentration where ranking = 'revenue'").await;
    assert_eq!(ranked, active);
    let row = client
        .query_one(
            "select sum(share), max(cumulative_share) from concentration where ranking = 'revenue'",
            &[],
        )
        .await
        .expect("shares");
    assert!((row.get::<_, f64>(0) - 1.0).abs() < 1e-9);
    assert!((row.get::<_, f64>(1) - 1.0).abs() < 1e-9);

    let loyalty = client
        .query(
            "select dimension, sum(accounts) from loyalty group by dimension order by dimension",
            &[],
        )
        .await
        .expect("loyalty");
    let dimensions: Vec<String> = loyalty.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        dimensions,
        [
            "cycle",
            "discount",
            "first_touch_campaign",
            "first_touch_channel",
            "handbacks",
            "sales_owner"
        ]
    );
    for row in &loyalty {
        assert_eq!(
            row.get::<_, i64>(1),
            customers,
            "{}",
            row.get::<_, String>(0)
        );
    }
    endpoint.stop().await;
}

/// Issue 29: the attribution tables over SQL. The whole ledger is read as a stream (never
/// held whole) and reconciles with the models' totals and the roll-ups; one opportunity's
/// rows read alone are the same as those of the whole ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribution_tables_reconcile_over_sql() {
    let endpoint = Endpoint::start(&[]).await;
    let client = endpoint.connect().await;
    let rows = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    // Per model: the ledger's credits of won opportunities add up to the model's revenue,
    // exactly, in minor units.
    let ledger = rows(
        "select model, sum(credited_minor)::bigint, count(distinct opportunity) \
         from attribution_ledger where credit = 'revenue' and currency = 'USD' \
         group by model order by model",
    )
    .await;
    let models = rows(
        "select model, round(revenue * 100)::bigint, won from attribution_models \
         where currency = 'USD' order by model",
    )
    .await;
    assert_eq!(ledger.len(), 7, "the shipped default's seven models");
    assert_eq!(ledger.len(), models.len());
    for (l, m) in ledger.iter().zip(&models) {
        let model: String = l.get(0);
        assert_eq!(model, m.get::<_, String>(0));
        assert_eq!(
            l.get::<_, i64>(1),
            m.get::<_, i64>(1),
            "{model}: credits add up"
        );
        assert_eq!(
            l.get::<_, i64>(2),
            m.get::<_, i64>(2),
            "{model}: won opportunities"
        );
        assert!(l.get::<_, i64>(2) > 0, "{model} credits some won deal");
    }
    // The roll-up by channel is the ledger grouped by channel.
    let mismatched = rows(
        "select c.model, c.value from attribution_credit c \
         left join (select model, channel, sum(credited_minor) as credited, count(*) as touches \
                    from attribution_ledger where currency = 'USD' group by model, channel) l \
           on l.model = c.model and l.channel = c.value \
         where c.dimension = 'channel' and c.currency = 'USD' \
           and (l.credited is null \
                or round((c.credited_revenue + c.credited_pipeline) * 100)::bigint <> l.credited \
                or c.credited_touches <> l.touches)",
    )
    .await;
    assert!(
        mismatched.is_empty(),
        "{:?}",
        mismatched
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    );
    // One opportunity read alone (pushed down) equals its rows in the whole ledger.
    let one: String =
        rows("select opportunity from attribution_ledger order by opportunity limit 1").await[0]
            .get(0);
    let alone = client
        .query(
            "select model, position, credited_minor from attribution_ledger \
             where opportunity = $1 order by model, position",
            &[&one],
        )
        .await
        .expect("one opportunity");
    let within = client
        .query(
            "select model, position, credited_minor from attribution_ledger \
             where opportunity || '' = $1 order by model, position",
            &[&one],
        )
        .await
        .expect("filtered from the whole ledger");
    assert!(!alone.is_empty());
    let triples = |rows: &[tokio_postgres::Row]| {
        rows.iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, i64>(1),
                    r.get::<_, i64>(2),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(triples(&alone), triples(&within));
    endpoint.stop().await;
}
