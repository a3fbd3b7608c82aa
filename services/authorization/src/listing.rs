//! The payments read model (`authorization-payments`): one document per payment, its state
//! folded from its events exactly as the aggregate folds them, for the admin API's list of a
//! tenant's payments, the most recently changed first (the operator console's live list).
//!
//! It is caught up when it is read, not on the payment path: a payment costs it nothing
//! until somebody lists payments. Like every read model it can be rebuilt from the log and
//! compared with the live one (`mposctl replay --read-model authorization-payments`).

use mpos_errors::ServiceError;
use mpos_es::{Projection, ProjectionRunner, StoreError, StoredEvent};
use mpos_proto::authorization as pb;

use crate::engine::response_of;
use crate::payment::{self, Payment, PaymentEvent};

/// The read model's name.
pub const PAYMENTS: &str = "authorization-payments";

/// At most this many payments in one list.
pub const MAX_LIST: u32 = 500;

/// Folds each payment's events into its [`Payment`] state.
#[derive(Debug, Clone, Copy)]
pub struct PaymentsProjection;

impl Projection for PaymentsProjection {
    type View = Payment;

    fn name(&self) -> &'static str {
        PAYMENTS
    }

    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.aggregate_type == payment::AGGREGATE_TYPE)
            .then(|| event.event.aggregate_id.clone())
    }

    fn apply(&self, view: &mut Payment, event: &StoredEvent) -> Result<(), StoreError> {
        let event: PaymentEvent = serde_json::from_str(&event.event.payload)?;
        cqrs_es::Aggregate::apply(view, event);
        Ok(())
    }
}

/// A tenant's payments, the most recently changed first, as their answers.
pub async fn recent(
    runner: &ProjectionRunner<PaymentsProjection>,
    tenant_id: &str,
    limit: u32,
) -> Result<pb::PaymentList, ServiceError> {
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ServiceError::bad_request(format!(
            "limit: a number from 1 to {MAX_LIST}"
        )));
    }
    runner.catch_up().await?;
    let documents = runner
        .store()
        .recent_documents(PAYMENTS, tenant_id, limit)
        .await?;
    let mut payments = Vec::with_capacity(documents.len());
    for document in documents {
        let payment: Payment = serde_json::from_str(&document.payload).map_err(|error| {
            tracing::error!(%error, projection = PAYMENTS, "unreadable document");
            ServiceError::internal("unreadable document")
        })?;
        payments.push(response_of(&payment));
    }
    Ok(pb::PaymentList { payments })
}
