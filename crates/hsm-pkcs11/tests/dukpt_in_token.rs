//! AES-128 DUKPT (ANSI X9.24-3-2017) host derivation done entirely inside the token by chains of
//! CKM_AES_CBC_ENCRYPT_DATA (zero IV, one block = AES-ECB of the derivation data), answering
//! "can ENCRYPT_DATA chains do DUKPT in SoftHSM2?": for AES-128 keys, yes. (TDES DUKPT cannot:
//! it needs XOR with constants, and CKM_XOR_BASE_AND_DATA is absent — see tests/policy.rs.)
//!
//! Published values: the ANSI X9.24-3-2017 supplement test vectors (ASC X9, "X9.24 Part 3 Test
//! Vectors"), BDK FEDCBA9876543210F1F1F1F1F1F1F1F1, initial key ID 1234567890123456, as
//! transcribed in openemv/dukpt test/dukpt_aes128_test.c and cited in paycrypto's
//! tests/dukpt_aes.rs: the initial key, the intermediate derivation keys and PIN keys of
//! KSNs 1 to 8, and the format 4 PIN blocks of "Calculation of AES PIN Block Format 4" (p. 31).
//! The token never reveals a key, so each derived key is checked through its KCV against
//! paycrypto's KCV of the published value, and the PIN key by the published PIN blocks.

#![allow(clippy::unwrap_used)]

mod common;

use common::{fresh_token, h, import, secret};
use hsm_pkcs11::{CipherMode, Derivation, KeyKind, KeyUses, Token};
use paycrypto::dukpt::aes::{InitialKeyId, KeyType, KeyUsage, derivation_data};
use paycrypto::kcv::aes_kcv_encrypt_zeros;

const BDK128: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
const INITIAL_KEY_ID: &str = "1234567890123456";
const IK128: &str = "1273671EA26AC29AFA4D1084127652A1";
const DERIVATION_KEYS: [&str; 8] = [
    "4F21B565BAD9835E112B6465635EAE44",
    "2F34D68DE10F68D38091A73B9E7C437C",
    "031504E530365CF81264238540518318",
    "0EEFC7ADA628BA68878DA9165A8A1887",
    "C2A7AC328A5DA2D6002D62465BFC028B",
    "D30F7D9351DA58448A2F5E92B4EE3B7D",
    "A8253CEED9AC042C54F75D35C8352278",
    "718EE6CF0B27E53D5F7AF99C4D8146A2",
];
const PIN_KEYS: [&str; 8] = [
    "AF8CB133A78F8DC2D1359F18527593FB",
    "D30BDC73EC9714B000BEC66BDB7B6D09",
    "7D69F01F3B45449F62C7816ECE723268",
    "91A0588318EC2673214271F70137896E",
    "35A43BC9EFEB09C756204B57E3FB7D4D",
    "02DCC6CD1201A3A2CA7099559C862123",
    "6ECF912F3B18CA11A7A27BB60705FD09",
    "4D9DF3FBEE3448FC3E676D04320A90F5",
];
/// Plaintext PIN field (PIN 1234) and PAN field (PAN 4111111111111111), supplement p. 31.
const PIN_FIELD: &str = "441234AAAAAAAAAA2F69ADDE2E9E7ACE";
const PAN_FIELD: &str = "44111111111111111000000000000000";
const ENCRYPTED_PIN_BLOCKS: [&str; 8] = [
    "A912150391AB65A67E52883D81CE2D15",
    "52A00503BD34BA1383F6A7EE9FE2547F",
    "A5A27E82B43A9A866A93D7ABE89CEF93",
    "71B3D0528669498777555A8BE6698E44",
    "881A7F77A2E04E5BEA985E342FD0B628",
    "BDC1C3871AFB0B340AA5B5CEFD08695E",
    "4A8E6B8C7DBEE6CBA6DC774F0CB83396",
    "8308BB857C17F390369F761F8EB358FA",
];

async fn derive(t: &Token, base: &str, data: [u8; 16], id: &str, uses: KeyUses) {
    t.derive_key(
        base,
        Derivation::AesCbcEncryptData {
            iv: [0; 16],
            data: data.to_vec(),
        },
        id,
        "dukpt",
        KeyKind::Aes128,
        uses,
    )
    .await
    .unwrap();
}

async fn kcv_hex(t: &Token, id: &str) -> String {
    t.kcv(id).await.unwrap().kcv.to_hex()
}

fn published_kcv(value: &str) -> String {
    aes_kcv_encrypt_zeros(&secret(value)).unwrap().to_hex()
}

#[tokio::test]
async fn aes128_dukpt_chain_inside_the_token_x9_24_3_supplement() {
    let t = fresh_token("dukpt").await;
    let ikid = InitialKeyId::from_hex(INITIAL_KEY_ID).unwrap();
    import(&t, "bdk", KeyKind::Aes128, KeyUses::DERIVE, BDK128).await;

    let ik_data = derivation_data(KeyUsage::KeyDerivationInitialKey, KeyType::Aes128, &ikid, 0);
    // ENCRYPT on the derivation keys only so that the test can read their KCVs: the token holds
    // no check value for derived keys, and a DERIVE-only key can produce none.
    let derivation_uses = KeyUses::DERIVE | KeyUses::ENCRYPT;
    derive(&t, "bdk", ik_data, "ik", derivation_uses).await;
    assert_eq!(kcv_hex(&t, "ik").await, published_kcv(IK128));

    for counter in 1_u32..=8 {
        let i = counter as usize - 1;
        // One "key derivation" step per one-bit of the counter, most significant first.
        let mut base = "ik".to_owned();
        let mut reached = 0_u32;
        let mut made = Vec::new();
        for bit in (0..32).rev().map(|b| 1_u32 << b) {
            if counter & bit != 0 {
                reached |= bit;
                let next = format!("dk-{counter}-{reached:x}");
                let data =
                    derivation_data(KeyUsage::KeyDerivation, KeyType::Aes128, &ikid, reached);
                derive(&t, &base, data, &next, derivation_uses).await;
                made.push(next.clone());
                base = next;
            }
        }
        assert_eq!(
            kcv_hex(&t, &base).await,
            published_kcv(DERIVATION_KEYS[i]),
            "counter {counter}"
        );

        let pin_key = format!("pin-{counter}");
        let data = derivation_data(KeyUsage::PinEncryption, KeyType::Aes128, &ikid, counter);
        derive(&t, &base, data, &pin_key, KeyUses::ENCRYPT).await;
        assert_eq!(
            kcv_hex(&t, &pin_key).await,
            published_kcv(PIN_KEYS[i]),
            "counter {counter}"
        );

        // ISO 9564 format 4 encipherment with the token's PIN key: E(E(PIN field) XOR PAN field).
        // The intermediate block is ciphertext; the clear PIN field is the caller's input.
        let mut block = t
            .encrypt(&pin_key, CipherMode::Ecb, &h(PIN_FIELD))
            .await
            .unwrap();
        for (b, p) in block.iter_mut().zip(h(PAN_FIELD)) {
            *b ^= p;
        }
        let pin_block = t.encrypt(&pin_key, CipherMode::Ecb, &block).await.unwrap();
        assert_eq!(pin_block, h(ENCRYPTED_PIN_BLOCKS[i]), "counter {counter}");

        for id in made.iter().chain([&pin_key]) {
            t.destroy(id).await.unwrap();
        }
    }
}
