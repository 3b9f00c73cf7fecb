//! The HTTP collector end to end: a real server on a loopback port, a real HTTP client, the
//! embedded log (and JetStream on a real nats-server where the test is about NATS), and the
//! fixtures in `tests/fixtures` shaped like what Segment, SendGrid and LinkedIn send.

use baton_core::{ContentType, Event, EventId, Kind, Payload, SocialAction};
use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog, Position};
use baton_producer::{
    Adapter, Adapters, Collector, CollectorConfig, Quarantine, TrackRule, WriteKey,
};
use baton_testkit::NatsServer;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A collector served in-process on a free loopback port, stopped on drop of `stop`.
struct Running<L> {
    addr: SocketAddr,
    log: L,
    quarantine: Quarantine,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    client: reqwest::Client,
}

impl<L: EventLog + Clone + 'static> Running<L> {
    async fn start(log: L, dir: &Path, configure: impl FnOnce(&mut CollectorConfig)) -> Self {
        let mut config =
            CollectorConfig::new("127.0.0.1:0".parse().expect("addr"), dir.join("quarantine"));
        configure(&mut config);
        let quarantine = Quarantine::open(&config.quarantine_dir).expect("quarantine");
        let collector = Collector::bind(config, log.clone()).await.expect("bind");
        let addr = collector.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            collector
                .serve(axum::Router::new(), async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        Running {
            addr,
            log,
            quarantine,
            stop: Some(stop),
            task: Some(task),
            client: reqwest::Client::builder()
                // Generous for a loaded machine. A request during a NATS outage once took 200 s
                // to come back 503 (the log awaited each ack's own timeout in turn; fixed).
                .timeout(Duration::from_secs(300))
                .build()
                .expect("client"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    async fn events(&self) -> Vec<Event> {
        self.log
            .read(Position::ZERO)
            .await
            .expect("read")
            .map(|record| record.expect("record").event)
            .collect()
            .await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("collector task");
        }
    }
}

async fn embedded(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(EmbeddedConfig::new(dir.join("log")))
        .await
        .expect("embedded log")
}

fn statuses(body: &Value) -> Vec<(u64, String)> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["index"].as_u64().expect("index"),
                item["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn basic(key: &str) -> String {
    // Basic auth is base64("user:password"); Segment sends the write key as the user name.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{key}:");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_ndjson_stores_valid_lines_and_quarantines_the_rest() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |_| {}).await;
    let body = fixture("native_mixed.ndjson");
    let (status, answer) = running
        .post(
            "/v1/events",
            body.clone(),
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        statuses(&answer),
        vec![
            (0, "accepted".into()),
            (1, "accepted".into()),
            (2, "rejected".into()),
            (3, "rejected".into()),
            (4, "accepted".into()),
            (5, "rejected".into()),
        ]
    );
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items[2]["field"], "(item)");
    assert!(
        items[2]["reason"]
            .as_str()
            .expect("reason")
            .starts_with("not valid JSON"),
        "{answer}"
    );
    assert_eq!(items[3]["field"], "kind");
    assert!(
        items[3]["reason"]
            .as_str()
            .expect("reason")
            .contains("content_vewed")
    );
    assert_eq!(items[5]["field"], "person_id", "a touch needs an identity");
    assert_eq!(
        items[0]["event_id"],
        EventId::from_source_message("web", "web-0001").to_string()
    );
    assert_eq!(running.events().await.len(), 3);

    let quarantined = running.quarantine.list().expect("list");
    assert_eq!(quarantined.len(), 3);
    assert!(
        quarantined
            .iter()
            .all(|entry| entry.adapter == Adapter::Native)
    );
    assert!(quarantined.iter().any(|entry| entry.field == "kind"));

    // The same body again, without a declared type (detected as NDJSON): nothing new.
    let (status, again) = running.post("/v1/events", body, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(again["duplicates"], 3, "{again}");
    assert_eq!(running.events().await.len(), 3);
    assert_eq!(running.quarantine.list().expect("list").len(), 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_single_event_and_array_answer_200() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |_| {}).await;
    let one = json!({"kind":"webinar_attended","message_id":"w-1","occurred_at":"2026-11-01T10:00:00Z",
        "source":"zoom","person_id":"p-9","data":{"webinar_id":"wb-1","minutes":42}});
    let (status, answer) = running
        .post("/v1/events", one.to_string().into_bytes(), &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let array = json!([one, {"kind":"email_opened","message_id":"e-1","occurred_at":"2026-11-01T11:00:00Z",
        "source":"hubspot","person_id":"p-9","data":{"email_id":"nl-12"}}]);
    let (status, answer) = running
        .post("/v1/events", array.to_string().into_bytes(), &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        vec![(0, "duplicate".into()), (1, "accepted".into())]
    );
    let (status, answer) = running
        .post("/v1/events", b"{\"kind\": ".to_vec(), &[])
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("not valid JSON")
    );
    assert_eq!(running.events().await.len(), 2);

    // Without an id of its own, an item's id comes from its content: the same event sent
    // again, spaced differently, is a duplicate, not a second fact.
    let compact = r#"{"kind":"email_opened","occurred_at":"2026-11-01T12:00:00Z","source":"hubspot","person_id":"p-9","data":{"email_id":"nl-13"}}"#;
    let (status, answer) = running
        .post("/v1/events", compact.as_bytes().to_vec(), &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer), vec![(0, "accepted".into())]);
    let spaced = "[\n  { \"kind\": \"email_opened\",\n    \"occurred_at\": \"2026-11-01T12:00:00Z\", \"source\": \"hubspot\",\n    \"person_id\": \"p-9\", \"data\": { \"email_id\": \"nl-13\" } }\n]";
    let (status, again) = running
        .post("/v1/events", spaced.as_bytes().to_vec(), &[])
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(statuses(&again), vec![(0, "duplicate".into())]);
    assert_eq!(
        again["items"][0]["event_id"],
        answer["items"][0]["event_id"]
    );
    assert_eq!(running.events().await.len(), 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_batch_fixture_maps_every_call_type() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.write_keys = vec!["web:wk_web_1".parse().expect("key")];
    })
    .await;
    let body = gzip(&fixture("segment_batch.json"));
    let auth = basic("wk_web_1");
    let (status, answer) = running
        .post(
            "/v1/batch",
            body.clone(),
            &[
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let events = running.events().await;
    let kinds: Vec<Kind> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::ContentViewed,
            Kind::ContentViewed,
            Kind::Identified,
            Kind::PersonUpdated,
            Kind::LinkedToAccount,
            Kind::LinkedToAccount,
            Kind::AccountUpdated,
            Kind::DemoRequested,
            Kind::WebinarRegistered,
            Kind::CustomTouch,
            Kind::Merged,
        ]
    );
    let pricing = &events[0];
    assert_eq!(
        pricing.event_id,
        EventId::from_source_message("web", "ajs-next-1b6a7e0c-pricing")
    );
    assert_eq!(pricing.source.system, "web", "the write key's source");
    assert_eq!(pricing.source.connector.as_deref(), Some("analytics.js"));
    assert_eq!(pricing.campaign.channel.as_deref(), Some("paid_search"));
    assert_eq!(pricing.campaign.campaign_id.as_deref(), Some("q3-launch"));
    assert!(matches!(
        &pricing.payload,
        Payload::ContentViewed { content_type: ContentType::Pricing, url, .. } if url.contains("/pricing")
    ));
    // Client clock two seconds between the call and its sending: occurred two seconds before
    // Baton received it, whatever the client's clock said.
    assert_eq!(
        pricing.recorded_at.unix_millis() - pricing.occurred_at.unix_millis(),
        2_000
    );
    // No item-level sentAt: the batch's (10:05) applies, so the blog view happened 6.5
    // minutes before receipt.
    let blog = &events[1];
    assert!(matches!(
        &blog.payload,
        Payload::ContentViewed {
            content_type: ContentType::Blog,
            ..
        }
    ));
    assert_eq!(
        blog.recorded_at.unix_millis() - blog.occurred_at.unix_millis(),
        390_000
    );
    assert_eq!(blog.source.connector.as_deref(), Some("analytics.js"));
    assert!(matches!(
        &events[3].payload,
        Payload::PersonUpdated { title: Some(t), country: Some(c), .. } if t == "VP Marketing" && c == "DE"
    ));
    assert!(matches!(
        &events[6].payload,
        Payload::AccountUpdated { domain: Some(d), employees: Some(1200), .. } if d == "globex.example"
    ));
    assert_eq!(
        events[7].identity.account_id.as_deref(),
        Some("acct-globex")
    );
    assert!(matches!(
        &events[8].payload,
        Payload::WebinarRegistered { webinar_id } if webinar_id == "wb-2026-12-revops"
    ));
    assert!(matches!(
        &events[9].payload,
        Payload::CustomTouch { name } if name == "ROI Calculator Used"
    ));
    // Segment retries the whole batch: stored once.
    let (status, again) = running
        .post(
            "/v1/b",
            body,
            &[("content-encoding", "gzip"), ("authorization", &auth)],
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicates"], 11);
    assert_eq!(running.events().await.len(), 11);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_single_calls_and_their_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.write_keys = vec![
            "web:wk_web_1".parse().expect("key"),
            "app:wk_app_2".parse().expect("key"),
        ];
    })
    .await;
    let bearer = [("authorization", "Bearer wk_app_2")];
    let page = json!({"messageId":"m-page-1","anonymousId":"a-1","properties":{"url":"https://acme.example/docs/start"}});
    let (status, answer) = running
        .post("/v1/page", page.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 200, "{answer}");
    let track = json!({"type":"page","messageId":"m-2","userId":"p-1","event":"Demo Requested"});
    let (status, answer) = running
        .post("/v1/track", track.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["items"][0]["field"], "type");
    // No messageId: the id comes from the call's content, less the transport times, so the
    // same call sent again later is a duplicate; another timestamp makes another event.
    let unnamed = json!({"userId":"p-1","event":"Demo Requested","timestamp":"2026-11-20T10:00:00Z",
        "sentAt":"2026-11-20T10:00:01Z"});
    let (status, first) = running
        .post("/v1/track", unnamed.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(statuses(&first), vec![(0, "accepted".into())]);
    let mut resent = unnamed.clone();
    resent["sentAt"] = json!("2026-11-20T10:05:00Z");
    let (status, again) = running
        .post("/v1/track", resent.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(statuses(&again), vec![(0, "duplicate".into())]);
    assert_eq!(again["items"][0]["event_id"], first["items"][0]["event_id"]);
    let mut later = unnamed.clone();
    later["timestamp"] = json!("2026-11-20T11:00:00Z");
    let (status, other) = running
        .post("/v1/track", later.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(statuses(&other), vec![(0, "accepted".into())]);
    let no_identity = json!({"messageId":"m-3","event":"Demo Requested"});
    let (status, answer) = running
        .post("/v1/track", no_identity.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["items"][0]["field"], "userId");
    let far_future = json!({"messageId":"m-4","userId":"p-1","event":"Demo Requested",
        "timestamp":"2099-01-01T00:00:00Z"});
    let (status, answer) = running
        .post("/v1/track", far_future.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["items"][0]["field"], "occurred_at");
    assert!(
        answer["items"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("future")
    );
    let bad_time =
        json!({"messageId":"m-5","userId":"p-1","event":"Demo Requested","timestamp":"yesterday"});
    let (status, answer) = running
        .post("/v1/track", bad_time.to_string().into_bytes(), &bearer)
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["items"][0]["field"], "timestamp");
    let missing_property = json!({"messageId":"m-6","userId":"p-1","event":"Webinar Attended"});
    let (status, answer) = running
        .post(
            "/v1/track",
            missing_property.to_string().into_bytes(),
            &bearer,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["items"][0]["field"], "properties.webinar_id");

    let events = running.events().await;
    assert_eq!(events.len(), 3, "the page and the two unnamed tracks");
    assert_eq!(events[0].source.system, "app");
    assert!(matches!(
        &events[0].payload,
        Payload::ContentViewed {
            content_type: ContentType::Docs,
            ..
        }
    ));
    assert_eq!(running.quarantine.list().expect("list").len(), 5);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_keys_are_required_when_configured() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.write_keys = vec![WriteKey::new("web", "wk_right")];
    })
    .await;
    let page =
        json!({"messageId":"m-1","anonymousId":"a-1","properties":{"url":"https://acme.example/"}});
    let wrong = basic("wk_wrong");
    for headers in [vec![], vec![("authorization", wrong.as_str())]] {
        let (status, answer) = running
            .post("/v1/page", page.to_string().into_bytes(), &headers)
            .await;
        assert_eq!(status, 401, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .expect("error")
                .contains("write key")
        );
    }
    assert!(running.events().await.is_empty());
    let right = basic("wk_right");
    let (status, _) = running
        .post(
            "/v1/page",
            page.to_string().into_bytes(),
            &[("authorization", right.as_str())],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(running.events().await.len(), 1);
    running.stop().await;
}

/// Standard base64 with padding, to hand keys and signatures over as SendGrid does.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sendgrid_webhooks_are_checked_when_a_key_is_configured() {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;
    let signing = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("a valid scalar");
    let public = p256::PublicKey::from(signing.verifying_key())
        .to_public_key_der()
        .expect("DER public key");
    let key: baton_producer::SendgridKey = base64(public.as_bytes()).parse().expect("key");
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.sendgrid_key = Some(key);
    })
    .await;
    let body = fixture("sendgrid_events.json");
    let timestamp = "1763900000";
    let sign = |body: &[u8]| {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let signature: p256::ecdsa::Signature = signing.sign(&signed);
        base64(signature.to_der().as_bytes())
    };

    // Unsigned, signed over other bytes, or with another timestamp: 401, nothing written.
    let (status, answer) = running
        .post("/v1/webhooks/sendgrid", body.clone(), &[])
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("x-twilio-email-event-webhook-signature"),
        "{answer}"
    );
    let signed = |signature: &str, timestamp: &str| {
        vec![
            (
                "x-twilio-email-event-webhook-signature".to_owned(),
                signature.to_owned(),
            ),
            (
                "x-twilio-email-event-webhook-timestamp".to_owned(),
                timestamp.to_owned(),
            ),
        ]
    };
    let signature = sign(&body);
    // Signed over other bytes, or with another timestamp than the one signed.
    for headers in [
        signed(&sign(b"[]"), timestamp),
        signed(&signature, "1763900001"),
    ] {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let (status, answer) = running
            .post("/v1/webhooks/sendgrid", body.clone(), &headers)
            .await;
        assert_eq!(status, 401, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .expect("error")
                .contains("does not verify"),
            "{answer}"
        );
    }
    assert!(running.events().await.is_empty());
    assert!(running.quarantine.list().expect("list").is_empty());

    // Signed by the key: taken as an unsigned request is without a key.
    let headers = signed(&signature, timestamp);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let (status, answer) = running.post("/v1/webhooks/sendgrid", body, &headers).await;
    assert_eq!(
        status, 400,
        "the fixture's last event has no email: {answer}"
    );
    assert_eq!(answer["accepted"], 6, "{answer}");
    assert_eq!(running.events().await.len(), 6);

    assert!(
        "bm90IGEga2V5"
            .parse::<baton_producer::SendgridKey>()
            .expect_err("not a key")
            .contains("not a P-256 public key")
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_fixture_maps_email_events_and_ignores_the_rest() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |_| {}).await;
    let (status, answer) = running
        .post(
            "/v1/webhooks/sendgrid",
            fixture("sendgrid_events.json"),
            &[],
        )
        .await;
    assert_eq!(status, 400, "the last event has no email: {answer}");
    assert_eq!(
        statuses(&answer),
        vec![
            (0, "accepted".into()),
            (1, "ignored".into()),
            (2, "accepted".into()),
            (3, "accepted".into()),
            (4, "accepted".into()),
            (5, "accepted".into()),
            (6, "ignored".into()),
            (7, "accepted".into()),
            (8, "rejected".into()),
        ]
    );
    assert_eq!(answer["items"][8]["field"], "email");
    let events = running.events().await;
    let kinds: Vec<Kind> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::EmailSent,
            Kind::EmailDelivered,
            Kind::EmailOpened,
            Kind::EmailClicked,
            Kind::EmailBounced,
            Kind::EmailUnsubscribed,
        ]
    );
    assert_eq!(
        events[0].event_id,
        EventId::from_source_message("sendgrid", "sg_event_id_processed_0001")
    );
    assert_eq!(
        events[0].identity.person_id.as_deref(),
        Some("dana@globex.example")
    );
    assert_eq!(
        events[0].occurred_at.to_rfc3339(),
        "2025-11-20T10:00:00.000Z"
    );
    assert_eq!(events[3].identity.person_id.as_deref(), Some("p-1042"));
    assert!(matches!(
        &events[3].payload,
        Payload::EmailClicked { email_id, link_url: Some(url) } if email_id == "ss-nurture-2" && url.contains("case-studies")
    ));
    assert!(matches!(
        &events[4].payload,
        Payload::EmailBounced { hard: true, .. }
    ));

    // Issue 24.9: a `timestamp` of -1e15 was stored as 1970-01-01 (a silent clamp). A time
    // out of range is refused, and the answer says that the range is the problem.
    let far = json!([
        {"email":"a@b.example","timestamp":-1_000_000_000_000_000_i64,"event":"open","sg_event_id":"far-past"},
        {"email":"a@b.example","timestamp":400_000_000_000_i64,"event":"open","sg_event_id":"far-future"}
    ]);
    let (status, answer) = running
        .post("/v1/webhooks/sendgrid", far.to_string().into_bytes(), &[])
        .await;
    assert_eq!(status, 400, "{answer}");
    for item in answer["items"].as_array().expect("items") {
        assert_eq!(item["status"], "rejected", "{item}");
        assert_eq!(item["field"], "timestamp", "{item}");
        let reason = item["reason"].as_str().expect("reason");
        assert!(reason.contains("out of range"), "{reason}");
        assert!(!reason.contains("RFC 3339 timestamp"), "{reason}");
    }
    assert_eq!(running.events().await.len(), 6, "nothing more was stored");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_lead_forms_go_through_the_shipped_mapping() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |_| {}).await;
    let (status, answer) = running
        .post(
            "/v1/webhooks/linkedin",
            fixture("linkedin_lead_forms.json"),
            &[],
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        statuses(&answer),
        vec![
            (0, "accepted".into()),
            (1, "accepted".into()),
            (2, "ignored".into()),
            (3, "rejected".into()),
        ]
    );
    assert_eq!(answer["items"][3]["field"], "person_id");
    let events = running.events().await;
    assert_eq!(events.len(), 2);
    let sponsored = &events[0];
    assert_eq!(
        sponsored.event_id,
        EventId::from_source_message("linkedin", "2c4a0f63-1c1e-4b0a-9a5e-3f0c1d2e3f40")
    );
    assert_eq!(sponsored.campaign.channel.as_deref(), Some("paid_social"));
    assert_eq!(
        sponsored.campaign.campaign_id.as_deref(),
        Some("urn:li:sponsoredCampaign:1234567")
    );
    assert_eq!(
        sponsored.occurred_at.to_rfc3339(),
        "2025-11-20T09:00:00.000Z"
    );
    assert!(matches!(
        &sponsored.payload,
        Payload::SocialInteraction { network, action: SocialAction::LeadForm, paid: true, post_id: Some(_) } if network == "linkedin"
    ));
    assert!(matches!(
        &events[1].payload,
        Payload::SocialInteraction { paid: false, .. }
    ));
    assert_eq!(
        events[1].campaign.channel.as_deref(),
        Some("organic_social")
    );

    let (status, answer) = running
        .post("/v1/webhooks/tiktok", b"[]".to_vec(), &[])
        .await;
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().expect("error").contains("tiktok"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_answer_413_and_reject_oversized_items() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.limits.max_event_bytes = 2_000;
        config.limits.max_request_bytes = 20_000;
    })
    .await;
    let long = "x".repeat(3_000);
    let big = json!({"messageId":"m-big","userId":"p-1","event":long});
    let (status, answer) = running
        .post("/v1/track", big.to_string().into_bytes(), &[])
        .await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().expect("error").contains("2000"));

    let small =
        json!({"type":"track","messageId":"m-small","userId":"p-1","event":"Demo Requested"});
    let batch = json!({"batch":[small, big]});
    let (status, answer) = running
        .post("/v1/batch", batch.to_string().into_bytes(), &[])
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        statuses(&answer),
        vec![(0, "accepted".into()), (1, "rejected".into())]
    );

    // 30 KB of zeros compress to little; the limit applies after inflating.
    let mut huge = b"{\"batch\":[".to_vec();
    huge.extend(std::iter::repeat_n(b' ', 30_000));
    huge.extend(b"]}");
    let (status, answer) = running
        .post("/v1/batch", gzip(&huge), &[("content-encoding", "gzip")])
        .await;
    assert_eq!(status, 413, "{answer}");
    let (status, _) = running
        .post("/v1/batch", b"{}".to_vec(), &[("content-encoding", "br")])
        .await;
    assert_eq!(status, 415);
    assert_eq!(running.events().await.len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_retry_appends_fixed_items_once() {
    let dir = tempfile::tempdir().expect("dir");
    let log = embedded(dir.path()).await;
    let running = Running::start(log.clone(), dir.path(), |_| {}).await;
    // "Webinar Attended" needs properties.webinar_id; this source calls it `session`.
    let call = json!({"type":"track","messageId":"m-web-1","userId":"p-1","event":"Webinar Attended",
        "properties":{"session":"wb-7"},"timestamp":"2026-11-01T10:00:00Z"});
    let (status, _) = running
        .post(
            "/v1/batch",
            json!({"batch":[call]}).to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!(status, 400);
    running.stop().await;

    let quarantine = Quarantine::open(dir.path().join("quarantine")).expect("quarantine");
    let unchanged = Adapters::new(BTreeMap::new(), BTreeMap::new(), 86_400_000).expect("tables");
    let summary = quarantine.retry(&unchanged, &log).await.expect("retry");
    assert_eq!(
        (summary.entries, summary.still_rejected, summary.released),
        (1, 1, 0)
    );

    // The fix: map the event with a constant webinar id (a stand-in for a mapping fix).
    let mut fixed = BTreeMap::new();
    fixed.insert(
        "Webinar Attended".to_owned(),
        TrackRule {
            kind: "webinar_attended".into(),
            data: [("webinar_id".to_owned(), json!("wb-7"))]
                .into_iter()
                .collect(),
        },
    );
    let adapters = Adapters::new(fixed, BTreeMap::new(), 86_400_000).expect("tables");
    let summary = quarantine.retry(&adapters, &log).await.expect("retry");
    assert_eq!((summary.released, summary.appended), (1, 1), "{summary:?}");
    assert!(quarantine.list().expect("list").is_empty());
    let records: Vec<Event> = log
        .read(Position::ZERO)
        .await
        .expect("read")
        .map(|r| r.expect("record").event)
        .collect()
        .await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].event_id,
        EventId::from_source_message("segment", "m-web-1"),
        "the id the live request would have given"
    );
    let summary = quarantine.retry(&adapters, &log).await.expect("retry");
    assert_eq!(summary.entries, 0);
}

/// Sends requests of 20 events one after another, resending on 503 or a broken connection
/// until acknowledged, and records what was acknowledged.
async fn send_until_acknowledged(
    client: reqwest::Client,
    url: String,
    requests: usize,
    acknowledged: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
) -> Vec<String> {
    let mut acked = Vec::new();
    for request in 0..requests {
        let lines: Vec<String> = (0..20)
            .map(|i| {
                json!({"kind":"content_viewed","message_id":format!("r{request}-e{i}"),
                    "occurred_at":"2026-11-01T10:00:00Z","source":"web","anonymous_id":format!("a-{i}"),
                    "data":{"url":"https://acme.example/blog/x","content_type":"blog"}})
                .to_string()
            })
            .collect();
        let body = lines.join("\n");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            assert!(
                Instant::now() < deadline,
                "request {request} never acknowledged"
            );
            let sent = client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().as_u16() == 200 => {
                    let answer: Value =
                        serde_json::from_slice(&response.bytes().await.expect("body"))
                            .expect("json");
                    for item in answer["items"].as_array().expect("items") {
                        acked.push(item["event_id"].as_str().expect("id").to_owned());
                    }
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    assert_eq!(status, 503, "only 503 is retryable here");
                    assert!(response.headers().get("retry-after").is_some());
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    acked
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_stream_loses_and_duplicates_nothing_acknowledged() {
    let mut server = NatsServer::start();
    let mut config = JetStreamConfig::new(server.url());
    // The log retries for half the window before answering not written, and each batch's
    // catch-up must fit in a quarter of it. 4 s kept 503s prompt but, on a loaded 2-core
    // machine, left no room for a catch-up after the restart (a request was never
    // acknowledged in a full-suite run); 20 s holds both.
    config.duplicate_window = Duration::from_secs(20);
    let log = JetStreamLog::connect(config).await.expect("connect");
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(log.clone(), dir.path(), |_| {}).await;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let requests = 60;
    let sender = tokio::spawn(send_until_acknowledged(
        running.client.clone(),
        running.url("/v1/events"),
        requests,
        Arc::clone(&acknowledged),
        Arc::clone(&failures),
    ));
    let acked_so_far = Arc::clone(&acknowledged);
    wait_for("the first acknowledgements", move || {
        acked_so_far.load(Ordering::SeqCst) >= 10
    })
    .await;
    server.kill();
    let failed_so_far = Arc::clone(&failures);
    wait_for("a request to fail while the server is down", move || {
        failed_so_far.load(Ordering::SeqCst) >= 1
    })
    .await;
    server.start_again();
    let acked = sender.await.expect("sender");
    assert!(failures.load(Ordering::SeqCst) >= 1);
    assert_eq!(acked.len(), requests * 20);

    let stored = running.events().await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for event in &stored {
        *counts.entry(event.event_id.to_string()).or_insert(0) += 1;
    }
    for id in &acked {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "acknowledged event {id} stored once"
        );
    }
    assert_eq!(stored.len(), requests * 20, "nothing else stored");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_anonymous_identifies_and_deflate_bodies() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |_| {}).await;
    let batch = json!({"batch":[
        {"type":"screen","messageId":"m-s1","anonymousId":"a-1","name":"Dashboard"},
        {"type":"identify","messageId":"m-i1","anonymousId":"a-1","traits":{"plan":"free"}},
        {"type":"identify","messageId":"m-i2","userId":"p-1"}
    ]});
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(batch.to_string().as_bytes())
        .expect("deflate");
    let body = encoder.finish().expect("deflate");
    let (status, answer) = running
        .post("/v1/batch", body, &[("content-encoding", "deflate")])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        vec![
            (0, "accepted".into()),
            (1, "ignored".into()),
            (2, "ignored".into())
        ]
    );
    let events = running.events().await;
    assert_eq!(events.len(), 1);
    assert!(matches!(
        &events[0].payload,
        Payload::ContentViewed { url, content_type: ContentType::Product, title: Some(t) }
            if url == "app://screen/Dashboard" && t == "Dashboard"
    ));
    running.stop().await;
}

/// Issue 24.7: one 511 KB body of small bad lines made 43,510 files and 173 MB. Now a
/// request's rejected items are one file of about the body's size plus a line's fields per
/// item; the quarantine stops keeping at its limit (answering each item, valid ones still
/// stored); and each write key has a rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quarantine_is_compact_and_bounded_and_keys_are_rate_limited() {
    let dir = tempfile::tempdir().expect("dir");
    let mut body = Vec::new();
    while body.len() < 500 * 1024 {
        body.extend_from_slice(format!("{{\"x\":{}}}\n", body.len()).as_bytes());
    }
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.quarantine_max_bytes = 16 << 20;
    })
    .await;
    let (status, answer) = running
        .post(
            "/v1/events",
            body.clone(),
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    // Nothing in the body was valid: 400, each item answered.
    assert_eq!(status, 400, "{}", answer["error"]);
    assert_eq!(answer["rejected"].as_u64(), Some(lines as u64));
    let files: Vec<_> = std::fs::read_dir(dir.path().join("quarantine"))
        .expect("quarantine")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = std::fs::metadata(&files[0]).expect("file").len();
    let per_item = (stored - body.len() as u64) / lines as u64;
    assert!(
        per_item < 400,
        "{stored} bytes for {lines} items of {} bytes",
        body.len()
    );
    assert_eq!(running.quarantine.list().expect("list").len(), lines);
    running.stop().await;

    // A small limit: what does not fit is answered, not kept, and valid items still go in.
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.quarantine_max_bytes = 64 * 1024;
    })
    .await;
    let half: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .take(lines / 2)
        .collect();
    let lines = half.len();
    let mut mixed = half.join(&b'\n');
    mixed.push(b'\n');
    mixed.extend_from_slice(
        json!({"message_id":"m-ok","kind":"content_viewed","occurred_at":"2026-03-01T12:00:00Z",
               "source":{"system":"web"},"anonymous_id":"a-1",
               "data":{"url":"https://acme.example/pricing","content_type":"pricing"}})
        .to_string()
        .as_bytes(),
    );
    let (status, answer) = running
        .post(
            "/v1/events",
            mixed,
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    assert_eq!(
        status, 400,
        "rejected items answer 400: {}",
        answer["error"]
    );
    assert_eq!(
        answer["accepted"].as_u64(),
        Some(1),
        "{}",
        answer["accepted"]
    );
    let items = answer["items"].as_array().expect("items");
    let not_kept = items
        .iter()
        .filter(|item| {
            item["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("not kept in the quarantine: it is full"))
        })
        .count();
    let kept = running.quarantine.list().expect("list").len();
    assert!(kept > 0 && not_kept > 0, "{kept} kept, {not_kept} not");
    assert_eq!(kept + not_kept, lines);
    assert!(running.quarantine.bytes().expect("bytes") <= 64 * 1024);
    assert_eq!(running.events().await.len(), 1);
    running.stop().await;

    // Rates per write key: one key over its rate gets 429 and stores nothing; another writes.
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.write_keys = vec![
            WriteKey::new("web", "wk_web"),
            WriteKey::new("crm", "wk_crm"),
        ];
        config.key_rate = baton_producer::KeyRate {
            items_per_second: 1,
            burst: 5,
            ..baton_producer::KeyRate::UNLIMITED
        };
    })
    .await;
    let page = |id: &str| {
        json!({"messageId":id,"anonymousId":"a-1","properties":{"url":"https://acme.example/"}})
            .to_string()
            .into_bytes()
    };
    let web = basic("wk_web");
    let crm = basic("wk_crm");
    let mut refused = None;
    let started = Instant::now();
    for n in 0..100 {
        let response = running
            .client
            .post(running.url("/v1/page"))
            .header("authorization", web.as_str())
            .body(page(&format!("w-{n}")))
            .send()
            .await
            .expect("post");
        if response.status().as_u16() == 429 {
            refused = Some((n, response));
            break;
        }
        assert_eq!(response.status().as_u16(), 200);
    }
    let (sent, response) = refused.expect("the web key was limited");
    // A burst of 5, and one more a second since (each request waits for a synced write).
    let refilled = started.elapsed().as_secs();
    assert!(
        (5..=6 + refilled).contains(&sent),
        "{sent} went in over {refilled} s"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let text = response.text().await.expect("body");
    assert!(text.contains("web") && text.contains("rate"), "{text}");
    let (status, _) = running
        .post("/v1/page", page("c-1"), &[("authorization", crm.as_str())])
        .await;
    assert_eq!(status, 200, "another key is not held back");
    assert_eq!(running.events().await.len() as u64, sent + 1);
    running.stop().await;
}

/// A browser key's rate per visitor: one client address (as the load balancer says it, in
/// `X-Forwarded-For`) over it gets 429 while another visitor of the same key goes on; and
/// body bytes are limited as items are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_visitor_and_each_keys_bytes_have_a_rate() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        let mut browser = WriteKey::new("web", "wk_browser");
        browser.scope.origins = vec!["https://www.acme.example".into()];
        browser.scope.per_address = Some(baton_producer::KeyRate {
            items_per_second: 1,
            burst: 3,
            ..baton_producer::KeyRate::UNLIMITED
        });
        let mut bulky = WriteKey::new("crm", "wk_crm");
        bulky.scope.rate = Some(baton_producer::KeyRate {
            bytes_per_second: 100,
            burst_bytes: 1_000,
            ..baton_producer::KeyRate::UNLIMITED
        });
        config.write_keys = vec![browser, bulky];
        config.trust_forwarded_for = true;
    })
    .await;
    let page = |id: &str| {
        json!({"messageId":id,"anonymousId":"a-1","properties":{"url":"https://acme.example/"},
            "writeKey":"wk_browser"})
        .to_string()
        .into_bytes()
    };
    // The load balancer appends the visitor's address last; what the client put first is its
    // own word and is not used.
    let visitor = |address: &str| format!("203.0.113.99, {address}");
    let mut limited = None;
    for n in 0..10 {
        let forwarded = visitor("198.51.100.1");
        let (status, body) = running
            .post(
                "/v1/p",
                page(&format!("v1-{n}")),
                &[
                    ("content-type", "text/plain"),
                    ("x-forwarded-for", forwarded.as_str()),
                ],
            )
            .await;
        if status == 429 {
            let error = body["error"].as_str().unwrap_or_default().to_owned();
            assert!(error.contains("client 198.51.100.1"), "{error}");
            limited = Some(n);
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    // A burst of 3, and what refilled at 1 a second while they were stored.
    let limited = limited.expect("the visitor was limited");
    assert!((3..=4).contains(&limited), "limited at request {limited}");
    let other = visitor("198.51.100.2");
    let (status, body) = running
        .post(
            "/v1/p",
            page("v2-0"),
            &[
                ("content-type", "text/plain"),
                ("x-forwarded-for", other.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200, "another visitor goes on: {body}");
    assert_eq!(running.events().await.len(), limited + 1);

    // 1,000 bytes at once for the CRM key, 100 a second.
    let event = |id: &str| {
        json!({"message_id": id, "kind": "opportunity_created", "source": "crm",
            "occurred_at": "2026-03-03T14:30:00Z", "account_id": "acct-acme",
            "opportunity_id": format!("opp-{id}"), "person_id": "p-1",
            "data": {"amount": "50000.00", "currency": "USD", "stage": "discovery"}})
    };
    let body = |ids: &[&str]| {
        serde_json::to_vec(&ids.iter().map(|id| event(id)).collect::<Vec<_>>()).expect("json")
    };
    let crm = basic("wk_crm");
    let first = body(&["b-1", "b-2", "b-3"]);
    assert!((600..1_000).contains(&first.len()), "{}", first.len());
    let (status, answer) = running
        .post("/v1/events", first, &[("authorization", crm.as_str())])
        .await;
    assert_eq!(status, 200, "{answer}");
    // The bucket still held about 300 bytes, so the next body goes in too (below zero); the
    // one after waits for the refill at 100 bytes a second.
    let (status, answer) = running
        .post(
            "/v1/events",
            body(&["b-4", "b-5", "b-6"]),
            &[("authorization", crm.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = running
        .post(
            "/v1/events",
            body(&["b-7", "b-8", "b-9"]),
            &[("authorization", crm.as_str())],
        )
        .await;
    assert_eq!(status, 429, "over its bytes: {answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("bytes a second"),
        "{answer}"
    );
    running.stop().await;
}

/// Every Segment call type on its long and its short path (what the browser library posts
/// to), `text/plain` with the key in the body; a call on another type's path is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_calls_take_their_long_and_short_paths() {
    let dir = tempfile::tempdir().expect("dir");
    let running = Running::start(embedded(dir.path()).await, dir.path(), |config| {
        config.write_keys = vec![WriteKey::new("web", "wk_web")];
    })
    .await;
    let plain = [("content-type", "text/plain")];
    let calls = [
        (
            "track",
            "t",
            json!({"event": "Demo Requested", "userId": "p-1"}),
            "demo_requested",
        ),
        (
            "page",
            "p",
            json!({"anonymousId": "a-1", "properties": {"url": "https://acme.example/"}}),
            "content_viewed",
        ),
        (
            "screen",
            "s",
            json!({"anonymousId": "a-1", "name": "Home", "properties": {"url": "app://home"}}),
            "content_viewed",
        ),
        (
            "identify",
            "i",
            json!({"anonymousId": "a-1", "userId": "p-1"}),
            "identified",
        ),
        (
            "group",
            "g",
            json!({"userId": "p-1", "groupId": "acct-1"}),
            "linked_to_account",
        ),
        (
            "alias",
            "a",
            json!({"previousId": "a-1", "userId": "p-1"}),
            "",
        ),
    ];
    for (long, short, call, kind) in calls {
        for path in [long, short] {
            let mut body = call.clone();
            body["messageId"] = json!(format!("{path}-1"));
            body["writeKey"] = json!("wk_web");
            let (status, answer) = running
                .post(
                    &format!("/v1/{path}"),
                    body.to_string().into_bytes(),
                    &plain,
                )
                .await;
            assert_eq!(status, 200, "/v1/{path}: {answer}");
            if !kind.is_empty() {
                assert_eq!(answer["items"][0]["kind"], kind, "/v1/{path}: {answer}");
            }
        }
    }
    let mut wrong = json!({"type": "track", "event": "Demo Requested", "userId": "p-1",
        "messageId": "wrong-1", "writeKey": "wk_web"});
    let (status, answer) = running
        .post("/v1/p", wrong.to_string().into_bytes(), &plain)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["items"][0]["field"], "type");
    wrong["writeKey"] = json!("wk_other");
    let (status, _) = running
        .post("/v1/t", wrong.to_string().into_bytes(), &plain)
        .await;
    assert_eq!(status, 401, "an unknown key in the body");
    // The key in the body is not stored with the event.
    let events = running.events().await;
    assert!(!events.is_empty());
    assert!(
        !format!("{events:?}").contains("wk_web"),
        "the write key is not a fact"
    );
    running.stop().await;
}
