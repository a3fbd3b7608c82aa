//! The other TR-34 token parsers with the published TR-34-2019 Annex B sample PKI: random
//! number token (parse and re-encode), credential tokens, KDH rebind/unbind and CA
//! rebind/unbind tokens, and certificate chains. Never panics; whatever a random number token
//! yields re-encodes to itself.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use paycrypto::tr34::{self, CaTrust, CertificateRole, ExpectedFreshness, KdhTrust};

struct Fixture {
    root: Vec<u8>,
    ca_kdh: Vec<u8>,
    ca_krd: Vec<u8>,
    kdh_1: Vec<u8>,
    krd_1: Vec<u8>,
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
    FIXTURE.get_or_init(|| Fixture {
        root: pem(include_str!("../../tests/data/tr34/root.crt.pem")),
        ca_kdh: pem(include_str!("../../tests/data/tr34/ca_kdh.crt.pem")),
        ca_krd: pem(include_str!("../../tests/data/tr34/ca_krd.crt.pem")),
        kdh_1: pem(include_str!("../../tests/data/tr34/kdh_1.crt.pem")),
        krd_1: pem(include_str!("../../tests/data/tr34/krd_1.crt.pem")),
    })
}

const NOW: u64 = 1_581_292_800;
const NONCE: [u8; 16] = [
    0x16, 0x7E, 0xB0, 0xE7, 0x27, 0x81, 0xE4, 0x94, 0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78,
];

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(nonce) = tr34::parse_random_token(data) {
        let again = tr34::build_random_token(&nonce).expect("a parsed nonce re-encodes");
        assert_eq!(tr34::parse_random_token(&again).ok(), Some(nonce));
    }
    let _ = tr34::open_credential_token(data, &f.root, NOW, CertificateRole::Kdh);
    let _ = tr34::open_credential_token(data, &f.ca_krd, NOW, CertificateRole::Krd);
    let chain: [&[u8]; 2] = [&f.kdh_1, &f.ca_kdh];
    let trust = KdhTrust {
        ca_certificate: &f.root,
        kdh_chain: &chain,
        now_unix: NOW,
    };
    let _ = tr34::open_rebind_token(data, &trust, &f.krd_1, &NONCE);
    let _ = tr34::open_unbind_token(data, &trust, &f.krd_1, &NONCE);
    let ca_chain: [&[u8]; 1] = [&f.ca_krd];
    let ca_trust = CaTrust {
        root_certificate: &f.root,
        ca_chain: &ca_chain,
        now_unix: NOW,
    };
    let fresh = ExpectedFreshness::RandomNonce(&NONCE);
    let _ = tr34::open_ca_unbind_token(data, &ca_trust, &f.krd_1, &f.kdh_1, fresh);
    let _ = tr34::open_ca_rebind_token(data, &ca_trust, &f.krd_1, &f.kdh_1, &f.ca_kdh, fresh);
    let _ = tr34::verify_certificate_chain(&[data], &f.ca_kdh, NOW, CertificateRole::Kdh);
    let _ = tr34::CertificateId::of_certificate(data);
});
