//! Interop vectors produced by PyJWT 2.15.1 / cryptography 48.0.0 with the
//! script below. Only public keys and tokens are kept; the private keys
//! existed only in the generating process. The HS256 secret is a test-only
//! value (see `PY_HS_SECRET`).
//!
//! ```python
//! # Generates the PyJWT interop vectors pinned in src/auth/jwt/pyjwt_vectors.rs.
//! # Private keys live only in memory here; only public keys and tokens are printed.
//! import json, jwt
//! from cryptography.hazmat.primitives import serialization
//! from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519
//!
//! IAT = 1700000000
//! base = {"iss": "https://idp.example", "sub": "alice", "aud": "portcullis",
//!         "iat": IAT, "nbf": IAT, "exp": IAT + 3600, "jti": "py-1",
//!         "scope": "orders:read orders:write:/v1/orders/** admin:*"}
//!
//! def pub_pem(k):
//!     return k.public_key().public_bytes(serialization.Encoding.PEM,
//!         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
//!
//! rsa_k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
//! ec_k = ec.generate_private_key(ec.SECP256R1())
//! ed_k = ed25519.Ed25519PrivateKey.generate()
//! HS = b"portcullis-test-only-hs256-secret-0123456789"
//!
//! out = {
//!   "RSA_PUB_PEM": pub_pem(rsa_k),
//!   "EC_PUB_PEM": pub_pem(ec_k),
//!   "ED_PUB_PEM": pub_pem(ed_k),
//!   "RS256": jwt.encode(base, rsa_k, algorithm="RS256", headers={"kid": "rsa-1"}),
//!   "PS256": jwt.encode(dict(base, jti="py-2"), rsa_k, algorithm="PS256"),
//!   "RS512": jwt.encode(dict(base, jti="py-3"), rsa_k, algorithm="RS512"),
//!   "ES256": jwt.encode(dict(base, jti="py-4", aud=["other", "portcullis"],
//!                            scope=["orders:read", "files:get:/f/*"]), ec_k, algorithm="ES256"),
//!   "EDDSA": jwt.encode(dict(base, jti="py-5"), ed_k, algorithm="EdDSA"),
//!   "HS256": jwt.encode(dict(base, jti="py-6"), HS, algorithm="HS256"),
//!   # PyJWT happily signs a string exp; we must refuse it.
//!   "RS256_STR_EXP": jwt.encode(dict(base, exp=str(IAT + 3600)), rsa_k, algorithm="RS256"),
//!   "RS256_JWKS_JSON": json.dumps({"keys": [dict(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_k.public_key())), kid="rsa-1", use="sig")]}),
//! }
//! for k, v in out.items():
//!     print(f"pub const {k}: &str = {json.dumps(v)};")
//! ```

pub const PY_HS_SECRET: &[u8] = b"portcullis-test-only-hs256-secret-0123456789";
pub const PY_IAT: u64 = 1_700_000_000;
pub const RSA_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsV0JtIdqErMGNT5eW3FF\ngHoYOnQL5RTJLOqRaWaLZhE1GvoA87wFMynnIwo4MlArSymqZCWYNR/kTJVVL11x\nTIFcrWDKGgMYIGdlbPEe9mhYyh+GgPZ2iPMwio9eTcMPMTj0ZfZVrnCFHM1OVj4+\nVNI43ZLs8e8yJ5kvS6rL3/IMDOAgsFX4eIv5jnvYaynujrJxIaPPJVucX3m1Cl9p\nY4KSpjLBDS4ftyTeSLIv5WlAgZJBrKr3caY53grn3vCWXN9eivCHeCLTIjAeaskS\nAJh5sjs8cIuys19FNoJTND7YbeGFCd9xtWl/I7f4FzbPlF8fUmbMv/c9Cusxem7K\neQIDAQAB\n-----END PUBLIC KEY-----\n";
pub const EC_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEX4pmOsklwrqjAYeMiQtTz5l53ebs\nd2nktKX3i/zVfhoRcIbz8DfmqBI0Ab53iIPJGHKJkPXe4oEbOPTTfZOUfQ==\n-----END PUBLIC KEY-----\n";
pub const ED_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA+Aioi0fs+KDTTIzmHEmZA6woPAyeHU2ZuYp7I5KjFTE=\n-----END PUBLIC KEY-----\n";
pub const RS256: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJwb3J0Y3VsbGlzIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwianRpIjoicHktMSIsInNjb3BlIjoib3JkZXJzOnJlYWQgb3JkZXJzOndyaXRlOi92MS9vcmRlcnMvKiogYWRtaW46KiJ9.ECva3syiTEsCxrgmSZrRZFmK5vq5jOXyJJJ1XwQqYdl4T4p3REoERePwNDvTx0Iym5dFczTSxboeckPYahp2x6oNGKhWKBBoc69qIKCWEHX6ou1oh-tWvDlzDcRClS2RC2YsdjgjfXXmT3buSrEWzR26MTAjBKCYuV96U3HRSr2tS9AbZBS6l91zrPq5e07l17K_Xe6Xo2lBNUgDw-A236SrWkmfAlGeREfhJWQdnXX-4XC5bSG9YEgljyvwOt6MIFtim-qwN-2JWyu1PH6UiKPjhf2th2_78OB321ps6MnSOK08HxXQoVjcyW_5v5DBD3FFi2E6x0UqzUVtNq7P0A";
pub const PS256: &str = "eyJhbGciOiJQUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJwb3J0Y3VsbGlzIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwianRpIjoicHktMiIsInNjb3BlIjoib3JkZXJzOnJlYWQgb3JkZXJzOndyaXRlOi92MS9vcmRlcnMvKiogYWRtaW46KiJ9.RF8dFGoSsFUoq1_UQDwT-MdYKV9QfIq3FC8fDEwndzYsJ3j5gWbRSSJVM2qrIkGR92M4Rz0oQQmkSVpKLOozh48yQ8fttRLH6XsvL9xX0bN0kS_I3g9LN9Kv8ihGjiRyjWmhzHzx_nJ16oMnC0UePcKbvsHOrNQcHUh20eQnsmpHySqYWDANb8JtWKPN6UdISkxGZQknFPx0sOalrbxQCgSCuNDNneI8Fo7HsuO0-9a8qU3FhIujQgu4jR7ztA1dMg5l5oh-i8Hst9wWJId8zu6auMBbp_EflSfksxQrPbMwEXZunoSTkoIESg84H_wkDYGk7PA6VDkUH69IYSxRwA";
pub const RS512: &str = "eyJhbGciOiJSUzUxMiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJwb3J0Y3VsbGlzIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwianRpIjoicHktMyIsInNjb3BlIjoib3JkZXJzOnJlYWQgb3JkZXJzOndyaXRlOi92MS9vcmRlcnMvKiogYWRtaW46KiJ9.ppYtyZs81dVH7hRMBshf5TEbaJaxzyFf3Qs_r6Mh-72leFPiKqsSroexTq2O0zplqrXGJJ4wdHWbuSJ6kYceIcEW3BWdZPzEJFFMNxfunzB0Ii0t7MW-a8tqgLT7TnqnTMx1yaqfKbysPnG3Ty1feHJHrbNTq0im8ngSRXrwnDUz7U3RvLUtbNzVmPoEHKxA8aXCd1T4xBXpF5F5Ius0fcTCRc3eqc7Pz9oA84kIvPZlcil0cMmnbWoBLEC-CFY7Lsf19HH9BU3zew2LGeGWzNyPa0ZvqQCzu3f-aGzECUTJp0TRjeadJBzvgCQrX1kVBC_ADwOBdTXvEaqRgZveLA";
pub const ES256: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOlsib3RoZXIiLCJwb3J0Y3VsbGlzIl0sImlhdCI6MTcwMDAwMDAwMCwibmJmIjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDAsImp0aSI6InB5LTQiLCJzY29wZSI6WyJvcmRlcnM6cmVhZCIsImZpbGVzOmdldDovZi8qIl19.SgN7PatQw5cveI5ZXCpCf6eQfCrhyhmnLVrbBg1ZdpCr-Lkjhc0O4zki1HAD1fKkCIZv5QBOWWrpdp-m_JiBnQ";
pub const EDDSA: &str = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJwb3J0Y3VsbGlzIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwianRpIjoicHktNSIsInNjb3BlIjoib3JkZXJzOnJlYWQgb3JkZXJzOndyaXRlOi92MS9vcmRlcnMvKiogYWRtaW46KiJ9.44I4GtTsYlNJkuVgjphzhjPbCowBK7lu18xtFdqQSfhnEc5DP39q31Ua5xAC2POstO-LDEmRQ2aknwYz5MJABA";
pub const HS256: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJwb3J0Y3VsbGlzIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwianRpIjoicHktNiIsInNjb3BlIjoib3JkZXJzOnJlYWQgb3JkZXJzOndyaXRlOi92MS9vcmRlcnMvKiogYWRtaW46KiJ9.sk1pKzSbbW2Dl3E1BTvrG2c6kUfNbMl8SUdlVgzj7AA";
pub const RS256_STR_EXP: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJwb3J0Y3VsbGlzIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6IjE3MDAwMDM2MDAiLCJqdGkiOiJweS0xIiwic2NvcGUiOiJvcmRlcnM6cmVhZCBvcmRlcnM6d3JpdGU6L3YxL29yZGVycy8qKiBhZG1pbjoqIn0.l7YqYoAnl23BMoo754MZ5kq8o1m76LQGe6aXuD8h8NcOIu3WsuAo5_WMFsRgMZg1lskBaFFuSJjDRTVIKVx2tHyuTTItrLpWb9vYkXpCVlw2k7726g75lmehTlsLA4DrYrLvJlM4-Qz3x4eCN7ThrOiWom72u6XdJnNQ9AUVt1hydzJZaio99fEMY6WHMnGnnHb01EvtuNQf32g_uY0FjXwlrXymBjLYsCHECSMXaI-fVEVv3rovx5FRMlklr9JidKcL_027tD27jqcdStNN2vgWmDYefe0OhjIq1yMlSKjkisN96_Qi1dCAee1wseyIprt8diL6I3ydgKVC3-oXdw";
pub const RS256_JWKS_JSON: &str = "{\"keys\": [{\"kty\": \"RSA\", \"key_ops\": [\"verify\"], \"n\": \"sV0JtIdqErMGNT5eW3FFgHoYOnQL5RTJLOqRaWaLZhE1GvoA87wFMynnIwo4MlArSymqZCWYNR_kTJVVL11xTIFcrWDKGgMYIGdlbPEe9mhYyh-GgPZ2iPMwio9eTcMPMTj0ZfZVrnCFHM1OVj4-VNI43ZLs8e8yJ5kvS6rL3_IMDOAgsFX4eIv5jnvYaynujrJxIaPPJVucX3m1Cl9pY4KSpjLBDS4ftyTeSLIv5WlAgZJBrKr3caY53grn3vCWXN9eivCHeCLTIjAeaskSAJh5sjs8cIuys19FNoJTND7YbeGFCd9xtWl_I7f4FzbPlF8fUmbMv_c9Cusxem7KeQ\", \"e\": \"AQAB\", \"kid\": \"rsa-1\", \"use\": \"sig\"}]}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::issuer::{Issuer, KeySource};
    use crate::auth::jwt::test_util::{spec, NOW};
    use crate::auth::jwt::{CacheOptions, Claims, Scope, Verifier};

    fn verify(algs: &[&str], key: KeySource, token: &str) -> std::sync::Arc<Claims> {
        let mut s = spec(algs, key);
        s.audiences = vec!["portcullis".into()];
        let v = Verifier::new(vec![Issuer::new(s).unwrap()], CacheOptions::default()).unwrap();
        v.verify(token, NOW).unwrap()
    }

    fn scope(ns: &str, action: &str, resource: Option<&str>) -> Scope {
        Scope {
            namespace: ns.into(),
            action: action.into(),
            resource: resource.map(Into::into),
        }
    }

    #[test]
    fn rsa_family() {
        let pem = || KeySource::PublicKeyPem(RSA_PUB_PEM.into());
        let c = verify(&["RS256"], pem(), RS256);
        assert_eq!((&*c.issuer, &*c.subject), ("https://idp.example", "alice"));
        assert_eq!(
            (c.jti.as_deref(), c.exp, c.key_id.as_deref()),
            (Some("py-1"), Some(PY_IAT + 3600), None)
        );
        assert_eq!(
            c.scopes,
            vec![
                scope("orders", "read", None),
                scope("orders", "write", Some("/v1/orders/**")),
                scope("admin", "*", None)
            ]
        );
        assert_eq!(
            verify(&["RS256"], KeySource::Jwks(RS256_JWKS_JSON.into()), RS256)
                .jti
                .as_deref(),
            Some("py-1")
        );
        assert_eq!(
            verify(&["PS256"], pem(), PS256).jti.as_deref(),
            Some("py-2")
        );
        assert_eq!(
            verify(&["RS512"], pem(), RS512).jti.as_deref(),
            Some("py-3")
        );
    }

    #[test]
    fn ec_ed_hmac() {
        let c = verify(
            &["ES256"],
            KeySource::PublicKeyPem(EC_PUB_PEM.into()),
            ES256,
        );
        assert_eq!(c.jti.as_deref(), Some("py-4"));
        assert_eq!(
            c.scopes,
            vec![
                scope("orders", "read", None),
                scope("files", "get", Some("/f/*"))
            ]
        );
        let c = verify(
            &["EdDSA"],
            KeySource::PublicKeyPem(ED_PUB_PEM.into()),
            EDDSA,
        );
        assert_eq!(c.jti.as_deref(), Some("py-5"));
        let c = verify(
            &["HS256"],
            KeySource::HsSecret(PY_HS_SECRET.to_vec()),
            HS256,
        );
        assert_eq!(c.jti.as_deref(), Some("py-6"));
    }
}
