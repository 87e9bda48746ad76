//! JWT verification cost: HS256, RS256 and ES256, cold (every call a cache
//! miss: the full parse, signature check and claim validation) and cached
//! (the same token again: a SHA-256 of the token and a cache lookup).
//!
//! No key material is committed: the RSA and P-256 keys are generated when
//! the bench starts with the `openssl` CLI into a temporary directory, and
//! the HS256 secret is random. HS256 and ES256 tokens are minted with the
//! gateway's own `Minter`; RS256 tokens (the Minter does not sign RSA) with
//! `jsonwebtoken`, as an identity provider would.
//!
//! Run: `cargo bench --bench jwt` (needs `openssl` on PATH).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis::auth::jwt::{CacheOptions, Issuer, IssuerSpec, KeySource, Minter, Verifier};
use rand::RngCore;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISS: &str = "https://idp.bench.test";
const SCOPE: &str = "models:read models:create";
/// Distinct tokens per algorithm for the cold runs (cycled).
const COLD_TOKENS: usize = 64;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1_800_000_000)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (needed to generate bench keys): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(private PKCS#8 PEM, public SPKI PEM)` generated now.
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> (String, String) {
    let private = format!("{name}.key");
    let public = format!("{name}.pub");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", &private]);
    openssl(dir, &args);
    openssl(dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read generated key");
    (read(&private), read(&public))
}

fn issuer(alg: &str, key: KeySource) -> Issuer {
    Issuer::new(IssuerSpec {
        issuer: ISS.into(),
        // the Minter's tokens carry no aud, so none is checked
        audiences: vec![],
        algorithms: vec![alg.into()],
        key,
        subject_claim: "sub".into(),
        scope_claim: "scope".into(),
        key_id_claim: None,
        leeway: Duration::from_secs(30),
        require_exp: true,
    })
    .expect("bench issuer")
}

struct Case {
    alg: &'static str,
    key: KeySource,
    tokens: Vec<String>,
}

fn rs256_token(pem: &str, n: usize, now: u64) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA PEM");
    let claims = serde_json::json!({
        "iss": ISS, "sub": format!("user-{n}"), "scope": SCOPE,
        "iat": now, "exp": now + 3600, "jti": format!("rs-{n}"),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .expect("sign RS256")
}

fn minter_tokens(m: &Minter, n: usize, now: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            m.mint(
                &format!("user-{i}"),
                "bench-key",
                SCOPE,
                Duration::from_secs(3600),
                now,
            )
            .expect("mint")
            .0
        })
        .collect()
}

fn cases() -> Vec<Case> {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = now();

    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = hex::encode(secret); // 64 ASCII bytes
    let hs = Minter::new(ISS, &secret).expect("HS256 minter");

    let (rsa_private, rsa_public) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec_private, ec_public) = keypair(
        dir.path(),
        "p256",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let es = Minter::new(ISS, &ec_private).expect("ES256 minter");

    vec![
        Case {
            alg: "HS256",
            key: KeySource::HsSecret(secret.into_bytes()),
            tokens: minter_tokens(&hs, COLD_TOKENS, now),
        },
        Case {
            alg: "RS256",
            key: KeySource::PublicKeyPem(rsa_public),
            tokens: (0..COLD_TOKENS)
                .map(|i| rs256_token(&rsa_private, i, now))
                .collect(),
        },
        Case {
            alg: "ES256",
            key: KeySource::PublicKeyPem(ec_public),
            tokens: minter_tokens(&es, COLD_TOKENS, now),
        },
    ]
}

fn verifier(case: &Case, cache: CacheOptions) -> Verifier {
    Verifier::new(vec![issuer(case.alg, case.key.clone())], cache).expect("verifier")
}

fn bench_jwt(c: &mut Criterion) {
    let now = now();
    let cases = cases();
    let no_cache = CacheOptions {
        max_entries: 0,
        max_ttl_secs: 300,
    };

    let mut cold = c.benchmark_group("jwt/verify_cold");
    for case in &cases {
        // The cache is disabled, so every call does the full work; the
        // tokens are distinct as well (cycled), as for a stream of clients.
        let v = verifier(case, no_cache);
        for t in &case.tokens {
            let claims = v.verify(t, now).expect("bench token verifies");
            assert_eq!(claims.scopes.len(), 2);
        }
        assert_eq!(v.cached_tokens(), 0);
        let mut i = 0usize;
        cold.bench_function(BenchmarkId::from_parameter(case.alg), |b| {
            b.iter(|| {
                i = (i + 1) % case.tokens.len();
                v.verify(black_box(&case.tokens[i]), now)
            })
        });
    }
    cold.finish();

    let mut cached = c.benchmark_group("jwt/verify_cached");
    for case in &cases {
        let v = verifier(case, CacheOptions::default());
        let t = &case.tokens[0];
        v.verify(t, now).expect("bench token verifies");
        assert_eq!(v.cached_tokens(), 1);
        cached.bench_function(BenchmarkId::from_parameter(case.alg), |b| {
            b.iter(|| v.verify(black_box(t), now))
        });
    }
    cached.finish();
}

criterion_group!(benches, bench_jwt);
criterion_main!(benches);
