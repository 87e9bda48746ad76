//! TLS: rustls with TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, and the
//! development certificates of `portcullis gen-cert`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio_rustls::TlsAcceptor;

/// The crypto provider of every TLS connection, served or made: aws-lc-rs,
/// rustls's default (see Cargo.toml for why not ring).
///
/// Its random generator gathers jitter entropy the first time it is used,
/// about 20 ms of CPU. That happens here, once, while the configuration is
/// first loaded, and not in the first client's handshake, which would hold
/// up every connection on the event loop meanwhile.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            // An error here would be the handshake's too, and reported there.
            let _ = provider.secure_random.fill(&mut [0u8; 16]);
            provider
        })
        .clone()
}

/// Build the acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(tickets) = ticketer() {
        config.ticketer = tickets;
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Session tickets, so that a returning client resumes its session without
/// the certificate's signature, as with nginx's, Envoy's and HAProxy's
/// defaults. rustls's own default is a cache of 256 sessions in memory,
/// which a gateway with more clients than that turns over before they
/// come back.
///
/// One ticketer for the process, kept across reloads so that tickets stay
/// good after a SIGHUP. Its keys are random, made here, never written
/// anywhere, and replaced every 6 hours (a ticket lives 12); a restart
/// makes every client do a full handshake once. Early data (0-RTT) stays
/// off, so a resumed handshake still has a fresh key exchange.
fn ticketer() -> Option<Arc<dyn rustls::server::ProducesTickets>> {
    static TICKETER: OnceLock<Option<Arc<dyn rustls::server::ProducesTickets>>> = OnceLock::new();
    TICKETER
        // Without one (no randomness), the default session cache stays.
        .get_or_init(|| rustls::crypto::aws_lc_rs::Ticketer::new().ok())
        .clone()
}

/// Write a self-signed certificate and key for `hosts` into `dir`
/// (`gateway.crt`, `gateway.key`, the key readable by its owner only).
pub fn generate_self_signed(dir: &Path, hosts: &[String]) -> Result<(), String> {
    let mut names: Vec<String> = hosts.to_vec();
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cert_path = dir.join("gateway.crt");
    let key_path = dir.join("gateway.key");
    write_private(&key_path, ck.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, ck.cert.pem())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    Ok(())
}

/// Write a private key readable by its owner only: a new 0600 file in the
/// same folder, renamed over the target, so an existing file's looser
/// permissions are never kept.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(fail)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
