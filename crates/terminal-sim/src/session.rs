//! A whole terminal session, as a PED runs it after power-on: activation, the initial key,
//! parameters, then payments, each step reported as it completes.

use std::time::{Duration, Instant};

use paycrypto::pin::{Pan, Pin};
use serde_json::{Value, json};

use crate::{
    ActivationState, EncryptedCardData, EncryptedPinBlock, InstalledKey, InstalledParameters,
    SimError, Terminal, Track2,
};

/// What a session does.
#[derive(Debug)]
pub struct Session {
    /// How long to wait for the initial key.
    pub key_wait: Duration,
    /// How many payments (a card data encipherment and a PIN block each, under one DUKPT
    /// transaction: one KSN per payment).
    pub payments: u32,
    /// The test card's PAN: must be the track 2 data's PAN (the PIN block is for the card
    /// read).
    pub pan: Pan,
    /// The test PIN.
    pub pin: Pin,
    /// The test card's track 2 equivalent data (P2PE).
    pub track2: Track2,
}

/// A completed step.
#[derive(Debug)]
pub enum Step {
    /// The terminal is active.
    Activated(ActivationState),
    /// The initial DUKPT key is installed and confirmed.
    KeyInstalled(InstalledKey),
    /// The parameter set is verified, installed and acknowledged.
    ParametersInstalled(Box<InstalledParameters>),
    /// A payment's PIN block (the same KSN as its card data).
    PinBlock {
        /// The payment, from 1.
        payment: u32,
        /// The block.
        block: EncryptedPinBlock,
    },
    /// A payment's card data.
    CardData {
        /// The payment, from 1.
        payment: u32,
        /// The ciphertext.
        data: EncryptedCardData,
    },
}

impl Step {
    /// The step's name: `activate`, `receive_key`, `parameters`, `pin_block`, `card_data`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Activated(_) => "activate",
            Self::KeyInstalled(_) => "receive_key",
            Self::ParametersInstalled(_) => "parameters",
            Self::PinBlock { .. } => "pin_block",
            Self::CardData { .. } => "card_data",
        }
    }

    /// One JSON object describing the step: no key material, PANs masked.
    pub fn to_json(&self) -> Value {
        let step = self.name();
        match self {
            Self::Activated(state) => json!({
                "step": step,
                "tenantId": state.tenant_id,
                "terminalId": state.terminal_id,
                "state": state.state,
            }),
            Self::KeyInstalled(key) => json!({
                "step": step,
                "injectionId": key.injection_id,
                "algorithm": key.algorithm.as_str_name(),
                "initialKeyId": key.initial_key_id,
                "kcv": key.kcv,
            }),
            Self::ParametersInstalled(parameters) => json!({
                "step": step,
                "version": parameters.version,
                "keyId": parameters.key_id,
                "payloadSha256": hex::encode(parameters.payload_sha256),
                "behind": parameters.status.behind,
            }),
            Self::PinBlock { payment, block } => json!({
                "step": step,
                "payment": payment,
                "ksn": block.ksn,
                "format": format!("{:?}", block.format),
                "pinBlock": hex::encode_upper(&block.block),
                "pan": block.masked_pan,
            }),
            Self::CardData { payment, data } => json!({
                "step": step,
                "payment": payment,
                "ksn": data.ksn,
                "ciphertext": hex::encode_upper(&data.ciphertext),
                "pan": data.masked_pan,
            }),
        }
    }
}

/// A failed session: the step that failed and why.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {error}")]
pub struct StepError {
    /// The name of the step (as [`Step::name`]).
    pub step: &'static str,
    /// Why it failed.
    #[source]
    pub error: SimError,
}

fn at(step: &'static str) -> impl Fn(SimError) -> StepError {
    move |error| StepError { step, error }
}

/// Runs `session` on `terminal`: activate, receive the initial key, download and acknowledge
/// parameters, then the payments, each one DUKPT transaction
/// ([`Terminal::encrypt_transaction`]) reported as its PIN block then its card data (one
/// KSN); `on_step` sees every step as it completes.
pub async fn run(
    terminal: &mut Terminal,
    session: &Session,
    mut on_step: impl FnMut(&Step),
) -> Result<(), StepError> {
    let activation = terminal.activate().await.map_err(at("activate"))?;
    on_step(&Step::Activated(activation));
    let key = terminal
        .receive_key(Instant::now() + session.key_wait)
        .await
        .map_err(at("receive_key"))?;
    on_step(&Step::KeyInstalled(key));
    let parameters = terminal
        .download_parameters()
        .await
        .map_err(at("parameters"))?;
    on_step(&Step::ParametersInstalled(Box::new(parameters)));
    if session.payments > 0 && session.pan != *session.track2.pan() {
        return Err(StepError {
            step: "pin_block",
            error: SimError::InvalidInput("the PAN is not the track 2 data's".to_owned()),
        });
    }
    for payment in 1..=session.payments {
        let transaction = terminal
            .encrypt_transaction(&session.track2, Some(&session.pin))
            .map_err(at("pin_block"))?;
        let block = transaction.pin_block().ok_or_else(|| StepError {
            step: "pin_block",
            error: SimError::protocol("pin block", "no PIN block"),
        })?;
        on_step(&Step::PinBlock { payment, block });
        on_step(&Step::CardData {
            payment,
            data: transaction.card_data(),
        });
    }
    Ok(())
}
