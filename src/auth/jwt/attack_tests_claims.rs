//! The attack catalogue, part 2: claims, issuer choice, tampering, size and
//! encoding, end to end through `Verifier::verify`.

use super::issuer::{Issuer, KeySource};
use super::pyjwt_vectors as py;
use super::test_util::*;
use super::JwtError;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

#[test]
fn dates_and_audience() {
    let v = rsa_verifier();
    let exp = py::PY_IAT + 3600;
    let expired = v.verify(py::RS256, exp + 31).unwrap_err();
    assert_eq!(
        (expired, expired.code()),
        (JwtError::Expired, "token_expired")
    );
    assert!(v.verify(py::RS256, exp + 29).is_ok(), "leeway");
    assert_eq!(
        v.verify(py::PS256, py::PY_IAT - 100).err(),
        Some(JwtError::NotYetValid)
    );
    assert_eq!(
        v.verify(py::RS256_STR_EXP, NOW).err(),
        Some(JwtError::InvalidClaim)
    );

    let mut s = spec(&["HS256"], KeySource::HsSecret(HS_SECRET.to_vec()));
    s.audiences = vec!["portcullis".into(), "api".into()];
    let v = verifier(vec![Issuer::new(s).unwrap()]);
    let with = |extra: serde_json::Value| {
        let mut p = valid_claims();
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v.verify(&hs_token(p), NOW)
    };
    assert_eq!(
        with(json!({"aud": "other"})).err(),
        Some(JwtError::BadAudience)
    );
    assert_eq!(with(json!({})).err(), Some(JwtError::BadAudience));
    assert!(with(json!({"aud": ["x", "api"]})).is_ok());
    assert_eq!(
        with(json!({"nbf": NOW + 31})).err(),
        Some(JwtError::NotYetValid)
    );
    assert_eq!(
        with(json!({"iat": NOW + 31})).err(),
        Some(JwtError::IssuedInFuture)
    );
    assert_eq!(
        with(json!({"exp": "9999999999", "aud": "api"})).err(),
        Some(JwtError::InvalidClaim)
    );
    let no_exp = hs_token(json!({"iss": ISS, "sub": "a", "aud": "api"}));
    assert_eq!(v.verify(&no_exp, NOW).err(), Some(JwtError::MissingExpiry));
}

#[test]
fn issuer_selection() {
    let mut other = spec(
        &["HS256"],
        KeySource::HsSecret(b"another-issuer-secret-0000000000000".to_vec()),
    );
    other.issuer = "https://other.example".into();
    let v = verifier(vec![hs_issuer(), Issuer::new(other).unwrap()]);
    let key = EncodingKey::from_secret(HS_SECRET);
    let as_other = json!({"iss": "https://other.example", "sub": "a", "exp": NOW + 60}).to_string();
    // Signed with the first issuer's secret but claiming the second issuer.
    let t = sign_raw(r#"{"alg":"HS256"}"#, &as_other, &key, Algorithm::HS256);
    assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::BadSignature));
    for iss in [
        json!("https://evil.example"),
        json!("https://IDP.example"),
        json!(ISS.to_string() + "/"),
    ] {
        let t = hs_token(json!({"iss": iss, "sub": "a", "exp": NOW + 60}));
        assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::UnknownIssuer));
    }
    assert_eq!(
        v.verify(&hs_token(json!({"sub": "a", "exp": NOW + 60})), NOW)
            .err(),
        Some(JwtError::UnknownIssuer)
    );
    assert_eq!(
        v.verify(&hs_token(json!({"iss": [ISS], "sub": "a"})), NOW)
            .err(),
        Some(JwtError::InvalidClaim)
    );
    // An algorithm the issuer does not list.
    let t = sign_raw(
        r#"{"alg":"HS384"}"#,
        &valid_claims().to_string(),
        &key,
        Algorithm::HS384,
    );
    assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::AlgorithmRejected));
}

#[test]
fn stripped_and_tampered() {
    let v = rsa_verifier();
    let p = parts(py::RS256);
    assert_eq!(
        v.verify(&format!("{}.{}.", p[0], p[1]), NOW).err(),
        Some(JwtError::Malformed)
    );
    assert_eq!(
        v.verify(&format!("{}.{}", p[0], p[1]), NOW).err(),
        Some(JwtError::Malformed)
    );
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap();
    claims["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", p[0], b64(claims.to_string()), p[2]);
    assert_eq!(v.verify(&tampered, NOW).err(), Some(JwtError::BadSignature));
    // Signature of another token by the same key.
    let other = parts(py::RS512);
    let swapped = format!("{}.{}.{}", p[0], p[1], other[2]);
    assert_eq!(v.verify(&swapped, NOW).err(), Some(JwtError::BadSignature));
    // Header swapped to RS512 over an RS256 signature.
    let swapped = format!("{}.{}.{}", other[0], p[1], p[2]);
    assert_eq!(v.verify(&swapped, NOW).err(), Some(JwtError::BadSignature));
}

#[test]
fn size_and_encoding() {
    let v = verifier(vec![hs_issuer()]);
    let mut big = valid_claims();
    big["pad"] = json!("x".repeat(super::MAX_TOKEN_BYTES));
    assert_eq!(
        v.verify(&hs_token(big), NOW).err(),
        Some(JwtError::TooLarge)
    );
    let mut fits = valid_claims();
    fits["pad"] = json!("x".repeat(super::MAX_TOKEN_BYTES / 2));
    assert!(v.verify(&hs_token(fits), NOW).is_ok());

    let good = hs_token(valid_claims());
    assert!(v.verify(&good, NOW).is_ok());
    let p = parts(&good);
    let std_b64 = STANDARD.encode(valid_claims().to_string());
    let bad = [
        format!("{}=.{}.{}", p[0], p[1], p[2]),
        format!("{}.{}.{}=", p[0], p[1], p[2]),
        format!("{}.{}.{}", p[0], std_b64, p[2]),
        format!(
            "{}.{}.{}",
            p[0],
            p[1].replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1),
            p[2]
        ),
        format!(
            "{}.{}.{}",
            p[0],
            p[1],
            p[2].replacen(|c: char| c.is_ascii_alphanumeric(), "/", 1)
        ),
        format!("{} .{}.{}", p[0], p[1], p[2]),
        format!("{}.{}.{}", p[0], b64("{not json"), p[2]),
        format!("{}.{}.{}", b64("\u{feff}{\"alg\":\"HS256\"}"), p[1], p[2]),
        format!("{}..{}", p[0], p[2]),
        "..".to_string(),
        "abc".to_string(),
    ];
    for t in bad {
        assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::Malformed), "{t}");
    }
}

#[test]
fn errors_never_echo_token_content() {
    let v = verifier(vec![hs_issuer()]);
    let marker = "ATTACKER-MARKER";
    let tokens = [
        hs_token(json!({"iss": marker, "sub": marker})),
        hs_token(json!({"iss": ISS, "sub": marker, "exp": 1})),
        format!(
            "{}.{}.{}",
            b64(format!(r#"{{"alg":"{marker}"}}"#)),
            b64("{}"),
            b64(marker)
        ),
        marker.to_string(),
    ];
    for t in tokens {
        let e = v.verify(&t, NOW).unwrap_err();
        assert!(!e.to_string().contains(marker) && !format!("{e:?}").contains(marker));
    }
}
