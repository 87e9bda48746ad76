//! Structural checks on a compact JWS, before any key is touched.

use super::strict_json::{self, StrictJsonError};
use super::{parse_algorithm, Algorithm, JwtError, MAX_TOKEN_BYTES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// Header members that would let the token choose its own key. Keys come
/// from configuration only, so a token carrying one is refused outright
/// (rather than silently ignored) to surface misbehaving issuers and probes.
const KEY_HEADERS: [&str; 4] = ["jku", "jwk", "x5u", "x5c"];

/// A token whose shape and header passed, its signature not yet checked.
pub(crate) struct Parsed<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub payload: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`, the signed bytes.
    pub signing_input: &'a str,
    /// The third part, still base64url.
    pub signature_b64: &'a str,
    pub signature: Vec<u8>,
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    // Unpadded, canonical (no stray trailing bits), URL-safe alphabet only.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

fn json(bytes: &[u8]) -> Result<Map<String, Value>, JwtError> {
    strict_json::parse_object(bytes).map_err(|e| match e {
        StrictJsonError::Duplicate => JwtError::DuplicateKey,
        StrictJsonError::Invalid => JwtError::Malformed,
    })
}

pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => {}
        5 => return Err(JwtError::Encrypted),
        _ => return Err(JwtError::Malformed),
    }
    if parts.iter().any(|p| p.is_empty()) {
        // Includes the "stripped signature" form `header.payload.`.
        return Err(JwtError::Malformed);
    }
    let header = json(&b64(parts[0])?)?;

    let alg_name = match header.get("alg") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(JwtError::Malformed),
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(JwtError::AlgorithmRejected);
    }
    if header.contains_key("enc") {
        return Err(JwtError::Encrypted);
    }
    if header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    if KEY_HEADERS.iter().any(|k| header.contains_key(*k)) {
        return Err(JwtError::EmbeddedKey);
    }
    let alg = parse_algorithm(alg_name).ok_or(JwtError::AlgorithmRejected)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };

    let payload = json(&b64(parts[1])?)?;
    let signature = b64(parts[2])?;
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    Ok(Parsed {
        alg,
        kid,
        payload,
        signing_input,
        signature_b64: parts[2],
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn tok(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", enc(header), enc(payload), enc("sig"))
    }

    #[test]
    fn good_shape() {
        let t = tok(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"x"}"#,
        );
        let p = parse(&t).unwrap();
        assert_eq!(p.alg, Algorithm::RS256);
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.payload["iss"], "x");
        assert_eq!(p.signature, b"sig");
        assert_eq!(p.signing_input.matches('.').count(), 1);
    }

    #[test]
    fn shape_errors() {
        let h = enc(r#"{"alg":"HS256"}"#);
        let p = enc("{}");
        assert_eq!(parse("").err(), Some(JwtError::Malformed));
        assert_eq!(parse(&format!("{h}.{p}")).err(), Some(JwtError::Malformed));
        assert_eq!(parse(&format!("{h}.{p}.")).err(), Some(JwtError::Malformed));
        assert_eq!(
            parse(&format!("{h}.{p}.c.d")).err(),
            Some(JwtError::Malformed)
        );
        assert_eq!(
            parse(&format!("{h}.a.b.c.d")).err(),
            Some(JwtError::Encrypted)
        );
        assert_eq!(
            parse(&format!("{h}=.{p}.c2ln")).err(),
            Some(JwtError::Malformed)
        );
        assert_eq!(
            parse(&format!("{h}.{p}.c2l+")).err(),
            Some(JwtError::Malformed)
        );
        // Non-canonical trailing bits ("c2k" is "si", "c2l" has stray bits).
        assert!(parse(&format!("{h}.{p}.c2k")).is_ok());
        assert_eq!(
            parse(&format!("{h}.{p}.c2l")).err(),
            Some(JwtError::Malformed)
        );
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse(&big).err(), Some(JwtError::TooLarge));
    }

    #[test]
    fn header_errors() {
        let cases = [
            (r#"{"alg":"none"}"#, JwtError::AlgorithmRejected),
            (r#"{"alg":"NoNe"}"#, JwtError::AlgorithmRejected),
            (r#"{"alg":"rs256"}"#, JwtError::AlgorithmRejected),
            (r#"{"alg":"ES512"}"#, JwtError::AlgorithmRejected),
            (r#"{"alg":256}"#, JwtError::Malformed),
            (r#"{"typ":"JWT"}"#, JwtError::Malformed),
            (r#"["alg"]"#, JwtError::Malformed),
            (r#"{"alg":"RS256","enc":"A128GCM"}"#, JwtError::Encrypted),
            (
                r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
                JwtError::CriticalHeader,
            ),
            (r#"{"alg":"RS256","crit":[]}"#, JwtError::CriticalHeader),
            (
                r#"{"alg":"RS256","jku":"https://evil/"}"#,
                JwtError::EmbeddedKey,
            ),
            (
                r#"{"alg":"RS256","x5u":"https://evil/"}"#,
                JwtError::EmbeddedKey,
            ),
            (r#"{"alg":"RS256","x5c":["MII="]}"#, JwtError::EmbeddedKey),
            (
                r#"{"alg":"RS256","jwk":{"kty":"oct"}}"#,
                JwtError::EmbeddedKey,
            ),
            (r#"{"alg":"RS256","kid":7}"#, JwtError::Malformed),
            (r#"{"alg":"RS256","alg":"RS256"}"#, JwtError::DuplicateKey),
        ];
        for (header, want) in cases {
            assert_eq!(parse(&tok(header, "{}")).err(), Some(want), "{header}");
        }
    }

    #[test]
    fn payload_errors() {
        let h = r#"{"alg":"RS256"}"#;
        assert_eq!(
            parse(&tok(h, r#"{"sub":"a","sub":"b"}"#)).err(),
            Some(JwtError::DuplicateKey)
        );
        assert_eq!(parse(&tok(h, "[]")).err(), Some(JwtError::Malformed));
        assert_eq!(parse(&tok(h, "{")).err(), Some(JwtError::Malformed));
    }
}
