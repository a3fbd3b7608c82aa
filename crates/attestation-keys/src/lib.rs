//! SoftPOS attestation tokens, verified offline where they are presented (authorization's
//! payments, key-injection's SoftPOS key delivery): the attestation service's public keys are
//! loaded once (in process in `mposd`, or from its `GET /v1/attestation/token-keys`), kept in
//! a [`CachingVerifier`] so a token seen before costs a hash and a lookup, and refreshed in
//! the background (a rotation adds a `kid`; an unknown `kid` is also refetched, at most every
//! few seconds).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use attestation_token::{CachingVerifier, Expected, PublishedKeys, TokenError, VerifiedToken};

/// Tolerated clock difference with the attestation service, seconds.
pub const LEEWAY_SECONDS: u64 = 30;
/// Tokens remembered by the verifier.
const REMEMBERED: usize = 65_536;
/// The shortest time between two fetches for an unknown key id.
const REFETCH_PAUSE: Duration = Duration::from_secs(5);
/// The first wait before a failed fetch is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(500);

/// What a token must be: for `tenant` and `device`, valid at `now_unix` give or take
/// [`LEEWAY_SECONDS`].
fn expected<'a>(tenant: &'a str, device: &'a str, now_unix: u64) -> Expected<'a> {
    Expected {
        tenant,
        device,
        now_unix,
        leeway_seconds: LEEWAY_SECONDS,
    }
}

/// Where the keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Given (in-process).
    Fixed(PublishedKeys),
    /// Fetched from the attestation service's `…/v1/attestation/token-keys`.
    Url(String),
}

impl KeySource {
    /// Keys fetched from `url`, which must be an `http://` or `https://` URL.
    pub fn url(url: impl Into<String>) -> Result<Self, String> {
        let url = url.into();
        if url.starts_with("https://") || url.starts_with("http://") {
            Ok(Self::Url(url))
        } else {
            Err(url)
        }
    }
}

/// The token check over the attestation service's keys.
pub struct Tokens {
    source: KeySource,
    client: reqwest::Client,
    verifier: RwLock<Arc<CachingVerifier>>,
    last_fetch: RwLock<Option<Instant>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn caching(keys: &PublishedKeys) -> Result<CachingVerifier, TokenError> {
    Ok(CachingVerifier::new(keys.verifier()?, REMEMBERED))
}

impl Tokens {
    /// A check over `source`; fixed keys are loaded now, fetched ones at [`Tokens::refresh`].
    pub fn new(source: KeySource) -> Result<Self, TokenError> {
        let verifier = match &source {
            KeySource::Fixed(keys) => caching(keys)?,
            KeySource::Url(_) => caching(&PublishedKeys { keys: Vec::new() })?,
        };
        Ok(Self {
            source,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            verifier: RwLock::new(Arc::new(verifier)),
            last_fetch: RwLock::new(None),
        })
    }

    fn current(&self) -> Arc<CachingVerifier> {
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches the keys again (a no-op for fixed keys).
    pub async fn refresh(&self) -> Result<(), String> {
        let KeySource::Url(url) = &self.source else {
            return Ok(());
        };
        *self
            .last_fetch
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        let keys: PublishedKeys = self
            .client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("token keys: {error}"))?
            .json()
            .await
            .map_err(|error| format!("token keys: {error}"))?;
        let verifier = caching(&keys).map_err(|error| format!("token keys: {error}"))?;
        *self
            .verifier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(verifier);
        tracing::info!(keys = keys.keys.len(), "attestation token keys loaded");
        Ok(())
    }

    /// Whether an unknown key id may trigger a fetch now.
    fn may_refetch(&self) -> bool {
        matches!(self.source, KeySource::Url(_))
            && self
                .last_fetch
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_none_or(|at| at.elapsed() >= REFETCH_PAUSE)
    }

    /// Refreshes every `every` until `cancel` fires.
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        // A failed fetch is retried soon (the attestation service may start after this
        // one), backing off to `every`.
        let mut retry = RETRY_FIRST.min(every);
        loop {
            let wait = match self.refresh().await {
                Ok(()) => {
                    retry = RETRY_FIRST.min(every);
                    every
                }
                Err(error) => {
                    tracing::warn!(%error, retry_ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX), "attestation token keys not refreshed");
                    let wait = retry;
                    retry = (retry * 2).min(every);
                    wait
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whether a refresh for an unknown key is worth it; spawns it.
    fn refetch_in_background(self: &Arc<Self>) {
        if self.may_refetch() {
            let tokens = self.clone();
            tokio::spawn(async move {
                if let Err(error) = tokens.refresh().await {
                    tracing::warn!(%error, "attestation token keys not refreshed");
                }
            });
        }
    }

    /// Verifies a token for `tenant` and `device` at `now_unix` (with [`LEEWAY_SECONDS`]); a
    /// token signed with a key not yet known starts a fetch of the keys (at most every few
    /// seconds), so a rotation is picked up before the next refresh.
    pub fn verify(
        self: &Arc<Self>,
        token: &str,
        tenant: &str,
        device: &str,
        now_unix: u64,
    ) -> Result<VerifiedToken, TokenError> {
        let verified = self
            .current()
            .verify(token, &expected(tenant, device, now_unix));
        if matches!(verified, Err(TokenError::UnknownKey { .. })) {
            self.refetch_in_background();
        }
        verified
    }

    /// [`Tokens::verify`], where a token signed with a key not yet known waits for one fetch
    /// of the keys (at most every few seconds) and is verified again: for a request that
    /// can wait (key-injection's SoftPOS key delivery), so that the first token after a
    /// rotation, or after this service started before the attestation service, passes.
    pub async fn verify_fetching(
        self: &Arc<Self>,
        token: &str,
        tenant: &str,
        device: &str,
        now_unix: u64,
    ) -> Result<VerifiedToken, TokenError> {
        let expected = expected(tenant, device, now_unix);
        let verified = self.current().verify(token, &expected);
        if matches!(verified, Err(TokenError::UnknownKey { .. })) && self.may_refetch() {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "attestation token keys not refreshed");
            }
            return self.current().verify(token, &expected);
        }
        verified
    }
}
