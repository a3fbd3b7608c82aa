//! Sealed fields as they arrive from the bus, at a recipient B that A seals for (C holds
//! neither key). The same input is used three ways:
//!
//! 1. as a protobuf `mpos.common.v1.Sealed`: decoding and the form check never panic,
//!    what passes the form check re-encodes to itself, and it never opens at B, neither as
//!    sent nor relabelled with B's key id;
//! 2. as a raw sender key (32 bytes) + nonce (12) + ciphertext, labelled with B's key id:
//!    never opens;
//! 3. as the context (length in the first byte) and plaintext of a genuine field A seals
//!    for B: it opens at B to the plaintext, not at C, not under another context; then one
//!    byte of its protobuf form is changed (position and value from the input): whatever
//!    still decodes either fails to open or is exactly the genuine field.
//!
//! The keys are drawn at start, so no input can carry a valid field for them: any field
//! that opens in 1 or 2 would be a forgery.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mpos_proto::Message;
use mpos_proto::common as pb;
use mpos_seal::{SealError, Sealed, Sealer};

struct Parties {
    a: Sealer,
    b: Sealer,
    c: Sealer,
}

fn parties() -> &'static Parties {
    static PARTIES: OnceLock<Parties> = OnceLock::new();
    PARTIES.get_or_init(|| Parties {
        a: Sealer::new().expect("rng"),
        b: Sealer::new().expect("rng"),
        c: Sealer::new().expect("rng"),
    })
}

fn as_protobuf(p: &Parties, data: &[u8]) {
    let Ok(message) = pb::Sealed::decode(data) else {
        return;
    };
    let Ok(mut sealed) = Sealed::try_from(&message) else {
        return;
    };
    let again = Sealed::try_from(&pb::Sealed::from(sealed.clone())).expect("re-encodes");
    assert_eq!(again, sealed);
    for context in [b"".as_slice(), b"fuzz", data] {
        assert!(p.b.open(&sealed, context).is_err(), "a forged field opened");
    }
    sealed.recipient_key_id = p.b.key_id();
    for context in [b"".as_slice(), b"fuzz", data] {
        assert!(p.b.open(&sealed, context).is_err(), "a forged field opened");
    }
}

fn as_raw(p: &Parties, data: &[u8]) {
    if data.len() < 32 + 12 {
        return;
    }
    let (sender, rest) = data.split_at(32);
    let (nonce, ciphertext) = rest.split_at(12);
    let sealed = Sealed {
        sender: sender.try_into().expect("32 bytes"),
        recipient_key_id: p.b.key_id(),
        nonce: nonce.try_into().expect("12 bytes"),
        ciphertext: ciphertext.to_vec(),
    };
    for context in [b"".as_slice(), b"fuzz"] {
        assert!(p.b.open(&sealed, context).is_err(), "a forged field opened");
    }
}

fn as_genuine(p: &Parties, data: &[u8]) {
    let Some((&context_len, rest)) = data.split_first() else {
        return;
    };
    let (context, plaintext) = rest.split_at(usize::from(context_len).min(rest.len()));
    let sealed = p
        .a
        .seal(&p.b.public_key(), context, plaintext)
        .expect("seal");
    let opened = p.b.open(&sealed, context).expect("a genuine field opens");
    assert_eq!(opened.as_slice(), plaintext);
    assert_eq!(p.c.open(&sealed, context).err(), Some(SealError::UnknownRecipient));
    let mut other_context = context.to_vec();
    other_context.push(0);
    assert_eq!(p.b.open(&sealed, &other_context).err(), Some(SealError::Invalid));

    // One changed byte of the wire form, chosen by the input (FNV-1a over it).
    let mut wire = pb::Sealed::from(sealed.clone()).encode_to_vec();
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let position = usize::try_from(hash % wire.len() as u64).expect("fits");
    let flip = u8::try_from((hash >> 56) | 1).expect("fits");
    wire[position] ^= flip;
    if let Ok(message) = pb::Sealed::decode(wire.as_slice())
        && let Ok(changed) = Sealed::try_from(&message)
        && p.b.open(&changed, context).is_ok()
    {
        assert_eq!(changed, sealed, "a changed field opened");
    }
}

fuzz_target!(|data: &[u8]| {
    let p = parties();
    as_protobuf(p, data);
    as_raw(p, data);
    as_genuine(p, data);
});
