//! portcullis: a TLS-terminating authorization gateway.
//!
//! The request flow lives in `server::pipeline`; each step is a module named
//! for its concern: [`routes`], [`auth`], [`authorize`], [`rewrite`], [`proxy`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod authorize;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod replay;
pub mod rewrite;
pub mod routes;
pub mod secret;
pub mod server;
pub mod state;
pub mod textfmt;
pub mod timer;
pub mod tls;
