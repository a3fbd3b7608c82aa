//! Readiness checks behind `/readyz`.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::metrics_handle::{labels, metric_names};

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Default)]
struct Checks {
    by_name: BTreeMap<String, Check>,
}

/// The named checks that decide whether a process is ready to take traffic, e.g. that the
/// event store and the bus answer. Clones share the same checks.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<RwLock<Checks>>,
    timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Readiness")
            .field("checks", &checks.by_name.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckStatus {
    /// Whether the check passed in time.
    pub ok: bool,
    /// Why not, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of all checks, as `/readyz` returns it:
/// `{"ready":false,"checks":{"bus":{"ok":true},"event_store":{"ok":false,"error":"..."}}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    /// Whether every check passed (true when there are none).
    pub ready: bool,
    /// Each check by name.
    pub checks: BTreeMap<String, CheckStatus>,
}

impl Readiness {
    /// No checks yet (ready), each check limited to [`CHECK_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            checks: Arc::default(),
            timeout: CHECK_TIMEOUT,
        }
    }

    /// The same checks with another per-check time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds (or replaces) the check `name`, e.g. `event_store` or `bus`. The check's error
    /// text is shown on the admin port: keep secrets and connection strings out of it.
    pub fn add_check<F, Fut>(&self, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        self.checks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .by_name
            .insert(name.to_owned(), check);
    }

    /// Runs every check concurrently, each with the time limit; a check that panics or takes
    /// too long fails.
    pub async fn evaluate(&self) -> ReadinessReport {
        let checks: Vec<(String, Check)> = self
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_name
            .iter()
            .map(|(name, check)| (name.clone(), Arc::clone(check)))
            .collect();
        let timeout = self.timeout;
        let running = checks.into_iter().map(|(name, check)| {
            let task = tokio::spawn(tokio::time::timeout(timeout, check()));
            async move {
                let status = match task.await {
                    Ok(Ok(Ok(()))) => CheckStatus {
                        ok: true,
                        error: None,
                    },
                    Ok(Ok(Err(error))) => CheckStatus {
                        ok: false,
                        error: Some(error),
                    },
                    Ok(Err(_elapsed)) => CheckStatus {
                        ok: false,
                        error: Some(format!("timed out after {} ms", timeout.as_millis())),
                    },
                    Err(_join_error) => CheckStatus {
                        ok: false,
                        error: Some("check panicked".to_owned()),
                    },
                };
                (name, status)
            }
        });
        let checks: BTreeMap<String, CheckStatus> = futures::future::join_all(running)
            .await
            .into_iter()
            .collect();
        for (name, status) in &checks {
            metrics::gauge!(metric_names::READINESS_CHECK_UP, labels::CHECK => name.clone())
                .set(if status.ok { 1.0 } else { 0.0 });
            if let Some(error) = &status.error {
                tracing::warn!(check = %name, error = %error, "readiness check failed");
            }
        }
        ReadinessReport {
            ready: checks.values().all(|status| status.ok),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn no_checks_is_ready() {
        let report = Readiness::new().evaluate().await;
        assert!(report.ready);
        assert!(report.checks.is_empty());
    }

    #[tokio::test]
    async fn failing_slow_and_panicking_checks_are_reported() {
        let readiness = Readiness::new().with_timeout(Duration::from_millis(50));
        let up = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&up);
        readiness.add_check("bus", move || {
            let up = flag.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("bus down".to_owned())
                }
            }
        });
        readiness.add_check("slow", || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        });
        readiness.add_check("broken", || async { panic!("check bug") });
        let report = readiness.evaluate().await;
        assert!(!report.ready);
        assert_eq!(
            report.checks["bus"],
            CheckStatus {
                ok: true,
                error: None
            }
        );
        assert_eq!(
            report.checks["slow"].error.as_deref(),
            Some("timed out after 50 ms")
        );
        assert_eq!(
            report.checks["broken"].error.as_deref(),
            Some("check panicked")
        );

        up.store(false, Ordering::SeqCst);
        let report = readiness.evaluate().await;
        assert_eq!(report.checks["bus"].error.as_deref(), Some("bus down"));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(
            json["checks"]["bus"],
            serde_json::json!({"ok": false, "error": "bus down"})
        );
    }

    #[tokio::test]
    async fn checks_run_concurrently() {
        let readiness = Readiness::new();
        for name in ["a", "b", "c", "d"] {
            readiness.add_check(name, || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(())
            });
        }
        let started = std::time::Instant::now();
        assert!(readiness.evaluate().await.ready);
        assert!(started.elapsed() < Duration::from_millis(700));
    }
}
