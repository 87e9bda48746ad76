//! Raw YAML structs to typed [`Settings`], collecting every error.

use super::locate::Locator;
use super::raw::*;
use super::*;
use crate::auth::Scheme;
use crate::secret::{parse_hash, Secret};

/// Validation context for one file.
struct Ctx<'a> {
    file: PathBuf,
    loc: Locator,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: self.loc.line(field),
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    /// Expand `${VAR}` and `${VAR:-default}` in a string value.
    fn expand(&mut self, field: &str, value: &str) -> Option<String> {
        match expand_env(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(field, e);
                None
            }
        }
    }

    fn duration(&mut self, field: &str, value: &Option<String>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        let Some(v) = self.expand(field, v) else {
            return default;
        };
        match parse_duration(&v) {
            Ok(d) if d.is_zero() => {
                self.error(field, "must be more than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error(field, e);
                default
            }
        }
    }

    fn size(&mut self, field: &str, value: &Option<String>, default: usize) -> usize {
        let Some(v) = value else { return default };
        let Some(v) = self.expand(field, v) else {
            return default;
        };
        match parse_size(&v) {
            Ok(0) => {
                self.error(field, "must be more than zero");
                default
            }
            Ok(n) => n,
            Err(e) => {
                self.error(field, e);
                default
            }
        }
    }

    fn addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
        let v = self.expand(field, value)?;
        match v.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    field,
                    format!("`{v}` is not an address such as 127.0.0.1:8443"),
                );
                None
            }
        }
    }
}

/// Expand `${VAR}` / `${VAR:-default}`; `$$` is a literal `$`.
pub fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('{') {
            let end = a
                .find('}')
                .ok_or_else(|| "unclosed `${` in value".to_string())?;
            let expr = &a[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("`${{{name}}}` is not a valid variable name"));
            }
            match (std::env::var(name), default) {
                (Ok(v), _) => out.push_str(&v),
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &a[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn yaml_error(file: &Path, e: &serde_yaml::Error) -> ConfigError {
    // serde_yaml's message reads "path.to.field: reason at line L column C".
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    let (field, reason) = match msg.split_once(": ") {
        Some((f, r)) if !f.contains(' ') => (f.to_string(), r.to_string()),
        _ => (String::new(), msg),
    };
    ConfigError {
        file: file.to_path_buf(),
        line: e.location().map(|l| l.line()),
        field,
        reason,
    }
}

/// A field path as `validate` writes them: `routes[0].match.host`.
fn ignored_path(p: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => match ignored_path(parent) {
            pp if pp.is_empty() => key.clone(),
            pp => format!("{pp}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// Deserialize a YAML document, recording every unknown field as an error
/// (with its line) and going on, so the rest of the file is checked too.
fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    loc: &Locator,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let de = serde_yaml::Deserializer::from_str(text);
    match serde_ignored::deserialize(de, |p| unknown.push(ignored_path(&p))) {
        Ok(v) => {
            for field in unknown {
                let name = field.rsplit('.').next().unwrap_or(&field).to_string();
                errors.push(ConfigError {
                    file: path.to_path_buf(),
                    line: loc.line(&field),
                    reason: format!("unknown field `{name}`"),
                    field,
                });
            }
            Some(v)
        }
        Err(e) => {
            errors.push(yaml_error(path, &e));
            None
        }
    }
}

fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(ConfigError {
                file: path.to_path_buf(),
                line: None,
                field: String::new(),
                reason: format!("cannot read: {e}"),
            });
            None
        }
    }
}

pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let mut errors = Vec::new();
    let Some(text) = read(path, &mut errors) else {
        return Err(ConfigErrors(errors));
    };
    let loc = Locator::new(&text);
    let Some(raw) = parse_yaml::<RawConfig>(path, &text, &loc, &mut errors) else {
        return Err(ConfigErrors(errors));
    };
    let mut ctx = Ctx {
        file: path.to_path_buf(),
        loc,
        errors: &mut errors,
    };
    let mut warnings = Vec::new();
    let mut files = vec![path.to_path_buf()];

    let listen = listen(&mut ctx, &raw.listen);
    if let Some(l) = &listen {
        files.push(l.cert.clone());
        files.push(l.key.clone());
    }
    let admin = raw.admin.as_ref().and_then(|a| {
        let listen = ctx.addr("admin.listen", &a.listen)?;
        let token = match &a.token {
            Some(t) => Some(Secret::new(ctx.expand("admin.token", t)?)),
            None => None,
        };
        Some(Admin { listen, token })
    });
    let public_origin = raw.public_origin.as_ref().and_then(|o| {
        let o = ctx.expand("public_origin", o)?;
        match o.parse::<http::Uri>() {
            Ok(u)
                if u.scheme_str() == Some("https")
                    && u.authority().is_some()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none() =>
            {
                Some(o.trim_end_matches('/').to_ascii_lowercase())
            }
            _ => {
                ctx.error(
                    "public_origin",
                    "must be an origin such as https://api.example.com",
                );
                None
            }
        }
    });
    let limits = limits(&mut ctx, &raw.limits);
    let replay = replay(&mut ctx, &raw.replay);
    let log = log(&mut ctx, &raw.log);
    let routes = routes(&mut ctx, &raw.routes);

    let mut keys = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        if let Some(k) = key(&mut ctx, &format!("keys[{i}]"), k, &mut files) {
            keys.push(k);
        }
    }
    let jwt = raw.jwt.as_ref().map(|j| jwt(&mut ctx, j, &mut files));

    // Included key files, relative to the including file's folder.
    let base = path.parent().unwrap_or(Path::new("."));
    let mut include_patterns = Vec::new();
    for (i, pattern) in raw.include.iter().enumerate() {
        let field = format!("include[{i}]");
        let Some(p) = ctx.expand(&field, pattern) else {
            continue;
        };
        let full = base.join(&p).to_string_lossy().into_owned();
        match glob::glob(&full) {
            Ok(paths) => {
                let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                found.sort();
                if found.is_empty() {
                    warnings.push(format!("{field}: `{p}` matches no file"));
                }
                for f in found {
                    files.push(f.clone());
                    keys.extend(include_file(&f, ctx.errors, &mut files));
                }
            }
            Err(e) => ctx.error(&field, format!("bad pattern: {e}")),
        }
        include_patterns.push(full);
    }

    cross_checks(&mut ctx, &routes, &keys, jwt.as_ref(), &mut warnings);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let Some(listen) = listen else {
        return Err(ConfigErrors(errors));
    };
    files.sort();
    files.dedup();
    Ok(Settings {
        path: path.to_path_buf(),
        files,
        include_patterns,
        listen,
        admin,
        public_origin,
        limits,
        replay,
        log,
        routes,
        keys,
        jwt,
        warnings,
    })
}

fn include_file(
    path: &Path,
    errors: &mut Vec<ConfigError>,
    files: &mut Vec<PathBuf>,
) -> Vec<KeyConfig> {
    let Some(text) = read(path, errors) else {
        return Vec::new();
    };
    let first = text
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("---"))
        .unwrap_or("");
    let loc = Locator::new(&text);
    let (raw, prefix): (Option<Vec<RawKey>>, &str) = if first.starts_with('-') {
        (parse_yaml(path, &text, &loc, errors), "")
    } else if first.starts_with("keys:") {
        (
            parse_yaml::<RawKeyFile>(path, &text, &loc, errors).map(|f| f.keys),
            "keys",
        )
    } else {
        (
            parse_yaml::<RawKey>(path, &text, &loc, errors).map(|k| vec![k]),
            "",
        )
    };
    let Some(raw) = raw else {
        return Vec::new();
    };
    let single = !first.starts_with('-') && prefix.is_empty();
    let mut ctx = Ctx {
        file: path.to_path_buf(),
        loc,
        errors,
    };
    raw.iter()
        .enumerate()
        .filter_map(|(i, k)| {
            let field = if single {
                String::new()
            } else if prefix.is_empty() {
                format!("[{i}]")
            } else {
                format!("{prefix}[{i}]")
            };
            key(&mut ctx, &field, k, files)
        })
        .collect()
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

fn listen(ctx: &mut Ctx, l: &RawListen) -> Option<Listen> {
    let https = ctx.addr("listen.https", &l.https);
    let http = l.http.as_ref().and_then(|h| ctx.addr("listen.http", h));
    let cert = ctx
        .expand("listen.tls.cert", &l.tls.cert)
        .map(PathBuf::from);
    let key = ctx.expand("listen.tls.key", &l.tls.key).map(PathBuf::from);
    for (field, p) in [("listen.tls.cert", &cert), ("listen.tls.key", &key)] {
        if let Some(p) = p {
            if !p.is_file() {
                ctx.error(field, format!("file `{}` does not exist", p.display()));
            }
        }
    }
    Some(Listen {
        https: https?,
        cert: cert?,
        key: key?,
        http,
    })
}

fn limits(ctx: &mut Ctx, l: &RawLimits) -> Limits {
    let d = Limits::default();
    let max_header_bytes = ctx.size(
        "limits.max_header_bytes",
        &l.max_header_bytes,
        d.max_header_bytes,
    );
    if max_header_bytes < 8192 {
        ctx.error("limits.max_header_bytes", "must be at least 8KiB");
    }
    Limits {
        max_form_body: ctx.size("limits.max_form_body", &l.max_form_body, d.max_form_body),
        header_read_timeout: ctx.duration(
            "limits.header_read_timeout",
            &l.header_read_timeout,
            d.header_read_timeout,
        ),
        upstream_timeout: ctx.duration(
            "limits.upstream_timeout",
            &l.upstream_timeout,
            d.upstream_timeout,
        ),
        tls_handshake_timeout: ctx.duration(
            "limits.tls_handshake_timeout",
            &l.tls_handshake_timeout,
            d.tls_handshake_timeout,
        ),
        send_timeout: ctx.duration("limits.send_timeout", &l.send_timeout, d.send_timeout),
        max_header_bytes,
        max_connections: match l.max_connections {
            Some(0) => {
                ctx.error("limits.max_connections", "must be more than zero");
                d.max_connections
            }
            Some(n) => n as usize,
            None => d.max_connections,
        },
        shutdown_grace: ctx.duration("limits.shutdown_grace", &l.shutdown_grace, d.shutdown_grace),
    }
}

fn replay(ctx: &mut Ctx, r: &RawReplay) -> Replay {
    let window = ctx.duration("replay.window", &r.window, Duration::from_secs(300));
    let store = match r.store.as_ref().and_then(|s| ctx.expand("replay.store", s)) {
        None => ReplayStoreKind::Memory,
        Some(s) if s == "memory" => ReplayStoreKind::Memory,
        Some(s) if s.starts_with("redis://") || s.starts_with("rediss://") => {
            ctx.error(
                "replay.store",
                "the Redis replay store is not available in this version; use `memory`",
            );
            ReplayStoreKind::Redis(s)
        }
        Some(_) => {
            ctx.error("replay.store", "must be `memory` or a redis:// URL");
            ReplayStoreKind::Memory
        }
    };
    let max_nonces = match r.max_nonces {
        Some(0) => {
            ctx.error("replay.max_nonces", "must be more than zero");
            0
        }
        Some(n) => n as usize,
        None => 10_000_000,
    };
    Replay {
        window,
        store,
        max_nonces,
    }
}

fn log(ctx: &mut Ctx, l: &RawLog) -> Log {
    let format = match l.format.as_ref().and_then(|f| ctx.expand("log.format", f)) {
        None => LogFormat::Text,
        Some(f) if f == "text" => LogFormat::Text,
        Some(f) if f == "json" => LogFormat::Json,
        Some(_) => {
            ctx.error("log.format", "must be `text` or `json`");
            LogFormat::Text
        }
    };
    let level = l.level.as_ref().and_then(|v| ctx.expand("log.level", v));
    if let Some(v) = &level {
        if tracing_subscriber::EnvFilter::try_new(v).is_err() {
            ctx.error(
                "log.level",
                format!("`{v}` is not a level (error, warn, info, debug, trace) or filter"),
            );
        }
    }
    Log { format, level }
}

const ACTION_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-";

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The method-to-action map of SPEC section 2, before route overrides.
pub fn default_method_actions() -> BTreeMap<Method, String> {
    [
        (Method::GET, "read"),
        (Method::HEAD, "read"),
        (Method::OPTIONS, "read"),
        (Method::POST, "create"),
        (Method::PUT, "update"),
        (Method::PATCH, "update"),
        (Method::DELETE, "delete"),
    ]
    .into_iter()
    .map(|(m, a)| (m, a.to_string()))
    .collect()
}

fn routes(ctx: &mut Ctx, raw: &[RawRoute]) -> Vec<RouteConfig> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let f = |s: &str| format!("routes[{i}].{s}");
        let name = ctx.expand(&f("name"), &r.name).unwrap_or_default();
        if !valid_name(&name) {
            ctx.error(&f("name"), "must be letters, digits, `_`, `-` or `.`");
        }
        if out.iter().any(|o: &RouteConfig| o.name == name) {
            ctx.error(&f("name"), format!("route `{name}` is defined twice"));
        }
        let host = r
            .matcher
            .host
            .as_ref()
            .and_then(|h| ctx.expand(&f("match.host"), h))
            .map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                ctx.error(
                    &f("match.host"),
                    "must be a host name such as api.example.com",
                );
            }
        }
        let prefix = ctx
            .expand(&f("match.path_prefix"), &r.matcher.path_prefix)
            .unwrap_or_default();
        let trimmed = if prefix.len() > 1 {
            prefix.trim_end_matches('/')
        } else {
            prefix.as_str()
        };
        let path_prefix = match crate::path::normalize(trimmed) {
            Ok(p) if p == trimmed => p.into_owned(),
            _ => {
                ctx.error(
                    &f("match.path_prefix"),
                    "must be a normalised absolute path such as /model",
                );
                "/".into()
            }
        };
        let upstream = match r
            .upstream
            .as_ref()
            .and_then(|u| ctx.expand(&f("upstream"), u))
        {
            Some(u) => upstream(ctx, &f("upstream"), &u),
            None => {
                ctx.error(&f("upstream"), "is required");
                None
            }
        };
        let namespace = match r
            .namespace
            .as_ref()
            .and_then(|n| ctx.expand(&f("namespace"), n))
        {
            Some(n) if valid_name(&n) => n,
            Some(_) => {
                ctx.error(&f("namespace"), "must be letters, digits, `_`, `-` or `.`");
                String::new()
            }
            None if r.public => String::new(),
            None => {
                ctx.error(&f("namespace"), "is required unless the route is public");
                String::new()
            }
        };
        let schemes = match &r.schemes {
            None => Scheme::ALL.to_vec(),
            Some(list) => {
                let mut v = Vec::new();
                for (j, s) in list.iter().enumerate() {
                    match Scheme::parse(s) {
                        Some(s) if !v.contains(&s) => v.push(s),
                        Some(_) => {}
                        None => ctx.error(
                            &f(&format!("schemes[{j}]")),
                            format!("`{s}` is not one of oauth1, api_key, jwt, signed_url"),
                        ),
                    }
                }
                if v.is_empty() && !r.public {
                    ctx.error(&f("schemes"), "must list at least one scheme");
                }
                v
            }
        };
        let mut method_actions = default_method_actions();
        for (m, a) in &r.method_actions {
            let field = f(&format!("method_actions.{m}"));
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) if a.chars().all(|c| ACTION_CHARS.contains(c)) && !a.is_empty() => {
                    method_actions.insert(method, a.clone());
                }
                Ok(_) => ctx.error(
                    &field,
                    "action must be lower-case letters, digits, `_` or `-`",
                ),
                Err(_) => ctx.error(&field, format!("`{m}` is not an HTTP method")),
            }
        }
        out.push(RouteConfig {
            name,
            host,
            path_prefix,
            upstream,
            namespace,
            schemes,
            public: r.public,
            require_body_hash: r.require_body_hash,
            method_actions,
            preserve_host: r.preserve_host,
        });
    }
    out
}

fn upstream(ctx: &mut Ctx, field: &str, u: &str) -> Option<Upstream> {
    let uri = match u.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(_) => {
            ctx.error(field, format!("`{u}` is not a URL"));
            return None;
        }
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            ctx.error(
                field,
                "https upstreams are not supported yet; use http:// on a trusted network",
            );
            return None;
        }
        _ => {
            ctx.error(
                field,
                "must be an http:// URL such as http://127.0.0.1:9000",
            );
            return None;
        }
    }
    let Some(authority) = uri.authority().cloned() else {
        ctx.error(field, "has no host");
        return None;
    };
    if uri.query().is_some() || authority.as_str().contains('@') {
        ctx.error(field, "must not carry a query or user info");
        return None;
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Some(Upstream {
        authority,
        base_path,
    })
}

fn key(ctx: &mut Ctx, prefix: &str, k: &RawKey, files: &mut Vec<PathBuf>) -> Option<KeyConfig> {
    let f = |s: &str| join(prefix, s);
    let id = ctx.expand(&f("id"), &k.id)?;
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic() && c != ':') {
        ctx.error(
            &f("id"),
            "must be 1-128 visible ASCII characters without `:`",
        );
    }
    let owner = ctx.expand(&f("owner"), &k.owner)?;
    if owner.is_empty() || owner.chars().any(|c| c.is_control()) {
        ctx.error(
            &f("owner"),
            "must be a non-empty name without control characters",
        );
    }
    let name = k.name.as_ref().and_then(|n| ctx.expand(&f("name"), n));
    let secret = key_secret(ctx, &f, k, files);
    let mut grants = Vec::new();
    for (j, g) in k.grants.iter().enumerate() {
        let gf = |s: &str| f(&format!("grants[{j}].{s}"));
        let namespace = ctx
            .expand(&gf("namespace"), &g.namespace)
            .unwrap_or_default();
        if !valid_name(&namespace) {
            ctx.error(&gf("namespace"), "must be letters, digits, `_`, `-` or `.`");
        }
        let mut actions = Vec::new();
        for a in &g.actions {
            let a = a.to_ascii_lowercase();
            if a == "*" || (!a.is_empty() && a.chars().all(|c| ACTION_CHARS.contains(c))) {
                actions.push(a);
            } else {
                ctx.error(
                    &gf("actions"),
                    format!("`{a}` is not an action name or `*`"),
                );
            }
        }
        if actions.is_empty() {
            ctx.error(&gf("actions"), "must list at least one action");
        }
        let resources = g.resources.as_ref().map(|list| {
            list.iter()
                .filter_map(|r| {
                    if !r.starts_with('/') {
                        ctx.error(&gf("resources"), format!("`{r}` must start with /"));
                        return None;
                    }
                    if let Err(e) = crate::authorize::compile_glob(r) {
                        ctx.error(&gf("resources"), format!("`{r}`: {e}"));
                        return None;
                    }
                    Some(r.clone())
                })
                .collect()
        });
        grants.push(GrantConfig {
            namespace,
            actions,
            resources,
        });
    }
    let expires_at = match &k.expires_at {
        None => None,
        Some(s) => {
            let s = ctx.expand(&f("expires_at"), s)?;
            match time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339) {
                Ok(t) => Some(t.unix_timestamp()),
                Err(_) => {
                    ctx.error(
                        &f("expires_at"),
                        "must be an RFC 3339 time such as 2027-01-01T00:00:00Z",
                    );
                    None
                }
            }
        }
    };
    Some(KeyConfig {
        id,
        owner,
        name,
        secret: secret?,
        grants,
        allow_plaintext: k.allow_plaintext,
        disabled: k.disabled,
        expires_at,
    })
}

/// A plaintext secret must be written as `${VAR}`, never as the value itself,
/// so that config files can be shared and committed without secrets.
fn require_env(ctx: &mut Ctx, field: &str, value: &str) -> bool {
    let t = value.trim();
    let ok = t.starts_with("${") && t.ends_with('}');
    if !ok {
        ctx.error(
            field,
            "a plaintext secret must come from the environment (${VAR}), never the file itself",
        );
    }
    ok
}

/// The key's secret: exactly one of `secret_hash`, `secret` (as `${ENV}`)
/// or `secret_file`.
fn key_secret(
    ctx: &mut Ctx,
    f: &dyn Fn(&str) -> String,
    k: &RawKey,
    files: &mut Vec<PathBuf>,
) -> Option<KeySecret> {
    let given = [
        k.secret_hash.is_some(),
        k.secret.is_some(),
        k.secret_file.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        ctx.error(
            &f("secret_hash"),
            "give exactly one of secret_hash, secret (as ${ENV}) or secret_file",
        );
        return None;
    }
    if let Some(h) = &k.secret_hash {
        let h = ctx.expand(&f("secret_hash"), h)?;
        return match parse_hash(&h) {
            Some(h) => Some(KeySecret::Hash(h)),
            None => {
                ctx.error(
                    &f("secret_hash"),
                    "must be sha256: followed by 64 hex digits",
                );
                None
            }
        };
    }
    if let Some(s) = &k.secret {
        if !require_env(ctx, &f("secret"), s) {
            return None;
        }
        let v = ctx.expand(&f("secret"), s)?;
        if v.is_empty() {
            ctx.error(&f("secret"), "is empty");
            return None;
        }
        return Some(KeySecret::Plain(Secret::new(v)));
    }
    let p = PathBuf::from(ctx.expand(&f("secret_file"), k.secret_file.as_deref()?)?);
    match std::fs::read_to_string(&p) {
        Ok(s) => {
            files.push(p);
            let s = s.trim_end_matches(['\n', '\r']).to_string();
            if s.is_empty() {
                ctx.error(&f("secret_file"), "the file is empty");
                return None;
            }
            Some(KeySecret::Plain(Secret::new(s)))
        }
        Err(e) => {
            ctx.error(
                &f("secret_file"),
                format!("cannot read `{}`: {e}", p.display()),
            );
            None
        }
    }
}

fn jwt(ctx: &mut Ctx, j: &RawJwt, files: &mut Vec<PathBuf>) -> JwtConfig {
    let mut issuers = Vec::new();
    for (i, r) in j.issuers.iter().enumerate() {
        let f = |s: &str| format!("jwt.issuers[{i}].{s}");
        let issuer = ctx.expand(&f("issuer"), &r.issuer).unwrap_or_default();
        let sources = [
            r.jwks_file.is_some(),
            r.jwks_url.is_some(),
            r.hs_secret.is_some(),
            r.public_key_pem.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if sources != 1 {
            ctx.error(
                &f("issuer"),
                "give exactly one of jwks_file, jwks_url, hs_secret or public_key_pem",
            );
        }
        let jwks_url = r
            .jwks_url
            .as_ref()
            .and_then(|u| ctx.expand(&f("jwks_url"), u));
        if let Some(u) = &jwks_url {
            let ok = u
                .parse::<http::Uri>()
                .is_ok_and(|x| x.scheme_str() == Some("https") && x.authority().is_some());
            if !ok {
                ctx.error(&f("jwks_url"), "must be an https:// URL");
            }
        }
        let jwks_file = r
            .jwks_file
            .as_ref()
            .and_then(|p| ctx.expand(&f("jwks_file"), p))
            .map(PathBuf::from);
        if let Some(p) = &jwks_file {
            files.push(p.clone());
        }
        let public_key_pem = r
            .public_key_pem
            .as_ref()
            .and_then(|s| ctx.expand(&f("public_key_pem"), s));
        if let Some(p) = &public_key_pem {
            if !p.trim_start().starts_with("-----BEGIN") {
                files.push(PathBuf::from(p));
            }
        }
        if let Some(v) = &r.hs_secret {
            require_env(ctx, &f("hs_secret"), v);
        }
        issuers.push(IssuerConfig {
            issuer,
            audiences: r.audiences.clone(),
            algorithms: r.algorithms.clone(),
            jwks_file,
            jwks_url,
            hs_secret: r
                .hs_secret
                .as_ref()
                .and_then(|s| ctx.expand(&f("hs_secret"), s))
                .map(Secret::new),
            public_key_pem,
            subject_claim: r.subject_claim.clone().unwrap_or_else(|| "sub".into()),
            scope_claim: r.scope_claim.clone().unwrap_or_else(|| "scope".into()),
            leeway: ctx.duration(&f("leeway"), &r.leeway, Duration::from_secs(30)),
            require_exp: r.require_exp.unwrap_or(true),
            jwks_refresh: ctx.duration(
                &f("jwks_refresh"),
                &r.jwks_refresh,
                Duration::from_secs(300),
            ),
            jwks_min_refetch: ctx.duration(
                &f("jwks_min_refetch"),
                &r.jwks_min_refetch,
                Duration::from_secs(10),
            ),
        });
    }
    if let Some(v) = j.tokens.as_ref().and_then(|t| t.signing_key.as_ref()) {
        require_env(ctx, "jwt.tokens.signing_key", v);
    }
    let tokens = j.tokens.as_ref().and_then(|t| {
        let signing_key = t
            .signing_key
            .as_ref()
            .and_then(|s| ctx.expand("jwt.tokens.signing_key", s))
            .map(Secret::new);
        let ttl = ctx.duration("jwt.tokens.ttl", &t.ttl, Duration::from_secs(3600));
        let issuer = t.issuer.clone().unwrap_or_else(|| "portcullis".into());
        if signing_key.is_none() && t.signing_key.is_none() {
            ctx.error("jwt.tokens.signing_key", "is required to mint tokens");
        }
        Some(TokensConfig {
            issuer,
            ttl,
            signing_key: signing_key?,
        })
    });
    let revoked_jti_file = j
        .revoked_jti_file
        .as_ref()
        .and_then(|p| ctx.expand("jwt.revoked_jti_file", p))
        .map(PathBuf::from);
    if let Some(p) = &revoked_jti_file {
        files.push(p.clone());
    }
    let mut names: Vec<&str> = Vec::new();
    if let Some(t) = &tokens {
        names.push(t.issuer.as_str());
    }
    for (i, ic) in issuers.iter().enumerate() {
        if names.contains(&ic.issuer.as_str()) {
            ctx.error(
                &format!("jwt.issuers[{i}].issuer"),
                format!(
                    "`{}` is configured twice (jwt.tokens.issuer counts, default `portcullis`)",
                    ic.issuer
                ),
            );
        }
        names.push(ic.issuer.as_str());
    }
    JwtConfig {
        issuers,
        revoked_jti: j.revoked_jti.clone(),
        revoked_jti_file,
        tokens,
    }
}

fn cross_checks(
    ctx: &mut Ctx,
    routes: &[RouteConfig],
    keys: &[KeyConfig],
    jwt: Option<&JwtConfig>,
    warnings: &mut Vec<String>,
) {
    let mut seen = std::collections::HashSet::new();
    for k in keys {
        if !seen.insert(k.id.as_str()) {
            ctx.errors.push(ConfigError {
                file: ctx.file.clone(),
                line: None,
                field: "keys".into(),
                reason: format!("key id `{}` is defined twice", k.id),
            });
        }
    }
    let mut hashes = std::collections::HashMap::new();
    for k in keys {
        let h = match &k.secret {
            KeySecret::Hash(h) => *h,
            KeySecret::Plain(s) => crate::secret::sha256(s.expose().as_bytes()),
        };
        if let Some(first) = hashes.insert(h, k.id.as_str()) {
            ctx.errors.push(ConfigError {
                file: ctx.file.clone(),
                line: None,
                field: "keys".into(),
                reason: format!(
                    "keys `{first}` and `{}` have the same secret; every key needs its own",
                    k.id
                ),
            });
        }
    }
    let namespaces: std::collections::HashSet<&str> =
        routes.iter().map(|r| r.namespace.as_str()).collect();
    let oauth_namespaces: std::collections::HashSet<&str> = routes
        .iter()
        .filter(|r| !r.public && r.schemes.contains(&Scheme::OAuth1))
        .map(|r| r.namespace.as_str())
        .collect();
    for k in keys {
        for g in &k.grants {
            if !namespaces.contains(g.namespace.as_str()) {
                warnings.push(format!(
                    "key `{}`: grant for namespace `{}`, which no route uses",
                    k.id, g.namespace
                ));
            }
        }
        let signs_somewhere = k
            .grants
            .iter()
            .any(|g| oauth_namespaces.contains(g.namespace.as_str()));
        if signs_somewhere && matches!(k.secret, KeySecret::Hash(_)) {
            warnings.push(format!(
                "key `{}` stores only a secret hash: it cannot sign OAuth 1.0 requests (give `secret: ${{ENV}}` or `secret_file`)",
                k.id
            ));
        }
    }
    let mut pairs = std::collections::HashSet::new();
    for ic in jwt.iter().flat_map(|j| j.issuers.iter()) {
        if ic.audiences.is_empty() {
            warnings.push(format!(
                "issuer `{}` has no audiences: its tokens for any application are accepted",
                ic.issuer
            ));
        }
    }
    for r in routes {
        if !pairs.insert((r.host.clone(), r.path_prefix.clone())) {
            warnings.push(format!(
                "route `{}` has the same host and path_prefix as an earlier route and is never chosen",
                r.name
            ));
        }
        if r.public {
            warnings.push(format!(
                "route `{}` is public: it forwards requests without credentials",
                r.name
            ));
        }
    }
}
