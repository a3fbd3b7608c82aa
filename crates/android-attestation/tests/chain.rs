//! Chain verification: the real device chains of tests/data/testdata against Google's roots,
//! and every failure path on chains built here with rcgen.

mod common;

use std::path::{Path, PathBuf};

use common::{data_dir, files, name};

use android_attestation::{
    ChainError, KEY_DESCRIPTION_OID, KeyDescription, RevocationList, Status, TrustAnchors,
    VerifiedChain, read_pem_chain, verify_chain,
};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    SerialNumber, date_time_ymd,
};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// How many fixture chains (`<name>.pem` with a `<name>.json` beside it, outside `invalid/`)
/// the test data holds; the test fails on another number, so none is silently skipped.
const EXPECTED_CHAINS: usize = 21;

/// Fixture chains that legitimately do not chain to a Google hardware attestation root: the
/// marlin (Pixel) sdk29 chains are *software* attestations, made by Keystore's software
/// implementation and rooted at Google's software attestation roots (EC, and a 1024-bit RSA
/// key that ring would not even verify with), whose private keys ship in AOSP; they must be
/// refused, and are, with `UnknownRoot` (the anchor is checked before the links).
const NOT_GOOGLE_ROOTED: [&str; 2] = [
    "marlin/sdk29/TEE_EC_NONE.pem",
    "marlin/sdk29/TEE_RSA_NONE.pem",
];

/// The fixture chains with a JSON beside them, outside `invalid/`, sorted.
fn fixture_chains() -> Vec<PathBuf> {
    let mut pems = Vec::new();
    files(&data_dir(), "pem", &mut pems);
    pems.sort();
    pems.into_iter()
        .filter(|pem| !pem.components().any(|c| c.as_os_str() == "invalid"))
        .filter(|pem| pem.with_extension("json").exists())
        .collect()
}

/// A time inside every certificate's validity: the latest notBefore + 1 s, checked to be
/// no later than the earliest notAfter.
fn time_inside(chain: &[Vec<u8>], label: &str) -> i64 {
    let mut latest_start = i64::MIN;
    let mut earliest_end = i64::MAX;
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der).expect("certificate");
        latest_start = latest_start.max(cert.validity().not_before.timestamp());
        earliest_end = earliest_end.min(cert.validity().not_after.timestamp());
    }
    let now = latest_start + 1;
    assert!(
        now <= earliest_end,
        "{label}: the validities do not overlap"
    );
    now
}

#[test]
fn google_roots_are_the_shipped_roots_json() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/roots.json");
    let text = std::fs::read_to_string(path).expect("roots.json");
    let pems: Vec<String> = serde_json::from_str(&text).expect("JSON array of PEM strings");
    assert_eq!(pems.len(), 2);
    let from_json = TrustAnchors::from_pem(pems.join("\n").as_bytes()).expect("roots parse");
    let google = TrustAnchors::google();
    assert_eq!(google.len(), 2);
    assert_eq!(
        google.certificates().collect::<Vec<_>>(),
        from_json.certificates().collect::<Vec<_>>()
    );
}

#[test]
fn every_fixture_chain_verifies_against_the_google_roots() {
    let anchors = TrustAnchors::google();
    let chains = fixture_chains();
    assert_eq!(chains.len(), EXPECTED_CHAINS, "fixture chains found");
    let mut verified = 0;
    let mut anchors_used = std::collections::BTreeSet::new();
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    for pem in &chains {
        let label = name(pem);
        let chain = read_pem_chain(pem).expect("PEM chain");
        let now = time_inside(&chain, &label);
        let result = verify_chain(&chain, &anchors, &RevocationList::empty(), now);
        if NOT_GOOGLE_ROOTED.contains(&label.as_str()) {
            match result {
                Err(ChainError::UnknownRoot { index }) if index == chain.len() - 1 => {
                    refused.push(label)
                }
                other => failures.push(format!("{label}: expected UnknownRoot, got {other:?}")),
            }
            continue;
        }
        match result {
            Ok(VerifiedChain {
                key_description,
                anchor_index,
                ..
            }) => {
                anchors_used.insert(anchor_index);
                let parsed = KeyDescription::from_certificate_der(&chain[0])
                    .expect("parses")
                    .expect("has the extension");
                if key_description == parsed {
                    verified += 1;
                } else {
                    failures.push(format!("{label}: KeyDescription differs from the parser's"));
                }
            }
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(refused.len(), NOT_GOOGLE_ROOTED.len());
    assert_eq!(verified, EXPECTED_CHAINS - NOT_GOOGLE_ROOTED.len());
    // Both roots are exercised: the RSA root by the older chains, the EC root by the 2026 ones.
    assert_eq!(anchors_used.into_iter().collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn fixture_chain_is_refused_outside_its_validity() {
    let pem = data_dir().join("tegu/sdk36/TEE_EC_2026_ROOT.pem");
    let chain = read_pem_chain(&pem).expect("PEM chain");
    let anchors = TrustAnchors::google();
    let now = time_inside(&chain, "tegu");
    assert!(verify_chain(&chain, &anchors, &RevocationList::empty(), now).is_ok());
    // 2100: at least the intermediates have expired.
    assert!(matches!(
        verify_chain(&chain, &anchors, &RevocationList::empty(), 4_102_444_800),
        Err(ChainError::Expired { .. })
    ));
    // 2000: the leaf (notBefore 1970, as Keystore writes it) is valid, the CA certificates
    // are not yet; the first of them is reported.
    assert!(matches!(
        verify_chain(&chain, &anchors, &RevocationList::empty(), 946_684_800),
        Err(ChainError::NotYetValid { index: 1, .. })
    ));
}

// ---- Chains built with rcgen ----

/// 2030-01-01T00:00:00Z, inside the default validity of the built certificates.
const NOW: i64 = 1_893_456_000;
const KEY_DESCRIPTION_ARCS: [u64; 9] = [1, 3, 6, 1, 4, 1, 11129, 2, 1];
const INTERMEDIATE_SERIAL: [u8; 3] = [0x8f, 0x01, 0x02];

fn key_description_arcs() -> Vec<u64> {
    let mut arcs = KEY_DESCRIPTION_ARCS.to_vec();
    arcs.push(17);
    assert_eq!(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
        KEY_DESCRIPTION_OID
    );
    arcs
}

/// The raw key attestation extension value of a fixture leaf.
fn fixture_extension() -> Vec<u8> {
    let chain =
        read_pem_chain(data_dir().join("tegu/sdk36/TEE_EC_2026_ROOT.pem")).expect("PEM chain");
    let (_, cert) = X509Certificate::from_der(&chain[0]).expect("certificate");
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == KEY_DESCRIPTION_OID)
        .map(|e| e.value.to_vec())
        .expect("fixture leaf has the extension")
}

fn extension() -> CustomExtension {
    CustomExtension::from_oid_content(&key_description_arcs(), fixture_extension())
}

fn params(common_name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.not_before = date_time_ymd(2025, 1, 1);
    params.not_after = date_time_ymd(2035, 1, 1);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params
}

struct Options {
    leaf_not_after: Option<(i32, u8, u8)>,
    extension_on_intermediate: bool,
}

const DEFAULT: Options = Options {
    leaf_not_after: None,
    extension_on_intermediate: false,
};

struct TestPki {
    /// leaf, intermediate, root (DER).
    chain: Vec<Vec<u8>>,
    root_der: Vec<u8>,
    leaf_params: CertificateParams,
    leaf_key: KeyPair,
}

impl TestPki {
    fn build(options: &Options) -> TestPki {
        let root_key = KeyPair::generate().expect("key");
        let root_params = params("Test Attestation Root", true);
        let root = root_params.self_signed(&root_key).expect("root");

        let intermediate_key = KeyPair::generate().expect("key");
        let mut intermediate_params = params("Test Attestation Intermediate", true);
        intermediate_params.serial_number = Some(SerialNumber::from_slice(&INTERMEDIATE_SERIAL));
        if options.extension_on_intermediate {
            intermediate_params.custom_extensions.push(extension());
        }
        let intermediate = intermediate_params
            .signed_by(
                &intermediate_key,
                &Issuer::from_params(&root_params, &root_key),
            )
            .expect("intermediate");

        let leaf_key = KeyPair::generate().expect("key");
        let mut leaf_params = params("Android Keystore Key", false);
        leaf_params.custom_extensions.push(extension());
        if let Some((y, m, d)) = options.leaf_not_after {
            leaf_params.not_after = date_time_ymd(y, m, d);
        }
        let leaf = leaf_params
            .signed_by(
                &leaf_key,
                &Issuer::from_params(&intermediate_params, &intermediate_key),
            )
            .expect("leaf");

        TestPki {
            chain: vec![
                leaf.der().to_vec(),
                intermediate.der().to_vec(),
                root.der().to_vec(),
            ],
            root_der: root.der().to_vec(),
            leaf_params,
            leaf_key,
        }
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::from_der([self.root_der.clone()]).expect("anchor")
    }

    fn verify(
        &self,
        chain: &[Vec<u8>],
        revocations: &RevocationList,
    ) -> Result<VerifiedChain, ChainError> {
        verify_chain(chain, &self.anchors(), revocations, NOW)
    }

    /// A new certificate signed by the attested leaf's key (the chain extended past it).
    fn extended(&self, with_extension: bool) -> Vec<Vec<u8>> {
        let key = KeyPair::generate().expect("key");
        let mut params = params("Forged Leaf", false);
        if with_extension {
            params.custom_extensions.push(extension());
        }
        let forged = params
            .signed_by(
                &key,
                &Issuer::from_params(&self.leaf_params, &self.leaf_key),
            )
            .expect("forged leaf");
        let mut chain = vec![forged.der().to_vec()];
        chain.extend(self.chain.iter().cloned());
        chain
    }
}

fn revocations(serial: &str, status: &str) -> RevocationList {
    let json = format!(
        r#"{{"entries": {{"{serial}": {{"status": "{status}", "reason": "KEY_COMPROMISE"}}}}}}"#
    );
    RevocationList::from_json(json.as_bytes()).expect("status list")
}

#[test]
fn built_chain_verifies_against_its_root() {
    let pki = TestPki::build(&DEFAULT);
    let verified = pki
        .verify(&pki.chain, &RevocationList::empty())
        .expect("verifies");
    let expected = KeyDescription::from_der(&fixture_extension()).expect("parses");
    assert_eq!(verified.key_description, expected);
    assert_eq!(verified.anchor_index, 0);
    assert!(verified.root_in_chain);
    assert_eq!(verified.serials[1], "8f0102");
    let (_, leaf) = X509Certificate::from_der(&pki.chain[0]).expect("leaf");
    assert_eq!(verified.leaf_public_key_der, leaf.public_key().raw);
}

#[test]
fn built_chain_without_the_root_verifies_under_the_anchor() {
    let pki = TestPki::build(&DEFAULT);
    let verified = pki
        .verify(&pki.chain[..2], &RevocationList::empty())
        .expect("verifies");
    assert!(!verified.root_in_chain);
}

#[test]
fn unknown_root_is_refused() {
    let pki = TestPki::build(&DEFAULT);
    let result = verify_chain(
        &pki.chain,
        &TrustAnchors::google(),
        &RevocationList::empty(),
        NOW,
    );
    assert_eq!(result, Err(ChainError::UnknownRoot { index: 2 }));
    let result = verify_chain(
        &pki.chain,
        &TrustAnchors::default(),
        &RevocationList::empty(),
        NOW,
    );
    assert_eq!(result, Err(ChainError::UnknownRoot { index: 2 }));
}

#[test]
fn expired_leaf_is_refused() {
    let pki = TestPki::build(&Options {
        leaf_not_after: Some((2029, 1, 1)),
        ..DEFAULT
    });
    assert!(matches!(
        pki.verify(&pki.chain, &RevocationList::empty()),
        Err(ChainError::Expired {
            index: 0,
            not_after: 1_861_920_000
        })
    ));
}

#[test]
fn flipped_signature_bit_is_refused() {
    let pki = TestPki::build(&DEFAULT);
    for index in 0..2 {
        let mut chain = pki.chain.clone();
        let last = chain[index].last_mut().expect("non-empty");
        *last ^= 0x01;
        assert!(
            matches!(
                pki.verify(&chain, &RevocationList::empty()),
                Err(ChainError::BadSignature { index: i, .. }) if i == index
            ),
            "certificate {index}"
        );
    }
}

#[test]
fn revoked_intermediate_is_refused() {
    let pki = TestPki::build(&DEFAULT);
    let result = pki.verify(&pki.chain, &revocations("8f0102", "REVOKED"));
    assert_eq!(
        result,
        Err(ChainError::Revoked {
            index: 1,
            serial: "8f0102".to_owned(),
            status: Status::Revoked
        })
    );
}

#[test]
fn suspended_intermediate_is_refused() {
    let pki = TestPki::build(&DEFAULT);
    // Upper case and a leading zero in the list still name the same serial.
    let result = pki.verify(&pki.chain, &revocations("008F0102", "SUSPENDED"));
    assert!(matches!(
        result,
        Err(ChainError::Revoked {
            index: 1,
            status: Status::Suspended,
            ..
        })
    ));
}

#[test]
fn unrelated_revocation_does_not_refuse() {
    let pki = TestPki::build(&DEFAULT);
    assert!(
        pki.verify(&pki.chain, &revocations("8f0103", "REVOKED"))
            .is_ok()
    );
}

#[test]
fn extension_on_the_intermediate_is_refused() {
    let pki = TestPki::build(&Options {
        extension_on_intermediate: true,
        ..DEFAULT
    });
    assert_eq!(
        pki.verify(&pki.chain, &RevocationList::empty()),
        Err(ChainError::ExtensionOutsideLeaf { index: 1 })
    );
}

#[test]
fn chain_extended_past_the_attested_key_is_refused() {
    let pki = TestPki::build(&DEFAULT);
    // The new leaf has no extension: the leaf must carry it (and the attested certificate,
    // now at index 1, carries one where it must not).
    assert_eq!(
        pki.verify(&pki.extended(false), &RevocationList::empty()),
        Err(ChainError::MissingKeyDescription { index: 0 })
    );
    // The new leaf copies the extension: the attested certificate's is outside the leaf.
    assert_eq!(
        pki.verify(&pki.extended(true), &RevocationList::empty()),
        Err(ChainError::ExtensionOutsideLeaf { index: 1 })
    );
}

#[test]
fn short_and_long_chains_are_refused() {
    let pki = TestPki::build(&DEFAULT);
    assert_eq!(
        pki.verify(&pki.chain[..1], &RevocationList::empty()),
        Err(ChainError::TooShort { len: 1 })
    );
    assert_eq!(
        pki.verify(&[], &RevocationList::empty()),
        Err(ChainError::TooShort { len: 0 })
    );
    let long: Vec<Vec<u8>> = std::iter::repeat_n(pki.chain[0].clone(), 11).collect();
    assert_eq!(
        pki.verify(&long, &RevocationList::empty()),
        Err(ChainError::TooLong { len: 11, max: 10 })
    );
}

#[test]
fn wrong_order_and_garbage_are_refused() {
    let pki = TestPki::build(&DEFAULT);
    let swapped = vec![
        pki.chain[0].clone(),
        pki.chain[2].clone(),
        pki.chain[1].clone(),
    ];
    assert_eq!(
        pki.verify(&swapped, &RevocationList::empty()),
        Err(ChainError::IssuerMismatch { index: 0 })
    );
    let mut trailing = pki.chain.clone();
    trailing[1].push(0);
    assert!(matches!(
        pki.verify(&trailing, &RevocationList::empty()),
        Err(ChainError::Certificate { index: 1, .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        chain in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..12),
        now in any::<i64>(),
    ) {
        let _ = verify_chain(&chain, &TrustAnchors::google(), &RevocationList::empty(), now);
    }

    #[test]
    fn mutated_fixture_chain_never_panics(
        cert in 0usize..4,
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut chain = read_pem_chain(data_dir().join("tegu/sdk36/SB_EC_2026_ROOT.pem"))
            .expect("PEM chain");
        let target = cert % chain.len();
        let at = position.index(chain[target].len());
        chain[target][at] = byte;
        let now = 1_767_225_600; // 2026-01-01
        let _ = verify_chain(&chain, &TrustAnchors::google(), &RevocationList::empty(), now);
    }
}

#[test]
fn remembered_links_never_let_a_bad_chain_through() {
    use android_attestation::{LinkCache, verify_chain_with};
    let pki = TestPki::build(&DEFAULT);
    let anchors = pki.anchors();
    let none = RevocationList::empty();
    let cache = LinkCache::new(16);
    let cold = verify_chain_with(&pki.chain, &anchors, &none, NOW, Some(&cache)).expect("verifies");
    // Only the intermediate's link is remembered, not the leaf's (one per device).
    assert_eq!(cache.len(), 1);
    let warm = verify_chain_with(&pki.chain, &anchors, &none, NOW, Some(&cache)).expect("verifies");
    assert_eq!(cold, warm);
    assert_eq!(
        warm,
        verify_chain(&pki.chain, &anchors, &none, NOW).expect("verifies")
    );
    // With the cache warm: a tampered leaf or intermediate, a revoked intermediate, a time
    // outside the validity and another anchor set are all still refused.
    for index in 0..2 {
        let mut chain = pki.chain.clone();
        let last = chain[index].last_mut().expect("non-empty");
        *last ^= 0x01;
        assert!(
            matches!(
                verify_chain_with(&chain, &anchors, &none, NOW, Some(&cache)),
                Err(ChainError::BadSignature { index: i, .. }) if i == index
            ),
            "certificate {index}"
        );
    }
    assert!(matches!(
        verify_chain_with(
            &pki.chain,
            &anchors,
            &revocations("8f0102", "REVOKED"),
            NOW,
            Some(&cache)
        ),
        Err(ChainError::Revoked { index: 1, .. })
    ));
    assert!(matches!(
        verify_chain_with(&pki.chain, &anchors, &none, 2_082_758_400, Some(&cache)),
        Err(ChainError::Expired { .. })
    ));
    assert_eq!(
        verify_chain_with(
            &pki.chain,
            &TrustAnchors::google(),
            &none,
            NOW,
            Some(&cache)
        ),
        Err(ChainError::UnknownRoot { index: 2 })
    );
    // Another PKI's intermediate is verified on its own, and the cache stays bounded.
    let small = LinkCache::new(1);
    let other = TestPki::build(&DEFAULT);
    for pki in [&pki, &other] {
        verify_chain_with(&pki.chain, &pki.anchors(), &none, NOW, Some(&small)).expect("verifies");
        assert_eq!(small.len(), 1);
    }
    assert!(matches!(
        verify_chain_with(&other.chain, &anchors, &none, NOW, Some(&cache)),
        Err(ChainError::UnknownRoot { .. })
    ));
}

#[test]
fn every_fixture_chain_verifies_the_same_with_remembered_links() {
    use android_attestation::{LinkCache, verify_chain_with};
    let cache = LinkCache::new(1_024);
    for pass in 0..2 {
        for path in fixture_chains() {
            let chain = read_pem_chain(&path).expect("chain");
            let now = time_inside(&chain, &name(&path));
            let plain = verify_chain(
                &chain,
                &TrustAnchors::google(),
                &RevocationList::empty(),
                now,
            );
            let cached = verify_chain_with(
                &chain,
                &TrustAnchors::google(),
                &RevocationList::empty(),
                now,
                Some(&cache),
            );
            assert_eq!(plain, cached, "{} (pass {pass})", name(&path));
        }
    }
    assert!(!cache.is_empty());
}
