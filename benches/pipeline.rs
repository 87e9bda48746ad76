//! The request flow without sockets, and its two cheapest parts on their own.
//!
//! * `pipeline/*`: [`portcullis::server::handle_with`] on a real config
//!   (routes, keys, grants, the nonce store, metrics, the access-log event):
//!   everything the gateway does for a request except TLS, HTTP parsing and
//!   the upstream hop, which is replaced by a canned 200. One case per
//!   credential scheme, plus the reject path and a public route.
//! * `apikey/*`: the Basic and `X-Api-Key` lookups alone.
//! * `path/*`: path normalisation for a plain and an awkward path.
//!
//! Nothing secret is committed: the key secret and the token signing key
//! are random per run; the TLS pair is generated into a temporary folder.
//!
//! Run: `cargo bench --bench pipeline`.

use base64::Engine;
use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use portcullis::auth::oauth1::{self, SignatureMethod};
use portcullis::error::GatewayError;
use portcullis::proxy::{full, Body};
use portcullis::replay::PendingNonce;
use portcullis::state::Gateway;
use rand::RngCore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const HOST: &str = "api.bench.test";
const PATH: &str = "/model/ABC-1";

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

struct Fixture {
    gw: Arc<Gateway>,
    secret: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    portcullis::tls::generate_self_signed(dir.path(), &["localhost".to_string()])
        .expect("generate cert");
    let secret = random_hex(32);
    std::fs::write(dir.path().join("secret"), &secret).expect("write secret");
    // The token signing key is taken from the environment only.
    std::env::set_var("PORTCULLIS_BENCH_TOKEN_KEY", random_hex(32));
    let d = dir.path().display();
    let config = format!(
        r#"
listen:
  https: 127.0.0.1:0
  tls: {{ cert: {d}/gateway.crt, key: {d}/gateway.key }}
routes:
  - name: models
    match: {{ path_prefix: /model }}
    upstream: http://127.0.0.1:9
    namespace: models
  - name: status
    match: {{ path_prefix: /status }}
    upstream: http://127.0.0.1:9
    public: true
keys:
  - id: bench-key
    owner: bench
    secret_file: {d}/secret
    grants:
      - {{ namespace: models, actions: [read, create], resources: ["/model/ABC-*"] }}
jwt:
  tokens:
    ttl: 60m
    signing_key: ${{PORTCULLIS_BENCH_TOKEN_KEY}}
"#
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).expect("write config");
    let settings = match portcullis::config::load(&path) {
        Ok(s) => s,
        Err(e) => panic!("bench config is invalid: {e}"),
    };
    let gw = Gateway::new(&path, settings).expect("gateway");
    Fixture {
        gw,
        secret,
        _dir: dir,
    }
}

fn get(path: &str, auth: Option<(&str, String)>) -> Request<Body> {
    let mut b = Request::get(path).header("host", HOST);
    if let Some((name, value)) = auth {
        b = b.header(name, value);
    }
    b.body(full(Bytes::new())).expect("request")
}

/// The upstream hop, replaced: a 200 with a small body.
async fn canned(
    _req: Request<Body>,
    _out: portcullis::proxy::Outbound,
    _timeout: Duration,
) -> Result<Response<Body>, GatewayError> {
    Ok(Response::new(full(Bytes::from_static(b"ok\n"))))
}

fn run(rt: &tokio::runtime::Runtime, gw: &Arc<Gateway>, req: Request<Body>) -> u16 {
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    rt.block_on(async {
        match portcullis::server::handle_with(gw.clone(), peer, false, req, canned).await {
            Ok(r) => r.status().as_u16(),
            Err(never) => match never {},
        }
    })
}

fn mint_token(rt: &tokio::runtime::Runtime, f: &Fixture) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bench-key:{}", f.secret));
    let req = Request::post("/auth/token")
        .header("host", HOST)
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full(Bytes::from_static(b"grant_type=client_credentials")))
        .expect("token request");
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let body = rt.block_on(async {
        let resp =
            match portcullis::server::handle_with(f.gw.clone(), peer, false, req, canned).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
        assert_eq!(resp.status(), 200, "token endpoint refused the bench key");
        resp.into_body().collect().await.expect("body").to_bytes()
    });
    let v: serde_json::Value = serde_json::from_slice(&body).expect("token JSON");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

fn bench_pipeline(c: &mut Criterion) {
    let f = fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bench-key:{}", f.secret))
    );
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bench-key:not-the-secret")
    );
    let token = format!("Bearer {}", mint_token(&rt, &f));

    // Each case is checked once so a broken fixture cannot bench an error.
    assert_eq!(
        run(
            &rt,
            &f.gw,
            get(PATH, Some(("authorization", basic.clone())))
        ),
        200
    );
    assert_eq!(
        run(&rt, &f.gw, get(PATH, Some(("x-api-key", f.secret.clone())))),
        200
    );
    assert_eq!(
        run(
            &rt,
            &f.gw,
            get(PATH, Some(("authorization", token.clone())))
        ),
        200
    );
    assert_eq!(
        run(
            &rt,
            &f.gw,
            get(PATH, Some(("authorization", wrong.clone())))
        ),
        401
    );
    assert_eq!(run(&rt, &f.gw, get("/status", None)), 200);

    let mut g = c.benchmark_group("pipeline");
    g.bench_function("api_key_basic", |b| {
        b.iter(|| {
            run(
                &rt,
                &f.gw,
                get(PATH, Some(("authorization", basic.clone()))),
            )
        })
    });
    g.bench_function("api_key_header", |b| {
        b.iter(|| run(&rt, &f.gw, get(PATH, Some(("x-api-key", f.secret.clone())))))
    });
    g.bench_function("jwt_hs256_gateway_token_cached", |b| {
        b.iter(|| {
            run(
                &rt,
                &f.gw,
                get(PATH, Some(("authorization", token.clone()))),
            )
        })
    });
    g.bench_function("reject_wrong_secret", |b| {
        b.iter(|| {
            run(
                &rt,
                &f.gw,
                get(PATH, Some(("authorization", wrong.clone()))),
            )
        })
    });
    g.bench_function("public_route", |b| {
        b.iter(|| run(&rt, &f.gw, get("/status", None)))
    });
    // OAuth 1.0: every request needs a fresh nonce, so signing happens in
    // the untimed setup; the nonce check and insert are in the timed part.
    let ts = portcullis::auth::now_unix() as u64;
    let url = format!("https://{HOST}{PATH}");
    let signed = |nonce: String| {
        let h = oauth1::sign(
            "GET",
            &url,
            None,
            "bench-key",
            f.secret.as_bytes(),
            SignatureMethod::HmacSha1,
            &nonce,
            ts,
        )
        .expect("sign");
        get(PATH, Some(("authorization", h)))
    };
    assert_eq!(run(&rt, &f.gw, signed(random_hex(16))), 200);
    g.bench_function("oauth1_hmac_sha1", |b| {
        b.iter_batched(
            || signed(random_hex(16)),
            |req| run(&rt, &f.gw, req),
            BatchSize::SmallInput,
        )
    });
    // The same with 5M live nonces in the store, as a busy gateway holds
    // (about 17k req/s over the default 5-minute window): the store no
    // longer fits in the caches, and its line is a memory access.
    let store = &f.gw.replay;
    for i in 0..5_000_000u64 {
        let nonce = format!("{i:016x}");
        let _ = store.check_and_insert_now(&PendingNonce::new("filler", &nonce), ts, ts);
    }
    g.bench_function("oauth1_hmac_sha1_5m_nonces", |b| {
        b.iter_batched(
            || signed(random_hex(16)),
            |req| run(&rt, &f.gw, req),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_apikey(c: &mut Criterion) {
    let f = fixture();
    let snap = f.gw.snapshot();
    let now = portcullis::auth::now_unix();
    let basic = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bench-key:{}", f.secret))
    ))
    .expect("header");
    let header = HeaderValue::from_str(&f.secret).expect("header");
    assert!(portcullis::auth::apikey::basic(&snap.keys, &basic, now).is_ok());
    assert!(portcullis::auth::apikey::header(&snap.keys, &header, now).is_ok());
    let mut g = c.benchmark_group("apikey");
    g.bench_function("basic_lookup_and_compare", |b| {
        b.iter(|| portcullis::auth::apikey::basic(&snap.keys, black_box(&basic), now))
    });
    g.bench_function("x_api_key_lookup", |b| {
        b.iter(|| portcullis::auth::apikey::header(&snap.keys, black_box(&header), now))
    });
    g.finish();
}

fn bench_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    g.bench_function("normalize_plain", |b| {
        b.iter(|| portcullis::path::normalize(black_box("/model/ABC-123/versions/7")))
    });
    g.bench_function("normalize_dots_and_escapes", |b| {
        b.iter(|| {
            portcullis::path::normalize(black_box("//model/./x/../ABC-%31%32%33/%7Euser/v%20s"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_pipeline, bench_apikey, bench_path);
criterion_main!(benches);
