//! Log setup: `tracing` with text or JSON lines. The level comes from
//! `PORTCULLIS_LOG` (an `EnvFilter` directive), else `log.level`, else `info`.
//!
//! While the gateway serves, lines are gathered in a buffer, and a thread of
//! their own writes them to stderr together: every [`FLUSH_EVERY`], as soon
//! as 64 KiB have gathered, and at shutdown. A line therefore reaches stderr
//! at most a fifth of a second after its request, and a busy gateway writes
//! hundreds of lines per system call instead of one per request (like
//! nginx's `access_log ... buffer= flush=`; Envoy's file sink flushes every
//! 10 s). Lines still in the buffer when the process is killed with SIGKILL
//! are lost.
//!
//! No request waits for stderr. When whatever reads it (a pipe, a log
//! shipper, a terminal paused with ^S) falls behind, lines gather up to
//! [`MAX_PENDING`] and any more are dropped and counted
//! (`portcullis_log_lines_dropped_total`, and a warning once stderr takes
//! lines again); the gateway goes on serving. Shutdown waits at most
//! [`DRAIN_FOR`] for the last lines to be written.

use crate::config::{Log, LogFormat};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Lines waiting for the writer thread.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Off until [`set_buffered`]: before the runtime runs, lines go out at once.
static BUFFERED: AtomicBool = AtomicBool::new(false);
/// Set when stderr did not take the last lines within [`DRAIN_FOR`] at
/// shutdown: lines after that are dropped rather than block the exit.
static STALLED: AtomicBool = AtomicBool::new(false);
/// The writer has been woken for a full buffer and has not yet taken it.
static WOKEN: AtomicBool = AtomicBool::new(false);
/// Lines dropped since the process started: the counter `/metrics` shows.
static DROPPED: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);
/// The writer thread, once started.
static WRITER: OnceLock<std::thread::Thread> = OnceLock::new();
/// Drain requests asked for and done: [`drain`] waits until the writer has
/// written everything gathered before its request.
static DRAINS: Mutex<(u64, u64)> = Mutex::new((0, 0));
static DRAINED: Condvar = Condvar::new();

/// A buffer this full wakes the writer at once.
const FLUSH_AT: usize = 64 * 1024;
/// Lines beyond this much unwritten text are dropped (about 4,000 access
/// lines: a fifth of a second at 20,000 requests a second).
pub const MAX_PENDING: usize = 1024 * 1024;
/// The longest a line waits in the buffer (give or take a timer tick).
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How long shutdown waits for stderr to take the last lines.
pub const DRAIN_FOR: Duration = Duration::from_secs(2);

/// The count of lines dropped because stderr did not keep up, to register
/// with `/metrics` (a handle on the one counter, not a copy).
pub fn dropped_lines() -> prometheus_client::metrics::counter::Counter {
    DROPPED.clone()
}

/// The log writer: one `write` per formatted line (tracing-subscriber
/// formats a whole event, then writes it once).
#[derive(Clone, Copy, Debug, Default)]
pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if !BUFFERED.load(Ordering::Relaxed) {
            if !STALLED.load(Ordering::Relaxed) {
                std::io::stderr().write_all(line)?;
            }
            return Ok(line.len());
        }
        let mut buf = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() + line.len() > MAX_PENDING {
            drop(buf);
            DROPPED.inc();
            return Ok(line.len());
        }
        buf.extend_from_slice(line);
        let full = buf.len() >= FLUSH_AT;
        drop(buf);
        if full && !WOKEN.swap(true, Ordering::Relaxed) {
            if let Some(w) = WRITER.get() {
                w.unpark();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Gather lines from now on and start the writer thread (true), or write
/// what has gathered (waiting at most [`DRAIN_FOR`]) and write lines at once
/// from then on (false).
pub fn set_buffered(on: bool) {
    if on {
        if WRITER.get().is_none() {
            match std::thread::Builder::new()
                .name("portcullis-log".into())
                .spawn(write_batches)
            {
                Ok(h) => {
                    let _ = WRITER.set(h.thread().clone());
                }
                // Without the thread, lines keep going out one by one.
                Err(_) => return,
            }
        }
        BUFFERED.store(true, Ordering::Relaxed);
    } else if BUFFERED.load(Ordering::Relaxed) {
        let written = drain(DRAIN_FOR);
        BUFFERED.store(false, Ordering::Relaxed);
        // And what other threads gathered while the first drain ran.
        if !(written && drain(DRAIN_FOR)) {
            STALLED.store(true, Ordering::Relaxed);
        }
    }
}

/// Ask the writer to write everything gathered so far and wait at most
/// `within` for it; whether it did.
fn drain(within: Duration) -> bool {
    let Some(w) = WRITER.get() else { return true };
    let mut d = DRAINS.lock().unwrap_or_else(|e| e.into_inner());
    d.0 += 1;
    let want = d.0;
    w.unpark();
    let (d, _) = DRAINED
        .wait_timeout_while(d, within, |d| d.1 < want)
        .unwrap_or_else(|e| e.into_inner());
    d.1 >= want
}

/// The writer thread: take what has gathered, write it outside the lock,
/// sleep until the buffer fills, a drain is asked for or [`FLUSH_EVERY`]
/// passes. Two buffers take turns, so a steady load allocates nothing.
fn write_batches() {
    let mut batch = Vec::new();
    let mut stderr = std::io::stderr();
    // The dropped-lines count already reported in a warning.
    let mut reported = 0;
    loop {
        std::thread::park_timeout(FLUSH_EVERY);
        let asked = DRAINS.lock().unwrap_or_else(|e| e.into_inner()).0;
        WOKEN.store(false, Ordering::Relaxed);
        std::mem::swap(
            &mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()),
            &mut batch,
        );
        let dropped = DROPPED.get();
        let lost = dropped - reported;
        reported = dropped;
        if lost > 0 {
            // Gathered like any line, after the lines that were kept (the
            // buffer has room again now), so it goes out with the next
            // batch.
            tracing::warn!(
                dropped = lost,
                "log lines dropped: stderr was not read fast enough"
            );
        }
        if !batch.is_empty() {
            let _ = stderr.write_all(&batch);
            batch.clear();
            if batch.capacity() > 4 * FLUSH_AT {
                batch.shrink_to(FLUSH_AT);
            }
        }
        let mut d = DRAINS.lock().unwrap_or_else(|e| e.into_inner());
        if d.1 < asked {
            d.1 = asked;
            DRAINED.notify_all();
        }
    }
}

pub fn init(log: &Log) {
    let filter = std::env::var("PORTCULLIS_LOG")
        .ok()
        .or_else(|| log.level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LineWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // A second init (tests, demo) keeps the first subscriber.
    let installed = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .is_ok();
    // The access log is written directly (see `access`), in the very bytes
    // this subscriber would write, when this subscriber is the one in place.
    let level_on = tracing::enabled!(target: "portcullis::access", tracing::Level::INFO);
    let mode = match (installed, level_on, log.format) {
        (_, false, _) => ACCESS_OFF,
        (false, true, _) => ACCESS_TRACING,
        // tracing-subscriber's JSON lines carry no colours, terminal or not.
        (true, true, LogFormat::Json) => ACCESS_JSON,
        (true, true, LogFormat::Text) if std::io::stderr().is_terminal() => ACCESS_TEXT_ANSI,
        (true, true, LogFormat::Text) => ACCESS_TEXT,
    };
    ACCESS.store(mode, Ordering::Relaxed);
}

const ACCESS_TRACING: u8 = 0;
const ACCESS_OFF: u8 = 1;
const ACCESS_TEXT: u8 = 2;
const ACCESS_JSON: u8 = 3;
/// Text with tracing-subscriber's terminal colours.
const ACCESS_TEXT_ANSI: u8 = 4;
/// How access lines are written; tracing's own path until [`init`] says.
static ACCESS: AtomicU8 = AtomicU8::new(ACCESS_TRACING);

/// One access-log line: what [`access`] writes for each request.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub client: std::net::IpAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub key_id: &'a str,
    /// The scheme, decision and error code are the gateway's own
    /// identifiers (printable ASCII, no quotes or backslashes), written
    /// without the check for characters to escape.
    pub scheme: &'static str,
    pub decision: &'static str,
    pub status: u16,
    pub error: &'static str,
    pub latency_us: u64,
    /// When the request was done: the line's timestamp.
    pub at: std::time::Instant,
}

/// Log one request, target `portcullis::access` at INFO.
///
/// The line is byte for byte what tracing-subscriber's text format (in its
/// colours on a terminal) or JSON format writes for the same event, built
/// by hand: formatting through tracing's
/// field visitors cost about 1.8 µs a request in the load bench, more than
/// a tenth of the gateway's CPU per request.
pub fn access(l: &AccessLine) {
    let mode = ACCESS.load(Ordering::Relaxed);
    if mode == ACCESS_OFF {
        return;
    }
    if mode == ACCESS_TRACING {
        access_event(l);
        return;
    }
    LINE.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        if mode == ACCESS_JSON {
            json_line(&mut buf, l);
        } else {
            text_line(&mut buf, l, mode == ACCESS_TEXT_ANSI);
        }
        let _ = LineWriter.write(&buf);
    });
}

/// The access line as a tracing event: the format the hand-built lines
/// copy, used when another subscriber is in place.
fn access_event(l: &AccessLine) {
    tracing::info!(
        target: "portcullis::access",
        request_id = l.request_id,
        client = %l.client,
        method = %l.method,
        path = %l.path,
        route = l.route,
        key_id = l.key_id,
        scheme = l.scheme,
        decision = l.decision,
        status = l.status,
        error = l.error,
        latency_us = l.latency_us,
    );
}

thread_local! {
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `2026-11-22T20:21:34.833532Z`, as tracing-subscriber's `SystemTime`.
/// The part up to the second is formatted once a second per thread.
fn timestamp(out: &mut Vec<u8>, at: std::time::Instant) {
    thread_local! {
        static PREFIX: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let since = crate::clock::since_epoch(at);
    let (secs, us) = (since.as_secs(), since.subsec_micros());
    let (cached, mut prefix) = PREFIX.get();
    if cached != secs {
        let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
        let (h, mi, s) = (t.hour(), t.minute(), t.second());
        let mut w = &mut prefix[..];
        let _ = write!(w, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.");
        PREFIX.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    let mut frac = [b'0'; 6];
    let mut v = us;
    for slot in frac.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&frac);
    out.push(b'Z');
}

/// A value as `{:?}` writes it, quoted; the common case (printable ASCII
/// without quotes or backslashes) without going through `fmt`.
fn debug_str(out: &mut Vec<u8>, v: &str) {
    if plain(v.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// A byte that `{:?}` writes as it is: printable ASCII other than `"`
/// and `\\`.
fn plain_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// Whether every byte is [`plain_byte`], eight at a time (about a third of
/// the instructions of a byte-by-byte check, for the six strings of each
/// access-log line).
fn plain(v: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of `x` below `n` (n <= 0x80), and of no
    // other byte when none is: a nonzero result means some byte is.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let equal = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        if (x & HIGH) | below(x, 0x20) | equal(x, 0x7f) | equal(x, b'"') | equal(x, b'\\') != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| plain_byte(b))
}

/// ` name=` before a text line's field: in tracing-subscriber's terminal
/// colours (the name italic, `=` dimmed) when `$ansi`. Both are constants
/// of known length, so each is copied in place rather than by `memcpy`.
macro_rules! field {
    ($ansi:expr, $name:literal) => {
        if $ansi {
            concat!(" \x1b[3m", $name, "\x1b[0m\x1b[2m=\x1b[0m").as_bytes()
        } else {
            concat!(" ", $name, "=").as_bytes()
        }
    };
}

/// A value [`plain`] by construction (the gateway's own identifiers:
/// scheme, decision, error code), quoted as `{:?}` writes it.
fn quoted(out: &mut Vec<u8>, v: &'static str) {
    debug_assert!(plain(v.as_bytes()), "{v:?}");
    out.push(b'"');
    out.extend_from_slice(v.as_bytes());
    out.push(b'"');
}

/// tracing-subscriber's text line; with `ansi`, in its terminal colours
/// (timestamp and target dimmed, the level green, field names italic).
fn text_line(out: &mut Vec<u8>, l: &AccessLine, ansi: bool) {
    if ansi {
        text_line_in::<true>(out, l);
    } else {
        text_line_in::<false>(out, l);
    }
}

fn text_line_in<const ANSI: bool>(out: &mut Vec<u8>, l: &AccessLine) {
    // The fixed text of a line is about 120 bytes (330 in colour).
    out.reserve(
        if ANSI { 384 } else { 160 }
            + l.request_id.len()
            + l.path.len()
            + l.route.len()
            + l.key_id.len()
            + l.error.len(),
    );
    if ANSI {
        out.extend_from_slice(b"\x1b[2m");
        timestamp(out, l.at);
        out.extend_from_slice(
            b"\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2mportcullis::access\x1b[0m\x1b[2m:\x1b[0m ",
        );
    } else {
        timestamp(out, l.at);
        out.extend_from_slice(b"  INFO portcullis::access: ");
    }
    // The first field has no space before it.
    out.extend_from_slice(&field!(ANSI, "request_id")[1..]);
    debug_str(out, l.request_id);
    out.extend_from_slice(field!(ANSI, "client"));
    crate::textfmt::push_ip(out, l.client);
    out.extend_from_slice(field!(ANSI, "method"));
    out.extend_from_slice(l.method.as_bytes());
    out.extend_from_slice(field!(ANSI, "path"));
    out.extend_from_slice(l.path.as_bytes());
    out.extend_from_slice(field!(ANSI, "route"));
    debug_str(out, l.route);
    out.extend_from_slice(field!(ANSI, "key_id"));
    debug_str(out, l.key_id);
    out.extend_from_slice(field!(ANSI, "scheme"));
    quoted(out, l.scheme);
    out.extend_from_slice(field!(ANSI, "decision"));
    quoted(out, l.decision);
    out.extend_from_slice(field!(ANSI, "status"));
    crate::textfmt::push_u64(out, l.status.into());
    out.extend_from_slice(field!(ANSI, "error"));
    quoted(out, l.error);
    out.extend_from_slice(field!(ANSI, "latency_us"));
    crate::textfmt::push_u64(out, l.latency_us);
    out.push(b'\n');
}

/// A JSON string (RFC 8259 escaping, as serde_json writes it).
fn json_str(out: &mut Vec<u8>, v: &str) {
    out.push(b'"');
    for &b in v.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                let _ = write!(out, "\\u{:04x}", b);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn json_line(out: &mut Vec<u8>, l: &AccessLine) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, l.at);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"request_id\":");
    json_str(out, l.request_id);
    out.extend_from_slice(b",\"client\":\"");
    crate::textfmt::push_ip(out, l.client);
    out.push(b'"');
    for (name, v) in [
        (&b",\"method\":"[..], l.method),
        (b",\"path\":", l.path),
        (b",\"route\":", l.route),
        (b",\"key_id\":", l.key_id),
        (b",\"scheme\":", l.scheme),
        (b",\"decision\":", l.decision),
    ] {
        out.extend_from_slice(name);
        json_str(out, v);
    }
    out.extend_from_slice(b",\"status\":");
    crate::textfmt::push_u64(out, l.status.into());
    out.extend_from_slice(b",\"error\":");
    json_str(out, l.error);
    out.extend_from_slice(b",\"latency_us\":");
    crate::textfmt::push_u64(out, l.latency_us);
    out.extend_from_slice(b",\"target\":\"portcullis::access\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What tracing-subscriber writes for [`access_event`], as `init` sets
    /// it up, with the timestamp replaced by `TS`.
    fn tracing_line(l: &AccessLine, format: LogFormat, ansi: bool) -> String {
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(ansi)
            .with_target(true);
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
            LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
            LogFormat::Text => Box::new(builder.finish()),
        };
        tracing::subscriber::with_default(subscriber, || access_event(l));
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        without_timestamp(&out)
    }

    /// The first `2026-11-22T20:21:34.833532Z` in `s` replaced by `TS`.
    fn without_timestamp(s: &str) -> String {
        let b = s.as_bytes();
        let at = (0..b.len().saturating_sub(27))
            .find(|&i| b[i..i + 4].iter().all(u8::is_ascii_digit) && b[i + 4] == b'-')
            .expect("a timestamp");
        assert_eq!(s.as_bytes()[at + 26], b'Z', "{s:?}");
        format!("{}TS{}", &s[..at], &s[at + 27..])
    }

    /// The hand-built lines are the bytes tracing-subscriber writes for the
    /// same event: text without and with terminal colours, and JSON.
    #[test]
    fn hand_built_lines_match_tracing_subscriber() {
        let ids = [
            "29e864ba5e0ffb737845b83fe5339563",
            "q\"uo\\te",
            "ctl\u{1}\t\n",
            "ünï",
        ];
        let clients: [std::net::IpAddr; 2] =
            ["127.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        for id in ids {
            for client in clients {
                let mut l = line(id);
                l.client = client;
                l.error = "invalid_signature";
                // Route names and key ids come from the config: any text.
                l.route = id;
                l.key_id = id;
                for (format, ansi) in [
                    (LogFormat::Text, false),
                    (LogFormat::Text, true),
                    (LogFormat::Json, false),
                ] {
                    let mut out = Vec::new();
                    match format {
                        LogFormat::Json => json_line(&mut out, &l),
                        LogFormat::Text => text_line(&mut out, &l, ansi),
                    }
                    let ours = without_timestamp(&String::from_utf8(out).unwrap());
                    let theirs = tracing_line(&l, format, ansi);
                    assert_eq!(ours, theirs, "{format:?}, ansi {ansi}");
                }
            }
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        for _ in 0..3 {
            let mut out = Vec::new();
            timestamp(&mut out, std::time::Instant::now());
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.len(), 27, "{text}");
            assert!(text.ends_with('Z'));
            let parsed =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .unwrap();
            let skew = (time::OffsetDateTime::now_utc() - parsed).abs();
            assert!(skew < time::Duration::seconds(5), "{text}");
            std::thread::sleep(std::time::Duration::from_millis(600));
        }
    }

    fn line(request_id: &str) -> AccessLine<'_> {
        AccessLine {
            request_id,
            client: "127.0.0.1".parse().unwrap(),
            method: "GET",
            path: "/model/ABC-1",
            route: "models",
            key_id: "K1",
            scheme: "api_key",
            decision: "allowed",
            status: 200,
            error: "-",
            latency_us: 42,
            at: std::time::Instant::now(),
        }
    }

    #[test]
    fn json_lines_parse_whatever_the_request_id_holds() {
        for id in ["plain", "q\"uo\\te", "ctl\u{1}\t\n", "ünï"] {
            let mut out = Vec::new();
            json_line(&mut out, &line(id));
            assert!(out.ends_with(b"}\n"));
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["request_id"], id);
            assert_eq!(v["status"], 200);
            assert_eq!(v["latency_us"], 42);
            assert_eq!(v["key_id"], "K1");
            assert_eq!(v["client"], "127.0.0.1");
            assert_eq!(v["target"], "portcullis::access");
            assert_eq!(v["level"], "INFO");
        }
    }

    #[test]
    fn text_values_are_quoted_as_debug_does() {
        for id in ["plain", "q\"uo\\te", "ctl\u{1}\t\n", "ünï"] {
            let mut out = Vec::new();
            text_line(&mut out, &line(id), false);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(&format!("request_id={id:?} ")), "{text}");
            assert!(text.contains("  INFO portcullis::access: "), "{text}");
            assert!(
                text.ends_with(" decision=\"allowed\" status=200 error=\"-\" latency_us=42\n"),
                "{text}"
            );
            // One line, whatever the id holds.
            assert_eq!(text.matches('\n').count(), 1);
        }
    }

    /// What [`quoted`] writes unchecked is plain: every error code and
    /// scheme name, and the decisions.
    #[test]
    fn identifiers_written_unchecked_are_plain() {
        let codes = crate::error::Code::ALL.map(crate::error::Code::as_str);
        let schemes = crate::auth::Scheme::ALL.map(crate::auth::Scheme::as_str);
        for v in codes.iter().chain(&schemes).chain(&[
            "-",
            "allowed",
            "denied",
            "error",
            "public",
            "token_issued",
        ]) {
            assert!(plain(v.as_bytes()), "{v:?}");
        }
    }

    /// The word-at-a-time check agrees with the byte-by-byte one for every
    /// byte value at every position of strings of 1 to 24 bytes, and the
    /// line quotes (or escapes) as `{:?}` does.
    #[test]
    fn plain_agrees_with_a_byte_by_byte_check() {
        for len in 1..=24usize {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    assert_eq!(plain(&v), plain_byte(b), "byte {b:#04x} at {at} of {len}");
                }
            }
        }
        assert!(plain(b""));
        for s in ["abc-123", "caf\u{e9}", "a\"b", "tab\there", "x\u{7f}", "\\"] {
            let mut out = Vec::new();
            debug_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{s:?}"));
        }
    }
}
