//! What the host answers to one message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use acquirer_link::profile::{self, AuthorizationResponse, HostRequest, RequestKind, field};
use acquirer_link::{AuthorizationRequest, LinkError, MacProvider, mac};
use iso8583::{Message, Mti, Spec};

use crate::controls::{self, Controls, ReceivedMessage};
use crate::issuer::{ArqcInput, IssuerCrypto, IssuerError, issuer_authentication_data};
use crate::rules::{Check, Outcome, RuleInput, RuleSet, WRONG_PIN_CODE};

/// What the simulator does with a message whose MAC does not verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadMacPolicy {
    /// Answer with response code 96 (system malfunction), itself MACed: the client sees a
    /// definite refusal. The default.
    #[default]
    Respond96,
    /// Read it and answer nothing, as hosts that drop unauthenticated traffic do: the client
    /// times out.
    Drop,
}

/// The response code of a request the host cannot process.
const FORMAT_ERROR: &str = "30";
/// The response code of a bad MAC or an issuer check that could not be made.
const SYSTEM_MALFUNCTION: &str = "96";
/// The response code of a request from another acquirer.
const UNKNOWN_ACQUIRER: &str = "31";

pub(crate) struct Host {
    pub(crate) spec: Arc<Spec>,
    pub(crate) rules: RuleSet,
    pub(crate) mac: Option<Arc<dyn MacProvider>>,
    pub(crate) bad_mac: BadMacPolicy,
    pub(crate) issuer: Option<Arc<dyn IssuerCrypto>>,
    pub(crate) acquirer_id: Option<String>,
    pub(crate) controls: Arc<Controls>,
    pub(crate) auth_codes: AtomicU32,
}

fn text(message: &Message, number: u8) -> Option<String> {
    message
        .get_text(number)
        .map(|value| value.trim().to_owned())
}

fn last4(message: &Message) -> Option<String> {
    let pan = text(message, field::PAN).or_else(|| {
        text(message, field::TRACK2)
            .and_then(|track| track.split(['D', '=']).next().map(str::to_owned))
    })?;
    pan.get(pan.len().saturating_sub(4)..).map(str::to_owned)
}

/// An answer echoing the request's identifying fields, with `code`.
fn echo_answer(request: &Message, code: &str) -> Result<Message, LinkError> {
    let mti = request.mti().to_string();
    let response_mti = profile::response_mti(&mti)
        .ok_or_else(|| LinkError::Protocol(format!("{mti} is not a request")))?;
    let mut answer = Message::new(Mti::parse(&response_mti)?);
    for number in [
        field::PROCESSING_CODE,
        field::AMOUNT,
        field::TRANSMISSION_DATE_TIME,
        field::STAN,
        field::LOCAL_TIME,
        field::LOCAL_DATE,
        field::ACQUIRER_ID,
        field::RRN,
        field::TERMINAL_ID,
        field::MERCHANT_ID,
        field::CURRENCY,
        field::NETWORK_CODE,
    ] {
        if let Some(value) = request.get_text(number) {
            answer.set_text(number, value);
        }
    }
    answer.set_text(field::RESPONSE_CODE, code);
    Ok(answer)
}

impl Host {
    /// The encoded answer to `raw`, or `None` when nothing is answered.
    pub(crate) async fn handle(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let message = match iso8583::decode(&self.spec, raw) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(len = raw.len(), error = %error, "acquirer-sim: undecodable message dropped");
                return None;
            }
        };
        let mti = message.mti().to_string();
        let seq = self.controls.record(ReceivedMessage {
            seq: 0,
            mti: mti.clone(),
            stan: text(&message, field::STAN).and_then(|stan| stan.parse().ok()),
            rrn: text(&message, field::RRN),
            amount_minor: text(&message, field::AMOUNT).and_then(|amount| amount.parse().ok()),
            pan_last4: last4(&message),
            mcc: text(&message, field::MCC),
            pos_entry_mode: text(&message, field::POS_ENTRY_MODE),
            response_code: None,
            reverses: None,
            approval_code: text(&message, field::AUTH_CODE),
            original_data: text(&message, field::ORIGINAL_DATA),
            repeats: None,
        });
        if mti == "0400" || mti == "0401" {
            self.match_reversal(&message, seq);
        }
        if controls::is_advice(&mti) {
            let repeats = self.controls.match_advice(seq);
            if repeats.is_some() {
                tracing::info!(mti = %mti, "acquirer-sim: duplicate advice, acknowledged, not captured again");
            }
        }
        let faults = self.controls.faults();
        if faults.blackholed(&mti) {
            tracing::debug!(mti = %mti, "acquirer-sim: blackholed");
            return None;
        }
        let answer = match self.check_mac(raw, &message).await {
            Ok(()) => self.answer(&message, &mti).await,
            Err(policy) => match policy {
                BadMacPolicy::Drop => {
                    tracing::warn!(mti = %mti, "acquirer-sim: bad mac, message dropped");
                    return None;
                }
                BadMacPolicy::Respond96 => {
                    tracing::warn!(mti = %mti, "acquirer-sim: bad mac, answered 96");
                    echo_answer(&message, SYSTEM_MALFUNCTION)
                }
            },
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(mti = %mti, error = %error.label(), "acquirer-sim: cannot answer");
                return None;
            }
        };
        let code = answer
            .get_text(field::RESPONSE_CODE)
            .unwrap_or_default()
            .to_owned();
        let encoded = match mac::seal(&self.spec, answer, self.mac.as_ref()).await {
            Ok(encoded) => encoded,
            Err(error) => {
                tracing::warn!(mti = %mti, error = %error.label(), "acquirer-sim: cannot encode the answer");
                return None;
            }
        };
        let delay = faults.delay_for(&mti);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.controls.answered(seq, &code);
        Some(encoded)
    }

    async fn check_mac(&self, raw: &[u8], message: &Message) -> Result<(), BadMacPolicy> {
        let Some(provider) = &self.mac else {
            return Ok(());
        };
        match mac::verify(raw, message, provider).await {
            Ok(()) => Ok(()),
            Err(LinkError::BadMac) => Err(self.bad_mac),
            Err(error) => {
                tracing::warn!(error = %error.label(), "acquirer-sim: mac check failed");
                // Not a verdict on the message: answer 96 rather than pretend.
                Err(BadMacPolicy::Respond96)
            }
        }
    }

    /// Notes which request a reversal reverses (even when it goes unanswered). A reversal
    /// carries no card data: the original is found by its RRN and the MTI and STAN of field
    /// 90.
    fn match_reversal(&self, message: &Message, seq: u64) {
        if let Ok(HostRequest::Reversal { original, .. }) = profile::request_from_message(message) {
            let found = self.controls.match_original(
                seq,
                &original.rrn,
                original.kind.mti(),
                original.stan,
            );
            tracing::debug!(matched = found.is_some(), "acquirer-sim: reversal");
        }
    }

    async fn answer(&self, message: &Message, mti: &str) -> Result<Message, LinkError> {
        let request = match profile::request_from_message(message) {
            Ok(request) => request,
            Err(error) => {
                tracing::info!(mti = %mti, error = %error.label(), "acquirer-sim: malformed request, answered 30");
                return echo_answer(message, FORMAT_ERROR);
            }
        };
        match request {
            HostRequest::Network { .. } => echo_answer(message, "00"),
            // Reversing something never received is still acknowledged (the acquirer has
            // nothing to undo).
            HostRequest::Reversal { .. } => echo_answer(message, "00"),
            // A repeated advice is acknowledged like the advice (a duplicate is noted, see
            // `Controls::match_advice`, and not captured again).
            HostRequest::AdviceRepeat { advice, .. } => match &self.acquirer_id {
                Some(expected) if *expected != advice.acquirer_institution_id => {
                    echo_answer(message, UNKNOWN_ACQUIRER)
                }
                _ => echo_answer(message, "00"),
            },
            HostRequest::Authorization(request) => {
                let processing_code = text(message, field::PROCESSING_CODE).unwrap_or_default();
                let response = self.authorize(&request, mti, &processing_code).await;
                profile::response_to_message(&response)
            }
        }
    }

    async fn authorize(
        &self,
        request: &AuthorizationRequest,
        mti: &str,
        processing_code: &str,
    ) -> AuthorizationResponse {
        let mut response = AuthorizationResponse::answering(request, "00");
        if let Some(expected) = &self.acquirer_id
            && *expected != request.acquirer_institution_id
        {
            response.response_code = UNKNOWN_ACQUIRER.to_owned();
            return response;
        }
        // An advice reports what happened: it is acknowledged, never declined.
        if request.kind == RequestKind::Completion {
            return response;
        }
        let evaluation = self.rules.evaluate(&RuleInput {
            mti,
            pan: request.pan.expose(),
            amount_minor: request.amount_minor,
            currency: &request.currency_numeric,
            processing_code,
        });
        let mut code = match &evaluation.outcome {
            Outcome::Approve => "00".to_owned(),
            Outcome::Decline(code) => code.clone(),
        };
        for check in &evaluation.checks {
            match check {
                Check::Pin => {
                    if let Some(failure) = self.check_pin(request).await {
                        response.response_code = failure.to_owned();
                        return response;
                    }
                }
                Check::Arqc { failure_code } => {
                    match self.check_arqc(request, &code).await {
                        Ok(Some(issuer_data)) => response.icc_data = Some(issuer_data),
                        Ok(None) => code.clone_from(failure_code),
                        Err(error) => {
                            tracing::warn!(
                                reason = error.kind(),
                                "acquirer-sim: arqc check not made"
                            );
                            code = SYSTEM_MALFUNCTION.to_owned();
                        }
                    }
                    if code != "00" && response.icc_data.is_none() {
                        break;
                    }
                }
            }
        }
        if code == "00" {
            let number = self.auth_codes.fetch_add(1, Ordering::Relaxed) % 1_000_000;
            response.auth_code = Some(format!("{number:06}"));
        }
        response.response_code = code;
        response
    }

    /// `None` when the PIN is right, else the decline code.
    async fn check_pin(&self, request: &AuthorizationRequest) -> Option<&'static str> {
        let Some(card) = self.rules.card(request.pan.expose()) else {
            tracing::info!("acquirer-sim: no pvv on file, pin declined");
            return Some(WRONG_PIN_CODE);
        };
        let Some(pin_block) = &request.pin_block else {
            return Some(WRONG_PIN_CODE);
        };
        let Some(issuer) = &self.issuer else {
            tracing::warn!("acquirer-sim: pin check without issuer keys");
            return Some(SYSTEM_MALFUNCTION);
        };
        match issuer
            .verify_pin(&request.pan, pin_block.expose(), card.pvki, &card.pvv)
            .await
        {
            Ok(true) => None,
            Ok(false) => Some(WRONG_PIN_CODE),
            Err(error) => {
                tracing::warn!(reason = error.kind(), "acquirer-sim: pin check not made");
                Some(SYSTEM_MALFUNCTION)
            }
        }
    }

    /// Tag 91 for the answer when the ARQC verifies, `None` when it does not.
    async fn check_arqc(
        &self,
        request: &AuthorizationRequest,
        code: &str,
    ) -> Result<Option<Vec<u8>>, IssuerError> {
        let Some(icc) = &request.icc_data else {
            return Ok(None);
        };
        let Some(issuer) = &self.issuer else {
            return Err(IssuerError::NotConfigured);
        };
        let arc: [u8; 2] = code
            .as_bytes()
            .try_into()
            .map_err(|_| IssuerError::Crypto("response code is not 2 characters".into()))?;
        let input = match ArqcInput::from_icc(
            request.pan.clone(),
            request.pan_sequence.as_deref(),
            icc,
            arc,
        ) {
            Ok(input) => input,
            Err(error) => {
                tracing::info!(
                    reason = error.kind(),
                    "acquirer-sim: icc data unusable, arqc declined"
                );
                return Ok(None);
            }
        };
        Ok(issuer
            .verify_arqc(&input)
            .await?
            .map(|arpc| issuer_authentication_data(&arpc, arc)))
    }
}
