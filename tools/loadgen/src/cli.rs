//! Command line: clap definitions and their validation into a [`Config`].

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use http::{Method, Uri};

/// Credential scheme sent with every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Mode {
    /// HTTP Basic `id:secret` (or `X-Api-Key: secret` with --api-key-header).
    ApiKey,
    /// Two-legged OAuth 1.0, HMAC-SHA1, fresh nonce and timestamp per request.
    Oauth1,
    /// `Authorization: Bearer <token>`, tokens used round-robin.
    Jwt,
    /// HTTP Basic with a wrong secret (`secret` + "x"): the 401 path.
    Reject,
    /// No credential at all (public routes, or the upstream directly).
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ApiKey => "api_key",
            Mode::Oauth1 => "oauth1",
            Mode::Jwt => "jwt",
            Mode::Reject => "reject",
            Mode::None => "none",
        }
    }
}

/// HTTP/1.1 keep-alive load generator for portcullis (API key, OAuth 1.0, JWT).
#[derive(Parser, Debug)]
#[command(name = "portcullis-load", version)]
pub struct Args {
    // The help text as an attribute, not a doc comment: rustdoc would read
    // its brackets as links.
    #[arg(
        long,
        help = "Target URL: https://host[:port]/path[?query] (or http:// for an upstream)"
    )]
    pub url: String,

    /// Host header to send (default: the URL's authority). OAuth 1.0 signs it.
    #[arg(long, value_name = "H")]
    pub host_header: Option<String>,

    /// PEM file with the CA (or the self-signed server certificate) to trust.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,

    /// Accept any server certificate (signatures are still checked).
    #[arg(long)]
    pub insecure: bool,

    /// HTTP/2 (negotiated with ALPN; https:// only): each connection
    /// carries one request at a time, as over HTTP/1.1.
    #[arg(long)]
    pub http2: bool,

    /// A new TCP (and TLS) connection for every request, as a script that
    /// runs curl makes: full TLS handshakes, no session resumption, and
    /// `Connection: close` on HTTP/1.1. Latency includes the handshake.
    #[arg(long, conflicts_with = "idle")]
    pub new_connection: bool,

    /// With --new-connection: resume the TLS session (a ticket from an
    /// earlier connection) instead of a full handshake, as a client that
    /// keeps its session cache does.
    #[arg(long, requires = "new_connection")]
    pub resume: bool,

    /// Credential scheme.
    #[arg(long, value_enum, default_value = "api_key")]
    pub mode: Mode,

    /// Key id (Basic user name, oauth_consumer_key).
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,

    /// Key secret (Basic password, X-Api-Key value, OAuth consumer secret).
    #[arg(
        long,
        value_name = "S",
        env = "PORTCULLIS_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// JWT bearer token (repeatable; used round-robin).
    #[arg(long, value_name = "T")]
    pub token: Vec<String>,

    /// File with JWT bearer tokens, one per line.
    #[arg(long, value_name = "F")]
    pub token_file: Option<PathBuf>,

    /// api_key mode: send `X-Api-Key: <secret>` instead of HTTP Basic.
    #[arg(long)]
    pub api_key_header: bool,

    /// Request method.
    #[arg(
        short = 'X',
        long = "method",
        default_value = "GET",
        value_name = "METHOD"
    )]
    pub method: String,

    /// Concurrent keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 32)]
    pub connections: usize,

    /// Recorded duration (after the warmup).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Warmup: requests are sent but not recorded.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Fixed total rate in requests/s (open loop, coordinated-omission corrected).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// Also report latency per window of this length (by when each request
    /// was due), and the median of the windows' p99s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub window: Option<Duration>,

    /// Expected status (default: 401 for reject, else 200). Others count as errors.
    #[arg(long, value_name = "CODE")]
    pub expect_status: Option<u16>,

    /// Print one JSON object with the results on stdout.
    #[arg(long)]
    pub json: bool,

    /// Idle mode: open N connections, one request each, then hold them open.
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,

    /// Idle mode: how long to hold the connections.
    #[arg(long, default_value = "60s", value_parser = parse_duration, requires = "idle")]
    pub hold: Duration,

    /// Worker threads (default 1: a current_thread runtime).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// The credential the run sends, resolved from the flags.
#[derive(Clone, Debug)]
pub enum Credential {
    None,
    Basic { id: String, secret: String },
    ApiKeyHeader { secret: String },
    OAuth1 { key: String, secret: String },
    Bearer { tokens: Vec<String> },
}

/// What the run loops need, validated.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub tls: bool,
    /// Host name for SNI / certificate check (no brackets, no port).
    pub server_name: String,
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host_header: String,
    /// Scheme, lower-case (`http`/`https`), for the OAuth base string URI.
    pub scheme: String,
    /// Origin-form request target: path and query, as written in the URL.
    pub path_and_query: String,
    pub method: Method,
    pub credential: Credential,
    pub cacert: Option<PathBuf>,
    pub insecure: bool,
    pub http2: bool,
    pub new_connection: bool,
    pub resume: bool,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rate: Option<f64>,
    pub window: Option<Duration>,
    pub expect_status: u16,
    pub json: bool,
    pub idle: Option<usize>,
    pub hold: Duration,
    pub threads: usize,
}

impl Args {
    pub fn into_config(self) -> Result<Config, String> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| format!("--url {:?}: {e}", self.url))?;
        let scheme = uri
            .scheme_str()
            .ok_or("--url needs a scheme (https:// or http://)")?
            .to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "https" => true,
            "http" => false,
            other => return Err(format!("--url: unsupported scheme {other:?}")),
        };
        let authority = uri.authority().ok_or("--url needs a host")?;
        if authority.as_str().contains('@') {
            return Err("--url: user info is not supported; use --key-id/--secret".into());
        }
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = match bare_host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => (bare_host, port)
                .to_socket_addrs()
                .map_err(|e| format!("--url: cannot resolve {bare_host}: {e}"))?
                .next()
                .ok_or_else(|| format!("--url: {bare_host} has no address"))?,
        };
        let path_and_query = match uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() => pq.as_str().to_owned(),
            _ => "/".to_owned(),
        };
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            format!("/{path_and_query}")
        };
        let host_header = self
            .host_header
            .clone()
            .unwrap_or_else(|| authority.as_str().to_owned());
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| format!("-X {:?}: not a valid method", self.method))?;

        let need = |v: &Option<String>, what: &str| -> Result<String, String> {
            v.clone()
                .ok_or_else(|| format!("--mode {} needs {what}", self.mode.as_str()))
        };
        let credential = match self.mode {
            Mode::None => Credential::None,
            Mode::ApiKey if self.api_key_header => Credential::ApiKeyHeader {
                secret: need(&self.secret, "--secret")?,
            },
            Mode::ApiKey => Credential::Basic {
                id: need(&self.key_id, "--key-id")?,
                secret: need(&self.secret, "--secret")?,
            },
            Mode::Reject => Credential::Basic {
                id: need(&self.key_id, "--key-id")?,
                secret: format!("{}x", need(&self.secret, "--secret")?),
            },
            Mode::Oauth1 => {
                if path_and_query
                    .split_once('?')
                    .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("oauth_")))
                {
                    return Err("--mode oauth1: the URL must not carry oauth_* parameters".into());
                }
                Credential::OAuth1 {
                    key: need(&self.key_id, "--key-id")?,
                    secret: need(&self.secret, "--secret")?,
                }
            }
            Mode::Jwt => {
                let mut tokens: Vec<String> = self.token.clone();
                if let Some(f) = &self.token_file {
                    let text = std::fs::read_to_string(f)
                        .map_err(|e| format!("--token-file {}: {e}", f.display()))?;
                    tokens.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                }
                if tokens.is_empty() {
                    return Err("--mode jwt needs --token or --token-file".into());
                }
                Credential::Bearer { tokens }
            }
        };
        if self.connections == 0 {
            return Err("-c/--connections must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("-d/--duration must be more than zero".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be a positive number".into());
            }
        }
        if let Some(w) = self.window {
            if w.is_zero() {
                return Err("--window must be more than zero".into());
            }
            if self.duration.as_nanos() / w.as_nanos() > 1_000 {
                return Err("--window: at most 1,000 windows per run".into());
            }
        }
        if self.idle == Some(0) {
            return Err("--idle must be at least 1".into());
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.http2 && !tls {
            return Err("--http2 needs an https:// URL (HTTP/2 is negotiated with ALPN)".into());
        }
        if tls && self.cacert.is_none() && !self.insecure {
            return Err("https:// needs --cacert FILE or --insecure".into());
        }
        let expect_status = self.expect_status.unwrap_or(match self.mode {
            Mode::Reject => 401,
            _ => 200,
        });
        Ok(Config {
            mode: self.mode,
            tls,
            server_name: bare_host.to_owned(),
            addr,
            host_header,
            scheme,
            path_and_query,
            method,
            credential,
            cacert: self.cacert,
            insecure: self.insecure,
            http2: self.http2,
            new_connection: self.new_connection,
            resume: self.resume,
            connections: self.connections,
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            window: self.window,
            expect_status,
            json: self.json,
            idle: self.idle,
            hold: self.hold,
            threads: self.threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["portcullis-load"];
        v.extend_from_slice(args);
        Args::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .into_config()
    }

    #[test]
    fn defaults_and_url_parts() {
        let c = parse(&[
            "--url",
            "https://127.0.0.1:8443/model/ABC-1?x=1",
            "--insecure",
            "--mode",
            "reject",
            "--key-id",
            "k",
            "--secret",
            "s",
        ])
        .unwrap();
        assert_eq!(c.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.host_header, "127.0.0.1:8443");
        assert_eq!(c.path_and_query, "/model/ABC-1?x=1");
        assert_eq!(c.expect_status, 401);
        assert_eq!(c.connections, 32);
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.warmup, Duration::from_secs(2));
        assert!(matches!(c.credential, Credential::Basic { ref secret, .. } if secret == "sx"));
    }

    #[test]
    fn refusals() {
        assert!(parse(&["--url", "https://127.0.0.1/", "--mode", "none"]).is_err()); // no trust
        assert!(parse(&["--url", "http://127.0.0.1/", "--mode", "jwt"]).is_err());
        assert!(parse(&[
            "--url",
            "http://127.0.0.1/?oauth_nonce=1",
            "--mode",
            "oauth1",
            "--key-id",
            "k",
            "--secret",
            "s"
        ])
        .is_err());
        // HTTP/2 is negotiated with ALPN, so only over TLS.
        assert!(parse(&["--url", "http://127.0.0.1/", "--mode", "none", "--http2"]).is_err());
        let h2 = parse(&[
            "--url",
            "https://127.0.0.1/",
            "--insecure",
            "--mode",
            "none",
            "--http2",
        ]);
        assert!(h2.unwrap().http2);
        let c = parse(&["--url", "http://[::1]:9100", "--mode", "none"]).unwrap();
        assert_eq!(c.path_and_query, "/");
        assert_eq!(c.server_name, "::1");
        assert_eq!(c.expect_status, 200);
    }

    #[test]
    fn window() {
        let base = ["--url", "http://127.0.0.1/", "--mode", "none", "-d", "6s"];
        let with = |w: &str| {
            let mut a = base.to_vec();
            a.extend_from_slice(&["--window", w]);
            parse(&a)
        };
        assert_eq!(parse(&base).unwrap().window, None);
        assert_eq!(
            with("500ms").unwrap().window,
            Some(Duration::from_millis(500))
        );
        assert!(with("0s").is_err());
        assert!(with("100us").is_err()); // 60,000 windows
        assert!(with("6ms").is_ok()); // 1,000
        assert!(with("5ms").is_err()); // 1,200
    }
}
