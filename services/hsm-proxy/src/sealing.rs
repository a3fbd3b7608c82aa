//! Sealed card data on the bus (`crates/mpos-seal`): a PAN or a PAN-bearing MAC message
//! sealed to this process's key instead of sent in clear, and a `DecryptData` plaintext
//! sealed back to the caller's key, so that the NATS server and every other subscriber see
//! only ciphertext.
//!
//! The engine never sees sealed fields: [`Sealing::unseal`] turns a request with a sealed
//! field into its clear form in memory before the engine runs (the engine wipes the clear
//! PAN or message when it is done), and [`Sealing::seal_plaintext`] seals a `DecryptData`
//! reply after it. Every sealed field is bound to its field and request by the context
//! `mpos_seal::context("hsm.<Message>.<clear field>", request_id)`.

use std::str::FromStr;
use std::sync::Arc;

use mpos_errors::ServiceError;
use mpos_proto::common as common_pb;
use mpos_proto::hsm as pb;
use mpos_seal::{PublicKey, SealError, Sealed, Sealer, context};
use zeroize::{Zeroize, Zeroizing};

/// Part of the message of the `conflict` answered for a field sealed to a key this process
/// does not hold (it restarted, or rotated its key twice since): the caller fetches the key
/// again (`GetSealingKey`) and seals again.
pub const UNKNOWN_SEALING_KEY: &str = "unknown sealing key";

/// The seal context's field name of `DecryptDataResponse.sealed_plaintext`.
pub const DECRYPT_DATA_PLAINTEXT: &str = "hsm.DecryptDataResponse.plaintext";

/// The longest request id, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// Whether card data may still travel in clear (`MPOS_HSM_SEALED_CARD_DATA`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SealedCardData {
    /// Clear and sealed forms are both accepted (the default, while callers move over).
    #[default]
    Allow,
    /// A clear `pan`, a clear PAN-bearing MAC `message` (HMAC-SHA-256, or a message that is a
    /// bare PAN) and a `DecryptData` with a DUKPT key but no `reply_key` are refused with
    /// `bad_request` naming the field.
    Require,
}

impl SealedCardData {
    /// The setting's value as written in the variable.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Require => "require",
        }
    }
}

impl FromStr for SealedCardData {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "allow" => Ok(Self::Allow),
            "require" => Ok(Self::Require),
            other => Err(format!("{other:?} is neither \"allow\" nor \"require\"")),
        }
    }
}

/// A request whose clear card-data field (`pan`, `message`) may come sealed instead
/// (`sealed_pan`, `sealed_message`), with the request id that is part of its seal context.
pub trait SealedInput {
    /// The clear field's name in the seal context, e.g. `hsm.TranslatePinDataRequest.pan`.
    const FIELD: &'static str;
    /// The clear field's API name (`pan`, `message`), for errors.
    const CLEAR: &'static str;
    /// The sealed field's API name (`sealedPan`, `sealedMessage`), for errors.
    const SEALED: &'static str;

    /// The request id.
    fn request_id(&self) -> &str;
    /// The request id, to set.
    fn request_id_mut(&mut self) -> &mut String;
    /// Whether the clear field is set.
    fn has_clear(&self) -> bool;
    /// Whether `require` refuses the clear field as it is.
    fn clear_refused(&self) -> bool {
        self.has_clear()
    }
    /// Wipes and empties the clear field.
    fn wipe_clear(&mut self);
    /// Puts an opened value into the clear field; `false` (wiping it) if it cannot be one.
    fn put_clear(&mut self, opened: Zeroizing<Vec<u8>>) -> bool;
    /// Takes the sealed field out.
    fn take_sealed(&mut self) -> Option<common_pb::Sealed>;
    /// Sets the sealed field.
    fn put_sealed(&mut self, sealed: common_pb::Sealed);

    /// The seal context of this request's sealed field.
    fn seal_context(&self) -> Vec<u8> {
        context(Self::FIELD, self.request_id())
    }
}

macro_rules! sealed_pan {
    ($($message:ident),+ $(,)?) => {$(
        impl SealedInput for pb::$message {
            const FIELD: &'static str = concat!("hsm.", stringify!($message), ".pan");
            const CLEAR: &'static str = "pan";
            const SEALED: &'static str = "sealedPan";

            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn request_id_mut(&mut self) -> &mut String {
                &mut self.request_id
            }
            fn has_clear(&self) -> bool {
                !self.pan.trim().is_empty()
            }
            fn wipe_clear(&mut self) {
                self.pan.zeroize();
            }
            fn put_clear(&mut self, mut opened: Zeroizing<Vec<u8>>) -> bool {
                // Moves the buffer (no copy); the engine wipes the PAN when it is done.
                match String::from_utf8(std::mem::take(&mut *opened)) {
                    Ok(pan) => {
                        self.pan = pan;
                        true
                    }
                    Err(error) => {
                        error.into_bytes().zeroize();
                        false
                    }
                }
            }
            fn take_sealed(&mut self) -> Option<common_pb::Sealed> {
                self.sealed_pan.take()
            }
            fn put_sealed(&mut self, sealed: common_pb::Sealed) {
                self.sealed_pan = Some(sealed);
            }
        }
    )+};
}

sealed_pan!(
    TranslatePinDataRequest,
    GeneratePinDataRequest,
    VerifyPinDataRequest,
    GenerateCardValidationDataRequest,
    VerifyCardValidationDataRequest,
    VerifyAuthRequestCryptogramRequest,
);

/// Whether `message` is nothing but a PAN: 12 to 19 ASCII digits.
fn is_bare_pan(message: &[u8]) -> bool {
    (12..=19).contains(&message.len()) && message.iter().all(u8::is_ascii_digit)
}

macro_rules! sealed_message {
    ($($message:ident),+ $(,)?) => {$(
        impl SealedInput for pb::$message {
            const FIELD: &'static str = concat!("hsm.", stringify!($message), ".message");
            const CLEAR: &'static str = "message";
            const SEALED: &'static str = "sealedMessage";

            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn request_id_mut(&mut self) -> &mut String {
                &mut self.request_id
            }
            fn has_clear(&self) -> bool {
                !self.message.is_empty()
            }
            /// HMAC-SHA-256 is the keyed token of a card (HMAC of its PAN digits, M7); any
            /// other MAC of a bare PAN is one too. MACs of whole financial messages are not
            /// inspected.
            fn clear_refused(&self) -> bool {
                self.has_clear()
                    && (self.algorithm == i32::from(pb::MacAlgorithm::HmacSha256)
                        || is_bare_pan(&self.message))
            }
            fn wipe_clear(&mut self) {
                self.message.zeroize();
            }
            fn put_clear(&mut self, mut opened: Zeroizing<Vec<u8>>) -> bool {
                // Moves the buffer (no copy); the engine wipes the message when it is done.
                self.message = std::mem::take(&mut *opened);
                true
            }
            fn take_sealed(&mut self) -> Option<common_pb::Sealed> {
                self.sealed_message.take()
            }
            fn put_sealed(&mut self, sealed: common_pb::Sealed) {
                self.sealed_message = Some(sealed);
            }
        }
    )+};
}

sealed_message!(GenerateMacRequest, VerifyMacRequest);

/// Refuses a missing or over-long request id where a sealed field needs one.
fn check_request_id(request_id: &str, with: &str) -> Result<(), ServiceError> {
    let chars = request_id.chars().count();
    if (1..=MAX_REQUEST_ID_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(ServiceError::bad_request(format!(
            "requestId: 1 to {MAX_REQUEST_ID_CHARS} characters, required with {with}"
        )))
    }
}

/// Where a `DecryptData` plaintext is sealed to: the caller's key and the reply's context.
#[derive(Debug)]
pub struct ReplyTo {
    key: PublicKey,
    context: Vec<u8>,
}

/// The hsm-proxy's side of sealed card data: its process key (one [`Sealer`] per process,
/// created at start, never stored) and the enforcement setting.
#[derive(Debug)]
pub struct Sealing {
    sealer: Arc<Sealer>,
    card_data: SealedCardData,
}

impl Sealing {
    /// Seals and opens with `sealer`, enforcing `card_data`.
    pub fn new(sealer: Arc<Sealer>, card_data: SealedCardData) -> Self {
        Self { sealer, card_data }
    }

    /// The process's sealer.
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.sealer
    }

    /// The enforcement setting.
    pub fn card_data(&self) -> SealedCardData {
        self.card_data
    }

    /// The process's current public sealing key (the `GetSealingKey` reply).
    pub fn sealing_key(&self) -> common_pb::SealingKey {
        common_pb::SealingKey::from(&self.sealer.public_key())
    }

    /// The "unseal" step: opens the request's sealed field into its clear field, in
    /// memory, so that the engine runs on the clear form. Refuses both forms together
    /// (`bad_request`), a field sealed to a key this process does not hold (`conflict`,
    /// [`UNKNOWN_SEALING_KEY`]), any other field that does not open (`bad_request`, no
    /// detail) and, with [`SealedCardData::Require`], a clear field.
    pub fn unseal<Q: SealedInput>(&self, request: &mut Q) -> Result<(), ServiceError> {
        let Some(sealed) = request.take_sealed() else {
            if self.card_data == SealedCardData::Require && request.clear_refused() {
                request.wipe_clear();
                return Err(ServiceError::bad_request(format!(
                    "{}: refused in clear (MPOS_HSM_SEALED_CARD_DATA=require); send {} sealed to \
                     the hsm-proxy's key instead",
                    Q::CLEAR,
                    Q::SEALED
                )));
            }
            return Ok(());
        };
        if request.has_clear() {
            request.wipe_clear();
            return Err(ServiceError::bad_request(format!(
                "{}: set either {} or {}, not both",
                Q::SEALED,
                Q::CLEAR,
                Q::SEALED
            )));
        }
        check_request_id(request.request_id(), Q::SEALED)?;
        let does_not_open =
            || ServiceError::bad_request(format!("{}: the sealed field does not open", Q::SEALED));
        let sealed = Sealed::try_from(&sealed).map_err(|_| does_not_open())?;
        match self.sealer.open(&sealed, &request.seal_context()) {
            Ok(opened) => {
                if request.put_clear(opened) {
                    Ok(())
                } else {
                    Err(ServiceError::bad_request(format!(
                        "{}: the sealed value is not a {}",
                        Q::SEALED,
                        Q::CLEAR
                    )))
                }
            }
            Err(SealError::UnknownRecipient) => {
                tracing::debug!(
                    field = Q::FIELD,
                    key_id = %sealed.recipient_key_id,
                    "sealed field for a sealing key this process does not hold"
                );
                Err(ServiceError::conflict(format!(
                    "{}: {UNKNOWN_SEALING_KEY}: sealed to a key this hsm-proxy does not hold (it \
                     restarted or rotated its key); fetch its key again (GetSealingKey) and seal \
                     again",
                    Q::SEALED
                )))
            }
            Err(_) => {
                tracing::warn!(field = Q::FIELD, "sealed field does not open");
                Err(does_not_open())
            }
        }
    }

    /// Checks a `DecryptData` request's `reply_key` before anything is deciphered: where to
    /// seal the plaintext to, or `None` to answer it in clear. With
    /// [`SealedCardData::Require`], a DUKPT data key (card data from a terminal) without
    /// `reply_key` is refused.
    pub fn reply_to(
        &self,
        request: &pb::DecryptDataRequest,
    ) -> Result<Option<ReplyTo>, ServiceError> {
        let Some(reply_key) = &request.reply_key else {
            let dukpt = request
                .encryption
                .as_ref()
                .and_then(|encryption| encryption.dukpt.as_ref())
                .is_some_and(|dukpt| !dukpt.ksn.trim().is_empty());
            if self.card_data == SealedCardData::Require && dukpt {
                return Err(ServiceError::bad_request(
                    "replyKey: required to decipher with a DUKPT key \
                     (MPOS_HSM_SEALED_CARD_DATA=require); the plaintext is sealed to it",
                ));
            }
            return Ok(None);
        };
        check_request_id(&request.request_id, "replyKey")?;
        let key = PublicKey::try_from(reply_key)
            .map_err(|_| ServiceError::bad_request("replyKey: not a valid sealing key"))?;
        Ok(Some(ReplyTo {
            key,
            context: context(DECRYPT_DATA_PLAINTEXT, &request.request_id),
        }))
    }

    /// The "seal" step of a `DecryptData` reply: moves `plaintext` (wiped) into
    /// `sealed_plaintext`, sealed to the caller's key.
    pub fn seal_plaintext(
        &self,
        reply_to: &ReplyTo,
        response: &mut pb::DecryptDataResponse,
    ) -> Result<(), ServiceError> {
        let plaintext = Zeroizing::new(std::mem::take(&mut response.plaintext));
        let sealed = self
            .sealer
            .seal(&reply_to.key, &reply_to.context, &plaintext)
            .map_err(|error| match error {
                SealError::WeakKey => {
                    ServiceError::bad_request("replyKey: not a valid sealing key")
                }
                other => ServiceError::from(other),
            })?;
        response.sealed_plaintext = Some(common_pb::Sealed::from(sealed));
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!("allow".parse(), Ok(SealedCardData::Allow));
        assert_eq!(" require ".parse(), Ok(SealedCardData::Require));
        assert!("yes".parse::<SealedCardData>().is_err());
        assert_eq!(SealedCardData::default(), SealedCardData::Allow);
    }

    #[test]
    fn field_names_are_the_proto_paths() {
        assert_eq!(
            pb::TranslatePinDataRequest::FIELD,
            "hsm.TranslatePinDataRequest.pan"
        );
        assert_eq!(
            pb::VerifyAuthRequestCryptogramRequest::FIELD,
            "hsm.VerifyAuthRequestCryptogramRequest.pan"
        );
        assert_eq!(
            pb::GenerateMacRequest::FIELD,
            "hsm.GenerateMacRequest.message"
        );
        assert_eq!(pb::VerifyMacRequest::SEALED, "sealedMessage");
    }

    /// Errors name fields as the proto3 JSON mapping (pbjson) does.
    #[test]
    fn errors_use_the_json_names() {
        let request = pb::TranslatePinDataRequest {
            request_id: "r".into(),
            sealed_pan: Some(common_pb::Sealed::default()),
            ..Default::default()
        };
        let json = serde_json::to_value(&request).unwrap();
        assert!(json.get("requestId").is_some(), "{json}");
        assert!(
            json.get(pb::TranslatePinDataRequest::SEALED).is_some(),
            "{json}"
        );
        let request = pb::GenerateMacRequest {
            sealed_message: Some(common_pb::Sealed::default()),
            ..Default::default()
        };
        let json = serde_json::to_value(&request).unwrap();
        assert!(json.get(pb::GenerateMacRequest::SEALED).is_some(), "{json}");
        let request = pb::DecryptDataRequest {
            reply_key: Some(common_pb::SealingKey::default()),
            ..Default::default()
        };
        assert!(
            serde_json::to_value(&request)
                .unwrap()
                .get("replyKey")
                .is_some()
        );
        let response = pb::DecryptDataResponse {
            sealed_plaintext: Some(common_pb::Sealed::default()),
            ..Default::default()
        };
        assert!(
            serde_json::to_value(&response)
                .unwrap()
                .get("sealedPlaintext")
                .is_some()
        );
    }

    #[test]
    fn bare_pans() {
        assert!(is_bare_pan(b"4012345678909"));
        assert!(!is_bare_pan(b"4012345678909D987"));
        assert!(!is_bare_pan(b"12345678901"));
        assert!(!is_bare_pan(b"12345678901234567890"));
    }

    #[test]
    fn request_ids() {
        assert!(check_request_id("", "x").is_err());
        assert!(check_request_id(&"a".repeat(129), "x").is_err());
        assert!(check_request_id(&"é".repeat(128), "x").is_ok());
        assert!(check_request_id("0190f5a0-0000-7000-8000-000000000001", "x").is_ok());
    }
}
