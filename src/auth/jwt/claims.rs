//! Registered-claim checks and extraction of [`Claims`], run only after the
//! signature has been verified.

use super::issuer::Issuer;
use super::{Claims, JwtError, Scope};
use serde_json::{Map, Value};

#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// A NumericDate: a JSON number (never a string), finite and not negative.
/// Fractions round towards the stricter side (`exp` down, `nbf`/`iat` up).
fn date(payload: &Map<String, Value>, name: &str, round: Round) -> Result<Option<u64>, JwtError> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(Some(u));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                    Ok(Some(match round {
                        Round::Down => f.floor() as u64,
                        Round::Up => f.ceil() as u64,
                    }))
                }
                _ => Err(JwtError::InvalidClaim),
            }
        }
        Some(_) => Err(JwtError::InvalidClaim),
    }
}

fn opt_string(payload: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::InvalidClaim),
    }
}

fn check_audience(issuer: &Issuer, aud: Option<&Value>) -> Result<(), JwtError> {
    let list: Vec<&str> = match aud {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(JwtError::InvalidClaim))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::InvalidClaim),
    };
    if issuer.audiences.is_empty() || list.iter().any(|a| issuer.audiences.iter().any(|c| c == a)) {
        Ok(())
    } else {
        Err(JwtError::BadAudience)
    }
}

/// `ns:action[:resource]`; the resource is everything after the second
/// colon. Anything else (e.g. OIDC's `openid`) grants nothing: `None`.
pub(crate) fn parse_scope_item(item: &str) -> Option<Scope> {
    let mut parts = item.splitn(3, ':');
    let namespace = parts.next()?;
    let action = parts.next()?;
    let resource = parts.next();
    if namespace.is_empty() || action.is_empty() || resource == Some("") {
        return None;
    }
    Some(Scope {
        namespace: namespace.to_string(),
        action: action.to_ascii_lowercase(),
        resource: resource.map(str::to_string),
    })
}

/// A space-separated string (RFC 8693 `scope`) or an array of strings.
fn scopes(value: Option<&Value>) -> Result<Vec<Scope>, JwtError> {
    let items: Vec<&str> = match value {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(JwtError::InvalidClaim))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(JwtError::InvalidClaim),
    };
    // Each item becomes a compiled grant per request: bound the work.
    if items.len() > super::MAX_SCOPE_ITEMS {
        return Err(JwtError::InvalidClaim);
    }
    Ok(items.into_iter().filter_map(parse_scope_item).collect())
}

pub(crate) fn validate(
    issuer: &Issuer,
    payload: &Map<String, Value>,
    now: u64,
    token_hash: [u8; 32],
) -> Result<Claims, JwtError> {
    let leeway = issuer.leeway;
    let exp = date(payload, "exp", Round::Down)?;
    let nbf = date(payload, "nbf", Round::Up)?;
    let iat = date(payload, "iat", Round::Up)?;
    match exp {
        None if issuer.require_exp => return Err(JwtError::MissingExpiry),
        Some(exp) if now >= exp.saturating_add(leeway) => return Err(JwtError::Expired),
        _ => {}
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(JwtError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(JwtError::IssuedInFuture);
    }
    check_audience(issuer, payload.get("aud"))?;
    let subject = match payload.get(&issuer.subject_claim) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::String(_)) => return Err(JwtError::MissingSubject),
        Some(_) => return Err(JwtError::InvalidClaim),
    };
    let key_id = match &issuer.key_id_claim {
        Some(name) => opt_string(payload, name)?,
        None => None,
    };
    Ok(Claims {
        issuer: issuer.issuer.as_str().into(),
        subject: subject.into(),
        scopes: scopes(payload.get(&issuer.scope_claim))?,
        jti: opt_string(payload, "jti")?,
        exp,
        key_id: key_id.map(Into::into),
        token_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::issuer::{IssuerSpec, KeySource};
    use serde_json::json;
    use std::time::Duration;

    fn issuer(audiences: &[&str], require_exp: bool) -> Issuer {
        Issuer::new(IssuerSpec {
            issuer: "iss".into(),
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
            algorithms: vec!["HS256".into()],
            key: KeySource::HsSecret(vec![1; 32]),
            subject_claim: "sub".into(),
            scope_claim: "scope".into(),
            key_id_claim: Some("pc_key".into()),
            leeway: Duration::from_secs(10),
            require_exp,
        })
        .unwrap()
    }

    fn check(iss: &Issuer, payload: Value, now: u64) -> Result<Claims, JwtError> {
        validate(iss, payload.as_object().unwrap(), now, [0; 32])
    }

    #[test]
    fn dates() {
        let i = issuer(&[], true);
        let ok = |p: Value| check(&i, p, 1000);
        assert!(ok(json!({"sub":"a","exp":1001})).is_ok());
        assert!(ok(json!({"sub":"a","exp":995})).is_ok()); // within leeway
        assert_eq!(
            ok(json!({"sub":"a","exp":990})).err(),
            Some(JwtError::Expired)
        );
        assert_eq!(
            ok(json!({"sub":"a","exp":990.9})).err(),
            Some(JwtError::Expired)
        );
        assert_eq!(ok(json!({"sub":"a"})).err(), Some(JwtError::MissingExpiry));
        assert_eq!(
            ok(json!({"sub":"a","exp":"2000"})).err(),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(
            ok(json!({"sub":"a","exp":-1})).err(),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(
            ok(json!({"sub":"a","exp":null})).err(),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(
            ok(json!({"sub":"a","exp":2000,"nbf":1011})).err(),
            Some(JwtError::NotYetValid)
        );
        assert!(ok(json!({"sub":"a","exp":2000,"nbf":1010})).is_ok());
        assert_eq!(
            ok(json!({"sub":"a","exp":2000,"nbf":"1"})).err(),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(
            ok(json!({"sub":"a","exp":2000,"iat":1010.5})).err(),
            Some(JwtError::IssuedInFuture)
        );
        assert_eq!(
            ok(json!({"sub":"a","exp":2000,"iat":[1]})).err(),
            Some(JwtError::InvalidClaim)
        );
        let lax = issuer(&[], false);
        assert_eq!(check(&lax, json!({"sub":"a"}), 1000).unwrap().exp, None);
    }

    #[test]
    fn audience() {
        let i = issuer(&["api", "web"], true);
        let with = |aud: Value| check(&i, json!({"sub":"a","exp":2000,"aud":aud}), 1000);
        assert!(with(json!("web")).is_ok());
        assert!(with(json!(["x", "api"])).is_ok());
        assert_eq!(with(json!("x")).err(), Some(JwtError::BadAudience));
        assert_eq!(with(json!([])).err(), Some(JwtError::BadAudience));
        assert_eq!(with(json!(["x", 1])).err(), Some(JwtError::InvalidClaim));
        assert_eq!(with(json!(null)).err(), Some(JwtError::InvalidClaim));
        assert_eq!(
            check(&i, json!({"sub":"a","exp":2000}), 1000).err(),
            Some(JwtError::BadAudience)
        );
    }

    #[test]
    fn subject_scope_key_id() {
        let i = issuer(&[], true);
        let c = check(
            &i,
            json!({"sub":"bob","exp":2000,"jti":"j","pc_key":"k1","scope":"openid a:READ a:get:/x/** b:*:/c:d"}),
            1000,
        )
        .unwrap();
        assert_eq!(
            (&*c.subject, c.jti.as_deref(), c.key_id.as_deref()),
            ("bob", Some("j"), Some("k1"))
        );
        let s = |n: &str, a: &str, r: Option<&str>| Scope {
            namespace: n.into(),
            action: a.into(),
            resource: r.map(Into::into),
        };
        assert_eq!(
            c.scopes,
            vec![
                s("a", "read", None),
                s("a", "get", Some("/x/**")),
                s("b", "*", Some("/c:d"))
            ]
        );
        let arr = check(
            &i,
            json!({"sub":"b","exp":2000,"scope":["a:b", ":x", "a:", "a:b:"]}),
            1000,
        )
        .unwrap();
        assert_eq!(arr.scopes, vec![s("a", "b", None)]);
        let bad = |p: Value| check(&i, p, 1000).err();
        assert_eq!(
            bad(json!({"sub":"b","exp":2000,"scope":7})),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(
            bad(json!({"sub":"b","exp":2000,"scope":["a:b", 1]})),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(bad(json!({"exp":2000})), Some(JwtError::MissingSubject));
        assert_eq!(
            bad(json!({"sub":"","exp":2000})),
            Some(JwtError::MissingSubject)
        );
        assert_eq!(
            bad(json!({"sub":5,"exp":2000})),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(
            bad(json!({"sub":"a","exp":2000,"jti":5})),
            Some(JwtError::InvalidClaim)
        );
        assert_eq!(
            bad(json!({"sub":"a","exp":2000,"pc_key":[]})),
            Some(JwtError::InvalidClaim)
        );
    }
}
