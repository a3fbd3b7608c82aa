//! The input as a KeyDescription extension value and as a DER certificate (never panics;
//! whatever parses serializes to JSON and reads back to the same value), as an attestation
//! status list, and, cut at every `0x00 0xFF 0x00 0xFF` marker, as a certificate chain for
//! `verify_chain`, and as a decoded Play Integrity verdict checked against fixed expectations
//! (never panics).
#![no_main]

use android_attestation::play_integrity::{self, DeviceLabel, Expectations, Expected};
use android_attestation::{
    KeyDescription, PlayIntegrityVerdict, RevocationList, TrustAnchors, verify_chain,
};
use libfuzzer_sys::fuzz_target;

fn round_trip(description: &KeyDescription) {
    let json = serde_json::to_vec(description).expect("serialize");
    let back: KeyDescription = serde_json::from_slice(&json).expect("deserialize");
    assert_eq!(&back, description);
}

fn split_chain(data: &[u8]) -> Vec<Vec<u8>> {
    const MARKER: [u8; 4] = [0x00, 0xFF, 0x00, 0xFF];
    let mut chain = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while index + MARKER.len() <= data.len() {
        if data[index..index + MARKER.len()] == MARKER {
            chain.push(data[start..index].to_vec());
            index += MARKER.len();
            start = index;
        } else {
            index += 1;
        }
    }
    chain.push(data[start..].to_vec());
    chain
}

fuzz_target!(|data: &[u8]| {
    if let Ok(description) = KeyDescription::from_der(data) {
        round_trip(&description);
    }
    if let Ok(Some(description)) = KeyDescription::from_certificate_der(data) {
        round_trip(&description);
    }
    let _ = RevocationList::from_json(data);
    if let Ok(verdict) = PlayIntegrityVerdict::from_json(data) {
        let _ = play_integrity::check(
            &verdict,
            &Expectations {
                package_name: "com.example.softpos".to_owned(),
                request_hash_or_nonce: Expected::RequestHash("aGFzaA".to_owned()),
                now_millis: 1_780_000_000_000,
                max_age_millis: 60_000,
                allowed_certificate_digests: vec!["6a6a1474b5cbbb2b1aa57e0bc3".to_owned()],
                require_play_recognized: true,
                required_device_labels: vec![DeviceLabel::MeetsDeviceIntegrity],
                require_licensed: true,
            },
        );
    }
    let chain = split_chain(data);
    let _ = verify_chain(
        &chain,
        &TrustAnchors::google(),
        &RevocationList::empty(),
        1_780_000_000,
    );
});
