//! The payment path over the ports: a submission is validated (bad input changes nothing),
//! its caller authenticated, then checked, deciphered, routed and sent, and its outcome
//! recorded on the payment aggregate in two commits — up to the point of no return, then the
//! answer. A retry of a submission answers what was recorded, without a second authorization
//! at the acquirer.

use std::sync::Arc;

use mpos_errors::ServiceError;
use mpos_es::{CommandMetadata, Cqrs, EventStore};
use mpos_proto::authorization as pb;
use mpos_proto::routing as rpb;
use mpos_proto::{timestamp_from_micros, timestamp_to_micros};
use sha2::{Digest, Sha256};

use crate::card::CardData;
use crate::checks::{self, Decline, PaymentFacts};
use crate::keys::ksn_belongs_to;
use crate::payment::{self, Payment, PaymentCommand, PaymentError, Step};
use crate::ports::{
    AttestationPass, DeviceKind, Hsm, HsmFailure, Router, TerminalFacts, Terminals, TokenCheck,
};

/// Who is calling, as the transport established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A PED: the SHA-256 (lowercase hex) of the client certificate it presented over mTLS.
    Device {
        /// The certificate's digest.
        certificate_sha256: String,
    },
    /// A SoftPOS phone (server-authenticated TLS only), with the attestation token it
    /// presented (in the request body, or as the bearer token of a status read).
    SoftPos {
        /// The compact JWS.
        attestation_token: String,
    },
}

/// The ports.
#[derive(Clone)]
pub struct Ports {
    /// Terminal facts.
    pub terminals: Arc<dyn Terminals>,
    /// The HSM.
    pub hsm: Arc<dyn Hsm>,
    /// The routing service.
    pub router: Arc<dyn Router>,
    /// SoftPOS tokens.
    pub tokens: Arc<dyn TokenCheck>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// The payment operations.
pub struct Authorizer {
    store: EventStore,
    payments: Arc<Cqrs<Payment>>,
    /// The payment path's commands, on the payment as the request loaded it once.
    held: mpos_es::Aggregates<Payment>,
    ports: Ports,
    /// The payments read model, caught up when listed.
    listing: mpos_es::ProjectionRunner<crate::listing::PaymentsProjection>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

/// A payment's snapshot is taken every this many events.
const PAYMENT_SNAPSHOT_EVERY: usize = 20;

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable event");
    ServiceError::internal("unreadable event")
}

fn valid_key(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Checks the shape of a submission; nothing is recorded for a malformed one.
pub fn validate(request: &pb::PaymentRequest) -> Result<(), ServiceError> {
    let bad = |message: &str| Err(ServiceError::bad_request(message));
    if !valid_key(&request.terminal_id) {
        return bad("terminal_id: 1-64 characters of A-Z a-z 0-9 . _ -");
    }
    if !valid_key(&request.idempotency_key) {
        return bad("idempotency_key: 1-64 characters of A-Z a-z 0-9 . _ -");
    }
    if !(1..=tms_params::Amount::MAX).contains(&request.amount_minor) {
        return bad("amount_minor: 1 to 999999999999");
    }
    if request.currency.len() != 3 || !request.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return bad("currency: an ISO 4217 alphabetic code, e.g. EUR");
    }
    match pb::TransactionType::try_from(request.transaction_type) {
        Ok(pb::TransactionType::Unspecified) | Err(_) => {
            return bad("transaction_type: purchase, refund, pre_authorization or completion");
        }
        Ok(pb::TransactionType::Completion) if request.original_payment_id.is_empty() => {
            return bad("original_payment_id: required for a completion");
        }
        Ok(_) => {}
    }
    if matches!(
        pb::EntryMode::try_from(request.entry_mode),
        Ok(pb::EntryMode::Unspecified) | Err(_)
    ) {
        return bad("entry_mode: chip, contactless or swipe_fallback");
    }
    if !matches!(request.ksn.len(), 20 | 24) || !is_hex(&request.ksn) {
        return bad("ksn: 20 (TDES DUKPT) or 24 (AES DUKPT) hex digits");
    }
    let block = if request.ksn.len() == 20 { 8 } else { 16 };
    let data = request.encrypted_card_data.len();
    if data == 0 || data > 64 || !data.is_multiple_of(block) {
        return bad("encrypted_card_data: 1 to 64 bytes, whole cipher blocks");
    }
    let pin = &request.encrypted_pin_block;
    if !pin.is_empty() && (pin.len() != block * 2 || !is_hex(pin)) {
        return bad("encrypted_pin_block: one cipher block as hex (16 digits TDES, 32 AES)");
    }
    if request.emv_data.len() > 1024 {
        return bad("emv_data: at most 1024 bytes");
    }
    let psn = &request.pan_sequence_number;
    if !psn.is_empty() && (psn.len() != 2 || !psn.bytes().all(|b| b.is_ascii_digit())) {
        return bad("pan_sequence_number: 2 digits");
    }
    if request.attestation_token.len() > 8_192 {
        return bad("attestation_token: at most 8192 characters");
    }
    Ok(())
}

/// SHA-256 of the submission without its credential (a retry may carry a fresher token).
pub fn request_digest(request: &pb::PaymentRequest) -> String {
    let mut canonical = request.clone();
    canonical.attestation_token.clear();
    let bytes = prost::Message::encode_to_vec(&canonical);
    hex::encode(Sha256::digest(bytes))
}

/// The answer for a payment as recorded.
pub fn response_of(payment: &Payment) -> pb::PaymentResponse {
    let received = payment.received.clone().unwrap_or_default();
    let card = payment.card.clone().unwrap_or_default();
    let masked_pan = if card.bin.is_empty() {
        String::new()
    } else {
        let hidden = usize::try_from(card.pan_length)
            .unwrap_or(0)
            .saturating_sub(card.bin.len() + card.last_four.len());
        format!("{}{}{}", card.bin, "*".repeat(hidden), card.last_four)
    };
    let mut response = pb::PaymentResponse {
        payment_id: received.payment_id.clone(),
        status: payment.status,
        masked_pan,
        amount_minor: received.amount_minor,
        currency: received.currency.clone(),
        received_at: received.received_at,
        terminal_id: received.terminal_id.clone(),
        ..pb::PaymentResponse::default()
    };
    if let Some(approved) = &payment.approved {
        response.approved = true;
        response.response_code = approved.response_code.clone();
        response.auth_code = approved.auth_code.clone();
        response.issuer_emv_data = approved.issuer_emv_data.clone();
        response.stan = approved.stan.clone();
        response.rrn = approved.rrn.clone();
        response.acquirer_id = approved.acquirer_id.clone();
        response.decided_at = approved.decided_at;
        response.message = if approved.advice_stored {
            "approved; the completion is stored and sent to the acquirer until acknowledged".into()
        } else {
            "approved".into()
        };
    }
    if let Some(declined) = &payment.declined {
        response.decline_reason = declined.reason;
        response.response_code = declined.response_code.clone();
        response.message = declined.message.clone();
        response.issuer_emv_data = declined.issuer_emv_data.clone();
        response.acquirer_id = declined.acquirer_id.clone();
        response.stan = declined.stan.clone();
        response.rrn = declined.rrn.clone();
        response.decided_at = declined.decided_at;
    }
    if let Some(timed_out) = &payment.timed_out {
        response.decline_reason = pb::DeclineReason::AcquirerTimeout.into();
        response.acquirer_id = timed_out.acquirer_id.clone();
        response.message = "the acquirer did not answer in time; the payment is reversed".into();
        response.decided_at = timed_out.decided_at;
    }
    if payment.reversal.is_some() {
        // Whatever the acquirer said, the payment does not stand.
        response.approved = false;
        if response.decline_reason == i32::from(pb::DeclineReason::Unspecified) {
            response.message = "reversed".into();
        }
    }
    response
}

/// What a failed step records.
enum Stop {
    /// Declined by a check, with the steps passed before it.
    Declined(Vec<Step>, Decline),
    /// A platform fault: nothing is recorded, the caller gets the error.
    Fault(ServiceError),
}

impl From<ServiceError> for Stop {
    fn from(error: ServiceError) -> Self {
        Stop::Fault(error)
    }
}

fn hsm_decline(
    steps: &[Step],
    failure: HsmFailure,
    rejected: pb::DeclineReason,
    what: &str,
) -> Stop {
    let decline = match failure {
        HsmFailure::Rejected(_) => Decline::new(rejected, format!("{what} could not be used")),
        HsmFailure::Unavailable(reason) => {
            tracing::warn!(%reason, operation = what, "hsm unavailable");
            Decline::new(
                pb::DeclineReason::SystemUnavailable,
                "the payment could not be processed now; nothing was charged",
            )
        }
    };
    Stop::Declined(steps.to_vec(), decline)
}

fn routing_entry_mode(mode: i32) -> rpb::EntryMode {
    match pb::EntryMode::try_from(mode) {
        Ok(pb::EntryMode::Chip) => rpb::EntryMode::Chip,
        Ok(pb::EntryMode::Contactless) => rpb::EntryMode::Contactless,
        Ok(pb::EntryMode::SwipeFallback) => rpb::EntryMode::SwipeFallback,
        _ => rpb::EntryMode::Unspecified,
    }
}

fn routing_type(kind: i32) -> rpb::TransactionType {
    match pb::TransactionType::try_from(kind) {
        Ok(pb::TransactionType::Purchase) => rpb::TransactionType::Purchase,
        Ok(pb::TransactionType::Refund) => rpb::TransactionType::Refund,
        Ok(pb::TransactionType::PreAuthorization) => rpb::TransactionType::PreAuthorization,
        Ok(pb::TransactionType::Completion) => rpb::TransactionType::Completion,
        _ => rpb::TransactionType::Unspecified,
    }
}

/// Routing's answer to `Authorize` as the payment's conclusion (ADR 24): the route its
/// decision took, then the outcome. Without an answer the outcome is unknown: a time-out,
/// reversed after.
fn conclusion(
    tenant_id: &str,
    payment_id: &str,
    answer: Result<rpb::AuthorizeResponse, ServiceError>,
    decided_at_us: i64,
) -> PaymentCommand {
    let decided_at = Some(timestamp_from_micros(decided_at_us));
    let conclude =
        |routed: Option<pb::PaymentRouted>, outcome: PaymentCommand| PaymentCommand::Conclude {
            routed,
            outcome: Box::new(outcome),
        };
    let declined = |reason: pb::DeclineReason, stage: pb::PaymentStatus, message: String| {
        pb::PaymentDeclined {
            tenant_id: tenant_id.to_owned(),
            payment_id: payment_id.to_owned(),
            reason: reason.into(),
            stage: stage.into(),
            message,
            decided_at,
            ..pb::PaymentDeclined::default()
        }
    };
    let mut answer = match answer {
        Ok(answer) => answer,
        // Routing refused the request as it stands before it recorded or sent anything (its
        // checks come first): nothing reached an acquirer, so there is nothing to reverse.
        Err(error) if error.code == mpos_errors::ErrorCode::BadRequest => {
            tracing::warn!(error = %error.message, %payment_id, "routing refused the request");
            return conclude(
                None,
                PaymentCommand::Decline(declined(
                    pb::DeclineReason::SystemUnavailable,
                    pb::PaymentStatus::Decrypted,
                    "the payment could not be sent to the acquirer; nothing was charged".into(),
                )),
            );
        }
        Err(error) => {
            // The routing service did not answer: the outcome is unknown, so it is treated
            // as a time-out and reversed (routing reverses an unanswered attempt it finds at
            // start, too).
            tracing::warn!(error = %error.message, %payment_id, "routing did not answer");
            return conclude(
                None,
                PaymentCommand::TimeOut(pb::PaymentTimedOut {
                    tenant_id: tenant_id.to_owned(),
                    payment_id: payment_id.to_owned(),
                    acquirer_id: String::new(),
                    decided_at,
                }),
            );
        }
    };
    let decision = answer.decision.take().unwrap_or_default();
    let Some(first) = decision.candidates.first() else {
        let reason = if decision.no_route_reason.is_empty() {
            "no acquirer for this payment".to_owned()
        } else {
            decision.no_route_reason.clone()
        };
        return conclude(
            None,
            PaymentCommand::Decline(declined(
                pb::DeclineReason::NoRoute,
                pb::PaymentStatus::Decrypted,
                reason,
            )),
        );
    };
    let routed = pb::PaymentRouted {
        tenant_id: tenant_id.to_owned(),
        payment_id: payment_id.to_owned(),
        decision_id: decision.decision_id.clone(),
        acquirer_id: first.acquirer_id.clone(),
        rule_version: decision.rule_version,
        rule_id: decision.rule_id.clone(),
    };
    let acquirer_id = if answer.acquirer_id.is_empty() {
        first.acquirer_id.clone()
    } else {
        answer.acquirer_id.clone()
    };
    if answer.pin_block_invalid {
        return conclude(
            Some(routed),
            PaymentCommand::Decline(pb::PaymentDeclined {
                acquirer_id,
                ..declined(
                    pb::DeclineReason::PinBlockInvalid,
                    pb::PaymentStatus::Routed,
                    "the PIN block could not be translated for the acquirer; nothing was charged"
                        .into(),
                )
            }),
        );
    }
    let outcome = match rpb::ExchangeOutcome::try_from(answer.outcome) {
        // Stored: a completion advice in doubt that routing stored and repeats until the
        // acquirer acknowledges it: the completion stands (nothing to reverse).
        Ok(outcome @ (rpb::ExchangeOutcome::Approved | rpb::ExchangeOutcome::Stored)) => {
            PaymentCommand::Approve(pb::PaymentApproved {
                tenant_id: tenant_id.to_owned(),
                payment_id: payment_id.to_owned(),
                acquirer_id,
                response_code: answer.response_code,
                auth_code: answer.auth_code,
                stan: answer.stan,
                rrn: answer.rrn,
                issuer_emv_data: answer.issuer_emv_data,
                decided_at,
                advice_stored: outcome == rpb::ExchangeOutcome::Stored,
            })
        }
        Ok(rpb::ExchangeOutcome::Declined) => PaymentCommand::Decline(pb::PaymentDeclined {
            response_code: answer.response_code.clone(),
            acquirer_id,
            issuer_emv_data: answer.issuer_emv_data,
            stan: answer.stan,
            rrn: answer.rrn,
            ..declined(
                pb::DeclineReason::IssuerDeclined,
                pb::PaymentStatus::Routed,
                format!("declined by the issuer ({})", answer.response_code),
            )
        }),
        Ok(rpb::ExchangeOutcome::Unavailable) => PaymentCommand::Decline(pb::PaymentDeclined {
            acquirer_id,
            ..declined(
                pb::DeclineReason::AcquirerUnavailable,
                pb::PaymentStatus::Routed,
                "no acquirer could be reached; nothing was charged".into(),
            )
        }),
        // Timed out or an answer that could not be trusted: routing queued the reversal
        // already.
        _ => PaymentCommand::TimeOut(pb::PaymentTimedOut {
            tenant_id: tenant_id.to_owned(),
            payment_id: payment_id.to_owned(),
            acquirer_id,
            decided_at,
        }),
    };
    conclude(Some(routed), outcome)
}

/// A submission on its way: what the steps found, kept for the request to routing.
struct Prepared {
    steps: Vec<Step>,
    card: CardData,
    /// What routing decides the route by beyond the authorization's own fields.
    route: rpb::RouteFacts,
    /// The terminal's PIN block under its DUKPT key, for routing to have translated.
    dukpt_pin: Option<rpb::DukptPinBlock>,
    emv: Vec<u8>,
    merchant_id: String,
    mcc: String,
}

impl Authorizer {
    /// The operations over `store` and the ports.
    pub fn new(store: EventStore, ports: Ports) -> Self {
        Self {
            payments: mpos_es::snapshot_framework(&store, PAYMENT_SNAPSHOT_EVERY),
            held: mpos_es::Aggregates::new(&store, PAYMENT_SNAPSHOT_EVERY, ()),
            listing: mpos_es::ProjectionRunner::new(
                store.clone(),
                crate::listing::PaymentsProjection,
            ),
            store,
            ports,
        }
    }

    fn metadata(tenant_id: &str, actor: &str, correlation_id: &str) -> CommandMetadata {
        CommandMetadata {
            tenant_id: tenant_id.to_owned(),
            correlation_id: correlation_id.to_owned(),
            causation_id: String::new(),
            traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
            actor: actor.to_owned(),
        }
    }

    /// A tenant's payments, the most recently changed first (at most `limit`).
    pub async fn recent_payments(
        &self,
        tenant_id: &str,
        limit: u32,
    ) -> Result<pb::PaymentList, ServiceError> {
        crate::listing::recent(&self.listing, tenant_id, limit).await
    }

    /// A payment's events in order, each as recorded (the same JSON integrators receive;
    /// no card data beyond BIN and last four): `{"events": [{"sequence", "occurredAt",
    /// "event"}]}`. Not found when the tenant has no such payment.
    pub async fn payment_history(
        &self,
        tenant_id: &str,
        payment_id: &str,
    ) -> Result<serde_json::Value, ServiceError> {
        let events = self
            .store
            .read_aggregate(
                payment::AGGREGATE_TYPE,
                &payment::aggregate_id(tenant_id, payment_id),
                0,
            )
            .await?;
        if events.is_empty() {
            return Err(ServiceError::not_found("payment not found"));
        }
        let mut history = Vec::with_capacity(events.len());
        for stored in events {
            let event: serde_json::Value =
                serde_json::from_str(&stored.event.payload).map_err(unreadable)?;
            let occurred_at = chrono::DateTime::from_timestamp_micros(stored.event.occurred_at_us)
                .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            history.push(serde_json::json!({
                "sequence": stored.event.sequence,
                "occurredAt": occurred_at,
                "event": event,
            }));
        }
        Ok(serde_json::json!({ "events": history }))
    }

    /// A payment as recorded (default when none).
    pub async fn payment(
        &self,
        tenant_id: &str,
        payment_id: &str,
    ) -> Result<Payment, ServiceError> {
        let mut state = Payment::default();
        for stored in self
            .store
            .read_aggregate(
                payment::AGGREGATE_TYPE,
                &payment::aggregate_id(tenant_id, payment_id),
                0,
            )
            .await?
        {
            let event: payment::PaymentEvent =
                serde_json::from_str(&stored.event.payload).map_err(unreadable)?;
            cqrs_es::Aggregate::apply(&mut state, event);
        }
        Ok(state)
    }

    /// Who the caller is: the tenant of the terminal — a PED by its certificate (which must
    /// be the terminal's), a SoftPOS phone by the tenant it names; with `verify_token`, the
    /// phone's token must be valid for that tenant and terminal (for a payment it is a
    /// payment check instead, whose failure is a recorded decline).
    async fn identify(
        &self,
        caller: &Caller,
        tenant_hint: &str,
        terminal_id: &str,
        verify_token: bool,
    ) -> Result<String, ServiceError> {
        match caller {
            Caller::Device { certificate_sha256 } => {
                let Some((tenant_id, bound_terminal)) = self
                    .ports
                    .terminals
                    .by_certificate(certificate_sha256)
                    .await?
                else {
                    return Err(ServiceError::forbidden(
                        "this device certificate is bound to no terminal",
                    ));
                };
                if bound_terminal != terminal_id
                    || (!tenant_hint.is_empty() && tenant_hint != tenant_id)
                {
                    return Err(ServiceError::forbidden(
                        "this device certificate is bound to another terminal",
                    ));
                }
                Ok(tenant_id)
            }
            Caller::SoftPos { attestation_token } => {
                if !valid_key(tenant_hint) {
                    return Err(ServiceError::bad_request(
                        "tenant_id: required for a SoftPOS terminal",
                    ));
                }
                if verify_token {
                    let now_unix = u64::try_from(mpos_es::now_micros() / 1_000_000).unwrap_or(0);
                    self.ports
                        .tokens
                        .check(attestation_token, tenant_hint, terminal_id, now_unix)
                        .map_err(|reason| {
                            ServiceError::unauthenticated(format!(
                                "attestation token refused: {reason}"
                            ))
                        })?;
                }
                Ok(tenant_hint.to_owned())
            }
        }
    }

    /// Submits a payment (or answers a retry of one): the tenant and the answer.
    pub async fn pay(
        &self,
        caller: &Caller,
        request: pb::PaymentRequest,
    ) -> Result<(String, pb::PaymentResponse), ServiceError> {
        validate(&request)?;
        let tenant_id = self
            .identify(caller, &request.tenant_id, &request.terminal_id, false)
            .await?;
        let answer = self.pay_as(caller, &tenant_id, request).await?;
        Ok((tenant_id, answer))
    }

    async fn pay_as(
        &self,
        caller: &Caller,
        tenant_id: &str,
        request: pb::PaymentRequest,
    ) -> Result<pb::PaymentResponse, ServiceError> {
        let tenant_id = tenant_id.to_owned();
        let payment_id =
            payment::payment_id(&tenant_id, &request.terminal_id, &request.idempotency_key);
        let digest = request_digest(&request);
        let aggregate_id = payment::aggregate_id(&tenant_id, &payment_id);
        // Held from here on: the submission and the outcome are decided on this state and
        // keep it. A payment's key is almost always new, so it is not read first (ADR 27):
        // the submission's commit is refused if the key was taken, and a retry is then
        // answered as it always was, with the first payment's answer (`after_lost_race`).
        let mut held = self.held.assume_new(&aggregate_id);
        let now_us = mpos_es::now_micros();
        let received = pb::PaymentReceived {
            tenant_id: tenant_id.clone(),
            payment_id: payment_id.clone(),
            terminal_id: request.terminal_id.clone(),
            idempotency_key: request.idempotency_key.clone(),
            transaction_type: request.transaction_type,
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
            entry_mode: request.entry_mode,
            ksn: request.ksn.to_ascii_uppercase(),
            pin_present: !request.encrypted_pin_block.is_empty(),
            request_sha256: digest.clone(),
            original_payment_id: request.original_payment_id.clone(),
            received_at: Some(timestamp_from_micros(now_us)),
        };
        let actor = format!("terminal:{}", request.terminal_id);
        let metadata = Self::metadata(&tenant_id, &actor, &payment_id);

        let prepared = match self
            .prepare(caller, &tenant_id, &payment_id, &request, now_us)
            .await
        {
            Ok(prepared) => prepared,
            // A retry's answer comes before whatever stopped the checks this time (the
            // terminal since suspended, the HSM away): the idempotency check is the first.
            Err(Stop::Fault(error)) => {
                return self
                    .after_lost_race(&tenant_id, &payment_id, &digest, error)
                    .await;
            }
            Err(Stop::Declined(mut steps, decline)) => {
                steps.push(Step::Declined(pb::PaymentDeclined {
                    tenant_id: tenant_id.clone(),
                    payment_id: payment_id.clone(),
                    reason: decline.reason.into(),
                    message: decline.message,
                    decided_at: Some(timestamp_from_micros(mpos_es::now_micros())),
                    ..pb::PaymentDeclined::default()
                }));
                return self
                    .submit(&mut held, received, steps, metadata, &digest)
                    .await;
            }
        };

        // Commit 1: the point of no return, the payment handed to routing decrypted; routing
        // decides the route and sends it in one call (ADR 24).
        match self
            .held
            .execute(
                &mut held,
                PaymentCommand::Submit {
                    received: received.clone(),
                    steps: prepared.steps,
                },
                metadata.clone(),
            )
            .await
            .map_err(mpos_es::command_error)
        {
            Ok(()) => {}
            Err(error) => {
                return self
                    .after_lost_race(&tenant_id, &payment_id, &digest, error)
                    .await;
            }
        }

        let card = &prepared.card;
        let secrets = rpb::CardSecrets {
            pan: card.pan_digits().to_string(),
            expiry: card.expiry_yymm(),
            track2: card.track2().to_string(),
            pan_sequence_number: request.pan_sequence_number.clone(),
        };
        let authorize = rpb::AuthorizeRequest {
            tenant_id: tenant_id.clone(),
            payment_id: payment_id.clone(),
            decision_id: String::new(),
            transaction_type: routing_type(request.transaction_type).into(),
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
            entry_mode: routing_entry_mode(request.entry_mode).into(),
            terminal_id: request.terminal_id.clone(),
            merchant_id: prepared.merchant_id.clone(),
            merchant_category_code: prepared.mcc.clone(),
            sealed_card: None,
            pin_block: String::new(),
            pin_block_acquirer_id: String::new(),
            emv_data: prepared.emv.clone(),
            original_payment_id: request.original_payment_id.clone(),
            original_auth_code: String::new(),
            route: Some(prepared.route),
            dukpt_pin_block: prepared.dukpt_pin,
        };
        let answer = self.ports.router.authorize(authorize, secrets).await;
        let command = conclusion(&tenant_id, &payment_id, answer, mpos_es::now_micros());
        self.held
            .execute(&mut held, command, metadata.clone())
            .await
            .map_err(mpos_es::command_error)?;
        if held.state().status() != pb::PaymentStatus::TimedOut {
            return Ok(response_of(held.state()));
        }
        let acquirer_id = held
            .state()
            .timed_out
            .as_ref()
            .map(|timed_out| timed_out.acquirer_id.clone())
            .unwrap_or_default();
        self.reverse_now(
            &tenant_id,
            &payment_id,
            pb::ReversalReason::AcquirerTimeout,
            &acquirer_id,
            metadata,
        )
        .await?;
        let payment = self.payment(&tenant_id, &payment_id).await?;
        Ok(response_of(&payment))
    }

    /// Records a reversal request and hands it to routing.
    async fn reverse_now(
        &self,
        tenant_id: &str,
        payment_id: &str,
        reason: pb::ReversalReason,
        acquirer_id: &str,
        metadata: CommandMetadata,
    ) -> Result<(), ServiceError> {
        mpos_es::execute(
            &self.payments,
            &payment::aggregate_id(tenant_id, payment_id),
            PaymentCommand::RequestReversal(pb::ReversalRequested {
                tenant_id: tenant_id.to_owned(),
                payment_id: payment_id.to_owned(),
                reason: reason.into(),
                acquirer_id: acquirer_id.to_owned(),
            }),
            metadata,
        )
        .await?;
        let reason_text = match reason {
            pb::ReversalReason::AcquirerTimeout => "acquirer_timeout",
            pb::ReversalReason::TerminalUnreachable => "terminal_unreachable",
            pb::ReversalReason::InvalidResponse => "invalid_response",
            _ => "terminal_request",
        };
        if let Err(error) = self
            .ports
            .router
            .reverse(rpb::ReverseRequest {
                tenant_id: tenant_id.to_owned(),
                payment_id: payment_id.to_owned(),
                reason: reason_text.to_owned(),
            })
            .await
        {
            // Routing reverses unanswered attempts it finds at start; the request is on the
            // payment and a later call (the terminal's, or the sweep) repeats it.
            tracing::warn!(error = %error.message, %payment_id, "reversal not handed to routing");
        }
        Ok(())
    }

    /// Records a submission that ended before routing (declined).
    async fn submit(
        &self,
        held: &mut mpos_es::Loaded<Payment>,
        received: pb::PaymentReceived,
        steps: Vec<Step>,
        metadata: CommandMetadata,
        digest: &str,
    ) -> Result<pb::PaymentResponse, ServiceError> {
        let tenant_id = received.tenant_id.clone();
        let payment_id = received.payment_id.clone();
        if let Err(error) = self
            .held
            .execute(held, PaymentCommand::Submit { received, steps }, metadata)
            .await
            .map_err(mpos_es::command_error)
        {
            return self
                .after_lost_race(&tenant_id, &payment_id, digest, error)
                .await;
        }
        Ok(response_of(held.state()))
    }

    /// A submission that failed (its commit refused, or its checks stopped): if a submission
    /// of the same key exists, answer as a retry is answered; otherwise `error`, which is
    /// also the answer when the log cannot be read to tell.
    async fn after_lost_race(
        &self,
        tenant_id: &str,
        payment_id: &str,
        digest: &str,
        error: ServiceError,
    ) -> Result<pb::PaymentResponse, ServiceError> {
        let Ok(existing) = self.payment(tenant_id, payment_id).await else {
            return Err(error);
        };
        match retry_answer(&existing, digest)? {
            Some(answer) => Ok(answer),
            None => Err(error),
        }
    }

    /// The checks, decryption, card checks, routing decision and PIN translation, in order.
    async fn prepare(
        &self,
        caller: &Caller,
        tenant_id: &str,
        payment_id: &str,
        request: &pb::PaymentRequest,
        now_us: i64,
    ) -> Result<Prepared, Stop> {
        use pb::DeclineReason as R;
        let mut steps = Vec::new();
        let facts = self
            .ports
            .terminals
            .facts(tenant_id, &request.terminal_id)
            .await?;
        let emv = checks::forwarded_emv_data(&request.emv_data)
            .map_err(|error| Stop::Fault(ServiceError::bad_request(error.to_string())))?;
        let payment_facts = PaymentFacts {
            transaction_type: pb::TransactionType::try_from(request.transaction_type)
                .unwrap_or(pb::TransactionType::Unspecified),
            amount_minor: request.amount_minor,
            currency: &request.currency,
            entry_mode: pb::EntryMode::try_from(request.entry_mode)
                .unwrap_or(pb::EntryMode::Unspecified),
            cryptogram: emv.cryptogram,
        };
        let decline = |steps: &Vec<Step>, reason: R, message: &str| {
            Stop::Declined(steps.clone(), Decline::new(reason, message))
        };
        let facts: TerminalFacts = match facts {
            Some(facts) if facts.tenant_suspended => {
                return Err(decline(
                    &steps,
                    R::TerminalNotActive,
                    "the tenant is suspended",
                ));
            }
            Some(facts) => facts,
            None => return Err(decline(&steps, R::TerminalUnknown, "terminal unknown")),
        };
        // The transport must match the device: a SoftPOS terminal never pays over mTLS with a
        // certificate, a PED never without one.
        match (caller, facts.kind) {
            (Caller::Device { .. }, DeviceKind::Ped)
            | (Caller::SoftPos { .. }, DeviceKind::SoftPos) => {}
            (Caller::SoftPos { .. }, DeviceKind::Ped) => {
                return Err(Stop::Fault(ServiceError::unauthenticated(
                    "a PED pays over mTLS with its device certificate",
                )));
            }
            (Caller::Device { .. }, DeviceKind::SoftPos) => {
                return Err(Stop::Fault(ServiceError::forbidden(
                    "a SoftPOS terminal pays with its attestation token",
                )));
            }
        }
        checks::check_terminal(Some(&facts.context), &payment_facts)
            .map_err(|decline| Stop::Declined(steps.clone(), decline))?;
        let attestation = if facts.kind == DeviceKind::SoftPos {
            if request.attestation_token.is_empty() {
                return Err(decline(
                    &steps,
                    R::AttestationMissing,
                    "no attestation token",
                ));
            }
            let now_unix = u64::try_from(now_us / 1_000_000).unwrap_or(0);
            match self.ports.tokens.check(
                &request.attestation_token,
                tenant_id,
                &request.terminal_id,
                now_unix,
            ) {
                Ok(pass) => Some(pass),
                Err(reason) => {
                    return Err(decline(
                        &steps,
                        R::AttestationInvalid,
                        &format!("attestation token refused: {reason}"),
                    ));
                }
            }
        } else {
            None
        };
        let Some(key) = facts.key.as_ref().filter(|key| !key.revoked) else {
            return Err(decline(
                &steps,
                R::TerminalNotActive,
                "the terminal holds no valid key",
            ));
        };
        if !ksn_belongs_to(&request.ksn, &key.initial_key_id) {
            return Err(decline(
                &steps,
                R::CardDataInvalid,
                "the KSN is not of this terminal's key",
            ));
        }
        let parameters = match &facts.context.parameters {
            Ok(parameters) => parameters,
            Err(missing) => {
                return Err(decline(&steps, R::ParametersMissing, missing));
            }
        };
        let AttestationPass { token_id, verdict } = attestation.unwrap_or(AttestationPass {
            token_id: String::new(),
            verdict: String::new(),
        });
        let mcc = parameters
            .values()
            .merchant_category_code
            .map(|mcc| format!("{:04}", mcc.code()))
            .unwrap_or_default();
        steps.push(Step::Checked(pb::PaymentChecked {
            tenant_id: tenant_id.to_owned(),
            payment_id: payment_id.to_owned(),
            merchant_id: facts.context.merchant_id.clone(),
            terminal_group_id: facts.context.terminal_group_id.clone(),
            merchant_category_code: mcc.clone(),
            parameters_version: facts.context.parameters_version,
            attestation_token_id: token_id,
            attestation_verdict: verdict,
        }));

        // Decipher inside the HSM.
        let (plaintext, token) = self
            .ports
            .hsm
            .decrypt_card_data(
                tenant_id,
                &key.bdk,
                &request.ksn,
                &request.encrypted_card_data,
            )
            .await
            .map_err(|failure| hsm_decline(&steps, failure, R::CardDataInvalid, "the card data"))?;
        let card = CardData::from_plaintext(&plaintext).map_err(|error| {
            Stop::Declined(
                steps.clone(),
                Decline::new(R::CardDataInvalid, error.to_string()),
            )
        })?;
        drop(plaintext);
        let brand = routing_rules::CardBrand::from_bin(&card.bin());

        let summary = crate::card::CardSummary {
            bin: card.bin(),
            last_four: card.last_four(),
            pan_length: u32::try_from(card.pan_length()).unwrap_or(0),
            token,
            brand: brand.as_str().to_owned(),
        };
        let today = chrono::DateTime::from_timestamp_micros(now_us).unwrap_or_default();
        let card_check = checks::check_card(
            &card,
            &token,
            parameters,
            chrono::Datelike::year(&today),
            chrono::Datelike::month(&today),
        );
        let decrypted = Step::Decrypted(pb::CardDataDecrypted {
            tenant_id: tenant_id.to_owned(),
            payment_id: payment_id.to_owned(),
            card: Some(summary.to_proto()),
            bdk_kcv: String::new(),
        });
        if let Err(decline) = card_check {
            steps.push(decrypted);
            return Err(Stop::Declined(steps, decline));
        }
        steps.push(decrypted);
        // The card checked (its token came with the decryption, ADR 24): routing decides
        // the route in the request that sends the payment.
        let route = rpb::RouteFacts {
            bin: card.bin(),
            pan_length: u32::try_from(card.pan_length()).unwrap_or(0),
            terminal_group_id: facts.context.terminal_group_id.clone(),
        };
        let dukpt_pin = (!request.encrypted_pin_block.is_empty()).then(|| rpb::DukptPinBlock {
            bdk: key.bdk.clone(),
            ksn: request.ksn.to_ascii_uppercase(),
            block: request.encrypted_pin_block.to_ascii_uppercase(),
        });
        Ok(Prepared {
            steps,
            card,
            route,
            dukpt_pin,
            emv: emv.forwarded,
            merchant_id: facts.context.merchant_id.clone(),
            mcc,
        })
    }

    /// A payment's status, for the terminal that made it.
    pub async fn status(
        &self,
        caller: &Caller,
        tenant_hint: &str,
        terminal_id: &str,
        payment_id: &str,
    ) -> Result<pb::PaymentResponse, ServiceError> {
        let tenant_id = self
            .identify(caller, tenant_hint, terminal_id, true)
            .await?;
        let payment = self.payment(&tenant_id, payment_id).await?;
        match &payment.received {
            Some(received) if received.terminal_id == terminal_id => Ok(response_of(&payment)),
            _ => Err(ServiceError::not_found("payment not found")),
        }
    }

    /// The terminal asks for a reversal (it timed out, or the card refused the issuer's
    /// answer).
    pub async fn reverse(
        &self,
        caller: &Caller,
        tenant_hint: &str,
        terminal_id: &str,
        payment_id: &str,
    ) -> Result<pb::PaymentResponse, ServiceError> {
        let tenant_id = self
            .identify(caller, tenant_hint, terminal_id, true)
            .await?;
        let payment = self.payment(&tenant_id, payment_id).await?;
        let Some(received) = payment
            .received
            .as_ref()
            .filter(|received| received.terminal_id == terminal_id)
        else {
            return Err(ServiceError::not_found("payment not found"));
        };
        if payment.status() == pb::PaymentStatus::Declined {
            return Ok(response_of(&payment));
        }
        let acquirer = payment
            .routed
            .as_ref()
            .map(|routed| routed.acquirer_id.clone())
            .unwrap_or_default();
        let metadata = Self::metadata(
            &tenant_id,
            &format!("terminal:{terminal_id}"),
            &received.payment_id,
        );
        self.reverse_now(
            &tenant_id,
            payment_id,
            pb::ReversalReason::TerminalRequest,
            &acquirer,
            metadata,
        )
        .await
        .map_err(|error| match error.code {
            mpos_errors::ErrorCode::Conflict => {
                ServiceError::conflict("the payment is still being authorized; ask again")
            }
            _ => error,
        })?;
        Ok(response_of(&self.payment(&tenant_id, payment_id).await?))
    }

    /// The platform could not deliver the answer to the terminal (the connection closed
    /// before the answer was written): the payment is reversed unless it was declined.
    pub async fn undelivered(&self, tenant_id: &str, payment_id: &str) -> Result<(), ServiceError> {
        let payment = self.payment(tenant_id, payment_id).await?;
        if !matches!(
            payment.status(),
            pb::PaymentStatus::Approved | pb::PaymentStatus::TimedOut
        ) {
            return Ok(());
        }
        let acquirer = payment
            .routed
            .as_ref()
            .map(|routed| routed.acquirer_id.clone())
            .unwrap_or_default();
        let metadata = Self::metadata(tenant_id, "service:authorization", payment_id);
        self.reverse_now(
            tenant_id,
            payment_id,
            pb::ReversalReason::TerminalUnreachable,
            &acquirer,
            metadata,
        )
        .await
    }

    /// Routing acknowledged a reversal (from routing's stream).
    pub async fn reversal_acknowledged(
        &self,
        acknowledged: &rpb::ReversalAcknowledged,
    ) -> Result<(), ServiceError> {
        let payment = self
            .payment(&acknowledged.tenant_id, &acknowledged.payment_id)
            .await?;
        if payment.received.is_none() {
            return Ok(());
        }
        let command = PaymentCommand::ConfirmReversal(pb::PaymentReversed {
            tenant_id: acknowledged.tenant_id.clone(),
            payment_id: acknowledged.payment_id.clone(),
            acquirer_id: acknowledged.acquirer_id.clone(),
            response_code: acknowledged.response_code.clone(),
            reversed_at: Some(timestamp_from_micros(mpos_es::now_micros())),
        });
        let metadata = Self::metadata(
            &acknowledged.tenant_id,
            "service:routing",
            &acknowledged.payment_id,
        );
        // A reversal routing made on its own (an unanswered attempt at its start) is
        // recorded here first.
        if payment.status() != pb::PaymentStatus::ReversalPending
            && payment.reversal.is_none()
            && matches!(
                payment.status(),
                pb::PaymentStatus::Routed
                    | pb::PaymentStatus::Approved
                    | pb::PaymentStatus::TimedOut
            )
        {
            mpos_es::execute(
                &self.payments,
                &payment::aggregate_id(&acknowledged.tenant_id, &acknowledged.payment_id),
                PaymentCommand::RequestReversal(pb::ReversalRequested {
                    tenant_id: acknowledged.tenant_id.clone(),
                    payment_id: acknowledged.payment_id.clone(),
                    reason: pb::ReversalReason::AcquirerTimeout.into(),
                    acquirer_id: acknowledged.acquirer_id.clone(),
                }),
                metadata.clone(),
            )
            .await?;
        }
        match mpos_es::execute(
            &self.payments,
            &payment::aggregate_id(&acknowledged.tenant_id, &acknowledged.payment_id),
            command,
            metadata,
        )
        .await
        {
            Ok(()) => Ok(()),
            // Not ours to reverse (declined, unknown): nothing to record.
            Err(error) if error.code == mpos_errors::ErrorCode::Conflict => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// When the payment was received, Unix microseconds (0 when unknown).
    pub fn received_at_us(payment: &Payment) -> i64 {
        payment
            .received
            .as_ref()
            .and_then(|received| received.received_at.as_ref())
            .map_or(0, timestamp_to_micros)
    }
}

/// The answer to a repeated submission, if there is one: the recorded outcome; a conflict for
/// a reused key or a payment still in progress.
fn retry_answer(
    existing: &Payment,
    digest: &str,
) -> Result<Option<pb::PaymentResponse>, ServiceError> {
    let Some(received) = &existing.received else {
        return Ok(None);
    };
    if received.request_sha256 != digest {
        return Err(PaymentError::AlreadySubmitted {
            same_request: false,
        }
        .into());
    }
    if !existing.is_concluded() {
        return Err(ServiceError::conflict(
            "this payment is still being authorized; ask again for its answer",
        ));
    }
    Ok(Some(response_of(existing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::PaymentRequest {
        pb::PaymentRequest {
            terminal_id: "t-1".into(),
            idempotency_key: "k-1".into(),
            transaction_type: pb::TransactionType::Purchase.into(),
            amount_minor: 1_250,
            currency: "EUR".into(),
            entry_mode: pb::EntryMode::Chip.into(),
            ksn: "FFFF9876543210E00001".into(),
            encrypted_card_data: vec![0; 24],
            ..pb::PaymentRequest::default()
        }
    }

    #[test]
    fn a_well_formed_request_passes() {
        assert_eq!(validate(&request()), Ok(()));
    }

    #[test]
    fn each_malformed_field_is_named() {
        type Edit = fn(&mut pb::PaymentRequest);
        let cases: Vec<(Edit, &str)> = vec![
            (|r| r.terminal_id = "t 1".into(), "terminal_id"),
            (|r| r.idempotency_key.clear(), "idempotency_key"),
            (|r| r.amount_minor = 0, "amount_minor"),
            (|r| r.amount_minor = 1_000_000_000_000, "amount_minor"),
            (|r| r.currency = "eur".into(), "currency"),
            (|r| r.transaction_type = 0, "transaction_type"),
            (
                |r| r.transaction_type = pb::TransactionType::Completion.into(),
                "original_payment_id",
            ),
            (|r| r.entry_mode = 9, "entry_mode"),
            (|r| r.ksn = "FFFF".into(), "ksn"),
            (
                |r| r.encrypted_card_data = vec![0; 20],
                "encrypted_card_data",
            ),
            (|r| r.encrypted_card_data.clear(), "encrypted_card_data"),
            (
                |r| r.encrypted_pin_block = "0123".into(),
                "encrypted_pin_block",
            ),
            (
                |r| r.pan_sequence_number = "1".into(),
                "pan_sequence_number",
            ),
            (|r| r.emv_data = vec![0; 1025], "emv_data"),
        ];
        for (edit, field) in cases {
            let mut bad = request();
            edit(&mut bad);
            let error = validate(&bad).expect_err(field);
            assert_eq!(error.code, mpos_errors::ErrorCode::BadRequest, "{field}");
            assert!(
                error.message.starts_with(field),
                "{field}: {}",
                error.message
            );
        }
    }

    #[test]
    fn the_digest_ignores_the_token_only() {
        let mut with_token = request();
        with_token.attestation_token = "a.b.c".into();
        assert_eq!(request_digest(&request()), request_digest(&with_token));
        let mut other = request();
        other.amount_minor += 1;
        assert_ne!(request_digest(&request()), request_digest(&other));
    }

    #[test]
    fn a_retry_gets_the_recorded_answer_or_a_conflict() {
        let mut payment = Payment::default();
        assert_eq!(retry_answer(&payment, "d"), Ok(None));
        cqrs_es::Aggregate::apply(
            &mut payment,
            payment::PaymentEvent::Received(pb::PaymentReceived {
                payment_id: "p".into(),
                request_sha256: "d".into(),
                ..pb::PaymentReceived::default()
            }),
        );
        assert_eq!(
            retry_answer(&payment, "d").map_err(|e| e.code),
            Err(mpos_errors::ErrorCode::Conflict)
        );
        assert_eq!(
            retry_answer(&payment, "other").map_err(|e| e.code),
            Err(mpos_errors::ErrorCode::Conflict)
        );
        cqrs_es::Aggregate::apply(
            &mut payment,
            payment::PaymentEvent::Declined(pb::PaymentDeclined {
                reason: pb::DeclineReason::BinBlocked.into(),
                message: "the card's BIN is blocked".into(),
                ..pb::PaymentDeclined::default()
            }),
        );
        let answer = retry_answer(&payment, "d").expect("ok").expect("answer");
        assert!(!answer.approved);
        assert_eq!(
            answer.decline_reason,
            i32::from(pb::DeclineReason::BinBlocked)
        );
    }

    #[test]
    fn a_completion_whose_advice_is_stored_is_answered_approved() {
        let mut payment = Payment::default();
        for event in [
            payment::PaymentEvent::Received(pb::PaymentReceived {
                payment_id: "p".into(),
                transaction_type: pb::TransactionType::Completion.into(),
                ..pb::PaymentReceived::default()
            }),
            payment::PaymentEvent::Approved(pb::PaymentApproved {
                auth_code: "A1B2C3".into(),
                stan: "004711".into(),
                advice_stored: true,
                ..pb::PaymentApproved::default()
            }),
        ] {
            cqrs_es::Aggregate::apply(&mut payment, event);
        }
        let answer = response_of(&payment);
        assert!(answer.approved);
        assert_eq!(answer.auth_code, "A1B2C3");
        assert!(
            answer.response_code.is_empty(),
            "the acquirer has not answered"
        );
        assert!(answer.message.contains("stored"), "{}", answer.message);
    }
}
