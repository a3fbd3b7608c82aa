//! Criterion benchmarks of the host-side hot paths, each next to its floor: the raw block
//! cipher operations it cannot avoid, measured in the same run.
//!
//! * TDES DUKPT working key (IPEK → transaction key → PIN variant) vs one TDES block
//!   encryption (key schedule included, as every derivation step uses a new key) and vs one
//!   block under an already scheduled key.
//! * AES DUKPT working key (initial key → derivation key → PIN key) vs one AES-128 block.
//! * PIN translation DUKPT PIN key → zone PIN key, format 0 → 0 (TDES: 2 block operations)
//!   and format 4 → 4 (AES: 4 block operations), vs the same number of raw block operations.
//! * TR-31 version D unwrap (AES-256 KBPK) of the TR-31:2018 A.7.4 block.
//!
//! Run: `cargo bench -p paycrypto -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use aes::Aes128;
use cipher::generic_array::GenericArray;
use cipher::{BlockEncrypt, KeyInit};
use criterion::{Criterion, criterion_group, criterion_main};
use des::TdesEde2;
use paycrypto::SecretBytes;
use paycrypto::dukpt::{aes as dukpt_aes, tdes as dukpt_tdes};
use paycrypto::pin::{Pan, Pin, PinBlockContext, PinBlockFormat, encrypt_pin_block};
use paycrypto::primitives::{aes_decrypt_ecb, aes_encrypt_ecb, tdes_decrypt_ecb, tdes_encrypt_ecb};
use paycrypto::tr31;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn secret(text: &str) -> SecretBytes {
    SecretBytes::from_hex("bench key", text).expect("hex")
}

/// X9.24-1:2009 A.4: IPEK of BDK 0123456789ABCDEFFEDCBA9876543210, KSN FFFF9876543210E00000.
const TDES_IPEK: &str = "6AC292FAA1315B4D858AB3A3D7D5933A";
/// X9.24-3-2017 supplement: initial key of the AES-128 BDK, initial key ID 1234567890123456.
const AES_IK: &str = "1273671EA26AC29AFA4D1084127652A1";
/// A zone PIN key (TDES) and an AES zone PIN key; arbitrary.
const ZPK_TDES: &str = "89E88CF7931444F334BD7547FC3F380C";
const ZPK_AES: &str = "88E1AB2A2E3DD38C1FA039A536500CC8";

fn tdes_dukpt(c: &mut Criterion) {
    let ipek = secret(TDES_IPEK);
    // The host walks one non-reversible key generation step per one-bit of the counter:
    // a counter with 5 one-bits (typical) and the last counter, 1FF800 (10, the worst case).
    let ksn_typical = dukpt_tdes::Ksn::from_hex("FFFF9876543210E0A0C1").expect("ksn");
    let ksn_worst = dukpt_tdes::Ksn::from_hex("FFFF9876543210FFF800").expect("ksn");
    let key = secret(TDES_IPEK);
    let block = [0x11_u8; 8];
    let scheduled = TdesEde2::new(GenericArray::from_slice(key.expose()));

    let mut group = c.benchmark_group("tdes_dukpt");
    group.bench_function(
        "floor: 1 TDES block (tdes_encrypt_ecb, incl. key schedule)",
        |b| b.iter(|| tdes_encrypt_ecb(black_box(key.expose()), black_box(&block)).expect("enc")),
    );
    group.bench_function("floor: 1 TDES block (pre-scheduled key)", |b| {
        b.iter(|| {
            let mut out = GenericArray::clone_from_slice(black_box(&block));
            scheduled.encrypt_block(&mut out);
            out
        })
    });
    for (name, ksn) in [
        ("working key PIN, counter A0C1 (5 one-bits)", ksn_typical),
        ("working key PIN, counter 1FF800 (10 one-bits)", ksn_worst),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let txn =
                    dukpt_tdes::transaction_key(black_box(&ipek), black_box(&ksn)).expect("txn");
                dukpt_tdes::working_key(
                    &txn,
                    dukpt_tdes::KeyUsage::PinEncryption,
                    dukpt_tdes::DataKeyDerivation::OneWay,
                )
                .expect("working key")
            })
        });
    }
    group.finish();
}

fn aes_dukpt(c: &mut Criterion) {
    let ik = secret(AES_IK);
    let ksn_typical = dukpt_aes::Ksn::from_hex("1234567890123456000A00C1").expect("ksn");
    let ksn_worst = dukpt_aes::Ksn::from_hex("1234567890123456FFFF0000").expect("ksn");
    let block = [0x11_u8; 16];
    let scheduled = Aes128::new(GenericArray::from_slice(ik.expose()));

    let mut group = c.benchmark_group("aes_dukpt");
    group.bench_function(
        "floor: 1 AES-128 block (aes_encrypt_ecb, incl. key schedule)",
        |b| b.iter(|| aes_encrypt_ecb(black_box(ik.expose()), black_box(&block)).expect("enc")),
    );
    group.bench_function("floor: 1 AES-128 block (pre-scheduled key)", |b| {
        b.iter(|| {
            let mut out = GenericArray::clone_from_slice(black_box(&block));
            scheduled.encrypt_block(&mut out);
            out
        })
    });
    for (name, ksn) in [
        (
            "working key PIN AES-128, counter 000A00C1 (5 one-bits)",
            ksn_typical,
        ),
        (
            "working key PIN AES-128, counter FFFF0000 (16 one-bits)",
            ksn_worst,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                dukpt_aes::working_key(
                    black_box(&ik),
                    black_box(&ksn),
                    dukpt_aes::KeyUsage::PinEncryption,
                    dukpt_aes::KeyType::Aes128,
                )
                .expect("working key")
            })
        });
    }
    group.finish();
}

fn pin_translation(c: &mut Criterion) {
    let pan = Pan::new("4111111111111111").expect("pan");
    let pin = Pin::new("1234").expect("pin");
    let mut rng = StdRng::seed_from_u64(7);

    // Format 0 → 0: source key is a TDES DUKPT PIN key, destination a TDES zone PIN key.
    let ksn = dukpt_tdes::Ksn::from_hex("FFFF9876543210E00001").expect("ksn");
    let tdes_pin_key = dukpt_tdes::working_key(
        &dukpt_tdes::transaction_key(&secret(TDES_IPEK), &ksn).expect("txn"),
        dukpt_tdes::KeyUsage::PinEncryption,
        dukpt_tdes::DataKeyDerivation::OneWay,
    )
    .expect("pin key");
    let zpk_tdes = secret(ZPK_TDES);
    let block0 = encrypt_pin_block(
        PinBlockFormat::Iso0,
        &tdes_pin_key,
        &pin,
        Some(&pan),
        &mut rng,
    )
    .expect("block");

    // Format 4 → 4: source key is an AES DUKPT PIN key, destination an AES zone PIN key.
    let aes_ksn = dukpt_aes::Ksn::from_hex("123456789012345600000001").expect("ksn");
    let aes_pin_key = dukpt_aes::working_key(
        &secret(AES_IK),
        &aes_ksn,
        dukpt_aes::KeyUsage::PinEncryption,
        dukpt_aes::KeyType::Aes128,
    )
    .expect("pin key");
    let zpk_aes = secret(ZPK_AES);
    let block4 = encrypt_pin_block(
        PinBlockFormat::Iso4,
        &aes_pin_key,
        &pin,
        Some(&pan),
        &mut rng,
    )
    .expect("block");

    let mut group = c.benchmark_group("pin_translation");
    group.bench_function(
        "floor: 2 TDES block ops (decrypt + encrypt, incl. key schedules)",
        |b| {
            b.iter(|| {
                let clear = tdes_decrypt_ecb(black_box(tdes_pin_key.expose()), black_box(&block0))
                    .expect("dec");
                tdes_encrypt_ecb(black_box(zpk_tdes.expose()), &clear).expect("enc")
            })
        },
    );
    group.bench_function("translate format 0 -> 0 (DUKPT PIN key -> ZPK)", |b| {
        b.iter(|| {
            paycrypto::pin::translate_pin_block(
                &PinBlockContext {
                    format: PinBlockFormat::Iso0,
                    key: &tdes_pin_key,
                    pan: Some(&pan),
                },
                black_box(&block0),
                &PinBlockContext {
                    format: PinBlockFormat::Iso0,
                    key: &zpk_tdes,
                    pan: Some(&pan),
                },
                &mut rng,
            )
            .expect("translate")
        })
    });
    group.bench_function(
        "floor: 4 AES-128 block ops (2 decrypt + 2 encrypt, incl. key schedules)",
        |b| {
            b.iter(|| {
                let a = aes_decrypt_ecb(black_box(aes_pin_key.expose()), black_box(&block4))
                    .expect("dec");
                let a = aes_decrypt_ecb(aes_pin_key.expose(), &a).expect("dec");
                let a = aes_encrypt_ecb(black_box(zpk_aes.expose()), &a).expect("enc");
                aes_encrypt_ecb(zpk_aes.expose(), &a).expect("enc")
            })
        },
    );
    group.bench_function("translate format 4 -> 4 (DUKPT PIN key -> ZPK)", |b| {
        b.iter(|| {
            paycrypto::pin::translate_pin_block(
                &PinBlockContext {
                    format: PinBlockFormat::Iso4,
                    key: &aes_pin_key,
                    pan: Some(&pan),
                },
                black_box(&block4),
                &PinBlockContext {
                    format: PinBlockFormat::Iso4,
                    key: &zpk_aes,
                    pan: Some(&pan),
                },
                &mut rng,
            )
            .expect("translate")
        })
    });
    group.finish();
}

fn tr31_unwrap(c: &mut Criterion) {
    // TR-31:2018 A.7.4: version D, AES-256 KBPK, wrapped TDES key 3F419E1CB7079442AA37474C2EFBF8B8.
    let kbpk = hex::decode("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
        .expect("hex");
    let block = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34";
    let aes256 = [0x11_u8; 16];
    let mut group = c.benchmark_group("tr31");
    group.bench_function(
        "floor: 1 AES-256 block (aes_encrypt_ecb, incl. key schedule)",
        |b| b.iter(|| aes_encrypt_ecb(black_box(&kbpk), black_box(&aes256)).expect("enc")),
    );
    group.bench_function("unwrap version D (AES-256 KBPK, TR-31:2018 A.7.4)", |b| {
        b.iter(|| tr31::unwrap(black_box(&kbpk), black_box(block)).expect("unwrap"))
    });
    group.finish();
}

criterion_group!(benches, tdes_dukpt, aes_dukpt, pin_translation, tr31_unwrap);
criterion_main!(benches);
