//! The watchdog: samples the sensor's RSS and CPU time from `/proc` and says when it stayed
//! over its limits for a whole window. Limits are percentages of the host (memory:
//! `MemTotal`; CPU: all cores), by default 85%, so the sensor leaves at least 15% free.

use std::time::{Duration, Instant};

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most memory (percent of `MemTotal`) the sensor may use.
    pub max_memory_percent: f64,
    /// Most CPU (percent of all cores) the sensor may use.
    pub max_cpu_percent: f64,
    /// How long it may stay over before it is restarted.
    pub window: Duration,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// The state of one watched process.
#[derive(Debug)]
pub struct Watchdog {
    limits: Limits,
    over_since: Option<Instant>,
    last_cpu: Option<(Instant, u64)>,
}

fn mem_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The start time of `pid` (clock ticks since boot) and whether it is a zombie.
pub fn start_time(pid: u32) -> Option<(u64, bool)> {
    let f = stat_fields(pid)?;
    Some((f.get(19)?.parse().ok()?, f.first().is_some_and(|s| s == "Z")))
}

/// Bytes in a readable unit.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{} KiB", bytes >> 10) }
}

impl Watchdog {
    /// A watchdog with `limits`.
    pub fn new(limits: Limits) -> Watchdog {
        Watchdog { limits, over_since: None, last_cpu: None }
    }

    /// Forgets the history (a new process).
    pub fn reset(&mut self) {
        self.over_since = None;
        self.last_cpu = None;
    }

    /// Samples `pid`; `Some(reason)` when it has been over a limit for the whole window.
    pub fn sample(&mut self, pid: u32) -> Option<String> {
        let now = Instant::now();
        let mut over = None;
        if let (Some(rss), Some(total)) = (rss(pid), mem_total()) {
            let limit = (total as f64 * self.limits.max_memory_percent / 100.0) as u64;
            if rss > limit {
                over = Some(format!("rss {} over the limit {}", human(rss), human(limit)));
            }
        }
        if let Some(ticks) = cpu_ticks(pid) {
            if let Some((at, before)) = self.last_cpu {
                let wall = now.duration_since(at).as_secs_f64();
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                if wall > 0.0 {
                    let percent = ticks.saturating_sub(before) as f64 / USER_HZ / wall / cores * 100.0;
                    if over.is_none() && percent > self.limits.max_cpu_percent {
                        over = Some(format!(
                            "cpu {percent:.0}% of the host over the limit {:.0}%",
                            self.limits.max_cpu_percent
                        ));
                    }
                }
            }
            self.last_cpu = Some((now, ticks));
        }
        let Some(what) = over else {
            self.over_since = None;
            return None;
        };
        let since = *self.over_since.get_or_insert(now);
        let held = now.duration_since(since);
        (held >= self.limits.window).then(|| format!("{what} for {} s", held.as_secs()))
    }
}
