//! The command line (SPEC section 1).

use crate::config::{self, GrantConfig, KeyYaml};
use crate::state::Gateway;
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for a configuration that does not load (sysexits EX_CONFIG-ish, as linkerd).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "A TLS-terminating authorization gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve {
        #[arg(short, long, default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Load and validate the config; print a summary, or every error.
    Check {
        #[arg(short, long, default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Start an echo upstream and the gateway with config/demo.yaml, and print curl commands.
    Demo,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read a secret on stdin and print `sha256:<hex>`.
    HashSecret,
    /// Print the OAuth 1.0 `Authorization` header value for a request (two-legged).
    Sign(SignArgs),
    /// Write a self-signed certificate and key for development.
    GenCert {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Host names (and IPs) the certificate is for; localhost and 127.0.0.1 are always added.
        #[arg(long = "host", default_value = "localhost")]
        hosts: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct SignArgs {
    /// The key id (oauth_consumer_key).
    #[arg(long)]
    key: String,
    /// The key's secret; or set PORTCULLIS_SECRET to keep it out of shell history.
    #[arg(long, env = "PORTCULLIS_SECRET", hide_env_values = true)]
    secret: String,
    /// The request method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// An application/x-www-form-urlencoded body; its parameters are signed.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// A non-form body (JSON, XML): signed through oauth_body_hash.
    #[arg(long = "body")]
    body: Option<String>,
    /// HMAC-SHA1, HMAC-SHA256, HMAC-SHA512 or PLAINTEXT.
    #[arg(long = "method", default_value = "HMAC-SHA1")]
    signature_method: String,
    /// A fixed nonce (default: 128 random bits).
    #[arg(long)]
    nonce: Option<String>,
    /// A fixed timestamp in Unix seconds (default: now).
    #[arg(long)]
    timestamp: Option<u64>,
    /// The full URL, as the client will send it.
    url: String,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a key id and a random 256-bit secret; print the secret once and the YAML entry.
    New {
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: Option<String>,
        // Help texts as attributes, not doc comments: rustdoc would read
        // their brackets as links and `<id>` as an HTML tag.
        #[arg(
            long = "grant",
            help = "NS:ACTION[,ACTION][:RESOURCE_GLOB], repeatable"
        )]
        grants: Vec<String>,
        #[arg(
            long,
            help = "Write the entry as DIR/<id>.yaml (atomically) for `include:`"
        )]
        write: Option<PathBuf>,
        /// Use this id instead of a random one.
        #[arg(long)]
        id: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(&config, false),
        Command::Check { config } => check(&config),
        Command::Demo => demo(),
        Command::Keys {
            command:
                KeysCommand::New {
                    owner,
                    name,
                    grants,
                    write,
                    id,
                },
        } => keys_new(owner, name, grants, write, id),
        Command::HashSecret => hash_secret(),
        Command::Sign(args) => sign(args),
        Command::GenCert { out, hosts } => match crate::tls::generate_self_signed(&out, &hosts) {
            Ok(()) => {
                println!(
                    "wrote {} and {}",
                    out.join("gateway.crt").display(),
                    out.join("gateway.key").display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("portcullis: {msg}");
    ExitCode::FAILURE
}

fn check(path: &Path) -> ExitCode {
    let loaded = config::load(path).and_then(|s| {
        // Build everything `serve` builds (TLS pair, JWT issuers and signer).
        let jwks = std::sync::Arc::new(crate::auth::jwks::JwksCache::new());
        match crate::state::Snapshot::build(s.clone(), &jwks) {
            Ok(_) => Ok(s),
            Err(e) => Err(config::ConfigErrors(vec![config::ConfigError {
                file: path.to_path_buf(),
                line: None,
                field: String::new(),
                reason: e,
            }])),
        }
    });
    match loaded {
        Ok(s) => {
            println!("{}: valid", path.display());
            println!(
                "listen: https {}{}",
                s.listen.https,
                s.listen
                    .http
                    .map(|h| format!(", http {h} (redirect only)"))
                    .unwrap_or_default()
            );
            println!("routes: {}", s.routes.len());
            for r in &s.routes {
                let schemes: Vec<&str> = r.schemes.iter().map(|x| x.as_str()).collect();
                println!(
                    "  {:<16} {}{} -> {} namespace={} schemes=[{}]{}",
                    r.name,
                    r.host.as_deref().unwrap_or(""),
                    r.path_prefix,
                    r.upstream
                        .as_ref()
                        .map(|u| format!("http://{}{}", u.authority, u.base_path))
                        .unwrap_or_default(),
                    r.namespace,
                    schemes.join(","),
                    if r.public { " public" } else { "" }
                );
            }
            let disabled = s.keys.iter().filter(|k| k.disabled).count();
            println!("keys: {} ({} disabled)", s.keys.len(), disabled);
            let issuers: Vec<&str> = s
                .jwt
                .iter()
                .flat_map(|j| j.issuers.iter().map(|i| i.issuer.as_str()))
                .collect();
            if issuers.is_empty() {
                println!("jwt issuers: 0");
            } else {
                println!("jwt issuers: {} ({})", issuers.len(), issuers.join(", "));
            }
            if let Some(t) = s.jwt.as_ref().and_then(|j| j.tokens.as_ref()) {
                println!(
                    "token endpoint: POST /auth/token (issuer {}, ttl {:?})",
                    t.issuer, t.ttl
                );
            }
            for w in &s.warnings {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{} error(s); the configuration is not valid",
                errors.0.len()
            );
            ExitCode::FAILURE
        }
    }
}

fn load_or_exit(path: &Path) -> Result<config::Settings, ExitCode> {
    config::load(path).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("error: {e}");
        }
        eprintln!("portcullis: the configuration is not valid; nothing was started");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

/// One worker thread per CPU the process may run on. Given a single CPU
/// (a container limit, `taskset`), the single-threaded scheduler does the
/// same work without the cross-thread wake-ups and queue atomics of the
/// multi-threaded one.
///
/// `PORTCULLIS_THREADS=N` sets the number of worker threads instead (like
/// Envoy's `--concurrency`); `1` is the single-threaded scheduler.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    let threads = std::env::var("PORTCULLIS_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut b = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut m = tokio::runtime::Builder::new_multi_thread();
        m.worker_threads(threads);
        m
    };
    b.enable_all()
        .build()
        .map_err(|e| fail(&format!("cannot start the runtime: {e}")))
}

fn serve(path: &Path, demo: bool) -> ExitCode {
    let settings = match load_or_exit(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    crate::logging::init(&settings.log);
    for w in &settings.warnings {
        tracing::warn!(warning = %w, "config");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    crate::logging::set_buffered(true);
    let code = rt.block_on(async move {
        let demo_upstreams = if demo {
            match start_demo_upstreams(&settings).await {
                Ok(()) => true,
                Err(e) => return fail(&e),
            }
        } else {
            false
        };
        let gw = match Gateway::new(path, settings) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                eprintln!("portcullis: the configuration is not valid; nothing was started");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        let listeners = match crate::server::Listeners::bind(&gw).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("cannot listen: {e}")),
        };
        let https = listeners.https.local_addr().ok();
        let admin = listeners.admin.as_ref().and_then(|l| l.local_addr().ok());
        let show =
            |a: Option<std::net::SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
        tracing::info!(
            https = %show(https),
            http = %show(listeners.http.as_ref().and_then(|l| l.local_addr().ok())),
            admin = %show(admin),
            "portcullis listening"
        );
        if demo_upstreams {
            let secret = std::env::var("PORTCULLIS_DEMO_SECRET").unwrap_or_default();
            // The binary as the user can type it from here, for `sign`.
            let exe = std::env::current_exe()
                .ok()
                .map(|p| match std::env::current_dir() {
                    Ok(cwd) => p.strip_prefix(&cwd).map(|r| r.to_path_buf()).unwrap_or(p),
                    Err(_) => p,
                })
                .map_or_else(|| "portcullis".to_string(), |p| p.display().to_string());
            println!(
                "{}",
                crate::demo::instructions(
                    https.map_or(8443, |a| a.port()),
                    admin.map(|a| a.port()),
                    &secret,
                    &exe
                )
            );
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::server::signals(gw.clone(), tx));
        crate::server::run(gw, listeners, rx).await;
        ExitCode::SUCCESS
    });
    crate::logging::set_buffered(false);
    code
}

async fn start_demo_upstreams(settings: &config::Settings) -> Result<(), String> {
    let mut started = std::collections::HashSet::new();
    for r in &settings.routes {
        let Some(u) = &r.upstream else { continue };
        let addr = u.authority.as_str().to_string();
        if !started.insert(addr.clone()) {
            continue;
        }
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot start the demo upstream on {addr}: {e}"))?;
        tokio::spawn(crate::demo::echo_upstream(l));
    }
    Ok(())
}

fn demo() -> ExitCode {
    let path = PathBuf::from("config/demo.yaml");
    if !path.exists() {
        if let Err(e) = std::fs::create_dir_all("config")
            .and_then(|_| std::fs::write(&path, crate::demo::DEMO_YAML))
        {
            return fail(&format!("cannot write {}: {e}", path.display()));
        }
    }
    let certs = Path::new("certs");
    if !certs.join("gateway.crt").exists() || !certs.join("gateway.key").exists() {
        if let Err(e) = crate::tls::generate_self_signed(certs, &["localhost".to_string()]) {
            return fail(&e);
        }
        println!("generated a self-signed certificate in certs/ (for localhost and 127.0.0.1)");
    }
    // Before any thread starts: set_var is only sound single-threaded.
    for var in ["PORTCULLIS_DEMO_SECRET", "PORTCULLIS_DEMO_TOKEN_KEY"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, random_secret());
        }
    }
    serve(&path, true)
}

/// 256 random bits, URL-safe base64 (43 characters; safe inside `https://id:secret@`).
pub fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..3)
        .map(|_| {
            (0..4)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `NS:ACTION[,ACTION][:RESOURCE_GLOB]`
pub fn parse_grant(s: &str) -> Result<GrantConfig, String> {
    let mut parts = s.splitn(3, ':');
    let ns = parts.next().unwrap_or_default();
    let actions = parts
        .next()
        .ok_or_else(|| format!("`{s}`: expected NS:ACTION[,ACTION][:RESOURCE_GLOB]"))?;
    let resource = parts.next();
    if ns.is_empty() || actions.is_empty() {
        return Err(format!(
            "`{s}`: expected NS:ACTION[,ACTION][:RESOURCE_GLOB]"
        ));
    }
    if let Some(r) = resource {
        if !r.starts_with('/') {
            return Err(format!("`{s}`: the resource glob must start with /"));
        }
        crate::authorize::compile_glob(r).map_err(|e| format!("`{s}`: {e}"))?;
    }
    Ok(GrantConfig {
        namespace: ns.to_string(),
        actions: actions
            .split(',')
            .map(|a| a.trim().to_ascii_lowercase())
            .collect(),
        resources: resource.map(|r| vec![r.to_string()]),
    })
}

fn keys_new(
    owner: String,
    name: Option<String>,
    grants: Vec<String>,
    write: Option<PathBuf>,
    id: Option<String>,
) -> ExitCode {
    let grants = match grants
        .iter()
        .map(|g| parse_grant(g))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    let id = id.unwrap_or_else(random_id);
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return fail("the key id must be letters, digits, `-`, `_` or `.`");
    }
    let secret = random_secret();
    let entry = config::render_key_yaml(&KeyYaml {
        id: id.clone(),
        owner,
        name,
        secret_hash: crate::secret::hash_string(secret.as_bytes()),
        grants,
    });
    if let Some(dir) = write {
        let path = dir.join(format!("{id}.yaml"));
        if path.exists() {
            return fail(&format!("{} exists already", path.display()));
        }
        if let Err(e) = write_atomic(&dir, &path, entry.as_bytes()) {
            return fail(&format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("wrote {}", path.display());
    }
    println!("# key id: {id}");
    println!("# secret (shown once; store it now): {secret}");
    println!("# HTTP Basic: https://{id}:{secret}@<host>/...");
    print!("{entry}");
    ExitCode::SUCCESS
}

fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn hash_secret() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        return fail(&format!("cannot read stdin: {e}"));
    }
    let secret = input.strip_suffix('\n').unwrap_or(&input);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return fail("no secret on stdin");
    }
    println!("{}", crate::secret::hash_string(secret.as_bytes()));
    ExitCode::SUCCESS
}

fn sign(a: SignArgs) -> ExitCode {
    use crate::auth::oauth1::{self, SignInput, SignatureMethod};
    let Some(method) = SignatureMethod::from_wire(&a.signature_method) else {
        return fail("--method must be HMAC-SHA1, HMAC-SHA256, HMAC-SHA512 or PLAINTEXT");
    };
    if a.data.is_some() && a.body.is_some() {
        return fail("give either -d (a form body) or --body (any other body), not both");
    }
    let nonce = a
        .nonce
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let timestamp = a
        .timestamp
        .unwrap_or_else(|| crate::auth::now_unix().max(0) as u64);
    let input = SignInput {
        method: &a.method.to_ascii_uppercase(),
        url: &a.url,
        form_body: a.data.as_deref().map(str::as_bytes),
        hashed_body: a.body.as_deref().map(str::as_bytes),
        consumer_key: &a.key,
        consumer_secret: a.secret.as_bytes(),
        signature_method: method,
        nonce: &nonce,
        timestamp,
    };
    match oauth1::sign_request(&input) {
        Ok(header) => {
            println!("{header}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("cannot sign: {e}")),
    }
}
