//! Counters, the latency histogram, and the final report (text or JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Lowest and highest trackable latency in microseconds (1 µs .. 60 s).
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;
const SIGFIG: u8 = 3;

/// Counters of one shard (or of the whole run, after merging).
pub struct Stats {
    /// Latency in microseconds of every recorded response, any status.
    pub hist: Histogram<u64>,
    /// Recorded responses (any status).
    pub requests: u64,
    /// Responses by status; a handful of distinct codes, so a small vector.
    pub status: Vec<(u16, u64)>,
    /// Responses whose status was not the expected one.
    pub unexpected: u64,
    /// Connect, TLS, send or receive failures, and connections that died
    /// while idle (each one is followed by a reconnect).
    pub transport_errors: u64,
    /// Requests that got no answer before the end of the run's grace period.
    pub timeouts: u64,
    /// New connections opened after the first one of each connection slot
    /// (not counted with `--new-connection`, where every request opens one).
    pub reconnects: u64,
    /// Connections opened (TCP and, for https, a TLS handshake).
    pub connects: u64,
    /// Of those, the ones whose TLS handshake resumed a session.
    pub resumed: u64,
    /// Fixed rate: requests that started more than 1 ms after their slot.
    pub behind: u64,
    /// Responses that came over HTTP/2 (`--http2`).
    pub http2: u64,
    /// With `--window`: one histogram per window of the recorded period,
    /// by the time each request was due (created as they are reached).
    pub windows: Vec<Option<Histogram<u32>>>,
}

/// Windows keep 2 significant digits (1 µs steps up to 256 µs, 1 % above)
/// and 32-bit counts: about 10 KiB each instead of the run histogram's
/// 136 KiB, so a thousand windows stay small.
const WINDOW_SIGFIG: u8 = 2;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("valid histogram bounds")
}

fn new_window() -> Histogram<u32> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, WINDOW_SIGFIG)
        .expect("valid histogram bounds")
}

fn add<T: hdrhistogram::Counter>(into: &mut Histogram<T>, from: &Histogram<T>) {
    into.add(from).expect("histograms have the same bounds");
}

fn quantile<T: hdrhistogram::Counter>(h: &Histogram<T>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn max<T: hdrhistogram::Counter>(h: &Histogram<T>) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.max()
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: new_histogram(),
            requests: 0,
            status: Vec::new(),
            unexpected: 0,
            transport_errors: 0,
            timeouts: 0,
            reconnects: 0,
            connects: 0,
            resumed: 0,
            behind: 0,
            http2: 0,
            windows: Vec::new(),
        }
    }
}

impl Stats {
    /// One response: its status and latency.
    pub fn record(&mut self, status: u16, latency: Duration, expected: bool) {
        self.requests += 1;
        if !expected {
            self.unexpected += 1;
        }
        match self.status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.status.push((status, 1)),
        }
        self.hist.saturating_record(micros(latency));
    }

    /// The same latency again, in the histogram of window `index`.
    pub fn record_window(&mut self, index: usize, latency: Duration) {
        if self.windows.len() <= index {
            self.windows.resize_with(index + 1, || None);
        }
        self.windows[index]
            .get_or_insert_with(new_window)
            .saturating_record(micros(latency));
    }

    pub fn errors(&self) -> u64 {
        self.unexpected + self.transport_errors + self.timeouts
    }

    pub fn merge(&mut self, other: &Stats) {
        add(&mut self.hist, &other.hist);
        if self.windows.len() < other.windows.len() {
            self.windows.resize_with(other.windows.len(), || None);
        }
        for (mine, theirs) in self.windows.iter_mut().zip(&other.windows) {
            if let Some(theirs) = theirs {
                add(mine.get_or_insert_with(new_window), theirs);
            }
        }
        self.requests += other.requests;
        for &(s, n) in &other.status {
            match self.status.iter_mut().find(|(t, _)| *t == s) {
                Some((_, m)) => *m += n,
                None => self.status.push((s, n)),
            }
        }
        self.unexpected += other.unexpected;
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        self.reconnects += other.reconnects;
        self.connects += other.connects;
        self.resumed += other.resumed;
        self.behind += other.behind;
        self.http2 += other.http2;
    }

    fn status_map(&self) -> BTreeMap<String, u64> {
        self.status
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect()
    }

    fn quantile(&self, q: f64) -> u64 {
        quantile(&self.hist, q)
    }

    /// One summary per window, empty windows included (as zeros).
    fn window_summaries(&self) -> Vec<WindowSummary> {
        self.windows
            .iter()
            .map(|h| match h {
                Some(h) => WindowSummary {
                    requests: h.len(),
                    p50_us: quantile(h, 0.5),
                    p99_us: quantile(h, 0.99),
                    max_us: max(h),
                },
                None => WindowSummary::default(),
            })
            .collect()
    }
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(LOWEST_US)
}

/// Latency within one window of a run (`--window`).
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowSummary {
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The median of the windows' p99s, over windows that recorded at least
/// `min_requests` (a short last window would weigh as much as a full one).
pub fn median_window_p99(windows: &[WindowSummary], min_requests: u64) -> Option<u64> {
    let mut p99s: Vec<u64> = windows
        .iter()
        .filter(|w| w.requests > 0 && w.requests >= min_requests)
        .map(|w| w.p99_us)
        .collect();
    if p99s.is_empty() {
        return None;
    }
    p99s.sort_unstable();
    let n = p99s.len();
    Some(if n % 2 == 1 {
        p99s[n / 2]
    } else {
        (p99s[n / 2 - 1] + p99s[n / 2]).div_ceil(2)
    })
}

/// Result of a closed-loop or fixed-rate run. The field order is the JSON
/// key order.
#[derive(Serialize, Debug)]
pub struct Summary {
    pub mode: &'static str,
    pub connections: usize,
    /// Target rate in req/s; `null` for a closed loop.
    pub rate: Option<f64>,
    /// Recorded period (the warmup excluded).
    pub duration_s: f64,
    pub requests: u64,
    /// Achieved: recorded requests / `elapsed_s`.
    pub rps: f64,
    pub errors: u64,
    pub status: BTreeMap<String, u64>,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Fixed rate: requests started more than 1 ms late; 0 for a closed loop.
    pub behind_schedule: u64,
    pub transport_errors: u64,
    pub unexpected_status: u64,
    pub timeouts: u64,
    pub reconnects: u64,
    /// Connections opened while recording.
    pub connections_opened: u64,
    /// Of those, the ones that resumed a TLS session.
    pub connections_resumed: u64,
    /// Recorded responses that came over HTTP/2.
    pub http2_responses: u64,
    /// Period `rps` is computed over: `duration_s`, or for a fixed rate run
    /// that finished its backlog late, up to its last response.
    pub elapsed_s: f64,
    pub warmup_s: f64,
    pub expect_status: u16,
    /// With `--window`: its length, the latency of each window in order,
    /// and the median of their p99s (windows with less than half the
    /// requests of the fullest one left out). Absent without `--window`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_window_median_us: Option<u64>,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: &'static str,
        connections: usize,
        rate: Option<f64>,
        duration: Duration,
        period: Duration,
        warmup: Duration,
        expect_status: u16,
        window: Option<Duration>,
        stats: &Stats,
    ) -> Self {
        let secs = period.as_secs_f64();
        let windows = if window.is_some() {
            stats.window_summaries()
        } else {
            Vec::new()
        };
        let fullest = windows.iter().map(|w| w.requests).max().unwrap_or(0);
        Summary {
            mode,
            connections,
            rate,
            duration_s: duration.as_secs_f64(),
            requests: stats.requests,
            rps: if secs > 0.0 {
                stats.requests as f64 / secs
            } else {
                0.0
            },
            errors: stats.errors(),
            status: stats.status_map(),
            p50_us: stats.quantile(0.5),
            p90_us: stats.quantile(0.9),
            p99_us: stats.quantile(0.99),
            p999_us: stats.quantile(0.999),
            max_us: max(&stats.hist),
            behind_schedule: stats.behind,
            transport_errors: stats.transport_errors,
            unexpected_status: stats.unexpected,
            timeouts: stats.timeouts,
            reconnects: stats.reconnects,
            connections_opened: stats.connects,
            connections_resumed: stats.resumed,
            http2_responses: stats.http2,
            elapsed_s: secs,
            warmup_s: warmup.as_secs_f64(),
            expect_status,
            window_s: window.map(|w| w.as_secs_f64()),
            p99_window_median_us: median_window_p99(&windows, fullest.div_ceil(2)),
            windows,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary serialises")
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let shape = match self.rate {
            Some(r) => format!("fixed rate {r} req/s"),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            s,
            "mode {}, {} connections, {shape}, {:.2} s recorded after {:.2} s warmup",
            self.mode, self.connections, self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            s,
            "  requests   {:>10}   {:.1} req/s over {:.2} s",
            self.requests, self.rps, self.elapsed_s
        );
        let _ = writeln!(
            s,
            "  errors     {:>10}   (unexpected status {}, transport {}, timeouts {}; expected {}); reconnects {}",
            self.errors,
            self.unexpected_status,
            self.transport_errors,
            self.timeouts,
            self.expect_status,
            self.reconnects
        );
        if self.connections_opened > self.connections as u64 {
            let _ = writeln!(
                s,
                "  connects   {:>10}   connections opened ({} resumed a TLS session)",
                self.connections_opened, self.connections_resumed
            );
        }
        if self.http2_responses > 0 {
            let _ = writeln!(s, "  HTTP/2     {:>10}   responses", self.http2_responses);
        }
        let status: Vec<String> = self
            .status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(s, "  status     {}", status.join(", "));
        let _ = writeln!(
            s,
            "  latency µs p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        );
        if self.rate.is_some() {
            let _ = writeln!(
                s,
                "  behind schedule (> 1 ms late to start): {}",
                self.behind_schedule
            );
        }
        if let (Some(w), Some(median)) = (self.window_s, self.p99_window_median_us) {
            let p99s: Vec<String> = self.windows.iter().map(|w| w.p99_us.to_string()).collect();
            let _ = writeln!(
                s,
                "  p99 µs per {w} s window: {}; median {median}",
                p99s.join(" ")
            );
        }
        s
    }
}

/// Result of an idle run.
#[derive(Serialize, Debug)]
pub struct IdleSummary {
    pub mode: &'static str,
    pub idle: bool,
    pub connections: usize,
    /// Connections whose TLS and HTTP handshakes succeeded.
    pub established: usize,
    /// Of those, still open after the hold.
    pub held: usize,
    pub hold_s: f64,
    /// Requests answered (one per established connection at most).
    pub requests: u64,
    pub errors: u64,
    pub status: BTreeMap<String, u64>,
    /// Connect + TLS + first request, per connection.
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Time to establish all connections.
    pub setup_s: f64,
}

impl IdleSummary {
    pub fn new(
        mode: &'static str,
        connections: usize,
        established: usize,
        held: usize,
        hold: Duration,
        setup: Duration,
        stats: &Stats,
    ) -> Self {
        IdleSummary {
            mode,
            idle: true,
            connections,
            established,
            held,
            hold_s: hold.as_secs_f64(),
            requests: stats.requests,
            errors: stats.errors(),
            status: stats.status_map(),
            p50_us: stats.quantile(0.5),
            p90_us: stats.quantile(0.9),
            p99_us: stats.quantile(0.99),
            p999_us: stats.quantile(0.999),
            max_us: max(&stats.hist),
            setup_s: setup.as_secs_f64(),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary serialises")
    }

    pub fn text(&self) -> String {
        let status: Vec<String> = self
            .status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "idle mode {}: {} connections requested, {} established in {:.2} s, {} still open after {:.1} s hold\n  \
             first requests {} (errors {}), status {}\n  \
             connect+TLS+first request µs p50 {}  p90 {}  p99 {}  max {}\n",
            self.mode,
            self.connections,
            self.established,
            self.setup_s,
            self.held,
            self.hold_s,
            self.requests,
            self.errors,
            status.join(", "),
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.max_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        let mut a = Stats::default();
        for us in 1..=1000u64 {
            a.record(200, Duration::from_micros(us), true);
        }
        let mut b = Stats::default();
        b.record(401, Duration::from_millis(5), false);
        b.transport_errors = 2;
        b.behind = 3;
        a.merge(&b);
        a
    }

    #[test]
    fn json_shape() {
        let s = Summary::new(
            "oauth1",
            32,
            Some(2000.0),
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(2),
            200,
            None,
            &sample(),
        );
        let v: serde_json::Value = serde_json::from_str(&s.json()).unwrap();
        let obj = v.as_object().unwrap();
        for key in [
            "mode",
            "connections",
            "rate",
            "duration_s",
            "requests",
            "rps",
            "errors",
            "status",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "behind_schedule",
        ] {
            assert!(obj.contains_key(key), "missing {key}");
        }
        assert_eq!(v["mode"], "oauth1");
        assert_eq!(v["connections"], 32);
        assert_eq!(v["rate"], 2000.0);
        assert_eq!(v["duration_s"], 5.0);
        assert_eq!(v["requests"], 1001);
        assert_eq!(v["rps"], 200.2);
        assert_eq!(v["errors"], 3); // one 401 + two transport errors
        assert_eq!(v["status"], serde_json::json!({"200": 1000, "401": 1}));
        assert_eq!(v["behind_schedule"], 3);
        let p50 = v["p50_us"].as_u64().unwrap();
        assert!((499..=501).contains(&p50), "p50 {p50}");
        let max = v["max_us"].as_u64().unwrap();
        assert!((4995..=5005).contains(&max), "max {max}");

        let closed = Summary::new(
            "api_key",
            1,
            None,
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::ZERO,
            200,
            None,
            &Stats::default(),
        );
        let v: serde_json::Value = serde_json::from_str(&closed.json()).unwrap();
        assert!(v["rate"].is_null());
        assert_eq!(v["duration_s"], 1.0);
        assert_eq!(v["elapsed_s"], 2.0);
        assert_eq!(v["p99_us"], 0);
        assert_eq!(v["status"], serde_json::json!({}));
        assert!(!obj.contains_key("windows"));
        assert!(!obj.contains_key("p99_window_median_us"));
    }

    #[test]
    fn windows_report_their_own_tail_and_the_median_skips_a_stalled_one() {
        // Five windows of 1,000 requests at 100-199 µs; window 3 stalled
        // (its last 50 requests at 5 ms); window 5 nearly empty.
        let mut a = Stats::default();
        let mut b = Stats::default();
        for w in 0..5usize {
            for i in 0..1000u64 {
                let us = if w == 3 && i >= 950 {
                    5000
                } else {
                    100 + i % 100
                };
                let s = if i % 2 == 0 { &mut a } else { &mut b };
                s.record(200, Duration::from_micros(us), true);
                s.record_window(w, Duration::from_micros(us));
            }
        }
        b.record(200, Duration::from_millis(9), true);
        b.record_window(6, Duration::from_millis(9));
        a.merge(&b);
        let s = Summary::new(
            "api_key",
            32,
            Some(1000.0),
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::ZERO,
            200,
            Some(Duration::from_secs(1)),
            &a,
        );
        let v: serde_json::Value = serde_json::from_str(&s.json()).unwrap();
        assert_eq!(v["window_s"], 1.0);
        let windows = v["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 7);
        assert_eq!(windows[0]["requests"], 1000);
        assert_eq!(windows[0]["p99_us"], 198); // 100-199 ten times each
        let stalled = windows[3]["p99_us"].as_u64().unwrap();
        assert!((4950..=5050).contains(&stalled), "{stalled}"); // 5,000 µs within 1 %
        assert_eq!(
            windows[5],
            serde_json::json!({"requests": 0, "p50_us": 0, "p99_us": 0, "max_us": 0})
        );
        assert_eq!(windows[6]["requests"], 1);
        // The whole run's p99 sees the stall; the median of the windows
        // (the empty and the one-request windows left out) does not.
        assert!(v["p99_us"].as_u64().unwrap() >= 4990);
        assert_eq!(v["p99_window_median_us"], 198);
        assert!(s.text().contains("p99 µs per 1 s window: 198 198 198 "));
    }

    #[test]
    fn median_of_window_p99s() {
        let w = |requests, p99_us| WindowSummary {
            requests,
            p50_us: 1,
            p99_us,
            max_us: p99_us,
        };
        assert_eq!(median_window_p99(&[], 0), None);
        assert_eq!(median_window_p99(&[w(0, 0)], 0), None);
        assert_eq!(
            median_window_p99(&[w(10, 300), w(10, 100), w(10, 200)], 5),
            Some(200)
        );
        assert_eq!(median_window_p99(&[w(10, 300), w(10, 100)], 5), Some(200));
        assert_eq!(median_window_p99(&[w(10, 301), w(10, 100)], 5), Some(201));
        assert_eq!(
            median_window_p99(&[w(10, 300), w(4, 100), w(10, 200)], 5),
            Some(250)
        );
    }

    #[test]
    fn idle_json_shape() {
        let s = IdleSummary::new(
            "api_key",
            2000,
            1999,
            1998,
            Duration::from_secs(5),
            Duration::from_secs(1),
            &sample(),
        );
        let v: serde_json::Value = serde_json::from_str(&s.json()).unwrap();
        assert_eq!(v["idle"], true);
        assert_eq!(v["established"], 1999);
        assert_eq!(v["held"], 1998);
        assert_eq!(v["hold_s"], 5.0);
    }

    #[test]
    fn latency_clamped_to_histogram_range() {
        let mut s = Stats::default();
        s.record(200, Duration::ZERO, true);
        s.record(200, Duration::from_secs(3600), true);
        assert_eq!(s.requests, 2);
        assert_eq!(s.hist.min(), 1);
        assert!(s.hist.max() >= 59_000_000);
    }
}
