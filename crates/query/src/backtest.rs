//! Backtests over HTTP, beside a running `baton serve`: `POST /v1/backtests` with a funnel
//! definition (TOML) starts one, `GET /v1/backtests/{id}` follows it (phase, position reached,
//! the log's head) and, once done, answers the comparison with the live definition in the
//! JSON that `baton replay --funnel FILE --no-keep --json` prints. The candidate is folded in
//! memory beside the live definition, in one reading of the log; with `?keep=NAME` it is then
//! kept whole as a candidate view of that name (as `baton replay --name NAME` keeps one, to
//! promote), and otherwise nothing is stored.
//!
//! The process that owns the log gives the run (a [`RunBacktest`]); this keeps the jobs. A
//! backtest reads the whole log and holds a second state in memory, so one runs at a time: a
//! start while one runs is answered 409 naming it. The last [`KEEP`] finished are kept.

use baton_core::FunnelDefinition;
use serde_json::{Value as Json, json};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Runs one backtest of a candidate definition, reporting its progress, to the comparison's
/// JSON; given a view name, keeps the candidate as that view once compared.
pub type RunBacktest = Arc<
    dyn Fn(
            FunnelDefinition,
            Option<KeepAs>,
            Arc<Progress>,
        ) -> Pin<Box<dyn Future<Output = Result<Json, String>> + Send>>
        + Send
        + Sync,
>;

/// Where a backtest's candidate is kept once compared: a view of this name, storing the
/// definition's text as given.
#[derive(Clone, Debug)]
pub struct KeepAs {
    pub name: String,
    pub definition_text: String,
}

/// How many finished backtests are kept.
pub const KEEP: usize = 16;

/// Where a running backtest is: its phase (`folding` the candidate and the live definition,
/// then `keeping` the candidate when asked), how far it got and how far it goes (positions
/// while folding, entries while keeping).
#[derive(Debug, Default)]
pub struct Progress {
    phase: Mutex<&'static str>,
    reached: AtomicU64,
    until: AtomicU64,
}

impl Progress {
    /// A new phase, folding up to `until`.
    pub fn phase(&self, name: &'static str, until: u64) {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
        self.reached.store(0, Ordering::Relaxed);
        self.until.store(until, Ordering::Relaxed);
    }

    /// How far the phase goes, once known.
    pub fn phase_total(&self, until: u64) {
        self.until.store(until, Ordering::Relaxed);
    }

    pub fn reached(&self, position: u64) {
        self.reached.store(position, Ordering::Relaxed);
    }

    fn json(&self) -> Json {
        let phase = *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (reached, until) = (
            self.reached.load(Ordering::Relaxed),
            self.until.load(Ordering::Relaxed),
        );
        json!({
            "phase": phase,
            "reached": reached,
            "until": until,
            "fraction": if until == 0 { 0.0 } else { reached as f64 / until as f64 },
        })
    }
}

struct Job {
    id: u64,
    /// The view it is kept as, when asked.
    keep: Option<String>,
    definition: String,
    definition_hash: String,
    started: Instant,
    progress: Arc<Progress>,
    /// Set when it ends: the comparison, or why it failed; and how long it took.
    ended: Option<(Result<Json, String>, f64)>,
}

impl Job {
    fn json(&self, with_comparison: bool) -> Json {
        let mut answer = json!({
            "id": self.id,
            "href": format!("/v1/backtests/{}", self.id),
            "definition": self.definition,
            "definition_hash": self.definition_hash,
            "keep": self.keep,
        });
        let object = answer.as_object_mut().expect("an object");
        match &self.ended {
            None => {
                object.insert("state".into(), "running".into());
                object.insert(
                    "elapsed_seconds".into(),
                    self.started.elapsed().as_secs_f64().into(),
                );
                object.insert("progress".into(), self.progress.json());
            }
            Some((Ok(comparison), seconds)) => {
                object.insert("state".into(), "done".into());
                object.insert("elapsed_seconds".into(), (*seconds).into());
                if with_comparison {
                    object.insert("comparison".into(), comparison.clone());
                }
            }
            Some((Err(error), seconds)) => {
                object.insert("state".into(), "failed".into());
                object.insert("elapsed_seconds".into(), (*seconds).into());
                object.insert("error".into(), error.clone().into());
            }
        }
        answer
    }
}

/// The backtests of this process: the one running and the last finished.
pub struct Backtests {
    run: RunBacktest,
    jobs: Mutex<VecDeque<Job>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Backtests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backtests").finish_non_exhaustive()
    }
}

/// Why a backtest was not started.
#[derive(Debug)]
pub enum StartError {
    /// The definition does not parse or validate (the errors, by line), or the view name to
    /// keep it as is not one.
    Invalid(String),
    /// Another is running: its answer.
    Busy(Json),
}

impl Backtests {
    pub fn new(run: RunBacktest) -> Backtests {
        Backtests {
            run,
            jobs: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(1),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a backtest of the definition in `text` (named `file` in its errors), kept as
    /// the view `keep` when given; its answer, to follow it.
    pub fn start(
        self: &Arc<Self>,
        file: &str,
        text: &str,
        keep: Option<&str>,
    ) -> Result<Json, StartError> {
        let definition = FunnelDefinition::parse(file, text).map_err(|errors| {
            StartError::Invalid(format!("invalid funnel definition:\n{errors}"))
        })?;
        if let Some(name) = keep
            && !baton_projector::valid_view_name(name)
        {
            return Err(StartError::Invalid(format!(
                "keep={name:?} is not a view name: use 1 to 64 letters, digits, `-` or `_`, starting with a letter or digit"
            )));
        }
        let mut jobs = self.jobs();
        if let Some(running) = jobs.iter().find(|job| job.ended.is_none()) {
            return Err(StartError::Busy(running.json(false)));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(Progress::default());
        jobs.push_back(Job {
            id,
            keep: keep.map(str::to_owned),
            definition: definition.name().to_owned(),
            definition_hash: definition.hash().to_owned(),
            started: Instant::now(),
            progress: progress.clone(),
            ended: None,
        });
        while jobs.len() > KEEP + 1 {
            let Some(at) = jobs.iter().position(|job| job.ended.is_some()) else {
                break;
            };
            jobs.remove(at);
        }
        let answer = jobs.back().expect("just pushed").json(false);
        drop(jobs);
        let this = Arc::clone(self);
        let keep = keep.map(|name| KeepAs {
            name: name.to_owned(),
            definition_text: text.to_owned(),
        });
        let run = (self.run)(definition, keep, progress);
        tokio::spawn(async move {
            let started = Instant::now();
            // A panic in the fold ends the job as failed, not running for ever.
            let result = tokio::spawn(run)
                .await
                .unwrap_or_else(|error| Err(format!("the backtest stopped: {error}")));
            let seconds = started.elapsed().as_secs_f64();
            if let Some(job) = this.jobs().iter_mut().find(|job| job.id == id) {
                job.ended = Some((result, seconds));
            }
        });
        Ok(answer)
    }

    /// One backtest's answer, with its comparison once done.
    pub fn get(&self, id: u64) -> Option<Json> {
        self.jobs()
            .iter()
            .find(|job| job.id == id)
            .map(|job| job.json(true))
    }

    /// Every kept backtest, newest first, without their comparisons.
    pub fn list(&self) -> Json {
        Json::Array(
            self.jobs()
                .iter()
                .rev()
                .map(|job| job.json(false))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One backtest at a time: a second start while one runs is refused naming the running
    /// one, and is taken once it is done; the answer carries the run's comparison.
    #[tokio::test]
    async fn a_second_start_while_one_runs_is_refused_naming_it() {
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let run: RunBacktest = Arc::new(move |definition, _keep, progress| {
            let gate = gate.clone();
            Box::pin(async move {
                progress.phase("candidate", 10);
                progress.reached(4);
                gate.notified().await;
                Ok(json!({"candidate": definition.name()}))
            })
        });
        let backtests = Arc::new(Backtests::new(run));
        let text = baton_core::DEFAULT_FUNNEL_TOML;
        let first = backtests.start("first.toml", text, None).expect("started");
        assert_eq!(first["state"], "running");
        let id = first["id"].as_u64().expect("id");
        match backtests.start("second.toml", text, None) {
            Err(StartError::Busy(running)) => assert_eq!(running["id"], id),
            other => panic!("{other:?}"),
        }
        match backtests.start("bad.toml", "[funnel]\nname = 1\n", None) {
            Err(StartError::Invalid(message)) => {
                assert!(message.contains("bad.toml:2"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Progress while it runs.
        let running = loop {
            let answer = backtests.get(id).expect("kept");
            if answer["progress"]["until"] == 10 {
                break answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!(running["progress"]["reached"], 4, "{running}");
        release.notify_one();
        let done = loop {
            let answer = backtests.get(id).expect("kept");
            if answer["state"] != "running" {
                break answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!(done["state"], "done");
        assert!(done["comparison"]["candidate"].is_string(), "{done}");
        match backtests.start("again.toml", text, Some("no/such name")) {
            Err(StartError::Invalid(message)) => assert!(message.contains("keep="), "{message}"),
            other => panic!("{other:?}"),
        }
        let again = backtests
            .start("again.toml", text, Some("kept-1"))
            .expect("started");
        assert_eq!(again["keep"], "kept-1");
    }
}
