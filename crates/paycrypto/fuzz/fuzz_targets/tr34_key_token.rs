//! TR-34 key token (KT_KDH) opening with the published TR-34-2019 Annex B sample PKI (root,
//! CA KDH, KDH 1, KRD 1; crates/paycrypto/tests/data/tr34): never panics, and never returns
//! a key (the only key tokens this PKI's KDH 1 signed are the Annex B samples, whose
//! encryptedKey does not decrypt; a returned key would point at a signature bypass).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use paycrypto::SecretBytes;
use paycrypto::tr34::{self, Credential, ExpectedFreshness, KdhTrust};

struct Fixture {
    root: Vec<u8>,
    kdh_1: Vec<u8>,
    ca_kdh: Vec<u8>,
    krd: Credential,
}

/// Decodes the base64 body of a PEM file (test data only).
fn pem(text: &str) -> Vec<u8> {
    let mut bits = 0_u32;
    let mut count = 0;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with("-----")) {
        for c in line.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => continue,
            };
            bits = (bits << 6) | u32::from(v);
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
    }
    out
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let krd_cert = pem(include_str!("../../tests/data/tr34/krd_1.crt.pem"));
        let krd_key = SecretBytes::new(pem(include_str!("../../tests/data/tr34/krd_1.key.pem")));
        Fixture {
            root: pem(include_str!("../../tests/data/tr34/root.crt.pem")),
            kdh_1: pem(include_str!("../../tests/data/tr34/kdh_1.crt.pem")),
            ca_kdh: pem(include_str!("../../tests/data/tr34/ca_kdh.crt.pem")),
            krd: Credential::from_der(&krd_cert, &krd_key).expect("KRD 1 credential"),
        }
    })
}

/// 2020-02-10, inside every sample certificate's validity.
const NOW: u64 = 1_581_292_800;
const NONCE: [u8; 16] = [
    0x16, 0x7E, 0xB0, 0xE7, 0x27, 0x81, 0xE4, 0x94, 0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78,
];

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let chain: [&[u8]; 2] = [&f.kdh_1, &f.ca_kdh];
    let trust = KdhTrust {
        ca_certificate: &f.root,
        kdh_chain: &chain,
        now_unix: NOW,
    };
    let two_pass =
        tr34::open_key_token(data, &trust, &f.krd, ExpectedFreshness::RandomNonce(&NONCE));
    assert!(two_pass.is_err(), "a key from an unsigned token");
    let one_pass = tr34::open_key_token(
        data,
        &trust,
        &f.krd,
        ExpectedFreshness::SigningTime {
            now_unix: NOW,
            max_skew_secs: 86_400,
        },
    );
    assert!(one_pass.is_err(), "a key from an unsigned token");
});
