//! The key registry's control plane over the admin HTTP API: create, alias, stop/start,
//! delete/restore, export (TR-31 and DUKPT initial keys, checked against ANSI X9.24-1) and
//! import back; authentication; tenant isolation on every route; every change an event
//! with its actor.

#![allow(clippy::unwrap_used)]

mod common;

use common::{INITIAL_KSN, IPEK, KBPK, TestService, attributes, h, import_known};
use mpos_proto::hsm as pb;
use serde_json::json;

async fn lifecycle(service: TestService) {
    // Authentication.
    let unauthenticated = service
        .http
        .get(format!("{}/v1/tenants/acme/keys", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);

    // Create with an alias; the alias is unique per tenant.
    let (status, created) = service
        .post(
            "/v1/tenants/acme/keys",
            json!({"attributes": {"algorithm": "KEY_ALGORITHM_AES_128", "keyUsage": "D0", "modeOfUse": "B", "exportability": "E"}, "alias": "data-1"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["alias"], "alias/data-1");
    assert_eq!(created["state"], "KEY_STATE_ENABLED");
    assert_eq!(created["kcv"].as_str().unwrap().len(), 6);
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    let (status, duplicate) = service
        .post(
            "/v1/tenants/acme/keys",
            json!({"attributes": {"algorithm": "KEY_ALGORITHM_AES_128", "keyUsage": "D0"}, "alias": "data-1"}),
        )
        .await;
    assert_eq!(status, 409, "{duplicate}");
    assert_eq!(duplicate["code"], "already_exists");
    let (status, invalid) = service
        .post(
            "/v1/tenants/acme/keys",
            json!({"attributes": {"algorithm": "KEY_ALGORITHM_AES_128", "keyUsage": "M3"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        invalid["message"]
            .as_str()
            .unwrap()
            .contains("attributes.algorithm"),
        "{invalid}"
    );

    // Read by id and by alias.
    let (status, by_alias) = service.get("/v1/tenants/acme/keys/alias%2Fdata-1").await;
    assert_eq!(status, 200, "{by_alias}");
    assert_eq!(by_alias["keyId"], key_id.as_str());
    let (status, _) = service
        .get(&format!("/v1/tenants/acme/keys/{key_id}"))
        .await;
    assert_eq!(status, 200);

    // Tenant isolation on every route: another tenant neither sees nor touches the key.
    let (status, listing) = service.get("/v1/tenants/other/keys").await;
    assert_eq!(status, 200);
    assert_eq!(
        listing["keys"].as_array().map_or(0, Vec::len),
        0,
        "{listing}"
    );
    for path in [
        format!("/v1/tenants/other/keys/{key_id}"),
        "/v1/tenants/other/keys/alias%2Fdata-1".to_owned(),
    ] {
        assert_eq!(service.get(&path).await.0, 404, "{path}");
    }
    for action in ["stop", "start", "delete", "restore", "export"] {
        let (status, body) = service
            .post(
                &format!("/v1/tenants/other/keys/{key_id}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 404, "{action}: {body}");
    }

    // Stop: refused by the data plane; start: usable again.
    let encrypt = pb::EncryptDataRequest {
        tenant_id: "acme".into(),
        encryption: Some(pb::Encryption {
            key: "alias/data-1".into(),
            mode: pb::CipherMode::Ecb.into(),
            ..Default::default()
        }),
        plaintext: vec![0; 16],
    };
    let (status, stopped) = service
        .post(
            &format!("/v1/tenants/acme/keys/{key_id}/stop"),
            json!({"reason": "rotation"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stopped["state"], "KEY_STATE_DISABLED");
    let refused = service
        .call::<_, pb::EncryptDataResponse>("EncryptData", &encrypt)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code,
        mpos_errors::ErrorCode::Conflict,
        "{refused:?}"
    );
    let (status, _) = service
        .post(&format!("/v1/tenants/acme/keys/{key_id}/start"), json!({}))
        .await;
    assert_eq!(status, 200);
    service
        .call::<_, pb::EncryptDataResponse>("EncryptData", &encrypt)
        .await
        .expect("usable again");

    // TR-31 export under a KBPK, then import of the block: the same key (same KCV).
    import_known(
        &service,
        "acme",
        attributes(pb::KeyAlgorithm::Aes256, "K1", "B", ""),
        KBPK,
        "kbpk",
    )
    .await;
    let (status, exported) = service
        .post(
            &format!("/v1/tenants/acme/keys/{key_id}/export"),
            json!({"wrappingKey": "alias/kbpk", "tr31": {"exportability": "N"}}),
        )
        .await;
    assert_eq!(status, 200, "{exported}");
    let block = exported["keyBlock"].as_str().unwrap().to_owned();
    assert!(block.starts_with('D'), "{block}");
    let (status, imported) = service
        .post(
            "/v1/tenants/acme/keys/import",
            json!({"alias": "data-1-copy", "tr31": {"wrappingKey": "alias/kbpk", "keyBlock": block}}),
        )
        .await;
    assert_eq!(status, 201, "{imported}");
    assert_eq!(imported["kcv"], created["kcv"]);
    assert_eq!(imported["origin"], "KEY_ORIGIN_IMPORTED_TR31");
    assert_eq!(imported["attributes"]["exportability"], "N");
    // A non-exportable key is not exported.
    let (status, refused) = service
        .post(
            "/v1/tenants/acme/keys/alias%2Fdata-1-copy/export",
            json!({"wrappingKey": "alias/kbpk", "tr31": {}}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");

    // DUKPT initial key export: opened with the KBPK, it is the published IPEK.
    common::import_bdk(&service, "").await;
    let (status, exported) = service
        .post(
            "/v1/tenants/acme/keys/alias%2Fbdk/export",
            json!({"wrappingKey": "alias/kbpk", "dukptInitialKey": {"ksn": INITIAL_KSN}}),
        )
        .await;
    assert_eq!(status, 200, "{exported}");
    let (header, ipek) =
        paycrypto::tr31::unwrap(&h(KBPK), exported["keyBlock"].as_str().unwrap()).unwrap();
    assert_eq!(ipek.expose(), h(IPEK).as_slice());
    assert_eq!(header.key_usage, paycrypto::tr31::KeyUsage::B1);
    assert_eq!(
        header
            .key_set_identifier()
            .unwrap()
            .map(hex::encode_upper)
            .as_deref(),
        Some(INITIAL_KSN)
    );

    // Delete with a waiting period, restore (disabled), delete again.
    let (status, pending) = service
        .post(
            &format!("/v1/tenants/acme/keys/{key_id}/delete"),
            json!({"waitingPeriodDays": 3}),
        )
        .await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["state"], "KEY_STATE_DELETE_PENDING");
    assert!(pending["deleteAfter"].is_string());
    let (status, too_short) = service
        .post(
            "/v1/tenants/acme/keys/alias%2Fbdk/delete",
            json!({"waitingPeriodDays": 1}),
        )
        .await;
    assert_eq!(status, 400, "{too_short}");
    let (status, restored) = service
        .post(
            &format!("/v1/tenants/acme/keys/{key_id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(restored["state"], "KEY_STATE_DISABLED");

    // The waiting period ends: the key leaves the backend and the registry.
    service
        .post(&format!("/v1/tenants/acme/keys/{key_id}/delete"), json!({}))
        .await;
    let far_future = mpos_es::now_micros() + 200 * 86_400_000_000;
    assert_eq!(service.hsm.purge_due(far_future).await.unwrap(), 1);
    assert_eq!(
        service
            .get(&format!("/v1/tenants/acme/keys/{key_id}"))
            .await
            .0,
        404
    );
    assert_eq!(created["backendIds"], json!(["soft"]));

    // Every change is an event with its actor.
    let events = service.store.read_after(0, 10_000).await.unwrap();
    let operator_events = events
        .iter()
        .filter(|event| event.metadata().actor == "operator:platform")
        .count();
    let types: Vec<&str> = events
        .iter()
        .map(|event| event.event.event_type.as_str())
        .collect();
    for expected in [
        "mpos.hsm.v1.KeyCreated",
        "mpos.hsm.v1.KeyAliasSet",
        "mpos.hsm.v1.KeyUsageStopped",
        "mpos.hsm.v1.KeyUsageStarted",
        "mpos.hsm.v1.KeyExported",
        "mpos.hsm.v1.KeyDeletionScheduled",
        "mpos.hsm.v1.KeyDeletionCancelled",
        "mpos.hsm.v1.KeyDeleted",
    ] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    assert!(operator_events >= 8, "{operator_events}");
    assert!(
        events
            .iter()
            .all(|event| !event.metadata().actor.is_empty())
    );

    // The pool and its consistency report.
    let (status, backends) = service.get("/v1/backends").await;
    assert_eq!(status, 200);
    assert_eq!(backends[0]["healthy"], true);
    let (status, report) = service.get("/v1/backends/consistency").await;
    assert_eq!(status, 200);
    assert_eq!(report["consistent"], true, "{report}");
    service.stop().await;
}

/// RSA and EC key pairs: generated in the backend, the public half given out as a DER
/// SubjectPublicKeyInfo that parses as the asked-for key, the check value the platform's
/// convention (first 3 bytes of SHA-256 over that DER), the private half never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pairs() {
    use sha2::Digest;
    let service = common::embedded().await;
    for (algorithm, usage) in [
        ("KEY_ALGORITHM_RSA_2048", "S0"),
        ("KEY_ALGORITHM_RSA_2048", "K2"),
        ("KEY_ALGORITHM_ECC_NIST_P256", "S0"),
        ("KEY_ALGORITHM_ECC_NIST_P384", "K3"),
    ] {
        let (status, key) = service
            .post(
                "/v1/tenants/acme/keys",
                json!({"attributes": {"algorithm": algorithm, "keyUsage": usage}}),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        let key_id = key["keyId"].as_str().unwrap();
        let response: pb::GetPublicKeyResponse = service
            .call(
                "GetPublicKey",
                &pb::GetPublicKeyRequest {
                    tenant_id: "acme".into(),
                    key: key_id.into(),
                },
            )
            .await
            .unwrap();
        let der = &response.public_key;
        match algorithm {
            "KEY_ALGORITHM_RSA_2048" => {
                use rsa::traits::PublicKeyParts;
                let public =
                    <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(der)
                        .unwrap();
                assert_eq!(public.n().bits(), 2048);
            }
            "KEY_ALGORITHM_ECC_NIST_P256" => {
                <p256::PublicKey as p256::pkcs8::DecodePublicKey>::from_public_key_der(der)
                    .unwrap();
            }
            _ => {
                <p384::PublicKey as p384::pkcs8::DecodePublicKey>::from_public_key_der(der)
                    .unwrap();
            }
        }
        let expected_kcv = hex::encode_upper(&sha2::Sha256::digest(der)[..3]);
        assert_eq!(key["kcv"], expected_kcv.as_str());
        let (status, over_http) = service
            .get(&format!("/v1/tenants/acme/keys/{key_id}/public-key"))
            .await;
        assert_eq!(status, 200, "{over_http}");
        // Another tenant gets nothing.
        assert_eq!(
            service
                .get(&format!("/v1/tenants/other/keys/{key_id}/public-key"))
                .await
                .0,
            404
        );
    }
    // A symmetric key has no public half; a key pair cannot be a PIN key.
    let zpk = import_known(
        &service,
        "acme",
        attributes(pb::KeyAlgorithm::Tdes2key, "P0", "B", ""),
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB",
        "",
    )
    .await;
    let (status, _) = service
        .get(&format!("/v1/tenants/acme/keys/{}/public-key", zpk.key_id))
        .await;
    assert_eq!(status, 400);
    let (status, _) = service
        .post(
            "/v1/tenants/acme/keys",
            json!({"attributes": {"algorithm": "KEY_ALGORITHM_RSA_2048", "keyUsage": "P0"}}),
        )
        .await;
    assert_eq!(status, 400);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_on_the_embedded_default() {
    lifecycle(common::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_on_postgres_and_nats() {
    lifecycle(common::distributed().await).await;
}
