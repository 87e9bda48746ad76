//! `portcullis gen-cert` and `portcullis sign`.
mod common;
use common::*;
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("PORTCULLIS_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run portcullis")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn gen_cert_writes_a_readable_certificate_and_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let o = run(
        &[
            "gen-cert",
            "--out",
            out_dir.to_str().unwrap(),
            "--host",
            "example.test",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let crt = out_dir.join("gateway.crt");
    let key = out_dir.join("gateway.key");
    let pem = std::fs::read_to_string(&crt).expect("certificate written");
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
    let key_pem = std::fs::read_to_string(&key).expect("key written");
    assert!(key_pem.contains("PRIVATE KEY-----"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key mode {mode:o}");
    }
    if !openssl() {
        eprintln!("openssl not found: SAN not checked");
        return;
    }
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl cannot read the certificate: {}",
        stderr(&o)
    );
    let text = stdout(&o);
    let san = text
        .lines()
        .skip_while(|l| !l.contains("Subject Alternative Name"))
        .nth(1)
        .unwrap_or_else(|| panic!("no SAN:\n{text}"))
        .to_string();
    assert!(san.contains("DNS:example.test"), "{san}");
    assert!(san.contains("DNS:localhost"), "{san}");
    assert!(san.contains("IP Address:127.0.0.1"), "{san}");
    let o = Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl cannot read the key: {}",
        stderr(&o)
    );
    // The key and the certificate belong together.
    let pub_of = |args: &[&str], path: &std::path::Path| {
        let o = Command::new("openssl")
            .args(args)
            .arg(path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(
        pub_of(&["x509", "-noout", "-pubkey", "-in"], &crt),
        pub_of(&["pkey", "-pubout", "-in"], &key)
    );
}

#[test]
fn gen_cert_rewrites_a_key_with_loose_permissions_as_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("gateway.key");
    std::fs::write(&key, "old").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["gen-cert", "--out", dir.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("PRIVATE KEY"));
    assert_eq!(
        mode, 0o600,
        "a new private key is readable by others: mode {mode:o}"
    );
}

const URL: &str = "https://localhost/model/ABC-1?b=2&a=1";
/// HMAC-SHA1 over `GET&https%3A%2F%2Flocalhost%2Fmodel%2FABC-1&a%3D1%26b%3D2%26oauth_consumer_key%3DK%26oauth_nonce%3Dn%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1%26oauth_version%3D1.0`
/// with key `S&`, computed independently (Python hmac).
const EXPECTED_SIG: &str = "YFXze66WoNYwCIprV0Zuc%2Bc3clU%3D";

#[test]
fn sign_is_deterministic_with_a_fixed_nonce_and_timestamp() {
    let args = [
        "sign",
        "--key",
        "K",
        "--secret",
        "S",
        "--nonce",
        "n",
        "--timestamp",
        "1",
        URL,
    ];
    let a = run(&args, &[]);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    let b = run(&args, &[]);
    assert_eq!(stdout(&a), stdout(&b));
    let header = stdout(&a).trim_end().to_string();
    assert!(header.starts_with("OAuth "), "{header}");
    for p in [
        "oauth_consumer_key=\"K\"",
        "oauth_nonce=\"n\"",
        "oauth_timestamp=\"1\"",
        "oauth_signature_method=\"HMAC-SHA1\"",
    ] {
        assert!(header.contains(p), "{p} missing: {header}");
    }
    assert!(
        header.contains(&format!("oauth_signature=\"{EXPECTED_SIG}\"")),
        "{header}"
    );
    assert!(!header.contains("oauth_token"), "{header}");
    // Another secret, another signature.
    let c = run(
        &[
            "sign",
            "--key",
            "K",
            "--secret",
            "T",
            "--nonce",
            "n",
            "--timestamp",
            "1",
            URL,
        ],
        &[],
    );
    assert_ne!(stdout(&a), stdout(&c));
    // Without --nonce/--timestamp, each run differs.
    let d = run(&["sign", "--key", "K", "--secret", "S", URL], &[]);
    let e = run(&["sign", "--key", "K", "--secret", "S", URL], &[]);
    assert_eq!(d.status.code(), Some(0), "{}", stderr(&d));
    assert_ne!(stdout(&d), stdout(&e));
}

#[test]
fn sign_takes_the_secret_from_portcullis_secret() {
    let with_flag = run(
        &[
            "sign",
            "--key",
            "K",
            "--secret",
            "S",
            "--nonce",
            "n",
            "--timestamp",
            "1",
            URL,
        ],
        &[],
    );
    let with_env = run(
        &[
            "sign",
            "--key",
            "K",
            "--nonce",
            "n",
            "--timestamp",
            "1",
            URL,
        ],
        &[("PORTCULLIS_SECRET", "S")],
    );
    assert_eq!(with_env.status.code(), Some(0), "{}", stderr(&with_env));
    assert_eq!(stdout(&with_flag), stdout(&with_env));
    // Neither: a usage error, not a signature with an empty secret.
    let none = run(
        &[
            "sign",
            "--key",
            "K",
            "--nonce",
            "n",
            "--timestamp",
            "1",
            URL,
        ],
        &[],
    );
    assert_ne!(none.status.code(), Some(0));
    assert!(stdout(&none).is_empty(), "{}", stdout(&none));
    // The environment's value is never echoed, even in help.
    let help = run(
        &["sign", "--help"],
        &[("PORTCULLIS_SECRET", "very-secret-value")],
    );
    assert!(
        !stdout(&help).contains("very-secret-value"),
        "{}",
        stdout(&help)
    );
}

#[tokio::test]
async fn a_signed_request_passes_the_gateway() {
    let up = Upstream::start().await;
    let secret = "oauth-secret-0123456789abcdefghijkl";
    let body = format!(
        "{}  - id: OA1\n    owner: olga\n    secret: ${{OA1_SECRET}}\n    grants:\n      - {{ namespace: models, actions: [read] }}\n",
        standard_body(&up)
    );
    let gw = Gateway::start_with_env(&body, &[("OA1_SECRET", secret)]);
    let url = format!("https://{}/model/ABC-1?x=1", gw.host());
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let o = run(
        &[
            "sign",
            "--key",
            "OA1",
            "--nonce",
            "nonce-e2e-1",
            "--timestamp",
            &ts,
            &url,
        ],
        &[("PORTCULLIS_SECRET", secret)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let header = stdout(&o).trim_end().to_string();
    let a = get(&gw, "/model/ABC-1?x=1", &[("authorization", &header)]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let r = up.last();
    assert_eq!(r.header("x-auth-scheme").as_deref(), Some("oauth1"));
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some("OA1"));
    // The same header again is a replay.
    let a = get(&gw, "/model/ABC-1?x=1", &[("authorization", &header)]).await;
    assert_eq!((a.status, a.error().as_str()), (401, "nonce_replayed"));
    // Signed with a wrong secret: refused.
    let o = run(
        &[
            "sign",
            "--key",
            "OA1",
            "--secret",
            "wrong",
            "--nonce",
            "nonce-e2e-2",
            "--timestamp",
            &ts,
            &url,
        ],
        &[],
    );
    let header = stdout(&o).trim_end().to_string();
    let a = get(&gw, "/model/ABC-1?x=1", &[("authorization", &header)]).await;
    assert_eq!((a.status, a.error().as_str()), (401, "invalid_signature"));
}

#[tokio::test]
async fn signed_form_posts_and_other_methods_pass_the_gateway() {
    let up = Upstream::start().await;
    let secret = "oauth-secret-2-0123456789abcdefghijk";
    let body = format!(
        "{}  - id: OA2\n    owner: otto\n    secret: ${{OA2_SECRET}}\n    grants:\n      - {{ namespace: models, actions: [read, create] }}\n",
        standard_body(&up)
    );
    let gw = Gateway::start_with_env(&body, &[("OA2_SECRET", secret)]);
    let url = format!("https://{}/model/form", gw.host());
    for (i, method) in ["HMAC-SHA1", "HMAC-SHA256"].iter().enumerate() {
        let nonce = format!("form-nonce-{i}");
        let o = run(
            &[
                "sign",
                "--key",
                "OA2",
                "--method",
                method,
                "--nonce",
                &nonce,
                "-X",
                "POST",
                "-d",
                "a=1&b=two+words",
                &url,
            ],
            &[("PORTCULLIS_SECRET", secret)],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let header = stdout(&o).trim_end().to_string();
        assert!(
            header.contains(&format!("oauth_signature_method=\"{method}\"")),
            "{header}"
        );
        let a = send(
            &gw,
            "POST",
            "/model/form",
            &[
                ("authorization", &header),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "a=1&b=two+words",
        )
        .await;
        assert_eq!(a.status, 200, "{method}: {:?}", a.body);
        let r = up.last();
        assert_eq!(r.body, b"a=1&b=two+words");
        assert_eq!(r.header("x-auth-key-id").as_deref(), Some("OA2"));
        // The same header over another body: the signature does not cover it.
        let o = run(
            &[
                "sign",
                "--key",
                "OA2",
                "--method",
                method,
                "--nonce",
                &format!("{nonce}-b"),
                "-X",
                "POST",
                "-d",
                "a=1",
                &url,
            ],
            &[("PORTCULLIS_SECRET", secret)],
        );
        let header = stdout(&o).trim_end().to_string();
        let a = send(
            &gw,
            "POST",
            "/model/form",
            &[
                ("authorization", &header),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "a=2",
        )
        .await;
        assert_eq!(
            (a.status, a.error().as_str()),
            (401, "invalid_signature"),
            "{method}"
        );
    }
}
