//! `portcullis keys new` and `portcullis hash-secret`, down to a key that
//! authenticates through a running gateway.
mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct NewKey {
    id: String,
    secret: String,
    stdout: String,
}

fn keys_new(args: &[&str], write: Option<&Path>) -> (Output, Option<NewKey>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["keys", "new"]).args(args);
    if let Some(d) = write {
        cmd.arg("--write").arg(d);
    }
    let out = cmd.output().expect("run keys new");
    if !out.status.success() {
        return (out, None);
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{stdout}"))
    };
    let id = field("# key id:");
    let secret = field("# secret (shown once; store it now):");
    (out, Some(NewKey { id, secret, stdout }))
}

fn hash_secret(input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn keys_new_prints_the_secret_once_and_a_yaml_entry() {
    let (out, key) = keys_new(
        &[
            "--owner",
            "alice",
            "--name",
            "Alice's key",
            "--grant",
            "models:read,create:/model/ABC-*",
        ],
        None,
    );
    let key = key.unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    // At least 256 bits: 43 URL-safe base64 characters.
    assert!(key.secret.len() >= 43, "{}", key.secret);
    assert!(
        key.secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{}",
        key.secret
    );
    assert_eq!(
        key.stdout.matches(&key.secret).count(),
        2,
        "secret line + Basic URL hint:\n{}",
        key.stdout
    );
    let expected_hash = secret_hash(&key.secret);
    assert!(
        key.stdout
            .contains(&format!("secret_hash: {expected_hash}")),
        "{}",
        key.stdout
    );
    // The YAML part parses as a one-key list with the given fields.
    let yaml: String = key
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let v: serde_yaml::Value =
        serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"));
    let entry = &v[0];
    assert_eq!(entry["id"].as_str(), Some(key.id.as_str()), "{yaml}");
    assert_eq!(entry["owner"].as_str(), Some("alice"), "{yaml}");
    assert_eq!(entry["name"].as_str(), Some("Alice's key"), "{yaml}");
    assert_eq!(
        entry["secret_hash"].as_str(),
        Some(expected_hash.as_str()),
        "{yaml}"
    );
    let grant = &entry["grants"][0];
    assert_eq!(grant["namespace"].as_str(), Some("models"), "{yaml}");
    assert_eq!(grant["actions"][0].as_str(), Some("read"), "{yaml}");
    assert_eq!(grant["actions"][1].as_str(), Some("create"), "{yaml}");
    assert_eq!(
        grant["resources"][0].as_str(),
        Some("/model/ABC-*"),
        "{yaml}"
    );
    assert!(v[1].is_null(), "one entry only:\n{yaml}");
    // Two runs give two different keys.
    let (_, other) = keys_new(&["--owner", "alice"], None);
    let other = other.unwrap();
    assert_ne!(other.id, key.id);
    assert_ne!(other.secret, key.secret);
}

#[test]
fn keys_new_refuses_a_bad_grant() {
    for g in [
        "models",
        ":read",
        "models:read:no-slash",
        "models:read:/[unclosed",
    ] {
        let (out, key) = keys_new(&["--owner", "alice", "--grant", g], None);
        assert!(key.is_none(), "--grant {g} accepted");
        assert_ne!(out.status.code(), Some(0));
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}

#[test]
fn keys_new_refuses_a_bad_id() {
    for id in ["has:colon", "has space", "", "slash/../x"] {
        let (out, key) = keys_new(&["--owner", "alice", "--id", id], None);
        assert!(key.is_none(), "--id {id:?} accepted");
        assert_ne!(out.status.code(), Some(0));
    }
}

#[test]
fn keys_new_write_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = keys_new(&["--owner", "a", "--id", "FIXED-1"], Some(dir.path()));
    let first = first.expect("first write");
    assert_eq!(first.id, "FIXED-1");
    let before = std::fs::read_to_string(dir.path().join("FIXED-1.yaml")).unwrap();
    let (out, second) = keys_new(&["--owner", "b", "--id", "FIXED-1"], Some(dir.path()));
    assert!(second.is_none(), "an existing key file was overwritten");
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FIXED-1.yaml")).unwrap(),
        before
    );
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["FIXED-1.yaml".to_string()]);
}

#[tokio::test]
async fn keys_new_write_then_include_authenticates() {
    let up = Upstream::start().await;
    let body = format!("{}include: [keys.d/*.yaml]\n", standard_body(&up));
    let gw = Gateway::start(&body);
    let keys_dir = gw.dir.path().join("keys.d");
    let (out, key) = keys_new(
        &[
            "--owner",
            "alice",
            "--grant",
            "models:read,create:/model/ABC-*",
        ],
        Some(&keys_dir),
    );
    let key = key.unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let file = keys_dir.join(format!("{}.yaml", key.id));
    let written = std::fs::read_to_string(&file).expect("DIR/<id>.yaml written");
    assert!(written.contains(&secret_hash(&key.secret)), "{written}");
    assert!(
        !written.contains(&key.secret),
        "the plaintext secret is in the file"
    );
    // The written entry is the printed one.
    let printed: String = key
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(written, printed);

    // `check` accepts the config with the new file.
    let out = Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&gw.config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("keys: 2"));

    // The running gateway picks it up; the printed secret authenticates.
    let auth = basic(&key.id, &key.secret);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while Instant::now() < deadline {
        last = get(&gw, "/model/ABC-7", &[("authorization", &auth)])
            .await
            .status;
        if last == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        last,
        200,
        "the new key never authenticated; logs:\n{}",
        gw.logs()
    );
    let r = up.last();
    assert_eq!(r.header("x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(r.header("x-auth-key-id").as_deref(), Some(key.id.as_str()));
    let mut grants: Vec<String> = r
        .header("x-auth-grants")
        .unwrap_or_default()
        .split(' ')
        .map(String::from)
        .collect();
    grants.sort();
    assert_eq!(grants, vec!["models:create", "models:read"]);
    let a = get(&gw, "/model/ABC-7", &[("x-api-key", &key.secret)]).await;
    assert_eq!(a.status, 200);
    // The grant's resource glob applies.
    let a = get(&gw, "/model/XYZ-7", &[("authorization", &auth)]).await;
    assert_eq!((a.status, a.error().as_str()), (403, "insufficient_grant"));
}

#[test]
fn hash_secret_reads_stdin() {
    let out = hash_secret(format!("{SECRET}\n").as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        secret_hash(SECRET)
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let hex = printed.strip_prefix("sha256:").expect("sha256: prefix");
    assert_eq!(hex.len(), 64);
    assert!(hex
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    // Without a trailing newline, and with CRLF, the same hash.
    let out = hash_secret(SECRET.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        secret_hash(SECRET)
    );
    let out = hash_secret(format!("{SECRET}\r\n").as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        secret_hash(SECRET)
    );
    // A known vector: the demo hash of SPEC section 2 is not checked here,
    // but sha256("abc") is.
    let out = hash_secret(b"abc");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // Nothing on stdin is an error.
    let out = hash_secret(b"");
    assert_ne!(out.status.code(), Some(0));
}
