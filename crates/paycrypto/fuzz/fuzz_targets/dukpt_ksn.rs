//! DUKPT identifiers: TDES KSN, AES KSN and AES initial key ID, from hex and from bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycrypto::dukpt::{aes, tdes};

fuzz_target!(|data: &[u8]| {
    let _ = tdes::Ksn::from_bytes(data);
    let _ = aes::Ksn::from_bytes(data);
    let _ = aes::InitialKeyId::from_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ksn) = tdes::Ksn::from_hex(text) {
            let _ = ksn.to_string();
        }
        if let Ok(ksn) = aes::Ksn::from_hex(text) {
            assert_eq!(aes::Ksn::from_hex(&ksn.to_hex()).ok(), Some(ksn));
        }
        let _ = aes::InitialKeyId::from_hex(text);
    }
});
