//! Log setup: `tracing` with text or JSON lines. The level comes from
//! `PORTCULLIS_LOG` (an `EnvFilter` directive), else `log.level`, else `info`.

use crate::config::{Log, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(log: &Log) {
    let filter = std::env::var("PORTCULLIS_LOG")
        .ok()
        .or_else(|| log.level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // A second init (tests, demo) keeps the first subscriber.
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
