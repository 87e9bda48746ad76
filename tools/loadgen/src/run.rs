//! The three ways to run: closed loop, fixed rate (open loop with
//! coordinated-omission correction) and idle connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONNECTION, HOST};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use crate::auth::{AuthGen, AuthShared};
use crate::cli::Config;
use crate::conn::{Body, Conn, Connector, Sender};
use crate::report::{IdleSummary, Stats, Summary};

/// How long requests still in flight at the end of the run may take.
const GRACE: Duration = Duration::from_secs(10);
/// A fixed-rate request that starts later than this after its slot is
/// "behind schedule".
const BEHIND: Duration = Duration::from_millis(1);
/// Pause after a failed connect, so a dead server is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Idle mode: handshakes in progress at once, and the time each may take.
const IDLE_CONNECT_CONCURRENCY: usize = 64;
const IDLE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of the first unexpected response body that are printed.
const BODY_SNIPPET: usize = 2048;

/// Fixed-rate schedule: slot `i` is due at `start + i / rate`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub start: Instant,
    pub rate: f64,
}

impl Schedule {
    /// Offset of slot `i` from the start, in nanoseconds.
    pub fn offset_nanos(slot: u64, rate: f64) -> u64 {
        (slot as f64 * 1e9 / rate).round() as u64
    }

    /// Intended start of slot `i`.
    pub fn intended(&self, slot: u64) -> Instant {
        self.start + Duration::from_nanos(Self::offset_nanos(slot, self.rate))
    }

    /// The first slot whose offset is at least `offset`; equivalently, the
    /// number of slots due strictly before `offset`.
    pub fn slots_before(offset: Duration, rate: f64) -> u64 {
        let target = u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX);
        let mut slot = (target as f64 * rate / 1e9).ceil() as u64;
        // Exact against `offset_nanos`, whatever the float rounding.
        while slot > 0 && Self::offset_nanos(slot - 1, rate) >= target {
            slot -= 1;
        }
        while Self::offset_nanos(slot, rate) < target {
            slot += 1;
        }
        slot
    }
}

/// The pacer: a plain thread that releases one semaphore permit per slot at
/// the slot's time. tokio's timer has a 1 ms granularity and usually wakes
/// 1-2 ms late, which would be most of a gateway's latency; a thread
/// sleeping with `nanosleep` wakes within tens of microseconds. Slots that
/// are already due are released in one batch. After the last slot it
/// releases `poison` more permits, whose slot numbers are past the end, so
/// that every worker stops once the slots released before them are taken.
fn pace(schedule: Schedule, total: u64, permits: Arc<Semaphore>, poison: usize) {
    let start = schedule.start.into_std();
    let mut released = 0u64;
    while released < total {
        let due = start + Duration::from_nanos(Schedule::offset_nanos(released, schedule.rate));
        let now = std::time::Instant::now();
        if now < due {
            std::thread::sleep(due - now);
            continue;
        }
        let elapsed = now - start + Duration::from_nanos(1);
        let upto = Schedule::slots_before(elapsed, schedule.rate).min(total);
        permits.add_permits(usize::try_from(upto - released).unwrap_or(usize::MAX >> 4));
        released = upto;
    }
    permits.add_permits(poison);
}

/// Latency with the coordinated-omission correction: from when the request
/// should have started to when its response was complete.
pub fn corrected_latency(intended: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended)
}

/// A request started more than [`BEHIND`] after its slot.
pub fn is_behind(intended: Instant, started: Instant) -> bool {
    started.saturating_duration_since(intended) > BEHIND
}

/// The request template and the state all connections share.
pub struct Run {
    connector: Connector,
    auth: Arc<AuthShared>,
    method: Method,
    uri: Uri,
    /// The target in absolute form, for HTTP/2 (`:scheme` and
    /// `:authority` come from it; HTTP/2 has no `Host` header).
    absolute: Uri,
    host: HeaderValue,
    expect: u16,
    /// `--new-connection`: one connection per request.
    new_connection: bool,
    mode: &'static str,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    rate: Option<f64>,
    window: Option<Duration>,
    record_from: Instant,
    end: Instant,
    schedule: Option<Schedule>,
    /// Fixed rate: slots released by the pacer, not yet taken.
    pacer: Arc<Semaphore>,
    next_slot: AtomicU64,
    /// Slots due before the end of the run.
    total_slots: u64,
    /// Fixed rate: latest completion of a recorded request, in nanoseconds
    /// after the warmup (the achieved rate is measured up to it).
    last_done: AtomicU64,
    /// Counters, sharded so threads of a multi-thread runtime rarely meet.
    shards: Vec<Mutex<Stats>>,
    printed_unexpected: AtomicBool,
    printed_error: AtomicBool,
}

/// Why a request got no response.
enum Failure {
    Transport(String),
    Timeout,
}

impl Run {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let connector = Connector::new(cfg)?;
        let auth = AuthShared::new(
            &cfg.credential,
            cfg.method.as_str(),
            &cfg.scheme,
            &cfg.host_header,
            &cfg.path_and_query,
        )?;
        let uri: Uri = cfg
            .path_and_query
            .parse()
            .map_err(|e| format!("request target {:?}: {e}", cfg.path_and_query))?;
        let absolute: Uri = format!("{}://{}{}", cfg.scheme, cfg.host_header, cfg.path_and_query)
            .parse()
            .map_err(|e| format!("request target for HTTP/2: {e}"))?;
        let host = HeaderValue::from_str(&cfg.host_header)
            .map_err(|_| format!("Host {:?} is not a valid header value", cfg.host_header))?;
        let shard_count = if cfg.threads == 1 {
            1
        } else {
            (cfg.threads * 4).min(cfg.connections.max(1))
        };
        let start = Instant::now();
        let record_from = start + cfg.warmup;
        Ok(Run {
            connector,
            auth: Arc::new(auth),
            method: cfg.method.clone(),
            uri,
            absolute,
            host,
            expect: cfg.expect_status,
            new_connection: cfg.new_connection,
            mode: cfg.mode.as_str(),
            connections: cfg.connections,
            duration: cfg.duration,
            warmup: cfg.warmup,
            rate: cfg.rate,
            window: cfg.window,
            record_from,
            end: record_from + cfg.duration,
            schedule: cfg.rate.map(|rate| Schedule { start, rate }),
            pacer: Arc::new(Semaphore::new(0)),
            next_slot: AtomicU64::new(0),
            total_slots: cfg.rate.map_or(0, |rate| {
                Schedule::slots_before(cfg.warmup + cfg.duration, rate)
            }),
            last_done: AtomicU64::new(0),
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
            printed_unexpected: AtomicBool::new(false),
            printed_error: AtomicBool::new(false),
        })
    }

    /// Closed loop or fixed rate, over `connections` connections.
    pub async fn load(self: Arc<Self>) -> Summary {
        if let Some(schedule) = self.schedule {
            let (total, permits, poison) = (self.total_slots, self.pacer.clone(), self.connections);
            let spawned = std::thread::Builder::new()
                .name("pacer".into())
                .spawn(move || pace(schedule, total, permits, poison));
            if let Err(e) = spawned {
                eprintln!("error: cannot start the pacer thread: {e}");
                self.pacer.close();
            }
        }
        let workers: Vec<_> = (0..self.connections)
            .map(|i| tokio::spawn(self.clone().worker(i)))
            .collect();
        for w in workers {
            let _ = w.await;
        }
        let total = self.merged();
        // A closed loop stops starting requests at the end; a fixed rate run
        // may still be working off a backlog after it, and its achieved rate
        // counts that time.
        let period = self
            .duration
            .max(Duration::from_nanos(self.last_done.load(Ordering::Relaxed)));
        Summary::new(
            self.mode,
            self.connections,
            self.rate,
            self.duration,
            period,
            self.warmup,
            self.expect,
            self.window,
            &total,
        )
    }

    fn merged(&self) -> Stats {
        let mut total = Stats::default();
        for shard in &self.shards {
            total.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }

    fn with_stats(&self, index: usize, f: impl FnOnce(&mut Stats)) {
        let shard = &self.shards[index % self.shards.len()];
        f(&mut shard.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// One connection slot: requests back to back (closed loop) or at the
    /// scheduled times (fixed rate), reconnecting when the connection dies.
    async fn worker(self: Arc<Self>, index: usize) {
        let mut auth = AuthGen::new(self.auth.clone(), index);
        let mut conn: Option<Conn> = None;
        let mut opened = false;
        let deadline = self.end + GRACE;
        loop {
            let (intended, recorded) = match &self.schedule {
                None => {
                    let now = Instant::now();
                    if now >= self.end {
                        break;
                    }
                    (now, now >= self.record_from)
                }
                Some(schedule) => {
                    match self.pacer.acquire().await {
                        Ok(permit) => permit.forget(),
                        Err(_) => break,
                    }
                    let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
                    if slot >= self.total_slots {
                        break;
                    }
                    let due = schedule.intended(slot);
                    let recorded = due >= self.record_from;
                    if Instant::now() >= deadline {
                        // Backlog left after the grace period: not sent.
                        if recorded {
                            self.with_stats(index, |s| s.timeouts += 1);
                        }
                        continue;
                    }
                    (due, recorded)
                }
            };

            if conn.as_ref().is_some_and(Conn::is_closed) {
                // Died between requests without announcing it.
                conn = None;
                self.note_error("connection closed by the server between requests");
                if recorded {
                    self.with_stats(index, |s| s.transport_errors += 1);
                }
            }
            if conn.is_none() {
                match timeout_at(deadline, self.connector.connect()).await {
                    Ok(Ok(c)) => {
                        if recorded {
                            let resumed = c.resumed;
                            self.with_stats(index, |s| {
                                s.connects += 1;
                                s.resumed += u64::from(resumed);
                                if opened && !self.new_connection {
                                    s.reconnects += 1;
                                }
                            });
                        }
                        opened = true;
                        conn = Some(c);
                    }
                    Ok(Err(e)) => {
                        self.note_error(&e.to_string());
                        if recorded {
                            self.with_stats(index, |s| s.transport_errors += 1);
                        }
                        sleep(CONNECT_BACKOFF).await;
                        continue;
                    }
                    Err(_) => {
                        if recorded {
                            self.with_stats(index, |s| s.timeouts += 1);
                        }
                        continue;
                    }
                }
            }
            let Some(live) = conn.as_mut() else {
                continue;
            };

            let started = Instant::now();
            let result = self.exchange(&mut live.sender, &mut auth, deadline).await;
            let done = Instant::now();
            match result {
                Ok((status, close, http2)) => {
                    if recorded {
                        self.with_stats(index, |s| {
                            s.http2 += u64::from(http2);
                            let latency = corrected_latency(intended, done);
                            s.record(status, latency, status == self.expect);
                            if let Some(index) = self.window_of(intended) {
                                s.record_window(index, latency);
                            }
                            if self.schedule.is_some() && is_behind(intended, started) {
                                s.behind += 1;
                            }
                        });
                        if self.schedule.is_some() {
                            let after = done.saturating_duration_since(self.record_from);
                            let nanos = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
                            self.last_done.fetch_max(nanos, Ordering::Relaxed);
                        }
                    }
                    if close || self.new_connection {
                        // Announced with `Connection: close` (or asked
                        // for): reconnect, no error.
                        conn = None;
                    }
                }
                Err(Failure::Transport(e)) => {
                    conn = None;
                    self.note_error(&e);
                    if recorded {
                        self.with_stats(index, |s| s.transport_errors += 1);
                    }
                }
                Err(Failure::Timeout) => {
                    conn = None;
                    if recorded {
                        self.with_stats(index, |s| s.timeouts += 1);
                    }
                }
            }
        }
    }

    fn request(&self, auth: &mut AuthGen, http2: bool) -> Request<Body> {
        let mut headers = HeaderMap::with_capacity(3);
        if !http2 {
            headers.insert(HOST, self.host.clone());
            if self.new_connection {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        if let Some((name, value)) = auth.next_header() {
            headers.insert(name, value);
        }
        let mut req = Request::new(Body::new());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = if http2 {
            self.absolute.clone()
        } else {
            self.uri.clone()
        };
        *req.headers_mut() = headers;
        req
    }

    /// Sends one request and reads the whole response body. Returns the
    /// status, whether the server announced it closes the connection, and
    /// whether the response came over HTTP/2.
    async fn exchange(
        &self,
        sender: &mut Sender,
        auth: &mut AuthGen,
        deadline: Instant,
    ) -> Result<(u16, bool, bool), Failure> {
        let fut = async {
            sender.ready().await?;
            let req = self.request(auth, sender.is_http2());
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let http2 = resp.version() == hyper::Version::HTTP_2;
            let close = resp
                .headers()
                .get(CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let keep = status != self.expect && !self.printed_unexpected.load(Ordering::Relaxed);
            let mut snippet = Vec::new();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                if keep {
                    if let Some(data) = frame.data_ref() {
                        let room = BODY_SNIPPET.saturating_sub(snippet.len());
                        snippet.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
            }
            if keep && !self.printed_unexpected.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "first unexpected response (expected {}): {status} {}",
                    self.expect,
                    String::from_utf8_lossy(&snippet).trim_end()
                );
            }
            Ok::<_, hyper::Error>((status, close, http2))
        };
        match timeout_at(deadline, fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Failure::Transport(format!("request: {e}"))),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// The window a recorded request belongs to, by when it was due.
    fn window_of(&self, intended: Instant) -> Option<usize> {
        let window = self.window?;
        let after = intended.saturating_duration_since(self.record_from);
        usize::try_from(after.as_nanos() / window.as_nanos()).ok()
    }

    fn note_error(&self, what: &str) {
        if !self.printed_error.swap(true, Ordering::Relaxed) {
            eprintln!("first transport error: {what}");
            if what.contains("Too many open files") {
                eprintln!("hint: raise the open-file limit (ulimit -n)");
            }
        }
    }

    /// Idle mode: opens `n` connections (a bounded number of handshakes at
    /// a time), sends one request on each, holds them all for `hold`
    /// without traffic, then counts how many are still open and closes them.
    pub async fn idle(self: Arc<Self>, n: usize, hold: Duration) -> IdleSummary {
        let permits = Arc::new(Semaphore::new(IDLE_CONNECT_CONCURRENCY));
        let began = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let run = self.clone();
                let permits = permits.clone();
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await.ok()?;
                    run.idle_one(i).await
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(n);
        for t in tasks {
            if let Ok(Some(c)) = t.await {
                conns.push(c);
            }
        }
        let setup = began.elapsed();
        let established = conns.len();
        eprintln!(
            "{established} of {n} connections established in {:.2} s; holding them for {}",
            setup.as_secs_f64(),
            humantime::format_duration(hold)
        );
        sleep(hold).await;
        let held = conns.iter().filter(|c| !c.is_closed()).count();
        drop(conns);
        IdleSummary::new(self.mode, n, established, held, hold, setup, &self.merged())
    }

    /// One idle connection: connect, one request. `None` if it failed.
    async fn idle_one(&self, index: usize) -> Option<Conn> {
        let mut auth = AuthGen::new(self.auth.clone(), index);
        let began = Instant::now();
        let deadline = began + IDLE_CONNECT_TIMEOUT;
        let mut conn = match timeout(IDLE_CONNECT_TIMEOUT, self.connector.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.note_error(&e.to_string());
                self.with_stats(index, |s| s.transport_errors += 1);
                return None;
            }
            Err(_) => {
                self.with_stats(index, |s| s.timeouts += 1);
                return None;
            }
        };
        match self.exchange(&mut conn.sender, &mut auth, deadline).await {
            Ok((status, _, _)) => {
                let latency = began.elapsed();
                self.with_stats(index, |s| s.record(status, latency, status == self.expect));
                Some(conn)
            }
            Err(Failure::Transport(e)) => {
                self.note_error(&e);
                self.with_stats(index, |s| s.transport_errors += 1);
                None
            }
            Err(Failure::Timeout) => {
                self.with_stats(index, |s| s.timeouts += 1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_offsets() {
        assert_eq!(Schedule::offset_nanos(0, 2000.0), 0);
        assert_eq!(Schedule::offset_nanos(1, 2000.0), 500_000);
        assert_eq!(Schedule::offset_nanos(4000, 2000.0), 2_000_000_000);
        assert_eq!(Schedule::offset_nanos(3, 3.0), 1_000_000_000);
        assert_eq!(Schedule::offset_nanos(1, 3.0), 333_333_333);
        assert_eq!(Schedule::offset_nanos(7, 0.5), 14_000_000_000);
        // No drift over a long run: slot 10^9 at 10^5 req/s is at 10^4 s.
        assert_eq!(
            Schedule::offset_nanos(1_000_000_000, 100_000.0),
            10_000_000_000_000
        );
    }

    #[test]
    fn recorded_slot_counts() {
        // Warmup 2 s, 5 s recorded at 2000 req/s: exactly 10,000 slots fall
        // in [2 s, 7 s), and the schedule puts them there.
        let rate = 2000.0;
        let from = Schedule::slots_before(Duration::from_secs(2), rate);
        let to = Schedule::slots_before(Duration::from_secs(7), rate);
        assert_eq!((from, to), (4000, 14000));
        assert_eq!(to - from, 10_000);
        assert!(Schedule::offset_nanos(from - 1, rate) < 2_000_000_000);
        assert!(Schedule::offset_nanos(from, rate) >= 2_000_000_000);
        assert!(Schedule::offset_nanos(to - 1, rate) < 7_000_000_000);
        assert!(Schedule::offset_nanos(to, rate) >= 7_000_000_000);
        // A fractional rate: 1.5 req/s over 2 s is slots 0, 1, 2.
        assert_eq!(Schedule::slots_before(Duration::from_secs(2), 1.5), 3);
    }

    #[test]
    fn slots_before_is_exact() {
        assert_eq!(Schedule::slots_before(Duration::ZERO, 2000.0), 0);
        assert_eq!(Schedule::slots_before(Duration::from_nanos(1), 2000.0), 1);
        assert_eq!(Schedule::slots_before(Duration::from_secs(1), 3.0), 3);
        assert_eq!(
            Schedule::slots_before(Duration::from_nanos(333_333_334), 3.0),
            2
        );
        for rate in [0.7, 3.0, 999.9, 2000.0, 123_456.7] {
            for ms in [1u64, 17, 1000, 7001] {
                let d = Duration::from_millis(ms);
                let n = Schedule::slots_before(d, rate);
                let target = d.as_nanos() as u64;
                assert!(Schedule::offset_nanos(n, rate) >= target);
                assert!(n == 0 || Schedule::offset_nanos(n - 1, rate) < target);
            }
        }
    }

    #[test]
    fn pacer_releases_every_slot_on_time() {
        let start = Instant::now();
        let schedule = Schedule {
            start,
            rate: 1000.0,
        };
        let permits = Arc::new(Semaphore::new(0));
        let p = permits.clone();
        let t = std::thread::spawn(move || pace(schedule, 50, p, 3));
        std::thread::sleep(Duration::from_millis(20));
        let early = permits.available_permits();
        // Never more than the schedule allows by now (about 20; fewer if the
        // machine is busy, so no lower bound here).
        let due_now = Schedule::slots_before(start.elapsed() + Duration::from_nanos(1), 1000.0);
        assert!(early as u64 <= due_now, "{early} > {due_now}");
        t.join().unwrap();
        assert!(start.elapsed() >= Duration::from_millis(49));
        assert_eq!(permits.available_permits(), 53);
    }

    #[test]
    fn intended_times_and_lateness() {
        let start = Instant::now();
        let s = Schedule {
            start,
            rate: 1000.0,
        };
        assert_eq!(s.intended(0), start);
        assert_eq!(s.intended(250), start + Duration::from_millis(250));
        let due = s.intended(10);
        assert!(!is_behind(due, due));
        assert!(!is_behind(due, due + Duration::from_micros(999)));
        assert!(is_behind(due, due + Duration::from_micros(1001)));
        // Early (slept less than asked) is never behind.
        assert!(!is_behind(due, due - Duration::from_micros(10)));
        // A stall: a response done 50 ms after its slot is 50 ms of latency
        // whatever the time the request really went out.
        assert_eq!(
            corrected_latency(due, due + Duration::from_millis(50)),
            Duration::from_millis(50)
        );
        assert_eq!(
            corrected_latency(due, due - Duration::from_millis(1)),
            Duration::ZERO
        );
    }
}
