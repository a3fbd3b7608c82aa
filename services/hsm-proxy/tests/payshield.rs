//! The hsm-proxy over `payshield://` backends (payShield-compatible simulators from
//! `crates/payshield-sim`, in this process): every operation the host command set covers,
//! over the bus, with published known-answer vectors (each cites its source; the same as
//! tests/operations.rs and crates/payshield-sim/tests); typed errors for bad input and for
//! what the command set does not cover; and the pool's failover when a simulator is killed
//! and restarted, or slowed down, under continuous load.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{BDK, PAN, TENANT, TestService, ZPK, attributes, dukpt, h};
use mpos_errors::ErrorCode;
use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;
use paycrypto::primitives::{tdes_decrypt_ecb, tdes_encrypt_ecb};
use paycrypto::tr31::{
    self, Algorithm, Exportability, KeyBlockHeader, KeyLengthMasking, KeyUsage, ModeOfUse, Version,
};
use payshield_sim::{RunningSimulator, SimConfig, Simulator};

/// A second PIN key known to the test (`common::ZPK` is the first), with no published role.
const ZPK_B: &str = "1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A";
/// ANSI X9.24-1:2009 A.4: the clear ISO format 0 PIN block of PIN 1234, PAN 4012345678909.
const CLEAR_PIN_BLOCK: &str = "041274EDCBA9876F";

/// The tests of this file run one at a time: the failover test measures a rate, and the
/// machine's cores are shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn lmk() -> SecretBytes {
    SecretBytes::from_hex("lmk", common::LMK).unwrap()
}

async fn simulator(addr: &str) -> RunningSimulator {
    Simulator::bind(addr, SimConfig::new(lmk())).await.unwrap()
}

fn url(sim: &RunningSimulator, id: &str) -> String {
    format!(
        "payshield://{}?id={id}&site=local&header=4&connections=8&timeout_ms=300",
        sim.local_addr()
    )
}

/// The clear KEK of the pool: the test plays the key custodian who holds the LMK, opens the
/// KEK the HSM generated (its handle is the `S` key block under the LMK) and wraps the
/// published test keys under it, so that they enter the HSM as TR-31 blocks (A6), as keys
/// do in production.
struct Custodian {
    kek: SecretBytes,
}

impl Custodian {
    async fn new(service: &TestService, backend_id: &str) -> Self {
        let _: pb::Key = service
            .call(
                "CreateKey",
                &pb::CreateKeyRequest {
                    tenant_id: TENANT.into(),
                    alias: "kek".into(),
                    attributes: Some(attributes(pb::KeyAlgorithm::Aes256, "K0", "B", "E")),
                },
            )
            .await
            .expect("create kek");
        let entry = service.hsm.registry().resolve(TENANT, "alias/kek").unwrap();
        let handle = entry.handle_on(backend_id).expect("kek on the backend");
        let block = handle.strip_prefix('S').expect("an S key block");
        let (header, kek) = tr31::unwrap(lmk().expose(), block).unwrap();
        assert_eq!(header.key_usage.code(), "K0");
        // The registry's KCV is the one the HSM computed (A1), the AES CMAC KCV.
        assert_eq!(
            entry.kcv,
            paycrypto::kcv::aes_kcv_cmac(&kek).unwrap().to_hex()
        );
        Self { kek }
    }

    /// Imports a known key as a TR-31 version D block under the KEK (A6).
    async fn import(
        &self,
        service: &TestService,
        usage: &str,
        algorithm: Algorithm,
        mode: &str,
        key_hex: &str,
        alias: &str,
    ) -> pb::Key {
        let aes = algorithm == Algorithm::Aes;
        let header = KeyBlockHeader::new(
            Version::D,
            KeyUsage::from_code(usage).unwrap(),
            algorithm,
            ModeOfUse::from_code(mode).unwrap(),
            Exportability::Exportable,
        );
        let block = tr31::wrap(
            self.kek.expose(),
            &header,
            &h(key_hex),
            KeyLengthMasking::None,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let key: pb::Key = service
            .call(
                "ImportKey",
                &pb::ImportKeyRequest {
                    tenant_id: TENANT.into(),
                    alias: alias.into(),
                    material: Some(pb::import_key_request::Material::Tr31(pb::Tr31Import {
                        wrapping_key: "alias/kek".into(),
                        key_block: block,
                    })),
                },
            )
            .await
            .expect("import tr31");
        // The KCV the HSM answered (A7) is the key's, by paycrypto's KCV functions (tested on
        // published vectors in crates/paycrypto/tests/kcv.rs).
        let clear = SecretBytes::new(h(key_hex));
        let expected = if aes {
            paycrypto::kcv::aes_kcv_cmac(&clear).unwrap().to_hex()
        } else {
            paycrypto::kcv::tdes_kcv(&clear).unwrap().to_hex()
        };
        assert_eq!(key.kcv, expected, "{alias}");
        key
    }
}

fn cc_request(block: &str) -> pb::TranslatePinDataRequest {
    pb::TranslatePinDataRequest {
        tenant_id: TENANT.into(),
        incoming: Some(pb::PinBlockKey {
            key: "alias/zpk".into(),
            format: pb::PinBlockFormat::Iso0.into(),
            dukpt: None,
        }),
        outgoing: Some(pb::PinBlockKey {
            key: "alias/zpk-b".into(),
            format: pb::PinBlockFormat::Iso0.into(),
            dukpt: None,
        }),
        pin_block: block.into(),
        pan: PAN.into(),
        ..Default::default()
    }
}

/// The X9.24-1:2009 A.4 clear PIN block enciphered under the ZPK.
fn pin_block_under_zpk() -> String {
    hex::encode_upper(tdes_encrypt_ecb(&h(ZPK), &h(CLEAR_PIN_BLOCK)).unwrap())
}

fn opens_to_clear_block(response: &pb::TranslatePinDataResponse) -> bool {
    tdes_decrypt_ecb(&h(ZPK_B), &h(&response.pin_block)).ok() == Some(h(CLEAR_PIN_BLOCK))
}

async fn pin_keys(custodian: &Custodian, service: &TestService) {
    custodian
        .import(service, "P0", Algorithm::Tdes, "B", ZPK, "zpk")
        .await;
    custodian
        .import(service, "P0", Algorithm::Tdes, "B", ZPK_B, "zpk-b")
        .await;
}

/// CC: the X9.24-1:2009 A.4 clear ISO-0 block (PIN 1234, PAN 4012345678909) under one ZPK,
/// translated to another, opens to the same clear block. G0: the published DUKPT PIN blocks
/// of KSNs E00001 and E00002 (X9.24-1:2009 A.4.2) open under the destination ZPK to it.
async fn translate_pins(custodian: &Custodian, service: &TestService) {
    custodian
        .import(service, "B0", Algorithm::Tdes, "X", BDK, "bdk")
        .await;
    let response: pb::TranslatePinDataResponse = service
        .call("TranslatePinData", &cc_request(&pin_block_under_zpk()))
        .await
        .expect("cc");
    assert!(opens_to_clear_block(&response));
    for (ksn, block) in [
        ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
        ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ] {
        let response: pb::TranslatePinDataResponse = service
            .call(
                "TranslatePinData",
                &pb::TranslatePinDataRequest {
                    incoming: Some(pb::PinBlockKey {
                        key: "alias/bdk".into(),
                        format: pb::PinBlockFormat::Iso0.into(),
                        dukpt: dukpt(ksn, pb::DukptDirection::Request),
                    }),
                    ..cc_request(block)
                },
            )
            .await
            .expect("g0");
        assert!(opens_to_clear_block(&response), "{ksn}");
    }
}

/// M6/M8: Bouncy Castle ISO9797Alg3MacTest (retail MAC: key 7CA110454A1A6E570131D9619DC1376E,
/// "Hello World !!!!" → F09B856213BAB83B), as in tests/operations.rs.
async fn macs(custodian: &Custodian, service: &TestService) {
    custodian
        .import(
            service,
            "M3",
            Algorithm::Tdes,
            "C",
            "7CA110454A1A6E570131D9619DC1376E",
            "retail",
        )
        .await;
    let request = pb::GenerateMacRequest {
        tenant_id: TENANT.into(),
        key: "alias/retail".into(),
        algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
        message: b"Hello World !!!!".to_vec(),
        ..Default::default()
    };
    let generated: pb::GenerateMacResponse =
        service.call("GenerateMac", &request).await.expect("m6");
    assert_eq!(generated.mac, h("F09B856213BAB83B"));
    for (mac, verified) in [("F09B856213BAB83B", true), ("F19B856213BAB83B", false)] {
        let response: pb::VerifyMacResponse = service
            .call(
                "VerifyMac",
                &pb::VerifyMacRequest {
                    tenant_id: TENANT.into(),
                    key: "alias/retail".into(),
                    algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
                    message: b"Hello World !!!!".to_vec(),
                    mac: h(mac),
                    ..Default::default()
                },
            )
            .await
            .expect("m8");
        assert_eq!(response.verified, verified, "{mac}");
    }
}

/// M0/M2: NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt, first block) and FIPS-197 C.1 (AES-128
/// ECB), encrypted and decrypted back.
async fn data(custodian: &Custodian, service: &TestService) {
    custodian
        .import(
            service,
            "D0",
            Algorithm::Aes,
            "B",
            "2B7E151628AED2A6ABF7158809CF4F3C",
            "aes-cbc",
        )
        .await;
    custodian
        .import(
            service,
            "D0",
            Algorithm::Aes,
            "B",
            "000102030405060708090A0B0C0D0E0F",
            "aes-ecb",
        )
        .await;
    for (key, mode, iv, plaintext, ciphertext) in [
        (
            "alias/aes-cbc",
            pb::CipherMode::Cbc,
            h("000102030405060708090A0B0C0D0E0F"),
            "6BC1BEE22E409F96E93D7E117393172A",
            "7649ABAC8119B246CEE98E9B12E9197D",
        ),
        (
            "alias/aes-ecb",
            pb::CipherMode::Ecb,
            Vec::new(),
            "00112233445566778899AABBCCDDEEFF",
            "69C4E0D86A7B0430D8CDB78070B4C55A",
        ),
    ] {
        let encryption = Some(pb::Encryption {
            key: key.into(),
            mode: mode.into(),
            iv,
            dukpt: None,
        });
        let encrypted: pb::EncryptDataResponse = service
            .call(
                "EncryptData",
                &pb::EncryptDataRequest {
                    tenant_id: TENANT.into(),
                    encryption: encryption.clone(),
                    plaintext: h(plaintext),
                },
            )
            .await
            .expect("m0");
        assert_eq!(encrypted.ciphertext, h(ciphertext), "{key}");
        let decrypted: pb::DecryptDataResponse = service
            .call(
                "DecryptData",
                &pb::DecryptDataRequest {
                    tenant_id: TENANT.into(),
                    encryption,
                    ciphertext: h(ciphertext),
                    ..Default::default()
                },
            )
            .await
            .expect("m2");
        assert_eq!(decrypted.plaintext, h(plaintext), "{key}");
    }
}

/// KQ: pyemv tests/test_cvn_hsm.py `test_visa_cvn10` (cited in paycrypto's tests/emv.rs):
/// IMK-AC 0123456789ABCDEFFEDCBA9876543210, PAN 1234567890123456, PSN 00, ARQC over the CDOL1
/// data ‖ CVR 03A06010 → 29CCA15AE665FA2E; ARPC method 1 with ARC "00" (3030) →
/// 28993816AFAE4AEB.
async fn arqc(custodian: &Custodian, service: &TestService) {
    custodian
        .import(service, "E0", Algorithm::Tdes, "X", BDK, "imk-ac")
        .await;
    let data =
        h("000000004000 000000000000 0124 8000048000 0124 191105 01 52BF4585 1800 001C 03A06010");
    for (arqc, verified, arpc) in [
        ("29CCA15AE665FA2E", true, "28993816AFAE4AEB"),
        ("29CCA15AE665FA2F", false, ""),
    ] {
        let response: pb::VerifyAuthRequestCryptogramResponse = service
            .call(
                "VerifyAuthRequestCryptogram",
                &pb::VerifyAuthRequestCryptogramRequest {
                    tenant_id: TENANT.into(),
                    key: "alias/imk-ac".into(),
                    derivation: pb::MasterKeyDerivation::OptionA.into(),
                    session_key_scheme: pb::SessionKeyScheme::VisaCvn10.into(),
                    pan: "1234567890123456".into(),
                    pan_sequence_number: "00".into(),
                    atc: h("001C"),
                    transaction_data: data.clone(),
                    arqc: h(arqc),
                    arpc: Some(
                        pb::verify_auth_request_cryptogram_request::Arpc::ArpcMethod1(
                            pb::ArpcMethod1 {
                                auth_response_code: b"00".to_vec(),
                            },
                        ),
                    ),
                    ..Default::default()
                },
            )
            .await
            .expect("kq");
        assert_eq!(response.verified, verified, "{arqc}");
        assert_eq!(response.arpc, h(arpc), "{arqc}");
    }
}

/// A8: the ZPK exported under the KEK opens, with the custodian's KEK, to the ZPK; A0: a
/// generated key's KCV is consistent on every backend (BU); the consistency report is clean.
async fn export_generate_and_consistency(custodian: &Custodian, service: &TestService) {
    let exported: pb::ExportKeyResponse = service
        .call(
            "ExportKey",
            &pb::ExportKeyRequest {
                tenant_id: TENANT.into(),
                key: "alias/zpk".into(),
                wrapping_key: "alias/kek".into(),
                format: Some(pb::export_key_request::Format::Tr31(pb::Tr31Export {
                    exportability: "E".into(),
                })),
            },
        )
        .await
        .expect("a8");
    let (header, key) = tr31::unwrap(custodian.kek.expose(), &exported.key_block).unwrap();
    assert_eq!(header.key_usage.code(), "P0");
    assert_eq!(key.expose(), h(ZPK).as_slice());
    // A8 cannot set the exported block's exportability: asking for N is refused, typed.
    let error = service
        .call::<_, pb::ExportKeyResponse>(
            "ExportKey",
            &pb::ExportKeyRequest {
                tenant_id: TENANT.into(),
                key: "alias/zpk".into(),
                wrapping_key: "alias/kek".into(),
                format: Some(pb::export_key_request::Format::Tr31(pb::Tr31Export {
                    exportability: "N".into(),
                })),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::BadRequest, "{error:?}");
    assert!(error.message.contains("A8"), "{}", error.message);

    let generated: pb::Key = service
        .call(
            "CreateKey",
            &pb::CreateKeyRequest {
                tenant_id: TENANT.into(),
                alias: "generated".into(),
                attributes: Some(attributes(pb::KeyAlgorithm::Tdes2key, "D0", "B", "")),
            },
        )
        .await
        .expect("a0");
    assert_eq!(generated.kcv.len(), 6);
    let (status, report) = service.get("/v1/backends/consistency").await;
    assert_eq!(status, 200);
    assert_eq!(report["consistent"], true, "{report}");
}

/// What the host command set does not cover is `unsupported` (bad_request) naming the
/// missing command; bad input the HSM refuses is bad_request, never unavailable.
async fn unsupported_and_bad_input(service: &TestService) {
    let mut cases: Vec<(&str, mpos_errors::ServiceError, &str)> = Vec::new();
    let error = service
        .call::<_, pb::Key>(
            "ImportKey",
            &pb::ImportKeyRequest {
                tenant_id: TENANT.into(),
                alias: "from-components".into(),
                material: Some(pb::import_key_request::Material::Components(
                    pb::ComponentsImport {
                        attributes: Some(attributes(pb::KeyAlgorithm::Tdes2key, "P0", "B", "")),
                        components: vec![
                            pb::KeyComponent {
                                value: "11".repeat(16),
                                kcv: paycrypto::kcv::tdes_kcv(&SecretBytes::new(vec![0x11; 16]))
                                    .unwrap()
                                    .to_hex(),
                            },
                            pb::KeyComponent {
                                value: "22".repeat(16),
                                kcv: paycrypto::kcv::tdes_kcv(&SecretBytes::new(vec![0x22; 16]))
                                    .unwrap()
                                    .to_hex(),
                            },
                        ],
                        kcv: String::new(),
                    },
                )),
            },
        )
        .await
        .unwrap_err();
    cases.push(("clear components", error, "clear-component"));
    let error = service
        .call::<_, pb::GenerateMacResponse>(
            "GenerateMac",
            &pb::GenerateMacRequest {
                tenant_id: TENANT.into(),
                key: "alias/bdk".into(),
                algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
                message: b"4012345678909D987".to_vec(),
                dukpt: dukpt("FFFF9876543210E00001", pb::DukptDirection::Request),
                mac_length: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    cases.push(("DUKPT MAC", error, "M6"));
    let error = service
        .call::<_, pb::ReEncryptDataResponse>(
            "ReEncryptData",
            &pb::ReEncryptDataRequest {
                tenant_id: TENANT.into(),
                incoming: Some(pb::Encryption {
                    key: "alias/aes-ecb".into(),
                    mode: pb::CipherMode::Ecb.into(),
                    ..Default::default()
                }),
                outgoing: Some(pb::Encryption {
                    key: "alias/aes-cbc".into(),
                    mode: pb::CipherMode::Ecb.into(),
                    ..Default::default()
                }),
                ciphertext: h("69C4E0D86A7B0430D8CDB78070B4C55A"),
            },
        )
        .await
        .unwrap_err();
    cases.push(("re-encryption", error, "M4"));
    let error = service
        .call::<_, pb::TranslatePinDataResponse>(
            "TranslatePinData",
            &cc_request("0123456789ABCDEF"),
        )
        .await
        .unwrap_err();
    cases.push((
        "a PIN block that does not decipher to a valid block",
        error,
        "20",
    ));
    let error = service
        .call::<_, pb::EncryptDataResponse>(
            "EncryptData",
            &pb::EncryptDataRequest {
                tenant_id: TENANT.into(),
                encryption: Some(pb::Encryption {
                    key: "alias/aes-ecb".into(),
                    mode: pb::CipherMode::Ecb.into(),
                    ..Default::default()
                }),
                plaintext: h("0011223344"),
            },
        )
        .await
        .unwrap_err();
    cases.push(("data not a multiple of the block", error, ""));
    // ECDH initial key delivery (as TR-34): no host command covers it.
    let device_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let device_certificate = rcgen::CertificateParams::new(vec!["ped".to_owned()])
        .unwrap()
        .self_signed(&device_key)
        .unwrap()
        .der()
        .to_vec();
    let error = service
        .call::<_, pb::ExportKeyResponse>(
            "ExportKey",
            &pb::ExportKeyRequest {
                tenant_id: TENANT.into(),
                key: "alias/bdk".into(),
                wrapping_key: String::new(),
                format: Some(pb::export_key_request::Format::EcdhDukptInitialKey(
                    pb::EcdhDukptInitialKeyExport {
                        ksn: "FFFF9876543210E00000".into(),
                        device_certificate,
                    },
                )),
            },
        )
        .await
        .unwrap_err();
    cases.push((
        "ECDH initial key delivery",
        error,
        "(payshield) cannot deliver keys by ECDH",
    ));
    for (what, error, names) in cases {
        assert_eq!(error.code, ErrorCode::BadRequest, "{what}: {error:?}");
        assert!(error.message.contains(names), "{what}: {}", error.message);
        for secret in [BDK, ZPK, ZPK_B, PAN, CLEAR_PIN_BLOCK] {
            assert!(!error.message.contains(secret), "{what}: {}", error.message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_operation_over_one_simulator() {
    let _serial = SERIAL.lock().await;
    let sim = simulator("127.0.0.1:0").await;
    let service = common::embedded_with(vec![url(&sim, "ps-a")]).await;
    let custodian = Custodian::new(&service, "ps-a").await;
    pin_keys(&custodian, &service).await;
    translate_pins(&custodian, &service).await;
    macs(&custodian, &service).await;
    data(&custodian, &service).await;
    arqc(&custodian, &service).await;
    export_generate_and_consistency(&custodian, &service).await;
    unsupported_and_bad_input(&service).await;
    service.stop().await;
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------------------------

async fn backend_healthy(service: &TestService, id: &str) -> Option<bool> {
    let (status, backends) = service.get("/v1/backends").await;
    assert_eq!(status, 200);
    backends.as_array()?.iter().find_map(|backend| {
        (backend["backendId"] == id).then(|| backend["healthy"].as_bool().unwrap_or(false))
    })
}

/// The BackendHealthChanged events of `id` in the log, as their `healthy` values in order.
async fn health_events(service: &TestService, id: &str) -> Vec<bool> {
    service
        .store
        .read_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|stored| stored.event.aggregate_type == hsm_proxy::health::AGGREGATE_TYPE)
        .filter_map(|stored| {
            let payload: serde_json::Value = serde_json::from_str(&stored.event.payload).ok()?;
            let text = payload.to_string();
            text.contains(&format!("\"{id}\""))
                .then(|| text.contains("\"healthy\":true"))
        })
        .collect()
}

/// Three simulators with one LMK behind one hsm-proxy (SQLite, the in-process bus): keys
/// created once (on all three).
async fn pool_of_three() -> (Vec<RunningSimulator>, Arc<TestService>) {
    let mut sims = Vec::new();
    for _ in 0..3 {
        sims.push(simulator("127.0.0.1:0").await);
    }
    let urls = sims
        .iter()
        .enumerate()
        .map(|(i, sim)| url(sim, &format!("ps-{i}")))
        .collect();
    let service = common::embedded_with(urls).await;
    let custodian = Custodian::new(&service, "ps-0").await;
    pin_keys(&custodian, &service).await;
    for alias in ["alias/kek", "alias/zpk", "alias/zpk-b"] {
        let entry = service.hsm.registry().resolve(TENANT, alias).unwrap();
        assert_eq!(
            entry.backend_keys.len(),
            3,
            "{alias} replicated to every hsm"
        );
    }
    (sims, Arc::new(service))
}

/// Runs TranslatePinData (CC) on `workers` concurrent callers until `stop`; returns (ok,
/// failed). Every answer is checked against the published clear PIN block.
fn load(
    service: &Arc<TestService>,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, u64)>> {
    let request = cc_request(&pin_block_under_zpk());
    (0..workers)
        .map(|_| {
            let service = service.clone();
            let stop = stop.clone();
            let request = request.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0_u64, 0_u64);
                while !stop.load(Ordering::Relaxed) {
                    match service
                        .call::<_, pb::TranslatePinDataResponse>("TranslatePinData", &request)
                        .await
                    {
                        Ok(response) if opens_to_clear_block(&response) => ok += 1,
                        Ok(_) => failed += 1,
                        Err(error) => {
                            eprintln!("operation failed: {error:?}");
                            failed += 1;
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect()
}

async fn totals(handles: Vec<tokio::task::JoinHandle<(u64, u64)>>) -> (u64, u64) {
    let mut total = (0, 0);
    for handle in handles {
        let (ok, failed) = handle.await.unwrap();
        total.0 += ok;
        total.1 += failed;
    }
    total
}

async fn stop_service(service: Arc<TestService>) {
    match Arc::try_unwrap(service) {
        Ok(service) => service.stop().await,
        Err(_) => panic!("service still shared"),
    }
}

/// The acceptance test: ≥ 1,000 TranslatePinData/s for 8 s over a pool of three
/// simulators; one is killed after 2 s and restarted on its port after 5 s. No client
/// operation fails, the killed backend leaves rotation and rejoins, and its health changes
/// are in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_when_a_simulator_is_killed_and_restarted() {
    let _serial = SERIAL.lock().await;
    failover(pool_of_three().await).await;
}

async fn failover((mut sims, service): (Vec<RunningSimulator>, Arc<TestService>)) {
    let victim = "ps-1";
    let addr = sims[1].local_addr().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers = load(&service, 64, &stop);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = sims.remove(1);
    killed.shutdown().await;
    let killed_at = started.elapsed();
    let mut seen_down = false;
    while started.elapsed() < Duration::from_secs(5) {
        if backend_healthy(&service, victim).await == Some(false) {
            seen_down = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = simulator(&addr).await;
    let mut seen_up_again = false;
    while started.elapsed() < Duration::from_secs(8) {
        if seen_down && backend_healthy(&service, victim).await == Some(true) {
            seen_up_again = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = totals(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = ok as f64 / elapsed;
    eprintln!(
        "failover: {ok} ok, {failed} failed in {elapsed:.2} s ({rate:.0}/s); killed at {killed_at:?}"
    );
    assert_eq!(failed, 0, "client operations failed");
    assert!(seen_down, "the killed backend did not leave rotation");
    assert!(
        seen_up_again,
        "the restarted backend did not rejoin rotation"
    );
    assert!(rate >= 1_000.0, "only {rate:.0} operations/s");
    let member = service.hsm.pool().member(victim).unwrap();
    assert!(member.is_healthy());
    // Recorded in the log: out of rotation, then back.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = health_events(&service, victim).await;
        if events.ends_with(&[false, true]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(events.contains(&false), "no unhealthy event: {events:?}");
    assert!(events.ends_with(&[false, true]), "events {events:?}");
    stop_service(service).await;
    restarted.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}

/// A simulator slower than the pool's attempt timeout: operations still succeed (on the
/// others) and the slow backend leaves rotation; without the delay it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_simulator_leaves_rotation_and_operations_succeed() {
    let _serial = SERIAL.lock().await;
    let (sims, service) = pool_of_three().await;
    let slow = "ps-2";
    sims[2].set_delay(Duration::from_millis(800));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&service, 8, &stop);
    let started = Instant::now();
    let mut seen_out = false;
    while started.elapsed() < Duration::from_secs(2) {
        if backend_healthy(&service, slow).await == Some(false) {
            seen_out = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still_out = !service.hsm.pool().member(slow).unwrap().is_healthy();
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = totals(workers).await;
    assert_eq!(failed, 0, "client operations failed");
    assert!(ok > 0);
    assert!(seen_out && still_out, "the slow backend stayed in rotation");
    sims[2].set_delay(Duration::ZERO);
    let back = AtomicU64::new(0);
    for _ in 0..100 {
        if service.hsm.pool().member(slow).unwrap().is_healthy() {
            back.store(1, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        back.load(Ordering::Relaxed),
        1,
        "the backend did not come back"
    );
    stop_service(service).await;
    for sim in sims {
        sim.shutdown().await;
    }
}

/// An HSM that is down when the service starts: the backend connects lazily, its health
/// check is `unavailable` (so the pool keeps it out of rotation), and it passes once the HSM
/// listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hsm_down_at_start_is_unavailable_until_it_listens() {
    use hsm_proxy::error::HsmError;
    let _serial = SERIAL.lock().await;
    let sim = simulator("127.0.0.1:0").await;
    let addr = sim.local_addr().to_string();
    let url = url(&sim, "ps-late");
    sim.shutdown().await;
    let backend = hsm_proxy::backend::connect(&url, &hsm_proxy::backend::BackendSecrets::default())
        .await
        .expect("lazy");
    assert_eq!(backend.kind(), "payshield");
    assert!(matches!(
        backend.check().await,
        Err(HsmError::Unavailable(_))
    ));
    let sim = simulator(&addr).await;
    backend.check().await.expect("healthy once listening");
    sim.shutdown().await;
}
