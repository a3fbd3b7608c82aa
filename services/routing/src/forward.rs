//! Store-and-forward of reversals and completion advices: a background task that
//!
//! 1. at start, finds every exchange with an attempt sent before the start and never
//!    answered (the process stopped between writing `AcquirerRequestSent` and the answer),
//!    records it as timed out and queues its reversal, or, for a completion advice (0220),
//!    stores the advice for repeat (`unanswered_at_start`);
//! 2. then delivers every pending reversal: 0400 the first time, 0401 for each repeat, until
//!    a 0410 arrives (`ReversalAcknowledged`); and every stored advice: 0221 (the 0220's
//!    STAN, RRN and fields, no card data) until an 0230 arrives (`AdviceAcknowledged`); each
//!    failed delivery is recorded (`ReversalAttemptFailed`, `AdviceAttemptFailed`) with the
//!    time of the next, backing off exponentially from `reversal_backoff_min` to
//!    `reversal_backoff_max`.
//!
//! The to-do list is a projection of the log ([`crate::views::PENDING`]), so pending
//! reversals and advices survive restarts. The task wakes when one is queued in this
//! process, when the next one is due, and at least every `poll`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{Actor, Router};

/// The actor of the worker's events.
pub const ACTOR: &str = "service:routing";

/// Runs the worker until `cancel` fires.
pub async fn run(router: Arc<Router>, started_us: i64, poll: Duration, cancel: CancellationToken) {
    let actor = Actor(ACTOR.to_owned());
    // The unanswered attempts of an earlier run; retried until the store answers.
    loop {
        match router.reverse_unanswered(&actor, started_us).await {
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(error = %error.message, "unanswered attempts not checked, retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
    }
    loop {
        let wait = match router.deliver_due(&actor).await {
            Ok(Some(next_us)) => {
                let in_us = next_us.saturating_sub(mpos_es::now_micros()).max(0);
                Duration::from_micros(u64::try_from(in_us).unwrap_or(0)).min(poll)
            }
            Ok(None) => poll,
            Err(error) => {
                tracing::warn!(error = %error.message, "store-and-forward round failed");
                poll
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = router.wake.notified() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
        }
    }
}
