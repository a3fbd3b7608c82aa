//! DER input: a manufacturer CA, a device certificate, a CRL of the seed CA, and a presented
//! chain verified against a store holding that CA and CRL. Never panics; whatever parses as a
//! device certificate re-encodes to the same DER.
#![no_main]

use std::sync::LazyLock;

use chrono::{TimeZone, Utc};
use device_identity::rustls::pki_types::CertificateDer;
use device_identity::{Crl, DeviceCertificate, ManufacturerCa, TrustStore};
use libfuzzer_sys::fuzz_target;

/// The OpenSSL-made test CA (tests/data/openssl-ca.der) and its CRL.
static STORE: LazyLock<(ManufacturerCa, TrustStore)> = LazyLock::new(|| {
    let ca = ManufacturerCa::from_der(include_bytes!("../../tests/data/openssl-ca.der"), now())
        .expect("seed CA");
    let crl =
        Crl::from_der(include_bytes!("../../tests/data/openssl-crl.der"), &ca).expect("seed CRL");
    let trust = TrustStore::with(vec![ca.clone()], vec![crl]).expect("store");
    (ca, trust)
});

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0)
        .single()
        .expect("date")
}

fuzz_target!(|data: &[u8]| {
    let (ca, trust) = &*STORE;
    let _ = ManufacturerCa::from_der(data, now());
    let _ = Crl::from_der(data, ca);
    if let Ok(device) = DeviceCertificate::from_der(data) {
        assert_eq!(device.der().as_ref(), data);
        let again = DeviceCertificate::from_pem(&device.to_pem()).expect("PEM round trip");
        assert_eq!(again, device);
    }
    // The input as a chain: whole, and split in two at its first byte's position.
    let _ = trust.verify(&[CertificateDer::from(data.to_vec())], now());
    if let Some(first) = data.first() {
        let split = usize::from(*first).min(data.len());
        let (left, right) = data.split_at(split);
        let _ = trust.verify(
            &[
                CertificateDer::from(left.to_vec()),
                CertificateDer::from(right.to_vec()),
            ],
            now(),
        );
    }
});
