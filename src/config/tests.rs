use super::*;
use std::fs;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&p, text).unwrap();
    p
}

fn base(dir: &Path) -> String {
    write(dir, "c.crt", "x");
    write(dir, "c.key", "x");
    format!(
        "listen:\n  https: 127.0.0.1:8443\n  tls: {{ cert: {d}/c.crt, key: {d}/c.key }}\n",
        d = dir.display()
    )
}

#[test]
fn loads_a_full_config() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("PC_TEST_SECRET_1", "s3cret");
    let text = format!(
        "{}limits: {{ max_form_body: 2MiB, upstream_timeout: 5s }}
replay: {{ window: 5m, max_nonces: 100 }}
routes:
  - name: models
    match: {{ host: STL.test, path_prefix: /model/ }}
    upstream: http://127.0.0.1:9000/base
    namespace: models
    schemes: [api_key, oauth1]
    method_actions: {{ PURGE: delete }}
keys:
  - id: XYZ-PDQ
    owner: bob
    secret_hash: sha256:5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5
    grants:
      - {{ namespace: models, actions: [create, READ], resources: [\"/model/ABC-*\"] }}
    expires_at: 2027-01-01T00:00:00Z
  - id: K2
    owner: carol
    secret: ${{PC_TEST_SECRET_1}}
include: [keys.d/*.yaml]
",
        base(dir.path())
    );
    let h3 = crate::secret::hash_string(b"k3");
    let h4 = crate::secret::hash_string(b"k4");
    write(
        dir.path(),
        "keys.d/a.yaml",
        &format!("- id: K3\n  owner: dan\n  secret_hash: {h3}\n"),
    );
    write(
        dir.path(),
        "keys.d/b.yaml",
        &format!("id: K4\nowner: erin\nsecret_hash: {h4}\n"),
    );
    let p = write(dir.path(), "gateway.yaml", &text);
    let s = load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.limits.max_form_body, 2 << 20);
    assert_eq!(s.limits.upstream_timeout, Duration::from_secs(5));
    assert_eq!(s.replay.window, Duration::from_secs(300));
    let r = &s.routes[0];
    assert_eq!(r.host.as_deref(), Some("stl.test"));
    assert_eq!(r.path_prefix, "/model");
    assert_eq!(r.upstream.as_ref().unwrap().base_path, "/base");
    assert_eq!(
        r.method_actions[&Method::from_bytes(b"PURGE").unwrap()],
        "delete"
    );
    assert_eq!(r.method_actions[&Method::GET], "read");
    let ids: Vec<&str> = s.keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["XYZ-PDQ", "K2", "K3", "K4"]);
    assert_eq!(s.keys[0].grants[0].actions, ["create", "read"]);
    assert_eq!(s.keys[0].expires_at, Some(1_798_761_600));
    assert!(matches!(&s.keys[1].secret, KeySecret::Plain(p) if p.expose() == "s3cret"));
    assert!(s.files.iter().any(|f| f.ends_with("keys.d/a.yaml")));
}

#[test]
fn keys_sharing_a_secret_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = crate::secret::hash_string(b"same");
    let text = format!(
        "{}keys:\n  - {{ id: A, owner: a, secret_hash: {h} }}\n  - {{ id: B, owner: b, secret_hash: {h} }}\n",
        base(dir.path())
    );
    let p = write(dir.path(), "g.yaml", &text);
    let e = load(&p).unwrap_err().0;
    assert!(e.iter().any(|e| e.reason.contains("same secret")), "{e:?}");
}

#[test]
fn collects_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}limits: {{ upstream_timeout: soon }}
routes:
  - name: a
    match: {{ path_prefix: model }}
    upstream: ftp://x
    namespace: models
keys:
  - id: K1
    owner: bob
    secret: plaintext-in-file
  - id: K2
    owner: bob
    secret_hash: sha256:abc
    grants:
      - {{ namespace: models, actions: [] }}
",
        base(dir.path())
    );
    let p = write(dir.path(), "g.yaml", &text);
    let errors = load(&p).unwrap_err().0;
    let found: Vec<(Option<usize>, &str)> =
        errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert!(
        found.contains(&(Some(4), "limits.upstream_timeout")),
        "{found:?}"
    );
    assert!(
        found.contains(&(Some(7), "routes[0].match.path_prefix")),
        "{found:?}"
    );
    assert!(
        found.contains(&(Some(8), "routes[0].upstream")),
        "{found:?}"
    );
    assert!(found.contains(&(Some(13), "keys[0].secret")), "{found:?}");
    assert!(
        found.contains(&(Some(16), "keys[1].secret_hash")),
        "{found:?}"
    );
    assert!(errors.iter().all(|e| e.file == p));
    // The literal secret never appears in an error.
    assert!(!errors
        .iter()
        .any(|e| e.to_string().contains("plaintext-in-file")));
}

#[test]
fn unknown_fields_are_errors_with_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}routes:\n  - name: a\n    match: {{ path_prefix: /a }}\n    upstreem: http://x\n",
        base(dir.path())
    );
    let p = write(dir.path(), "g.yaml", &text);
    let e = load(&p).unwrap_err().0;
    let unknown = e
        .iter()
        .find(|e| e.reason == "unknown field `upstreem`")
        .unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(unknown.line, Some(7));
    assert_eq!(unknown.field, "routes[0].upstreem");
    // Validation went on: the missing fields are reported in the same run.
    assert!(e.iter().any(|e| e.field == "routes[0].upstream"), "{e:?}");
    assert!(e.iter().any(|e| e.field == "routes[0].namespace"), "{e:?}");
}

#[test]
fn env_expansion() {
    std::env::set_var("PC_TEST_ENV_A", "x");
    std::env::remove_var("PC_TEST_ENV_UNSET");
    assert_eq!(expand_env("a${PC_TEST_ENV_A}b").unwrap(), "axb");
    assert_eq!(expand_env("${PC_TEST_ENV_UNSET:-d}").unwrap(), "d");
    assert_eq!(expand_env("$$5").unwrap(), "$5");
    assert!(expand_env("${PC_TEST_ENV_UNSET}").is_err());
    assert!(expand_env("${oops").is_err());
}

#[test]
fn key_yaml_round_trips() {
    let y = render_key_yaml(&KeyYaml {
        id: "AB-CD".into(),
        owner: "bob".into(),
        name: Some("Warehouse: east".into()),
        secret_hash: crate::secret::hash_string(b"x"),
        grants: vec![GrantConfig {
            namespace: "models".into(),
            actions: vec!["create".into(), "read".into()],
            resources: Some(vec!["/model/ABC-*".into()]),
        }],
    });
    let keys: Vec<raw::RawKey> = serde_yaml::from_str(&y).unwrap();
    assert_eq!(keys[0].id, "AB-CD");
    assert_eq!(keys[0].name.as_deref(), Some("Warehouse: east"));
    assert_eq!(
        keys[0].grants[0].resources.as_ref().unwrap()[0],
        "/model/ABC-*"
    );
}
