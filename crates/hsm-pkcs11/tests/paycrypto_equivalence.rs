//! The token and `paycrypto` agree on random inputs: the same clear key is imported into the
//! token, and every operation's result is compared with paycrypto's pure-Rust result.

#![allow(clippy::unwrap_used)]

mod common;

use common::fresh_token;
use hsm_pkcs11::{CipherMode, KeyKind, KeyUses, MacAlgorithm, Padding, SecretBytes, Token};
use paycrypto::mac::MacAlgorithm as PcMac;
use paycrypto::primitives as pc;
use proptest::prelude::*;

struct Keys {
    tdes2: SecretBytes,
    tdes3: SecretBytes,
    aes128: SecretBytes,
    aes256: SecretBytes,
    hmac: SecretBytes,
}

fn random_keys(seed: u8) -> Keys {
    let bytes = |n: usize, salt: u8| {
        SecretBytes::new(
            (0..n)
                .map(|i| (i as u8).wrapping_mul(37) ^ seed ^ salt)
                .collect(),
        )
    };
    Keys {
        tdes2: bytes(16, 1),
        tdes3: bytes(24, 2),
        aes128: bytes(16, 3),
        aes256: bytes(32, 4),
        hmac: bytes(48, 5),
    }
}

async fn token_with(keys: &Keys) -> Token {
    let t = fresh_token("prop").await;
    let all = KeyUses::CIPHER | KeyUses::MAC;
    for (id, kind, value, uses) in [
        ("tdes2", KeyKind::Tdes2, &keys.tdes2, all),
        ("tdes3", KeyKind::Tdes3, &keys.tdes3, all),
        ("aes128", KeyKind::Aes128, &keys.aes128, all),
        ("aes256", KeyKind::Aes256, &keys.aes256, all),
        (
            "hmac",
            KeyKind::Hmac { bytes: 48 },
            &keys.hmac,
            KeyUses::MAC,
        ),
    ] {
        t.import_clear_key(id, id, kind, uses, value).await.unwrap();
    }
    t
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Method1),
        Just(Padding::Method2),
        Just(Padding::Method3)
    ]
}

#[test]
fn token_matches_paycrypto_on_random_inputs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys = random_keys(0x5a);
    let t = rt.block_on(token_with(&keys));
    let config = ProptestConfig::with_cases(48);
    proptest!(config, |(
        blocks in 1_usize..6,
        raw in proptest::collection::vec(any::<u8>(), 0..96),
        iv16 in any::<[u8; 16]>(),
        iv8 in any::<[u8; 8]>(),
        pad in padding(),
    )| {
        rt.block_on(async {
            // TDES ECB/CBC on whole blocks.
            let data8: Vec<u8> = raw.iter().copied().cycle().take(blocks * 8).collect();
            let data8 = if data8.is_empty() { vec![0; blocks * 8] } else { data8 };
            for (id, key) in [("tdes2", &keys.tdes2), ("tdes3", &keys.tdes3)] {
                let ecb = t.encrypt(id, CipherMode::Ecb, &data8).await.unwrap();
                prop_assert_eq!(&ecb, &pc::tdes_encrypt_ecb(key.expose(), &data8).unwrap());
                let cbc = t.encrypt(id, CipherMode::Cbc(iv8.to_vec()), &data8).await.unwrap();
                prop_assert_eq!(&cbc, &pc::tdes_encrypt_cbc(key.expose(), &iv8, &data8).unwrap());
                let back = t.decrypt(id, CipherMode::Cbc(iv8.to_vec()), &cbc).await.unwrap();
                prop_assert_eq!(back.expose(), data8.as_slice());
                // ISO 9797-1 MAC algorithm 1 over arbitrary-length data.
                let mac = t.mac(id, MacAlgorithm::Iso9797Alg1(pad), &raw).await.unwrap();
                prop_assert_eq!(&mac, &PcMac::Iso9797Alg1(pad).generate(key, &raw, 8).unwrap());
            }
            // AES ECB/CBC on whole blocks, CMAC on arbitrary data.
            let data16: Vec<u8> = raw.iter().copied().cycle().take(blocks * 16).collect();
            let data16 = if data16.is_empty() { vec![0; blocks * 16] } else { data16 };
            for (id, key) in [("aes128", &keys.aes128), ("aes256", &keys.aes256)] {
                let ecb = t.encrypt(id, CipherMode::Ecb, &data16).await.unwrap();
                prop_assert_eq!(&ecb, &pc::aes_encrypt_ecb(key.expose(), &data16).unwrap());
                let cbc = t.encrypt(id, CipherMode::Cbc(iv16.to_vec()), &data16).await.unwrap();
                prop_assert_eq!(&cbc, &pc::aes_encrypt_cbc(key.expose(), &iv16, &data16).unwrap());
                let back = t.decrypt(id, CipherMode::Ecb, &ecb).await.unwrap();
                prop_assert_eq!(back.expose(), data16.as_slice());
                let mac = t.mac(id, MacAlgorithm::AesCmac, &raw).await.unwrap();
                prop_assert_eq!(&mac, &PcMac::AesCmac.generate(key, &raw, 16).unwrap());
                t.verify_mac(id, MacAlgorithm::AesCmac, &raw, &mac).await.unwrap();
            }
            let mac = t.mac("hmac", MacAlgorithm::HmacSha256, &raw).await.unwrap();
            prop_assert_eq!(&mac, &PcMac::HmacSha256.generate(&keys.hmac, &raw, 32).unwrap());
            Ok(())
        })?;
    });
}

/// KCVs computed in the token equal paycrypto's for the same clear keys.
#[tokio::test]
async fn kcvs_match_paycrypto() {
    let keys = random_keys(0x33);
    let t = token_with(&keys).await;
    assert_eq!(
        t.kcv("tdes2").await.unwrap().kcv,
        paycrypto::kcv::tdes_kcv(&keys.tdes2).unwrap()
    );
    assert_eq!(
        t.kcv("tdes3").await.unwrap().kcv,
        paycrypto::kcv::tdes_kcv(&keys.tdes3).unwrap()
    );
    assert_eq!(
        t.kcv("aes256").await.unwrap().kcv,
        paycrypto::kcv::aes_kcv_cmac(&keys.aes256).unwrap()
    );
}
