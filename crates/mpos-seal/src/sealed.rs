//! A sealed field, and its protobuf form `mpos.common.v1.Sealed`.

use std::fmt;

use mpos_proto::common as pb;

use crate::SealError;
use crate::keys::KEY_ID_LEN;
use crate::primitive::{KEY_LEN, NONCE_LEN, TAG_LEN};

/// A field sealed from one process to another: what travels on the bus.
///
/// Nothing in it is secret. `Debug` shows the key ids and the ciphertext's length, not the
/// ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The sender's X25519 public key.
    pub sender: [u8; 32],
    /// The key id of the recipient's public key (16 lowercase hex digits).
    pub recipient_key_id: String,
    /// The AES-256-GCM nonce, random.
    pub nonce: [u8; 12],
    /// The AES-256-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field(
                "sender_key_id",
                &crate::PublicKey::from_bytes(self.sender).key_id(),
            )
            .field("recipient_key_id", &self.recipient_key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl From<Sealed> for pb::Sealed {
    fn from(sealed: Sealed) -> Self {
        pb::Sealed {
            sender_key: sealed.sender.to_vec(),
            recipient_key_id: sealed.recipient_key_id,
            nonce: sealed.nonce.to_vec(),
            ciphertext: sealed.ciphertext,
        }
    }
}

impl TryFrom<&pb::Sealed> for Sealed {
    type Error = SealError;

    /// Checks the form, not the content: a 32-byte sender key, a 16-character lowercase hex
    /// key id, a 12-byte nonce and at least a 16-byte tag of ciphertext; otherwise
    /// [`SealError::Malformed`] naming the field.
    fn try_from(sealed: &pb::Sealed) -> Result<Self, SealError> {
        let sender = <[u8; KEY_LEN]>::try_from(sealed.sender_key.as_slice())
            .map_err(|_| SealError::Malformed("sender_key must be 32 bytes"))?;
        let id = &sealed.recipient_key_id;
        if id.len() != KEY_ID_LEN || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(SealError::Malformed(
                "recipient_key_id must be 16 lowercase hex digits",
            ));
        }
        let nonce = <[u8; NONCE_LEN]>::try_from(sealed.nonce.as_slice())
            .map_err(|_| SealError::Malformed("nonce must be 12 bytes"))?;
        if sealed.ciphertext.len() < TAG_LEN {
            return Err(SealError::Malformed(
                "ciphertext must hold at least the 16-byte tag",
            ));
        }
        Ok(Sealed {
            sender,
            recipient_key_id: id.clone(),
            nonce,
            ciphertext: sealed.ciphertext.clone(),
        })
    }
}
