//! Log setup: `tracing` with text or JSON lines. The level comes from
//! `PORTCULLIS_LOG` (an `EnvFilter` directive), else `log.level`, else `info`.
//!
//! While the gateway serves, lines are gathered in a buffer and written to
//! stderr together: whenever the runtime runs out of work (it is about to
//! wait for the network), when 64 KiB have gathered, and at shutdown. An
//! idle gateway therefore writes each line at once, and a busy one writes a
//! batch of lines per system call instead of one per request (like nginx's
//! `access_log ... buffer=`). Lines still in the buffer when the process is
//! killed with SIGKILL are lost.

use crate::config::{Log, LogFormat};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;

/// Buffered lines waiting for [`flush`].
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Off until [`set_buffered`]: before the runtime runs, lines go out at once.
static BUFFERED: AtomicBool = AtomicBool::new(false);
/// A buffer this full is written at once, whatever the runtime is doing.
const FLUSH_AT: usize = 64 * 1024;

/// The log writer: one `write` per formatted line (tracing-subscriber
/// formats a whole event, then writes it once).
#[derive(Clone, Copy, Debug, Default)]
pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if !BUFFERED.load(Ordering::Relaxed) {
            std::io::stderr().write_all(line)?;
            return Ok(line.len());
        }
        let mut buf = BUFFER.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(line);
        if buf.len() >= FLUSH_AT {
            // Written under the lock, so batches keep their order.
            let _ = std::io::stderr().write_all(&buf);
            buf.clear();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Gather lines from now on (true), or write them at once (false, after a
/// final [`flush`]).
pub fn set_buffered(on: bool) {
    BUFFERED.store(on, Ordering::Relaxed);
    if !on {
        flush();
    }
}

/// Write out whatever has gathered.
pub fn flush() {
    let mut buf = BUFFER.lock().unwrap_or_else(|e| e.into_inner());
    if !buf.is_empty() {
        let _ = std::io::stderr().write_all(&buf);
        buf.clear();
        if buf.capacity() > 4 * FLUSH_AT {
            buf.shrink_to(FLUSH_AT);
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
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
