//! Read models built from the service's own log (dropped and rebuilt by replay):
//!
//! * [`ACQUIRERS`]: one document per acquirer (`<tenant>/<acquirer>`), its state as the
//!   aggregate folds it: which acquirers a tenant has, without reading every aggregate.
//! * [`PENDING`]: one document per exchange (`<tenant>/<payment>`) saying whether an attempt
//!   is in flight (sent, not answered) and whether a reversal or a stored completion advice
//!   waits for delivery, and when: the store-and-forward worker's to-do list, which survives
//!   restarts because it is rebuilt from the log.

use cqrs_es::Aggregate as _;
use mpos_es::{Projection, StoreError, StoredEvent};
use serde::{Deserialize, Serialize};

use crate::acquirer::{self, Acquirer, AcquirerEvent};
use crate::exchange::{self, ExchangeEvent};

/// The acquirers projection's name.
pub const ACQUIRERS: &str = "routing-acquirers";
/// The pending-work projection's name.
pub const PENDING: &str = "routing-pending";

/// One document per acquirer: [`Acquirer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AcquirersProjection;

impl Projection for AcquirersProjection {
    type View = Acquirer;

    fn name(&self) -> &'static str {
        ACQUIRERS
    }

    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.aggregate_type == acquirer::AGGREGATE_TYPE)
            .then(|| event.event.aggregate_id.clone())
    }

    fn apply(&self, view: &mut Acquirer, event: &StoredEvent) -> Result<(), StoreError> {
        if event.event.aggregate_type == acquirer::AGGREGATE_TYPE {
            let event: AcquirerEvent = serde_json::from_str(&event.event.payload)?;
            view.apply(event);
        }
        Ok(())
    }
}

/// What is outstanding on one exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    /// The tenant.
    pub tenant_id: String,
    /// The payment.
    pub payment_id: String,
    /// An attempt was sent and not answered yet.
    pub in_flight: bool,
    /// When the attempt in flight was recorded, Unix microseconds.
    pub sent_at_us: i64,
    /// A reversal is queued and not acknowledged.
    pub reversal_pending: bool,
    /// When the next delivery of the pending reversal or advice is due, Unix microseconds
    /// (0: now).
    pub next_attempt_at_us: i64,
    /// A completion advice is stored and not acknowledged (absent from documents written
    /// before advices were stored).
    #[serde(default)]
    pub advice_pending: bool,
}

/// One document per exchange: [`PendingView`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PendingProjection;

impl Projection for PendingProjection {
    type View = PendingView;

    fn name(&self) -> &'static str {
        PENDING
    }

    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.aggregate_type == exchange::AGGREGATE_TYPE)
            .then(|| event.event.aggregate_id.clone())
    }

    fn apply(&self, view: &mut PendingView, event: &StoredEvent) -> Result<(), StoreError> {
        if event.event.aggregate_type != exchange::AGGREGATE_TYPE {
            return Ok(());
        }
        match serde_json::from_str::<ExchangeEvent>(&event.event.payload)? {
            ExchangeEvent::Decided(decided) => {
                view.tenant_id = decided.tenant_id;
                view.payment_id = decided.payment_id;
            }
            ExchangeEvent::RequestSent(_) => {
                view.in_flight = true;
                view.sent_at_us = event.event.occurred_at_us;
            }
            ExchangeEvent::Responded(_) => view.in_flight = false,
            ExchangeEvent::ReversalQueued(_) => {
                view.reversal_pending = true;
                // A reversal supersedes a stored advice.
                view.advice_pending = false;
                view.next_attempt_at_us = 0;
            }
            ExchangeEvent::ReversalAttemptFailed(failed) => {
                view.next_attempt_at_us = failed
                    .next_attempt_at
                    .as_ref()
                    .map_or(0, mpos_proto::timestamp_to_micros);
            }
            ExchangeEvent::ReversalAcknowledged(_) => view.reversal_pending = false,
            ExchangeEvent::AdviceQueued(_) => {
                view.advice_pending = true;
                view.next_attempt_at_us = 0;
            }
            ExchangeEvent::AdviceAttemptFailed(failed) => {
                view.next_attempt_at_us = failed
                    .next_attempt_at
                    .as_ref()
                    .map_or(0, mpos_proto::timestamp_to_micros);
            }
            ExchangeEvent::AdviceAcknowledged(_) => view.advice_pending = false,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_document_written_before_advices_still_reads() {
        let old = r#"{"tenant_id": "acme", "payment_id": "p-1", "in_flight": false,
            "sent_at_us": 5, "reversal_pending": true, "next_attempt_at_us": 9}"#;
        let view: PendingView = serde_json::from_str(old).expect("an old document reads");
        assert!(view.reversal_pending);
        assert!(!view.advice_pending);
        assert_eq!(view.next_attempt_at_us, 9);
    }
}
