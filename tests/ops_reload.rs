//! Live reload: the file watcher and SIGHUP apply a good config without a
//! restart, keep the old one when the new one is broken, and never cut an
//! in-flight request.
mod common;
use common::*;
use std::time::{Duration, Instant};

const FAILURES: &str = "portcullis_config_reloads_total{result=\"failure\"}";
const SUCCESSES: &str = "portcullis_config_reloads_total{result=\"success\"}";

/// Poll `f` until it returns true or 10 s pass.
async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn metric(gw: &Gateway, series: &str) -> f64 {
    gw.metric(series).unwrap_or(0.0)
}

async fn k1_status(gw: &Gateway) -> (u16, String) {
    let a = get(
        gw,
        "/model/ABC-1",
        &[("authorization", &basic("K1", SECRET))],
    )
    .await;
    (a.status, a.error())
}

#[tokio::test]
async fn disabling_a_key_applies_without_restart() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    let pid = gw.pid();
    assert_eq!(k1_status(&gw).await.0, 200);
    let body =
        standard_body(&up).replace("    owner: bob\n", "    owner: bob\n    disabled: true\n");
    assert!(body.contains("disabled: true"));
    gw.rewrite_config(&body);
    let ok =
        eventually(|| async { k1_status(&gw).await == (401, "key_disabled".to_string()) }).await;
    assert!(
        ok,
        "the key was not disabled within 10 s; logs:\n{}",
        gw.logs()
    );
    assert_eq!(gw.pid(), pid);
    assert!(metric(&gw, SUCCESSES) >= 1.0);
    // And back.
    gw.rewrite_config(&standard_body(&up));
    let ok = eventually(|| async { k1_status(&gw).await.0 == 200 }).await;
    assert!(ok, "the key was not re-enabled; logs:\n{}", gw.logs());
}

#[tokio::test]
async fn a_broken_config_keeps_the_old_one_serving() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    assert_eq!(k1_status(&gw).await.0, 200);
    let before = metric(&gw, FAILURES);

    // Invalid YAML.
    gw.rewrite_config("routes: [ this is: not: yaml\n  - {\n");
    let ok = eventually(|| async { metric(&gw, FAILURES) > before }).await;
    assert!(
        ok,
        "no failed reload counted for invalid YAML; logs:\n{}",
        gw.logs()
    );
    assert_eq!(
        k1_status(&gw).await.0,
        200,
        "the old config stopped serving"
    );
    let after_yaml = metric(&gw, FAILURES);

    // An unknown field (and K1 disabled, which must not apply).
    let body = standard_body(&up).replace(
        "    owner: bob\n",
        "    owner: bob\n    disabled: true\n    colour: blue\n",
    );
    gw.rewrite_config(&body);
    let ok = eventually(|| async { metric(&gw, FAILURES) > after_yaml }).await;
    assert!(
        ok,
        "no failed reload counted for an unknown field; logs:\n{}",
        gw.logs()
    );
    assert_eq!(k1_status(&gw).await.0, 200, "a half-applied broken config");
    let after_field = metric(&gw, FAILURES);

    // A validation error (bad duration).
    let body = format!(
        "{}limits: {{ upstream_timeout: soon }}\n",
        standard_body(&up)
    );
    gw.rewrite_config(&body);
    let ok = eventually(|| async { metric(&gw, FAILURES) > after_field }).await;
    assert!(
        ok,
        "no failed reload counted for a bad duration; logs:\n{}",
        gw.logs()
    );
    assert_eq!(k1_status(&gw).await.0, 200);
    // Log lines reach stderr in batches, within about 200 ms.
    let logged = eventually(|| async { gw.logs().contains("reload failed") }).await;
    assert!(logged, "{}", gw.logs());

    // Still alive, still ready, and a good config then applies.
    assert_eq!(admin_get(gw.admin, "/readyz").map(|r| r.0), Some(200));
    let body = standard_body(&up).replace("    owner: bob\n", "    owner: bobby\n");
    gw.rewrite_config(&body);
    let ok = eventually(|| async {
        k1_status(&gw).await.0 == 200
            && up.last().header("x-auth-subject").as_deref() == Some("bobby")
    })
    .await;
    assert!(
        ok,
        "a good config after broken ones did not apply; logs:\n{}",
        gw.logs()
    );
}

#[tokio::test]
async fn sighup_reloads() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&standard_body(&up));
    assert_eq!(k1_status(&gw).await.0, 200);
    let before = metric(&gw, SUCCESSES);
    gw.signal("HUP");
    let ok = eventually(|| async { metric(&gw, SUCCESSES) > before }).await;
    assert!(ok, "SIGHUP counted no reload; logs:\n{}", gw.logs());
    assert_eq!(
        k1_status(&gw).await.0,
        200,
        "the gateway stopped serving after SIGHUP"
    );
    // A SIGHUP with a broken file counts a failure and keeps serving.
    let failures = metric(&gw, FAILURES);
    std::fs::write(&gw.config, "listen: [broken\n").unwrap();
    gw.signal("HUP");
    let ok = eventually(|| async { metric(&gw, FAILURES) > failures }).await;
    assert!(ok, "no failure counted; logs:\n{}", gw.logs());
    assert_eq!(k1_status(&gw).await.0, 200);
    assert_eq!(admin_get(gw.admin, "/healthz").map(|r| r.0), Some(200));
}

#[tokio::test]
async fn a_key_file_dropped_into_an_include_folder_is_picked_up() {
    let up = Upstream::start().await;
    let body = format!("{}include: [keys.d/*.yaml]\n", standard_body(&up));
    let gw = Gateway::start(&body);
    std::fs::create_dir_all(gw.dir.path().join("keys.d")).unwrap();
    let secret = "included-secret-0123456789abcdefghij";
    let a = get(
        &gw,
        "/model/ABC-1",
        &[("authorization", &basic("INC1", secret))],
    )
    .await;
    assert_eq!(a.status, 401);
    // Written elsewhere, then renamed in: the watcher never reads half a file.
    let tmp = gw.dir.path().join("inc1.tmp");
    std::fs::write(
        &tmp,
        format!(
            "id: INC1\nowner: ines\nsecret_hash: {}\ngrants:\n  - {{ namespace: models, actions: [read] }}\n",
            secret_hash(secret)
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, gw.dir.path().join("keys.d/inc1.yaml")).unwrap();
    let ok = eventually(|| async {
        get(
            &gw,
            "/model/ABC-1",
            &[("authorization", &basic("INC1", secret))],
        )
        .await
        .status
            == 200
    })
    .await;
    assert!(
        ok,
        "the included key was not picked up; logs:\n{}",
        gw.logs()
    );
    assert_eq!(up.last().header("x-auth-subject").as_deref(), Some("ines"));
    // A list-form file too.
    let secret2 = "included-secret-2-0123456789abcdefgh";
    std::fs::write(
        &tmp,
        format!(
            "- id: INC2\n  owner: ivo\n  secret_hash: {}\n  grants: [ {{ namespace: models, actions: [read] }} ]\n",
            secret_hash(secret2)
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, gw.dir.path().join("keys.d/inc2.yaml")).unwrap();
    let ok = eventually(|| async {
        get(
            &gw,
            "/model/ABC-1",
            &[("authorization", &basic("INC2", secret2))],
        )
        .await
        .status
            == 200
    })
    .await;
    assert!(
        ok,
        "the second included key was not picked up; logs:\n{}",
        gw.logs()
    );
    // Removing the file removes the key.
    std::fs::remove_file(gw.dir.path().join("keys.d/inc1.yaml")).unwrap();
    let ok = eventually(|| async {
        get(
            &gw,
            "/model/ABC-1",
            &[("authorization", &basic("INC1", secret))],
        )
        .await
        .status
            == 401
    })
    .await;
    assert!(
        ok,
        "a removed key file still authenticates; logs:\n{}",
        gw.logs()
    );
}

#[tokio::test]
async fn an_in_flight_request_survives_a_reload() {
    let up = Upstream::start().await;
    let body = standard_body(&up).replace("/model/ABC-*", "/**").replace(
        "keys:\n",
        &format!(
            "  - name: slow\n    match: {{ path_prefix: /slow }}\n    upstream: {}\n    namespace: models\nkeys:\n",
            up.url()
        ),
    );
    let gw = std::sync::Arc::new(Gateway::start(&body));
    let g = gw.clone();
    let slow = tokio::spawn(async move {
        get(&g, "/slow/1", &[("authorization", &basic("K1", SECRET))]).await
    });
    // Wait until the upstream holds the request, then reload twice.
    let ok = eventually(|| async { up.count() >= 1 }).await;
    assert!(ok, "the slow request never reached the upstream");
    let before = metric(&gw, SUCCESSES);
    let changed = body.replace("    owner: bob\n", "    owner: robert\n");
    gw.rewrite_config(&changed);
    gw.signal("HUP");
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(
        metric(&gw, SUCCESSES) > before,
        "no reload happened during the request"
    );
    // New requests see the new config.
    let a = get(&gw, "/model/x", &[("authorization", &basic("K1", SECRET))]).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        up.last().header("x-auth-subject").as_deref(),
        Some("robert")
    );
}

#[tokio::test]
async fn rotating_a_secret_file_applies_without_restart() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rot.secret");
    let (old, new) = (
        "rotating-old-0123456789abcdefghijk",
        "rotating-new-0123456789abcdefghijk",
    );
    std::fs::write(&file, old).unwrap();
    let body = format!(
        "{}  - id: ROT\n    owner: rita\n    secret_file: {}\n    grants:\n      - {{ namespace: models, actions: [read] }}\n",
        standard_body(&up),
        file.display()
    );
    let gw = Gateway::start(&body);
    let status = |s: &'static str| {
        let auth = basic("ROT", s);
        let gw = &gw;
        async move {
            get(gw, "/model/x", &[("authorization", &auth)])
                .await
                .status
        }
    };
    assert_eq!(status(old).await, 200);
    let tmp = dir.path().join("rot.tmp");
    std::fs::write(&tmp, format!("{new}\n")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let ok = eventually(|| async { status(new).await == 200 }).await;
    assert!(
        ok,
        "the rotated secret was not picked up; logs:\n{}",
        gw.logs()
    );
    assert_eq!(status(old).await, 401, "the old secret still works");
}

#[tokio::test]
async fn a_broken_included_file_keeps_the_old_keys() {
    let up = Upstream::start().await;
    let body = format!("{}include: [keys.d/*.yaml]\n", standard_body(&up));
    let gw = Gateway::start(&body);
    let before = metric(&gw, FAILURES);
    std::fs::create_dir_all(gw.dir.path().join("keys.d")).unwrap();
    let tmp = gw.dir.path().join("bad.tmp");
    std::fs::write(
        &tmp,
        "id: BAD\nowner: x\nsecret_hash: sha256:00\nshoe_size: 9\n",
    )
    .unwrap();
    std::fs::rename(&tmp, gw.dir.path().join("keys.d/bad.yaml")).unwrap();
    let ok = eventually(|| async { metric(&gw, FAILURES) > before }).await;
    assert!(ok, "no failed reload counted; logs:\n{}", gw.logs());
    assert_eq!(k1_status(&gw).await.0, 200);
    let named = eventually(|| async { gw.logs().contains("bad.yaml") }).await;
    assert!(
        named,
        "the log does not name the broken file:\n{}",
        gw.logs()
    );
}
