//! A pool of three soft:// backends (one key domain: the same LMK) under continuous load; one backend disappears (its key directory is moved away, so every operation
//! on it fails) and comes back. No client operation fails, the lost backend leaves rotation
//! and rejoins it, and both changes are events in the log.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mpos_proto::hsm as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_backend_costs_no_operation() {
    let dir = tempfile::tempdir().unwrap();
    let key_dir = |name: &str| dir.path().join(name);
    let backends = ["a", "b", "c"]
        .iter()
        .map(|name| {
            format!(
                "soft://{}?id=soft-{name}&cache=off",
                key_dir(name).display()
            )
        })
        .collect();
    // PostgreSQL for the log; the in-process bus, so that the load measures the pool and not
    // a debug build's NATS client (NATS request-reply is covered by tests/operations.rs).
    let bus = format!("memory://{}", common::unique("failover"));
    let service = common::start(dir, &common::postgres_url(), &bus, backends).await;
    // ANSI X9.24-1:2009 A.4 BDK and a PIN key, replicated to all three backends.
    let bdk = common::import_bdk(&service, "").await;
    common::import_zpk(&service).await;
    assert_eq!(bdk.backend_ids, vec!["soft-a", "soft-b", "soft-c"]);

    let request = pb::TranslatePinDataRequest {
        tenant_id: "acme".into(),
        incoming: Some(pb::PinBlockKey {
            key: "alias/bdk".into(),
            format: pb::PinBlockFormat::Iso0.into(),
            dukpt: Some(pb::Dukpt {
                ksn: "FFFF9876543210E00001".into(),
                ..Default::default()
            }),
        }),
        outgoing: Some(pb::PinBlockKey {
            key: "alias/zpk".into(),
            format: pb::PinBlockFormat::Iso0.into(),
            dukpt: None,
        }),
        // X9.24-1:2009 A.4.2, KSN E00001.
        pin_block: "1B9C1845EB993A7A".into(),
        pan: "4012345678909".into(),
        ..Default::default()
    };
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let load_for = Duration::from_secs(6);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..24 {
        let (client, request, ok, failed) = (
            service.client.clone(),
            request.clone(),
            ok.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            while started.elapsed() < load_for {
                match client.translate_pin_data(&request).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        eprintln!("failed: {error}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    let pool = service.hsm.pool().clone();
    let member = |id: &str| pool.member(id).unwrap().clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lost = service.dir.path().join("b");
    let moved = service.dir.path().join("b-lost");
    std::fs::rename(&lost, &moved).unwrap();
    let mut left_rotation = false;
    while started.elapsed() < Duration::from_millis(3500) {
        left_rotation |= !member("soft-b").is_healthy();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(left_rotation, "the lost backend stayed in rotation");
    let (_, backends) = service.get("/v1/backends").await;
    assert_eq!(backends[1]["healthy"], false, "{backends}");
    std::fs::rename(&moved, &lost).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = ok.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "client operations failed"
    );
    let rate = done as f64 / elapsed;
    eprintln!("{done} translations in {elapsed:.1} s: {rate:.0}/s");
    assert!(rate >= 1_000.0, "load was {rate:.0}/s, below 1,000/s");

    // Back in rotation within a few health checks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !member("soft-b").is_healthy() {
        assert!(
            Instant::now() < deadline,
            "the backend did not rejoin rotation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both changes are events of the hsm-backend aggregate, in order.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let changes: Vec<pb::BackendHealthChanged> = service
        .store
        .read_after(0, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|event| {
            event.event.aggregate_type == "hsm-backend" && event.event.aggregate_id == "soft-b"
        })
        .map(
            |event| match serde_json::from_str(&event.event.payload).unwrap() {
                hsm_proxy::health::BackendEvent::HealthChanged(changed) => changed,
            },
        )
        .collect();
    let states: Vec<bool> = changes.iter().map(|change| change.healthy).collect();
    assert!(
        states.windows(2).any(|pair| pair == [false, true]),
        "health events of soft-b: {states:?}"
    );
    service.stop().await;
}
