//! Tamper evidence: a SHA-256 hash chain over the service log and Ed25519-signed checkpoints.
//!
//! Each event's hash is SHA-256 over its canonical encoding ([`canonical_encoding`]), which
//! includes the hash of its predecessor in the log. The global position itself is not hashed:
//! the chain's links fix the order, so that a moved event shows as moved rather than as a
//! cascade of altered ones. A checkpoint signs `(service, position, head hash, time)`.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::event::{NewEvent, StoredEvent};

/// The hash before the first event of a log.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

const EVENT_DOMAIN: &[u8] = b"mpos-event-v1";
const CHECKPOINT_DOMAIN: &[u8] = b"mpos-checkpoint-v1";

fn put_field(buffer: &mut Vec<u8>, field: &[u8]) {
    // Lengths of stored fields fit in u32; a longer one could not be stored anyway.
    let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(field);
}

/// An event's hashed fields, borrowed: from a [`NewEvent`], or straight from the bytes a
/// long read received ([`crate::EventBatch`]), so that an audit hashes rows without building
/// events. Text fields are their UTF-8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// UUIDv7 in canonical text form.
    pub event_id: &'a [u8],
    /// Owning tenant.
    pub tenant_id: &'a [u8],
    /// Aggregate type.
    pub aggregate_type: &'a [u8],
    /// Aggregate id.
    pub aggregate_id: &'a [u8],
    /// Position in the aggregate's stream, from 1.
    pub sequence: u64,
    /// Full protobuf name of the payload.
    pub event_type: &'a [u8],
    /// Payload schema version.
    pub event_version: &'a [u8],
    /// Payload as canonical JSON text.
    pub payload: &'a [u8],
    /// Metadata as canonical JSON text.
    pub metadata: &'a [u8],
    /// Microseconds since the Unix epoch.
    pub occurred_at_us: i64,
}

impl<'a> From<&'a NewEvent> for EventFields<'a> {
    fn from(event: &'a NewEvent) -> Self {
        Self {
            event_id: event.event_id.as_bytes(),
            tenant_id: event.tenant_id.as_bytes(),
            aggregate_type: event.aggregate_type.as_bytes(),
            aggregate_id: event.aggregate_id.as_bytes(),
            sequence: event.sequence,
            event_type: event.event_type.as_bytes(),
            event_version: event.event_version.as_bytes(),
            payload: event.payload.as_bytes(),
            metadata: event.metadata.as_bytes(),
            occurred_at_us: event.occurred_at_us,
        }
    }
}

impl EventFields<'_> {
    /// SHA-256 of the canonical encoding ([`event_hash`]), fed piece by piece.
    pub fn hash(&self, previous_hash: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        encode_into(self, previous_hash, |bytes| hasher.update(bytes));
        hasher.finalize().into()
    }
}

/// Hands the canonical encoding of an event to `put`, piece by piece: a domain tag, then every
/// field as a 4-byte big-endian length and its bytes, in a fixed order (see `docs/events.md`).
fn encode_into(event: &EventFields<'_>, previous_hash: &[u8; 32], mut put: impl FnMut(&[u8])) {
    let sequence = event.sequence.to_be_bytes();
    let occurred_at_us = event.occurred_at_us.to_be_bytes();
    let fields: [&[u8]; 12] = [
        EVENT_DOMAIN,
        event.event_id,
        event.tenant_id,
        event.aggregate_type,
        event.aggregate_id,
        &sequence,
        event.event_type,
        event.event_version,
        event.payload,
        event.metadata,
        &occurred_at_us,
        previous_hash,
    ];
    for field in fields {
        // Lengths of stored fields fit in u32; a longer one could not be stored anyway.
        let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
        put(&length.to_be_bytes());
        put(field);
    }
}

/// The canonical encoding of an event: a domain tag, then every field as a 4-byte big-endian
/// length and its bytes, in a fixed order (see `docs/events.md`).
pub fn canonical_encoding(event: &NewEvent, previous_hash: &[u8; 32]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(256 + event.payload.len() + event.metadata.len());
    encode_into(&event.into(), previous_hash, |bytes| {
        buffer.extend_from_slice(bytes)
    });
    buffer
}

/// SHA-256 of the canonical encoding, fed to the hash piece by piece: no buffer is built and
/// no payload copied (every append and every audited event).
pub fn event_hash(event: &NewEvent, previous_hash: &[u8; 32]) -> [u8; 32] {
    EventFields::from(event).hash(previous_hash)
}

/// A signed statement that the log up to `position` ends in `head_hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Service whose log this is.
    pub service: String,
    /// Last position covered.
    pub position: u64,
    /// Hash of the event at `position`.
    pub head_hash: [u8; 32],
    /// When it was signed, µs since the epoch.
    pub signed_at_us: i64,
    /// Identifies the signing key: hex of the first 16 bytes of SHA-256 of the public key.
    pub key_id: String,
    /// Ed25519 signature over [`Checkpoint::signed_bytes`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn signed_bytes(
        service: &str,
        position: u64,
        head_hash: &[u8; 32],
        signed_at_us: i64,
    ) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(128);
        put_field(&mut buffer, CHECKPOINT_DOMAIN);
        put_field(&mut buffer, service.as_bytes());
        put_field(&mut buffer, &position.to_be_bytes());
        put_field(&mut buffer, head_hash);
        put_field(&mut buffer, &signed_at_us.to_be_bytes());
        buffer
    }

    /// Signs the head of a log.
    pub fn sign(
        key: &SigningKey,
        service: &str,
        position: u64,
        head_hash: [u8; 32],
        signed_at_us: i64,
    ) -> Self {
        let signature = key.sign(&Self::signed_bytes(
            service,
            position,
            &head_hash,
            signed_at_us,
        ));
        Self {
            service: service.to_owned(),
            position,
            head_hash,
            signed_at_us,
            key_id: key_id(&key.verifying_key()),
            signature: signature.to_bytes(),
        }
    }

    /// Whether one of the trusted keys signed exactly this checkpoint.
    pub fn verify(&self, trusted: &[VerifyingKey]) -> bool {
        let message = Self::signed_bytes(
            &self.service,
            self.position,
            &self.head_hash,
            self.signed_at_us,
        );
        let signature = Signature::from_bytes(&self.signature);
        trusted
            .iter()
            .filter(|key| key_id(key) == self.key_id)
            .any(|key| key.verify(&message, &signature).is_ok())
    }
}

/// The id of a verifying key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..16])
}

/// What `verify` found wrong, at the first position where the log stops being trustworthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The event at `position` does not match its hash: its content was changed.
    Altered {
        /// Where.
        position: u64,
    },
    /// One or more events were removed; the first missing position is `position`.
    Deleted {
        /// The first position that is missing (or, after renumbering, where the hole is).
        position: u64,
    },
    /// The event at `position` was not written by the service: it was inserted.
    Inserted {
        /// Where.
        position: u64,
    },
    /// The event at `position` is out of its original order.
    Reordered {
        /// Where.
        position: u64,
    },
    /// A checkpoint's head hash no longer matches the log: the chain before it was rewritten.
    CheckpointMismatch {
        /// The checkpoint's position.
        position: u64,
    },
    /// A checkpoint's signature is not valid under any trusted key.
    CheckpointSignature {
        /// The checkpoint's position.
        position: u64,
    },
}

impl Tamper {
    /// What the finding means, in a sentence for an auditor.
    pub fn explain(&self) -> String {
        use Tamper as T;
        let position = self.position();
        match self {
            T::Altered { .. } => {
                format!(
                    "the event at position {position} no longer matches its hash: its content was changed"
                )
            }
            T::Deleted { .. } => format!("events are missing from position {position} on"),
            T::Inserted { .. } => {
                format!(
                    "the event at position {position} was not written by the service: it was inserted"
                )
            }
            T::Reordered { .. } => {
                format!("the event at position {position} is out of its original order")
            }
            T::CheckpointMismatch { .. } => format!(
                "the signed checkpoint at position {position} no longer matches the log: the chain before it was rewritten"
            ),
            T::CheckpointSignature { .. } => {
                format!("the checkpoint at position {position} is not signed by a trusted key")
            }
        }
    }

    /// The position the finding names.
    pub fn position(&self) -> u64 {
        match self {
            Self::Altered { position }
            | Self::Deleted { position }
            | Self::Inserted { position }
            | Self::Reordered { position }
            | Self::CheckpointMismatch { position }
            | Self::CheckpointSignature { position } => *position,
        }
    }

    /// A one-word name of the kind of tampering.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Altered { .. } => "altered",
            Self::Deleted { .. } => "deleted",
            Self::Inserted { .. } => "inserted",
            Self::Reordered { .. } => "reordered",
            Self::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Self::CheckpointSignature { .. } => "checkpoint_signature",
        }
    }
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at position {}", self.kind(), self.position())
    }
}

/// Where an event stands in the chain: all the verifier keeps of the events around a break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// Its global position.
    pub(crate) position: u64,
    /// The hash it links to.
    pub(crate) previous_hash: [u8; 32],
    /// Its own hash.
    pub(crate) hash: [u8; 32],
}

impl From<&StoredEvent> for Link {
    fn from(event: &StoredEvent) -> Self {
        Self {
            position: event.global_position,
            previous_hash: event.previous_hash,
            hash: event.hash,
        }
    }
}

/// What the verifier needs to know about the rest of the log when a link breaks.
pub(crate) struct BreakContext {
    /// The event before the one before the break, if any.
    pub(crate) before_previous: Option<Link>,
    /// The event before the break, if any.
    pub(crate) previous: Option<Link>,
    /// The event whose link is broken.
    pub(crate) current: Link,
    /// The event after it, if any.
    pub(crate) next: Option<Link>,
    /// Position of the event whose stored hash equals the current event's previous hash.
    pub(crate) predecessor_position: Option<u64>,
    /// Whether some aggregate's stream has a hole in its sequence numbers.
    pub(crate) sequence_gap: bool,
}

/// Names a broken link (the current event's previous hash is not the previous event's hash,
/// or its position does not follow the previous one).
pub(crate) fn classify_break(context: &BreakContext) -> Tamper {
    let current = context.current;
    let previous_hash = context.previous.map_or(GENESIS_HASH, |event| event.hash);
    // The event the current one links to stands later in the log: moved.
    if let Some(predecessor) = context.predecessor_position
        && predecessor > current.position
    {
        return Tamper::Reordered {
            position: current.position,
        };
    }
    // The current event is foreign if its successor links to the event before it.
    if let Some(next) = context.next
        && next.previous_hash == previous_hash
    {
        return Tamper::Inserted {
            position: current.position,
        };
    }
    // The previous event is foreign if the current one links past it.
    if let (Some(previous), Some(before_previous)) = (context.previous, context.before_previous)
        && current.previous_hash == before_previous.hash
    {
        return Tamper::Inserted {
            position: previous.position,
        };
    }
    let expected_position = context.previous.map_or(1, |event| event.position + 1);
    if current.position > expected_position {
        return Tamper::Deleted {
            position: expected_position,
        };
    }
    if context.predecessor_position.is_some() {
        return Tamper::Reordered {
            position: current.position,
        };
    }
    // The predecessor's hash is unknown and positions are contiguous: either events were
    // removed and the rest renumbered (an aggregate stream then has a hole), or the event
    // before was rewritten with its own hash recomputed.
    match context.previous {
        Some(previous) if !context.sequence_gap => Tamper::Altered {
            position: previous.position,
        },
        _ => Tamper::Deleted {
            position: current.position,
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event of one aggregate with `sequence` and `payload` (the crate's unit tests').
    pub(crate) fn event(sequence: u64, payload: &str) -> NewEvent {
        NewEvent {
            event_id: format!("00000000-0000-7000-8000-{sequence:012}"),
            tenant_id: "acme".into(),
            aggregate_type: "tenant".into(),
            aggregate_id: "acme".into(),
            sequence,
            event_type: "mpos.test.v1.Happened".into(),
            event_version: "1.0".into(),
            payload: payload.into(),
            metadata: "{}".into(),
            occurred_at_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn canonical_encoding_is_length_prefixed_in_fixed_order() {
        let encoding = canonical_encoding(&event(1, "{}"), &GENESIS_HASH);
        // Domain tag first, as length + bytes.
        assert_eq!(&encoding[..4], &13_u32.to_be_bytes());
        assert_eq!(&encoding[4..17], b"mpos-event-v1");
        // Previous hash last.
        assert_eq!(
            &encoding[encoding.len() - 36..encoding.len() - 32],
            &32_u32.to_be_bytes()
        );
        assert_eq!(&encoding[encoding.len() - 32..], &GENESIS_HASH);
    }

    #[test]
    fn the_hash_is_sha256_of_the_encoding_and_covers_every_field() {
        let base = event(1, r#"{"a":1}"#);
        let hash = event_hash(&base, &GENESIS_HASH);
        let expected: [u8; 32] = Sha256::digest(canonical_encoding(&base, &GENESIS_HASH)).into();
        assert_eq!(hash, expected);
        let variants = [
            NewEvent {
                payload: r#"{"a":2}"#.into(),
                ..base.clone()
            },
            NewEvent {
                sequence: 2,
                ..base.clone()
            },
            NewEvent {
                tenant_id: "other".into(),
                ..base.clone()
            },
            NewEvent {
                metadata: r#"{"actor":"x"}"#.into(),
                ..base.clone()
            },
            NewEvent {
                occurred_at_us: 1,
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(event_hash(&variant, &GENESIS_HASH), hash);
        }
        assert_ne!(event_hash(&base, &[1; 32]), hash);
    }

    proptest::proptest! {
        /// The streamed hash is SHA-256 of the documented encoding, whatever the fields
        /// (empty, long, not ASCII).
        #[test]
        fn the_streamed_hash_is_sha256_of_the_canonical_encoding(
            texts in proptest::collection::vec(".{0,40}", 8),
            payload in ".{0,600}",
            sequence in proptest::prelude::any::<u64>(),
            occurred_at_us in proptest::prelude::any::<i64>(),
            previous in proptest::prelude::any::<[u8; 32]>(),
        ) {
            let event = NewEvent {
                event_id: texts[0].clone(),
                tenant_id: texts[1].clone(),
                aggregate_type: texts[2].clone(),
                aggregate_id: texts[3].clone(),
                sequence,
                event_type: texts[4].clone(),
                event_version: texts[5].clone(),
                payload,
                metadata: texts[6].clone(),
                occurred_at_us,
            };
            let expected: [u8; 32] = Sha256::digest(canonical_encoding(&event, &previous)).into();
            proptest::prop_assert_eq!(event_hash(&event, &previous), expected);
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        // "ab" + "c" and "a" + "bc" must encode differently.
        let first = NewEvent {
            aggregate_type: "ab".into(),
            aggregate_id: "c".into(),
            ..event(1, "{}")
        };
        let second = NewEvent {
            aggregate_type: "a".into(),
            aggregate_id: "bc".into(),
            ..event(1, "{}")
        };
        assert_ne!(
            event_hash(&first, &GENESIS_HASH),
            event_hash(&second, &GENESIS_HASH)
        );
    }

    #[test]
    fn checkpoints_verify_only_under_the_signing_key_and_unchanged() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let checkpoint = Checkpoint::sign(
            &key,
            "terminal-management",
            10,
            [3; 32],
            1_700_000_000_000_000,
        );
        assert!(checkpoint.verify(&[key.verifying_key()]));
        assert!(!checkpoint.verify(&[other.verifying_key()]));
        let moved = Checkpoint {
            position: 11,
            ..checkpoint.clone()
        };
        assert!(!moved.verify(&[key.verifying_key()]));
        let rehashed = Checkpoint {
            head_hash: [4; 32],
            ..checkpoint
        };
        assert!(!rehashed.verify(&[key.verifying_key()]));
    }

    /// RFC 8032, section 7.1, TEST 1: the Ed25519 implementation we sign with matches the
    /// published known answer (secret key, public key and signature of the empty message).
    #[test]
    fn ed25519_rfc8032_test_1() {
        let secret =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .expect("hex");
        let secret: [u8; 32] = secret.try_into().expect("32 bytes");
        let key = SigningKey::from_bytes(&secret);
        assert_eq!(
            hex::encode(key.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(key.sign(b"").to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    /// FIPS 180-2 / NIST example: SHA-256("abc").
    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
