//! The input as a KeyDescription extension value and as a DER certificate. Never panics;
//! whatever parses serializes to JSON and reads back to the same value.
#![no_main]

use android_attestation::KeyDescription;
use libfuzzer_sys::fuzz_target;

fn round_trip(description: &KeyDescription) {
    let json = serde_json::to_vec(description).expect("serialize");
    let back: KeyDescription = serde_json::from_slice(&json).expect("deserialize");
    assert_eq!(&back, description);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(description) = KeyDescription::from_der(data) {
        round_trip(&description);
    }
    if let Ok(Some(description)) = KeyDescription::from_certificate_der(data) {
        round_trip(&description);
    }
});
