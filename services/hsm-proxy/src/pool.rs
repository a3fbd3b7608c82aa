//! A pool of backends: health-checked, least-outstanding-requests balancing with a
//! preference for the local site, and failover of idempotent operations to another backend.
//!
//! Every data-plane operation is idempotent (it changes no key state), so a failed or slow
//! attempt is retried on the next best backend; the failed one leaves rotation until its
//! health check passes again. Health changes are reported to a listener (the service turns
//! them into `BackendHealthChanged` events).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::error::HsmError;

/// One backend of the pool and its live state.
#[derive(Debug)]
pub struct Member {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    healthy: AtomicBool,
    outstanding: AtomicUsize,
    metrics: MemberMetrics,
}

/// A backend's metric handles, registered once per operation and status instead of being
/// looked up (with their label strings) on every request.
#[derive(Debug, Default)]
struct MemberMetrics {
    counters: std::sync::RwLock<HashMap<(&'static str, &'static str), metrics::Counter>>,
    histograms: std::sync::RwLock<HashMap<&'static str, metrics::Histogram>>,
}

impl MemberMetrics {
    fn record(&self, backend: &str, operation: &'static str, status: &'static str, seconds: f64) {
        let counter = self
            .counters
            .read()
            .ok()
            .and_then(|counters| counters.get(&(operation, status)).cloned());
        let counter = counter.unwrap_or_else(|| {
            let counter = metrics::counter!("mpos_hsm_operations_total",
                "operation" => operation, "backend" => backend.to_owned(), "status" => status);
            if let Ok(mut counters) = self.counters.write() {
                counters.insert((operation, status), counter.clone());
            }
            counter
        });
        counter.increment(1);
        let histogram = self
            .histograms
            .read()
            .ok()
            .and_then(|histograms| histograms.get(operation).cloned());
        let histogram = histogram.unwrap_or_else(|| {
            let histogram = metrics::histogram!("mpos_hsm_operation_duration_seconds",
                "operation" => operation, "backend" => backend.to_owned());
            if let Ok(mut histograms) = self.histograms.write() {
                histograms.insert(operation, histogram.clone());
            }
            histogram
        });
        histogram.record(seconds);
    }
}

impl Member {
    /// Whether the backend is in rotation.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

/// A change of a backend's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthChange {
    /// The backend.
    pub backend_id: String,
    /// Its site.
    pub site: String,
    /// In rotation now?
    pub healthy: bool,
    /// Why.
    pub reason: String,
}

/// The pool's tuning.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The site this process runs at; its backends are preferred.
    pub local_site: String,
    /// An attempt slower than this fails over to another backend.
    pub attempt_timeout: Duration,
    /// How often every backend is checked.
    pub check_interval: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            local_site: "local".into(),
            attempt_timeout: Duration::from_millis(500),
            check_interval: Duration::from_millis(500),
        }
    }
}

/// The backends the service uses.
#[derive(Debug)]
pub struct Pool {
    members: Vec<Arc<Member>>,
    config: PoolConfig,
    changes: tokio::sync::mpsc::UnboundedSender<HealthChange>,
}

/// Decrements a member's outstanding count when an attempt ends.
struct Outstanding<'a>(&'a Member);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// A pool of `backends` (all assumed healthy until checked); health changes go to the
    /// returned receiver.
    pub fn new(
        backends: Vec<Arc<dyn Backend>>,
        config: PoolConfig,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<HealthChange>) {
        let (changes, receiver) = tokio::sync::mpsc::unbounded_channel();
        let members = backends
            .into_iter()
            .map(|backend| {
                metrics::gauge!("mpos_hsm_backend_healthy", "backend" => backend.id().to_owned(), "site" => backend.site().to_owned())
                    .set(1.0);
                Arc::new(Member {
                    backend,
                    healthy: AtomicBool::new(true),
                    outstanding: AtomicUsize::new(0),
                    metrics: MemberMetrics::default(),
                })
            })
            .collect();
        (
            Self {
                members,
                config,
                changes,
            },
            receiver,
        )
    }

    /// Every member.
    pub fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// The member with this backend id.
    pub fn member(&self, backend_id: &str) -> Option<&Arc<Member>> {
        self.members
            .iter()
            .find(|member| member.backend.id() == backend_id)
    }

    fn set_health(&self, member: &Member, healthy: bool, reason: &str) {
        if member.healthy.swap(healthy, Ordering::AcqRel) != healthy {
            let backend = &member.backend;
            if healthy {
                tracing::info!(
                    backend = backend.id(),
                    site = backend.site(),
                    "hsm backend back in rotation"
                );
            } else {
                tracing::warn!(
                    backend = backend.id(),
                    site = backend.site(),
                    reason,
                    "hsm backend out of rotation"
                );
            }
            metrics::gauge!("mpos_hsm_backend_healthy", "backend" => backend.id().to_owned(), "site" => backend.site().to_owned())
                .set(if healthy { 1.0 } else { 0.0 });
            let _ = self.changes.send(HealthChange {
                backend_id: backend.id().to_owned(),
                site: backend.site().to_owned(),
                healthy,
                reason: reason.to_owned(),
            });
        }
    }

    /// Members that may serve `eligible` (e.g. those holding a key), best first: healthy
    /// before sick, local site before remote, fewest outstanding requests first.
    fn ranked(&self, eligible: &(dyn Fn(&Member) -> bool + Sync)) -> Vec<Arc<Member>> {
        let mut ranked: Vec<Arc<Member>> = self
            .members
            .iter()
            .filter(|member| eligible(member))
            .cloned()
            .collect();
        if ranked.len() < 2 {
            return ranked;
        }
        ranked.sort_by_key(|member| {
            (
                !member.is_healthy(),
                member.backend.site() != self.config.local_site,
                member.outstanding.load(Ordering::Acquire),
            )
        });
        ranked
    }

    /// Runs an idempotent operation on the best backend that `eligible` allows, failing
    /// over to the next on an unavailable or slow backend (which leaves rotation). Caller
    /// errors (bad input) are returned at once: another backend would answer the same.
    pub async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        eligible: &(dyn Fn(&Member) -> bool + Sync),
        attempt: F,
    ) -> Result<T, HsmError>
    where
        F: Fn(Arc<Member>) -> Fut,
        Fut: std::future::Future<Output = Result<T, HsmError>>,
    {
        self.run_within(operation, self.config.attempt_timeout, eligible, attempt)
            .await
    }

    /// [`Pool::run`] with another attempt timeout (key generation: RSA takes seconds).
    pub async fn run_within<T, F, Fut>(
        &self,
        operation: &'static str,
        attempt_timeout: Duration,
        eligible: &(dyn Fn(&Member) -> bool + Sync),
        attempt: F,
    ) -> Result<T, HsmError>
    where
        F: Fn(Arc<Member>) -> Fut,
        Fut: std::future::Future<Output = Result<T, HsmError>>,
    {
        let candidates = self.ranked(eligible);
        if candidates.is_empty() {
            return Err(HsmError::Unavailable("no backend holds the key".into()));
        }
        let mut last_error = HsmError::Unavailable("no healthy backend".into());
        for member in candidates {
            member.outstanding.fetch_add(1, Ordering::AcqRel);
            let guard = Outstanding(&member);
            let started = Instant::now();
            let result = tokio::time::timeout(attempt_timeout, attempt(member.clone())).await;
            drop(guard);
            let elapsed = started.elapsed().as_secs_f64();
            let outcome = match result {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(HsmError::Unavailable(format!(
                    "backend {} did not answer within {attempt_timeout:?}",
                    member.backend.id()
                ))),
            };
            let status = match &outcome {
                Ok(_) => "ok",
                Err(HsmError::Unavailable(_) | HsmError::Internal(_)) => "backend_error",
                Err(_) => "rejected",
            };
            member
                .metrics
                .record(member.backend.id(), operation, status, elapsed);
            match outcome {
                Ok(value) => return Ok(value),
                Err(error @ (HsmError::Unavailable(_) | HsmError::Internal(_))) => {
                    tracing::warn!(backend = member.backend.id(), operation, %error, "hsm attempt failed; trying another backend");
                    self.set_health(&member, false, &error.to_string());
                    last_error = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }

    /// Checks every backend once and updates rotation.
    pub async fn check_all(&self) {
        for member in &self.members {
            let result =
                tokio::time::timeout(self.config.attempt_timeout, member.backend.check()).await;
            match result {
                Ok(Ok(())) => self.set_health(member, true, "health check passed"),
                Ok(Err(error)) => self.set_health(member, false, &error.to_string()),
                Err(_) => self.set_health(member, false, "health check timed out"),
            }
        }
    }

    /// Checks every backend every `check_interval` until `cancel` fires.
    pub async fn run_health_checks(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            self.check_all().await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.config.check_interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use paycrypto::SecretBytes;

    use super::*;
    use crate::backend::soft::SoftBackend;

    async fn soft(dir: &std::path::Path, id: &str, site: &str) -> Arc<dyn Backend> {
        let url = format!("soft://{}?id={id}&site={site}", dir.join(id).display());
        Arc::new(
            SoftBackend::open(&url, SecretBytes::new(vec![7; 32]))
                .await
                .expect("soft backend"),
        )
    }

    fn config(local_site: &str) -> PoolConfig {
        PoolConfig {
            local_site: local_site.into(),
            ..PoolConfig::default()
        }
    }

    async fn who(pool: &Pool) -> String {
        pool.run(
            "Who",
            &|_: &Member| true,
            |member: Arc<Member>| async move { Ok(member.backend.id().to_owned()) },
        )
        .await
        .expect("answered")
    }

    #[tokio::test]
    async fn the_local_site_is_preferred_while_it_is_healthy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backends = vec![
            soft(dir.path(), "fra-1", "fra").await,
            soft(dir.path(), "ams-1", "ams").await,
        ];
        let (pool, mut changes) = Pool::new(backends, config("ams"));
        for _ in 0..5 {
            assert_eq!(who(&pool).await, "ams-1");
        }
        // The local backend's storage disappears: the health check takes it out, the
        // remote site serves, and the change is reported.
        std::fs::rename(dir.path().join("ams-1"), dir.path().join("gone")).expect("rename");
        pool.check_all().await;
        assert_eq!(who(&pool).await, "fra-1");
        let change = changes.try_recv().expect("a health change");
        assert_eq!(
            (change.backend_id.as_str(), change.healthy),
            ("ams-1", false)
        );
        std::fs::rename(dir.path().join("gone"), dir.path().join("ams-1")).expect("rename back");
        pool.check_all().await;
        assert_eq!(who(&pool).await, "ams-1");
        assert!(changes.try_recv().expect("back").healthy);
    }

    #[tokio::test]
    async fn the_backend_with_fewer_outstanding_requests_is_chosen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backends = vec![
            soft(dir.path(), "a", "local").await,
            soft(dir.path(), "b", "local").await,
        ];
        let (pool, _changes) = Pool::new(backends, config("local"));
        let pool = Arc::new(pool);
        // Hold one request in flight on whichever backend is chosen first.
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let (started, first) = tokio::sync::oneshot::channel::<String>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let started = std::sync::Mutex::new(Some(started));
                let held = std::sync::Mutex::new(Some(held));
                pool.run_within(
                    "Hold",
                    Duration::from_secs(5),
                    &|_: &Member| true,
                    |member: Arc<Member>| {
                        let started = started.lock().ok().and_then(|mut slot| slot.take());
                        let held = held.lock().ok().and_then(|mut slot| slot.take());
                        async move {
                            if let Some(started) = started {
                                let _ = started.send(member.backend.id().to_owned());
                            }
                            if let Some(held) = held {
                                let _ = held.await;
                            }
                            Ok(())
                        }
                    },
                )
                .await
            })
        };
        let busy_backend = first.await.expect("first attempt started");
        let other = who(&pool).await;
        assert_ne!(
            other, busy_backend,
            "the idle backend serves while the other is busy"
        );
        let _ = release.send(());
        busy.await.expect("joined").expect("held request answered");
    }

    #[tokio::test]
    async fn a_caller_error_is_not_retried_and_keeps_the_backend_in_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backends = vec![
            soft(dir.path(), "a", "local").await,
            soft(dir.path(), "b", "local").await,
        ];
        let (pool, _changes) = Pool::new(backends, config("local"));
        let attempts = AtomicUsize::new(0);
        let result: Result<(), HsmError> = pool
            .run("Bad", &|_: &Member| true, |_member: Arc<Member>| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(HsmError::invalid("pinBlock", "not hexadecimal")) }
            })
            .await;
        assert!(matches!(result, Err(HsmError::Invalid { .. })));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert!(pool.members().iter().all(|member| member.is_healthy()));
    }
}
