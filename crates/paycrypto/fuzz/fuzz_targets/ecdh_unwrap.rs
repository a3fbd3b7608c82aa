//! ECDH key delivery, device side: arbitrary bytes as the ephemeral public key and the key
//! block, with a fixed device key. Never panics, and never returns a key (random input
//! essentially never carries a valid MAC under the derived KBPK, so a returned key would
//! point at a verification bypass).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p256::pkcs8::EncodePrivateKey;
use paycrypto::ecdh;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // The first byte says how many of the following bytes are the ephemeral key.
    let (ephemeral, block) = rest.split_at(usize::from(split).min(rest.len()));
    let Ok(block) = std::str::from_utf8(block) else {
        return;
    };
    let Ok(device) = p256::SecretKey::from_slice(&[0x42; 32]) else {
        return;
    };
    let Ok(pkcs8) = device.to_pkcs8_der() else {
        return;
    };
    let result = ecdh::unwrap_on_device(pkcs8.as_bytes(), ephemeral, block);
    assert!(result.is_err(), "a key from an unauthenticated block");
    let _ = ecdh::p256_public_key(ephemeral);
    let _ = ecdh::p256_public_key_from_certificate(ephemeral);
});
