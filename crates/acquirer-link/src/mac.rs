//! Message authentication: the MAC of field 64 (or 128) and who computes it.
//!
//! The MAC covers the encoded message (MTI, bitmaps and every field) up to, excluding, the
//! MAC field itself, which is always the last field of the message: the message is encoded
//! with a zero MAC, the bytes before the MAC field's 8 bytes are MACed, and the MAC is
//! written there ([`seal`]). The MAC goes into field 64, or into field 128 when the message
//! has a secondary bitmap (a field above 64, e.g. 70 or 90). A spec that carries binary
//! fields as hexadecimal text (16 characters for the 8 bytes) is handled the same way, the
//! MAC then covers the bytes before those 16 characters.
//!
//! Providers: [`HsmMac`] (the hsm-proxy over the bus, the platform's production path),
//! [`SoftMac`] (a clear key in process memory: the simulator and tests), [`NoMac`] (the
//! acquirer uses no MAC).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use hsm_proxy::rpc::HsmClient;
use iso8583::{Message, Spec};
use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;
use paycrypto::mac::{MacAlgorithm, Padding};

use crate::profile::field;
use crate::{LinkError, wire};

/// Computes and checks the 8-byte MACs of the link's messages.
#[async_trait]
pub trait MacProvider: Send + Sync {
    /// The MAC of `data`.
    async fn generate(&self, data: &[u8]) -> Result<[u8; 8], LinkError>;
    /// Whether `mac` is the MAC of `data`.
    async fn verify(&self, data: &[u8], mac: &[u8; 8]) -> Result<bool, LinkError>;
}

impl fmt::Debug for dyn MacProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacProvider")
    }
}

/// No MAC: for acquirers whose spec has none. Generating is an error (a MAC field should
/// not be configured), verifying always fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMac;

#[async_trait]
impl MacProvider for NoMac {
    async fn generate(&self, _data: &[u8]) -> Result<[u8; 8], LinkError> {
        Err(LinkError::Mac("no mac provider configured".into()))
    }

    async fn verify(&self, _data: &[u8], _mac: &[u8; 8]) -> Result<bool, LinkError> {
        Err(LinkError::Mac("no mac provider configured".into()))
    }
}

/// ISO 9797-1 MAC algorithm 3 (the ANSI X9.19 retail MAC), padding method 1, with a clear
/// double-length key in process memory. For the simulator's own side and tests; production
/// keys stay in the HSM ([`HsmMac`]).
#[derive(Clone)]
pub struct SoftMac {
    key: SecretBytes,
}

impl fmt::Debug for SoftMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SoftMac(***)")
    }
}

impl SoftMac {
    /// A provider with the 16-byte key K1‖K2.
    pub fn new(key: SecretBytes) -> Result<Self, LinkError> {
        if key.len() != 16 {
            return Err(LinkError::Mac("a retail mac key has 16 bytes".into()));
        }
        Ok(Self { key })
    }

    fn compute(&self, data: &[u8]) -> Result<[u8; 8], LinkError> {
        let mac = MacAlgorithm::Iso9797Alg3(Padding::Method1)
            .generate(&self.key, data, 8)
            .map_err(|error| LinkError::Mac(error.to_string()))?;
        mac.try_into()
            .map_err(|_| LinkError::Mac("mac of unexpected length".into()))
    }
}

#[async_trait]
impl MacProvider for SoftMac {
    async fn generate(&self, data: &[u8]) -> Result<[u8; 8], LinkError> {
        self.compute(data)
    }

    async fn verify(&self, data: &[u8], mac: &[u8; 8]) -> Result<bool, LinkError> {
        let expected = self.compute(data)?;
        Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_slice(),
            mac.as_slice(),
        )))
    }
}

/// The MAC computed by the hsm-proxy (`GenerateMac`/`VerifyMac` over the bus) under the
/// zone MAC key (key usage M3): ISO 9797-1 algorithm 3, padding method 1, 8 bytes. The
/// message (PAN, track 2, PIN block) is sealed to the hsm-proxy when the client has a sealer
/// (`HsmClient::with_sealer`), else sent in clear.
#[derive(Clone, Debug)]
pub struct HsmMac {
    client: HsmClient,
    tenant_id: String,
    key: String,
}

impl HsmMac {
    /// A provider using `key` (an id or `alias/…`) of `tenant_id`.
    pub fn new(client: HsmClient, tenant_id: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            client,
            tenant_id: tenant_id.into(),
            key: key.into(),
        }
    }
}

fn hsm_error(operation: &str, error: &mpos_bus::BusError) -> LinkError {
    // Bus errors name codes and subjects, never the message bytes.
    LinkError::Mac(format!("{operation}: {error}"))
}

#[async_trait]
impl MacProvider for HsmMac {
    async fn generate(&self, data: &[u8]) -> Result<[u8; 8], LinkError> {
        let request = pb::GenerateMacRequest {
            tenant_id: self.tenant_id.clone(),
            key: self.key.clone(),
            algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
            padding: pb::MacPadding::Method1.into(),
            dukpt: None,
            mac_length: 8,
            ..pb::GenerateMacRequest::default()
        };
        // An ISO 8583 request carries the PAN, track 2 and the PIN block: sealed to the
        // hsm-proxy when the client can seal, so that the bus never sees them.
        let response: pb::GenerateMacResponse = if self.client.seals() {
            self.client.generate_mac_sealed(request, data).await
        } else {
            self.client
                .call(
                    "GenerateMac",
                    &pb::GenerateMacRequest {
                        message: data.to_vec(),
                        ..request
                    },
                )
                .await
        }
        .map_err(|error| hsm_error("generate mac", &error))?;
        response
            .mac
            .as_slice()
            .try_into()
            .map_err(|_| LinkError::Mac("generate mac: not 8 bytes".into()))
    }

    async fn verify(&self, data: &[u8], mac: &[u8; 8]) -> Result<bool, LinkError> {
        let request = pb::VerifyMacRequest {
            tenant_id: self.tenant_id.clone(),
            key: self.key.clone(),
            algorithm: pb::MacAlgorithm::Iso9797Alg3.into(),
            padding: pb::MacPadding::Method1.into(),
            dukpt: None,
            mac: mac.to_vec(),
            ..pb::VerifyMacRequest::default()
        };
        let response: pb::VerifyMacResponse = if self.client.seals() {
            self.client.verify_mac_sealed(request, data).await
        } else {
            self.client
                .call(
                    "VerifyMac",
                    &pb::VerifyMacRequest {
                        message: data.to_vec(),
                        ..request
                    },
                )
                .await
        }
        .map_err(|error| hsm_error("verify mac", &error))?;
        Ok(response.verified)
    }
}

/// The MAC field of a message: 128 when the secondary bitmap is present, else 64.
pub fn mac_field_for(message: &Message) -> u8 {
    if wire::has_secondary(message) {
        field::MAC_SECONDARY
    } else {
        field::MAC
    }
}

/// How many bytes the 8-byte MAC `mac` takes at the end of `encoded`: 8 (binary) or 16
/// (hexadecimal text); `None` when the message does not end with it.
fn mac_tail(encoded: &[u8], mac: &[u8; 8]) -> Option<usize> {
    if encoded.ends_with(mac) {
        return Some(8);
    }
    let upper = hex::encode_upper(mac);
    let lower = hex::encode(mac);
    if encoded.ends_with(upper.as_bytes()) || encoded.ends_with(lower.as_bytes()) {
        return Some(16);
    }
    None
}

/// Encodes `message` with its MAC (when `provider` is given): field 64, or 128 with a
/// secondary bitmap, as the last field.
pub async fn seal(
    spec: &Spec,
    mut message: Message,
    provider: Option<&Arc<dyn MacProvider>>,
) -> Result<Vec<u8>, LinkError> {
    let Some(provider) = provider else {
        return Ok(iso8583::encode(spec, &message)?);
    };
    wire::remove(&mut message, field::MAC);
    wire::remove(&mut message, field::MAC_SECONDARY);
    let mac_field = mac_field_for(&message);
    wire::set_bytes(&mut message, mac_field, &[0; 8]);
    let mut encoded = iso8583::encode(spec, &message)?;
    let tail = mac_tail(&encoded, &[0; 8])
        .ok_or_else(|| LinkError::protocol("the mac field is not the last field"))?;
    let start = encoded.len() - tail;
    let mac = provider.generate(&encoded[..start]).await?;
    if tail == 8 {
        encoded[start..].copy_from_slice(&mac);
    } else {
        encoded[start..].copy_from_slice(hex::encode_upper(mac).as_bytes());
    }
    Ok(encoded)
}

/// Checks the MAC of a received message: `encoded` are its bytes as received (without the
/// framing), `message` the decoded message. A missing MAC field, a MAC that is not the last
/// field or a wrong MAC is [`LinkError::BadMac`].
pub async fn verify(
    encoded: &[u8],
    message: &Message,
    provider: &Arc<dyn MacProvider>,
) -> Result<(), LinkError> {
    let mac_field = mac_field_for(message);
    let mac: [u8; 8] = wire::bytes(message, mac_field)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(LinkError::BadMac)?;
    let tail = mac_tail(encoded, &mac).ok_or(LinkError::BadMac)?;
    let data = &encoded[..encoded.len() - tail];
    if provider.verify(data, &mac).await? {
        Ok(())
    } else {
        Err(LinkError::BadMac)
    }
}
