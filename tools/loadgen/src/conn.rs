//! Connections: TCP (+ TLS through rustls and aws-lc-rs) and a hyper HTTP/1.1 or
//! HTTP/2 handshake (HTTP/2 when ALPN chose `h2`, for `--http2`). Every
//! connection is its own handshake, kept alive for all of its requests;
//! there is no pool.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::cli::Config;

pub type Body = Empty<Bytes>;

/// A connection's request handle, for the protocol it speaks.
pub enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

impl Sender {
    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
    }

    pub async fn send_request(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::Http1(s) => s.send_request(req).await,
            Sender::Http2(s) => s.send_request(req).await,
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    pub fn is_http2(&self) -> bool {
        matches!(self, Sender::Http2(_))
    }
}

/// A live connection: the request handle and the task that drives the
/// connection. Dropping it closes the connection.
pub struct Conn {
    pub sender: Sender,
    pub driver: JoinHandle<()>,
    /// Its TLS handshake resumed an earlier session.
    pub resumed: bool,
}

impl Conn {
    /// The server (or an error) ended the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.driver.is_finished()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Which step of setting up a connection failed.
#[derive(Debug)]
pub enum ConnectError {
    Tcp(io::Error),
    Tls(io::Error),
    /// `--http2`, and the server did not choose `h2` in ALPN.
    NoH2,
    Http(hyper::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "connect: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake: {e}"),
            ConnectError::NoH2 => write!(f, "the server did not agree to HTTP/2 (ALPN h2)"),
            ConnectError::Http(e) => write!(f, "HTTP handshake: {e}"),
        }
    }
}

/// Opens connections to one address, with one shared TLS configuration (and
/// so one session cache: later handshakes resume, except with
/// `--new-connection` without `--resume`, where every handshake is a full
/// one).
pub struct Connector {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    http2: bool,
}

impl Connector {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let tls = if cfg.tls {
            let config = client_config(cfg)?;
            let name = ServerName::try_from(cfg.server_name.clone())
                .map_err(|e| format!("server name {:?}: {e}", cfg.server_name))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Connector {
            addr: cfg.addr,
            tls,
            http2: cfg.http2,
        })
    }

    pub async fn connect(&self) -> Result<Conn, ConnectError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(ConnectError::Tcp)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp, false).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                let session = tls.get_ref().1;
                if self.http2 && session.alpn_protocol() != Some(b"h2") {
                    return Err(ConnectError::NoH2);
                }
                let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                let mut conn = handshake(tls, self.http2).await?;
                conn.resumed = resumed;
                Ok(conn)
            }
        }
    }
}

/// The HTTP handshake on an established stream, HTTP/2 or HTTP/1.1, and
/// a task that drives the connection.
async fn handshake<T>(io: T, http2: bool) -> Result<Conn, ConnectError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let (sender, driver) = if http2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(ConnectError::Http)?;
        (Sender::Http2(sender), tokio::spawn(drive(conn)))
    } else {
        let (sender, conn) = http1::handshake(io).await.map_err(ConnectError::Http)?;
        (Sender::Http1(sender), tokio::spawn(drive(conn)))
    };
    Ok(Conn {
        sender,
        driver,
        resumed: false,
    })
}

/// Runs a connection until it ends; its error is seen by the requests.
async fn drive<C: std::future::Future>(conn: C) {
    let _ = conn.await;
}

fn client_config(cfg: &Config) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = if cfg.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let path = cfg
            .cacert
            .as_ref()
            .ok_or("TLS needs --cacert or --insecure")?;
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--cacert {}: no certificate", path.display()));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if cfg.new_connection {
        config.resumption = if cfg.resume {
            rustls::client::Resumption::store(Arc::new(TicketStore::new()))
        } else {
            rustls::client::Resumption::disabled()
        };
    }
    config.alpn_protocols = if cfg.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// `--insecure`: accepts any certificate chain and name, but still checks
/// the handshake signatures with the provider's algorithms (so the server
/// must hold the private key of the certificate it presents).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `--resume`: where the tickets wait. rustls's own store keeps at most 8
/// TLS 1.3 tickets per server, fewer than 32 connections opening at once
/// want. One run talks to one server, so the TLS 1.3 tickets are not kept
/// per name: up to [`TicketStore::MAX`], the oldest dropped first. The rest
/// (TLS 1.2 sessions, key-exchange hints) goes to rustls's store.
#[derive(Debug)]
struct TicketStore {
    others: rustls::client::ClientSessionMemoryCache,
    tls13: std::sync::Mutex<std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>>,
}

impl TicketStore {
    const MAX: usize = 1024;

    fn new() -> Self {
        TicketStore {
            others: rustls::client::ClientSessionMemoryCache::new(8),
            tls13: Default::default(),
        }
    }

    fn tickets(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>,
    > {
        self.tls13.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl rustls::client::ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.others.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.others.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.others.set_tls12_session(server_name, value);
    }

    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.others.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.others.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        _server_name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        let mut tickets = self.tickets();
        if tickets.len() == Self::MAX {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        _server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.tickets().pop_back()
    }
}
