//! Test harness: the real `portcullis` binary as a child process, with a
//! certificate generated at run time, in front of a recording upstream, and
//! a TLS client to talk to it.
#![allow(dead_code)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The secret of the keys the tests configure, and its hash.
pub const SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuv";

pub fn secret_hash(secret: &str) -> String {
    portcullis::secret::hash_string(secret.as_bytes())
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A loopback address that refuses connections for as long as the socket
/// lives: bound, never listening, so no server of a test running in parallel
/// can take the port. Drop the socket to free the port.
pub fn refusing_addr() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("addr");
    (s, addr)
}

/// One TCP socket as `/proc/net/tcp` shows it.
#[derive(Debug, Clone, Copy)]
pub struct TcpEntry {
    /// The kernel's state number (1 ESTABLISHED, 4 FIN_WAIT1, ...).
    pub state: u8,
    /// Bytes sent and not yet acknowledged by the peer.
    pub tx_queue: u64,
    /// Which timer runs (0 none, 1 retransmit or probe, 2 keepalive...).
    pub timer: u32,
    /// When it fires, in clock ticks (1/100 s).
    pub when: u64,
}

/// The TCP socket from `local` to `remote` (IPv4), if the kernel lists one.
pub fn tcp_entry(local: SocketAddr, remote: SocketAddr) -> Option<TcpEntry> {
    // `0100007F:1F90`: the address as the kernel's u32 in host order, the
    // port big-endian, both in hex.
    let hex = |a: SocketAddr| {
        let SocketAddr::V4(a) = a else {
            panic!("{a} is not IPv4")
        };
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != local || f[2] != remote {
            return None;
        }
        let (tx, _rx) = f[4].split_once(':')?;
        let (timer, when) = f[5].split_once(':')?;
        Some(TcpEntry {
            state: u8::from_str_radix(f[3], 16).ok()?,
            tx_queue: u64::from_str_radix(tx, 16).ok()?,
            timer: u32::from_str_radix(timer, 16).ok()?,
            when: u64::from_str_radix(when, 16).ok()?,
        })
    })
}

// ---------------------------------------------------------------- upstream

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, exactly as received.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of a header (name in lower case), as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

/// A real HTTP/1.1 upstream on 127.0.0.1 that records every request.
/// Paths: `/slow/...` answers after 3 s; `/big/<bytes>` answers with that
/// many bytes (pattern `i % 251`); `/drip/<ms>` answers (chunked) 1 KiB,
/// then after `ms` milliseconds 1 KiB more; anything else answers 200 `ok`
/// with header `x-upstream: yes` (and echoes the request body when there is
/// one).
pub struct Upstream {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Recorded>>>,
    /// Connections accepted and not yet ended.
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let records: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let open: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let rec = records.clone();
        let counted = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                let counted = counted.clone();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let rec = rec.clone();
                        async move { Ok::<_, Infallible>(answer(rec, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                    counted.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Upstream {
            addr,
            records,
            open,
        }
    }

    /// Connections the gateway holds open to this upstream now.
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

/// `/drip/<ms>`'s body: 1 KiB of `a`, a pause, 1 KiB of `b`.
pub struct Drip {
    left: u8,
    pause: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        match self.left {
            0 => Poll::Ready(None),
            2 => {
                self.left = 1;
                let until = tokio::time::Instant::now() + self.pause;
                self.sleep.as_mut().reset(until);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
                    b'a';
                    1024
                ])))))
            }
            _ => {
                if std::future::Future::poll(self.sleep.as_mut(), cx).is_pending() {
                    return Poll::Pending;
                }
                self.left = 0;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
                    b'b';
                    1024
                ])))))
            }
        }
    }
}

type UpstreamBody = http_body_util::Either<Full<Bytes>, Drip>;

async fn answer(rec: Arc<Mutex<Vec<Recorded>>>, req: Request<Incoming>) -> Response<UpstreamBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    rec.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    });
    if target.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(n) = target
        .strip_prefix("/big/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        // (i % 251) for every i, made by doubling copies rather than byte
        // by byte: a 64 MiB answer takes about a second of unoptimised
        // test code the other way.
        let block: Vec<u8> = (0..251u8).collect();
        let mut data = block.repeat(n / 251 + 1);
        data.truncate(n);
        return Response::new(UpstreamBody::Left(Full::new(Bytes::from(data))));
    }
    if let Some(ms) = target
        .strip_prefix("/drip/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return Response::new(UpstreamBody::Right(Drip {
            left: 2,
            pause: Duration::from_millis(ms),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }));
    }
    let mut r = Response::new(UpstreamBody::Left(Full::new(if body.is_empty() {
        Bytes::from_static(b"ok")
    } else {
        body
    })));
    r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
    r
}

// ---------------------------------------------------------------- gateway

/// A running `portcullis serve`.
pub struct Gateway {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<String>>,
    /// While set, the gateway's stderr is not read (see [`Gateway::pause_logs`]).
    logs_paused: Arc<std::sync::atomic::AtomicBool>,
}

/// Generate a certificate for localhost/127.0.0.1 with the binary itself.
pub fn gen_cert(dir: &Path) {
    let out = Command::new(BIN)
        .args(["gen-cert", "--out"])
        .arg(dir)
        .output()
        .expect("run gen-cert");
    assert!(
        out.status.success(),
        "gen-cert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Gateway {
    /// Start the gateway with `body` (routes, keys, limits...) appended to a
    /// generated `listen`/`admin` section. `{upstream}` in `body` is not
    /// expanded: format it in yourself.
    pub fn start(body: &str) -> Gateway {
        Self::start_with_env(body, &[])
    }

    pub fn start_with_env(body: &str, env: &[(&str, &str)]) -> Gateway {
        // The ports are picked free, then bound by the gateway: a test
        // running in parallel may take one in between. Start again then.
        for _ in 0..5 {
            let gw = Self::spawn(body, env);
            if gw.became_ready() {
                return gw;
            }
            if !gw.logs().contains("Address already in use") {
                panic!("the gateway did not become ready; logs:\n{}", gw.logs());
            }
        }
        panic!("the gateway could not bind free ports in 5 attempts");
    }

    fn spawn(body: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        gen_cert(&dir.path().join("certs"));
        let (https, http, admin) = (free_port(), free_port(), free_port());
        let head = format!(
            "listen:\n  https: 127.0.0.1:{https}\n  tls: {{ cert: {d}/certs/gateway.crt, key: {d}/certs/gateway.key }}\n  http: 127.0.0.1:{http}\nadmin:\n  listen: 127.0.0.1:{admin}\n",
            d = dir.path().display()
        );
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, format!("{head}{body}")).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn portcullis");
        let logs: Arc<Mutex<String>> = Arc::default();
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        let logs_paused: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let paused = logs_paused.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                while paused.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Gateway {
            child: Some(child),
            dir,
            config,
            https: SocketAddr::from(([127, 0, 0, 1], https)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            logs,
            logs_paused,
        }
    }

    /// Ready: this process logged that it bound every listener, and its
    /// admin port answers `/readyz`. The log line comes first because the
    /// admin port alone can fool us: when a gateway of a test running in
    /// parallel holds the port this one picked, that gateway answers 200
    /// while this one fails to bind and exits.
    fn became_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.logs().contains("portcullis listening") {
                if let Some((200, _)) = admin_get(self.admin, "/readyz") {
                    return true;
                }
            }
            if self.logs().contains("Address already in use") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Stop reading the gateway's stderr (true), as a stuck log shipper
    /// would: once the pipe's buffer is full, the gateway's writes to it
    /// block. At most one more line is taken after pausing.
    pub fn pause_logs(&self, on: bool) {
        self.logs_paused
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Send a signal (`"TERM"`, `"HUP"`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Rewrite the config body (same listen/admin head) and wait for the
    /// file watcher to pick it up (or send SIGHUP yourself).
    pub fn rewrite_config(&self, body: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let head_end = text.find("\nadmin:\n").unwrap();
        let after_admin = text[head_end + 1..].find('\n').unwrap();
        let admin_line_end = head_end + 1 + after_admin + 1;
        let admin_listen_end = text[admin_line_end..].find('\n').unwrap() + admin_line_end + 1;
        let head = &text[..admin_listen_end];
        // Write atomically so the watcher never reads half a file.
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, format!("{head}{body}")).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// The value of a metric line (exact series text before the value).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = admin_get(self.admin, "/metrics")?;
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn host(&self) -> String {
        format!("localhost:{}", self.https.port())
    }

    /// The generated certificate, to trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("certs/gateway.crt")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain-HTTP GET to the admin listener: (status, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

// ---------------------------------------------------------------- client

/// A rustls client that trusts the gateway's generated certificate.
pub fn tls_config(gw: &Gateway, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(gw.cert_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS connection to the gateway (SNI `localhost`).
pub async fn connect(gw: &Gateway, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(gw.https).await.expect("connect");
    TlsConnector::from(tls_config(gw, alpn))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// Write raw bytes over TLS and read the answer until the server closes or
/// 5 s pass. For hostile requests sent byte for byte.
pub async fn raw(gw: &Gateway, bytes: &[u8]) -> String {
    let mut s = connect(gw, &[b"http/1.1"]).await;
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw answer.
pub fn raw_status(answer: &str) -> Option<u16> {
    answer.get(9..12)?.parse().ok()
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error` field of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }
}

/// Send one HTTP/1.1 request over a fresh TLS connection. `Host` is added
/// when `headers` has none.
pub async fn send(
    gw: &Gateway,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let stream = connect(gw, &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(target);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", gw.host());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).expect("request");
    let resp = sender.send_request(req).await.expect("send request");
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// `send` with no body.
pub async fn get(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Answer {
    send(gw, "GET", target, headers, Bytes::new()).await
}

/// `Authorization: Basic base64(id:secret)`.
pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// A standard config body: one route `/model` (namespace `models`) to the
/// upstream, and key `K1` (owner bob) with models:read,create on
/// `/model/ABC-*`.
pub fn standard_body(upstream: &Upstream) -> String {
    model_route_body(
        &upstream.url(),
        "{ namespace: models, actions: [create, read], resources: [\"/model/ABC-*\"] }",
    )
}

/// One route `/model` (namespace `models`) to `upstream_url`, and key `K1`
/// (owner bob, secret [`SECRET`]) with the one grant `grant` (a YAML flow
/// mapping).
pub fn model_route_body(upstream_url: &str, grant: &str) -> String {
    format!(
        "routes:
  - name: models
    match: {{ path_prefix: /model }}
    upstream: {upstream_url}
    namespace: models
keys:
  - id: K1
    owner: bob
    secret_hash: {hash}
    grants:
      - {grant}
",
        hash = secret_hash(SECRET)
    )
}
