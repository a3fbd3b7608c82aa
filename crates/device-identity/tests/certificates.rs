//! Parsing manufacturer CAs, CRLs and device certificates, and verifying chains against the
//! trust store (without TLS).

mod common;

use chrono::{TimeZone, Utc};
use common::{TestCa, inside_validity};
use device_identity::{
    Crl, DeviceCertificate, Fingerprint, IdentityError, ManufacturerCa, SerialNumber, TrustStore,
};
use rcgen::{ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, date_time_ymd};
use rustls::pki_types::CertificateDer;

const ISRG_ROOT_X1: &str = include_str!("data/isrg-root-x1.pem");

/// Known-answer test on a published certificate: ISRG Root X1 as listed at
/// <https://letsencrypt.org/certificates/> (SHA-256 fingerprint, serial, validity).
#[test]
fn reads_the_published_fields_of_isrg_root_x1() {
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let ca = ManufacturerCa::from_pem(ISRG_ROOT_X1, now).expect("ISRG Root X1 is a CA");
    assert_eq!(
        ca.fingerprint(),
        Fingerprint::parse(
            "96:BC:EC:06:26:49:76:F3:74:60:77:9A:CF:28:C5:A7:CF:E8:A3:C0:AA:E1:1A:8F:FC:EE:05:C0:BD:DF:08:C6"
        )
        .expect("fingerprint")
    );
    assert_eq!(ca.serial().to_string(), "8210CFB0D240E3594463E0BB63828B00");
    assert_eq!(
        ca.not_before(),
        Utc.with_ymd_and_hms(2015, 6, 4, 11, 4, 38)
            .single()
            .expect("date")
    );
    assert_eq!(
        ca.not_after(),
        Utc.with_ymd_and_hms(2035, 6, 4, 11, 4, 38)
            .single()
            .expect("date")
    );
    assert_eq!(ca.common_name(), Some("ISRG Root X1"));
    assert!(
        ca.subject().contains("O=Internet Security Research Group"),
        "{}",
        ca.subject()
    );
    // The PEM round trip gives the same DER.
    let again = ManufacturerCa::from_pem(&ca.to_pem(), now).expect("round trip");
    assert_eq!(again.der(), ca.der());
}

#[test]
fn a_ca_outside_its_validity_is_refused_with_its_dates() {
    let before = Utc
        .with_ymd_and_hms(2015, 6, 4, 11, 4, 37)
        .single()
        .expect("date");
    let after = Utc
        .with_ymd_and_hms(2035, 6, 4, 11, 4, 39)
        .single()
        .expect("date");
    assert!(matches!(
        ManufacturerCa::from_pem(ISRG_ROOT_X1, before),
        Err(IdentityError::CaNotYetValid { .. })
    ));
    let error = ManufacturerCa::from_pem(ISRG_ROOT_X1, after).expect_err("expired");
    assert!(matches!(error, IdentityError::CaExpired { .. }), "{error}");
    assert!(
        error.to_string().contains("expired at 2035-06-04 11:04:38"),
        "{error}"
    );
}

#[test]
fn a_certificate_that_is_not_a_ca_is_refused() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[1]);
    let error =
        ManufacturerCa::from_der(device.der.as_ref(), inside_validity()).expect_err("device");
    assert_eq!(
        error,
        IdentityError::NotACa {
            reason: "basicConstraints is absent or cA is not TRUE"
        }
    );
    let explicit_no_ca = TestCa::with("Not A CA", |params| params.is_ca = IsCa::ExplicitNoCa);
    assert!(matches!(
        ManufacturerCa::from_der(explicit_no_ca.der.as_ref(), inside_validity()),
        Err(IdentityError::NotACa { .. })
    ));
}

#[test]
fn a_ca_without_key_cert_sign_is_refused() {
    let ca = TestCa::with("Crl Only CA", |params| {
        params.key_usages = vec![KeyUsagePurpose::CrlSign];
    });
    assert_eq!(
        ManufacturerCa::from_der(ca.der.as_ref(), inside_validity()),
        Err(IdentityError::NotACa {
            reason: "keyUsage does not include keyCertSign"
        })
    );
}

#[test]
fn pem_errors_name_the_field() {
    let now = inside_validity();
    let garbage = ManufacturerCa::from_pem("hello", now).expect_err("garbage");
    assert!(
        matches!(
            garbage,
            IdentityError::Pem {
                field: "certificate",
                ..
            }
        ),
        "{garbage}"
    );
    let two = format!("{ISRG_ROOT_X1}{ISRG_ROOT_X1}");
    let error = ManufacturerCa::from_pem(&two, now).expect_err("two certificates");
    assert!(error.to_string().contains("more than one"), "{error}");
    let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        DeviceCertificate::from_pem(bad_base64),
        Err(IdentityError::Pem {
            field: "certificate",
            ..
        })
    ));
    let unterminated = "-----BEGIN CERTIFICATE-----\nMIIB\n";
    assert!(matches!(
        DeviceCertificate::from_pem(unterminated),
        Err(IdentityError::Pem { .. })
    ));
    let crl_pem = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
    let ca = TestCa::new("Acme Terminals CA").manufacturer_ca();
    let error = Crl::from_pem(crl_pem, &ca).expect_err("not a CRL");
    assert!(
        matches!(error, IdentityError::Malformed { field: "crl", .. }),
        "{error}"
    );
    let no_crl = Crl::from_pem(ISRG_ROOT_X1, &ca).expect_err("a certificate is not a CRL");
    assert!(
        matches!(no_crl, IdentityError::Pem { field: "crl", .. }),
        "{no_crl}"
    );
}

#[test]
fn der_errors_name_the_field() {
    let now = inside_validity();
    for bad in [&b""[..], b"\x30\x03\x02\x01\x01", b"not der at all"] {
        let error = DeviceCertificate::from_der(bad).expect_err("malformed");
        assert!(
            matches!(
                error,
                IdentityError::Malformed {
                    field: "certificate",
                    ..
                }
            ),
            "{error}"
        );
        assert!(matches!(
            ManufacturerCa::from_der(bad, now),
            Err(IdentityError::Malformed {
                field: "certificate",
                ..
            })
        ));
    }
    let ca = TestCa::new("Acme Terminals CA");
    let mut trailing = ca.der.to_vec();
    trailing.push(0);
    let error = ManufacturerCa::from_der(&trailing, now).expect_err("trailing byte");
    assert!(error.to_string().contains("trailing bytes"), "{error}");
    let huge = vec![0x30; device_identity::MAX_CERTIFICATE_BYTES + 1];
    assert!(matches!(
        DeviceCertificate::from_der(&huge),
        Err(IdentityError::TooLarge {
            field: "certificate",
            ..
        })
    ));
    let ca = ca.manufacturer_ca();
    assert!(matches!(
        Crl::from_der(b"\x30\x00", &ca),
        Err(IdentityError::Malformed { field: "crl", .. })
    ));
}

#[test]
fn device_certificate_fields() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x8a, 0x01, 0xff]);
    let certificate = DeviceCertificate::from_pem(&device.pem).expect("device");
    // The serial's high bit is set, so its DER carries a sign byte the serial does not show.
    assert_eq!(certificate.serial().to_string(), "8A01FF");
    assert_eq!(certificate.common_name(), Some("PINPAD-8A01FF"));
    assert!(
        certificate.issuer().contains("CN=Acme Terminals CA"),
        "{}",
        certificate.issuer()
    );
    assert_eq!(
        certificate.not_after(),
        Utc.with_ymd_and_hms(2045, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
    );
    assert_eq!(
        certificate.fingerprint(),
        Fingerprint::of_der(device.der.as_ref())
    );
    assert_eq!(certificate.der(), &device.der);
    assert_eq!(
        DeviceCertificate::from_pem(&certificate.to_pem()).expect("round trip"),
        certificate
    );
    assert!(certificate.check_valid_at(inside_validity()).is_ok());
    let later = Utc
        .with_ymd_and_hms(2046, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    assert!(matches!(
        certificate.check_valid_at(later),
        Err(IdentityError::Expired { .. })
    ));
}

#[test]
fn a_ca_certificate_is_not_a_device_certificate() {
    let ca = TestCa::new("Acme Terminals CA");
    assert_eq!(
        DeviceCertificate::from_der(ca.der.as_ref()),
        Err(IdentityError::NotAnEndEntity)
    );
}

#[test]
fn a_server_only_certificate_is_not_a_device_certificate() {
    let ca = TestCa::new("Acme Terminals CA");
    let server_only = ca.device_with(&[2], |params| {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert_eq!(
        DeviceCertificate::from_der(server_only.der.as_ref()),
        Err(IdentityError::NotAClientCertificate)
    );
    // Without the extension at all, any use is allowed (RFC 5280 section 4.2.1.12).
    let no_eku = ca.device_with(&[3], |params| params.extended_key_usages.clear());
    assert!(DeviceCertificate::from_der(no_eku.der.as_ref()).is_ok());
}

#[test]
fn crl_must_be_issued_and_signed_by_its_ca() {
    let ca = TestCa::new("Acme Terminals CA");
    let crl = Crl::from_der(&ca.crl(&[&[7], &[0x90, 0x01]]), &ca.manufacturer_ca()).expect("crl");
    assert_eq!(crl.ca(), ca.manufacturer_ca().fingerprint());
    assert_eq!(crl.revoked_count(), 2);
    assert!(crl.is_revoked(&SerialNumber::parse("07").expect("serial")));
    assert!(crl.is_revoked(&SerialNumber::parse("9001").expect("serial")));
    assert!(!crl.is_revoked(&SerialNumber::parse("08").expect("serial")));
    assert_eq!(
        crl.this_update(),
        Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0)
            .single()
            .expect("date")
    );
    assert_eq!(
        crl.next_update(),
        Some(
            Utc.with_ymd_and_hms(2044, 6, 1, 0, 0, 0)
                .single()
                .expect("date")
        )
    );
    let round_trip = Crl::from_pem(&crl.to_pem(), &ca.manufacturer_ca()).expect("pem");
    assert_eq!(round_trip.der(), crl.der());

    let other = TestCa::new("Other Terminals CA");
    let error = Crl::from_der(&other.crl(&[]), &ca.manufacturer_ca()).expect_err("other issuer");
    assert!(
        matches!(error, IdentityError::CrlIssuerMismatch { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("CN=Other Terminals CA"),
        "{error}"
    );

    // Same name, different key: the issuer matches but the signature does not.
    let impostor = TestCa::new("Acme Terminals CA");
    assert_eq!(
        Crl::from_der(&impostor.crl(&[]), &ca.manufacturer_ca()),
        Err(IdentityError::BadSignature { field: "crl" })
    );
}

#[test]
fn a_ca_without_crl_sign_cannot_have_a_crl() {
    let ca = TestCa::with("No Crl CA", |params| {
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    });
    // rcgen refuses to sign a CRL with an issuer lacking cRLSign, so sign with a twin that has
    // it: same name and key, different keyUsage.
    let twin = rcgen::Issuer::new(common::ca_params("No Crl CA"), ca.key());
    let crl = common::crl_params(&[]).signed_by(&twin).expect("crl");
    let error = Crl::from_der(crl.der().as_ref(), &ca.manufacturer_ca()).expect_err("no cRLSign");
    assert!(matches!(error, IdentityError::NotACa { .. }), "{error}");
}

fn chain(der: &CertificateDer<'static>) -> Vec<CertificateDer<'static>> {
    vec![der.clone()]
}

#[test]
fn verify_names_the_ca_and_the_device() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x12, 0x34]);
    let trust = TrustStore::with(vec![ca.manufacturer_ca()], vec![]).expect("store");
    let verified = trust
        .verify(&chain(&device.der), inside_validity())
        .expect("verified");
    assert_eq!(verified.ca_fingerprint, ca.manufacturer_ca().fingerprint());
    assert_eq!(verified.serial.to_string(), "1234");
    assert_eq!(
        verified.fingerprint,
        Fingerprint::of_der(device.der.as_ref())
    );
    assert_eq!(verified.common_name.as_deref(), Some("PINPAD-1234"));
}

#[test]
fn verify_refusals_are_typed() {
    let ca = TestCa::new("Acme Terminals CA");
    let trust = TrustStore::with(vec![ca.manufacturer_ca()], vec![]).expect("store");
    let now = inside_validity();

    assert_eq!(trust.verify(&[], now), Err(IdentityError::NoCertificate));

    let stranger = TestCa::new("Stranger CA").device(&[1]);
    assert_eq!(
        trust.verify(&chain(&stranger.der), now),
        Err(IdentityError::UnknownIssuer)
    );

    let expired = ca.device_with(&[2], |params| {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    });
    let error = trust
        .verify(&chain(&expired.der), now)
        .expect_err("expired");
    assert_eq!(
        error,
        IdentityError::Expired {
            not_after: Utc
                .with_ymd_and_hms(2021, 1, 1, 0, 0, 0)
                .single()
                .expect("date")
        }
    );

    let future = ca.device_with(&[3], |params| {
        params.not_before = date_time_ymd(2040, 1, 1);
    });
    assert!(matches!(
        trust.verify(&chain(&future.der), now),
        Err(IdentityError::NotYetValid { .. })
    ));

    let server_only = ca.device_with(&[4], |params| {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert_eq!(
        trust.verify(&chain(&server_only.der), now),
        Err(IdentityError::NotAClientCertificate)
    );

    assert_eq!(
        trust.verify(&chain(&ca.der), now),
        Err(IdentityError::NotAnEndEntity)
    );

    // A flipped bit in the signature.
    let mut tampered = ca.device(&[5]).der.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let tampered = CertificateDer::from(tampered);
    // The last byte is in the ECDSA signature's `s`: the DER stays valid, the signature not.
    assert_eq!(
        trust.verify(&chain(&tampered), now),
        Err(IdentityError::BadSignature {
            field: "certificate"
        })
    );

    assert!(matches!(
        trust.verify(&[CertificateDer::from(vec![1, 2, 3])], now),
        Err(IdentityError::Malformed {
            field: "certificate",
            ..
        })
    ));
}

#[test]
fn verify_refuses_a_chain_to_an_expired_ca() {
    let ca = TestCa::with("Short Lived CA", |params| {
        params.not_after = date_time_ymd(2031, 1, 1);
    });
    let device = ca.device_with(&[1], |params| {
        params.not_after = date_time_ymd(2030, 12, 31);
    });
    let trust = TrustStore::with(vec![ca.manufacturer_ca()], vec![]).expect("store");
    assert!(trust.verify(&chain(&device.der), inside_validity()).is_ok());
    // Registered while valid (the event's time), used after the CA expired.
    let later = Utc
        .with_ymd_and_hms(2031, 6, 1, 0, 0, 0)
        .single()
        .expect("date");
    let error = trust
        .verify(&chain(&device.der), later)
        .expect_err("expired");
    assert!(
        matches!(
            error,
            IdentityError::Expired { .. } | IdentityError::CaExpired { .. }
        ),
        "{error}"
    );
    // webpki does not check the validity of trust anchors; the store does.
    let long_device = ca.device(&[2]);
    let error = trust
        .verify(&chain(&long_device.der), later)
        .expect_err("CA expired");
    assert!(matches!(error, IdentityError::CaExpired { .. }), "{error}");
}

#[test]
fn verify_applies_the_ca_crl() {
    let ca = TestCa::new("Acme Terminals CA");
    let revoked = ca.device(&[0x66]);
    let good = ca.device(&[0x67]);
    let trust = TrustStore::with(vec![ca.manufacturer_ca()], vec![ca.checked_crl(&[&[0x66]])])
        .expect("store");
    let now = inside_validity();
    assert_eq!(
        trust.verify(&chain(&revoked.der), now),
        Err(IdentityError::Revoked {
            serial: SerialNumber::parse("66").expect("serial")
        })
    );
    assert!(trust.verify(&chain(&good.der), now).is_ok());

    // A CA without a CRL: its devices are not checked for revocation.
    let other = TestCa::new("Other Terminals CA");
    trust.add_ca(other.manufacturer_ca());
    assert!(
        trust
            .verify(&chain(&other.device(&[0x66]).der), now)
            .is_ok()
    );

    // Removing the CRL lifts the revocation; a new CRL replaces the old one.
    assert!(trust.remove_crl(&ca.manufacturer_ca().fingerprint()));
    assert!(trust.verify(&chain(&revoked.der), now).is_ok());
    trust.set_crl(ca.checked_crl(&[&[0x67]])).expect("crl");
    assert!(trust.verify(&chain(&revoked.der), now).is_ok());
    assert!(matches!(
        trust.verify(&chain(&good.der), now),
        Err(IdentityError::Revoked { .. })
    ));
}

#[test]
fn intermediates_sent_by_the_device_are_used_and_checked_against_the_crl() {
    let root = TestCa::new("Acme Root CA");
    let intermediate = root.intermediate("Acme Line 7 CA");
    let device = intermediate.device(&[9]);
    let presented = vec![device.der.clone(), intermediate.der.clone()];
    let trust = TrustStore::with(vec![root.manufacturer_ca()], vec![]).expect("store");
    let now = inside_validity();
    let verified = trust
        .verify(&presented, now)
        .expect("verified via the intermediate");
    assert_eq!(
        verified.ca_fingerprint,
        root.manufacturer_ca().fingerprint()
    );
    // Without the intermediate there is no path.
    assert_eq!(
        trust.verify(&chain(&device.der), now),
        Err(IdentityError::UnknownIssuer)
    );
    // The root's CRL revokes the intermediate: its devices are refused.
    let intermediate_serial = {
        let parsed =
            ManufacturerCa::from_der(intermediate.der.as_ref(), now).expect("intermediate");
        parsed.serial().clone()
    };
    let mut serial_der = intermediate_serial.as_bytes().to_vec();
    if serial_der.first().is_some_and(|byte| byte & 0x80 != 0) {
        serial_der.insert(0, 0);
    }
    trust
        .set_crl(root.checked_crl(&[&serial_der]))
        .expect("crl");
    assert!(matches!(
        trust.verify(&presented, now),
        Err(IdentityError::Revoked { .. })
    ));
}

/// A verification is remembered for the same chain (the handshake's and the request's), but
/// never past the validity of a certificate on its path, before the time it was made, or across
/// a change of the store.
#[test]
fn a_remembered_verification_never_outlives_what_it_checked() {
    let root = TestCa::new("Acme Root CA");
    let intermediate = root.intermediate_with("Acme Line 8 CA", |params| {
        params.not_after = date_time_ymd(2031, 1, 1);
    });
    let device = intermediate.device(&[0x42]);
    let presented = vec![device.der.clone(), intermediate.der.clone()];
    let trust = TrustStore::with(vec![root.manufacturer_ca()], vec![]).expect("store");
    let now = inside_validity();
    let first = trust.verify(&presented, now).expect("verified");
    // The same chain again: the same answer.
    assert_eq!(trust.verify(&presented, now), Ok(first.clone()));
    let minute_later = now + chrono::TimeDelta::minutes(1);
    assert_eq!(trust.verify(&presented, minute_later), Ok(first.clone()));
    // Past the intermediate's end (the device's own runs to 2045): refused.
    let after_intermediate = Utc
        .with_ymd_and_hms(2031, 1, 1, 0, 0, 1)
        .single()
        .expect("date");
    assert!(matches!(
        trust.verify(&presented, after_intermediate),
        Err(IdentityError::Expired { .. })
    ));
    // Before the device's validity (a clock set back): refused, not answered from memory.
    let before = Utc
        .with_ymd_and_hms(2023, 6, 1, 0, 0, 0)
        .single()
        .expect("date");
    assert!(matches!(
        trust.verify(&presented, before),
        Err(IdentityError::NotYetValid { .. })
    ));
    // A tampered copy of the remembered chain is a different chain.
    let mut tampered = device.der.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert!(matches!(
        trust.verify(
            &[CertificateDer::from(tampered), intermediate.der.clone()],
            now
        ),
        Err(IdentityError::BadSignature { .. })
    ));
    // The root removed: refused at once.
    assert!(trust.remove_ca(&root.manufacturer_ca().fingerprint()));
    assert_eq!(
        trust.verify(&presented, now),
        Err(IdentityError::UnknownIssuer)
    );
    // Registered again: verified again.
    trust.add_ca(root.manufacturer_ca());
    assert_eq!(trust.verify(&presented, now), Ok(first));
}

#[test]
fn trust_store_updates_are_seen_by_every_clone() {
    let first = TestCa::new("First CA");
    let second = TestCa::new("Second CA");
    let trust = TrustStore::new();
    let verifier_side = trust.clone();
    assert!(verifier_side.is_empty());
    assert!(trust.add_ca(first.manufacturer_ca()));
    assert!(
        !trust.add_ca(first.manufacturer_ca()),
        "same fingerprint twice"
    );
    assert!(trust.add_ca(second.manufacturer_ca()));
    assert_eq!(verifier_side.len(), 2);
    let fingerprint = second.manufacturer_ca().fingerprint();
    assert_eq!(
        verifier_side.ca(&fingerprint),
        Some(second.manufacturer_ca())
    );

    trust.set_crl(second.checked_crl(&[])).expect("crl");
    assert!(verifier_side.crl(&fingerprint).is_some());
    assert!(trust.remove_ca(&fingerprint));
    assert!(
        verifier_side.crl(&fingerprint).is_none(),
        "the CA's CRL goes with it"
    );
    assert!(!trust.remove_ca(&fingerprint));

    // A CRL needs its CA registered.
    assert_eq!(
        trust.set_crl(second.checked_crl(&[])),
        Err(IdentityError::CrlWithoutCa { ca: fingerprint })
    );
    assert_eq!(
        trust.replace(vec![first.manufacturer_ca()], vec![second.checked_crl(&[])]),
        Err(IdentityError::CrlWithoutCa { ca: fingerprint })
    );
    assert_eq!(verifier_side.len(), 1, "a failed replace changes nothing");
    trust
        .replace(
            vec![second.manufacturer_ca(), second.manufacturer_ca()],
            vec![second.checked_crl(&[]), second.checked_crl(&[&[1]])],
        )
        .expect("replace");
    assert_eq!(verifier_side.cas(), vec![second.manufacturer_ca()]);
    assert_eq!(
        verifier_side
            .crl(&fingerprint)
            .map(|crl| crl.revoked_count()),
        Some(1),
        "the last CRL of a CA wins"
    );
}

/// Certificates and a CRL made by another producer, OpenSSL 3 (see tests/data/README.md).
#[test]
fn reads_and_verifies_openssl_made_certificates_and_crl() {
    let now = inside_validity();
    let ca = ManufacturerCa::from_der(include_bytes!("data/openssl-ca.der"), now).expect("CA");
    assert_eq!(ca.common_name(), Some("Seed Manufacturer CA"));
    let device =
        DeviceCertificate::from_der(include_bytes!("data/openssl-device.der")).expect("device");
    assert_eq!(device.serial().to_string(), "1234");
    assert_eq!(device.common_name(), Some("PINPAD-1234"));
    let crl = Crl::from_der(include_bytes!("data/openssl-crl.der"), &ca).expect("CRL");
    assert_eq!(crl.revoked_count(), 1);
    assert!(crl.is_revoked(&SerialNumber::parse("5678").expect("serial")));
    let trust = TrustStore::with(vec![ca.clone()], vec![crl]).expect("store");
    let verified = trust.verify(&chain(device.der()), now).expect("verified");
    assert_eq!(verified.ca_fingerprint, ca.fingerprint());
    assert_eq!(verified.serial, *device.serial());
    // An rcgen CA's CRL is not OpenSSL's CA's.
    let rcgen_ca = TestCa::new("Seed Manufacturer CA");
    assert!(
        Crl::from_der(
            include_bytes!("data/openssl-crl.der"),
            &rcgen_ca.manufacturer_ca()
        )
        .is_err()
    );
}
