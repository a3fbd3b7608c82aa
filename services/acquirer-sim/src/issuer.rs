//! The issuer's cryptography: PIN verification (Visa PVV) and ARQC verification with an
//! ARPC, through the hsm-proxy ([`HsmIssuer`]) or with clear test keys ([`ClearIssuer`]).
//!
//! # The platform's CDOL convention
//!
//! The ARQC is verified over the data the card MACed (the CDOL1 data). Field 55 carries the
//! data objects, not the card's CDOL1, so the simulator concatenates the values of these
//! tags, in this order — the minimum set EMV Book 2 recommends for the application
//! cryptogram, as the platform's terminals send them:
//!
//! | tag | data object | bytes |
//! |---|---|---|
//! | 9F02 | amount, authorised | 6 |
//! | 9F03 | amount, other | 6 |
//! | 9F1A | terminal country code | 2 |
//! | 95 | terminal verification results | 5 |
//! | 5F2A | transaction currency code | 2 |
//! | 9A | transaction date | 3 |
//! | 9C | transaction type | 1 |
//! | 9F37 | unpredictable number | 4 |
//! | 82 | application interchange profile | 2 |
//! | 9F36 | application transaction counter | 2 |
//! | 9F10 | issuer application data, whole | var. |
//!
//! With the EMV common session key (the scheme used here, as Visa CVN 18), the card MACs
//! the whole issuer application data after the ten terminal and card data objects; this is
//! what pyemv's published CVN 18 vector checks. Keys: issuer master key for application
//! cryptograms (E0), ICC master key by option A (PAN and PSN), session key from the ATC,
//! MAC algorithm 3 with padding method 2; ARPC method 1 under the session key with the
//! answer's response code as the ARC (two ASCII characters). Tag 91 in the answer's field 55
//! is ARPC ‖ ARC.

use std::fmt;

use async_trait::async_trait;
use emv_tlv::{Tag, Tlv};
use hsm_proxy::rpc::HsmClient;
use mpos_proto::hsm as pb;
use paycrypto::emv::{self, SessionKeyDerivation};
use paycrypto::mac::Padding;
use paycrypto::pin::{Pan, PinBlockFormat};
use paycrypto::pinver::{Pvki, Pvv};
use paycrypto::{CryptoError, SecretBytes};

/// The CDOL data objects, in order (see the module documentation).
pub const CDOL_TAGS: [u32; 11] = [
    0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36, 0x9F10,
];
/// Application cryptogram.
pub const TAG_ARQC: u32 = 0x9F26;
/// Application transaction counter.
pub const TAG_ATC: u32 = 0x9F36;
/// Unpredictable number.
pub const TAG_UN: u32 = 0x9F37;
/// Issuer authentication data (ARPC ‖ ARC).
pub const TAG_ISSUER_AUTH: u32 = 0x91;

/// Why an issuer check could not be made (not: it failed).
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// Field 55 lacks a data object or is malformed.
    #[error("icc data: {0}")]
    IccData(String),
    /// The keys or the hsm-proxy failed.
    #[error("issuer crypto: {0}")]
    Crypto(String),
    /// No issuer keys are configured for this check.
    #[error("no issuer keys configured")]
    NotConfigured,
}

impl IssuerError {
    /// What failed, as a fixed name: what logs show. The messages carry text from the
    /// hsm-proxy and the codecs, which promise no card data; a name cannot carry any.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IccData(_) => "icc_data",
            Self::Crypto(_) => "issuer_crypto",
            Self::NotConfigured => "not_configured",
        }
    }
}

/// What an ARQC check needs.
pub struct ArqcInput {
    /// The card.
    pub pan: Pan,
    /// PAN sequence number, 2 digits.
    pub psn: String,
    /// ATC (9F36).
    pub atc: [u8; 2],
    /// Unpredictable number (9F37).
    pub un: [u8; 4],
    /// The CDOL data (see the module documentation).
    pub transaction_data: Vec<u8>,
    /// The ARQC (9F26).
    pub arqc: [u8; 8],
    /// The authorisation response code for the ARPC: the answer's response code.
    pub arc: [u8; 2],
}

impl fmt::Debug for ArqcInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArqcInput")
            .field("pan", &self.pan)
            .field("transaction_data_len", &self.transaction_data.len())
            .finish_non_exhaustive()
    }
}

impl ArqcInput {
    /// Reads the ARQC, ATC, UN and CDOL data from field 55.
    pub fn from_icc(
        pan: Pan,
        psn: Option<&str>,
        icc: &[u8],
        arc: [u8; 2],
    ) -> Result<Self, IssuerError> {
        let items = emv_tlv::parse(icc).map_err(|error| IssuerError::IccData(error.to_string()))?;
        let value = |tag: u32| -> Result<&[u8], IssuerError> {
            emv_tlv::find(&items, Tag(tag))
                .ok_or_else(|| IssuerError::IccData(format!("no tag {:X}", tag)))
        };
        let fixed = |tag: u32| -> Result<Vec<u8>, IssuerError> { value(tag).map(<[u8]>::to_vec) };
        let mut transaction_data = Vec::with_capacity(64);
        for tag in CDOL_TAGS {
            transaction_data.extend_from_slice(value(tag)?);
        }
        let atc = fixed(TAG_ATC)?
            .try_into()
            .map_err(|_| IssuerError::IccData("9F36 is not 2 bytes".into()))?;
        let un = fixed(TAG_UN)?
            .try_into()
            .map_err(|_| IssuerError::IccData("9F37 is not 4 bytes".into()))?;
        let arqc = fixed(TAG_ARQC)?
            .try_into()
            .map_err(|_| IssuerError::IccData("9F26 is not 8 bytes".into()))?;
        // Field 23 is 3 digits; the EMV PSN is its last two.
        let psn = psn
            .map(|text| {
                let start = text.len().saturating_sub(2);
                text.get(start..).unwrap_or("00").to_owned()
            })
            .unwrap_or_else(|| "00".to_owned());
        Ok(Self {
            pan,
            psn,
            atc,
            un,
            transaction_data,
            arqc,
            arc,
        })
    }
}

/// Tag 91 (issuer authentication data) for field 55: ARPC ‖ ARC.
pub fn issuer_authentication_data(arpc: &[u8], arc: [u8; 2]) -> Vec<u8> {
    let mut value = arpc.to_vec();
    value.extend_from_slice(&arc);
    emv_tlv::encode(&[Tlv::primitive(Tag(TAG_ISSUER_AUTH), value)])
}

/// The issuer's PIN and cryptogram checks.
#[async_trait]
pub trait IssuerCrypto: Send + Sync {
    /// Whether the PIN in `pin_block` (ISO 0 under the zone PIN key) matches the PVV.
    async fn verify_pin(
        &self,
        pan: &Pan,
        pin_block: &[u8; 8],
        pvki: u8,
        pvv: &str,
    ) -> Result<bool, IssuerError>;

    /// The ARPC when the ARQC verifies, `None` when it does not.
    async fn verify_arqc(&self, input: &ArqcInput) -> Result<Option<Vec<u8>>, IssuerError>;
}

impl fmt::Debug for dyn IssuerCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuerCrypto")
    }
}

/// Clear test keys in process memory. Never for production keys.
#[derive(Clone, Default)]
pub struct ClearIssuer {
    /// The zone PIN key the acquirer enciphers PIN blocks under (TDES, 16 bytes).
    pub zpk: Option<SecretBytes>,
    /// The PIN verification key (Visa PVV, 16 bytes).
    pub pvk: Option<SecretBytes>,
    /// The issuer master key for application cryptograms (16 bytes).
    pub imk_ac: Option<SecretBytes>,
}

impl fmt::Debug for ClearIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClearIssuer")
            .field("zpk", &self.zpk.is_some())
            .field("pvk", &self.pvk.is_some())
            .field("imk_ac", &self.imk_ac.is_some())
            .finish()
    }
}

fn crypto(error: &CryptoError) -> IssuerError {
    IssuerError::Crypto(error.to_string())
}

#[async_trait]
impl IssuerCrypto for ClearIssuer {
    async fn verify_pin(
        &self,
        pan: &Pan,
        pin_block: &[u8; 8],
        pvki: u8,
        pvv: &str,
    ) -> Result<bool, IssuerError> {
        let (Some(zpk), Some(pvk)) = (&self.zpk, &self.pvk) else {
            return Err(IssuerError::NotConfigured);
        };
        let pin = match paycrypto::pin::decrypt_pin_block(
            PinBlockFormat::Iso0,
            zpk,
            pin_block,
            Some(pan),
        ) {
            Ok(pin) => pin,
            // A block that does not decode is a wrong PIN (or a wrong key), not a failure.
            Err(_) => return Ok(false),
        };
        let pvki = Pvki::new(pvki).map_err(|error| crypto(&error))?;
        let pvv = Pvv::parse(pvv).map_err(|error| crypto(&error))?;
        match paycrypto::pinver::verify_pvv(pvk, pan, pvki, &pin, &pvv) {
            Ok(()) => Ok(true),
            Err(CryptoError::VerificationFailed(_)) => Ok(false),
            Err(error) => Err(crypto(&error)),
        }
    }

    async fn verify_arqc(&self, input: &ArqcInput) -> Result<Option<Vec<u8>>, IssuerError> {
        let Some(imk) = &self.imk_ac else {
            return Err(IssuerError::NotConfigured);
        };
        let mk = emv::derive_icc_mk_option_a(imk, &input.pan, Some(&input.psn))
            .map_err(|error| crypto(&error))?;
        let sk = emv::derive_ac_session_key(&mk, SessionKeyDerivation::EmvCsk { atc: input.atc })
            .map_err(|error| crypto(&error))?;
        match emv::verify_ac(&sk, &input.transaction_data, Padding::Method2, &input.arqc) {
            Ok(()) => {}
            Err(CryptoError::VerificationFailed(_)) => return Ok(None),
            Err(error) => return Err(crypto(&error)),
        }
        // As the hsm-proxy does: method 1 under the AC session key.
        let arpc =
            emv::arpc_method1(&sk, &input.arqc, &input.arc).map_err(|error| crypto(&error))?;
        Ok(Some(arpc.to_vec()))
    }
}

/// The issuer keys in the hsm-proxy, by id or alias, of one tenant.
#[derive(Clone, Debug)]
pub struct HsmIssuer {
    /// The hsm-proxy caller, with a sealer (`HsmClient::with_sealer`): PANs cross the bus
    /// sealed to the hsm-proxy.
    pub client: HsmClient,
    /// The simulator's tenant in the hsm-proxy.
    pub tenant_id: String,
    /// The zone PIN key (P0).
    pub zpk: Option<String>,
    /// The PIN verification key (V2, Visa PVV).
    pub pvk: Option<String>,
    /// The issuer master key for application cryptograms (E0).
    pub imk_ac: Option<String>,
}

fn bus(operation: &str, error: &mpos_bus::BusError) -> IssuerError {
    IssuerError::Crypto(format!("{operation}: {error}"))
}

#[async_trait]
impl IssuerCrypto for HsmIssuer {
    async fn verify_pin(
        &self,
        pan: &Pan,
        pin_block: &[u8; 8],
        pvki: u8,
        pvv: &str,
    ) -> Result<bool, IssuerError> {
        let (Some(zpk), Some(pvk)) = (&self.zpk, &self.pvk) else {
            return Err(IssuerError::NotConfigured);
        };
        let request = pb::VerifyPinDataRequest {
            tenant_id: self.tenant_id.clone(),
            verification_key: pvk.clone(),
            verification: Some(pb::PinVerification {
                method: pb::PinVerificationMethod::VisaPvv.into(),
                pvki: u32::from(pvki),
                ..Default::default()
            }),
            encryption: Some(pb::PinBlockKey {
                key: zpk.clone(),
                format: pb::PinBlockFormat::Iso0.into(),
                dukpt: None,
            }),
            pin_block: hex::encode_upper(pin_block),
            verification_value: pvv.to_owned(),
            ..pb::VerifyPinDataRequest::default()
        };
        // The PAN crosses the bus sealed to the hsm-proxy (the client carries a sealer).
        let response = self
            .client
            .verify_pin_data_sealed(request, pan.expose())
            .await
            .map_err(|error| bus("verify pin data", &error))?;
        Ok(response.verified)
    }

    async fn verify_arqc(&self, input: &ArqcInput) -> Result<Option<Vec<u8>>, IssuerError> {
        let Some(imk) = &self.imk_ac else {
            return Err(IssuerError::NotConfigured);
        };
        let request = pb::VerifyAuthRequestCryptogramRequest {
            tenant_id: self.tenant_id.clone(),
            key: imk.clone(),
            derivation: pb::MasterKeyDerivation::OptionA.into(),
            session_key_scheme: pb::SessionKeyScheme::EmvCommon.into(),
            pan_sequence_number: input.psn.clone(),
            atc: input.atc.to_vec(),
            unpredictable_number: input.un.to_vec(),
            transaction_data: input.transaction_data.clone(),
            arqc: input.arqc.to_vec(),
            arpc: Some(
                pb::verify_auth_request_cryptogram_request::Arpc::ArpcMethod1(pb::ArpcMethod1 {
                    auth_response_code: input.arc.to_vec(),
                }),
            ),
            ..pb::VerifyAuthRequestCryptogramRequest::default()
        };
        let response = self
            .client
            .verify_auth_request_cryptogram_sealed(request, input.pan.expose())
            .await
            .map_err(|error| bus("verify arqc", &error))?;
        Ok(response.verified.then_some(response.arpc))
    }
}

#[cfg(test)]
mod tests {
    use super::IssuerError;

    #[test]
    fn logs_name_what_failed_without_its_message() {
        let pan_like = "4761739001010010";
        for error in [
            IssuerError::IccData(pan_like.into()),
            IssuerError::Crypto(pan_like.into()),
            IssuerError::NotConfigured,
        ] {
            assert!(!error.kind().contains(pan_like));
            assert!(
                error
                    .kind()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }
}
