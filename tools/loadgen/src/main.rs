//! portcullis-load: an HTTP/1.1 keep-alive load generator for portcullis.
//!
//! Each connection is its own TLS stream and hyper HTTP/1.1 handshake,
//! reused for all of its requests. Credentials: HTTP Basic / `X-Api-Key`,
//! OAuth 1.0 HMAC-SHA1 signed per request, JWT bearer tokens, or a wrong
//! secret for the 401 path. See `tools/loadgen/README.md`.

#![forbid(unsafe_code)]

mod auth;
mod cli;
mod conn;
mod report;
mod run;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let cfg = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Built inside the runtime: the run's clock starts here.
        let run = match run::Run::new(&cfg) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let (answered, text, json) = match cfg.idle {
            Some(n) => {
                let s = run.idle(n, cfg.hold).await;
                (s.requests, s.text(), s.json())
            }
            None => {
                let s = run.load().await;
                (s.requests, s.text(), s.json())
            }
        };
        if cfg.json {
            println!("{json}");
        } else {
            print!("{text}");
        }
        // Exit 1 when nothing at all was answered (server down, wrong port).
        if answered == 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}
