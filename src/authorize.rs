//! Grants: does this identity hold `namespace:action` for this path?

use crate::error::{err, Code, GatewayError};
use crate::routes::Route;
use globset::{Glob, GlobBuilder, GlobMatcher};
use http::Method;
use std::borrow::Cow;

/// A grant compiled for matching.
#[derive(Debug, Clone)]
pub struct Grant {
    pub namespace: String,
    /// Lower-case action names; `*` means every action.
    pub actions: Vec<String>,
    /// Resource globs over the normalised path; `None` means every path.
    pub resources: Option<Vec<Resource>>,
    /// This grant's `namespace:action` pairs, each once, as `X-Auth-Grants`
    /// lists them: built once here, and sent as they are when this is the
    /// one grant that covers a request (the usual case).
    pairs: String,
}

/// One compiled resource glob. The common shapes, a literal path and a
/// literal followed by one trailing `*` (`/model/ABC-*`), are matched
/// without the glob's regex; everything else goes through globset.
#[derive(Debug, Clone)]
pub struct Resource {
    glob: GlobMatcher,
    fast: Fast,
}

#[derive(Debug, Clone)]
enum Fast {
    /// The pattern has no glob syntax: the path must equal it.
    Exact(String),
    /// A literal then one `*`: the literal, then anything but `/`.
    SegmentTail(String),
    None,
}

impl Resource {
    pub fn new(glob: Glob) -> Self {
        let pattern = glob.glob();
        let literal = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
        let fast = match pattern.strip_suffix('*') {
            Some(head) if literal(head) => Fast::SegmentTail(head.to_string()),
            _ if literal(pattern) => Fast::Exact(pattern.to_string()),
            _ => Fast::None,
        };
        Resource {
            glob: glob.compile_matcher(),
            fast,
        }
    }

    /// The glob as configured.
    pub fn glob(&self) -> &Glob {
        self.glob.glob()
    }

    pub fn is_match(&self, path: &str) -> bool {
        match &self.fast {
            Fast::Exact(p) => path == p,
            Fast::SegmentTail(head) => path
                .strip_prefix(head.as_str())
                .is_some_and(|rest| !rest.contains('/')),
            Fast::None => self.glob.is_match(path),
        }
    }
}

/// `*` matches within one path segment, `**` across segments, `?` one
/// character, `{a,b}` either.
pub fn compile_glob(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

impl Grant {
    pub fn new(namespace: &str, actions: &[String], resources: Option<&[String]>) -> Self {
        let mut pairs = String::new();
        add_pairs(&mut pairs, namespace, actions);
        Grant {
            namespace: namespace.to_string(),
            actions: actions.to_vec(),
            pairs,
            resources: resources.map(|list| {
                list.iter()
                    .filter_map(|r| compile_glob(r).ok().map(Resource::new))
                    .collect()
            }),
        }
    }

    fn covers_path(&self, path: &str) -> bool {
        match &self.resources {
            None => true,
            Some(globs) => globs.iter().any(|g| g.is_match(path)),
        }
    }

    fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == "*" || a == action)
    }
}

/// The action a method stands for on this route.
pub fn action_for<'r>(route: &'r Route, method: &Method) -> Option<&'r str> {
    route.config.method_actions.get(method).map(String::as_str)
}

/// `ns:action` for each of `actions` not yet in `out` (space-separated), in
/// order. A key holds a handful of actions, so looking back through `out`
/// costs less than a separate list.
fn add_pairs(out: &mut String, ns: &str, actions: &[String]) {
    for a in actions {
        let seen = out
            .split(' ')
            .any(|pair| pair.len() == ns.len() + 1 + a.len() && pair.ends_with(a.as_str()));
        if !seen {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(ns);
            out.push(':');
            out.push_str(a);
        }
    }
}

/// Check the grants; on success return the `X-Auth-Grants` value: the
/// `namespace:action` pairs that hold for this namespace and path.
pub fn authorize<'a>(
    route: &Route,
    method: &Method,
    path: &str,
    grants: &'a [Grant],
) -> Result<Cow<'a, str>, GatewayError> {
    let ns = route.config.namespace.as_str();
    let Some(action) = action_for(route, method) else {
        return Err(err(
            Code::InsufficientGrant,
            format!("the method {method} maps to no action on this route"),
        ));
    };
    let mut held = false;
    // The first grant that covers the path lends its own pairs; only when a
    // second one does too is a list built.
    let mut out: Cow<'a, str> = Cow::Borrowed("");
    for g in grants {
        if g.namespace != ns || !g.covers_path(path) {
            continue;
        }
        held |= g.allows(action);
        if out.is_empty() {
            out = Cow::Borrowed(g.pairs.as_str());
        } else {
            add_pairs(out.to_mut(), ns, &g.actions);
        }
    }
    if !held {
        return Err(err(
            Code::InsufficientGrant,
            format!("this key holds no grant for {ns}:{action} on this path"),
        ));
    }
    Ok(out)
}

/// Authorize against the identity's grants and, for a gateway-minted token,
/// against its key's current grants as well; `X-Auth-Grants` lists the
/// pairs both hold.
pub fn authorize_identity<'a>(
    route: &Route,
    method: &Method,
    path: &str,
    identity: &'a crate::auth::Identity,
) -> Result<Cow<'a, str>, GatewayError> {
    let held = authorize(route, method, path, &identity.grants)?;
    let Some(ceiling) = &identity.ceiling else {
        return Ok(held);
    };
    let cap = authorize(route, method, path, ceiling)?;
    let wildcard = format!("{}:*", route.config.namespace);
    let held_pairs: Vec<&str> = held.split(' ').collect();
    let cap_pairs: Vec<&str> = cap.split(' ').collect();
    // Pairs both hold; `ns:*` on one side stands for every pair of the other.
    let capped: Vec<&str> = if held_pairs.contains(&wildcard.as_str()) {
        cap_pairs
    } else if cap_pairs.contains(&wildcard.as_str()) {
        held_pairs
    } else {
        held_pairs
            .into_iter()
            .filter(|p| cap_pairs.contains(p))
            .collect()
    };
    Ok(Cow::Owned(capped.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scheme;
    use crate::config::RouteConfig;
    use crate::routes::RouteTable;

    fn table() -> RouteTable {
        RouteTable::new(&[RouteConfig {
            name: "models".into(),
            host: None,
            path_prefix: "/model".into(),
            upstream: None,
            namespace: "models".into(),
            schemes: Scheme::ALL.to_vec(),
            public: false,
            require_body_hash: false,
            method_actions: crate::config::default_method_actions(),
            preserve_host: false,
        }])
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn fast_resource_matching_agrees_with_the_glob() {
        let patterns = [
            "/model/ABC-*",
            "/model/ABC-1",
            "/model/*",
            "/*",
            "/model/",
            "/model/a.b*",
            "/model/**",
            "/model/*/files",
            "/model/ABC-?",
            "/model/{a,b}*",
            "/model/[ab]*",
            "/model/\\*",
        ];
        let paths = [
            "/",
            "/model",
            "/model/",
            "/model/ABC-",
            "/model/ABC-1",
            "/model/ABC-12",
            "/model/ABC-1/",
            "/model/ABC-1/files",
            "/model/abc-1",
            "/model/x/files",
            "/model/a.b",
            "/model/a.bc",
            "/model/axb",
            "/model/*",
            "/model/a",
            "/model/bz",
            "/modelx",
            "/model//x",
        ];
        let mut fast = 0;
        for p in patterns {
            let r = Resource::new(compile_glob(p).unwrap());
            let plain = compile_glob(p).unwrap().compile_matcher();
            fast += usize::from(!matches!(r.fast, Fast::None));
            for path in paths {
                assert_eq!(r.is_match(path), plain.is_match(path), "{p} on {path}");
            }
        }
        assert_eq!(fast, 6, "the shapes with a fast path");
    }

    #[test]
    fn actions_and_resources() {
        let t = table();
        let r = t.lookup(None, "/model/ABC-1").unwrap();
        let grants = vec![Grant::new(
            "models",
            &s(&["create", "read"]),
            Some(&s(&["/model/ABC-*"])),
        )];
        assert_eq!(
            authorize(r, &Method::GET, "/model/ABC-1", &grants).unwrap(),
            "models:create models:read"
        );
        assert!(authorize(r, &Method::POST, "/model/ABC-1", &grants).is_ok());
        let e = authorize(r, &Method::DELETE, "/model/ABC-1", &grants).unwrap_err();
        assert_eq!(e.code, Code::InsufficientGrant);
        assert!(authorize(r, &Method::GET, "/model/XYZ-1", &grants).is_err());
        // `*` stays inside a segment.
        assert!(authorize(r, &Method::GET, "/model/ABC-1/files", &grants).is_err());
        assert!(authorize(
            r,
            &Method::from_bytes(b"PURGE").unwrap(),
            "/model/ABC-1",
            &grants
        )
        .is_err());
    }

    #[test]
    fn each_pair_is_listed_once_in_grant_order() {
        let t = table();
        let r = t.lookup(None, "/model/ABC-1").unwrap();
        let grants = vec![
            Grant::new("models", &s(&["read", "re"]), None),
            Grant::new("other", &s(&["delete"]), None),
            Grant::new("models", &s(&["create", "read", "ad", "re"]), None),
        ];
        assert_eq!(
            authorize(r, &Method::GET, "/model/ABC-1", &grants).unwrap(),
            "models:read models:re models:create models:ad"
        );
    }

    #[test]
    fn gateway_token_wildcard_lists_the_pairs_both_hold() {
        let t = table();
        let r = t.lookup(None, "/model/x").unwrap();
        let identity = |token: &[&str], key: &[&str]| crate::auth::Identity {
            scheme: Scheme::Jwt,
            subject: "a".into(),
            key_id: Some("K".into()),
            issuer: None,
            grants: std::sync::Arc::new(vec![Grant::new("models", &s(token), None)]),
            ceiling: Some(std::sync::Arc::new(vec![Grant::new(
                "models",
                &s(key),
                None,
            )])),
        };
        let id = identity(&["*"], &["read", "create"]);
        assert_eq!(
            authorize_identity(r, &Method::GET, "/model/x", &id).unwrap(),
            "models:read models:create"
        );
        let id = identity(&["read"], &["*"]);
        assert_eq!(
            authorize_identity(r, &Method::GET, "/model/x", &id).unwrap(),
            "models:read"
        );
        let id = identity(&["read", "delete"], &["read", "create"]);
        assert_eq!(
            authorize_identity(r, &Method::GET, "/model/x", &id).unwrap(),
            "models:read"
        );
        // The key's grants cap the token: a narrowed key refuses at once.
        assert!(authorize_identity(r, &Method::DELETE, "/model/x", &id).is_err());
    }

    #[test]
    fn other_namespace_and_wildcard() {
        let t = table();
        let r = t.lookup(None, "/model/x").unwrap();
        let other = vec![Grant::new("billing", &s(&["*"]), None)];
        assert!(authorize(r, &Method::GET, "/model/x", &other).is_err());
        let all = vec![Grant::new("models", &s(&["*"]), Some(&s(&["/model/**"])))];
        assert_eq!(
            authorize(r, &Method::DELETE, "/model/x/y", &all).unwrap(),
            "models:*"
        );
    }
}
