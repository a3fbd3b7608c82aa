//! What the SoftPOS attestation service verifies Android key attestation chains against:
//! the trust anchors and Google's attestation status list, loaded from their sources, kept
//! fresh in the background and replaceable at run time.
//!
//! [`android_attestation`] verifies a chain against [`TrustAnchors`] and a
//! [`RevocationList`] it is given and does no I/O. This crate does the I/O around it:
//!
//! - a [`Source`] is the built-in Google roots, a file or an `https://` URL
//!   ([`Source::parse`] reads `builtin`, `file:/path`, `/path` or `https://...` from
//!   configuration);
//! - [`TrustSources::load`] loads a [`TrustConfig`]'s anchors and status list (by default
//!   Google's roots and [`GOOGLE_STATUS_LIST_URL`]);
//! - [`TrustSources::snapshot`] gives the [`Snapshot`] in force (an `Arc` clone under a read
//!   lock: cheap enough for every attestation); [`Snapshot::verify`] verifies a chain with it;
//! - [`TrustSources::run`] refreshes every hour (a minute after a failure),
//!   [`TrustSources::refresh`] once;
//! - [`TrustSources::replace_anchors`] swaps the anchors without a restart (the admin API);
//! - [`TrustSources::status`] says what is loaded, from where, since when, the last error and
//!   whether the list is stale.
//!
//! # Choices
//!
//! **Never worse than before.** A refresh that fails (the endpoint unreachable, an HTTP
//! error, a body over [`TrustConfig::max_bytes`], JSON that does not parse, anchors that do
//! not parse or are empty) changes nothing: the previous snapshot stays in force. Falling back
//! to an empty status list would silently un-revoke every revoked key; falling back to no
//! anchors would refuse every device. A refresh is all or nothing, so anchors and list always
//! come from one successful load.
//!
//! **Stale is flagged, not fatal.** When the status list has not been loaded from its source
//! for [`TrustConfig::max_stale`] (24 h by default), [`TrustStatus::stale`] (and
//! [`TrustSources::is_stale`]) say so, but the old list keeps being used. An outage of
//! Google's endpoint must not stop every SoftPOS payment; revocations are rare and a list a
//! day old is still almost always right. The service puts the flag in its verdict, so the
//! risk engine and the audit trail know the revocation check was done against an old list.
//!
//! **A cache file.** Staleness covers an outage while the service runs; a restart during the
//! outage would otherwise have no list at all and could not start. With
//! [`TrustConfig::cache_path`] set, every successfully loaded list is written there
//! atomically (temporary file, then rename: a crash leaves the old or the new file, never half
//! of one), and at start, if the source fails, the cached list is used, as old as the cache
//! file says (so a cache older than `max_stale` is stale at once). Without a usable cache a
//! failing source at start is an error: starting without revocations is not an option —
//! except where [`TrustConfig::start_without_list`] allows it explicitly (`mposd`, a single
//! machine that must start without network): then the list is empty and stale from the start,
//! so every verdict says the revocation check was not done, until a refresh succeeds.
//!
//! **Run-time anchors win.** Anchors given to [`TrustSources::replace_anchors`] (Google
//! announcing a new root, an emergency removal) take effect for the next attestation and stay
//! until restart: later refreshes do not reload the configured anchors source over them. The
//! configuration should be updated to match before the next restart.
//!
//! **https only.** A URL source must be `https://` (redirects too); the client trusts the
//! usual web roots plus [`TrustConfig::extra_ca_pem`] for a mirror behind a private CA (and the
//! tests' local server). Error messages and the status never show a URL's user information or
//! query.
//!
//! [`TrustAnchors`]: android_attestation::TrustAnchors
//! [`RevocationList`]: android_attestation::RevocationList

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod error;
mod source;
mod trust;

pub use error::TrustError;
pub use source::{GOOGLE_STATUS_LIST_URL, Source};
pub use trust::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_MAX_STALE, DEFAULT_REFRESH_EVERY,
    DEFAULT_RETRY_EVERY, RefreshReport, Snapshot, TrustConfig, TrustSources, TrustStatus,
};
