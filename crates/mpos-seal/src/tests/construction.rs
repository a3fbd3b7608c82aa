//! The composed construction checked against an independent implementation, and the
//! properties that need the crate's internals: directional pair keys, rotation, the
//! bounded cache, and what `Debug` shows.

use std::sync::Arc;

use proptest::prelude::*;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use x25519_dalek::StaticSecret;

use super::kat::{alice, bob, rfc7748_shared_k};
use crate::cache::{PairKeyCache, PairKeys};
use crate::keys::SealingKeyPair;
use crate::primitive::{self, LABEL};
use crate::{PublicKey, SealError, Sealer};

struct Len32;

impl KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// What `Sealed::ciphertext` must be, computed with *ring* (its own HKDF and AES-GCM)
/// from the RFC 7748 §6.1 shared secret K, following the construction as documented.
fn ring_expected(
    shared: &[u8; 32],
    sender: &[u8; 32],
    recipient: &[u8; 32],
    nonce: [u8; 12],
    context: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let info = [sender.as_slice(), recipient.as_slice()].concat();
    let info_parts = [info.as_slice()];
    let prk = Salt::new(HKDF_SHA256, LABEL).extract(shared);
    let okm = prk.expand(&info_parts, Len32).expect("hkdf expand");
    let mut key = [0_u8; 32];
    okm.fill(&mut key).expect("hkdf fill");
    let gcm = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("aes key"));
    let aad = [LABEL, context, recipient.as_slice(), sender.as_slice()].concat();
    let mut buffer = plaintext.to_vec();
    gcm.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buffer,
    )
    .expect("ring seal");
    buffer
}

/// Alice and Bob of RFC 7748 §6.1 seal to each other; ring, given only the published
/// shared secret K, the public keys and the nonce that travelled, computes the same
/// ciphertext in both directions; and the other side opens it.
#[test]
fn construction_matches_ring_from_the_rfc7748_shared_secret() {
    let (alice, bob) = (Sealer::with_key_pair(alice()), Sealer::with_key_pair(bob()));
    let (alice_pub, bob_pub) = (alice.public_key(), bob.public_key());
    let k = rfc7748_shared_k();
    let pan = b"5413330089020011";
    let context = crate::context("routing.AuthorizeRequest.card", "req-0001");

    let to_bob = alice.seal(&bob_pub, &context, pan).expect("seal");
    assert_eq!(to_bob.sender, *alice_pub.as_bytes());
    assert_eq!(to_bob.recipient_key_id, bob_pub.key_id());
    assert_eq!(
        to_bob.ciphertext,
        ring_expected(
            &k,
            alice_pub.as_bytes(),
            bob_pub.as_bytes(),
            to_bob.nonce,
            &context,
            pan
        )
    );
    assert_eq!(
        bob.open(&to_bob, &context).expect("open").as_slice(),
        pan.as_slice()
    );

    let to_alice = bob.seal(&alice_pub, &context, pan).expect("seal");
    assert_eq!(
        to_alice.ciphertext,
        ring_expected(
            &k,
            bob_pub.as_bytes(),
            alice_pub.as_bytes(),
            to_alice.nonce,
            &context,
            pan
        )
    );
    assert_eq!(
        alice.open(&to_alice, &context).expect("open").as_slice(),
        pan.as_slice()
    );
}

fn secret() -> impl Strategy<Value = [u8; 32]> {
    proptest::array::uniform32(any::<u8>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Both sides derive the same key per direction, and the two directions differ.
    #[test]
    fn pair_keys_agree_per_direction_and_differ_between_directions(a in secret(), b in secret()) {
        let a = SealingKeyPair::from_secret(StaticSecret::from(a));
        let b = SealingKeyPair::from_secret(StaticSecret::from(b));
        let (a_pub, b_pub) = (a.public_key().as_bytes(), b.public_key().as_bytes());
        prop_assume!(a_pub != b_pub);
        let at_a = a.shared_secret(b_pub).expect("contributory");
        let at_b = b.shared_secret(a_pub).expect("contributory");
        let a_to_b = primitive::pair_key(&at_a, a_pub, b_pub).expect("hkdf");
        let a_to_b_at_b = primitive::pair_key(&at_b, a_pub, b_pub).expect("hkdf");
        let b_to_a = primitive::pair_key(&at_b, b_pub, a_pub).expect("hkdf");
        let b_to_a_at_a = primitive::pair_key(&at_a, b_pub, a_pub).expect("hkdf");
        prop_assert_eq!(&*a_to_b, &*a_to_b_at_b);
        prop_assert_eq!(&*b_to_a, &*b_to_a_at_a);
        prop_assert_ne!(&*a_to_b, &*b_to_a);
    }
}

/// After `max_seals` seals the sealer switches to a new key pair by itself; fields sealed
/// to the previous key pair still open, those to the one before it are refused with
/// `UnknownRecipient`.
#[test]
fn sealer_rotates_when_the_seal_limit_is_reached() {
    let peer = Sealer::with_limits(SealingKeyPair::generate().expect("rng"), 3, 8);
    let me = Sealer::new().expect("rng");
    let first = peer.public_key();
    let context = b"ctx";

    let to_first = me.seal(&first, context, b"1").expect("seal");
    for _ in 0..3 {
        peer.seal(&me.public_key(), context, b"x").expect("seal");
    }
    assert_eq!(peer.public_key(), first);
    assert_eq!(peer.seal_count(), 3);

    let fourth = peer.seal(&me.public_key(), context, b"4").expect("seal");
    let second = peer.public_key();
    assert_ne!(second, first, "the fourth seal rotated");
    assert_eq!(fourth.sender, *second.as_bytes());
    assert_eq!(peer.seal_count(), 1);
    assert_eq!(
        me.open(&fourth, context).expect("open").as_slice(),
        b"4".as_slice()
    );
    assert_eq!(
        peer.open(&to_first, context)
            .expect("previous key opens")
            .as_slice(),
        b"1".as_slice()
    );

    peer.rotate().expect("rotate");
    assert_ne!(peer.public_key(), second);
    assert_eq!(
        peer.open(&to_first, context).err(),
        Some(SealError::UnknownRecipient)
    );
}

/// Concurrent seals at the limit rotate once, and no key pair counts more than the limit.
#[test]
fn concurrent_seals_never_exceed_the_limit() {
    let sealer = Arc::new(Sealer::with_limits(
        SealingKeyPair::generate().expect("rng"),
        10,
        8,
    ));
    let peer = Sealer::new().expect("rng").public_key();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let sealer = Arc::clone(&sealer);
            std::thread::spawn(move || {
                let mut senders = Vec::new();
                for _ in 0..25 {
                    senders.push(sealer.seal(&peer, b"c", b"p").expect("seal").sender);
                }
                senders
            })
        })
        .collect();
    let mut per_key = std::collections::HashMap::new();
    for thread in threads {
        for sender in thread.join().expect("thread") {
            *per_key.entry(sender).or_insert(0_u32) += 1;
        }
    }
    assert_eq!(per_key.values().sum::<u32>(), 100);
    assert_eq!(per_key.len(), 10, "100 seals at 10 per key pair");
    assert!(per_key.values().all(|&count| count == 10));
}

/// At most `capacity` peers are remembered.
#[test]
fn the_pair_key_cache_is_bounded() {
    let sealer = Sealer::with_limits(SealingKeyPair::generate().expect("rng"), 1 << 20, 4);
    for _ in 0..10 {
        let peer = Sealer::new().expect("rng").public_key();
        sealer.seal(&peer, b"c", b"p").expect("seal");
    }
    assert_eq!(sealer.cached_peers(), 4);
}

/// The least recently used peer is evicted, not the one just used.
#[test]
fn the_cache_evicts_the_least_recently_used_peer() {
    let keys = || {
        Arc::new(PairKeys {
            seal: primitive::cipher(&[1; 32]),
            open: primitive::cipher(&[2; 32]),
        })
    };
    let mut cache = PairKeyCache::new(2);
    cache.insert([1; 32], keys());
    cache.insert([2; 32], keys());
    assert!(cache.get(&[1; 32]).is_some());
    cache.insert([3; 32], keys());
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&[1; 32]).is_some(), "recently used: kept");
    assert!(
        cache.get(&[2; 32]).is_none(),
        "least recently used: evicted"
    );
    assert!(cache.get(&[3; 32]).is_some());
    cache.insert([3; 32], keys());
    assert_eq!(cache.len(), 2, "re-inserting a peer evicts nothing");
}

/// A field with a made-up sender key costs an X25519 but is not remembered; a genuine
/// field from a new peer is.
#[test]
fn only_senders_whose_fields_opened_are_remembered() {
    let me = Sealer::new().expect("rng");
    let genuine = Sealer::new().expect("rng");
    let mut forged = genuine.seal(&me.public_key(), b"c", b"p").expect("seal");
    forged.sender = *Sealer::new().expect("rng").public_key().as_bytes();
    assert_eq!(me.open(&forged, b"c").err(), Some(SealError::Invalid));
    assert_eq!(me.cached_peers(), 0);

    let real = genuine.seal(&me.public_key(), b"c", b"p").expect("seal");
    me.open(&real, b"c").expect("open");
    assert_eq!(me.cached_peers(), 1);
}

/// `Debug` of a key pair, a sealer and a sealed field never shows the secret, the pair
/// keys or the plaintext.
#[test]
fn debug_shows_no_secrets() {
    let secret = *b"fixed secret for the debug test!";
    let secret_hex = hex::encode(secret);
    let pair = SealingKeyPair::from_secret(StaticSecret::from(secret));
    let key_id = pair.key_id().to_owned();
    let shown = format!("{pair:?}");
    assert!(shown.contains(&key_id));
    assert!(!shown.contains(&secret_hex));
    assert!(
        !shown.contains(
            &format!("{:?}", &secret[..8])
                .trim_end_matches(']')
                .to_owned()
        )
    );

    let sealer = Sealer::with_key_pair(pair);
    let peer = Sealer::new().expect("rng");
    let sealed = sealer
        .seal(&peer.public_key(), b"c", b"4111111111111111")
        .expect("seal");
    for shown in [
        format!("{sealer:?}"),
        format!("{sealed:?}"),
        format!("{:?}", peer.public_key()),
    ] {
        assert!(!shown.contains(&secret_hex), "{shown}");
        assert!(!shown.contains("4111111111111111"), "{shown}");
        assert!(!shown.contains(&hex::encode(&sealed.ciphertext)), "{shown}");
    }
    assert!(format!("{sealed:?}").contains(&peer.key_id()));
}

/// Sealing to oneself works (both directions use the same key then).
#[test]
fn a_process_can_seal_to_itself() {
    let me = Sealer::new().expect("rng");
    let sealed = me.seal(&me.public_key(), b"c", b"p").expect("seal");
    assert_eq!(
        me.open(&sealed, b"c").expect("open").as_slice(),
        b"p".as_slice()
    );
    let _: PublicKey = me.public_key();
}
