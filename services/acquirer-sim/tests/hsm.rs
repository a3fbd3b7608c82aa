//! The simulator's PIN and ARQC checks and both sides' MACs through an in-process hsm-proxy
//! (soft backend, SQLite, the in-process `memory://` bus), with the published test keys
//! imported as clear components.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use acquirer_link::framing::{Framing, LengthPrefix};
use acquirer_link::profile::{self, AuthorizationRequest, EntryMode, PinBlock, RequestKind};
use acquirer_link::{HsmMac, Link, LinkConfig, LinkState, MacProvider};
use acquirer_sim::issuer::HsmIssuer;
use acquirer_sim::{AcquirerSim, RuleSet, SimConfig};
use chrono::{SubsecRound, Utc};
use hsm_proxy::rpc::HsmClient;
use hsm_proxy::service::HsmConfig;
use hsm_proxy::test_support::{attributes, components_import};
use iso8583::Spec;
use mpos_config::Vars;
use mpos_proto::hsm as pb;
use mpos_service::{CommonConfig, Infrastructure};
use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, Pin, PinBlockFormat, encrypt_pin_block};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "acquirer-sim";
const SIGNING_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
const LMK: &str = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F";
const MAC_KEY: &str = "7CA110454A1A6E570131D9619DC1376E";
const ZPK: &str = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB";
const PVK: &str = "12345678123456781234567812345678";
const IMK: &str = "0123456789ABCDEFFEDCBA9876543210";

struct Hsm {
    client: HsmClient,
    cancel: CancellationToken,
    running: hsm_proxy::service::Running,
    _dir: tempfile::TempDir,
}

async fn start_hsm() -> Hsm {
    let dir = tempfile::tempdir().unwrap();
    let bus_url = format!("memory://acqsim{}", uuid::Uuid::new_v4().simple());
    let vars = Vars::from_pairs(vec![
        (
            "MPOS_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("hsm.db").display()),
        ),
        ("MPOS_BUS_URL", bus_url.clone()),
        ("MPOS_CHAIN_SIGNING_KEY", SIGNING_KEY.to_owned()),
        ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
    ]);
    let config =
        CommonConfig::from_vars(&vars, hsm_proxy::SERVICE, "127.0.0.1:0", "127.0.0.1:0").unwrap();
    let hsm_config = HsmConfig {
        backends: vec![format!("soft://{}", dir.path().join("keys").display())],
        soft_lmk: Some(SecretBytes::from_hex("lmk", LMK).unwrap()),
        pkcs11_pin: None,
        pool: hsm_proxy::pool::PoolConfig {
            local_site: "local".into(),
            attempt_timeout: Duration::from_millis(2_000),
            check_interval: Duration::from_millis(100),
        },
        ..HsmConfig::default()
    };
    let cancel = CancellationToken::new();
    let infrastructure = Infrastructure::default();
    let (store, bus) = infrastructure.connect(&config, &cancel).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token = SecretString::from("operator-token-for-tests-0123456789abcdef".to_owned());
    let running = hsm_proxy::service::start(
        &config,
        &hsm_config,
        store,
        &bus,
        &infrastructure,
        &token,
        listener,
        &cancel,
    )
    .await
    .unwrap();
    let caller = mpos_bus::connect(&bus_url).await.unwrap();
    let client = HsmClient::new(
        caller.requests.unwrap(),
        "service:acquirer-sim-test",
        Duration::from_secs(5),
    )
    .with_sealer(std::sync::Arc::new(mpos_seal::Sealer::new().unwrap()));
    Hsm {
        client,
        cancel,
        running,
        _dir: dir,
    }
}

/// Imports `key_hex` (TDES) as two clear components (0x11… and key XOR 0x11…), as the
/// hsm-proxy's own tests do.
async fn import(hsm: &Hsm, usage: &str, mode: &str, key_hex: &str, alias: &str) {
    let attributes = attributes(pb::KeyAlgorithm::Tdes2key, usage, mode, "");
    let key = hex::decode(key_hex).unwrap();
    let request = components_import(TENANT, alias, attributes, &key).unwrap();
    let _: pb::Key = hsm.client.call("ImportKey", &request).await.unwrap();
}

fn purchase(stan: u32, pan: &str, amount: u64) -> AuthorizationRequest {
    let at = Utc::now().trunc_subsecs(0);
    AuthorizationRequest {
        kind: RequestKind::Purchase,
        pan: Pan::new(pan).unwrap(),
        expiry: None,
        track2: None,
        pan_sequence: Some("000".into()),
        amount_minor: amount,
        currency_numeric: "978".into(),
        stan,
        rrn: format!("{stan:012}"),
        transmitted_at: at,
        local_at: at.naive_utc(),
        mcc: "5999".into(),
        entry_mode: EntryMode::Chip,
        pin_capable: true,
        pin_block: None,
        icc_data: None,
        terminal_id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        acquirer_institution_id: "12345678".into(),
        original: None,
        auth_code: None,
    }
}

fn iso0(pin: &str, pan: &str) -> PinBlock {
    let block = encrypt_pin_block(
        PinBlockFormat::Iso0,
        &SecretBytes::from_hex("zpk", ZPK).unwrap(),
        &Pin::new(pin).unwrap(),
        Some(&Pan::new(pan).unwrap()),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    PinBlock::new(block.try_into().unwrap())
}

/// pyemv's CVN 18 data (see tests/sim.rs): ARQC 7A788EA6B8A3E733.
fn pyemv_icc(arqc: &str) -> Vec<u8> {
    hex::decode(
        format!(
            "9F0206000000004000 9F0306000000000000 9F1A020124 95058000048000 5F2A020124 \
             9A03191105 9C0101 9F370452BF4585 82021800 9F3602001C 9F100706011203A0B800 9F2608{arqc}"
        )
        .replace(' ', ""),
    )
    .unwrap()
}

#[tokio::test]
async fn pin_arqc_and_macs_through_the_hsm_proxy() {
    let hsm = start_hsm().await;
    import(&hsm, "M3", "C", MAC_KEY, "zak").await;
    import(&hsm, "P0", "B", ZPK, "zpk").await;
    import(&hsm, "V2", "C", PVK, "pvk").await;
    import(&hsm, "E0", "X", IMK, "imk-ac").await;
    let mac: Arc<dyn MacProvider> = Arc::new(HsmMac::new(hsm.client.clone(), TENANT, "alias/zak"));
    let spec = Arc::new(Spec::builtin("ascii-1987").unwrap());
    let framing = Framing {
        prefix: LengthPrefix::Binary2,
        header: Vec::new(),
    };
    let mut config = SimConfig::new(spec.clone(), framing.clone());
    config.rules = RuleSet::from_json(
        r#"{
          "cards": [{ "pan": "1234567890123", "pvv": "1226", "pvki": 0 }],
          "rules": [
            { "name": "pin", "when": { "pan_prefix": "1234567890123", "amount_max": 999 }, "then": "verify_pin" },
            { "name": "chip", "when": { "amount_min": 1000 }, "then": { "verify_arqc": {} } }
          ]
        }"#,
    )
    .unwrap();
    config.mac = Some(mac.clone());
    config.issuer = Some(Arc::new(HsmIssuer {
        client: hsm.client.clone(),
        tenant_id: TENANT.into(),
        zpk: Some("alias/zpk".into()),
        pvk: Some("alias/pvk".into()),
        imk_ac: Some("alias/imk-ac".into()),
    }));
    let sim = AcquirerSim::start(config, TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let mut link_config =
        LinkConfig::new("sim", sim.addr().to_string(), spec, framing).with_mac(mac);
    link_config.response_timeout = Duration::from_secs(3);
    link_config.echo_interval = Duration::ZERO;
    let cancel = CancellationToken::new();
    let link = Link::start(link_config, cancel.clone());
    assert!(
        link.wait_for(LinkState::Connected, Duration::from_secs(5))
            .await
    );
    let authorize = |request: AuthorizationRequest| {
        let link = link.clone();
        async move {
            let answer = link
                .exchange(profile::to_message(&request).unwrap())
                .await
                .unwrap();
            profile::response_from_message(&answer).unwrap()
        }
    };

    let mut pin = purchase(1, "1234567890123", 500);
    pin.pin_block = Some(iso0("1234", "1234567890123"));
    assert_eq!(authorize(pin.clone()).await.response_code, "00");
    pin.stan = 2;
    pin.rrn = "000000000002".into();
    pin.pin_block = Some(iso0("9999", "1234567890123"));
    assert_eq!(authorize(pin).await.response_code, "55");

    let mut chip = purchase(3, "1234567890123456", 4_000);
    chip.icc_data = Some(pyemv_icc("7A788EA6B8A3E733"));
    let approved = authorize(chip.clone()).await;
    assert_eq!(approved.response_code, "00");
    let issuer_data = approved.icc_data.unwrap();
    let items = emv_tlv::parse(&issuer_data).unwrap();
    let tag91 = emv_tlv::find(&items, emv_tlv::Tag(0x91)).unwrap();
    assert_eq!(tag91.len(), 10);
    assert_eq!(&tag91[8..], b"00");
    chip.stan = 4;
    chip.rrn = "000000000004".into();
    chip.icc_data = Some(pyemv_icc("7A788EA6B8A3E734"));
    assert_eq!(authorize(chip).await.response_code, "05");

    cancel.cancel();
    sim.shutdown().await;
    hsm.cancel.cancel();
    hsm.running.join().await;
}
