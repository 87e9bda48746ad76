//! The attack catalogue, part 1: header, algorithm and key attacks, end to
//! end through `Verifier::verify`.

use super::issuer::{Issuer, KeySource};
use super::pyjwt_vectors as py;
use super::test_util::*;
use super::JwtError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

#[test]
fn alg_none_in_every_spelling() {
    let v = verifier(vec![hs_issuer()]);
    let payload = b64(valid_claims().to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        let unsigned = format!("{header}.{payload}.");
        assert_eq!(
            v.verify(&unsigned, NOW).err(),
            Some(JwtError::Malformed),
            "{alg}"
        );
        let with_sig = format!("{header}.{payload}.{}", b64("x"));
        assert_eq!(
            v.verify(&with_sig, NOW).err(),
            Some(JwtError::AlgorithmRejected),
            "{alg}"
        );
    }
}

#[test]
fn rs256_to_hs256_confusion() {
    let v = rsa_verifier();
    let pem_text = py::RSA_PUB_PEM;
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).unwrap();
    let jwk_text = serde_json::from_str::<serde_json::Value>(py::RS256_JWKS_JSON).unwrap()["keys"]
        [0]
    .to_string();
    let payload =
        json!({"iss": ISS, "sub": "admin", "aud": "portcullis", "exp": NOW + 600}).to_string();
    let secrets: Vec<Vec<u8>> = vec![
        pem_text.as_bytes().to_vec(),
        pem_text.trim().as_bytes().to_vec(),
        der,
        jwk_text.into_bytes(),
    ];
    for secret in secrets {
        for (alg, name) in [(Algorithm::HS256, "HS256"), (Algorithm::HS512, "HS512")] {
            let header = format!(r#"{{"alg":"{name}","typ":"JWT"}}"#);
            let t = sign_raw(&header, &payload, &EncodingKey::from_secret(&secret), alg);
            assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::AlgorithmRejected));
            // Control: a verifier that (wrongly) used those bytes as an HMAC
            // secret would accept the forgery, so the forgery is genuine.
            let mut naive = spec(&[name], KeySource::HsSecret(secret.clone()));
            naive.audiences = vec!["portcullis".into()];
            let naive = verifier(vec![Issuer::new(naive).unwrap()]);
            assert_eq!(&*naive.verify(&t, NOW).unwrap().subject, "admin");
        }
    }
    // And no configuration can put HS and RS on the same key.
    let mixed = spec(
        &["RS256", "HS256"],
        KeySource::PublicKeyPem(py::RSA_PUB_PEM.into()),
    );
    assert!(Issuer::new(mixed).is_err());
}

#[test]
fn unknown_kid_and_several_keys_without_kid() {
    let jwks = |kids: &[&str]| {
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| {
                let d = p256_scalar();
                let mut jwk = serde_json::to_value(
                    Jwk::from_encoding_key(
                        &EncodingKey::from_ec_der(&p256_pkcs8(&d)),
                        Algorithm::ES256,
                    )
                    .unwrap(),
                )
                .unwrap();
                jwk["kid"] = json!(kid);
                (d, jwk)
            })
            .collect();
        let doc = json!({"keys": keys.iter().map(|k| k.1.clone()).collect::<Vec<_>>()}).to_string();
        (keys, doc)
    };
    let (keys, doc) = jwks(&["a", "b"]);
    let v = verifier(vec![
        Issuer::new(spec(&["ES256"], KeySource::Jwks(doc))).unwrap()
    ]);
    let payload = valid_claims().to_string();
    let key_b = EncodingKey::from_ec_der(&p256_pkcs8(&keys[1].0));
    let good = sign_raw(
        r#"{"alg":"ES256","kid":"b"}"#,
        &payload,
        &key_b,
        Algorithm::ES256,
    );
    assert!(v.verify(&good, NOW).is_ok());
    let wrong_kid = sign_raw(
        r#"{"alg":"ES256","kid":"a"}"#,
        &payload,
        &key_b,
        Algorithm::ES256,
    );
    assert_eq!(
        v.verify(&wrong_kid, NOW).err(),
        Some(JwtError::BadSignature)
    );
    let unknown = sign_raw(
        r#"{"alg":"ES256","kid":"c"}"#,
        &payload,
        &key_b,
        Algorithm::ES256,
    );
    assert_eq!(v.verify(&unknown, NOW).err(), Some(JwtError::UnknownKey));
    let no_kid = sign_raw(r#"{"alg":"ES256"}"#, &payload, &key_b, Algorithm::ES256);
    assert_eq!(v.verify(&no_kid, NOW).err(), Some(JwtError::UnknownKey));
}

#[test]
fn embedded_jwk_and_key_urls() {
    let v = verifier(vec![Issuer::new(spec(
        &["EdDSA"],
        KeySource::PublicKeyPem(py::ED_PUB_PEM.into()),
    ))
    .unwrap()]);
    // The attacker signs with their own key and ships its public half.
    let attacker = ed25519_pkcs8();
    let key = EncodingKey::from_ed_der(&attacker);
    let payload = valid_claims().to_string();
    let headers = [
        format!(
            r#"{{"alg":"EdDSA","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{}"}}}}"#,
            b64([9u8; 32])
        ),
        r#"{"alg":"EdDSA","jku":"https://attacker.example/jwks.json"}"#.to_string(),
        r#"{"alg":"EdDSA","x5u":"https://attacker.example/cert.pem"}"#.to_string(),
        r#"{"alg":"EdDSA","x5c":["MIIBIjAN"]}"#.to_string(),
    ];
    for h in headers {
        let t = sign_raw(&h, &payload, &key, Algorithm::EdDSA);
        assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::EmbeddedKey), "{h}");
    }
    // Without the header the attacker's key is simply the wrong key.
    let t = sign_raw(r#"{"alg":"EdDSA"}"#, &payload, &key, Algorithm::EdDSA);
    assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::BadSignature));
}

#[test]
fn psychic_signature_cve_2022_21449() {
    let v = es_verifier();
    assert!(v.verify(py::ES256, NOW).is_ok());
    let p = parts(py::ES256);
    for sig in [
        vec![0u8; 64],
        vec![0u8; 0],
        [vec![0u8; 32], vec![1u8; 32]].concat(),
    ] {
        let t = format!("{}.{}.{}", p[0], p[1], b64(&sig));
        let want = if sig.is_empty() {
            JwtError::Malformed
        } else {
            JwtError::BadSignature
        };
        assert_eq!(v.verify(&t, NOW).err(), Some(want));
    }
    // The crypto backend refuses it on its own too (defence in depth).
    let key = jsonwebtoken::DecodingKey::from_ec_pem(py::EC_PUB_PEM.as_bytes()).unwrap();
    let input = format!("{}.{}", p[0], p[1]);
    let ok =
        jsonwebtoken::crypto::verify(&b64([0u8; 64]), input.as_bytes(), &key, Algorithm::ES256);
    assert!(!ok.unwrap_or(false));
}

#[test]
fn jwe_crit_duplicates() {
    let v = verifier(vec![hs_issuer()]);
    let key = EncodingKey::from_secret(HS_SECRET);
    let payload = valid_claims().to_string();
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
        b64("k"),
        b64("iv"),
        b64("ct"),
        b64("tag")
    );
    assert_eq!(v.verify(&jwe, NOW).err(), Some(JwtError::Encrypted));
    let enc3 = sign_raw(
        r#"{"alg":"HS256","enc":"A256GCM"}"#,
        &payload,
        &key,
        Algorithm::HS256,
    );
    assert_eq!(v.verify(&enc3, NOW).err(), Some(JwtError::Encrypted));
    let crit = sign_raw(
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        &payload,
        &key,
        Algorithm::HS256,
    );
    assert_eq!(v.verify(&crit, NOW).err(), Some(JwtError::CriticalHeader));
    let b64_ext = sign_raw(
        r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
        &payload,
        &key,
        Algorithm::HS256,
    );
    assert_eq!(
        v.verify(&b64_ext, NOW).err(),
        Some(JwtError::CriticalHeader)
    );
    let dup_header = sign_raw(
        r#"{"alg":"HS256","alg":"none"}"#,
        &payload,
        &key,
        Algorithm::HS256,
    );
    assert_eq!(
        v.verify(&dup_header, NOW).err(),
        Some(JwtError::DuplicateKey)
    );
    let dup_sub = format!(
        r#"{{"iss":"{ISS}","sub":"alice","exp":{},"sub":"admin"}}"#,
        NOW + 60
    );
    let t = sign_raw(r#"{"alg":"HS256"}"#, &dup_sub, &key, Algorithm::HS256);
    assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::DuplicateKey));
    let dup_iss = format!(
        r#"{{"iss":"https://evil","sub":"a","exp":{},"i\u0073s":"{ISS}"}}"#,
        NOW + 60
    );
    let t = sign_raw(r#"{"alg":"HS256"}"#, &dup_iss, &key, Algorithm::HS256);
    assert_eq!(v.verify(&t, NOW).err(), Some(JwtError::DuplicateKey));
}
