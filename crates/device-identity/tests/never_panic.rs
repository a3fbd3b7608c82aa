//! Property tests: the parsers and the verifier return errors, never panic, on any input,
//! including mutations of valid certificates and CRLs.

mod common;

use std::sync::LazyLock;

use common::{TestCa, inside_validity};
use device_identity::{
    Crl, DeviceCertificate, Fingerprint, ManufacturerCa, SerialNumber, TrustStore, parse_bulk_csv,
    parse_bulk_json,
};
use proptest::prelude::*;
use rustls::pki_types::CertificateDer;

struct Fixture {
    ca: ManufacturerCa,
    ca_der: Vec<u8>,
    device_der: Vec<u8>,
    crl_der: Vec<u8>,
    trust: TrustStore,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x12, 0x34]);
    let crl_der = ca.crl(&[&[0x56]]);
    let manufacturer_ca = ca.manufacturer_ca();
    let trust = TrustStore::with(
        vec![manufacturer_ca.clone()],
        vec![ca.checked_crl(&[&[0x56]])],
    )
    .expect("store");
    Fixture {
        ca: manufacturer_ca,
        ca_der: ca.der.to_vec(),
        device_der: device.der.to_vec(),
        crl_der,
        trust,
    }
});

/// A valid DER with some bytes replaced and possibly truncated.
fn mutated(original: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(changes, cut, truncate)| {
            let mut bytes = original.to_vec();
            for (index, value) in changes {
                let position = index.index(bytes.len());
                bytes[position] = value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            bytes
        })
}

fn parse_everything_der(bytes: &[u8]) {
    let now = inside_validity();
    let _ = ManufacturerCa::from_der(bytes, now);
    let _ = DeviceCertificate::from_der(bytes);
    let _ = Crl::from_der(bytes, &FIXTURE.ca);
    let _ = FIXTURE
        .trust
        .verify(&[CertificateDer::from(bytes.to_vec())], now);
}

fn parse_everything_text(text: &str) {
    let now = inside_validity();
    let _ = ManufacturerCa::from_pem(text, now);
    let _ = DeviceCertificate::from_pem(text);
    let _ = Crl::from_pem(text, &FIXTURE.ca);
    let _ = SerialNumber::parse(text);
    let _ = Fingerprint::parse(text);
    let _ = parse_bulk_csv(text);
    let _ = parse_bulk_json(text);
    let _ = parse_bulk_csv(&format!("serial,certificate\n{text}"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_everything_der(&bytes);
    }

    #[test]
    fn arbitrary_text_is_refused_without_panic(text in ".{0,2048}") {
        parse_everything_text(&text);
    }

    #[test]
    fn pem_like_text_is_refused_without_panic(
        label in prop::sample::select(vec!["CERTIFICATE", "X509 CRL", "PRIVATE KEY", "CERT"]),
        body in "[A-Za-z0-9+/=\\n ]{0,400}",
        closed in any::<bool>(),
    ) {
        let end = if closed { format!("-----END {label}-----\n") } else { String::new() };
        parse_everything_text(&format!("-----BEGIN {label}-----\n{body}\n{end}"));
    }

    #[test]
    fn mutated_certificates_are_refused_or_read_without_panic(
        device in mutated(&FIXTURE.device_der),
        ca in mutated(&FIXTURE.ca_der),
    ) {
        parse_everything_der(&device);
        parse_everything_der(&ca);
        let _ = FIXTURE.trust.verify(
            &[CertificateDer::from(device), CertificateDer::from(ca)],
            inside_validity(),
        );
    }

    #[test]
    fn mutated_crls_are_refused_or_read_without_panic(crl in mutated(&FIXTURE.crl_der)) {
        let _ = Crl::from_der(&crl, &FIXTURE.ca);
    }

    #[test]
    fn bulk_rows_of_arbitrary_fields_are_refused_without_panic(
        rows in proptest::collection::vec((".{0,40}", ".{0,200}"), 0..20),
    ) {
        let mut csv = String::from("serial,certificate\n");
        for (serial, certificate) in &rows {
            csv.push_str(&format!("{serial},{certificate}\n"));
        }
        let _ = parse_bulk_csv(&csv);
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(serial, certificate)| serde_json::json!({"serial": serial, "certificate": certificate}))
            .collect();
        let _ = parse_bulk_json(&serde_json::Value::Array(json).to_string());
    }

    #[test]
    fn every_spelling_of_a_serial_is_the_same_serial(bytes in proptest::collection::vec(any::<u8>(), 1..40)) {
        let lower = hex::encode(&bytes);
        let colons = bytes.iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":");
        let serial = SerialNumber::parse(&lower).expect("hex");
        prop_assert_eq!(&SerialNumber::parse(&colons).expect("colons"), &serial);
        prop_assert_eq!(&SerialNumber::parse(&serial.to_string()).expect("display"), &serial);
        prop_assert_eq!(&SerialNumber::parse(&format!("0x00{lower}")).expect("prefix"), &serial);
    }
}
