//! Reloadable state. A [`Snapshot`] is everything a request reads; reload
//! builds a complete new one and swaps it in with one `store()`. A failed
//! reload keeps the running snapshot.

use crate::auth::bearer::JwtState;
use crate::auth::jwks::JwksCache;
use crate::config::{self, Settings};
use crate::keys::KeyStore;
use crate::metrics::{Metrics, ResultLabels};
use crate::proxy::Upstreams;
use crate::replay::{MemoryNonceStore, NonceStore};
use crate::routes::RouteTable;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;

pub struct Snapshot {
    pub settings: Settings,
    pub routes: RouteTable,
    pub keys: KeyStore,
    pub tls: TlsAcceptor,
    /// Issuers, the token minter and revoked token ids, when `jwt:` is set.
    pub jwt: Option<Arc<JwtState>>,
}

impl Snapshot {
    pub fn build(settings: Settings, jwks: &Arc<JwksCache>) -> Result<Snapshot, String> {
        let tls = crate::tls::acceptor(&settings.listen.cert, &settings.listen.key)
            .map_err(|e| format!("listen.tls: {e}"))?;
        let jwt = match &settings.jwt {
            Some(cfg) => Some(Arc::new(JwtState::build(cfg, jwks)?)),
            None => None,
        };
        Ok(Snapshot {
            jwt,
            routes: RouteTable::new(&settings.routes),
            keys: KeyStore::new(&settings.keys),
            tls,
            settings,
        })
    }
}

/// The long-lived gateway: the current snapshot plus what outlives reloads
/// (the upstream connection pool, metrics).
pub struct Gateway {
    state: ArcSwap<Snapshot>,
    pub upstreams: Upstreams,
    pub metrics: Metrics,
    /// OAuth 1.0 nonces; outlives reloads (a reload must not forget them).
    pub replay: Arc<dyn NonceStore>,
    /// Identity providers' key sets; outlives reloads.
    pub jwks: Arc<JwksCache>,
    /// Unix seconds at start.
    pub started_at: u64,
    ready: AtomicBool,
    config_path: PathBuf,
}

impl Gateway {
    pub fn new(config_path: &Path, settings: Settings) -> Result<Arc<Gateway>, String> {
        let replay: Arc<dyn NonceStore> = Arc::new(MemoryNonceStore::new(
            settings.replay.window.as_secs(),
            settings.replay.max_nonces,
        ));
        let jwks = Arc::new(JwksCache::new());
        let snapshot = Snapshot::build(settings, &jwks)?;
        Ok(Arc::new(Gateway {
            jwks,
            replay,
            state: ArcSwap::from_pointee(snapshot),
            upstreams: Upstreams::new(),
            metrics: Metrics::new(),
            started_at: crate::auth::now_unix() as u64,
            ready: AtomicBool::new(false),
            config_path: config_path.to_path_buf(),
        }))
    }

    /// The snapshot for one request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Reload the configuration from disk. On failure the old state stays.
    pub fn reload(&self) -> Result<(), String> {
        let result = config::load(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|s| Snapshot::build(s, &self.jwks));
        match result {
            Ok(next) => {
                let old = self.state.load();
                if old.settings.replay != next.settings.replay {
                    tracing::warn!("replay settings changed: they take effect at the next restart");
                }
                let restart_only = [
                    (
                        "admin.listen",
                        old.settings.admin.as_ref().map(|a| a.listen)
                            != next.settings.admin.as_ref().map(|a| a.listen),
                    ),
                    (
                        "limits.max_connections",
                        old.settings.limits.max_connections != next.settings.limits.max_connections,
                    ),
                    (
                        "log",
                        old.settings.log.format != next.settings.log.format
                            || old.settings.log.level != next.settings.log.level,
                    ),
                ];
                for (field, changed) in restart_only {
                    if changed {
                        tracing::warn!(
                            field,
                            "this setting changed: it takes effect at the next restart"
                        );
                    }
                }
                if old.settings.listen != next.settings.listen {
                    tracing::warn!("listen addresses changed: they take effect at the next restart (certificates were reloaded)");
                }
                for w in &next.settings.warnings {
                    tracing::warn!(warning = %w, "config");
                }
                let (routes, keys) = (next.routes.len(), next.keys.len());
                self.state.store(Arc::new(next));
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                tracing::info!(routes, keys, "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabels { result: "failure" })
                    .inc();
                for line in e.lines() {
                    tracing::error!(error = %line, "reload failed; the previous configuration stays in force");
                }
                Err(e)
            }
        }
    }
}

impl Gateway {
    /// Rebuild the snapshot from the settings in force (no file is read):
    /// after identity provider keys changed.
    pub fn rebuild(&self) {
        let current = self.snapshot();
        match Snapshot::build(current.settings.clone(), &self.jwks) {
            Ok(next) => self.state.store(Arc::new(next)),
            Err(e) => tracing::error!(error = %e, "cannot apply the new identity provider keys"),
        }
    }

    /// A new key set arrived for `url`: use it if it fits every issuer that
    /// names the URL, else put the previous one back.
    fn apply_jwks(&self, url: &str, previous: Option<Arc<str>>) {
        let snap = self.snapshot();
        if let (Some(cfg), Some(text)) = (&snap.settings.jwt, self.jwks.get(url)) {
            for ic in cfg
                .issuers
                .iter()
                .filter(|i| i.jwks_url.as_deref() == Some(url))
            {
                if let Err(e) = crate::auth::bearer::issuer_from_jwks(ic, &text) {
                    self.jwks.revert(url, previous, &e);
                    return;
                }
            }
        }
        self.rebuild();
    }

    /// The `jwks_url`s of the configuration in force.
    pub fn remote_issuers(&self) -> Vec<crate::auth::bearer::RemoteIssuer> {
        self.snapshot()
            .jwt
            .as_ref()
            .map(|j| j.remote.clone())
            .unwrap_or_default()
    }
}

/// Fetch identity provider keys when due, each URL in its own task (a hung
/// provider delays no other), and apply a changed key set at once.
pub async fn refresh_jwks(gw: Arc<Gateway>) {
    let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
    loop {
        for r in gw.remote_issuers() {
            if !gw.jwks.due(&r.url, r.schedule) {
                continue;
            }
            let fresh = in_flight
                .lock()
                .map(|mut f| f.insert(r.url.clone()))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let (gw, in_flight) = (gw.clone(), in_flight.clone());
            tokio::spawn(async move {
                if let Some(previous) = gw.jwks.refresh(&r.url).await {
                    gw.apply_jwks(&r.url, previous);
                }
                if let Ok(mut f) = in_flight.lock() {
                    f.remove(&r.url);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the watcher compares: every file of the config, with its size and
/// modification time, including files newly matching an include pattern.
fn fingerprint(settings: &Settings) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let mut files = settings.files.clone();
    for pattern in &settings.include_patterns {
        if let Ok(paths) = glob::glob(pattern) {
            files.extend(paths.filter_map(Result::ok));
        }
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (f, meta)
        })
        .collect()
}

/// Poll the config files and reload when one changes. Polling (rather than
/// inotify) also sees atomic renames and Kubernetes ConfigMap symlink swaps.
pub async fn watch_files(gw: Arc<Gateway>, every: Duration) {
    let mut last = fingerprint(&gw.snapshot().settings);
    loop {
        tokio::time::sleep(every).await;
        let now = fingerprint(&gw.snapshot().settings);
        if now != last {
            tracing::info!("configuration files changed; reloading");
            let _ = gw.reload();
            // After a failed reload this is the old file list with the new
            // times, so the same broken file is not reloaded every tick.
            last = fingerprint(&gw.snapshot().settings);
        }
    }
}
