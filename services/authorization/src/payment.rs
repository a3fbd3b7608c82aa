//! The payment aggregate (id `<tenant>/<payment id>`) and its state machine:
//!
//! ```text
//! received → checked → decrypted → routed → approved | declined | timed_out
//! received | checked | decrypted → declined            (a check failed: nothing was sent)
//! routed | approved | timed_out → reversal_pending → reversed
//! ```
//!
//! A submission is recorded in one commit up to the point of no return (routed) or up to the
//! check that declined it; the acquirer's answer is a second commit. The payment id is derived
//! from the tenant, the terminal and the terminal's idempotency key ([`payment_id`]), so a
//! retry lands on the same aggregate: [`PaymentError::AlreadySubmitted`] tells the service to
//! answer with what is recorded. Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::authorization as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "payment";

/// The payment id of a terminal's submission: a UUID (version 8, RFC 9562 §5.8) made of the
/// first 16 bytes of SHA-256 over a label, the tenant, the terminal and the idempotency key,
/// each length-prefixed. The same submission always gets the same id; two terminals or two
/// tenants never share one by accident.
pub fn payment_id(tenant_id: &str, terminal_id: &str, idempotency_key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"mpos-payment-id v1");
    for part in [tenant_id, terminal_id, idempotency_key] {
        hasher.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The aggregate id of a payment.
pub fn aggregate_id(tenant_id: &str, payment_id: &str) -> String {
    format!("{tenant_id}/{payment_id}")
}

/// Why a payment command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The submission exists already. `same_request`: the body is the same (a retry; answer
    /// with the recorded result), else the key was reused for another payment.
    #[error("a payment with this idempotency key exists already")]
    AlreadySubmitted {
        /// Whether the recorded request has the same digest.
        same_request: bool,
    },
    /// The command does not fit the payment's state.
    #[error("the payment is {status}: cannot {action}")]
    InvalidTransition {
        /// The current status.
        status: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// A command is malformed (a defect of the caller).
    #[error("{0}")]
    Invalid(String),
    /// No such payment.
    #[error("payment not found")]
    NotFound,
}

impl From<PaymentError> for ServiceError {
    fn from(error: PaymentError) -> Self {
        let message = error.to_string();
        match error {
            PaymentError::AlreadySubmitted { same_request: true } => {
                ServiceError::already_exists(message)
            }
            PaymentError::AlreadySubmitted {
                same_request: false,
            } => ServiceError::conflict(
                "the idempotency key was used for another payment of this terminal",
            ),
            PaymentError::InvalidTransition { .. } => ServiceError::conflict(message),
            PaymentError::Invalid(_) => ServiceError::internal(message),
            PaymentError::NotFound => ServiceError::not_found(message),
        }
    }
}

/// One step of a submission after `PaymentReceived`, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The terminal, its parameters and its attestation passed.
    Checked(pb::PaymentChecked),
    /// The card data was deciphered and passed the card checks.
    Decrypted(pb::CardDataDecrypted),
    /// An acquirer was chosen; the request goes out after this commit.
    Routed(pb::PaymentRouted),
    /// A check failed: the payment ends here.
    Declined(pb::PaymentDeclined),
}

/// What can be asked of a payment.
#[derive(Clone, Debug, PartialEq)]
pub enum PaymentCommand {
    /// Record a submission: the request and the steps it passed (ending decrypted, i.e.
    /// handed to routing; routed; or declined).
    Submit {
        /// The request.
        received: pb::PaymentReceived,
        /// The steps, in order.
        steps: Vec<Step>,
    },
    /// Routing's answer to a payment handed to it decrypted (ADR 24): the route it took, if
    /// it found one, then the outcome (`Approve`, `Decline` or `TimeOut`), in one commit.
    Conclude {
        /// The route, recorded first (`PaymentRouted`).
        routed: Option<pb::PaymentRouted>,
        /// The outcome on it.
        outcome: Box<PaymentCommand>,
    },
    /// The acquirer approved.
    Approve(pb::PaymentApproved),
    /// The acquirer (or the issuer behind it) declined, or no acquirer could take it.
    Decline(pb::PaymentDeclined),
    /// The acquirer did not answer in time.
    TimeOut(pb::PaymentTimedOut),
    /// A reversal was handed to the routing service.
    RequestReversal(pb::ReversalRequested),
    /// The acquirer acknowledged the reversal.
    ConfirmReversal(pb::PaymentReversed),
}

mpos_es::proto_events! {
    /// Events of the payment aggregate.
    pub enum PaymentEvent {
        /// The request arrived.
        Received(pb::PaymentReceived) = "mpos.authorization.v1.PaymentReceived",
        /// Terminal, parameters and attestation passed.
        Checked(pb::PaymentChecked) = "mpos.authorization.v1.PaymentChecked",
        /// The card data was deciphered and passed the card checks.
        Decrypted(pb::CardDataDecrypted) = "mpos.authorization.v1.CardDataDecrypted",
        /// An acquirer was chosen.
        Routed(pb::PaymentRouted) = "mpos.authorization.v1.PaymentRouted",
        /// Approved.
        Approved(pb::PaymentApproved) = "mpos.authorization.v1.PaymentApproved",
        /// Declined.
        Declined(pb::PaymentDeclined) = "mpos.authorization.v1.PaymentDeclined",
        /// The acquirer did not answer in time.
        TimedOut(pb::PaymentTimedOut) = "mpos.authorization.v1.PaymentTimedOut",
        /// A reversal is on its way.
        ReversalRequested(pb::ReversalRequested) = "mpos.authorization.v1.ReversalRequested",
        /// The reversal was acknowledged.
        Reversed(pb::PaymentReversed) = "mpos.authorization.v1.PaymentReversed",
    }
}

/// A payment's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// `PaymentStatus` as a number (0 before the first event).
    pub status: i32,
    /// The request.
    pub received: Option<pb::PaymentReceived>,
    /// The checks' record.
    pub checked: Option<pb::PaymentChecked>,
    /// The card.
    pub card: Option<pb::CardSummary>,
    /// The routing.
    pub routed: Option<pb::PaymentRouted>,
    /// The approval.
    pub approved: Option<pb::PaymentApproved>,
    /// The decline.
    pub declined: Option<pb::PaymentDeclined>,
    /// The time-out.
    pub timed_out: Option<pb::PaymentTimedOut>,
    /// The reversal asked for.
    pub reversal: Option<pb::ReversalRequested>,
    /// The reversal acknowledged.
    pub reversed: Option<pb::PaymentReversed>,
}

fn status_name(status: pb::PaymentStatus) -> &'static str {
    match status {
        pb::PaymentStatus::Unspecified => "new",
        pb::PaymentStatus::Received => "received",
        pb::PaymentStatus::Checked => "checked",
        pb::PaymentStatus::Decrypted => "decrypted",
        pb::PaymentStatus::Routed => "routed",
        pb::PaymentStatus::Approved => "approved",
        pb::PaymentStatus::Declined => "declined",
        pb::PaymentStatus::TimedOut => "timed out",
        pb::PaymentStatus::ReversalPending => "being reversed",
        pb::PaymentStatus::Reversed => "reversed",
    }
}

impl Payment {
    /// The current status.
    pub fn status(&self) -> pb::PaymentStatus {
        pb::PaymentStatus::try_from(self.status).unwrap_or(pb::PaymentStatus::Unspecified)
    }

    /// Whether the payment has its final answer for the terminal (approved, declined, timed
    /// out, or in or after a reversal).
    pub fn is_concluded(&self) -> bool {
        !matches!(
            self.status(),
            pb::PaymentStatus::Unspecified
                | pb::PaymentStatus::Received
                | pb::PaymentStatus::Checked
                | pb::PaymentStatus::Decrypted
                | pb::PaymentStatus::Routed
        )
    }

    fn refuse(&self, action: &'static str) -> PaymentError {
        PaymentError::InvalidTransition {
            status: status_name(self.status()),
            action,
        }
    }

    fn decide(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        use pb::PaymentStatus as S;
        let status = self.status();
        match command {
            PaymentCommand::Submit { received, steps } => {
                if let Some(recorded) = &self.received {
                    return Err(PaymentError::AlreadySubmitted {
                        same_request: recorded.request_sha256 == received.request_sha256,
                    });
                }
                submission(received, steps)
            }
            PaymentCommand::Conclude { routed, outcome } => {
                if !matches!(
                    *outcome,
                    PaymentCommand::Approve(_)
                        | PaymentCommand::Decline(_)
                        | PaymentCommand::TimeOut(_)
                ) {
                    return Err(PaymentError::Invalid(
                        "conclude: the outcome is an approval, a decline or a time-out".into(),
                    ));
                }
                let Some(routed) = routed else {
                    return self.decide(*outcome);
                };
                if status != S::Decrypted {
                    return Err(self.refuse("route"));
                }
                let mut after = self.clone();
                after.apply(PaymentEvent::Routed(routed.clone()));
                let mut events = vec![PaymentEvent::Routed(routed)];
                events.extend(after.decide(*outcome)?);
                Ok(events)
            }
            PaymentCommand::Approve(approved) => match status {
                S::Routed => Ok(vec![PaymentEvent::Approved(approved)]),
                _ => Err(self.refuse("approve")),
            },
            PaymentCommand::Decline(declined) => match status {
                // Decrypted: handed to routing, which found no route or refused it.
                S::Routed | S::Decrypted => Ok(vec![PaymentEvent::Declined(declined)]),
                _ => Err(self.refuse("decline")),
            },
            PaymentCommand::TimeOut(timed_out) => match status {
                // Decrypted: handed to routing, which did not answer.
                S::Routed | S::Decrypted => Ok(vec![PaymentEvent::TimedOut(timed_out)]),
                _ => Err(self.refuse("time out")),
            },
            PaymentCommand::RequestReversal(reversal) => match status {
                // Decrypted: handed to routing with its outcome not recorded (a crash).
                S::Decrypted | S::Routed | S::Approved | S::TimedOut => {
                    Ok(vec![PaymentEvent::ReversalRequested(reversal)])
                }
                // Asked again: already under way or done.
                S::ReversalPending | S::Reversed => Ok(Vec::new()),
                _ => Err(self.refuse("reverse")),
            },
            PaymentCommand::ConfirmReversal(reversed) => match status {
                S::ReversalPending => Ok(vec![PaymentEvent::Reversed(reversed)]),
                S::Reversed => Ok(Vec::new()),
                _ => Err(self.refuse("confirm a reversal")),
            },
        }
    }
}

/// The events of a submission: `PaymentReceived`, then the steps, which must follow the
/// state machine and end routed or declined.
fn submission(
    received: pb::PaymentReceived,
    steps: Vec<Step>,
) -> Result<Vec<PaymentEvent>, PaymentError> {
    use pb::PaymentStatus as S;
    let mut status = S::Received;
    let mut events = vec![PaymentEvent::Received(received)];
    for step in steps {
        if matches!(status, S::Routed | S::Declined) {
            return Err(PaymentError::Invalid(
                "submission: a step after the payment was routed or declined".into(),
            ));
        }
        let (next, event) = match step {
            Step::Checked(checked) if status == S::Received => {
                (S::Checked, PaymentEvent::Checked(checked))
            }
            Step::Decrypted(card) if status == S::Checked => {
                (S::Decrypted, PaymentEvent::Decrypted(card))
            }
            Step::Routed(routed) if status == S::Decrypted => {
                (S::Routed, PaymentEvent::Routed(routed))
            }
            Step::Declined(mut declined) => {
                declined.stage = status.into();
                (S::Declined, PaymentEvent::Declined(declined))
            }
            _ => {
                return Err(PaymentError::Invalid(format!(
                    "submission: a step out of order after {}",
                    status_name(status)
                )));
            }
        };
        status = next;
        events.push(event);
    }
    if !matches!(status, S::Decrypted | S::Routed | S::Declined) {
        return Err(PaymentError::Invalid(
            "submission: must end decrypted (handed to routing), routed or declined".into(),
        ));
    }
    Ok(events)
}

impl Aggregate for Payment {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
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
        use pb::PaymentStatus as S;
        let status = match event {
            PaymentEvent::Received(received) => {
                self.received = Some(received);
                S::Received
            }
            PaymentEvent::Checked(checked) => {
                self.checked = Some(checked);
                S::Checked
            }
            PaymentEvent::Decrypted(decrypted) => {
                self.card = decrypted.card;
                S::Decrypted
            }
            PaymentEvent::Routed(routed) => {
                self.routed = Some(routed);
                S::Routed
            }
            PaymentEvent::Approved(approved) => {
                self.approved = Some(approved);
                S::Approved
            }
            PaymentEvent::Declined(declined) => {
                self.declined = Some(declined);
                S::Declined
            }
            PaymentEvent::TimedOut(timed_out) => {
                self.timed_out = Some(timed_out);
                S::TimedOut
            }
            PaymentEvent::ReversalRequested(reversal) => {
                self.reversal = Some(reversal);
                S::ReversalPending
            }
            PaymentEvent::Reversed(reversed) => {
                self.reversed = Some(reversed);
                S::Reversed
            }
        };
        self.status = status.into();
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Test = TestFramework<Payment>;

    fn received(digest: &str) -> pb::PaymentReceived {
        pb::PaymentReceived {
            tenant_id: "acme".into(),
            payment_id: payment_id("acme", "t-1", "k-1"),
            terminal_id: "t-1".into(),
            idempotency_key: "k-1".into(),
            amount_minor: 1_250,
            currency: "EUR".into(),
            request_sha256: digest.into(),
            ..pb::PaymentReceived::default()
        }
    }

    fn checked() -> pb::PaymentChecked {
        pb::PaymentChecked {
            tenant_id: "acme".into(),
            merchant_id: "m-1".into(),
            ..pb::PaymentChecked::default()
        }
    }

    fn decrypted() -> pb::CardDataDecrypted {
        pb::CardDataDecrypted {
            tenant_id: "acme".into(),
            card: Some(pb::CardSummary {
                bin: "47617390".into(),
                last_four: "0119".into(),
                ..pb::CardSummary::default()
            }),
            ..pb::CardDataDecrypted::default()
        }
    }

    fn routed() -> pb::PaymentRouted {
        pb::PaymentRouted {
            acquirer_id: "acq-a".into(),
            ..pb::PaymentRouted::default()
        }
    }

    fn declined(reason: pb::DeclineReason, stage: pb::PaymentStatus) -> pb::PaymentDeclined {
        pb::PaymentDeclined {
            reason: reason.into(),
            stage: stage.into(),
            ..pb::PaymentDeclined::default()
        }
    }

    fn routed_history() -> Vec<PaymentEvent> {
        vec![
            PaymentEvent::Received(received("d1")),
            PaymentEvent::Checked(checked()),
            PaymentEvent::Decrypted(decrypted()),
            PaymentEvent::Routed(routed()),
        ]
    }

    #[test]
    fn the_payment_id_is_a_stable_version_8_uuid_per_tenant_terminal_and_key() {
        let id = payment_id("acme", "t-1", "k-1");
        assert_eq!(id, payment_id("acme", "t-1", "k-1"));
        assert_ne!(id, payment_id("acme", "t-2", "k-1"));
        assert_ne!(id, payment_id("other", "t-1", "k-1"));
        // Length prefixes: moving a character between parts changes the id.
        assert_ne!(payment_id("ab", "c", "k"), payment_id("a", "bc", "k"));
        let parsed = uuid_fields(&id);
        assert_eq!(parsed.0, 8, "version nibble of {id}");
        assert_eq!(parsed.1 & 0b1100, 0b1000, "variant bits of {id}");
    }

    fn uuid_fields(id: &str) -> (u8, u8) {
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        let version = u8::from_str_radix(&groups[2][..1], 16).expect("hex");
        let variant = u8::from_str_radix(&groups[3][..1], 16).expect("hex");
        (version, variant)
    }

    #[test]
    fn a_submission_records_every_step_up_to_routed_in_one_go() {
        Test::with(())
            .given_no_previous_events()
            .when(PaymentCommand::Submit {
                received: received("d1"),
                steps: vec![
                    Step::Checked(checked()),
                    Step::Decrypted(decrypted()),
                    Step::Routed(routed()),
                ],
            })
            .then_expect_events(routed_history());
    }

    #[test]
    fn a_failed_check_declines_at_its_stage() {
        Test::with(())
            .given_no_previous_events()
            .when(PaymentCommand::Submit {
                received: received("d1"),
                steps: vec![
                    Step::Checked(checked()),
                    Step::Declined(declined(
                        pb::DeclineReason::BinBlocked,
                        pb::PaymentStatus::Unspecified,
                    )),
                ],
            })
            .then_expect_events(vec![
                PaymentEvent::Received(received("d1")),
                PaymentEvent::Checked(checked()),
                PaymentEvent::Declined(declined(
                    pb::DeclineReason::BinBlocked,
                    pb::PaymentStatus::Checked,
                )),
            ]);
    }

    #[test]
    fn steps_out_of_order_or_unfinished_are_refused() {
        for steps in [
            vec![Step::Decrypted(decrypted()), Step::Routed(routed())],
            vec![Step::Checked(checked()), Step::Routed(routed())],
            vec![Step::Checked(checked())],
            vec![],
            vec![
                Step::Declined(declined(
                    pb::DeclineReason::TerminalUnknown,
                    pb::PaymentStatus::Received,
                )),
                Step::Checked(checked()),
            ],
        ] {
            let result = Payment::default().decide(PaymentCommand::Submit {
                received: received("d1"),
                steps,
            });
            assert!(
                matches!(result, Err(PaymentError::Invalid(_))),
                "{result:?}"
            );
        }
    }

    #[test]
    fn a_retry_is_told_apart_from_a_reused_key() {
        Test::with(())
            .given(routed_history())
            .when(PaymentCommand::Submit {
                received: received("d1"),
                steps: vec![Step::Checked(checked())],
            })
            .then_expect_error(PaymentError::AlreadySubmitted { same_request: true });
        Test::with(())
            .given(routed_history())
            .when(PaymentCommand::Submit {
                received: received("other"),
                steps: vec![Step::Checked(checked())],
            })
            .then_expect_error(PaymentError::AlreadySubmitted {
                same_request: false,
            });
    }

    #[test]
    fn only_a_routed_payment_gets_an_answer() {
        let approved = pb::PaymentApproved {
            response_code: "00".into(),
            ..pb::PaymentApproved::default()
        };
        Test::with(())
            .given(routed_history())
            .when(PaymentCommand::Approve(approved.clone()))
            .then_expect_events(vec![PaymentEvent::Approved(approved.clone())]);
        let mut concluded = routed_history();
        concluded.push(PaymentEvent::Approved(approved.clone()));
        Test::with(())
            .given(concluded)
            .when(PaymentCommand::Approve(approved))
            .then_expect_error(PaymentError::InvalidTransition {
                status: "approved",
                action: "approve",
            });
        Test::with(())
            .given(vec![
                PaymentEvent::Received(received("d1")),
                PaymentEvent::Declined(declined(
                    pb::DeclineReason::TerminalUnknown,
                    pb::PaymentStatus::Received,
                )),
            ])
            .when(PaymentCommand::TimeOut(pb::PaymentTimedOut::default()))
            .then_expect_error(PaymentError::InvalidTransition {
                status: "declined",
                action: "time out",
            });
    }

    /// ADR 24: a payment handed to routing decrypted is concluded with its route and outcome
    /// in one commit; without a route (none found, routing silent) it is declined or timed out
    /// from where it stands; a route on a payment not decrypted, or a conclusion that is no
    /// outcome, is refused.
    #[test]
    fn a_payment_handed_over_decrypted_is_concluded_with_its_route() {
        let handed = vec![
            PaymentEvent::Received(received("d1")),
            PaymentEvent::Checked(checked()),
            PaymentEvent::Decrypted(decrypted()),
        ];
        let submitted = Payment::default().decide(PaymentCommand::Submit {
            received: received("d1"),
            steps: vec![Step::Checked(checked()), Step::Decrypted(decrypted())],
        });
        assert_eq!(submitted, Ok(handed.clone()));
        let approved = pb::PaymentApproved {
            response_code: "00".into(),
            ..pb::PaymentApproved::default()
        };
        Test::with(())
            .given(handed.clone())
            .when(PaymentCommand::Conclude {
                routed: Some(routed()),
                outcome: Box::new(PaymentCommand::Approve(approved.clone())),
            })
            .then_expect_events(vec![
                PaymentEvent::Routed(routed()),
                PaymentEvent::Approved(approved.clone()),
            ]);
        let no_route = declined(pb::DeclineReason::NoRoute, pb::PaymentStatus::Decrypted);
        Test::with(())
            .given(handed.clone())
            .when(PaymentCommand::Conclude {
                routed: None,
                outcome: Box::new(PaymentCommand::Decline(no_route.clone())),
            })
            .then_expect_events(vec![PaymentEvent::Declined(no_route)]);
        Test::with(())
            .given(handed.clone())
            .when(PaymentCommand::Conclude {
                routed: None,
                outcome: Box::new(PaymentCommand::TimeOut(pb::PaymentTimedOut::default())),
            })
            .then_expect_events(vec![PaymentEvent::TimedOut(pb::PaymentTimedOut::default())]);
        // Approved without a route: refused (only a routed payment is approved).
        Test::with(())
            .given(handed.clone())
            .when(PaymentCommand::Conclude {
                routed: None,
                outcome: Box::new(PaymentCommand::Approve(approved.clone())),
            })
            .then_expect_error(PaymentError::InvalidTransition {
                status: "decrypted",
                action: "approve",
            });
        Test::with(())
            .given(routed_history())
            .when(PaymentCommand::Conclude {
                routed: Some(routed()),
                outcome: Box::new(PaymentCommand::Approve(approved)),
            })
            .then_expect_error(PaymentError::InvalidTransition {
                status: "routed",
                action: "route",
            });
        let result = Payment::default().decide(PaymentCommand::Conclude {
            routed: None,
            outcome: Box::new(PaymentCommand::ConfirmReversal(
                pb::PaymentReversed::default(),
            )),
        });
        assert!(
            matches!(result, Err(PaymentError::Invalid(_))),
            "{result:?}"
        );
        // A crash before the conclusion: the payment handed over can be reversed.
        Test::with(())
            .given(handed)
            .when(PaymentCommand::RequestReversal(
                pb::ReversalRequested::default(),
            ))
            .then_expect_events(vec![PaymentEvent::ReversalRequested(
                pb::ReversalRequested::default(),
            )]);
    }

    #[test]
    fn a_reversal_is_asked_once_and_confirmed_once() {
        let mut timed_out = routed_history();
        timed_out.push(PaymentEvent::TimedOut(pb::PaymentTimedOut::default()));
        let reversal = pb::ReversalRequested {
            reason: pb::ReversalReason::AcquirerTimeout.into(),
            ..pb::ReversalRequested::default()
        };
        Test::with(())
            .given(timed_out.clone())
            .when(PaymentCommand::RequestReversal(reversal.clone()))
            .then_expect_events(vec![PaymentEvent::ReversalRequested(reversal.clone())]);
        let mut pending = timed_out;
        pending.push(PaymentEvent::ReversalRequested(reversal.clone()));
        Test::with(())
            .given(pending.clone())
            .when(PaymentCommand::RequestReversal(reversal))
            .then_expect_events(vec![]);
        let reversed = pb::PaymentReversed {
            response_code: "00".into(),
            ..pb::PaymentReversed::default()
        };
        Test::with(())
            .given(pending.clone())
            .when(PaymentCommand::ConfirmReversal(reversed.clone()))
            .then_expect_events(vec![PaymentEvent::Reversed(reversed.clone())]);
        let mut done = pending;
        done.push(PaymentEvent::Reversed(reversed.clone()));
        Test::with(())
            .given(done)
            .when(PaymentCommand::ConfirmReversal(reversed))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_declined_payment_is_never_reversed() {
        Test::with(())
            .given(vec![
                PaymentEvent::Received(received("d1")),
                PaymentEvent::Declined(declined(
                    pb::DeclineReason::CardExpired,
                    pb::PaymentStatus::Decrypted,
                )),
            ])
            .when(PaymentCommand::RequestReversal(
                pb::ReversalRequested::default(),
            ))
            .then_expect_error(PaymentError::InvalidTransition {
                status: "declined",
                action: "reverse",
            });
    }

    #[test]
    fn apply_follows_the_status() {
        let mut payment = Payment::default();
        for event in routed_history() {
            payment.apply(event);
        }
        assert_eq!(payment.status(), pb::PaymentStatus::Routed);
        assert!(!payment.is_concluded());
        assert_eq!(
            payment.card.as_ref().map(|c| c.last_four.as_str()),
            Some("0119")
        );
        payment.apply(PaymentEvent::TimedOut(pb::PaymentTimedOut::default()));
        assert!(payment.is_concluded());
    }
}
