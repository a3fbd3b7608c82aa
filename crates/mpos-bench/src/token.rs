//! The SoftPOS attestation token on the payment path: ES256 tokens verified per second.
//!
//! Set-up (not timed): a P-256 key pair made with `ring`, an `attestation_token::TokenIssuer`
//! and `TokenVerifier` for it, and `tokens` tokens issued for distinct devices of one tenant.
//!
//! Timed: `threads` OS threads (default: the machine's cores) each verify the tokens round
//! robin for `seconds` with `TokenVerifier::verify` (size and structure, header checks, key
//! lookup, ECDSA P-256 signature, claims JSON, validity, tenant, device, verdict); every
//! result is checked. Floor, in the same run on the same threads: the bare `ring` ECDSA P-256
//! SHA-256 verification of the same signing inputs and signatures (decoded before timing),
//! which any ES256 verification pays.
//!
//! Warm case, same run: the same calls through an `attestation_token::CachingVerifier` that
//! has seen every token once (a device presents the same token with every payment of its
//! validity window): the signature is verified once per token, the claims at every call.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use attestation_token::{
    CachingVerifier, Claims, Expected, PublicKey, TokenIssuer, TokenVerifier, Verdict,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};

use crate::report::{Report, Row, thousands};
use crate::stats::{median, min_max};

/// Goal: verifications per second on 2 cores.
pub const TOKEN_GOAL: f64 = 50_000.0;

const TENANT: &str = "bench";
const NOW: u64 = 1_780_000_000;

/// Sizes.
#[derive(Clone, Debug)]
pub struct TokenBenchConfig {
    /// Distinct tokens verified round robin.
    pub tokens: usize,
    /// Verifying threads.
    pub threads: usize,
    /// Measured time per run.
    pub seconds: f64,
    /// Runs.
    pub repetitions: usize,
}

impl TokenBenchConfig {
    /// The full run: every core, 3 × 3 s.
    pub fn full() -> Self {
        Self {
            tokens: 1_000,
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            seconds: 3.0,
            repetitions: 3,
        }
    }

    /// A smoke run.
    pub fn quick() -> Self {
        Self {
            tokens: 100,
            threads: 2,
            seconds: 0.5,
            repetitions: 1,
        }
    }
}

/// One run's rates.
#[derive(Clone, Copy, Debug)]
pub struct TokenRun {
    /// `TokenVerifier::verify` per second, all threads.
    pub rate: f64,
    /// Bare ECDSA P-256 verifications per second, same threads.
    pub floor: f64,
    /// `CachingVerifier::verify` per second once every token was seen, same threads.
    pub warm: f64,
}

/// Runs the benchmark.
pub fn run(config: &TokenBenchConfig) -> anyhow::Result<Vec<TokenRun>> {
    let random = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &random)
        .map_err(|_| anyhow::anyhow!("cannot make a P-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &random,
    )
    .map_err(|_| anyhow::anyhow!("cannot read the P-256 key"))?;
    let point = pair.public_key().as_ref().to_vec();
    let issuer = TokenIssuer::new("bench-1", pkcs8.as_ref()).context("issuer")?;
    let verifier =
        TokenVerifier::new().with_key("bench-1", PublicKey::from_sec1(&point).context("key")?);
    let mut tokens = Vec::with_capacity(config.tokens);
    for index in 0..config.tokens {
        let token = issuer
            .issue(&Claims {
                iss: "attestation-bench".into(),
                sub: format!("device-{index:05}"),
                tenant: TENANT.into(),
                verdict: Verdict::Allow,
                reasons: Vec::new(),
                iat: NOW - 60,
                nbf: NOW - 60,
                exp: NOW + 840,
                jti: format!("jti-{index}"),
                policy_version: 7,
                cnf: None,
            })
            .context("issue")?;
        tokens.push((format!("device-{index:05}"), token));
    }
    // The floor's inputs: signing input and raw signature, decoded before timing.
    let mut raw = Vec::with_capacity(tokens.len());
    for (_, token) in &tokens {
        let (signing_input, signature) =
            token.rsplit_once('.').context("a token has three parts")?;
        raw.push((
            signing_input.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(signature).context("signature")?,
        ));
    }
    let key = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point);
    let measure = Duration::from_secs_f64(config.seconds);
    let mut runs = Vec::with_capacity(config.repetitions);
    for repetition in 0..config.repetitions {
        eprintln!(
            "mpos-bench: token: run {}/{} ({} threads, {:.1} s each part) …",
            repetition + 1,
            config.repetitions,
            config.threads,
            config.seconds
        );
        let rate = on_threads(config.threads, measure, |index| {
            let (device, token) = &tokens[index % tokens.len()];
            verifier
                .verify(token, &expected(device))
                .is_ok_and(|token| token.claims.sub == *device)
        })?;
        let floor = on_threads(config.threads, measure, |index| {
            let (input, signature) = &raw[index % raw.len()];
            key.verify(input, signature).is_ok()
        })?;
        let caching = CachingVerifier::new(verifier.clone(), tokens.len());
        let check = |caching: &CachingVerifier, index: usize| {
            let (device, token) = &tokens[index % tokens.len()];
            caching
                .verify(token, &expected(device))
                .is_ok_and(|token| token.claims.sub == *device)
        };
        for index in 0..tokens.len() {
            ensure!(check(&caching, index), "a verification failed");
        }
        let warm = on_threads(config.threads, measure, |index| check(&caching, index))?;
        runs.push(TokenRun { rate, floor, warm });
    }
    Ok(runs)
}

/// What the payment path expects of a device's token.
fn expected(device: &str) -> Expected<'_> {
    Expected {
        tenant: TENANT,
        device,
        now_unix: NOW,
        leeway_seconds: 30,
    }
}

/// Calls `verify(i)` on `threads` threads for `measure`; every call must return true. Calls
/// per second, all threads together.
fn on_threads(
    threads: usize,
    measure: Duration,
    verify: impl Fn(usize) -> bool + Sync,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let counts: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let verify = &verify;
                scope.spawn(move || {
                    let mut calls = 0_u64;
                    let mut index = thread * 7_919;
                    while started.elapsed() < measure {
                        for _ in 0..64 {
                            ensure!(verify(index), "a verification failed");
                            index += 1;
                            calls += 1;
                        }
                    }
                    Ok(calls)
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
    let mut total = 0_u64;
    for count in counts {
        total += count?;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// The median of `rates` and how the report shows it (with the range over several runs).
pub(crate) fn figure(rates: &[f64]) -> (f64, String) {
    let rate = median(rates);
    if rates.len() > 1 {
        let (low, high) = min_max(rates);
        let text = format!(
            "{} verifications/s ({}–{})",
            thousands(rate),
            thousands(low),
            thousands(high)
        );
        (rate, text)
    } else {
        (rate, format!("{} verifications/s", thousands(rate)))
    }
}

/// Adds the rows: cold and warm.
pub fn add_to(report: &mut Report, config: &TokenBenchConfig, runs: &[TokenRun]) {
    let floors: Vec<f64> = runs.iter().map(|run| run.floor).collect();
    let floor = median(&floors);
    let cold: Vec<f64> = runs.iter().map(|run| run.rate).collect();
    let warm: Vec<f64> = runs.iter().map(|run| run.warm).collect();
    let cases = [
        (
            format!(
                "ES256 attestation token, TokenVerifier::verify (structure, header, kid, signature, claims, validity, tenant, device, verdict), {} threads, {} tokens round robin ({} reps × {:.1} s)",
                config.threads,
                thousands(config.tokens as f64),
                runs.len(),
                config.seconds
            ),
            cold,
            "met",
        ),
        (
            format!(
                "the same through CachingVerifier, every token seen once before (a device's token presented again with each payment), {} threads",
                config.threads
            ),
            warm,
            "met (repeated tokens)",
        ),
    ];
    for (case, rates, met) in cases {
        let (rate, figure) = figure(&rates);
        report.rows.push(Row {
            benchmark: "token".into(),
            case,
            figure,
            floor: format!(
                "bare ring ECDSA P-256 SHA-256 verify of the same signatures, same threads: {}/s",
                thousands(floor)
            ),
            ratio: format!("{:.2}", rate / floor),
            goal: format!("≥ {}/s", thousands(TOKEN_GOAL)),
            verdict: if rate >= TOKEN_GOAL {
                met.into()
            } else {
                "MISSED".into()
            },
        });
    }
}
