//! The exchange aggregate (id `<tenant>/<payment id>`): one payment's routing decision, each
//! message sent to an acquirer and its answer, and the reversal that follows a payment whose
//! outcome the platform cannot stand behind, kept until the acquirer acknowledges it; or, for
//! a completion advice (0220) in doubt, the advice itself, stored and repeated (0221) until
//! the acquirer acknowledges it.
//!
//! ```text
//! decided → sent(1) → answered | unavailable → sent(2) → ...
//! sent(n) | answered → reversal queued → (attempt failed)* → reversal acknowledged
//! sent(n) advice, timed out | invalid → advice queued → (attempt failed)* → advice acknowledged
//! ```
//!
//! `AcquirerRequestSent` is written *before* the message goes out, so a crash between send and
//! answer leaves a sent attempt without an answer, which the service reverses (or, for an
//! advice, stores for repeat) at start. A stored advice means the completion stands; a
//! reversal asked for later (the terminal's, or a caller that treated the advice as timed
//! out) supersedes it: the repeats stop and the 0220 is reversed. Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::routing as pb;
use serde::{Deserialize, Serialize};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "exchange";

/// Why an exchange command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The payment was routed before (a retry of the same payment).
    #[error("the payment was routed already")]
    AlreadyDecided,
    /// The command does not fit the exchange's state.
    #[error("{0}")]
    InvalidTransition(&'static str),
    /// Nothing was sent, so there is nothing to reverse.
    #[error("nothing was sent to an acquirer for this payment: nothing to reverse")]
    NothingToReverse,
}

impl From<ExchangeError> for ServiceError {
    fn from(error: ExchangeError) -> Self {
        let message = error.to_string();
        match error {
            ExchangeError::AlreadyDecided => ServiceError::already_exists(message),
            ExchangeError::InvalidTransition(_) | ExchangeError::NothingToReverse => {
                ServiceError::conflict(message)
            }
        }
    }
}

/// What can be asked of an exchange.
#[derive(Clone, Debug, PartialEq)]
pub enum ExchangeCommand {
    /// Record the routing decision.
    Decide(pb::RouteDecided),
    /// Record that a message is about to be sent.
    Send(pb::AcquirerRequestSent),
    /// Record the routing decision and the first message about to be sent on it, together
    /// (a decision taken in `Authorize`).
    DecideAndSend(Box<pb::RouteDecided>, pb::AcquirerRequestSent),
    /// Record the answer (or its absence) to the attempt in flight.
    Respond(pb::AcquirerResponded),
    /// Queue a reversal until the acquirer acknowledges it.
    QueueReversal(pb::ReversalQueued),
    /// A delivery attempt of the reversal failed.
    ReversalFailed(pb::ReversalAttemptFailed),
    /// The acquirer acknowledged the reversal.
    AcknowledgeReversal(pb::ReversalAcknowledged),
    /// Store a completion advice in doubt for repeat until the acquirer acknowledges it.
    QueueAdvice(pb::AdviceQueued),
    /// A delivery of the stored advice failed.
    AdviceFailed(pb::AdviceAttemptFailed),
    /// The acquirer acknowledged the stored advice.
    AcknowledgeAdvice(pb::AdviceAcknowledged),
}

mpos_es::proto_events! {
    /// Events of the exchange aggregate.
    pub enum ExchangeEvent {
        /// The decision.
        Decided(pb::RouteDecided) = "mpos.routing.v1.RouteDecided",
        /// A message is going out.
        RequestSent(pb::AcquirerRequestSent) = "mpos.routing.v1.AcquirerRequestSent",
        /// Its answer, or none.
        Responded(pb::AcquirerResponded) = "mpos.routing.v1.AcquirerResponded",
        /// A reversal queued.
        ReversalQueued(pb::ReversalQueued) = "mpos.routing.v1.ReversalQueued",
        /// A reversal delivery failed.
        ReversalAttemptFailed(pb::ReversalAttemptFailed) = "mpos.routing.v1.ReversalAttemptFailed",
        /// The reversal acknowledged.
        ReversalAcknowledged(pb::ReversalAcknowledged) = "mpos.routing.v1.ReversalAcknowledged",
        /// A completion advice stored for repeat.
        AdviceQueued(pb::AdviceQueued) = "mpos.routing.v1.AdviceQueued",
        /// A repeat of the advice failed.
        AdviceAttemptFailed(pb::AdviceAttemptFailed) = "mpos.routing.v1.AdviceAttemptFailed",
        /// The advice acknowledged.
        AdviceAcknowledged(pb::AdviceAcknowledged) = "mpos.routing.v1.AdviceAcknowledged",
    }
}

/// One message sent and its answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// What was sent.
    pub sent: pb::AcquirerRequestSent,
    /// The answer, once known.
    pub answer: Option<pb::AcquirerResponded>,
}

/// A reversal's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reversal {
    /// What is reversed.
    pub queued: pb::ReversalQueued,
    /// Failed deliveries so far.
    pub failures: u32,
    /// The last failure's next attempt time, Unix microseconds (0: now).
    pub next_attempt_at_us: i64,
    /// The acknowledgement.
    pub acknowledged: Option<pb::ReversalAcknowledged>,
}

/// A stored completion advice's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// What is repeated.
    pub queued: pb::AdviceQueued,
    /// Failed deliveries so far.
    pub failures: u32,
    /// The last failure's next attempt time, Unix microseconds (0: now).
    pub next_attempt_at_us: i64,
    /// The acknowledgement.
    pub acknowledged: Option<pb::AdviceAcknowledged>,
}

/// An exchange's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// The decision.
    pub decided: Option<pb::RouteDecided>,
    /// The attempts, in order.
    pub attempts: Vec<Attempt>,
    /// The reversal, if one was queued.
    pub reversal: Option<Reversal>,
    /// The stored completion advice, if its 0220 was in doubt (absent from snapshots taken
    /// before advices were stored).
    #[serde(default)]
    pub advice: Option<Advice>,
}

fn outcome(answer: &pb::AcquirerResponded) -> pb::ExchangeOutcome {
    pb::ExchangeOutcome::try_from(answer.outcome).unwrap_or(pb::ExchangeOutcome::Unspecified)
}

impl Exchange {
    /// The attempt sent and not answered yet.
    pub fn in_flight(&self) -> Option<&Attempt> {
        self.attempts
            .last()
            .filter(|attempt| attempt.answer.is_none())
    }

    /// The last attempt that reached an acquirer (sent and not refused before sending).
    pub fn last_delivered(&self) -> Option<&Attempt> {
        self.attempts.iter().rev().find(|attempt| {
            attempt
                .answer
                .as_ref()
                .is_none_or(|answer| outcome(answer) != pb::ExchangeOutcome::Unavailable)
        })
    }

    /// Whether a reversal is queued and not acknowledged.
    pub fn reversal_pending(&self) -> bool {
        self.reversal
            .as_ref()
            .is_some_and(|reversal| reversal.acknowledged.is_none())
    }

    /// Whether a completion advice is stored, not acknowledged, and not superseded by a
    /// reversal.
    pub fn advice_pending(&self) -> bool {
        self.reversal.is_none()
            && self
                .advice
                .as_ref()
                .is_some_and(|advice| advice.acknowledged.is_none())
    }

    fn decide(&self, command: ExchangeCommand) -> Result<Vec<ExchangeEvent>, ExchangeError> {
        use ExchangeError::InvalidTransition as Invalid;
        match command {
            ExchangeCommand::Decide(decided) => {
                if self.decided.is_some() {
                    return Err(ExchangeError::AlreadyDecided);
                }
                Ok(vec![ExchangeEvent::Decided(decided)])
            }
            ExchangeCommand::Send(sent) => {
                let Some(decided) = &self.decided else {
                    return Err(Invalid("no routing decision to send on"));
                };
                if !decided.no_route_reason.is_empty() {
                    return Err(Invalid("the payment has no route"));
                }
                if self.reversal.is_some() {
                    return Err(Invalid("the payment is being reversed"));
                }
                if self.advice.is_some() {
                    return Err(Invalid("the completion advice is stored for repeat"));
                }
                if let Some(last) = self.attempts.last() {
                    match &last.answer {
                        None => return Err(Invalid("an attempt is in flight")),
                        Some(answer) if outcome(answer) != pb::ExchangeOutcome::Unavailable => {
                            return Err(Invalid("the acquirer answered already"));
                        }
                        Some(_) => {}
                    }
                }
                let expected = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX) + 1;
                if sent.attempt != expected {
                    return Err(Invalid("attempts are numbered 1, 2, ... in order"));
                }
                Ok(vec![ExchangeEvent::RequestSent(sent)])
            }
            ExchangeCommand::DecideAndSend(decided, sent) => {
                let decided = *decided;
                let mut events = self.decide(ExchangeCommand::Decide(decided.clone()))?;
                let mut after = self.clone();
                after.apply(ExchangeEvent::Decided(decided));
                events.extend(after.decide(ExchangeCommand::Send(sent))?);
                Ok(events)
            }
            ExchangeCommand::Respond(answer) => {
                if self.in_flight().is_none() {
                    return Err(Invalid("no attempt in flight"));
                }
                Ok(vec![ExchangeEvent::Responded(answer)])
            }
            ExchangeCommand::QueueReversal(queued) => {
                if self.reversal.is_some() {
                    return Ok(Vec::new());
                }
                let Some(delivered) = self.last_delivered() else {
                    return Err(ExchangeError::NothingToReverse);
                };
                if delivered
                    .answer
                    .as_ref()
                    .is_some_and(|answer| outcome(answer) == pb::ExchangeOutcome::Declined)
                {
                    return Err(Invalid("the acquirer declined: nothing to reverse"));
                }
                Ok(vec![ExchangeEvent::ReversalQueued(queued)])
            }
            ExchangeCommand::ReversalFailed(failed) => {
                if !self.reversal_pending() {
                    return Err(Invalid("no reversal pending"));
                }
                Ok(vec![ExchangeEvent::ReversalAttemptFailed(failed)])
            }
            ExchangeCommand::AcknowledgeReversal(acknowledged) => match &self.reversal {
                None => Err(Invalid("no reversal queued")),
                Some(reversal) if reversal.acknowledged.is_some() => Ok(Vec::new()),
                Some(_) => Ok(vec![ExchangeEvent::ReversalAcknowledged(acknowledged)]),
            },
            ExchangeCommand::QueueAdvice(queued) => {
                if self.advice.is_some() {
                    return Ok(Vec::new());
                }
                if self.reversal.is_some() {
                    return Err(Invalid("the payment is being reversed"));
                }
                // The last attempt: delivered, or refused before it could be sent (the
                // link was down) — the sale happened either way, so the advice goes out
                // once the acquirer can be reached.
                let Some(delivered) = self.attempts.last() else {
                    return Err(Invalid(
                        "nothing was sent to an acquirer: no advice to store",
                    ));
                };
                if pb::TransactionType::try_from(delivered.sent.transaction_type)
                    != Ok(pb::TransactionType::Completion)
                {
                    return Err(Invalid("only a completion advice is stored for repeat"));
                }
                if delivered.sent.stan != queued.original_stan
                    || delivered.sent.rrn != queued.original_rrn
                {
                    return Err(Invalid("the advice stored is not the one sent"));
                }
                if queued.approval_code.is_empty() || queued.original_data_elements.is_empty() {
                    return Err(Invalid("a repeat needs the advice's fields 38 and 90"));
                }
                if delivered.answer.as_ref().is_some_and(|answer| {
                    matches!(
                        outcome(answer),
                        pb::ExchangeOutcome::Approved | pb::ExchangeOutcome::Declined
                    )
                }) {
                    return Err(Invalid(
                        "the acquirer answered the advice: nothing to repeat",
                    ));
                }
                Ok(vec![ExchangeEvent::AdviceQueued(queued)])
            }
            ExchangeCommand::AdviceFailed(failed) => {
                if !self.advice_pending() {
                    return Err(Invalid("no advice pending"));
                }
                Ok(vec![ExchangeEvent::AdviceAttemptFailed(failed)])
            }
            // An acknowledgement is recorded even when a reversal superseded the advice
            // meanwhile: the acquirer did get it (and gets the reversal too).
            ExchangeCommand::AcknowledgeAdvice(acknowledged) => match &self.advice {
                None => Err(Invalid("no advice stored")),
                Some(advice) if advice.acknowledged.is_some() => Ok(Vec::new()),
                Some(_) => Ok(vec![ExchangeEvent::AdviceAcknowledged(acknowledged)]),
            },
        }
    }
}

impl Aggregate for Exchange {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = ExchangeCommand;
    type Event = ExchangeEvent;
    type Error = ExchangeError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ExchangeEvent::Decided(decided) => self.decided = Some(decided),
            ExchangeEvent::RequestSent(sent) => self.attempts.push(Attempt { sent, answer: None }),
            ExchangeEvent::Responded(answer) => {
                if let Some(last) = self.attempts.last_mut() {
                    last.answer = Some(answer);
                }
            }
            ExchangeEvent::ReversalQueued(queued) => {
                self.reversal = Some(Reversal {
                    queued,
                    ..Reversal::default()
                });
            }
            ExchangeEvent::ReversalAttemptFailed(failed) => {
                if let Some(reversal) = self.reversal.as_mut() {
                    reversal.failures = reversal.failures.max(failed.attempt);
                    reversal.next_attempt_at_us = failed
                        .next_attempt_at
                        .as_ref()
                        .map_or(0, mpos_proto::timestamp_to_micros);
                }
            }
            ExchangeEvent::ReversalAcknowledged(acknowledged) => {
                if let Some(reversal) = self.reversal.as_mut() {
                    reversal.acknowledged = Some(acknowledged);
                }
            }
            ExchangeEvent::AdviceQueued(queued) => {
                self.advice = Some(Advice {
                    queued,
                    ..Advice::default()
                });
            }
            ExchangeEvent::AdviceAttemptFailed(failed) => {
                if let Some(advice) = self.advice.as_mut() {
                    advice.failures = advice.failures.max(failed.attempt);
                    advice.next_attempt_at_us = failed
                        .next_attempt_at
                        .as_ref()
                        .map_or(0, mpos_proto::timestamp_to_micros);
                }
            }
            ExchangeEvent::AdviceAcknowledged(acknowledged) => {
                if let Some(advice) = self.advice.as_mut() {
                    advice.acknowledged = Some(acknowledged);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Test = TestFramework<Exchange>;

    fn decided() -> pb::RouteDecided {
        pb::RouteDecided {
            tenant_id: "acme".into(),
            payment_id: "p-1".into(),
            candidates: vec![
                pb::Candidate {
                    acquirer_id: "acq-a".into(),
                    ..pb::Candidate::default()
                },
                pb::Candidate {
                    acquirer_id: "acq-b".into(),
                    ..pb::Candidate::default()
                },
            ],
            ..pb::RouteDecided::default()
        }
    }

    fn sent(acquirer: &str, attempt: u32) -> pb::AcquirerRequestSent {
        pb::AcquirerRequestSent {
            acquirer_id: acquirer.into(),
            attempt,
            stan: format!("{attempt:06}"),
            ..pb::AcquirerRequestSent::default()
        }
    }

    fn answered(outcome: pb::ExchangeOutcome) -> pb::AcquirerResponded {
        pb::AcquirerResponded {
            outcome: outcome.into(),
            ..pb::AcquirerResponded::default()
        }
    }

    fn history(outcomes: &[pb::ExchangeOutcome]) -> Vec<ExchangeEvent> {
        let mut events = vec![ExchangeEvent::Decided(decided())];
        for (index, outcome) in outcomes.iter().enumerate() {
            let attempt = u32::try_from(index + 1).expect("small");
            events.push(ExchangeEvent::RequestSent(sent("acq", attempt)));
            events.push(ExchangeEvent::Responded(answered(*outcome)));
        }
        events
    }

    #[test]
    fn a_decision_and_its_first_request_are_recorded_together() {
        Test::with(())
            .given_no_previous_events()
            .when(ExchangeCommand::DecideAndSend(
                Box::new(decided()),
                sent("acq-a", 1),
            ))
            .then_expect_events(vec![
                ExchangeEvent::Decided(decided()),
                ExchangeEvent::RequestSent(sent("acq-a", 1)),
            ]);
        // Neither when decided already, nor a request numbered out of order.
        Test::with(())
            .given(vec![ExchangeEvent::Decided(decided())])
            .when(ExchangeCommand::DecideAndSend(
                Box::new(decided()),
                sent("acq-a", 1),
            ))
            .then_expect_error(ExchangeError::AlreadyDecided);
        Test::with(())
            .given_no_previous_events()
            .when(ExchangeCommand::DecideAndSend(
                Box::new(decided()),
                sent("acq-a", 2),
            ))
            .then_expect_error(ExchangeError::InvalidTransition(
                "attempts are numbered 1, 2, ... in order",
            ));
        // A decision without a route sends nothing.
        let no_route = pb::RouteDecided {
            no_route_reason: "no_rule_matched".into(),
            ..decided()
        };
        Test::with(())
            .given_no_previous_events()
            .when(ExchangeCommand::DecideAndSend(
                Box::new(no_route),
                sent("acq-a", 1),
            ))
            .then_expect_error(ExchangeError::InvalidTransition("the payment has no route"));
    }

    #[test]
    fn a_payment_is_decided_once() {
        Test::with(())
            .given(vec![ExchangeEvent::Decided(decided())])
            .when(ExchangeCommand::Decide(decided()))
            .then_expect_error(ExchangeError::AlreadyDecided);
    }

    #[test]
    fn the_next_acquirer_is_tried_only_after_an_unavailable_one() {
        Test::with(())
            .given(history(&[pb::ExchangeOutcome::Unavailable]))
            .when(ExchangeCommand::Send(sent("acq-b", 2)))
            .then_expect_events(vec![ExchangeEvent::RequestSent(sent("acq-b", 2))]);
        Test::with(())
            .given(history(&[pb::ExchangeOutcome::TimedOut]))
            .when(ExchangeCommand::Send(sent("acq-b", 2)))
            .then_expect_error(ExchangeError::InvalidTransition(
                "the acquirer answered already",
            ));
        let mut in_flight = vec![ExchangeEvent::Decided(decided())];
        in_flight.push(ExchangeEvent::RequestSent(sent("acq-a", 1)));
        Test::with(())
            .given(in_flight)
            .when(ExchangeCommand::Send(sent("acq-b", 2)))
            .then_expect_error(ExchangeError::InvalidTransition("an attempt is in flight"));
        Test::with(())
            .given(history(&[pb::ExchangeOutcome::Unavailable]))
            .when(ExchangeCommand::Send(sent("acq-b", 3)))
            .then_expect_error(ExchangeError::InvalidTransition(
                "attempts are numbered 1, 2, ... in order",
            ));
    }

    #[test]
    fn what_reached_no_acquirer_or_was_declined_is_not_reversed() {
        Test::with(())
            .given(history(&[pb::ExchangeOutcome::Unavailable]))
            .when(ExchangeCommand::QueueReversal(pb::ReversalQueued::default()))
            .then_expect_error(ExchangeError::NothingToReverse);
        Test::with(())
            .given(history(&[pb::ExchangeOutcome::Declined]))
            .when(ExchangeCommand::QueueReversal(pb::ReversalQueued::default()))
            .then_expect_error(ExchangeError::InvalidTransition(
                "the acquirer declined: nothing to reverse",
            ));
    }

    #[test]
    fn a_timed_out_or_unanswered_attempt_is_reversed_once_until_acknowledged() {
        let queued = pb::ReversalQueued {
            reason: "acquirer_timeout".into(),
            ..pb::ReversalQueued::default()
        };
        Test::with(())
            .given(history(&[
                pb::ExchangeOutcome::Unavailable,
                pb::ExchangeOutcome::TimedOut,
            ]))
            .when(ExchangeCommand::QueueReversal(queued.clone()))
            .then_expect_events(vec![ExchangeEvent::ReversalQueued(queued.clone())]);
        // Unanswered at a crash.
        let mut unanswered = vec![ExchangeEvent::Decided(decided())];
        unanswered.push(ExchangeEvent::RequestSent(sent("acq-a", 1)));
        Test::with(())
            .given(unanswered)
            .when(ExchangeCommand::QueueReversal(queued.clone()))
            .then_expect_events(vec![ExchangeEvent::ReversalQueued(queued.clone())]);
        let mut pending = history(&[pb::ExchangeOutcome::Approved]);
        pending.push(ExchangeEvent::ReversalQueued(queued.clone()));
        Test::with(())
            .given(pending.clone())
            .when(ExchangeCommand::QueueReversal(queued.clone()))
            .then_expect_events(vec![]);
        let acknowledged = pb::ReversalAcknowledged {
            response_code: "00".into(),
            attempts: 2,
            ..pb::ReversalAcknowledged::default()
        };
        Test::with(())
            .given(pending.clone())
            .when(ExchangeCommand::AcknowledgeReversal(acknowledged.clone()))
            .then_expect_events(vec![ExchangeEvent::ReversalAcknowledged(
                acknowledged.clone(),
            )]);
        let mut done = pending;
        done.push(ExchangeEvent::ReversalAcknowledged(acknowledged.clone()));
        Test::with(())
            .given(done.clone())
            .when(ExchangeCommand::AcknowledgeReversal(acknowledged))
            .then_expect_events(vec![]);
        Test::with(())
            .given(done)
            .when(ExchangeCommand::ReversalFailed(
                pb::ReversalAttemptFailed::default(),
            ))
            .then_expect_error(ExchangeError::InvalidTransition("no reversal pending"));
    }

    fn completion_sent(attempt: u32) -> pb::AcquirerRequestSent {
        pb::AcquirerRequestSent {
            mti: "0220".into(),
            rrn: format!("50010000{attempt:04}"),
            transaction_type: pb::TransactionType::Completion.into(),
            ..sent("acq-a", attempt)
        }
    }

    /// A completion whose 0220 (attempt 1) got `outcome`, or no answer.
    fn advice_history(outcome: Option<pb::ExchangeOutcome>) -> Vec<ExchangeEvent> {
        let mut events = vec![ExchangeEvent::Decided(decided())];
        events.push(ExchangeEvent::RequestSent(completion_sent(1)));
        if let Some(outcome) = outcome {
            events.push(ExchangeEvent::Responded(answered(outcome)));
        }
        events
    }

    fn advice_queued(reason: &str) -> pb::AdviceQueued {
        let sent = completion_sent(1);
        pb::AdviceQueued {
            reason: reason.into(),
            acquirer_id: sent.acquirer_id,
            original_mti: sent.mti,
            original_stan: sent.stan,
            original_rrn: sent.rrn,
            approval_code: "A1B2C3".into(),
            original_data_elements: "0100004700".to_owned() + &"0".repeat(32),
            ..pb::AdviceQueued::default()
        }
    }

    #[test]
    fn a_completion_advice_in_doubt_is_stored_once_until_acknowledged() {
        let queued = advice_queued("acquirer_timeout");
        for doubt in [
            Some(pb::ExchangeOutcome::TimedOut),
            Some(pb::ExchangeOutcome::InvalidResponse),
            // Unanswered at a crash.
            None,
        ] {
            Test::with(())
                .given(advice_history(doubt))
                .when(ExchangeCommand::QueueAdvice(queued.clone()))
                .then_expect_events(vec![ExchangeEvent::AdviceQueued(queued.clone())]);
        }
        let mut pending = advice_history(Some(pb::ExchangeOutcome::TimedOut));
        pending.push(ExchangeEvent::AdviceQueued(queued.clone()));
        // Queued again: nothing new.
        Test::with(())
            .given(pending.clone())
            .when(ExchangeCommand::QueueAdvice(queued.clone()))
            .then_expect_events(vec![]);
        let failed = pb::AdviceAttemptFailed {
            attempt: 1,
            error: "timeout".into(),
            ..pb::AdviceAttemptFailed::default()
        };
        Test::with(())
            .given(pending.clone())
            .when(ExchangeCommand::AdviceFailed(failed.clone()))
            .then_expect_events(vec![ExchangeEvent::AdviceAttemptFailed(failed.clone())]);
        let acknowledged = pb::AdviceAcknowledged {
            response_code: "00".into(),
            attempts: 2,
            ..pb::AdviceAcknowledged::default()
        };
        let mut failed_once = pending.clone();
        failed_once.push(ExchangeEvent::AdviceAttemptFailed(failed));
        Test::with(())
            .given(failed_once)
            .when(ExchangeCommand::AcknowledgeAdvice(acknowledged.clone()))
            .then_expect_events(vec![ExchangeEvent::AdviceAcknowledged(
                acknowledged.clone(),
            )]);
        let mut done = pending;
        done.push(ExchangeEvent::AdviceAcknowledged(acknowledged.clone()));
        Test::with(())
            .given(done.clone())
            .when(ExchangeCommand::AcknowledgeAdvice(acknowledged))
            .then_expect_events(vec![]);
        Test::with(())
            .given(done)
            .when(ExchangeCommand::AdviceFailed(
                pb::AdviceAttemptFailed::default(),
            ))
            .then_expect_error(ExchangeError::InvalidTransition("no advice pending"));
        Test::with(())
            .given(advice_history(Some(pb::ExchangeOutcome::TimedOut)))
            .when(ExchangeCommand::AcknowledgeAdvice(
                pb::AdviceAcknowledged::default(),
            ))
            .then_expect_error(ExchangeError::InvalidTransition("no advice stored"));
    }

    #[test]
    fn only_a_completion_advice_in_doubt_is_stored() {
        let queued = advice_queued("acquirer_timeout");
        // A purchase that timed out is reversed, not repeated.
        Test::with(())
            .given(history(&[pb::ExchangeOutcome::TimedOut]))
            .when(ExchangeCommand::QueueAdvice(pb::AdviceQueued {
                original_stan: sent("acq", 1).stan,
                ..queued.clone()
            }))
            .then_expect_error(ExchangeError::InvalidTransition(
                "only a completion advice is stored for repeat",
            ));
        for answered in [pb::ExchangeOutcome::Approved, pb::ExchangeOutcome::Declined] {
            Test::with(())
                .given(advice_history(Some(answered)))
                .when(ExchangeCommand::QueueAdvice(queued.clone()))
                .then_expect_error(ExchangeError::InvalidTransition(
                    "the acquirer answered the advice: nothing to repeat",
                ));
        }
        // A completion the link could not send (the acquirer unreachable) is stored too: the
        // sale happened, the advice goes out once the acquirer is up.
        Test::with(())
            .given(advice_history(Some(pb::ExchangeOutcome::Unavailable)))
            .when(ExchangeCommand::QueueAdvice(queued.clone()))
            .then_expect_events(vec![ExchangeEvent::AdviceQueued(queued.clone())]);
        // Nothing attempted at all: nothing to store.
        Test::with(())
            .given(vec![ExchangeEvent::Decided(decided())])
            .when(ExchangeCommand::QueueAdvice(queued.clone()))
            .then_expect_error(ExchangeError::InvalidTransition(
                "nothing was sent to an acquirer: no advice to store",
            ));
        Test::with(())
            .given(advice_history(Some(pb::ExchangeOutcome::TimedOut)))
            .when(ExchangeCommand::QueueAdvice(pb::AdviceQueued {
                original_stan: "999999".into(),
                ..queued.clone()
            }))
            .then_expect_error(ExchangeError::InvalidTransition(
                "the advice stored is not the one sent",
            ));
        // Recorded before fields 38 and 90 were kept: it cannot be repeated.
        Test::with(())
            .given(advice_history(Some(pb::ExchangeOutcome::TimedOut)))
            .when(ExchangeCommand::QueueAdvice(pb::AdviceQueued {
                original_data_elements: String::new(),
                ..queued.clone()
            }))
            .then_expect_error(ExchangeError::InvalidTransition(
                "a repeat needs the advice's fields 38 and 90",
            ));
        // Being reversed already: no advice.
        let mut reversed = advice_history(Some(pb::ExchangeOutcome::TimedOut));
        reversed.push(ExchangeEvent::ReversalQueued(pb::ReversalQueued::default()));
        Test::with(())
            .given(reversed)
            .when(ExchangeCommand::QueueAdvice(queued))
            .then_expect_error(ExchangeError::InvalidTransition(
                "the payment is being reversed",
            ));
    }

    #[test]
    fn a_stored_advice_is_not_sent_again_and_a_reversal_supersedes_it() {
        let mut pending = advice_history(Some(pb::ExchangeOutcome::TimedOut));
        pending.push(ExchangeEvent::AdviceQueued(advice_queued(
            "acquirer_timeout",
        )));
        Test::with(())
            .given(pending.clone())
            .when(ExchangeCommand::Send(completion_sent(2)))
            .then_expect_error(ExchangeError::InvalidTransition(
                "the completion advice is stored for repeat",
            ));
        let reversal = pb::ReversalQueued {
            reason: "terminal_request".into(),
            ..pb::ReversalQueued::default()
        };
        Test::with(())
            .given(pending.clone())
            .when(ExchangeCommand::QueueReversal(reversal.clone()))
            .then_expect_events(vec![ExchangeEvent::ReversalQueued(reversal.clone())]);
        let mut superseded = pending.clone();
        superseded.push(ExchangeEvent::ReversalQueued(reversal.clone()));
        Test::with(())
            .given(superseded.clone())
            .when(ExchangeCommand::AdviceFailed(
                pb::AdviceAttemptFailed::default(),
            ))
            .then_expect_error(ExchangeError::InvalidTransition("no advice pending"));
        let mut exchange = Exchange::default();
        for event in superseded {
            exchange.apply(event);
        }
        assert!(!exchange.advice_pending() && exchange.reversal_pending());
        // Once acknowledged, the completion is reversed like any delivered request.
        let mut acknowledged = pending;
        acknowledged.push(ExchangeEvent::AdviceAcknowledged(
            pb::AdviceAcknowledged::default(),
        ));
        Test::with(())
            .given(acknowledged)
            .when(ExchangeCommand::QueueReversal(reversal.clone()))
            .then_expect_events(vec![ExchangeEvent::ReversalQueued(reversal)]);
    }

    #[test]
    fn the_state_tells_a_pending_advice() {
        let mut exchange = Exchange::default();
        for event in advice_history(Some(pb::ExchangeOutcome::TimedOut)) {
            exchange.apply(event);
        }
        assert!(!exchange.advice_pending());
        exchange.apply(ExchangeEvent::AdviceQueued(advice_queued(
            "acquirer_timeout",
        )));
        assert!(exchange.advice_pending());
        assert!(!exchange.reversal_pending());
        exchange.apply(ExchangeEvent::AdviceAttemptFailed(
            pb::AdviceAttemptFailed {
                attempt: 1,
                next_attempt_at: Some(mpos_proto::timestamp_from_micros(7_000_000)),
                ..pb::AdviceAttemptFailed::default()
            },
        ));
        assert_eq!(
            exchange
                .advice
                .as_ref()
                .map(|a| (a.failures, a.next_attempt_at_us)),
            Some((1, 7_000_000))
        );
        exchange.apply(ExchangeEvent::AdviceAcknowledged(
            pb::AdviceAcknowledged::default(),
        ));
        assert!(!exchange.advice_pending());
        // A snapshot taken before advices existed still reads.
        let old: Exchange =
            serde_json::from_str(r#"{"decided": null, "attempts": [], "reversal": null}"#)
                .expect("an old snapshot reads");
        assert!(old.advice.is_none());
    }

    #[test]
    fn the_state_tells_in_flight_and_pending() {
        let mut exchange = Exchange::default();
        for event in history(&[pb::ExchangeOutcome::Unavailable]) {
            exchange.apply(event);
        }
        exchange.apply(ExchangeEvent::RequestSent(sent("acq-b", 2)));
        assert_eq!(
            exchange.in_flight().map(|a| a.sent.acquirer_id.as_str()),
            Some("acq-b")
        );
        assert_eq!(exchange.last_delivered().map(|a| a.sent.attempt), Some(2));
        exchange.apply(ExchangeEvent::ReversalQueued(pb::ReversalQueued::default()));
        assert!(exchange.reversal_pending());
        exchange.apply(ExchangeEvent::ReversalAttemptFailed(
            pb::ReversalAttemptFailed {
                attempt: 1,
                next_attempt_at: Some(mpos_proto::timestamp_from_micros(5_000_000)),
                ..pb::ReversalAttemptFailed::default()
            },
        ));
        assert_eq!(
            exchange
                .reversal
                .as_ref()
                .map(|r| (r.failures, r.next_attempt_at_us)),
            Some((1, 5_000_000))
        );
    }
}
