//! Payments over the authorization service's device payment API
//! (`proto/mpos/authorization/v1/api.proto`, JSON in the proto3 JSON mapping):
//!
//! * `POST {auth_url}/v1/payments` with a `PaymentRequest`: answers a `PaymentResponse`, an
//!   approval or a decline alike (HTTP 200, `approved` says which);
//! * `POST {auth_url}/v1/payments/{payment_id}/reversal` with a `ReversalRequestBody`;
//! * `GET {auth_url}/v1/payments/{payment_id}`: the payment's status (a `PaymentResponse`).
//!
//! A PED ([`Terminal`]) calls them over mTLS with its device certificate; a SoftPOS phone
//! ([`SoftPosTerminal`]) over server-authenticated TLS only, presenting its attestation
//! token in the body (`attestationToken`) and, for the status request, which has no body, as
//! a bearer token (`Authorization: Bearer <token>`; an assumption until the authorization
//! service's device API is served).
//!
//! A payment's card data and PIN block are enciphered under ONE DUKPT transaction
//! ([`Terminal::encrypt_transaction`]): the request's `ksn` names the keys of both. The
//! request is built by a pure function ([`build_payment_request`]); no PAN, track data or
//! PIN appears in it except inside the ciphertexts. An HTTP error status (4xx, 5xx) is
//! [`SimError::Refused`] with the platform's `code` and `message`.

use std::fmt;

use mpos_proto::authorization as pb;
use paycrypto::SecretBytes;
use paycrypto::pin::Pin;

use crate::client::phone_client;
use crate::emv::EmvData;
use crate::softpos::AttestedKey;
use crate::terminal::{
    DukptRegisters, EncryptedTransaction, InstalledKey, exchange, json, load_delivered, refused,
    send, unwrap_ecdh,
};
use crate::{SimError, Terminal, Track2};

/// One payment as the terminal takes it from the merchant and the card.
#[derive(Clone, Debug)]
pub struct Payment {
    /// Chosen by the terminal, 1-64 characters `[A-Za-z0-9._-]`; a retry with the same key
    /// gets the first answer.
    pub idempotency_key: String,
    /// Purchase, refund, pre-authorization or completion.
    pub transaction_type: pb::TransactionType,
    /// In minor units of `currency`.
    pub amount_minor: u64,
    /// ISO 4217 alphabetic, e.g. `EUR`.
    pub currency: String,
    /// Chip, contactless or swipe fallback.
    pub entry_mode: pb::EntryMode,
    /// The card's track 2 equivalent data (enciphered before it leaves the device).
    pub track2: Track2,
    /// The PIN the cardholder entered, if any (enciphered before it leaves the device).
    pub pin: Option<Pin>,
    /// The card's answer to GENERATE AC (chip and contactless), if any.
    pub emv: Option<EmvData>,
    /// For a completion: the pre-authorization it completes (empty otherwise).
    pub original_payment_id: String,
}

impl Payment {
    /// A chip purchase of `amount_minor` `currency` with `track2`, no PIN and no EMV data
    /// yet (set `pin` and `emv`).
    pub fn purchase(
        idempotency_key: impl Into<String>,
        amount_minor: u64,
        currency: impl Into<String>,
        track2: Track2,
    ) -> Self {
        Self {
            idempotency_key: idempotency_key.into(),
            transaction_type: pb::TransactionType::Purchase,
            amount_minor,
            currency: currency.into(),
            entry_mode: pb::EntryMode::Chip,
            track2,
            pin: None,
            emv: None,
            original_payment_id: String::new(),
        }
    }
}

/// The `PaymentRequest` for `payment`, whose card data and PIN were enciphered as
/// `transaction` (one KSN), from terminal `terminal_id`; with `attestation_token` for a
/// SoftPOS phone. Pure: no I/O, no randomness. The PAN sequence number comes from the EMV
/// data's 5F34 when there is one.
pub fn build_payment_request(
    terminal_id: &str,
    payment: &Payment,
    transaction: &EncryptedTransaction,
    attestation_token: Option<&str>,
) -> pb::PaymentRequest {
    pb::PaymentRequest {
        terminal_id: terminal_id.to_owned(),
        idempotency_key: payment.idempotency_key.clone(),
        transaction_type: payment.transaction_type.into(),
        amount_minor: payment.amount_minor,
        currency: payment.currency.clone(),
        entry_mode: payment.entry_mode.into(),
        ksn: transaction.ksn.clone(),
        encrypted_card_data: transaction.encrypted_card_data.clone(),
        encrypted_pin_block: transaction.encrypted_pin_block.clone().unwrap_or_default(),
        emv_data: payment
            .emv
            .as_ref()
            .map(|emv| emv.tlv.clone())
            .unwrap_or_default(),
        original_payment_id: payment.original_payment_id.clone(),
        attestation_token: attestation_token.unwrap_or_default().to_owned(),
        tenant_id: String::new(),
        pan_sequence_number: payment
            .emv
            .as_ref()
            .and_then(EmvData::pan_sequence_number)
            .unwrap_or_default(),
    }
}

/// How a device reaches the payment API.
struct PaymentApi<'a> {
    client: &'a reqwest::Client,
    auth_url: &'a str,
    terminal_id: &'a str,
    /// SoftPOS: the phone's tenant (empty for a PED: its certificate says).
    tenant_id: &'a str,
    attestation_token: Option<&'a str>,
}

impl PaymentApi<'_> {
    fn base(&self) -> Result<&str, SimError> {
        if self.auth_url.is_empty() {
            return Err(SimError::NotConfigured("the authorization service url"));
        }
        Ok(self.auth_url)
    }

    async fn answer(
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<pb::PaymentResponse, SimError> {
        let (status, body) = exchange(operation, request).await?;
        if !(200..300).contains(&status) {
            return Err(refused(operation, status, &body));
        }
        json(operation, body)
    }

    async fn submit(&self, request: &pb::PaymentRequest) -> Result<pb::PaymentResponse, SimError> {
        const OPERATION: &str = "pay";
        let url = format!("{}/v1/payments", self.base()?);
        let body =
            serde_json::to_vec(request).map_err(|error| SimError::protocol(OPERATION, error))?;
        let response = Self::answer(
            OPERATION,
            self.client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await?;
        tracing::info!(
            terminal_id = %self.terminal_id,
            payment_id = %response.payment_id,
            approved = response.approved,
            status = response.status().as_str_name(),
            "payment answered"
        );
        Ok(response)
    }

    async fn reverse(&self, payment_id: &str) -> Result<pb::PaymentResponse, SimError> {
        const OPERATION: &str = "reverse";
        check_payment_id(payment_id)?;
        let url = format!("{}/v1/payments/{payment_id}/reversal", self.base()?);
        let body = pb::ReversalRequestBody {
            terminal_id: self.terminal_id.to_owned(),
            attestation_token: self.attestation_token.unwrap_or_default().to_owned(),
            tenant_id: self.tenant_id.to_owned(),
        };
        let response = Self::answer(OPERATION, self.client.post(url).json(&body)).await?;
        tracing::info!(
            terminal_id = %self.terminal_id,
            payment_id = %payment_id,
            status = response.status().as_str_name(),
            "reversal answered"
        );
        Ok(response)
    }

    async fn status(&self, payment_id: &str) -> Result<pb::PaymentResponse, SimError> {
        const OPERATION: &str = "payment status";
        check_payment_id(payment_id)?;
        let url = format!("{}/v1/payments/{payment_id}", self.base()?);
        let mut query = vec![("terminal_id", self.terminal_id)];
        if !self.tenant_id.is_empty() {
            query.push(("tenant_id", self.tenant_id));
        }
        let mut request = self.client.get(url).query(&query);
        if let Some(token) = self.attestation_token {
            request = request.bearer_auth(token);
        }
        Self::answer(OPERATION, request).await
    }
}

/// A payment id goes into a URL path: only `[A-Za-z0-9._-]`, 1-128 characters.
fn check_payment_id(payment_id: &str) -> Result<(), SimError> {
    let valid = (1..=128).contains(&payment_id.len())
        && payment_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
        && payment_id != "."
        && payment_id != "..";
    if valid {
        Ok(())
    } else {
        Err(SimError::InvalidInput(
            "payment id: 1-128 characters [A-Za-z0-9._-]".to_owned(),
        ))
    }
}

impl Terminal {
    fn payment_api(&self) -> PaymentApi<'_> {
        PaymentApi {
            client: self.client(),
            auth_url: self.auth_url(),
            terminal_id: self.terminal_id(),
            tenant_id: "",
            attestation_token: None,
        }
    }

    /// Enciphers `payment` under one DUKPT transaction (the counter advances once) and
    /// builds its `PaymentRequest` ([`build_payment_request`]); no network. Send it with
    /// [`Terminal::submit`], again with [`Terminal::resend`].
    pub fn prepare_payment(&mut self, payment: &Payment) -> Result<pb::PaymentRequest, SimError> {
        let transaction = self.encrypt_transaction(&payment.track2, payment.pin.as_ref())?;
        Ok(build_payment_request(
            self.terminal_id(),
            payment,
            &transaction,
            None,
        ))
    }

    /// Pays: [`Terminal::prepare_payment`] then `POST {auth_url}/v1/payments` over mTLS. The
    /// decoded `PaymentResponse`, approved or declined; [`SimError::Refused`] for an HTTP
    /// error; [`SimError::NotConfigured`] without an authorization URL (checked before the
    /// counter advances).
    pub async fn pay(&mut self, payment: Payment) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().base()?;
        let request = self.prepare_payment(&payment)?;
        self.submit(&request).await
    }

    /// Sends a prepared `PaymentRequest` (see [`Terminal::prepare_payment`]).
    pub async fn submit(
        &self,
        request: &pb::PaymentRequest,
    ) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().submit(request).await
    }

    /// Sends the same request again, byte for byte (same idempotency key, same KSN and
    /// ciphertexts): what a terminal does when it did not get the first answer. The platform
    /// answers the first payment's outcome without authorizing twice.
    pub async fn resend(
        &self,
        request: &pb::PaymentRequest,
    ) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().submit(request).await
    }

    /// Asks the platform to reverse payment `payment_id` (e.g. the card refused the issuer's
    /// answer): `POST {auth_url}/v1/payments/{payment_id}/reversal`.
    pub async fn reverse(&self, payment_id: &str) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().reverse(payment_id).await
    }

    /// The status of payment `payment_id`: `GET {auth_url}/v1/payments/{payment_id}`.
    pub async fn payment_status(&self, payment_id: &str) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().status(payment_id).await
    }
}

/// What a simulated SoftPOS phone is and whom it trusts.
#[derive(Clone, Debug)]
pub struct SoftPosConfig {
    /// The SoftPOS terminal id (the phone's terminal in terminal-management).
    pub terminal_id: String,
    /// The tenant the phone belongs to (the payment API binds it to the token).
    pub tenant_id: String,
    /// The authorization service's device API, e.g. `https://auth.example:8443`.
    pub auth_url: String,
    /// key-injection's SoftPOS key API, e.g. `https://keys.example:8449`.
    pub ki_url: String,
    /// The CA certificates (DER) the phone trusts for the platform's TLS servers.
    pub server_roots: Vec<Vec<u8>>,
}

/// A simulated SoftPOS phone's payment side: DUKPT card data and PIN encryption (one KSN
/// per payment, like a PED) and the payment API over server-authenticated TLS with the
/// attestation token the attestation service issued (no client certificate). `Debug` shows
/// whether a token is set, never the token.
pub struct SoftPosTerminal {
    config: SoftPosConfig,
    client: reqwest::Client,
    dukpt: DukptRegisters,
    attestation_token: Option<String>,
}

impl fmt::Debug for SoftPosTerminal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftPosTerminal")
            .field("terminal_id", &self.config.terminal_id)
            .field("auth_url", &self.config.auth_url)
            .field("counter", &self.dukpt.counter())
            .field("attestation_token", &self.attestation_token.is_some())
            .finish()
    }
}

impl SoftPosTerminal {
    /// A phone with no key and no attestation token yet. Fails when the TLS client cannot
    /// be built or the terminal id is empty.
    pub fn new(mut config: SoftPosConfig) -> Result<Self, SimError> {
        if config.terminal_id.trim().is_empty() {
            return Err(SimError::InvalidInput("terminal id: empty".to_owned()));
        }
        config.auth_url = config.auth_url.trim().trim_end_matches('/').to_owned();
        config.ki_url = config.ki_url.trim().trim_end_matches('/').to_owned();
        let client = phone_client(&config.server_roots, &[&config.auth_url, &config.ki_url])?;
        Ok(Self {
            config,
            client,
            dukpt: DukptRegisters::default(),
            attestation_token: None,
        })
    }

    /// Receives the phone's DUKPT initial key from key-injection's SoftPOS key API, wrapped
    /// by ECDH for its attested key `key`, installs it and confirms it with its KCV; both
    /// requests carry the attestation token, which must name `attested_certificate` (the
    /// leaf of the chain the phone attested `key` with). A refused confirmation discards
    /// the key.
    pub async fn receive_key(
        &mut self,
        key: &AttestedKey,
        attested_certificate: &[u8],
    ) -> Result<InstalledKey, SimError> {
        use mpos_proto::key_injection as ki_pb;
        const OPERATION: &str = "receive softpos key";
        let token = self.attestation_token.clone().ok_or_else(|| {
            SimError::InvalidInput("no attestation token: attest before asking for a key".into())
        })?;
        let keys = format!(
            "{}/v1/tenants/{}/devices/{}/keys",
            self.config.ki_url, self.config.tenant_id, self.config.terminal_id
        );
        let request = self
            .client
            .post(&keys)
            .bearer_auth(&token)
            .json(&ki_pb::SoftPosKeyRequest {
                attested_certificate: attested_certificate.to_vec(),
            });
        let delivery: ki_pb::DeviceKeyDelivery =
            json(OPERATION, send(OPERATION, request, 200).await?)?;
        let (header, secret) = unwrap_ecdh(key.private_key_der(), &delivery)?;
        let installed = load_delivered(&mut self.dukpt, &delivery, &header, &secret)?;
        let request = self
            .client
            .post(format!("{keys}/{}/confirm", installed.injection_id))
            .bearer_auth(&token)
            .json(&ki_pb::ConfirmInjectionRequest {
                kcv: installed.kcv.clone(),
            });
        let confirmed = send("confirm softpos key", request, 200)
            .await
            .and_then(|body| json::<ki_pb::InjectionResponse>("confirm softpos key", body));
        match confirmed {
            Ok(response) if response.state() == ki_pb::InjectionState::Confirmed => {
                tracing::info!(terminal_id = %self.config.terminal_id, injection_id = %installed.injection_id, initial_key_id = %installed.initial_key_id, "softpos initial key confirmed");
                Ok(installed)
            }
            Ok(response) => {
                self.dukpt.clear();
                Err(SimError::protocol(
                    "confirm softpos key",
                    format!("the injection is {}", response.state().as_str_name()),
                ))
            }
            Err(error) => {
                self.dukpt.clear();
                Err(error)
            }
        }
    }

    /// The terminal id.
    pub fn terminal_id(&self) -> &str {
        &self.config.terminal_id
    }

    /// The DUKPT counter of the next transaction, once a key is loaded.
    pub fn counter(&self) -> Option<u32> {
        self.dukpt.counter()
    }

    /// Loads the phone's DUKPT initial key (as [`Terminal::load_initial_key`]; how a SoftPOS
    /// app is provisioned with it is outside the simulator).
    pub fn load_initial_key(
        &mut self,
        algorithm: mpos_proto::key_injection::DukptAlgorithm,
        key: &SecretBytes,
        initial_key_id: &str,
    ) -> Result<InstalledKey, SimError> {
        if key.len() != 16 {
            return Err(SimError::InvalidInput(format!(
                "initial key of {} bytes, expected 16",
                key.len()
            )));
        }
        let kcv = self.dukpt.load(algorithm, key, initial_key_id)?;
        Ok(InstalledKey {
            injection_id: String::new(),
            algorithm,
            initial_key_id: initial_key_id.to_ascii_uppercase(),
            kcv,
        })
    }

    /// Sets the attestation token (compact JWS) the attestation service answered the
    /// phone's last attestation with; sent with every payment and reversal.
    pub fn set_attestation_token(&mut self, token: impl Into<String>) {
        self.attestation_token = Some(token.into());
    }

    /// Forgets the attestation token (payments then go without one).
    pub fn clear_attestation_token(&mut self) {
        self.attestation_token = None;
    }

    fn payment_api(&self) -> PaymentApi<'_> {
        PaymentApi {
            client: &self.client,
            auth_url: &self.config.auth_url,
            terminal_id: &self.config.terminal_id,
            tenant_id: &self.config.tenant_id,
            attestation_token: self.attestation_token.as_deref(),
        }
    }

    /// See [`Terminal::encrypt_transaction`].
    pub fn encrypt_transaction(
        &mut self,
        track2: &Track2,
        pin: Option<&Pin>,
    ) -> Result<EncryptedTransaction, SimError> {
        self.dukpt.encrypt_transaction(track2, pin)
    }

    /// As [`Terminal::prepare_payment`], with the attestation token in the request.
    pub fn prepare_payment(&mut self, payment: &Payment) -> Result<pb::PaymentRequest, SimError> {
        let transaction = self.encrypt_transaction(&payment.track2, payment.pin.as_ref())?;
        let mut request = build_payment_request(
            &self.config.terminal_id,
            payment,
            &transaction,
            self.attestation_token.as_deref(),
        );
        request.tenant_id = self.config.tenant_id.clone();
        Ok(request)
    }

    /// As [`Terminal::pay`], over server-authenticated TLS with the attestation token.
    pub async fn pay(&mut self, payment: Payment) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().base()?;
        let request = self.prepare_payment(&payment)?;
        self.submit(&request).await
    }

    /// Sends a prepared `PaymentRequest`.
    pub async fn submit(
        &self,
        request: &pb::PaymentRequest,
    ) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().submit(request).await
    }

    /// Sends the same request again (see [`Terminal::resend`]).
    pub async fn resend(
        &self,
        request: &pb::PaymentRequest,
    ) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().submit(request).await
    }

    /// As [`Terminal::reverse`], with the attestation token in the body.
    pub async fn reverse(&self, payment_id: &str) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().reverse(payment_id).await
    }

    /// As [`Terminal::payment_status`], with the attestation token as a bearer token.
    pub async fn payment_status(&self, payment_id: &str) -> Result<pb::PaymentResponse, SimError> {
        self.payment_api().status(payment_id).await
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use mpos_proto::key_injection::DukptAlgorithm;
    use paycrypto::dukpt::tdes::{self, DataKeyDerivation, KeyUsage};
    use paycrypto::pin::PinBlockFormat;

    use super::*;
    use crate::card::test_card;
    use crate::emv::{CardDecision, EmvTransaction};

    /// ANSI X9.24-1:2009 A.4 (see tests/key_install.rs for the sources).
    const BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const IPEK: &str = "6AC292FAA1315B4D858AB3A3D7D5933A";
    const INITIAL_KSN: &str = "FFFF9876543210E00000";

    fn key(text: &str) -> SecretBytes {
        SecretBytes::from_hex("test key", text).expect("hex")
    }

    fn chip_payment() -> (Payment, EncryptedTransaction) {
        let card = test_card("visa").expect("visa");
        let mut registers = DukptRegisters::default();
        registers
            .load(DukptAlgorithm::Tdes, &key(IPEK), INITIAL_KSN)
            .expect("load");
        let pin = Pin::new("7913").expect("pin");
        let transaction = registers
            .encrypt_transaction(&card.track2, Some(&pin))
            .expect("encrypt");
        let mut chip = card.emv_card(7);
        let emv = chip
            .generate_ac(
                &EmvTransaction::purchase(2_500, 978, 250, "260115"),
                CardDecision::Arqc,
            )
            .expect("arqc");
        let mut payment = Payment::purchase("k-1", 2_500, "EUR", card.track2.clone());
        payment.pin = Some(pin);
        payment.emv = Some(emv);
        (payment, transaction)
    }

    #[test]
    fn the_request_json_has_the_api_names_and_no_card_secrets() {
        let (payment, transaction) = chip_payment();
        let request = build_payment_request("t-1", &payment, &transaction, None);
        assert_eq!(request.ksn, "FFFF9876543210E00001");
        assert_eq!(request.pan_sequence_number, "01");
        let text = serde_json::to_string(&request).expect("json");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["terminalId"], "t-1");
        assert_eq!(value["idempotencyKey"], "k-1");
        assert_eq!(value["transactionType"], "TRANSACTION_TYPE_PURCHASE");
        assert_eq!(value["entryMode"], "ENTRY_MODE_CHIP");
        assert_eq!(value["amountMinor"], "2500");
        assert_eq!(value["currency"], "EUR");
        assert_eq!(value["ksn"], "FFFF9876543210E00001");
        assert_eq!(value["panSequenceNumber"], "01");
        assert_eq!(
            value["encryptedCardData"],
            STANDARD.encode(&transaction.encrypted_card_data)
        );
        assert_eq!(
            value["encryptedPinBlock"],
            transaction.encrypted_pin_block.clone().expect("pin block")
        );
        assert_eq!(
            value["emvData"],
            STANDARD.encode(&payment.emv.as_ref().expect("emv").tlv)
        );
        assert!(value.get("attestationToken").is_none());
        // Neither the PAN nor the PIN nor the track appears anywhere, nor the PAN's BCD in
        // the EMV data.
        let card = test_card("visa").expect("visa");
        for secret in [card.pan().expose(), "7913", "D3012201"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let emv_hex = hex::encode_upper(&request.emv_data);
        assert!(!emv_hex.contains(card.pan().expose()));
        // The JSON decodes back to the same request (what the service reads).
        let decoded: pb::PaymentRequest = serde_json::from_str(&text).expect("decode");
        assert_eq!(decoded, request);
        // Nothing secret in Debug either.
        let printed = format!("{payment:?} {transaction:?}");
        assert!(!printed.contains(card.pan().expose()), "{printed}");
        assert!(!printed.contains("7913"), "{printed}");
    }

    #[test]
    fn the_host_deciphers_card_data_and_pin_with_the_one_ksn() {
        let (payment, transaction) = chip_payment();
        let ksn = tdes::Ksn::from_hex(&transaction.ksn).expect("ksn");
        let data_key = tdes::host_working_key(
            &key(BDK),
            &ksn,
            KeyUsage::DataRequest,
            DataKeyDerivation::OneWay,
        )
        .expect("data key");
        let clear = paycrypto::primitives::tdes_decrypt_cbc(
            data_key.expose(),
            &[0; 8],
            &transaction.encrypted_card_data,
        )
        .expect("decrypt");
        let track = payment.track2.expose_ascii();
        assert_eq!(&clear[..track.len()], track.as_slice());
        let pin_key = tdes::host_working_key(
            &key(BDK),
            &ksn,
            KeyUsage::PinEncryption,
            DataKeyDerivation::OneWay,
        )
        .expect("pin key");
        let block = hex::decode(transaction.encrypted_pin_block.expect("block")).expect("hex");
        let pin = paycrypto::pin::decrypt_pin_block(
            PinBlockFormat::Iso0,
            &pin_key,
            &block,
            Some(payment.track2.pan()),
        )
        .expect("pin");
        assert_eq!(Some(pin), payment.pin);
    }

    #[test]
    fn soft_pos_requests_carry_the_attestation_token_and_no_pin_block_without_pin() {
        let card = test_card("mastercard-2-series").expect("mc");
        let mut registers = DukptRegisters::default();
        registers
            .load(
                DukptAlgorithm::Aes128,
                &key("1273671EA26AC29AFA4D1084127652A1"),
                "1234567890123456",
            )
            .expect("load");
        let transaction = registers
            .encrypt_transaction(&card.track2, None)
            .expect("encrypt");
        assert_eq!(transaction.pin_block_format, PinBlockFormat::Iso4);
        assert_eq!(transaction.encrypted_card_data.len() % 16, 0);
        let mut payment = Payment::purchase("k-2", 100, "EUR", card.track2.clone());
        payment.entry_mode = pb::EntryMode::Contactless;
        let request = build_payment_request("phone-1", &payment, &transaction, Some("e.y.j"));
        let value = serde_json::to_value(&request).expect("json");
        assert_eq!(value["attestationToken"], "e.y.j");
        assert_eq!(value["entryMode"], "ENTRY_MODE_CONTACTLESS");
        assert_eq!(value["ksn"], "123456789012345600000001");
        assert!(value.get("encryptedPinBlock").is_none(), "{value}");
        assert!(value.get("emvData").is_none(), "{value}");
    }

    #[test]
    fn payment_ids_are_checked_before_they_reach_a_url() {
        for good in ["p-1", "0123456789abcdef", "a.b_c"] {
            assert!(check_payment_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a?b", "a b", &"x".repeat(129)] {
            assert!(check_payment_id(bad).is_err(), "{bad}");
        }
    }
}
