//! End-to-end tests of `mposctl calc tr34`: a test PKI generated at test time (as in
//! `crates/paycrypto/tests/tr34.rs`: 2048-bit RSA, seeded, once per test binary, DER and PEM
//! files in a temporary directory); tokens built with the CLI and opened with the CLI.
//!
//! TR-34 has no published end-to-end vectors with private keys for every party, so these are
//! round trips plus tampering and malformed-input classes.

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::sync::OnceLock;

use der::asn1::{BitString, OctetString, UtcTime};
use der::oid::AssociatedOid;
use der::{Decode, Encode};
use pem_rfc7468::LineEnding;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// 2026-01-01T00:00:00Z, the "now" of every test.
const NOW: u64 = 1_767_225_600;
const YEAR: u64 = 365 * 24 * 3600;
const NONCE: &str = "167EB0E72781E4940112233445566778";
const HEADER: &str = "D0000K1TB00E0000";
/// A double-length TDES key (X9.24-1:2009 A.4 BDK), KCV 08D7B4.
const KEY: &str = "0123456789ABCDEFFEDCBA9876543210";
const KEY_KCV: &str = "08D7B4";
const CA_NAME: &str = "CN=TR34 Test CA,O=mPOS Test";

// ---------------------------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------------------------

struct Party {
    key: RsaPrivateKey,
    cert: Vec<u8>,
}

impl Party {
    fn cert_hex(&self) -> String {
        hex::encode_upper(&self.cert)
    }

    fn key_hex(&self) -> String {
        hex::encode_upper(self.key.to_pkcs8_der().expect("pkcs8").as_bytes())
    }
}

struct Pki {
    ca: Party,
    kdh: Party,
    kdh2: Party,
    krd: Party,
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        path.to_str().expect("utf-8 path").to_owned()
    }
}

fn rsa_key(seed: u64) -> RsaPrivateKey {
    let mut rng = StdRng::seed_from_u64(seed);
    RsaPrivateKey::new(&mut rng, 2048).expect("rsa keygen")
}

fn time(unix: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(std::time::Duration::from_secs(unix)).expect("utc"))
}

fn extension<T: Encode + AssociatedOid>(value: &T) -> Extension {
    Extension {
        extn_id: T::OID,
        critical: true,
        extn_value: OctetString::new(value.to_der().expect("der")).expect("octets"),
    }
}

fn certificate(
    subject: &str,
    serial: u8,
    ca: bool,
    usage: KeyUsage,
    subject_key: &RsaPublicKey,
    issuer_key: &RsaPrivateKey,
) -> Vec<u8> {
    let spki_der = subject_key.to_public_key_der().expect("spki");
    let signature_algorithm = AlgorithmIdentifierOwned {
        oid: der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
        parameters: Some(der::Any::null()),
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).expect("serial"),
        signature: signature_algorithm.clone(),
        issuer: Name::from_str(CA_NAME).expect("issuer"),
        validity: Validity {
            not_before: time(NOW - YEAR),
            not_after: time(NOW + YEAR),
        },
        subject: Name::from_str(subject).expect("subject"),
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())
            .expect("spki"),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            extension(&BasicConstraints {
                ca,
                path_len_constraint: None,
            }),
            extension(&usage),
        ]),
    };
    let hashed = Sha256::digest(tbs.to_der().expect("tbs"));
    let signature = issuer_key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &hashed)
        .expect("sign");
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm,
        signature: BitString::from_bytes(&signature).expect("bits"),
    }
    .to_der()
    .expect("cert")
}

fn pem(label: &str, der: &[u8]) -> String {
    pem_rfc7468::encode_string(label, LineEnding::LF, der).expect("pem")
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca_key = rsa_key(1);
        let ca_usage = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
        let ca_cert = certificate(CA_NAME, 1, true, ca_usage, &ca_key.to_public_key(), &ca_key);
        let leaf = |subject: &str, serial: u8, usage: KeyUsages, key: RsaPrivateKey| {
            let cert = certificate(
                subject,
                serial,
                false,
                KeyUsage(usage.into()),
                &key.to_public_key(),
                &ca_key,
            );
            Party { key, cert }
        };
        let kdh = leaf(
            "CN=TR34 Test KDH 1",
            0x34,
            KeyUsages::DigitalSignature,
            rsa_key(3),
        );
        let kdh2 = leaf(
            "CN=TR34 Test KDH 2",
            0x35,
            KeyUsages::DigitalSignature,
            rsa_key(4),
        );
        let krd = leaf(
            "CN=TR34 Test KRD 1",
            0x36,
            KeyUsages::KeyEncipherment,
            rsa_key(5),
        );
        let ca = Party {
            key: ca_key,
            cert: ca_cert,
        };

        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, data: &[u8]| {
            std::fs::write(dir.path().join(name), data).expect("write");
        };
        write("ca.pem", pem("CERTIFICATE", &ca.cert).as_bytes());
        write("ca.der", &ca.cert);
        write("kdh.der", &kdh.cert);
        write("kdh.pem", pem("CERTIFICATE", &kdh.cert).as_bytes());
        write(
            "kdh-key.pem",
            kdh.key
                .to_pkcs8_pem(LineEnding::LF)
                .expect("pkcs8 pem")
                .as_bytes(),
        );
        write("kdh2.pem", pem("CERTIFICATE", &kdh2.cert).as_bytes());
        write("krd.der", &krd.cert);
        write(
            "krd-key.pem",
            krd.key
                .to_pkcs1_pem(LineEnding::LF)
                .expect("pkcs1 pem")
                .as_bytes(),
        );
        write(
            "krd-key.der",
            krd.key.to_pkcs8_der().expect("pkcs8").as_bytes(),
        );
        let bundle = format!(
            "KDH then CA\n{}{}",
            pem("CERTIFICATE", &kdh.cert),
            pem("CERTIFICATE", &ca.cert)
        );
        write("bundle.pem", bundle.as_bytes());
        Pki {
            ca,
            kdh,
            kdh2,
            krd,
            dir,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// Runs `mposctl calc tr34 <args>`; returns the exit status and the one JSON object on stdout.
fn tr34(args: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_mposctl"))
        .args(["calc", "tr34"])
        .args(args)
        .output()
        .expect("run mposctl");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    assert_eq!(
        stdout.lines().count(),
        1,
        "one line for {args:?}: {stdout:?}"
    );
    let value: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    (output.status.code().expect("exit code"), value)
}

fn ok(args: &[&str]) -> Value {
    let (status, value) = tr34(args);
    assert_eq!(status, 0, "{args:?} → {value}");
    value
}

/// Expects an error object: returns (status, code, message).
fn fail(args: &[&str]) -> (i32, String, String) {
    let (status, value) = tr34(args);
    assert_ne!(status, 0, "{args:?} should fail: {value}");
    assert_eq!(value.as_object().expect("object").len(), 2, "{value}");
    (
        status,
        value["code"].as_str().expect("code").to_owned(),
        value["message"].as_str().expect("message").to_owned(),
    )
}

fn field(value: &Value, name: &str) -> String {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {value}"))
        .to_owned()
}

/// Asserts exit status 2, `bad_request`, a message mentioning `needle`, and none of the
/// `secrets` (nor any 32-hex-digit window of them) in the message.
fn assert_bad_request(args: &[&str], needle: &str, secrets: &[&str]) {
    let (status, code, message) = fail(args);
    assert_eq!(
        (status, code.as_str()),
        (2, "bad_request"),
        "{args:?}: {message}"
    );
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {message:?} should mention {needle:?}"
    );
    for secret in secrets {
        let secret = secret.to_uppercase();
        let upper = message.to_uppercase();
        let window = 32.min(secret.len());
        for start in (0..=secret.len() - window).step_by(8) {
            assert!(
                !upper.contains(&secret[start..start + window]),
                "{args:?}: message echoes secret material: {message}"
            );
        }
    }
}

fn now() -> String {
    NOW.to_string()
}

/// Builds a two-pass key token for the KRD with hex inputs (PKCS #8 DER key in hex).
fn two_pass_token() -> String {
    let pki = pki();
    let out = ok(&[
        "key-token",
        "build",
        "--kdh-cert-hex",
        &pki.kdh.cert_hex(),
        "--kdh-key-hex",
        &pki.kdh.key_hex(),
        "--krd-cert-file",
        &pki.path("krd.der"),
        "--key",
        KEY,
        "--header",
        HEADER,
        "--nonce",
        NONCE,
    ]);
    assert_eq!(field(&out, "kcv"), KEY_KCV);
    assert_eq!(field(&out, "header"), HEADER);
    assert_eq!(out["freshness"]["nonce"], NONCE);
    let text = out.to_string();
    assert!(
        !text.contains(KEY),
        "the key is not printed in clear: {text}"
    );
    assert!(
        !text.contains(&pki.kdh.key_hex()[40..80]),
        "no private key bytes"
    );
    field(&out, "token")
}

/// Opens a key token with file inputs (PEM CA, PEM KDH chain, DER KRD certificate, PKCS #1
/// PEM KRD key).
fn open_args<'a>(pki: &'a Pki, token: &'a str, paths: &'a [String; 4]) -> Vec<&'a str> {
    let _ = pki;
    vec![
        "key-token",
        "open",
        "--token",
        token,
        "--ca-cert-file",
        &paths[0],
        "--kdh-cert-file",
        &paths[1],
        "--krd-cert-file",
        &paths[2],
        "--krd-key-file",
        &paths[3],
    ]
}

fn open_paths(pki: &Pki) -> [String; 4] {
    [
        pki.path("ca.pem"),
        pki.path("kdh.pem"),
        pki.path("krd.der"),
        pki.path("krd-key.pem"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Key tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn key_token_two_pass_round_trip() {
    let pki = pki();
    // The KRD's random number token carries the nonce the KDH signs over.
    let rt = ok(&["random-token", "build", "--nonce", NONCE]);
    let opened = ok(&["random-token", "open", "--token", &field(&rt, "token")]);
    assert_eq!(field(&opened, "nonce"), NONCE);

    let token = two_pass_token();
    let paths = open_paths(pki);
    let now = now();
    let mut args = open_args(pki, &token, &paths);
    args.extend(["--nonce", NONCE, "--now", &now]);
    let out = ok(&args);
    assert_eq!(field(&out, "key"), KEY);
    assert_eq!(field(&out, "kcv"), KEY_KCV);
    assert_eq!(field(&out, "header"), HEADER);
    assert_eq!(out["kdh"]["issuer"], CA_NAME);
    assert_eq!(out["kdh"]["serial"], "34");
    assert_eq!(out["freshness"]["nonce"], NONCE);
    assert_eq!(out["key_transport"], "oaep");
    assert_eq!(out["content_encryption"], "aes128");

    // The same token opens with hex and DER-file inputs (PKCS #8 DER key file).
    let ca = pki.ca.cert_hex();
    let kdh = pki.kdh.cert_hex();
    let krd = pki.krd.cert_hex();
    let krd_key = pki.path("krd-key.der");
    let out = ok(&[
        "key-token",
        "open",
        "--token",
        &token,
        "--ca-cert-hex",
        &ca,
        "--kdh-cert-hex",
        &kdh,
        "--krd-cert-hex",
        &krd,
        "--krd-key-file",
        &krd_key,
        "--nonce",
        NONCE,
        "--now",
        &now,
    ]);
    assert_eq!(field(&out, "key"), KEY);
}

#[test]
fn key_token_one_pass_signing_time_and_algorithm_choices() {
    let pki = pki();
    let kdh_cert = pki.path("kdh.pem");
    let kdh_key = pki.path("kdh-key.pem");
    let krd = pki.krd.cert_hex();
    let now = now();
    for (transport, cipher, signature) in [
        ("pkcs1", "aes256", "pss"),
        ("oaep", "tdes", "pkcs1"),
        ("oaep", "aes128", "pss"),
    ] {
        let aes_key = "00112233445566778899AABBCCDDEEFF";
        let out = ok(&[
            "key-token",
            "build",
            "--kdh-cert-file",
            &kdh_cert,
            "--kdh-key-file",
            &kdh_key,
            "--krd-cert-hex",
            &krd,
            "--key",
            aes_key,
            "--header",
            "D0000K1AB00E0000",
            "--signing-time",
            &now,
            "--key-transport",
            transport,
            "--content-encryption",
            cipher,
            "--signature",
            signature,
        ]);
        assert_eq!(out["freshness"]["signing_time"], NOW);
        let token = field(&out, "token");
        let paths = open_paths(pki);
        let later = (NOW + 60).to_string();
        let mut args = open_args(pki, &token, &paths);
        args.extend(["--max-skew", "300", "--now", &later]);
        let opened = ok(&args);
        assert_eq!(field(&opened, "key"), aes_key);
        assert_eq!(field(&opened, "kcv"), field(&out, "kcv"));
        assert_eq!(opened["key_transport"], transport);
        assert_eq!(opened["content_encryption"], cipher);
        assert_eq!(opened["freshness"]["signing_time"], NOW);

        // Outside the window: a failed verification, exit status 1.
        let too_late = (NOW + 3600).to_string();
        let mut args = open_args(pki, &token, &paths);
        args.extend(["--max-skew", "300", "--now", &too_late]);
        let (status, code, message) = fail(&args);
        assert_eq!(
            (status, code.as_str()),
            (1, "verification_failed"),
            "{message}"
        );
    }
}

#[test]
fn tampered_or_misdirected_key_token_fails_verification() {
    let pki = pki();
    let token = two_pass_token();
    let paths = open_paths(pki);
    let now = now();

    // Flip the last byte (the KDH's signature value).
    let mut tampered = token.clone();
    let last = tampered.pop().expect("digit");
    tampered.push(if last == '0' { '1' } else { '0' });
    let mut args = open_args(pki, &tampered, &paths);
    args.extend(["--nonce", NONCE, "--now", &now]);
    let (status, code, message) = fail(&args);
    assert_eq!(
        (status, code.as_str()),
        (1, "verification_failed"),
        "{message}"
    );
    assert!(!message.contains(KEY), "{message}");

    // Another nonce than the one signed.
    let mut args = open_args(pki, &token, &paths);
    args.extend(["--nonce", "00000000000000000000000000000000", "--now", &now]);
    let (status, code, _) = fail(&args);
    assert_eq!((status, code.as_str()), (1, "verification_failed"));

    // Another KDH's chain than the signer's.
    let kdh2 = pki.path("kdh2.pem");
    let args = [
        "key-token",
        "open",
        "--token",
        &token,
        "--ca-cert-file",
        &paths[0],
        "--kdh-cert-file",
        &kdh2,
        "--krd-cert-file",
        &paths[2],
        "--krd-key-file",
        &paths[3],
        "--nonce",
        NONCE,
        "--now",
        &now,
    ];
    let (status, code, _) = fail(&args);
    assert_eq!((status, code.as_str()), (1, "verification_failed"));

    // Certificates not valid at --now.
    let far = (NOW + 5 * YEAR).to_string();
    let mut args = open_args(pki, &token, &paths);
    args.extend(["--nonce", NONCE, "--now", &far]);
    let (status, code, _) = fail(&args);
    assert_eq!((status, code.as_str()), (1, "verification_failed"));
}

// ---------------------------------------------------------------------------------------------
// Credential, rebind and unbind tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn credential_rebind_and_unbind_round_trips() {
    let pki = pki();
    let now = now();
    let ca = pki.path("ca.der");

    // CT_KDH from a PEM file; opened against the CA for the KDH role.
    let ct = ok(&[
        "credential-token",
        "build",
        "--cert-file",
        &pki.path("kdh.pem"),
    ]);
    let ct = field(&ct, "token");
    let out = ok(&[
        "credential-token",
        "open",
        "--token",
        &ct,
        "--ca-cert-file",
        &ca,
        "--role",
        "kdh",
        "--now",
        &now,
    ]);
    assert_eq!(out["valid"], true);
    assert_eq!(out["chain"][0]["serial"], "34");
    assert_eq!(out["chain"][0]["certificate"], pki.kdh.cert_hex());
    // The KDH certificate does not allow key encipherment: not a KRD credential.
    let (status, code, _) = fail(&[
        "credential-token",
        "open",
        "--token",
        &ct,
        "--ca-cert-file",
        &ca,
        "--role",
        "krd",
        "--now",
        &now,
    ]);
    assert_eq!((status, code.as_str()), (1, "verification_failed"));

    // A PEM file with two certificates is the same as two hex certificates.
    let bundle = ok(&[
        "credential-token",
        "build",
        "--cert-file",
        &pki.path("bundle.pem"),
    ]);
    let hex = ok(&[
        "credential-token",
        "build",
        "--cert-hex",
        &pki.kdh.cert_hex(),
        "--cert-hex",
        &pki.ca.cert_hex(),
    ]);
    assert_eq!(bundle, hex);

    // RBT_KDH: KDH 1 hands the KRD over to KDH 2.
    let kdh_key = pki.path("kdh-key.pem");
    let kdh_cert = pki.path("kdh.der");
    let krd = pki.path("krd.der");
    let kdh2 = pki.path("kdh2.pem");
    let rbt = ok(&[
        "rebind",
        "build",
        "--kdh-cert-file",
        &kdh_cert,
        "--kdh-key-file",
        &kdh_key,
        "--krd-cert-file",
        &krd,
        "--new-kdh-cert-file",
        &kdh2,
        "--nonce",
        NONCE,
        "--signature",
        "pss",
    ]);
    let rbt = field(&rbt, "token");
    let bound = |token: &str, op: &str, nonce: &str| {
        tr34(&[
            op,
            "open",
            "--token",
            token,
            "--ca-cert-file",
            &ca,
            "--kdh-cert-file",
            &kdh_cert,
            "--krd-cert-file",
            &krd,
            "--nonce",
            nonce,
            "--now",
            &now,
        ])
    };
    let (status, out) = bound(&rbt, "rebind", NONCE);
    assert_eq!(status, 0, "{out}");
    assert_eq!(out["valid"], true);
    assert_eq!(out["new_kdh_chain"][0]["serial"], "35");
    assert_eq!(out["new_kdh_chain"][0]["certificate"], pki.kdh2.cert_hex());
    let (status, out) = bound(&rbt, "rebind", "0000000000000000");
    assert_eq!(
        (status, &out["code"]),
        (1, &Value::from("verification_failed"))
    );

    // UBT_KDH.
    let ubt = ok(&[
        "unbind",
        "build",
        "--kdh-cert-hex",
        &pki.kdh.cert_hex(),
        "--kdh-key-hex",
        &pki.kdh.key_hex(),
        "--krd-cert-hex",
        &pki.krd.cert_hex(),
        "--nonce",
        NONCE,
    ]);
    let ubt = field(&ubt, "token");
    let (status, out) = bound(&ubt, "unbind", NONCE);
    assert_eq!((status, out), (0, serde_json::json!({"valid": true})));
    // An unbind token is not a rebind token, and a tampered one fails.
    let (status, _) = bound(&ubt, "rebind", NONCE);
    assert_ne!(status, 0);
    let mut tampered = ubt.clone();
    let last = tampered.pop().expect("digit");
    tampered.push(if last == '0' { '1' } else { '0' });
    let (status, out) = bound(&tampered, "unbind", NONCE);
    assert_eq!(
        (status, &out["code"]),
        (1, &Value::from("verification_failed"))
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, no key bytes echoed
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_inputs_are_reported_without_echo() {
    let pki = pki();
    let kdh_cert = pki.kdh.cert_hex();
    let kdh_key = pki.kdh.key_hex();
    let krd_cert = pki.krd.cert_hex();
    let krd_key = pki.krd.key_hex();
    let build = |key: &str, kdh_key_hex: &str, header: &str, nonce: &str| {
        vec![
            "key-token".to_owned(),
            "build".to_owned(),
            "--kdh-cert-hex".to_owned(),
            kdh_cert.clone(),
            "--kdh-key-hex".to_owned(),
            kdh_key_hex.to_owned(),
            "--krd-cert-hex".to_owned(),
            krd_cert.clone(),
            "--key".to_owned(),
            key.to_owned(),
            "--header".to_owned(),
            header.to_owned(),
            "--nonce".to_owned(),
            nonce.to_owned(),
        ]
    };
    let check = |args: Vec<String>, needle: &str, secrets: &[&str]| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_bad_request(&refs, needle, secrets);
    };
    let bad_key = "0123456789ABCDEFFEDCBA987654321G";
    check(
        build(bad_key, &kdh_key, HEADER, NONCE),
        "--key: not hexadecimal",
        &[bad_key, &kdh_key],
    );
    // The KRD's private key given as the KDH's: it does not match the KDH certificate.
    check(
        build(KEY, &krd_key, HEADER, NONCE),
        "does not match",
        &[KEY, &krd_key],
    );
    // A private key that is not one.
    let mut broken_key = kdh_key.clone();
    broken_key.truncate(200);
    check(
        build(KEY, &broken_key, HEADER, NONCE),
        "private key",
        &[KEY, &broken_key],
    );
    check(
        build(KEY, &kdh_key, "D0000K1TB00E00", NONCE),
        "header",
        &[KEY, &kdh_key],
    );
    check(
        build(KEY, &kdh_key, HEADER, "0011"),
        "nonce",
        &[KEY, &kdh_key],
    );
    check(
        build(&KEY.repeat(5), &kdh_key, HEADER, NONCE),
        "1 to 64 bytes",
        &[KEY, &kdh_key],
    );
    let mut both = build(KEY, &kdh_key, HEADER, NONCE);
    both.extend(["--signing-time".to_owned(), "now".to_owned()]);
    check(both, "cannot be used with", &[KEY, &kdh_key]);
    let mut no_key_source = build(KEY, &kdh_key, HEADER, NONCE);
    no_key_source.drain(4..6);
    check(no_key_source, "missing required argument", &[KEY]);

    // Files: a missing file (the path is not echoed), a certificate where a key belongs.
    let missing = pki.path("no-such-file.pem");
    assert_bad_request(
        &[
            "key-token",
            "build",
            "--kdh-cert-hex",
            &kdh_cert,
            "--kdh-key-file",
            &missing,
            "--krd-cert-hex",
            &krd_cert,
            "--key",
            KEY,
            "--header",
            HEADER,
            "--nonce",
            NONCE,
        ],
        "--kdh-key-file: cannot read the file",
        &[KEY, &missing],
    );
    let ca_pem = pki.path("ca.pem");
    assert_bad_request(
        &[
            "key-token",
            "build",
            "--kdh-cert-hex",
            &kdh_cert,
            "--kdh-key-file",
            &ca_pem,
            "--krd-cert-hex",
            &krd_cert,
            "--key",
            KEY,
            "--header",
            HEADER,
            "--nonce",
            NONCE,
        ],
        "PEM label",
        &[KEY],
    );
    // Two certificates where one belongs.
    assert_bad_request(
        &[
            "credential-token",
            "open",
            "--token",
            "3000",
            "--ca-cert-file",
            &pki.path("bundle.pem"),
            "--role",
            "kdh",
        ],
        "expected one certificate",
        &[],
    );

    // Malformed tokens are bad requests, not verification failures.
    let paths = open_paths(pki);
    let now = now();
    for token in ["30", "3003020101", "zz"] {
        let mut args = open_args(pki, token, &paths);
        args.extend(["--nonce", NONCE, "--now", &now]);
        let (status, code, message) = fail(&args);
        assert_eq!(
            (status, code.as_str()),
            (2, "bad_request"),
            "{token}: {message}"
        );
        assert!(!message.contains(&krd_key[40..72]), "{message}");
    }
    assert_bad_request(
        &["random-token", "open", "--token", "0102"],
        "random number token",
        &[],
    );
    assert_bad_request(&["random-token", "build", "--nonce", "0102"], "nonce", &[]);
    assert_bad_request(
        &["credential-token", "build", "--cert-hex", "3003020101"],
        "certificate",
        &[],
    );
}

#[test]
fn random_token_draws_a_nonce_when_none_is_given() {
    let first = ok(&["random-token", "build"]);
    let second = ok(&["random-token", "build"]);
    assert_eq!(field(&first, "nonce").len(), 32);
    assert_ne!(first["nonce"], second["nonce"]);
    let opened = ok(&["random-token", "open", "--token", &field(&first, "token")]);
    assert_eq!(opened["nonce"], first["nonce"]);
}
