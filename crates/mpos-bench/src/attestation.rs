//! SoftPOS attestation: a real device's key attestation chain examined and judged by a tenant
//! policy, verifications per second.
//!
//! Set-up (not timed): four real device chains from android-attestation's test data (copied
//! from android/keyattestation, compiled in): two under Google's EC P-384 root of 2026
//! (`tegu/sdk36`, TEE and StrongBox) and two under Google's RSA-4096 root (`caiman/sdk36`, TEE
//! and StrongBox, remotely provisioned). For each chain: the challenge of its own
//! `KeyDescription` (so the challenge check passes), a time in the middle of the overlap of
//! its certificates' validities, and the app signals a healthy phone's SDK would send. The
//! trust is Google's two roots (`TrustAnchors::google`) and a status list in Google's JSON
//! format with `status_entries` random serials (parsed with `RevocationList::from_json`), so
//! that every serial lookup is a real one in a full table. One strict policy for all chains
//! (Android 16, patch level 2026-01, the chains' package and signing digest only, TEE or
//! better, verified boot and locked bootloader, SDK and app minimums), validated by
//! `rules::validate`: the 2026 chains pass it, the 2025 ones are flagged for their patch level.
//!
//! Timed, per chain type (EC root, RSA root) and run: `threads` OS threads (default: the
//! machine's cores) share `verifications` calls of `evidence::examine` (chain verification
//! up to the anchors, validity, status list, `KeyDescription`, challenge, summary) followed by
//! `rules::judge` (findings and verdict), the type's chains round robin; every result is
//! checked against the verdict of the set-up (a different one fails the run). Floors, in the
//! same run on the same threads with the same number of calls: (a) `android_attestation::
//! verify_chain` alone, (b) the bare `ring` verifications of the chain's links (each
//! certificate's signature with its issuer's key, decoded before timing): what any
//! verification of that chain pays in cryptography. The figure and its floors take turns in
//! five slices per run, so that other load on the machine falls on all three alike. Per link kind (ECDSA P-256, P-384,
//! RSA-4096), the bare rate is also measured, to show which signature bounds the chain.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use android_attestation::{
    LinkCache, RevocationList, TrustAnchors, pem_chain_to_der, verify_chain,
};
use anyhow::{Context as _, bail, ensure};
use attestation::evidence::{self, Evidence, Trust};
use attestation::rules::{self, Situation};
use mpos_proto::attestation as pb;
use rand::Rng as _;
use ring::signature::{self, VerificationAlgorithm};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::report::{Report, Row, thousands};
use crate::stats::median;
use crate::token::figure;

/// Goal: verifications (chain + policy) per second on 2 cores.
pub const ATTESTATION_GOAL: f64 = 2_000.0;

/// Where the chains come from (android-attestation's copy of android/keyattestation's test
/// data).
const DATA: &str = "crates/android-attestation/tests/data/testdata";

/// A real device chain (PEM, leaf first) and its name in the test data.
struct Fixture {
    name: &'static str,
    pem: &'static [u8],
}

/// The chains under Google's EC P-384 root (`Key Attestation CA1`, since February 2026).
const EC_ROOT_CHAINS: [Fixture; 2] = [
    Fixture {
        name: "tegu/sdk36/TEE_EC_2026_ROOT",
        pem: include_bytes!(
            "../../android-attestation/tests/data/testdata/tegu/sdk36/TEE_EC_2026_ROOT.pem"
        ),
    },
    Fixture {
        name: "tegu/sdk36/SB_EC_2026_ROOT",
        pem: include_bytes!(
            "../../android-attestation/tests/data/testdata/tegu/sdk36/SB_EC_2026_ROOT.pem"
        ),
    },
];

/// The chains under Google's RSA-4096 root.
const RSA_ROOT_CHAINS: [Fixture; 2] = [
    Fixture {
        name: "caiman/sdk36/TEE_EC_RKP",
        pem: include_bytes!(
            "../../android-attestation/tests/data/testdata/caiman/sdk36/TEE_EC_RKP.pem"
        ),
    },
    Fixture {
        name: "caiman/sdk36/SB_EC_RKP",
        pem: include_bytes!(
            "../../android-attestation/tests/data/testdata/caiman/sdk36/SB_EC_RKP.pem"
        ),
    },
];

/// Sizes.
#[derive(Clone, Debug)]
pub struct AttestationBenchConfig {
    /// Verifications per run and chain type (and calls per floor).
    pub verifications: usize,
    /// Verifying threads.
    pub threads: usize,
    /// Runs.
    pub repetitions: usize,
    /// Random serials in the status list.
    pub status_entries: usize,
}

impl AttestationBenchConfig {
    /// The full run: every core, 5 runs of 5,000 verifications per chain type.
    pub fn full() -> Self {
        Self {
            verifications: 5_000,
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            repetitions: 5,
            status_entries: 5_000,
        }
    }

    /// A smoke run.
    pub fn quick() -> Self {
        Self {
            verifications: 40,
            threads: 2,
            repetitions: 1,
            status_entries: 5_000,
        }
    }
}

/// Which Google root a chain ends at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// The EC P-384 root of 2026.
    Ec,
    /// The RSA-4096 root.
    Rsa,
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ec => "EC P-384 root",
            Self::Rsa => "RSA-4096 root",
        })
    }
}

/// What one chain gave at set-up: the evaluation the timed calls must reproduce.
#[derive(Clone, Debug)]
pub struct ChainOutcome {
    /// The chain's name in the test data.
    pub name: String,
    /// The root it ends at.
    pub root: Root,
    /// The signature of each link verified, leaf first (e.g. "ECDSA P-256 SHA-256").
    pub links: Vec<String>,
    /// The time the chain is verified at, Unix seconds.
    pub now_s: i64,
    /// The summary's security level, OS version and patch level, as the policy saw them.
    pub shown: String,
    /// The verdict.
    pub verdict: pb::Verdict,
    /// The findings' codes.
    pub findings: Vec<String>,
}

/// One run's rates for one chain type.
#[derive(Clone, Copy, Debug)]
pub struct AttestationRun {
    /// The chain type.
    pub root: Root,
    /// `examine` + `judge` per second, all threads, as the service runs them: the link
    /// signatures above the leaf remembered (`LinkCache`).
    pub rate: f64,
    /// `examine` + `judge` per second with every link verified (no `LinkCache`).
    pub cold_rate: f64,
    /// The bare signature verification of the leaf's link alone (what the service still
    /// verifies per device), per second, same threads.
    pub leaf_floor: f64,
    /// `verify_chain` alone per second, same threads.
    pub chain_floor: f64,
    /// The bare signature verifications of a chain's links, chains per second, same threads.
    pub signature_floor: f64,
}

/// The bare rate of one kind of link signature, one run.
#[derive(Clone, Debug)]
pub struct LinkRate {
    /// E.g. "ECDSA P-384 SHA-384".
    pub kind: String,
    /// Verifications per second, all threads.
    pub rate: f64,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct AttestationResult {
    /// What each chain was judged, at set-up.
    pub outcomes: Vec<ChainOutcome>,
    /// The policy, as text.
    pub policy: String,
    /// Entries in the status list.
    pub status_entries: usize,
    /// Per run and chain type.
    pub runs: Vec<AttestationRun>,
    /// Per run and link kind.
    pub links: Vec<LinkRate>,
}

/// One link of a chain, decoded for `ring`: the certificate's signed bytes and signature and
/// its issuer's key.
struct Link {
    kind: String,
    algorithm: &'static dyn VerificationAlgorithm,
    key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Link {
    fn verify(&self) -> bool {
        signature::UnparsedPublicKey::new(self.algorithm, &self.key)
            .verify(&self.message, &self.signature)
            .is_ok()
    }
}

/// A chain ready to be verified.
struct Prepared {
    root: Root,
    evidence: Evidence,
    challenge: Vec<u8>,
    now_s: i64,
    links: Vec<Link>,
    verdict: pb::Verdict,
}

/// The `ring` algorithm x509-parser (and so `verify_chain`) uses for a signature algorithm
/// and an issuer key, and a name for it.
fn algorithm(
    signature_oid: &str,
    key: &SubjectPublicKeyInfo<'_>,
) -> anyhow::Result<(&'static dyn VerificationAlgorithm, String)> {
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    let curve = key
        .algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let rsa_bits = || key.parsed().map(|parsed| parsed.key_size()).unwrap_or(0);
    Ok(match (signature_oid, curve.as_deref()) {
        ("1.2.840.10045.4.3.2", Some(P256)) => (
            &signature::ECDSA_P256_SHA256_ASN1,
            "ECDSA P-256 SHA-256".into(),
        ),
        ("1.2.840.10045.4.3.3", Some(P256)) => (
            &signature::ECDSA_P256_SHA384_ASN1,
            "ECDSA P-256 SHA-384".into(),
        ),
        ("1.2.840.10045.4.3.2", Some(P384)) => (
            &signature::ECDSA_P384_SHA256_ASN1,
            "ECDSA P-384 SHA-256".into(),
        ),
        ("1.2.840.10045.4.3.3", Some(P384)) => (
            &signature::ECDSA_P384_SHA384_ASN1,
            "ECDSA P-384 SHA-384".into(),
        ),
        ("1.2.840.113549.1.1.11", _) => (
            &signature::RSA_PKCS1_2048_8192_SHA256,
            format!("RSA-{} PKCS#1 SHA-256", rsa_bits()),
        ),
        ("1.2.840.113549.1.1.12", _) => (
            &signature::RSA_PKCS1_2048_8192_SHA384,
            format!("RSA-{} PKCS#1 SHA-384", rsa_bits()),
        ),
        ("1.2.840.113549.1.1.13", _) => (
            &signature::RSA_PKCS1_2048_8192_SHA512,
            format!("RSA-{} PKCS#1 SHA-512", rsa_bits()),
        ),
        (other, curve) => bail!("signature algorithm {other} with key curve {curve:?}"),
    })
}

/// The links `verify_chain` checks (each certificate but the last, signed by the next one);
/// the chain must end at an anchor's own certificate, as real chains do.
fn links(chain: &[Vec<u8>]) -> anyhow::Result<Vec<Link>> {
    let mut certificates = Vec::with_capacity(chain.len());
    for der in chain {
        let (_, certificate) = X509Certificate::from_der(der).context("certificate")?;
        certificates.push(certificate);
    }
    let mut links = Vec::new();
    for pair in certificates.windows(2) {
        let [certificate, issuer] = pair else {
            continue;
        };
        let (algorithm, kind) = algorithm(
            &certificate.signature_algorithm.algorithm.to_id_string(),
            issuer.public_key(),
        )?;
        links.push(Link {
            kind,
            algorithm,
            key: issuer.public_key().subject_public_key.data.to_vec(),
            message: certificate.tbs_certificate.as_ref().to_vec(),
            signature: certificate.signature_value.data.to_vec(),
        });
    }
    Ok(links)
}

/// A time in the middle of the overlap of every certificate's validity, Unix seconds.
fn time_inside(name: &str, chain: &[Vec<u8>]) -> anyhow::Result<i64> {
    let mut latest_start = i64::MIN;
    let mut earliest_end = i64::MAX;
    for der in chain {
        let (_, certificate) = X509Certificate::from_der(der).context("certificate")?;
        latest_start = latest_start.max(certificate.validity().not_before.timestamp());
        earliest_end = earliest_end.min(certificate.validity().not_after.timestamp());
    }
    ensure!(
        latest_start <= earliest_end,
        "{name}: the certificates' validities do not overlap"
    );
    Ok(latest_start + (earliest_end - latest_start) / 2)
}

/// A status list in Google's format (`{"entries": {"<serial>": {...}}}`) with `entries`
/// random serials of 8 to 20 bytes, none of them a serial of `chains`.
fn status_list(entries: usize, chains: &[Vec<Vec<u8>>]) -> anyhow::Result<RevocationList> {
    let mut ours = std::collections::HashSet::new();
    for der in chains.iter().flatten() {
        let (_, certificate) = X509Certificate::from_der(der).context("certificate")?;
        ours.insert(android_attestation::serial_hex(certificate.raw_serial()));
    }
    let mut random = rand::thread_rng();
    let mut map = serde_json::Map::with_capacity(entries);
    let reasons = [
        "KEY_COMPROMISE",
        "SOFTWARE_FLAW",
        "SUPERSEDED",
        "CA_COMPROMISE",
    ];
    while map.len() < entries {
        let length = random.gen_range(8..=20);
        let bytes: Vec<u8> = (0..length).map(|_| random.r#gen::<u8>()).collect();
        let serial = android_attestation::serial_hex(&bytes);
        if ours.contains(&serial) {
            continue;
        }
        let index = map.len();
        let entry = if index.is_multiple_of(10) {
            serde_json::json!({"status": "SUSPENDED", "reason": "SOFTWARE_FLAW"})
        } else {
            serde_json::json!({
                "status": "REVOKED",
                "reason": reasons[index % reasons.len()],
                "expires": "2036-01-01",
            })
        };
        map.insert(serial, entry);
    }
    let json = serde_json::to_vec(&serde_json::json!({ "entries": map }))?;
    let list = RevocationList::from_json(&json).context("status list")?;
    ensure!(list.len() == entries, "the status list lost entries");
    Ok(list)
}

/// The app signals of a healthy phone running the payment app `package` on `os_version`.
fn signals(package: &str, os_version: u32) -> pb::AppSignals {
    pb::AppSignals {
        os_version,
        sdk_version: "1.6.0".into(),
        app_version: "3.2.1".into(),
        app_version_code: 321,
        security_patch_level: "2026-02-05".into(),
        package_name: package.into(),
        ..pb::AppSignals::default()
    }
}

/// The tenant's strict policy, allowing the packages and signing digests the chains attest.
fn strict_policy(packages: Vec<String>, digests: Vec<String>) -> pb::Policy {
    pb::Policy {
        min_os_version: 160_000,
        min_patch_level: 202_601,
        min_sdk_version: "1.4.0".into(),
        min_app_version_code: 300,
        allowed_packages: packages,
        allowed_signing_digests: digests,
        required_security_level: pb::RequiredSecurityLevel::Tee.into(),
        require_verified_boot: true,
        ..pb::Policy::default()
    }
}

/// The situation of a device attesting at `now_s`.
fn situation(now_s: i64) -> Situation {
    Situation {
        now_s,
        last_play_integrity_s: now_s - 3_600,
        reattestation_missed: false,
    }
}

/// Reads the chains, builds the status list and the policy, and judges each chain once.
fn prepare(
    config: &AttestationBenchConfig,
    anchors: &TrustAnchors,
) -> anyhow::Result<(Vec<Prepared>, RevocationList, pb::Policy, Vec<ChainOutcome>)> {
    let fixtures: Vec<(Root, &Fixture)> = EC_ROOT_CHAINS
        .iter()
        .map(|fixture| (Root::Ec, fixture))
        .chain(RSA_ROOT_CHAINS.iter().map(|fixture| (Root::Rsa, fixture)))
        .collect();
    let mut chains = Vec::with_capacity(fixtures.len());
    for (_, fixture) in &fixtures {
        chains.push(
            pem_chain_to_der(fixture.pem)
                .with_context(|| format!("{DATA}/{}.pem", fixture.name))?,
        );
    }
    let revocations = status_list(config.status_entries, &chains)?;
    let empty = RevocationList::empty();

    // The challenge each key was generated for, and what the chains attest.
    let mut prepared = Vec::with_capacity(chains.len());
    let mut packages: Vec<String> = Vec::new();
    let mut digests: Vec<String> = Vec::new();
    for ((root, fixture), chain) in fixtures.iter().zip(chains) {
        let now_s = time_inside(fixture.name, &chain)?;
        let verified = verify_chain(&chain, anchors, &empty, now_s)
            .with_context(|| format!("{}: verify_chain", fixture.name))?;
        ensure!(
            verified.root_in_chain,
            "{}: the chain does not carry its root",
            fixture.name
        );
        let challenge = verified.key_description.attestation_challenge.clone();
        let now_ms = u64::try_from(now_s)?.saturating_mul(1_000);
        let lax = pb::Policy::default();
        let trust = Trust {
            anchors,
            revocations: &empty,
            stale: false,
            links: None,
        };
        let mut evidence = Evidence {
            chain,
            ..Evidence::default()
        };
        let seen = evidence::examine(&evidence, &challenge, trust, &lax, now_ms);
        let package = seen.packages.first().cloned().unwrap_or_default();
        evidence.signals = signals(&package, seen.os_version);
        for package in seen.packages {
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
        for digest in seen.signing_digests {
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        let links = links(&evidence.chain).with_context(|| fixture.name.to_owned())?;
        prepared.push(Prepared {
            root: *root,
            evidence,
            challenge,
            now_s,
            links,
            verdict: pb::Verdict::Unspecified,
        });
    }
    let policy = strict_policy(packages, digests);
    rules::validate(&policy).context("the benchmark's policy")?;

    // The evaluation every timed call must reproduce.
    let trust = Trust {
        anchors,
        revocations: &revocations,
        stale: false,
        links: None,
    };
    let mut outcomes = Vec::with_capacity(prepared.len());
    for (chain, (_, fixture)) in prepared.iter_mut().zip(&fixtures) {
        let now_ms = u64::try_from(chain.now_s)?.saturating_mul(1_000);
        let summary = evidence::examine(&chain.evidence, &chain.challenge, trust, &policy, now_ms);
        ensure!(
            summary.evidence_findings.is_empty(),
            "{}: the evidence itself was refused: {:?}",
            fixture.name,
            summary.evidence_findings
        );
        let (findings, verdict) = rules::judge(&summary, &policy, situation(chain.now_s));
        ensure!(
            matches!(verdict, pb::Verdict::Allow | pb::Verdict::Flag),
            "{}: the policy gave {verdict:?}: {findings:?}",
            fixture.name
        );
        chain.verdict = verdict;
        outcomes.push(ChainOutcome {
            name: fixture.name.to_owned(),
            root: chain.root,
            links: chain.links.iter().map(|link| link.kind.clone()).collect(),
            now_s: chain.now_s,
            shown: format!(
                "{} / {}, boot {}{}, OS {}, patch {}, package {}",
                summary.attestation_security_level,
                summary.keymint_security_level,
                summary.verified_boot_state,
                if summary.device_locked {
                    " (locked)"
                } else {
                    " (unlocked)"
                },
                summary.os_version,
                summary.os_patch_level,
                summary.packages.join(", ")
            ),
            verdict,
            findings: findings
                .iter()
                .map(|finding| finding.code.clone())
                .collect(),
        });
    }
    Ok((prepared, revocations, policy, outcomes))
}

/// Runs the benchmark.
pub fn run(config: &AttestationBenchConfig) -> anyhow::Result<AttestationResult> {
    ensure!(
        config.threads > 0 && config.verifications > 0,
        "threads and verifications must be positive"
    );
    let anchors = TrustAnchors::google();
    ensure!(anchors.len() == 2, "Google's two roots did not load");
    let (prepared, revocations, policy, outcomes) = prepare(config, &anchors)?;
    for outcome in &outcomes {
        eprintln!(
            "mpos-bench: attestation: {} ({}, {} signatures): {}; verdict {:?} {:?}",
            outcome.name,
            outcome.root,
            outcome.links.len(),
            outcome.shown,
            outcome.verdict,
            outcome.findings
        );
    }
    let trust = Trust {
        anchors: &anchors,
        revocations: &revocations,
        stale: false,
        links: None,
    };
    // One link of each kind, for the per-kind rates.
    let mut kinds: Vec<&Link> = Vec::new();
    for link in prepared.iter().flat_map(|chain| &chain.links) {
        if !kinds.iter().any(|known| known.kind == link.kind) {
            kinds.push(link);
        }
    }

    let mut runs = Vec::with_capacity(config.repetitions * 2);
    let mut link_rates = Vec::new();
    for repetition in 0..config.repetitions {
        eprintln!(
            "mpos-bench: attestation: run {}/{} ({} threads, {} verifications per part) …",
            repetition + 1,
            config.repetitions,
            config.threads,
            thousands(config.verifications as f64)
        );
        for root in [Root::Ec, Root::Rsa] {
            let chains: Vec<&Prepared> = prepared.iter().filter(|c| c.root == root).collect();
            let pick = |index: usize| chains.get(index % chains.len().max(1)).copied();
            let links = LinkCache::new(16_384);
            let judged = |index: usize, trust: Trust<'_>| {
                pick(index).is_some_and(|chain| {
                    let now_ms = u64::try_from(chain.now_s)
                        .unwrap_or(0)
                        .saturating_mul(1_000);
                    let summary = evidence::examine(
                        &chain.evidence,
                        &chain.challenge,
                        trust,
                        &policy,
                        now_ms,
                    );
                    let (_, verdict) = rules::judge(&summary, &policy, situation(chain.now_s));
                    summary.evidence_findings.is_empty() && verdict == chain.verdict
                })
            };
            let measured = |index: usize| {
                judged(
                    index,
                    Trust {
                        links: Some(&links),
                        ..trust
                    },
                )
            };
            let cold = |index: usize| judged(index, trust);
            let leaf_floor = |index: usize| {
                pick(index).is_some_and(|chain| chain.links.first().is_some_and(Link::verify))
            };
            let chain_floor = |index: usize| {
                pick(index).is_some_and(|chain| {
                    verify_chain(&chain.evidence.chain, &anchors, &revocations, chain.now_s).is_ok()
                })
            };
            let signature_floor = |index: usize| {
                pick(index).is_some_and(|chain| chain.links.iter().all(Link::verify))
            };
            let rates = interleaved(
                config.threads,
                config.verifications,
                &[
                    &measured,
                    &cold,
                    &leaf_floor,
                    &chain_floor,
                    &signature_floor,
                ],
            )?;
            let [rate, cold_rate, leaf_floor, chain_floor, signature_floor] = rates[..] else {
                bail!("five rates expected");
            };
            runs.push(AttestationRun {
                root,
                rate,
                cold_rate,
                leaf_floor,
                chain_floor,
                signature_floor,
            });
        }
        let checks: Vec<Box<dyn Fn(usize) -> bool + Sync>> = kinds
            .iter()
            .map(|link| Box::new(move |_| link.verify()) as Box<dyn Fn(usize) -> bool + Sync>)
            .collect();
        let parts: Vec<&(dyn Fn(usize) -> bool + Sync)> =
            checks.iter().map(|check| check.as_ref()).collect();
        let rates = interleaved(config.threads, config.verifications, &parts)?;
        for (link, rate) in kinds.iter().zip(rates) {
            link_rates.push(LinkRate {
                kind: link.kind.clone(),
                rate,
            });
        }
    }
    Ok(AttestationResult {
        outcomes,
        policy: format!(
            "min OS {}, min patch level {}, SDK ≥ {}, app version code ≥ {}, packages {:?}, {} signing digest(s), security level TEE or better, verified boot and locked bootloader",
            policy.min_os_version,
            policy.min_patch_level,
            policy.min_sdk_version,
            policy.min_app_version_code,
            policy.allowed_packages,
            policy.allowed_signing_digests.len()
        ),
        status_entries: revocations.len(),
        runs,
        links: link_rates,
    })
}

/// Slices per run: the parts of a run take turns in this many slices, so that load from
/// other processes on the machine falls on the figure and its floors alike.
const SLICES: usize = 5;

/// Runs each of `parts` for `total` calls, the parts taking turns in [`SLICES`] slices. Calls
/// per second of each part, all threads together.
fn interleaved(
    threads: usize,
    total: usize,
    parts: &[&(dyn Fn(usize) -> bool + Sync)],
) -> anyhow::Result<Vec<f64>> {
    let mut elapsed = vec![Duration::ZERO; parts.len()];
    let per_slice = total.div_ceil(SLICES);
    let mut done = 0;
    while done < total {
        let calls = per_slice.min(total - done);
        for (part, time) in parts.iter().zip(elapsed.iter_mut()) {
            *time += on_threads(threads, done, calls, part)?;
        }
        done += calls;
    }
    Ok(elapsed
        .into_iter()
        .map(|time| crate::stats::rate(total, time))
        .collect())
}

/// Calls `check(i)` for `i` in `first..first + calls` on `threads` threads (each takes the
/// next 16 indexes until none are left); every call must return true. The time it took.
fn on_threads(
    threads: usize,
    first: usize,
    calls: usize,
    check: &(dyn Fn(usize) -> bool + Sync),
) -> anyhow::Result<Duration> {
    const CHUNK: usize = 16;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    loop {
                        let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                        if start >= calls {
                            return Ok(());
                        }
                        for index in first + start..first + calls.min(start + CHUNK) {
                            ensure!(check(index), "a verification failed (call {index})");
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    for result in results {
        result?;
    }
    Ok(elapsed)
}

/// Adds a row per chain type and the notes (verdicts, policy, per-signature rates).
pub fn add_to(report: &mut Report, config: &AttestationBenchConfig, result: &AttestationResult) {
    for root in [Root::Ec, Root::Rsa] {
        let runs: Vec<&AttestationRun> = result.runs.iter().filter(|r| r.root == root).collect();
        let outcomes: Vec<&ChainOutcome> =
            result.outcomes.iter().filter(|o| o.root == root).collect();
        let rates: Vec<f64> = runs.iter().map(|run| run.rate).collect();
        let (rate, figure) = figure(&rates);
        let of = |pick: fn(&AttestationRun) -> f64| {
            median(&runs.iter().map(|run| pick(run)).collect::<Vec<_>>())
        };
        let (cold, leaf_floor) = (of(|run| run.cold_rate), of(|run| run.leaf_floor));
        let (chain_floor, signature_floor) =
            (of(|run| run.chain_floor), of(|run| run.signature_floor));
        let links = outcomes
            .first()
            .map(|outcome| outcome.links.join(", "))
            .unwrap_or_default();
        report.rows.push(Row {
            benchmark: "attestation".into(),
            case: format!(
                "{root}: evidence::examine + rules::judge as the service runs them (link signatures above the leaf remembered), {} chains round robin ({}), links: {links}; {}-entry status list, strict policy; {} threads, {} verifications × {} runs",
                outcomes.len(),
                outcomes
                    .iter()
                    .map(|outcome| outcome.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                thousands(result.status_entries as f64),
                config.threads,
                thousands(config.verifications as f64),
                runs.len()
            ),
            figure,
            floor: format!(
                "(c) bare ring verification of the leaf's link, the one signature left per device: {}/s; cold, every link verified: examine + judge {}/s, (a) verify_chain alone {}/s, (b) bare ring verification of the chain's {} link signatures {} chains/s",
                thousands(leaf_floor),
                thousands(cold),
                thousands(chain_floor),
                outcomes.first().map_or(0, |outcome| outcome.links.len()),
                thousands(signature_floor)
            ),
            ratio: format!(
                "{:.2} of (c); cold: {:.2} of (a), {:.2} of (b)",
                rate / leaf_floor,
                cold / chain_floor,
                cold / signature_floor
            ),
            goal: format!("≥ {}/s", thousands(ATTESTATION_GOAL)),
            verdict: if rate >= ATTESTATION_GOAL {
                "met".into()
            } else {
                "MISSED".into()
            },
        });
    }
    for outcome in &result.outcomes {
        report.notes.push(format!(
            "attestation: {} ({}), verified at {}: {}; verdict {:?}{}",
            outcome.name,
            outcome.root,
            chrono::DateTime::from_timestamp(outcome.now_s, 0)
                .map_or_else(|| outcome.now_s.to_string(), |time| time.to_rfc3339()),
            outcome.shown,
            outcome.verdict,
            if outcome.findings.is_empty() {
                String::new()
            } else {
                format!(" ({})", outcome.findings.join(", "))
            }
        ));
    }
    report.notes.push(format!(
        "attestation: policy: {}; trust: Google's RSA-4096 and EC P-384 roots, status list of {} random serials",
        result.policy,
        thousands(result.status_entries as f64)
    ));
    let mut kinds: Vec<&str> = Vec::new();
    for link in &result.links {
        if !kinds.contains(&link.kind.as_str()) {
            kinds.push(&link.kind);
        }
    }
    let per_kind: Vec<String> = kinds
        .iter()
        .map(|kind| {
            let rates: Vec<f64> = result
                .links
                .iter()
                .filter(|link| link.kind == *kind)
                .map(|link| link.rate)
                .collect();
            format!("{kind} {}/s", thousands(median(&rates)))
        })
        .collect();
    report.notes.push(format!(
        "attestation: bare ring signature verifications per second by kind, {} threads (median): {}",
        config.threads,
        per_kind.join(", ")
    ));
}
