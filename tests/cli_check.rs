//! `portcullis check` and `portcullis serve` with good and bad configs.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A folder with a generated certificate and `gateway.yaml` = head + `body`.
fn config(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    gen_cert(&dir.path().join("certs"));
    let head = format!(
        "listen:\n  https: 127.0.0.1:{p}\n  tls: {{ cert: {d}/certs/gateway.crt, key: {d}/certs/gateway.key }}\nadmin:\n  listen: 127.0.0.1:{a}\n",
        p = free_port(),
        a = free_port(),
        d = dir.path().display()
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, format!("{head}{body}")).unwrap();
    (dir, path)
}

fn check(path: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(path)
        .output()
        .expect("run check")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The 1-based number of the line of `path` that contains `needle`.
fn line_of(path: &Path, needle: &str) -> usize {
    let t = std::fs::read_to_string(path).unwrap();
    t.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in {t}"))
        + 1
}

const GOOD: &str = "routes:
  - name: models
    match: { path_prefix: /model }
    upstream: http://127.0.0.1:9000
    namespace: models
  - name: status
    match: { path_prefix: /status }
    upstream: http://127.0.0.1:9000
    public: true
keys:
  - id: K1
    owner: bob
    secret_hash: sha256:5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5
    grants:
      - { namespace: models, actions: [create, read], resources: [\"/model/ABC-*\"] }
  - id: K2
    owner: carol
    secret_hash: sha256:5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc6
    disabled: true
    grants:
      - { namespace: models, actions: [read] }
";

#[test]
fn check_accepts_a_good_config_and_summarises_it() {
    let (_dir, path) = config(GOOD);
    let out = check(&path);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(stdout.contains("routes: 2"), "{stdout}");
    assert!(stdout.contains("models"), "{stdout}");
    assert!(stdout.contains("status"), "{stdout}");
    assert!(stdout.contains("keys: 2 (1 disabled)"), "{stdout}");
    assert!(stdout.contains("jwt issuers: 0"), "{stdout}");
    // The public route is worth a warning.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("status") && l.contains("public")),
        "{stdout}"
    );
    assert!(!t.contains("error"), "{t}");
}

#[test]
fn check_reports_every_validation_error_with_file_line_and_field() {
    let body = "limits:
  upstream_timeout: soon
routes:
  - name: models
    match: { path_prefix: /model }
    upstream: ftp://127.0.0.1:9000
    namespace: models
keys:
  - id: K1
    owner: bob
    secret_hash: sha256:nothex
    grants:
      - { namespace: models, actions: [read] }
";
    let (_dir, path) = config(body);
    let out = check(&path);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let p = path.display();
    for (needle, field) in [
        ("upstream_timeout: soon", "limits.upstream_timeout"),
        ("upstream: ftp://", "routes[0].upstream"),
        ("secret_hash: sha256:nothex", "keys[0].secret_hash"),
    ] {
        let prefix = format!("{p}:{}: {field}: ", line_of(&path, needle));
        let line = t.lines().find(|l| l.contains(&prefix));
        assert!(line.is_some(), "no `{prefix}<reason>` in:\n{t}");
        let reason = &line.unwrap()[line.unwrap().find(&prefix).unwrap() + prefix.len()..];
        assert!(!reason.trim().is_empty(), "no reason for {field}:\n{t}");
    }
    assert!(t.contains("3 error(s)"), "{t}");
}

/// SPEC: `check` exits 1 "with every error". An unknown field is an error
/// like the others: it must not hide the rest.
#[test]
fn check_reports_an_unknown_field_alongside_the_other_errors() {
    let body = "limits:
  upstream_timeout: soon
routes:
  - name: models
    match: { path_prefix: /model }
    upstream: ftp://127.0.0.1:9000
    namespace: models
    colour: blue
keys: []
";
    let (_dir, path) = config(body);
    let out = check(&path);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let p = path.display();
    let unknown = format!("{p}:{}:", line_of(&path, "colour: blue"));
    assert!(
        t.lines()
            .any(|l| l.contains(&unknown) && l.contains("colour")),
        "the unknown field is not reported at its line ({unknown}):\n{t}"
    );
    let duration = format!(
        "{p}:{}: limits.upstream_timeout: ",
        line_of(&path, "upstream_timeout: soon")
    );
    assert!(
        t.contains(&duration),
        "the bad duration is not reported:\n{t}"
    );
    let upstream = format!(
        "{p}:{}: routes[0].upstream: ",
        line_of(&path, "upstream: ftp://")
    );
    assert!(
        t.contains(&upstream),
        "the bad upstream is not reported:\n{t}"
    );
}

#[test]
fn check_reports_an_unknown_field_with_its_line() {
    let body = "routes:
  - name: models
    match: { path_prefix: /model }
    upstream: http://127.0.0.1:9000
    namespace: models
    colour: blue
";
    let (_dir, path) = config(body);
    let out = check(&path);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = line_of(&path, "colour: blue");
    let prefix = format!("{}:{line}", path.display());
    assert!(
        t.lines()
            .any(|l| l.contains(&prefix) && l.contains("colour")),
        "no `{prefix}: ... colour ...` in:\n{t}"
    );
}

#[test]
fn check_reports_errors_in_included_files_with_their_own_path() {
    let (dir, path) = config(&format!("{GOOD}include: [keys.d/*.yaml]\n"));
    std::fs::create_dir_all(dir.path().join("keys.d")).unwrap();
    let inc = dir.path().join("keys.d/bad.yaml");
    std::fs::write(
        &inc,
        "- id: K9\n  owner: zed\n  secret_hash: sha256:00\n  grants: []\n",
    )
    .unwrap();
    let out = check(&path);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let prefix = format!("{}:3: [0].secret_hash: ", inc.display());
    assert!(t.contains(&prefix), "no `{prefix}` in:\n{t}");
}

#[test]
fn check_on_a_missing_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(&dir.path().join("nope.yaml"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nope.yaml"), "{}", text(&out));
}

#[test]
fn serve_with_a_bad_config_exits_64_and_starts_nothing() {
    let (_dir, path) = config("limits: { upstream_timeout: soon }\n");
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve with a bad config did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("limits.upstream_timeout"),
        "{}",
        text(&out)
    );

    // Invalid YAML too.
    let (_dir2, path2) = config("routes: [ {\n");
    let out = Command::new(BIN)
        .arg("serve")
        .arg("-c")
        .arg(&path2)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}
