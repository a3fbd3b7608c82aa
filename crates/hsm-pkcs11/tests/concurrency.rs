//! Many tasks share one token (pool of 4 sessions) and all get correct results.

#![allow(clippy::unwrap_used)]

mod common;

use common::{fresh_token_with, h, import};
use hsm_pkcs11::{CipherMode, KeyKind, KeyUses, MacAlgorithm};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_share_the_session_pool() {
    let t = fresh_token_with("conc", 4).await;
    // NIST SP 800-38A F.1.1 (ECB-AES128) and RFC 4493 example 2 (same key).
    import(
        &t,
        "k",
        KeyKind::Aes128,
        KeyUses::CIPHER | KeyUses::MAC,
        "2b7e151628aed2a6abf7158809cf4f3c",
    )
    .await;
    let pt = h("6bc1bee22e409f96e93d7e117393172a");
    let ct = h("3ad77bb40d7a3660a89ecaf32466ef97");
    let mac = h("070a16b46b4d4144f79bdd9dd04a287c");

    let mut tasks = Vec::new();
    for n in 0..32 {
        let (t, pt, ct, mac) = (t.clone(), pt.clone(), ct.clone(), mac.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                match (n + i) % 4 {
                    0 => assert_eq!(t.encrypt("k", CipherMode::Ecb, &pt).await.unwrap(), ct),
                    1 => assert_eq!(
                        t.decrypt("k", CipherMode::Ecb, &ct).await.unwrap().expose(),
                        pt.as_slice()
                    ),
                    2 => assert_eq!(t.mac("k", MacAlgorithm::AesCmac, &pt).await.unwrap(), mac),
                    _ => {
                        // Key lifecycle from many tasks at once: unique ids per task.
                        let id = format!("g-{n}-{i}");
                        t.generate_key(&id, "", KeyKind::Aes128, KeyUses::ENCRYPT)
                            .await
                            .unwrap();
                        t.kcv(&id).await.unwrap();
                        t.destroy(&id).await.unwrap();
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    t.check().await.unwrap();
}
