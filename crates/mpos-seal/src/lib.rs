//! End-to-end sealing of cardholder-data fields between two processes of the platform.
//!
//! Services call each other with NATS request-reply, and some bodies must carry
//! cardholder data: a PAN or track 2 data (authorization → routing `Authorize`), a clear
//! card-data plaintext (hsm-proxy's `DecryptData` reply). The platform's rule is that no
//! full PAN, clear PIN block or clear key appears in any bus message: the NATS server and
//! every subscriber see only ciphertext. Such fields are therefore **sealed** by the
//! sending process for the receiving process, at the application layer, as a
//! [`Sealed`] value (protobuf `mpos.common.v1.Sealed`). This crate is that construction
//! alone: no I/O.
//!
//! ```
//! use mpos_proto::common as pb;
//! use mpos_seal::{PublicKey, Sealed, Sealer, context};
//!
//! // One Sealer per process, created at start.
//! let authorization = Sealer::new()?;
//! let hsm_proxy = Sealer::new()?;
//!
//! // authorization sends its current key in the DecryptData request ...
//! let key_in_request = pb::SealingKey::from(&authorization.public_key());
//! // ... hsm-proxy seals the clear plaintext of its reply to that key ...
//! let reply_to = PublicKey::try_from(&key_in_request)?;
//! let ctx = context("hsm.DecryptDataResponse.plaintext", "0190f5a0-0000-7000-8000-000000000001");
//! let on_the_bus = pb::Sealed::from(hsm_proxy.seal(&reply_to, &ctx, b"clear card data")?);
//! // ... and only authorization can open it, in that field of that request.
//! let plaintext = authorization.open(&Sealed::try_from(&on_the_bus)?, &ctx)?;
//! assert_eq!(plaintext.as_slice(), b"clear card data");
//! # Ok::<(), mpos_seal::SealError>(())
//! ```
//!
//! # Construction ("mpos-seal v1")
//!
//! - **Keys.** Each process creates an X25519 [`SealingKeyPair`] at start from the
//!   operating system's generator, keeps it only in memory (never stored, wiped on drop)
//!   and hands its [`PublicKey`] (protobuf `mpos.common.v1.SealingKey`) to the processes
//!   that seal for it, e.g. inside the request whose reply must be sealed. A restart
//!   means a new key: nothing sealed in an earlier run can be opened by a later one.
//! - **Pair keys.** For a sender S and recipient R:
//!   `K(S→R) = HKDF-SHA256(salt = "mpos-seal v1", ikm = X25519(s, R), info = S || R)`,
//!   32 bytes (RFC 7748, RFC 5869). Both ends compute the same key from their own secret
//!   and the other's public key. The order in `info` makes keys directional:
//!   `K(A→B) ≠ K(B→A)`, so a field cannot be reflected back to the process that sealed
//!   it. An all-zero X25519 result (a low-order public key, RFC 7748 §6.1) is refused:
//!   [`SealError::WeakKey`] when sealing, [`SealError::Invalid`] when opening.
//! - **Sealing.** AES-256-GCM (NIST SP 800-38D) under `K(S→R)` with a random 96-bit nonce
//!   and associated data `"mpos-seal v1" || context || R || S`. The sender's full public
//!   key, the recipient's key id, the nonce and ciphertext || tag travel; the context does
//!   not.
//! - **Context.** Names the field and the request, e.g.
//!   [`context`]`("hsm.DecryptDataResponse.plaintext", request_id)`. The recipient opens
//!   with the context it expects, so a sealed field cannot be replayed into another field
//!   or another request (a replay of the same field of the same request opens: reject
//!   duplicate request ids where that matters).
//!
//! ## Why this construction
//!
//! - *Static-static X25519* rather than an ephemeral key per message: the sender is
//!   authenticated to the recipient (only S's and R's secrets give `K(S→R)`), and with the
//!   pair key remembered a field costs one AES-GCM call (~0.15 µs for 16 bytes) instead of
//!   one X25519 (~38 µs, both measured by `examples/seal_bench.rs` on 2 shared cores) per
//!   message. Forward secrecy comes from keys living only as long as the process.
//! - *HKDF* turns the X25519 output (not uniformly random) into a key, and binds both
//!   public keys and the direction into it.
//! - *AES-256-GCM* is what the payment HSM world and PCI assessors expect, is fast with
//!   AES-NI and CLMUL, and its associated data carries the context and both keys so a
//!   field opens only where, and between whom, it was meant to.
//! - *Both public keys in the associated data* as well as in HKDF: a changed byte of the
//!   sender key (even the unused top bit, which X25519 ignores) fails to open.
//!
//! ## Nonces and key lifetime
//!
//! Random 96-bit nonces are safe for up to 2^32 messages per key (NIST SP 800-38D §8.3).
//! Every [`SealingKeyPair`] counts its seals; after [`MAX_SEALS_PER_KEY`] (2^31) the
//! [`Sealer`] replaces it with a new key pair by itself (the previous one keeps opening
//! fields in flight until the next rotation). Since the count covers every pair key
//! derived from the key pair as sender, no pair key encrypts more than 2^31 fields, and
//! the chance of any nonce repeating under one pair key stays below 2^-35.
//!
//! ## What it does not do
//!
//! - It does not authenticate public keys: a process seals to whatever [`PublicKey`] it
//!   is given. Who may publish a key (NATS subject permissions, the request's signed
//!   origin) is the integration's concern; a forged key in a request would make the
//!   replier seal to the forger.
//! - It does not stop the replay of a whole sealed field in the same context (see above).
//! - It hides the plaintext, not its length.
//!
//! # Speed
//!
//! With the pair keys remembered ([`PAIR_KEY_CACHE_CAPACITY`] peers per key pair, least
//! recently used evicted), [`Sealer::seal`] and [`Sealer::open`] cost one AES-256-GCM
//! call, a nonce from the OS and a lock; the first field to or from a peer costs one
//! X25519 and two HKDFs more. `cargo run --release -p mpos-seal --example seal_bench`
//! prints the medians.
//!
//! # Errors
//!
//! [`SealError::code`] maps each failure to the platform's error codes; notably
//! [`SealError::UnknownRecipient`] → `Conflict`: "refresh the recipient's sealing key and
//! send again".

mod cache;
mod error;
mod keys;
mod primitive;
mod sealed;
mod sealer;

#[cfg(test)]
mod tests;

pub use error::SealError;
pub use keys::{KEY_ID_LEN, PublicKey, SealingKeyPair};
pub use primitive::LABEL;
pub use sealed::Sealed;
pub use sealer::{MAX_SEALS_PER_KEY, PAIR_KEY_CACHE_CAPACITY, Sealer};

/// The context of a sealed field: the field's name and the id of the request it travels
/// in, as `len(field) (4 bytes, big endian) || field || request_id`.
///
/// The length prefix keeps any two (field, request id) pairs apart (without it,
/// `("a.b", "c1")` and `("a.bc", "1")` would give the same bytes). Use the protobuf path
/// of the field, e.g. `"routing.AuthorizeRequest.card"`.
pub fn context(field: &str, request_id: &str) -> Vec<u8> {
    let mut context = Vec::with_capacity(4 + field.len() + request_id.len());
    // A field name is a short static path; saturate rather than fail on absurd lengths.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    context.extend_from_slice(&len.to_be_bytes());
    context.extend_from_slice(field.as_bytes());
    context.extend_from_slice(request_id.as_bytes());
    context
}
