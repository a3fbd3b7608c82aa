//! Properties of the hsm-proxy over the bus, on the embedded default:
//! - a PIN entered on a simulated TDES DUKPT PIN pad (paycrypto's device side) for any PIN,
//!   PAN and transaction counter comes out of TranslatePinData as the same PIN under the ZPK;
//! - any bytes sent to any operation are answered (a typed error or a reply), never a crash
//!   or an internal error, and the service keeps serving.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{BDK, ZPK, h};
use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;
use paycrypto::dukpt::tdes::{DataKeyDerivation, Device, KeyUsage, Ksn, derive_ipek};
use paycrypto::pin::{Pan, Pin, PinBlockFormat, decrypt_pin_block, encrypt_pin_block};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn dukpt_pin_pad_to_zpk_keeps_the_pin() {
    let runtime = runtime();
    let service = runtime.block_on(async {
        let service = common::embedded().await;
        common::import_bdk(&service, "").await;
        common::import_zpk(&service).await;
        service
    });
    let bdk = SecretBytes::new(h(BDK));
    let zpk = SecretBytes::new(h(ZPK));
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        pin in "[0-9]{4,12}",
        pan in "[0-9]{12,19}",
        device in proptest::array::uniform5(any::<u8>()),
        transactions in 1_usize..40,
        format in prop_oneof![Just(PinBlockFormat::Iso0), Just(PinBlockFormat::Iso3), Just(PinBlockFormat::Iso1)],
    )| {
        // A PIN pad of its own (initial KSN with this device id, counter 0) runs `transactions`
        // transactions and enciphers the PIN block of the last one.
        let mut ksn = [0xFF_u8; 10];
        ksn[2..7].copy_from_slice(&device);
        ksn[7] &= 0xE0;
        ksn[8] = 0;
        ksn[9] = 0;
        let initial = Ksn::from_bytes(&ksn).unwrap();
        let mut pad = Device::load_initial_key(&derive_ipek(&bdk, &initial).unwrap(), &initial).unwrap();
        let mut transaction = pad.next_transaction().unwrap();
        for _ in 1..transactions {
            transaction = pad.next_transaction().unwrap();
        }
        let pin_key = transaction.working_key(KeyUsage::PinEncryption, DataKeyDerivation::OneWay).unwrap();
        let pan_value = Pan::new(&pan).unwrap();
        let block = encrypt_pin_block(PinBlockFormat::Iso0, &pin_key, &Pin::new(&pin).unwrap(), Some(&pan_value), &mut rand::rngs::OsRng).unwrap();
        let outgoing = match format {
            PinBlockFormat::Iso1 => pb::PinBlockFormat::Iso1,
            PinBlockFormat::Iso3 => pb::PinBlockFormat::Iso3,
            _ => pb::PinBlockFormat::Iso0,
        };
        let response: pb::TranslatePinDataResponse = runtime
            .block_on(service.call(
                "TranslatePinData",
                &pb::TranslatePinDataRequest {
                    tenant_id: "acme".into(),
                    incoming: Some(pb::PinBlockKey {
                        key: "alias/bdk".into(),
                        format: pb::PinBlockFormat::Iso0.into(),
                        dukpt: Some(pb::Dukpt { ksn: transaction.ksn().to_hex(), ..Default::default() }),
                    }),
                    outgoing: Some(pb::PinBlockKey {
                        key: "alias/zpk".into(),
                        format: outgoing.into(),
                        dukpt: None,
                    }),
                    pin_block: hex::encode_upper(&block),
                    pan: pan.clone(),
                    ..Default::default()
                },
            ))
            .unwrap();
        let translated = h(&response.pin_block);
        let out = decrypt_pin_block(format, &zpk, &translated, Some(&pan_value)).unwrap();
        prop_assert_eq!(&*out.expose(), pin.as_str());
    });
    runtime.block_on(service.stop());
}

#[test]
fn any_bytes_to_any_operation_are_answered() {
    let runtime = runtime();
    let service = runtime.block_on(async {
        let service = common::embedded().await;
        common::import_zpk(&service).await;
        service
    });
    let config = ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        operation in proptest::sample::select(hsm_proxy::rpc::OPERATIONS),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    )| {
        let reply = runtime.block_on(service.requests.request(
            &hsm_proxy::rpc::subject(operation),
            mpos_bus::Message::new(body),
            Duration::from_secs(5),
        ));
        match reply {
            Ok(_) => {}
            Err(mpos_bus::BusError::Rejected(error)) => {
                prop_assert_ne!(error.code, mpos_errors::ErrorCode::Internal, "{} {:?}", operation, error);
            }
            Err(other) => prop_assert!(false, "{operation}: {other}"),
        }
    });
    // Still serving.
    let key: pb::Key = runtime
        .block_on(service.call(
            "GetKey",
            &pb::GetKeyRequest {
                tenant_id: "acme".into(),
                key: "alias/zpk".into(),
            },
        ))
        .unwrap();
    assert_eq!(key.alias, "alias/zpk");
    runtime.block_on(service.stop());
}
