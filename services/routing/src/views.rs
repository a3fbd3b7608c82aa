//! Read models built from the service's own log (dropped and rebuilt by replay):
//!
//! * [`ACQUIRERS`]: one document per acquirer (`<tenant>/<acquirer>`), its state as the
//!   aggregate folds it: which acquirers a tenant has, without reading every aggregate.
//! * [`PENDING`]: one document per exchange (`<tenant>/<payment>`) with something
//!   outstanding — an attempt in flight (sent, not answered), a reversal or a stored
//!   completion advice waiting for delivery, and when: the store-and-forward worker's to-do
//!   list, which survives restarts because it is rebuilt from the log. A document is removed
//!   once nothing is outstanding, so the list does not grow with every payment.

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
        // A document removed when nothing was outstanding starts again from the default
        // view: its ids come from the event (the aggregate id is `tenant/payment`).
        if view.tenant_id.is_empty() {
            view.tenant_id.clone_from(&event.event.tenant_id);
            if let Some(payment_id) = event
                .event
                .aggregate_id
                .strip_prefix(&event.event.tenant_id)
                .and_then(|rest| rest.strip_prefix('/'))
            {
                view.payment_id = payment_id.to_owned();
            }
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
        // Nothing outstanding: the document is removed, and what it held must not matter
        // to a later one, so that the live read model equals its replay.
        if !self.retains(view) {
            *view = PendingView {
                tenant_id: std::mem::take(&mut view.tenant_id),
                payment_id: std::mem::take(&mut view.payment_id),
                ..PendingView::default()
            };
        }
        Ok(())
    }

    /// Only exchanges with something outstanding (an attempt in flight, a reversal or an
    /// advice to deliver) keep a document: the delivery sweep and the start-up check read
    /// every document, so the read model must not grow with every payment ever routed.
    fn retains(&self, view: &PendingView) -> bool {
        view.in_flight || view.reversal_pending || view.advice_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(position: u64, event: &ExchangeEvent) -> StoredEvent {
        StoredEvent {
            global_position: position,
            event: mpos_es::NewEvent {
                event_id: format!("e{position}"),
                tenant_id: "acme".into(),
                aggregate_type: exchange::AGGREGATE_TYPE.into(),
                aggregate_id: "acme/p-1".into(),
                sequence: position,
                event_type: "x".into(),
                event_version: "1.0".into(),
                payload: serde_json::to_string(event).expect("payload"),
                metadata: "{}".into(),
                occurred_at_us: 7,
            },
            previous_hash: [0; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn only_exchanges_with_something_outstanding_keep_a_document() {
        use mpos_proto::routing as pb;
        let projection = PendingProjection;
        let mut view = PendingView::default();
        let apply = |view: &mut PendingView, position, event: ExchangeEvent| {
            projection
                .apply(view, &stored(position, &event))
                .expect("apply");
            projection.retains(view)
        };
        assert!(!apply(
            &mut view,
            1,
            ExchangeEvent::Decided(pb::RouteDecided::default())
        ));
        assert!(apply(
            &mut view,
            2,
            ExchangeEvent::RequestSent(pb::AcquirerRequestSent::default())
        ));
        assert!(!apply(
            &mut view,
            3,
            ExchangeEvent::Responded(pb::AcquirerResponded::default())
        ));
        // Removed, then a reversal: the document starts again, its ids from the event.
        let mut again = PendingView::default();
        assert!(apply(
            &mut again,
            4,
            ExchangeEvent::ReversalQueued(pb::ReversalQueued::default())
        ));
        assert_eq!(
            (again.tenant_id.as_str(), again.payment_id.as_str()),
            ("acme", "p-1")
        );
        assert!(again.reversal_pending);
        assert!(!apply(
            &mut again,
            5,
            ExchangeEvent::ReversalAcknowledged(pb::ReversalAcknowledged::default())
        ));
    }

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
