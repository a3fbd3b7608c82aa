//! [`TrustSources`]: the current anchors and status list, loaded, refreshed, cached and
//! replaced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use android_attestation::{ChainError, RevocationList, TrustAnchors, VerifiedChain, verify_chain};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::source::{GOOGLE_STATUS_LIST_URL, fetch, read_file};
use crate::{Source, TrustError};

/// [`TrustConfig::refresh_every`] by default: 1 hour.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(60 * 60);
/// [`TrustConfig::retry_every`] by default: 1 minute.
pub const DEFAULT_RETRY_EVERY: Duration = Duration::from_secs(60);
/// [`TrustConfig::max_stale`] by default: 24 hours.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);
/// [`TrustConfig::fetch_timeout`] by default: 10 seconds.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// [`TrustConfig::max_bytes`] by default: 16 MiB (Google's list is a few hundred KiB).
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The shortest pause [`TrustSources::run`] makes between two refreshes, whatever the
/// configuration says.
const MIN_DELAY: Duration = Duration::from_millis(10);

/// Where the anchors and the status list come from, and how they are kept fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustConfig {
    /// The trust anchors (PEM certificates); [`Source::Builtin`] is Google's two roots.
    pub anchors: Source,
    /// The status list (Google's JSON); `None` checks no revocation at all.
    /// [`Source::Builtin`] is refused (there is no built-in list).
    pub status_list: Option<Source>,
    /// More CA certificates (PEM) to trust, besides the usual web roots, for the TLS
    /// connections to URL sources (a mirror behind a private CA; the tests' server).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Where the last good status list is kept (written atomically after every successful
    /// load; read at start when the source cannot be loaded). `None`: no cache.
    pub cache_path: Option<PathBuf>,
    /// How often [`TrustSources::run`] refreshes.
    pub refresh_every: Duration,
    /// How soon [`TrustSources::run`] tries again after a failed refresh (at most
    /// `refresh_every`).
    pub retry_every: Duration,
    /// How old the status list in use may be (since it was last loaded from its source,
    /// or since the cache file was written) before [`TrustStatus::stale`] says so.
    pub max_stale: Duration,
    /// The time limit of one HTTP request, body included (and of its TCP/TLS connect).
    pub fetch_timeout: Duration,
    /// The largest anchors file or status list accepted, in bytes; a larger one is refused
    /// with [`TrustError::TooLarge`], not cut.
    pub max_bytes: usize,
    /// Whether [`TrustSources::load`] may start with an empty status list when the list
    /// cannot be loaded from its source and there is no usable cache, instead of failing
    /// (`false` by default). The list is then stale from the start ([`TrustStatus::stale`]:
    /// verdicts carry `KA_STATUS_LIST_STALE`) until a refresh succeeds, which
    /// [`TrustSources::run`] tries every [`TrustConfig::retry_every`]. For a single machine
    /// that must start without network (`mposd`); a service in production should fail fast
    /// instead.
    pub start_without_list: bool,
}

impl Default for TrustConfig {
    /// Google's roots built in, Google's status list from [`GOOGLE_STATUS_LIST_URL`], no
    /// cache, the `DEFAULT_*` durations and limit, and no start without a status list.
    fn default() -> Self {
        Self {
            anchors: Source::Builtin,
            status_list: Some(Source::Url(GOOGLE_STATUS_LIST_URL.to_owned())),
            extra_ca_pem: None,
            cache_path: None,
            refresh_every: DEFAULT_REFRESH_EVERY,
            retry_every: DEFAULT_RETRY_EVERY,
            max_stale: DEFAULT_MAX_STALE,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            start_without_list: false,
        }
    }
}

impl TrustConfig {
    /// These sources with the defaults for everything else.
    pub fn new(anchors: Source, status_list: Option<Source>) -> Self {
        Self {
            anchors,
            status_list,
            ..Self::default()
        }
    }
}

/// The anchors and status list in force at one moment. Never changes: a change makes a new
/// snapshot with a higher `version`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// The trust anchors (never empty).
    pub anchors: Arc<TrustAnchors>,
    /// The status list (empty when none is configured).
    pub revocations: Arc<RevocationList>,
    /// 1 at load, one more at every change of the anchors or of the list's content.
    pub version: u64,
    /// Hex SHA-256 of each anchor's DER certificate, in order.
    pub anchors_sha256: Vec<String>,
}

impl Snapshot {
    /// [`verify_chain`] against this snapshot's anchors and status list.
    pub fn verify(
        &self,
        chain: &[Vec<u8>],
        now_unix_seconds: i64,
    ) -> Result<VerifiedChain, ChainError> {
        verify_chain(chain, &self.anchors, &self.revocations, now_unix_seconds)
    }
}

/// What [`TrustSources::status`] reports: for the admin API and the health page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrustStatus {
    /// The current [`Snapshot::version`].
    pub version: u64,
    /// The number of trust anchors.
    pub anchors: usize,
    /// Hex SHA-256 of each anchor's DER certificate.
    pub anchors_sha256: Vec<String>,
    /// Where the anchors came from: the configured source, or `runtime` once
    /// [`TrustSources::replace_anchors`] was called.
    pub anchors_source: String,
    /// When the anchors were replaced at run time (Unix seconds), if they were.
    pub anchors_replaced_at: Option<u64>,
    /// The configured status list source (a URL without credentials or query), if any.
    pub status_list_source: Option<String>,
    /// The number of entries in the status list in use.
    pub entries: usize,
    /// When the list in use was loaded from its source (Unix seconds); for a list read from
    /// the cache at start, when the cache file was written; `None` after a start without a
    /// list ([`TrustConfig::start_without_list`]) until a refresh succeeds.
    pub fetched_at: Option<u64>,
    /// Whether the list in use was read from the cache (its source failed at start and no
    /// refresh has succeeded since).
    pub from_cache: bool,
    /// Why the last refresh (or the start's load from the source) failed; `None` once one
    /// succeeds.
    pub last_error: Option<String>,
    /// When that was (Unix seconds).
    pub last_error_at: Option<u64>,
    /// Why the cache file could not be written at the last successful load, if it could not.
    pub cache_error: Option<String>,
    /// A status list is configured and the one in use is older than
    /// [`TrustConfig::max_stale`]. It is still used; verdicts should say so.
    pub stale: bool,
}

/// What a successful [`TrustSources::refresh`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RefreshReport {
    /// The snapshot version after the refresh.
    pub version: u64,
    /// Whether the anchors changed (never, once replaced at run time).
    pub anchors_changed: bool,
    /// Whether the status list's content changed.
    pub status_list_changed: bool,
    /// The number of anchors now.
    pub anchors: usize,
    /// The number of status list entries now.
    pub entries: usize,
}

/// The anchors and the status list the attestation service verifies chains against, kept
/// fresh ([`TrustSources::run`]) and replaceable at run time. Cloning is cheap and every
/// clone sees the same state.
#[derive(Debug, Clone)]
pub struct TrustSources {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: TrustConfig,
    client: reqwest::Client,
    /// Read at every attestation: a read lock and an `Arc` clone.
    current: RwLock<Arc<Snapshot>>,
    /// Bookkeeping for [`TrustSources::status`]; locked before `current` when both are.
    state: Mutex<State>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// SHA-256 of the status list body in use.
    list_sha256: Option<[u8; 32]>,
    fetched_at: Option<SystemTime>,
    from_cache: bool,
    anchors_replaced_at: Option<SystemTime>,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    cache_error: Option<String>,
}

/// A status list as loaded: parsed, with the SHA-256 and the bytes of its JSON.
struct LoadedList {
    list: RevocationList,
    sha256: [u8; 32],
    body: Vec<u8>,
}

impl TrustSources {
    /// Loads the anchors and the status list.
    ///
    /// The anchors must load ([`TrustError`] otherwise). If the status list cannot be loaded
    /// (unreachable, HTTP error, too large, invalid) and [`TrustConfig::cache_path`] holds a
    /// valid list, that list is used ([`TrustStatus::from_cache`], with the failure in
    /// [`TrustStatus::last_error`]); without a usable cache the source's error is returned,
    /// unless [`TrustConfig::start_without_list`] is set: then the list is empty, stale, and
    /// the failure is in [`TrustStatus::last_error`].
    pub async fn load(config: TrustConfig) -> Result<Self, TrustError> {
        if config.status_list == Some(Source::Builtin) {
            return Err(TrustError::InvalidSource {
                text: Source::Builtin.to_string(),
                reason: "there is no built-in status list".to_owned(),
            });
        }
        let client = build_client(&config)?;
        let anchors = load_anchors(&config.anchors, &client, config.max_bytes).await?;
        let mut state = State::default();
        let revocations = match &config.status_list {
            None => RevocationList::empty(),
            Some(source) => match load_list(source, &client, config.max_bytes).await {
                Ok(loaded) => {
                    if let Some(cache) = &config.cache_path {
                        state.cache_error = write_cache(cache, &loaded.body).await;
                    }
                    state.fetched_at = Some(SystemTime::now());
                    state.list_sha256 = Some(loaded.sha256);
                    loaded.list
                }
                Err(error) => {
                    let cached = match &config.cache_path {
                        None => None,
                        Some(cache) => match read_cache(cache, config.max_bytes).await {
                            Ok(cached) => Some((cache, cached)),
                            Err(cache_error) => {
                                tracing::warn!(%cache_error, "cannot read the status list cache");
                                None
                            }
                        },
                    };
                    let list = match cached {
                        Some((cache, (loaded, written))) => {
                            tracing::warn!(
                                %error,
                                source = %source,
                                cache = %cache.display(),
                                entries = loaded.list.len(),
                                "cannot load the status list, using the cached copy"
                            );
                            state.from_cache = true;
                            state.fetched_at = Some(written);
                            state.list_sha256 = Some(loaded.sha256);
                            loaded.list
                        }
                        None if config.start_without_list => {
                            tracing::warn!(
                                %error,
                                source = %source,
                                "cannot load the status list and no cache, starting with an empty list flagged stale"
                            );
                            RevocationList::empty()
                        }
                        None => return Err(error),
                    };
                    state.last_error = Some(error.to_string());
                    state.last_error_at = Some(SystemTime::now());
                    list
                }
            },
        };
        let anchors_sha256 = anchors_sha256(&anchors);
        tracing::info!(
            anchors = anchors.len(),
            anchors_source = %config.anchors,
            entries = revocations.len(),
            from_cache = state.from_cache,
            "trust sources loaded"
        );
        let snapshot = Snapshot {
            anchors: Arc::new(anchors),
            revocations: Arc::new(revocations),
            version: 1,
            anchors_sha256,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                current: RwLock::new(Arc::new(snapshot)),
                state: Mutex::new(state),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The anchors and status list in force now (cheap: for every attestation).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .inner
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Loads the anchors (unless they were replaced at run time) and the status list again
    /// from their sources, and makes a new snapshot if either changed.
    ///
    /// All or nothing: if either fails, the current snapshot stays as it is (never an empty
    /// list in place of a good one), the error is logged, kept in
    /// [`TrustStatus::last_error`] and returned. A successful status list load is written to
    /// the cache file; a failure to write it does not fail the refresh
    /// ([`TrustStatus::cache_error`]).
    pub async fn refresh(&self) -> Result<RefreshReport, TrustError> {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        match self.load_sources().await {
            Ok((anchors, list)) => {
                let cache_error = match (&list, &self.inner.config.cache_path) {
                    (Some(loaded), Some(cache)) => write_cache(cache, &loaded.body).await,
                    _ => None,
                };
                Ok(self.commit(anchors, list, cache_error))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot refresh the trust sources");
                let mut state = self.state();
                state.last_error = Some(error.to_string());
                state.last_error_at = Some(SystemTime::now());
                Err(error)
            }
        }
    }

    /// Replaces the trust anchors with the certificates of `pem`, at once and without a
    /// restart (for the admin API). From then on [`TrustSources::refresh`] leaves the anchors
    /// alone (the configured source no longer applies) until the process restarts.
    ///
    /// Refuses, changing nothing, PEM text without a certificate ([`TrustError::NoAnchors`]),
    /// with anything that is not a valid certificate ([`TrustError::Parse`]) or larger than
    /// [`TrustConfig::max_bytes`].
    pub fn replace_anchors(&self, pem: &[u8]) -> Result<(), TrustError> {
        let parsed = if pem.len() > self.inner.config.max_bytes {
            Err(TrustError::TooLarge {
                what: "replacement anchors".to_owned(),
                limit: self.inner.config.max_bytes,
            })
        } else {
            parse_anchors(pem)
        };
        let anchors = match parsed {
            Ok(anchors) => anchors,
            Err(error) => {
                tracing::warn!(%error, "replacement trust anchors refused");
                return Err(error);
            }
        };
        let sha256 = anchors_sha256(&anchors);
        let count = anchors.len();
        let mut state = self.state();
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        state.anchors_replaced_at = Some(SystemTime::now());
        if sha256 != current.anchors_sha256 {
            *current = Arc::new(Snapshot {
                anchors: Arc::new(anchors),
                revocations: Arc::clone(&current.revocations),
                version: current.version.saturating_add(1),
                anchors_sha256: sha256,
            });
        }
        tracing::info!(
            anchors = count,
            version = current.version,
            "trust anchors replaced at run time"
        );
        Ok(())
    }

    /// The state of the sources, for the admin API.
    pub fn status(&self) -> TrustStatus {
        let snapshot = self.snapshot();
        let state = self.state();
        let config = &self.inner.config;
        TrustStatus {
            version: snapshot.version,
            anchors: snapshot.anchors.len(),
            anchors_sha256: snapshot.anchors_sha256.clone(),
            anchors_source: if state.anchors_replaced_at.is_some() {
                "runtime".to_owned()
            } else {
                config.anchors.to_string()
            },
            anchors_replaced_at: state.anchors_replaced_at.map(unix_seconds),
            status_list_source: config.status_list.as_ref().map(Source::to_string),
            entries: snapshot.revocations.len(),
            fetched_at: state.fetched_at.map(unix_seconds),
            from_cache: state.from_cache,
            last_error: state.last_error.clone(),
            last_error_at: state.last_error_at.map(unix_seconds),
            cache_error: state.cache_error.clone(),
            stale: self.stale(&state),
        }
    }

    /// [`TrustStatus::stale`] alone, without building the whole status.
    pub fn is_stale(&self) -> bool {
        self.stale(&self.state())
    }

    /// Refreshes every [`TrustConfig::refresh_every`], or [`TrustConfig::retry_every`] after
    /// a failure (also after a start from the cache), until `cancel` is cancelled (which also
    /// abandons a refresh under way).
    pub async fn run(self, cancel: CancellationToken) {
        let config = &self.inner.config;
        let every = config.refresh_every.max(MIN_DELAY);
        let retry = config.retry_every.min(every).max(MIN_DELAY);
        let failing = self.state().last_error.is_some();
        let mut delay = if failing { retry } else { every };
        tracing::info!(
            refresh_every = ?every,
            retry_every = ?retry,
            "trust sources refresher started"
        );
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            let outcome = tokio::select! {
                () = cancel.cancelled() => break,
                outcome = self.refresh() => outcome,
            };
            delay = if outcome.is_ok() { every } else { retry };
        }
        tracing::info!("trust sources refresher stopped");
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn stale(&self, state: &State) -> bool {
        if self.inner.config.status_list.is_none() {
            return false;
        }
        state.fetched_at.is_none_or(|at| {
            SystemTime::now()
                .duration_since(at)
                .unwrap_or(Duration::ZERO)
                > self.inner.config.max_stale
        })
    }

    /// The anchors (`None` when replaced at run time) and the status list (`None` when none
    /// is configured), from their sources.
    async fn load_sources(&self) -> Result<(Option<TrustAnchors>, Option<LoadedList>), TrustError> {
        let config = &self.inner.config;
        let client = &self.inner.client;
        let replaced = self.state().anchors_replaced_at.is_some();
        let anchors = if replaced {
            None
        } else {
            Some(load_anchors(&config.anchors, client, config.max_bytes).await?)
        };
        let list = match &config.status_list {
            Some(source) => Some(load_list(source, client, config.max_bytes).await?),
            None => None,
        };
        Ok((anchors, list))
    }

    /// Installs what a refresh loaded; a new snapshot only if something changed.
    fn commit(
        &self,
        anchors: Option<TrustAnchors>,
        list: Option<LoadedList>,
        cache_error: Option<String>,
    ) -> RefreshReport {
        let mut state = self.state();
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = Arc::clone(&current);

        let mut new_anchors = Arc::clone(&old.anchors);
        let mut new_anchors_sha256 = old.anchors_sha256.clone();
        // Anchors replaced at run time while this refresh was loading win.
        if let Some(anchors) = anchors.filter(|_| state.anchors_replaced_at.is_none()) {
            let sha256 = anchors_sha256(&anchors);
            if sha256 != old.anchors_sha256 {
                new_anchors = Arc::new(anchors);
                new_anchors_sha256 = sha256;
            }
        }
        let anchors_changed = new_anchors_sha256 != old.anchors_sha256;

        let mut revocations = Arc::clone(&old.revocations);
        let mut status_list_changed = false;
        if let Some(loaded) = list {
            state.fetched_at = Some(SystemTime::now());
            state.from_cache = false;
            if state.list_sha256 != Some(loaded.sha256) {
                state.list_sha256 = Some(loaded.sha256);
                revocations = Arc::new(loaded.list);
                status_list_changed = true;
            }
        }
        state.last_error = None;
        state.last_error_at = None;
        state.cache_error = cache_error;

        if anchors_changed || status_list_changed {
            *current = Arc::new(Snapshot {
                anchors: new_anchors,
                revocations,
                version: old.version.saturating_add(1),
                anchors_sha256: new_anchors_sha256,
            });
            tracing::info!(
                version = current.version,
                anchors = current.anchors.len(),
                entries = current.revocations.len(),
                anchors_changed,
                status_list_changed,
                "trust sources changed"
            );
        }
        RefreshReport {
            version: current.version,
            anchors_changed,
            status_list_changed,
            anchors: current.anchors.len(),
            entries: current.revocations.len(),
        }
    }
}

fn build_client(config: &TrustConfig) -> Result<reqwest::Client, TrustError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .timeout(config.fetch_timeout)
        .connect_timeout(config.fetch_timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!(
            "mpos-attestation-trust/",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(pem) = &config.extra_ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|error| TrustError::Client(format!("extra CA: {error}")))?;
        if certificates.is_empty() {
            return Err(TrustError::Client("extra CA: no certificate".to_owned()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|error| TrustError::Client(error.to_string()))
}

async fn load_bytes(
    source: &Source,
    client: &reqwest::Client,
    max_bytes: usize,
) -> Result<Vec<u8>, TrustError> {
    match source {
        Source::Builtin => Err(TrustError::InvalidSource {
            text: source.to_string(),
            reason: "there is no built-in status list".to_owned(),
        }),
        Source::File(path) => read_file(path, max_bytes).await,
        Source::Url(url) => fetch(client, url, max_bytes).await,
    }
}

async fn load_anchors(
    source: &Source,
    client: &reqwest::Client,
    max_bytes: usize,
) -> Result<TrustAnchors, TrustError> {
    let anchors = match source {
        Source::Builtin => TrustAnchors::google(),
        other => parse_anchors(&load_bytes(other, client, max_bytes).await?)?,
    };
    if anchors.is_empty() {
        return Err(TrustError::NoAnchors);
    }
    Ok(anchors)
}

/// PEM certificates as anchors; no certificate at all is [`TrustError::NoAnchors`].
fn parse_anchors(pem: &[u8]) -> Result<TrustAnchors, TrustError> {
    if pem.iter().all(u8::is_ascii_whitespace) {
        return Err(TrustError::NoAnchors);
    }
    let anchors = TrustAnchors::from_pem(pem)?;
    if anchors.is_empty() {
        return Err(TrustError::NoAnchors);
    }
    Ok(anchors)
}

async fn load_list(
    source: &Source,
    client: &reqwest::Client,
    max_bytes: usize,
) -> Result<LoadedList, TrustError> {
    parse_list(load_bytes(source, client, max_bytes).await?)
}

fn parse_list(body: Vec<u8>) -> Result<LoadedList, TrustError> {
    let list = RevocationList::from_json(&body)?;
    let sha256 = Sha256::digest(&body).into();
    Ok(LoadedList { list, sha256, body })
}

/// The cached list and when the cache file was written (the Unix epoch if the file system
/// does not say, which makes it stale at once).
async fn read_cache(path: &Path, max_bytes: usize) -> Result<(LoadedList, SystemTime), TrustError> {
    let body = read_file(path, max_bytes).await?;
    let written = tokio::fs::metadata(path)
        .await
        .and_then(|metadata| metadata.modified())
        .unwrap_or(UNIX_EPOCH);
    Ok((parse_list(body)?, written))
}

/// Writes the cache atomically (a temporary file beside it, then a rename); the error as
/// text, logged, if it fails.
async fn write_cache(path: &Path, body: &[u8]) -> Option<String> {
    match write_atomically(path, body).await {
        Ok(()) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot write the status list cache");
            Some(error.to_string())
        }
    }
}

async fn write_atomically(path: &Path, body: &[u8]) -> Result<(), TrustError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TrustError::Io { path, source }
    };
    let name = path.file_name().ok_or_else(|| {
        io(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no file name",
        ))
    })?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(".tmp");
    let temporary = path.with_file_name(temporary_name);
    let written = async {
        let mut file = tokio::fs::File::create(&temporary)
            .await
            .map_err(io(&temporary))?;
        file.write_all(body).await.map_err(io(&temporary))?;
        file.sync_all().await.map_err(io(&temporary))?;
        drop(file);
        tokio::fs::rename(&temporary, path).await.map_err(io(path))
    }
    .await;
    if written.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = tokio::fs::remove_file(&temporary).await;
    }
    written
}

fn anchors_sha256(anchors: &TrustAnchors) -> Vec<String> {
    anchors
        .certificates()
        .map(|der| hex::encode(Sha256::digest(der)))
        .collect()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
