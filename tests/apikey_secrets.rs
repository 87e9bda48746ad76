//! Plaintext secrets from `secret_file` and `${ENV}`, and no secret ever
//! showing in a log line or a response body.
mod common;
use common::*;

const FILE_SECRET: &str = "file-secret-0123456789abcdefghijklmnop";
const ENV_SECRET: &str = "env-secret-0123456789abcdefghijklmnopq";
const DEFAULT_SECRET: &str = "default-secret-0123456789abcdefghijklm";

fn body(up: &Upstream, secret_file: &std::path::Path) -> String {
    format!(
        "routes:
  - name: models
    match: {{ path_prefix: /model }}
    upstream: {up}
    namespace: models
keys:
  - id: K1
    owner: bob
    secret_hash: {h1}
    grants:
      - {{ namespace: models, actions: [create, read], resources: [\"/model/ABC-*\"] }}
  - id: KF
    owner: fiona
    secret_file: {file}
    grants:
      - {{ namespace: models, actions: [read] }}
  - id: KENV
    owner: enzo
    secret: ${{PORTCULLIS_TEST_KEY_SECRET}}
    grants:
      - {{ namespace: models, actions: [read] }}
  - id: KDEF
    owner: dora
    secret: ${{PORTCULLIS_TEST_UNSET_VAR:-{DEFAULT_SECRET}}}
    grants:
      - {{ namespace: models, actions: [read] }}
",
        up = up.url(),
        h1 = secret_hash(SECRET),
        file = secret_file.display(),
    )
}

fn start(up: &Upstream) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kf.secret");
    std::fs::write(&file, format!("{FILE_SECRET}\n")).unwrap();
    let gw = Gateway::start_with_env(
        &body(up, &file),
        &[("PORTCULLIS_TEST_KEY_SECRET", ENV_SECRET)],
    );
    (gw, dir)
}

#[tokio::test]
async fn secret_file_and_env_secret_authenticate() {
    let up = Upstream::start().await;
    let (gw, _dir) = start(&up);
    let a = get(
        &gw,
        "/model/any",
        &[("authorization", &basic("KF", FILE_SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(up.last().header("x-auth-key-id").as_deref(), Some("KF"));
    assert_eq!(up.last().header("x-auth-subject").as_deref(), Some("fiona"));
    let a = get(&gw, "/model/any", &[("x-api-key", FILE_SECRET)]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(up.last().header("x-auth-key-id").as_deref(), Some("KF"));

    let a = get(
        &gw,
        "/model/any",
        &[("authorization", &basic("KENV", ENV_SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(up.last().header("x-auth-key-id").as_deref(), Some("KENV"));
    assert_eq!(up.last().header("x-auth-subject").as_deref(), Some("enzo"));
    let a = get(&gw, "/model/any", &[("x-api-key", ENV_SECRET)]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    let a = get(
        &gw,
        "/model/any",
        &[("authorization", &basic("KDEF", DEFAULT_SECRET))],
    )
    .await;
    assert_eq!(a.status, 200, "${{VAR:-default}}: {:?}", a.body);
    assert_eq!(up.last().header("x-auth-key-id").as_deref(), Some("KDEF"));

    // The trailing newline of the file is not part of the secret; the
    // literal `${...}` text is not a secret either.
    let a = get(
        &gw,
        "/model/any",
        &[("authorization", &basic("KF", &format!("{FILE_SECRET}\n")))],
    )
    .await;
    assert_eq!(a.status, 401);
    let lit = "${PORTCULLIS_TEST_KEY_SECRET}";
    let a = get(&gw, "/model/any", &[("authorization", &basic("KENV", lit))]).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn a_plaintext_secret_in_the_file_is_refused() {
    // `secret:` must be `${ENV}`: writing the plaintext in the config is an error.
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    gen_cert(&dir.path().join("certs"));
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen:\n  https: 127.0.0.1:{p}\n  tls: {{ cert: {d}/certs/gateway.crt, key: {d}/certs/gateway.key }}\n\
routes:\n  - name: models\n    match: {{ path_prefix: /model }}\n    upstream: {up}\n    namespace: models\n\
keys:\n  - id: KP\n    owner: p\n    secret: literal-plaintext\n    grants: []\n",
            p = free_port(),
            d = dir.path().display(),
            up = up.url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("keys[0].secret"), "{all}");
    assert!(
        !all.contains("literal-plaintext"),
        "the plaintext is echoed: {all}"
    );
}

#[tokio::test]
async fn no_secret_in_logs_or_bodies() {
    let up = Upstream::start().await;
    let (gw, _dir) = start(&up);
    let secrets = [SECRET, FILE_SECRET, ENV_SECRET, DEFAULT_SECRET];
    let wrong = "wrong-secret-ZZZZ-0123456789abcdef";
    let mut bodies = Vec::new();
    let requests: Vec<Vec<(String, String)>> = vec![
        vec![("authorization".into(), basic("K1", SECRET))],
        vec![("authorization".into(), basic("K1", wrong))],
        vec![("authorization".into(), basic("NOPE", SECRET))],
        vec![("authorization".into(), basic("KF", FILE_SECRET))],
        vec![("authorization".into(), basic("KENV", ENV_SECRET))],
        vec![("x-api-key".into(), SECRET.into())],
        vec![("x-api-key".into(), wrong.into())],
        vec![
            ("authorization".into(), basic("K1", SECRET)),
            ("x-api-key".into(), ENV_SECRET.into()),
        ],
        vec![("authorization".into(), format!("Basic {SECRET}"))],
        vec![("authorization".into(), format!("Bearer {SECRET}"))],
        vec![("authorization".into(), format!("Weird {SECRET}"))],
    ];
    for path in ["/model/ABC-1", "/model/XYZ-1", "/nowhere"] {
        for hs in &requests {
            let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let a = get(&gw, path, &hs).await;
            bodies.push(String::from_utf8_lossy(&a.body).into_owned());
        }
    }
    let a = get(&gw, &format!("/model/ABC-1?api_key={SECRET}"), &[]).await;
    bodies.push(String::from_utf8_lossy(&a.body).into_owned());
    let a = send(
        &gw,
        "DELETE",
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
        "",
    )
    .await;
    bodies.push(String::from_utf8_lossy(&a.body).into_owned());
    // Let the log lines of the last requests arrive (they are written in
    // batches, within about 200 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gw.logs().matches("portcullis::access").count() < bodies.len()
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = gw.logs();
    let access_lines = logs
        .lines()
        .filter(|l| l.contains("portcullis::access"))
        .count();
    assert!(
        access_lines >= bodies.len(),
        "expected an access line per request:\n{logs}"
    );
    let b64_secret = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("K1:{SECRET}"))
    };
    for s in secrets.iter().chain([&wrong, &b64_secret.as_str()]) {
        assert!(!logs.contains(s), "a secret is in the logs: {s}\n{logs}");
        for b in &bodies {
            assert!(!b.contains(s), "a secret is in a body: {b}");
        }
    }
}

#[tokio::test]
async fn an_unset_environment_variable_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    gen_cert(&dir.path().join("certs"));
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen:\n  https: 127.0.0.1:{p}\n  tls: {{ cert: {d}/certs/gateway.crt, key: {d}/certs/gateway.key }}\n\
routes:\n  - name: models\n    match: {{ path_prefix: /model }}\n    upstream: http://127.0.0.1:9\n    namespace: models\n\
keys:\n  - id: KU\n    owner: u\n    secret: ${{PORTCULLIS_TEST_SURELY_UNSET}}\n    grants: []\n",
            p = free_port(),
            d = dir.path().display(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&cfg)
        .env_remove("PORTCULLIS_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    let line = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .position(|l| l.contains("secret: ${"))
        .unwrap()
        + 1;
    let want = format!("{}:{line}: keys[0].secret: ", cfg.display());
    assert!(all.contains(&want), "no `{want}` in:\n{all}");
    assert!(all.contains("PORTCULLIS_TEST_SURELY_UNSET"), "{all}");
}
