//! Where a benchmark phase's CPU went: this process (the benchmark's clients and baton's
//! library side) against everything else on the machine (the server under test), read from
//! Linux's `/proc` before and after the phase.
//!
//! On two shared cores a contender that spends more CPU of its own leaves less to the server,
//! so the split tells a client-side cost from a server-side one. The counters are in clock
//! ticks (100 per second per core), so a phase of about a second is read to about 1%.

/// Cumulative CPU ticks at one moment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuSample {
    /// User and system time of this process, dead threads included.
    own: u64,
    /// Busy time of every core (everything but idle and I/O wait).
    busy: u64,
    /// Every core's time, idle included.
    total: u64,
}

/// One phase's CPU, per event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuShare {
    /// This process, in microseconds of CPU per event.
    pub(crate) own_us: f64,
    /// The rest of the machine, in microseconds of CPU per event.
    pub(crate) others_us: f64,
    /// The share of the machine's cores left idle, 0 to 1.
    pub(crate) idle: f64,
}

/// Clock ticks per second of `/proc` counters (`USER_HZ`, 100 on every Linux port that runs
/// this).
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuSample {
    /// Reads the counters; `None` where `/proc` is not Linux's.
    pub(crate) fn now() -> Option<CpuSample> {
        let own = own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let (busy, total) = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(CpuSample { own, busy, total })
    }

    /// The CPU spent from `self` to `later`, per event.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn until(self, later: CpuSample, events: usize) -> CpuShare {
        let per_event =
            |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1_000_000.0 / events.max(1) as f64;
        let own = later.own.saturating_sub(self.own);
        let busy = later.busy.saturating_sub(self.busy);
        let total = later.total.saturating_sub(self.total);
        CpuShare {
            own_us: per_event(own),
            others_us: per_event(busy.saturating_sub(own)),
            idle: if total == 0 {
                0.0
            } else {
                1.0 - busy as f64 / total as f64
            },
        }
    }
}

/// `utime + stime` from `/proc/self/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from its closing parenthesis.
fn own_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    // After the name: state (3), then ppid ... utime is field 14 and stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total ticks of all cores from the `cpu` line of `/proc/stat`: user, nice, system,
/// idle, iowait, irq, softirq, steal (guest time is already inside user and nice).
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = values[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

impl CpuShare {
    /// `{"own_us_per_event":..,"others_us_per_event":..,"idle":..}`, to three decimals.
    pub(crate) fn json(&self) -> serde_json::Value {
        let thousandths = |value: f64| (value * 1000.0).round() / 1000.0;
        serde_json::json!({
            "own_us_per_event": thousandths(self.own_us),
            "others_us_per_event": thousandths(self.others_us),
            "idle": thousandths(self.idle),
        })
    }
}

/// The median of each field over the rounds.
pub(crate) fn median_share(shares: &[CpuShare]) -> Option<CpuShare> {
    if shares.is_empty() {
        return None;
    }
    let pick =
        |field: fn(&CpuShare) -> f64| crate::bench::median(shares.iter().map(field).collect());
    Some(CpuShare {
        own_us: pick(|share| share.own_us),
        others_us: pick(|share| share.others_us),
        idle: pick(|share| share.idle),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_are_counted_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    731 42 0 0 20 0 9 0 123 456 789";
        assert_eq!(own_ticks(stat), Some(773));
    }

    #[test]
    fn machine_ticks_split_busy_from_idle_and_io_wait() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(machine_ticks(stat), Some((160, 1000)));
    }

    #[test]
    fn a_phase_is_split_per_event_between_this_process_and_the_rest() {
        let before = CpuSample {
            own: 1_000,
            busy: 5_000,
            total: 10_000,
        };
        // One second on two cores: 200 ticks, 150 busy, 60 of them this process's.
        let after = CpuSample {
            own: 1_060,
            busy: 5_150,
            total: 10_200,
        };
        let share = before.until(after, 100_000);
        assert!((share.own_us - 6.0).abs() < 1e-9, "{share:?}");
        assert!((share.others_us - 9.0).abs() < 1e-9, "{share:?}");
        assert!((share.idle - 0.25).abs() < 1e-9, "{share:?}");
    }

    #[test]
    fn this_machine_can_be_read_and_a_busy_loop_counts_as_our_own() {
        let before = CpuSample::now().expect("Linux /proc");
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        // Spin until our own counter shows 300 ms of CPU; on a loaded machine that takes
        // longer in wall time, so only a counter that does not grow runs into the limit.
        let share = loop {
            for _ in 0..1_000_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            let share = before.until(CpuSample::now().expect("Linux /proc"), 1);
            if share.own_us >= 300_000.0 || started.elapsed() > std::time::Duration::from_secs(60) {
                break share;
            }
        };
        assert!(
            share.own_us >= 300_000.0,
            "{share:?} after {:?}",
            started.elapsed()
        );
        assert!((0.0..=1.0).contains(&share.idle), "{share:?}");
    }
}
