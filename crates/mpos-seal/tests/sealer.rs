//! The public API's properties: round trips, every changed byte refused, third parties and
//! reflections refused, low-order keys refused, the protobuf forms, the error codes.
//! (Published known answers for X25519, HKDF-SHA256 and AES-256-GCM run through the
//! internal primitives in `src/tests/kat.rs`.)

use std::sync::{Arc, OnceLock};

use mpos_errors::{ErrorCode, ServiceError};
use mpos_proto::Message;
use mpos_proto::common as pb;
use mpos_seal::{KEY_ID_LEN, PublicKey, SealError, Sealed, Sealer, context};
use proptest::prelude::*;

/// Three processes: A and B talk, C is a bystander that holds neither's key.
fn parties() -> &'static (Sealer, Sealer, Sealer) {
    static PARTIES: OnceLock<(Sealer, Sealer, Sealer)> = OnceLock::new();
    PARTIES.get_or_init(|| {
        (
            Sealer::new().expect("rng"),
            Sealer::new().expect("rng"),
            Sealer::new().expect("rng"),
        )
    })
}

#[test]
fn sealer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sealer>();
    assert_send_sync::<Arc<Sealer>>();
    assert_send_sync::<Sealed>();
    assert_send_sync::<PublicKey>();
}

#[test]
fn key_id_is_the_first_8_bytes_of_sha256_in_lowercase_hex() {
    // SHA-256 of 32 zero bytes, computed with an independent implementation (Python's
    // hashlib: `hashlib.sha256(bytes(32)).hexdigest()`):
    // 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925.
    let key = PublicKey::from_bytes([0; 32]);
    assert_eq!(key.key_id(), "66687aadf862bd77");
    let (a, _, _) = parties();
    let id = a.key_id();
    assert_eq!(id.len(), KEY_ID_LEN);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(a.public_key().key_id(), id);
}

#[test]
fn two_seals_of_the_same_field_differ() {
    let (a, b, _) = parties();
    let first = a
        .seal(&b.public_key(), b"c", b"4111111111111111")
        .expect("seal");
    let second = a
        .seal(&b.public_key(), b"c", b"4111111111111111")
        .expect("seal");
    assert_ne!(first.nonce, second.nonce);
    assert_ne!(first.ciphertext, second.ciphertext);
}

#[test]
fn an_empty_plaintext_and_context_round_trip() {
    let (a, b, _) = parties();
    let sealed = a.seal(&b.public_key(), b"", b"").expect("seal");
    assert_eq!(sealed.ciphertext.len(), 16);
    assert!(b.open(&sealed, b"").expect("open").is_empty());
}

/// The published low-order u-coordinates (Wycheproof `x25519_test.json`, tcId 69-82;
/// see `src/tests/kat.rs`): sealing to them is refused, and a field claiming one as its
/// sender never opens.
#[test]
fn low_order_keys_are_refused() {
    let (a, b, _) = parties();
    let low_order = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ];
    for hex_key in low_order {
        let bytes: [u8; 32] = hex::decode(hex_key).expect("hex").try_into().expect("32");
        let weak = PublicKey::from_bytes(bytes);
        assert_eq!(
            a.seal(&weak, b"c", b"p").err(),
            Some(SealError::WeakKey),
            "{hex_key}"
        );
        let mut forged = a.seal(&b.public_key(), b"c", b"p").expect("seal");
        forged.sender = bytes;
        assert_eq!(
            b.open(&forged, b"c").err(),
            Some(SealError::Invalid),
            "{hex_key}"
        );
    }
}

/// A field sealed A→B, relabelled as if B had sealed it for A (B's key as sender, A's key
/// id as recipient), does not open at A: the directions use different keys.
#[test]
fn a_field_cannot_be_reflected_to_its_sender() {
    let (a, b, _) = parties();
    let mut reflected = a.seal(&b.public_key(), b"c", b"p").expect("seal");
    reflected.sender = *b.public_key().as_bytes();
    reflected.recipient_key_id = a.key_id();
    assert_eq!(a.open(&reflected, b"c").err(), Some(SealError::Invalid));
}

#[test]
fn sealers_work_from_many_threads() {
    let (a, b, _) = parties();
    let b_key = b.public_key();
    std::thread::scope(|scope| {
        for thread in 0..4_u8 {
            scope.spawn(move || {
                for i in 0..50_u8 {
                    let plaintext = [thread, i];
                    let sealed = a.seal(&b_key, b"c", &plaintext).expect("seal");
                    assert_eq!(b.open(&sealed, b"c").expect("open").as_slice(), &plaintext);
                }
            });
        }
    });
}

#[test]
fn the_context_helper_keeps_fields_and_requests_apart() {
    assert_ne!(context("a.b", "c1"), context("a.bc", "1"));
    assert_eq!(context("f", "r"), b"\x00\x00\x00\x01fr".to_vec());
    let (a, b, _) = parties();
    let sealed = a
        .seal(
            &b.public_key(),
            &context("hsm.DecryptDataResponse.plaintext", "r1"),
            b"p",
        )
        .expect("seal");
    assert_eq!(
        b.open(&sealed, &context("hsm.DecryptDataResponse.plaintext", "r2"))
            .err(),
        Some(SealError::Invalid),
        "another request"
    );
    assert_eq!(
        b.open(&sealed, &context("routing.AuthorizeRequest.card", "r1"))
            .err(),
        Some(SealError::Invalid),
        "another field"
    );
}

// ------------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------------

/// Which part of a sealed field (or of its opening) an attacker changes.
#[derive(Clone, Copy, Debug)]
enum Part {
    Sender,
    KeyId,
    Nonce,
    Ciphertext,
    Context,
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just(Part::Sender),
        Just(Part::KeyId),
        Just(Part::Nonce),
        Just(Part::Ciphertext),
        Just(Part::Context),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn open_of_seal_is_the_plaintext(
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
        ctx in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let (a, b, _) = parties();
        let sealed = a.seal(&b.public_key(), &ctx, &plaintext).expect("seal");
        prop_assert_eq!(sealed.ciphertext.len(), plaintext.len() + 16);
        let opened = b.open(&sealed, &ctx).expect("open");
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        // And through the protobuf form, as it travels.
        let bytes = pb::Sealed::from(sealed.clone()).encode_to_vec();
        let decoded = pb::Sealed::decode(bytes.as_slice()).expect("decode");
        let back = Sealed::try_from(&decoded).expect("well-formed");
        prop_assert_eq!(&back, &sealed);
        let opened = b.open(&back, &ctx).expect("open");
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
    }

    /// Any change of any byte of the sender key, key id, nonce, ciphertext or context is
    /// refused: `UnknownRecipient` for a key id that is no longer B's, `Invalid` otherwise.
    #[test]
    fn any_changed_byte_is_refused(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        ctx in proptest::collection::vec(any::<u8>(), 0..32),
        part in part(),
        position in any::<prop::sample::Index>(),
        flip in 1..=255_u8,
    ) {
        let (a, b, _) = parties();
        let mut sealed = a.seal(&b.public_key(), &ctx, &plaintext).expect("seal");
        let mut ctx = ctx;
        let expected = match part {
            Part::Sender => {
                sealed.sender[position.index(32)] ^= flip;
                SealError::Invalid
            }
            Part::KeyId => {
                let mut id = sealed.recipient_key_id.into_bytes();
                let i = position.index(id.len());
                id[i] ^= flip;
                sealed.recipient_key_id = String::from_utf8_lossy(&id).into_owned();
                SealError::UnknownRecipient
            }
            Part::Nonce => {
                sealed.nonce[position.index(12)] ^= flip;
                SealError::Invalid
            }
            Part::Ciphertext => {
                let i = position.index(sealed.ciphertext.len());
                sealed.ciphertext[i] ^= flip;
                SealError::Invalid
            }
            Part::Context => {
                if ctx.is_empty() {
                    ctx.push(flip);
                } else {
                    let i = position.index(ctx.len());
                    ctx[i] ^= flip;
                }
                SealError::Invalid
            }
        };
        prop_assert_eq!(b.open(&sealed, &ctx).err(), Some(expected));
    }

    /// Cutting or extending the ciphertext, or a longer or shorter context, is refused.
    #[test]
    fn truncation_and_extension_are_refused(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        ctx in proptest::collection::vec(any::<u8>(), 0..32),
        cut in any::<prop::sample::Index>(),
        extra in 1..=255_u8,
    ) {
        let (a, b, _) = parties();
        let sealed = a.seal(&b.public_key(), &ctx, &plaintext).expect("seal");
        let mut shorter = sealed.clone();
        shorter.ciphertext.truncate(cut.index(sealed.ciphertext.len()));
        prop_assert_eq!(b.open(&shorter, &ctx).err(), Some(SealError::Invalid));
        let mut longer = sealed.clone();
        longer.ciphertext.push(extra);
        prop_assert_eq!(b.open(&longer, &ctx).err(), Some(SealError::Invalid));
        let mut longer_ctx = ctx.clone();
        longer_ctx.push(extra);
        prop_assert_eq!(b.open(&sealed, &longer_ctx).err(), Some(SealError::Invalid));
        if !ctx.is_empty() {
            prop_assert_eq!(
                b.open(&sealed, &ctx[..cut.index(ctx.len())]).err(),
                Some(SealError::Invalid)
            );
        }
    }

    /// A field sealed A→B does not open at C: not as sent (C does not hold B's key id),
    /// and not relabelled with C's key id.
    #[test]
    fn a_third_party_cannot_open(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        ctx in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let (a, b, c) = parties();
        let sealed = a.seal(&b.public_key(), &ctx, &plaintext).expect("seal");
        prop_assert_eq!(c.open(&sealed, &ctx).err(), Some(SealError::UnknownRecipient));
        let mut relabelled = sealed;
        relabelled.recipient_key_id = c.key_id();
        prop_assert_eq!(c.open(&relabelled, &ctx).err(), Some(SealError::Invalid));
    }

    /// Whatever protobuf bytes arrive: decoding and the form check never panic, and what
    /// passes the form check never opens at B (nobody but A and B can make a field that
    /// does).
    #[test]
    fn arbitrary_protobuf_never_opens(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ctx in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let (_, b, _) = parties();
        if let Ok(message) = pb::Sealed::decode(bytes.as_slice())
            && let Ok(mut sealed) = Sealed::try_from(&message)
        {
            prop_assert!(b.open(&sealed, &ctx).is_err());
            sealed.recipient_key_id = b.key_id();
            prop_assert!(b.open(&sealed, &ctx).is_err());
        }
    }
}

// ------------------------------------------------------------------------------------------
// Protobuf forms
// ------------------------------------------------------------------------------------------

fn well_formed() -> pb::Sealed {
    pb::Sealed {
        sender_key: vec![9; 32],
        recipient_key_id: "0123456789abcdef".into(),
        nonce: vec![1; 12],
        ciphertext: vec![2; 16],
    }
}

#[test]
fn wrong_lengths_and_forms_are_malformed() {
    assert!(Sealed::try_from(&well_formed()).is_ok());
    type Change = fn(&mut pb::Sealed);
    let cases: [(&str, Change); 9] = [
        ("short sender", |m| m.sender_key.truncate(31)),
        ("long sender", |m| m.sender_key.push(0)),
        ("no sender", |m| m.sender_key.clear()),
        ("short key id", |m| m.recipient_key_id.truncate(15)),
        ("upper-case key id", |m| {
            m.recipient_key_id = "0123456789ABCDEF".into();
        }),
        ("non-hex key id", |m| {
            m.recipient_key_id = "0123456789abcdeg".into()
        }),
        ("short nonce", |m| m.nonce.truncate(11)),
        ("long nonce", |m| m.nonce.push(0)),
        ("no tag", |m| m.ciphertext.truncate(15)),
    ];
    for (name, change) in cases {
        let mut message = well_formed();
        change(&mut message);
        assert!(
            matches!(Sealed::try_from(&message), Err(SealError::Malformed(_))),
            "{name}"
        );
    }
    // Multi-byte characters of the right byte length are not hex either.
    let mut message = well_formed();
    message.recipient_key_id = "0123456789abcdé".into();
    assert_eq!(message.recipient_key_id.len(), 16);
    assert!(matches!(
        Sealed::try_from(&message),
        Err(SealError::Malformed(_))
    ));
}

#[test]
fn sealing_keys_round_trip_and_must_name_their_own_key() {
    let (a, _, _) = parties();
    let key = a.public_key();
    let message = pb::SealingKey::from(&key);
    assert_eq!(message.public_key, key.as_bytes().to_vec());
    assert_eq!(message.key_id, key.key_id());
    let decoded = pb::SealingKey::decode(message.encode_to_vec().as_slice()).expect("decode");
    assert_eq!(PublicKey::try_from(&decoded), Ok(key));

    let mut wrong_id = message.clone();
    wrong_id.key_id = "0000000000000000".into();
    assert!(matches!(
        PublicKey::try_from(&wrong_id),
        Err(SealError::Malformed(_))
    ));
    let mut short = message;
    short.public_key.pop();
    assert!(matches!(
        PublicKey::try_from(&short),
        Err(SealError::Malformed(_))
    ));
    assert!(PublicKey::try_from([0_u8; 33].as_slice()).is_err());
}

#[test]
fn protobuf_names_are_in_mpos_common_v1() {
    use mpos_proto::Name;
    assert_eq!(pb::Sealed::full_name(), "mpos.common.v1.Sealed");
    assert_eq!(pb::SealingKey::full_name(), "mpos.common.v1.SealingKey");
}

// ------------------------------------------------------------------------------------------
// Error codes
// ------------------------------------------------------------------------------------------

#[test]
fn error_codes_tell_the_caller_what_to_do() {
    assert_eq!(SealError::UnknownRecipient.code(), ErrorCode::Conflict);
    assert!(!SealError::UnknownRecipient.code().is_retryable());
    for error in [
        SealError::Invalid,
        SealError::WeakKey,
        SealError::Malformed("x"),
        SealError::TooLong,
    ] {
        assert_eq!(error.code(), ErrorCode::BadRequest, "{error:?}");
    }
    assert_eq!(SealError::Random.code(), ErrorCode::Internal);
    let service = ServiceError::from(SealError::UnknownRecipient);
    assert_eq!(service.code, ErrorCode::Conflict);
    assert!(service.message.contains("current sealing key"));
}
