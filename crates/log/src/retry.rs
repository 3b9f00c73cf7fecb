//! Waiting out a log that is briefly unavailable: a NATS server restarting, a JetStream
//! cluster electing a leader, a disk that filled. Every command and service that meets a
//! [`Transient`](crate::ErrorKind::Transient) error waits with the same bounded backoff and
//! says what it waits for, instead of failing at once or retrying in a tight loop.

use crate::error::{ErrorKind, LogError};
use std::future::Future;
use std::time::Duration;

/// The first wait after a failure.
const FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two tries: an outage of any length is noticed to be over within
/// this long of its end.
const LONGEST: Duration = Duration::from_secs(5);

/// Waits that double from 250 ms up to 5 s, then stay there.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    longest: Duration,
    next: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::between(FIRST, LONGEST)
    }
}

impl Backoff {
    /// Waits that double from `first` up to `longest`.
    pub fn between(first: Duration, longest: Duration) -> Self {
        Backoff {
            first,
            longest,
            next: first,
            failures: 0,
        }
    }

    /// The wait before the next try; each call doubles the one after, up to the bound.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.longest);
        self.failures += 1;
        wait
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.next = self.first;
        self.failures = 0;
    }
}

/// Waiting out transient failures for at most a given patience, counted from the first
/// failure since the last success.
#[derive(Clone, Debug)]
pub struct Patience {
    backoff: Backoff,
    waited: Duration,
    limit: Duration,
}

impl Patience {
    pub fn new(limit: Duration) -> Self {
        Patience {
            backoff: Backoff::default(),
            waited: Duration::ZERO,
            limit,
        }
    }

    /// A failure: how long to wait before trying again, or the error back when it is not
    /// transient or the patience has run out. Logs what `what` waits for at `warn`.
    pub fn failed(&mut self, what: &str, error: LogError) -> Result<Duration, LogError> {
        if error.kind() != ErrorKind::Transient || self.waited >= self.limit {
            return Err(error);
        }
        let wait = self.backoff.next_wait().min(self.limit - self.waited);
        tracing::warn!(
            what,
            %error,
            retry_in_ms = wait.as_millis() as u64,
            waited_s = self.waited.as_secs(),
            patience_s = self.limit.as_secs(),
            "the log is unavailable; waiting for it"
        );
        self.waited += wait;
        Ok(wait)
    }

    /// A success: the next failure starts the patience again.
    pub fn succeeded(&mut self, what: &str) {
        if self.backoff.failures() > 0 {
            tracing::info!(
                what,
                failures = self.backoff.failures(),
                "the log answers again"
            );
            self.backoff.reset();
            self.waited = Duration::ZERO;
        }
    }
}

/// Runs `attempt` until it succeeds, fails with an error that is not transient, or `patience`
/// has passed since the first failure (then the last error is returned). Each failure is
/// logged at `warn` with `what` the caller was doing and how long it waits.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    patience: Duration,
    mut attempt: F,
) -> Result<T, LogError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LogError>>,
{
    let mut patience = Patience::new(patience);
    loop {
        match attempt().await {
            Ok(value) => {
                patience.succeeded(what);
                return Ok(value);
            }
            Err(error) => tokio::time::sleep(patience.failed(what, error)?).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_bound_and_reset() {
        let mut backoff = Backoff::default();
        let waits: Vec<_> = (0..7).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff.failures(), 7);
        backoff.reset();
        assert_eq!(backoff.next_wait(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_patience_runs_out() {
        let mut calls = 0;
        let result: Result<(), _> = retry_transient("testing", Duration::from_secs(2), || {
            calls += 1;
            async { Err(LogError::Nats("request timed out".into())) }
        })
        .await;
        assert!(matches!(result, Err(LogError::Nats(_))));
        // 250 + 500 + 1000 ms, then the 250 ms left of the patience, then one last try.
        assert_eq!(calls, 5);

        let mut calls = 0;
        let result = retry_transient("testing", Duration::from_secs(60), || {
            calls += 1;
            let fails = calls < 3;
            async move {
                if fails {
                    Err(LogError::Nats("no responders".into()))
                } else {
                    Ok(calls)
                }
            }
        })
        .await;
        assert_eq!(result.expect("the third try succeeds"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), _> = retry_transient("testing", Duration::from_secs(60), || {
            calls += 1;
            async {
                Err(LogError::StreamConfig {
                    stream: "BATON".into(),
                    problem: "has a message limit".into(),
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
