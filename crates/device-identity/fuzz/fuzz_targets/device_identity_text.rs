//! Text input: PEM certificates and CRLs, serials, fingerprints and bulk CSV/JSON files.
//! Never panics; a parsed serial prints to a string that parses to the same serial.
#![no_main]

use chrono::{TimeZone, Utc};
use device_identity::{
    DeviceCertificate, Fingerprint, ManufacturerCa, SerialNumber, parse_bulk_csv, parse_bulk_json,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = Utc
        .with_ymd_and_hms(2030, 6, 1, 12, 0, 0)
        .single()
        .expect("date");
    let _ = ManufacturerCa::from_pem(text, now);
    let _ = DeviceCertificate::from_pem(text);
    if let Ok(serial) = SerialNumber::parse(text) {
        assert_eq!(
            SerialNumber::parse(&serial.to_string()).expect("round trip"),
            serial
        );
    }
    if let Ok(fingerprint) = Fingerprint::parse(text) {
        assert_eq!(
            Fingerprint::parse(&fingerprint.to_string()).expect("round trip"),
            fingerprint
        );
    }
    let _ = parse_bulk_csv(text);
    let _ = parse_bulk_json(text);
    let _ = parse_bulk_csv(&format!("serial,certificate\n{text}"));
});
