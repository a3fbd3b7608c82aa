//! TrustSources against a real HTTPS server (axum over rustls, CA made with rcgen), real
//! files and attestation chains built with rcgen.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use android_attestation::{ChainError, Status};
use attestation_trust::{Source, TrustConfig, TrustError, TrustSources};
use common::{
    INTERMEDIATE_SERIAL_HEX, NOW, TestPki, TestServer, closed_url, fixture_chain, sha256_hex,
    status_list, time_inside,
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn load_fetches_the_list_over_https_and_writes_the_cache() {
    let body = status_list(&["2c8cdddfd5e03bfc", "abc"]);
    let server = TestServer::start(body.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("status.json");
    let mut config = server.config(Source::Builtin);
    config.cache_path = Some(cache.clone());

    let sources = TrustSources::load(config).await.expect("loads");
    let snapshot = sources.snapshot();
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.revocations.len(), 2);
    assert_eq!(
        snapshot.revocations.status_of("2C8CDDDFD5E03BFC"),
        Some(Status::Revoked)
    );
    assert_eq!(snapshot.anchors.len(), 2, "the Google roots");

    let status = sources.status();
    assert_eq!(status.entries, 2);
    assert_eq!(status.anchors, 2);
    assert_eq!(status.anchors_source, "builtin");
    assert_eq!(
        status.status_list_source.as_deref(),
        Some(server.url.as_str())
    );
    assert!(status.fetched_at.is_some());
    assert!(!status.from_cache);
    assert_eq!(status.last_error, None);
    assert_eq!(status.cache_error, None);
    assert!(!status.stale);
    let json = serde_json::to_value(&status).expect("serializes");
    assert_eq!(json["entries"], 2);

    assert_eq!(std::fs::read(&cache).expect("cache written"), body);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

#[tokio::test]
async fn builtin_anchors_verify_a_real_device_chain() {
    let sources = TrustSources::load(TrustConfig::new(Source::Builtin, None))
        .await
        .expect("loads");
    let snapshot = sources.snapshot();
    let chain = fixture_chain();
    snapshot
        .verify(&chain, time_inside(&chain))
        .expect("a Google-rooted chain verifies");
    assert_eq!(snapshot.anchors_sha256.len(), 2);
    let status = sources.status();
    assert_eq!(status.entries, 0);
    assert_eq!(status.status_list_source, None);
    assert!(!status.stale, "no list configured: nothing to be stale");

    let builtin_list = TrustConfig::new(Source::Builtin, Some(Source::Builtin));
    assert!(matches!(
        TrustSources::load(builtin_list).await,
        Err(TrustError::InvalidSource { .. })
    ));
}

#[tokio::test]
async fn refresh_picks_up_a_changed_list_and_bumps_the_version() {
    let server = TestServer::start(status_list(&["a1"])).await;
    let sources = TrustSources::load(server.config(Source::Builtin))
        .await
        .expect("loads");
    let first = sources.snapshot();

    let same = sources.refresh().await.expect("refreshes");
    assert_eq!(same.version, 1);
    assert!(!same.status_list_changed && !same.anchors_changed);
    assert!(
        Arc::ptr_eq(&first, &sources.snapshot()),
        "nothing changed: same snapshot"
    );

    server.set(200, status_list(&["a1", "b2", "c3"]));
    let changed = sources.refresh().await.expect("refreshes");
    assert_eq!(changed.version, 2);
    assert!(changed.status_list_changed);
    assert!(!changed.anchors_changed);
    assert_eq!(changed.entries, 3);
    let snapshot = sources.snapshot();
    assert_eq!(snapshot.version, 2);
    assert_eq!(snapshot.revocations.status_of("c3"), Some(Status::Revoked));
    // An old snapshot held by a verification in flight is untouched.
    assert_eq!(first.revocations.len(), 1);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn server_down_keeps_the_snapshot_and_the_list_goes_stale() {
    let mut server = TestServer::start(status_list(&["a1", "b2"])).await;
    let mut config = server.config(Source::Builtin);
    config.max_stale = Duration::from_millis(600);
    let sources = TrustSources::load(config).await.expect("loads");
    let before = sources.snapshot();

    server.stop().await;
    let error = sources.refresh().await.expect_err("the server is down");
    assert!(
        matches!(&error, TrustError::Unreachable { reason, .. } if reason.contains("connect")),
        "{error:?}"
    );
    let after = sources.snapshot();
    assert!(Arc::ptr_eq(&before, &after), "old snapshot kept");
    assert_eq!(after.revocations.len(), 2);

    let status = sources.status();
    let last_error = status.last_error.expect("last error recorded");
    assert!(last_error.contains("127.0.0.1"), "{last_error}");
    assert!(status.last_error_at.is_some());
    assert!(!status.stale, "not yet");
    assert!(!sources.is_stale());

    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = sources.status();
    assert!(status.stale, "no successful refresh within max_stale");
    assert!(sources.is_stale());
    assert_eq!(status.entries, 2, "a stale list is still used");
    assert_eq!(sources.snapshot().revocations.len(), 2);
}

#[tokio::test]
async fn bad_answers_are_typed_errors_and_change_nothing() {
    let server = TestServer::start(status_list(&["a1"])).await;
    let mut config = server.config(Source::Builtin);
    config.max_bytes = 1024;
    let sources = TrustSources::load(config).await.expect("loads");
    let before = sources.snapshot();

    let check = |sources: &TrustSources| {
        assert!(Arc::ptr_eq(&before, &sources.snapshot()), "snapshot kept");
        assert!(sources.status().last_error.is_some(), "error recorded");
    };

    server.set(500, b"internal error".to_vec());
    let error = sources.refresh().await.expect_err("500");
    assert!(
        matches!(error, TrustError::Http { status: 500, .. }),
        "{error:?}"
    );
    check(&sources);

    // Valid JSON, over the limit: refused by its Content-Length...
    let big = status_list(&["ab"; 1])
        .into_iter()
        .chain(std::iter::repeat_n(b' ', 2000))
        .collect::<Vec<u8>>();
    server.set(200, big.clone());
    let error = sources.refresh().await.expect_err("too large");
    assert!(
        matches!(error, TrustError::TooLarge { limit: 1024, .. }),
        "{error:?}"
    );
    check(&sources);

    // ... and as it streams in without one.
    server.set_chunked(big);
    let error = sources.refresh().await.expect_err("too large, chunked");
    assert!(
        matches!(error, TrustError::TooLarge { limit: 1024, .. }),
        "{error:?}"
    );
    check(&sources);

    server.set(200, b"{\"entries\": ".to_vec());
    let error = sources.refresh().await.expect_err("invalid json");
    assert!(
        matches!(error, TrustError::Parse(ChainError::StatusList(_))),
        "{error:?}"
    );
    check(&sources);

    server.set(
        200,
        br#"{"entries": {"zz": {"status": "REVOKED"}}}"#.to_vec(),
    );
    let error = sources.refresh().await.expect_err("not a hex serial");
    assert!(matches!(error, TrustError::Parse(_)), "{error:?}");
    check(&sources);

    // Chunked and within the limit is fine; the error is cleared.
    server.set_chunked(status_list(&["a1", "b2"]));
    let report = sources.refresh().await.expect("refreshes");
    assert_eq!(report.version, 2);
    assert_eq!(report.entries, 2);
    assert_eq!(sources.status().last_error, None);
}

#[tokio::test]
async fn untrusted_server_certificate_and_http_are_refused() {
    let server = TestServer::start(status_list(&["a1"])).await;
    let mut config = server.config(Source::Builtin);
    config.extra_ca_pem = None;
    let error = TrustSources::load(config).await.expect_err("untrusted CA");
    assert!(
        matches!(&error, TrustError::Unreachable { reason, .. } if reason.contains("certificate")),
        "{error:?}"
    );

    let http = TrustConfig::new(
        Source::Builtin,
        Some(Source::Url("http://127.0.0.1:1/status".to_owned())),
    );
    let error = TrustSources::load(http).await.expect_err("http");
    assert!(matches!(error, TrustError::NotHttps { .. }), "{error:?}");

    let mut bad_ca = server.config(Source::Builtin);
    bad_ca.extra_ca_pem = Some(b"no certificate here".to_vec());
    let error = TrustSources::load(bad_ca).await.expect_err("bad extra CA");
    assert!(matches!(error, TrustError::Client(_)), "{error:?}");
}

#[tokio::test]
async fn start_with_the_server_down_uses_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("status.json");
    let url = closed_url().await;
    let config = || {
        let mut config = TrustConfig::new(Source::Builtin, Some(Source::Url(url.clone())));
        config.cache_path = Some(cache.clone());
        config.fetch_timeout = Duration::from_secs(5);
        config
    };

    // No cache: the source's error.
    let error = TrustSources::load(config()).await.expect_err("no cache");
    assert!(matches!(error, TrustError::Unreachable { .. }), "{error:?}");

    // An invalid cache: the source's error still.
    std::fs::write(&cache, b"not json").expect("write");
    let error = TrustSources::load(config())
        .await
        .expect_err("invalid cache");
    assert!(matches!(error, TrustError::Unreachable { .. }), "{error:?}");

    // A valid cache: used, and said so.
    std::fs::write(&cache, status_list(&["a1", "b2", "c3"])).expect("write");
    let sources = TrustSources::load(config())
        .await
        .expect("loads from cache");
    assert_eq!(sources.snapshot().revocations.len(), 3);
    let status = sources.status();
    assert!(status.from_cache);
    assert!(status.last_error.is_some());
    assert!(!status.stale, "the cache was just written");
    assert_eq!(status.entries, 3);

    // A cache older than max_stale is stale at once (but used).
    let old = SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
    std::fs::File::options()
        .write(true)
        .open(&cache)
        .expect("open")
        .set_modified(old)
        .expect("set mtime");
    let sources = TrustSources::load(config())
        .await
        .expect("loads from cache");
    let status = sources.status();
    assert!(status.stale);
    assert_eq!(status.entries, 3);
}

#[tokio::test]
async fn a_refresh_after_a_start_from_the_cache_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("status.json");
    std::fs::write(&cache, status_list(&["a1"])).expect("write");
    let server = TestServer::start(status_list(&["a1", "b2"])).await;
    let mut config = server.config(Source::Builtin);
    config.cache_path = Some(cache.clone());
    // Start pointing at the server: the cache is overwritten by the fetched list.
    let sources = TrustSources::load(config).await.expect("loads");
    assert!(!sources.status().from_cache);
    assert_eq!(
        std::fs::read(&cache).expect("cache"),
        status_list(&["a1", "b2"])
    );
    server.set(200, status_list(&["a1", "b2", "c3"]));
    sources.refresh().await.expect("refreshes");
    assert_eq!(
        std::fs::read(&cache).expect("cache"),
        status_list(&["a1", "b2", "c3"])
    );
}

#[tokio::test]
async fn anchors_from_a_file_then_replaced_at_run_time() {
    let old_root = TestPki::build("Old Test Root");
    let new_root = TestPki::build("New Test Root");
    let dir = tempfile::tempdir().expect("tempdir");
    let anchors_file = dir.path().join("anchors.pem");
    std::fs::write(&anchors_file, &old_root.root_pem).expect("write");
    let server = TestServer::start(status_list(&[])).await;

    let sources = TrustSources::load(server.config(Source::File(anchors_file.clone())))
        .await
        .expect("loads");
    let snapshot = sources.snapshot();
    assert_eq!(
        snapshot.anchors_sha256,
        vec![sha256_hex(&old_root.root_der)]
    );
    assert_eq!(
        sources.status().anchors_source,
        format!("file:{}", anchors_file.display())
    );
    // The chain under the new root is refused: its root is unknown.
    assert!(matches!(
        snapshot.verify(&new_root.chain, NOW),
        Err(ChainError::UnknownRoot { index: 1 })
    ));
    snapshot
        .verify(&old_root.chain, NOW)
        .expect("old chain verifies");

    sources
        .replace_anchors(new_root.root_pem.as_bytes())
        .expect("replaced");
    let replaced = sources.snapshot();
    assert_eq!(replaced.version, 2);
    assert_eq!(
        replaced.anchors_sha256,
        vec![sha256_hex(&new_root.root_der)]
    );
    replaced
        .verify(&new_root.chain, NOW)
        .expect("new chain verifies now");
    assert!(matches!(
        replaced.verify(&old_root.chain, NOW),
        Err(ChainError::UnknownRoot { .. })
    ));
    let status = sources.status();
    assert_eq!(status.anchors_source, "runtime");
    assert!(status.anchors_replaced_at.is_some());
    assert_eq!(status.anchors_sha256, vec![sha256_hex(&new_root.root_der)]);

    // Refused replacements change nothing.
    let broken_certificate =
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    for (bad, expect_no_anchors) in [
        (&b""[..], true),
        (b"  \n", true),
        (b"not pem at all", false),
        (broken_certificate.as_bytes(), false),
    ] {
        let error = sources.replace_anchors(bad).expect_err("refused");
        if expect_no_anchors {
            assert!(matches!(error, TrustError::NoAnchors), "{error:?}");
        } else {
            assert!(matches!(error, TrustError::Parse(_)), "{error:?}");
        }
        assert!(Arc::ptr_eq(&replaced, &sources.snapshot()), "unchanged");
    }

    // The status list revokes the new chain's intermediate; a refresh picks it up and does
    // not bring the file's anchors back.
    server.set(200, status_list(&[INTERMEDIATE_SERIAL_HEX]));
    let report = sources.refresh().await.expect("refreshes");
    assert!(report.status_list_changed);
    assert!(!report.anchors_changed);
    assert_eq!(report.version, 3);
    let revoked = sources.snapshot();
    assert_eq!(revoked.anchors_sha256, vec![sha256_hex(&new_root.root_der)]);
    match revoked.verify(&new_root.chain, NOW) {
        Err(ChainError::Revoked {
            index,
            serial,
            status,
        }) => {
            assert_eq!(index, 1);
            assert_eq!(serial, INTERMEDIATE_SERIAL_HEX);
            assert_eq!(status, Status::Revoked);
        }
        other => panic!("expected Revoked, got {other:?}"),
    }
}

#[tokio::test]
async fn refresh_reloads_an_anchors_file_and_refuses_a_broken_one() {
    let first = TestPki::build("First Root");
    let second = TestPki::build("Second Root");
    let dir = tempfile::tempdir().expect("tempdir");
    let anchors_file = dir.path().join("anchors.pem");
    std::fs::write(&anchors_file, &first.root_pem).expect("write");
    let config = TrustConfig::new(Source::File(anchors_file.clone()), None);
    let sources = TrustSources::load(config).await.expect("loads");

    std::fs::write(
        &anchors_file,
        format!("{}{}", first.root_pem, second.root_pem),
    )
    .expect("write");
    let report = sources.refresh().await.expect("refreshes");
    assert!(report.anchors_changed);
    assert_eq!(report.anchors, 2);
    assert_eq!(report.version, 2);
    sources
        .snapshot()
        .verify(&second.chain, NOW)
        .expect("verifies");

    let two = sources.snapshot();
    std::fs::write(&anchors_file, b"").expect("write");
    assert!(matches!(
        sources.refresh().await,
        Err(TrustError::NoAnchors)
    ));
    std::fs::write(&anchors_file, b"garbage").expect("write");
    assert!(matches!(sources.refresh().await, Err(TrustError::Parse(_))));
    std::fs::remove_file(&anchors_file).expect("remove");
    assert!(matches!(
        sources.refresh().await,
        Err(TrustError::Io { .. })
    ));
    assert!(Arc::ptr_eq(&two, &sources.snapshot()), "unchanged");
    assert!(!sources.status().stale, "no list configured");

    // Anchors must load at start.
    let missing = TrustConfig::new(Source::File(anchors_file), None);
    assert!(matches!(
        TrustSources::load(missing).await,
        Err(TrustError::Io { .. })
    ));
}

#[tokio::test]
async fn run_refreshes_until_cancelled() {
    let server = TestServer::start(status_list(&["a1"])).await;
    let mut config = server.config(Source::Builtin);
    config.refresh_every = Duration::from_millis(50);
    let sources = TrustSources::load(config).await.expect("loads");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sources.clone().run(cancel.clone()));

    server.set(200, status_list(&["a1", "b2"]));
    tokio::time::timeout(Duration::from_secs(10), async {
        while sources.snapshot().version < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the refresher picks up the change");
    assert_eq!(sources.snapshot().revocations.len(), 2);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops when cancelled")
        .expect("task");
    let hits = server.hits();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.hits(), hits, "no refresh after cancel");
}

#[tokio::test]
async fn start_without_list_begins_empty_and_stale_until_a_refresh_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("status.json");

    // Unreachable and no cache: refused by default, an empty stale list when allowed.
    let url = closed_url().await;
    let mut config = TrustConfig::new(Source::Builtin, Some(Source::Url(url)));
    config.cache_path = Some(cache.clone());
    config.fetch_timeout = Duration::from_secs(5);
    let error = TrustSources::load(config.clone())
        .await
        .expect_err("fails fast by default");
    assert!(matches!(error, TrustError::Unreachable { .. }), "{error:?}");
    config.start_without_list = true;
    let sources = TrustSources::load(config).await.expect("starts");
    let snapshot = sources.snapshot();
    assert_eq!(snapshot.revocations.len(), 0);
    assert!(
        !snapshot.anchors.is_empty(),
        "the configured anchors still load"
    );
    let status = sources.status();
    assert!(status.stale, "{status:?}");
    assert!(sources.is_stale());
    assert!(!status.from_cache);
    assert_eq!(status.fetched_at, None);
    assert!(status.last_error.is_some());
    assert!(!cache.exists(), "nothing to cache yet");

    // An invalid cache is no better than none; an HTTP error is no better than a closed port.
    std::fs::write(&cache, b"not json").expect("write");
    let server = TestServer::start(status_list(&["a1"])).await;
    server.set(503, b"down".to_vec());
    let mut config = server.config(Source::Builtin);
    config.cache_path = Some(cache.clone());
    config.start_without_list = true;
    config.refresh_every = Duration::from_secs(3_600);
    config.retry_every = Duration::from_millis(50);
    let sources = TrustSources::load(config).await.expect("starts");
    assert!(sources.is_stale());
    let last_error = sources.status().last_error.expect("last error");
    assert!(last_error.contains("503"), "{last_error}");

    // The refresher retries soon (not after an hour) and the list is fresh once it loads.
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sources.clone().run(cancel.clone()));
    server.set(200, status_list(&["a1", "b2"]));
    tokio::time::timeout(Duration::from_secs(10), async {
        while sources.is_stale() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a retry loads the list");
    let snapshot = sources.snapshot();
    assert_eq!(snapshot.revocations.len(), 2);
    assert_eq!(snapshot.version, 2);
    let status = sources.status();
    assert_eq!(status.last_error, None);
    assert!(status.fetched_at.is_some());
    assert_eq!(
        std::fs::read(&cache).expect("cache"),
        status_list(&["a1", "b2"])
    );
    cancel.cancel();
    task.await.expect("task");
}
