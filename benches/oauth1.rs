use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::auth::oauth1::{self, SignatureMethod, SignedRequest};

const SECRET: &[u8] = b"bench-secret-0123456789";

fn bench_oauth1(c: &mut Criterion) {
    let header = match oauth1::sign(
        "GET",
        "https://api.example.com/model/ABC-1?limit=10&offset=20",
        None,
        "bench-key",
        SECRET,
        SignatureMethod::HmacSha1,
        "0123456789abcdef",
        1_700_000_000,
    ) {
        Ok(h) => h,
        Err(e) => panic!("sign failed: {e}"),
    };
    let req = SignedRequest {
        method: "GET",
        origin: "https://api.example.com",
        raw_path: "/model/ABC-1",
        query: Some("limit=10&offset=20"),
        authorization: Some(&header),
        form_body: None,
    };
    let params = match oauth1::parse(&req) {
        Ok(p) => p,
        Err(e) => panic!("parse failed: {e}"),
    };
    assert!(oauth1::verify(&req, &params, SECRET, false, None, false).is_ok());

    c.bench_function("oauth1/parse", |b| {
        b.iter(|| oauth1::parse(black_box(&req)))
    });
    c.bench_function("oauth1/base_string", |b| {
        b.iter(|| oauth1::signature_base_string(black_box(&req), black_box(&params)))
    });
    c.bench_function("oauth1/verify_hmac_sha1", |b| {
        b.iter(|| {
            oauth1::verify(
                black_box(&req),
                black_box(&params),
                SECRET,
                false,
                None,
                false,
            )
        })
    });
    // The gateway's path: HMAC-SHA1 keyed once per key.
    let keyed = oauth1::KeyedSha1::new(SECRET);
    c.bench_function("oauth1/verify_keyed_hmac_sha1", |b| {
        b.iter(|| {
            oauth1::verify_keyed(
                black_box(&req),
                black_box(&params),
                SECRET,
                keyed.as_ref(),
                false,
                None,
                false,
            )
        })
    });
    c.bench_function("oauth1/parse_and_verify", |b| {
        b.iter(|| {
            oauth1::parse(black_box(&req))
                .and_then(|p| oauth1::verify(&req, &p, SECRET, false, None, false))
        })
    });
}

criterion_group!(benches, bench_oauth1);
criterion_main!(benches);
