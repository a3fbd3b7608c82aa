//! Micro benchmark of `Sealer::seal` and `Sealer::open`, each next to its floor measured in
//! the same run:
//!
//! ```text
//! cargo run --release -p mpos-seal --example seal_bench [-- --quick]
//! ```
//!
//! - *cached*: the pair keys with the peer are remembered (every field after the first):
//!   should cost about one AES-256-GCM call (floor: `aes-gcm` alone with a ready key) plus
//!   a 12-byte nonce from the OS (floor: `OsRng`);
//! - *uncached*: the first field to or from a peer: one X25519 more (floor: a bare
//!   `x25519-dalek` Diffie-Hellman); with a full cache (1,024 peers) also the scan for the
//!   least recently used entry to evict.
//!
//! Each figure is the median over samples of the mean time per call within a sample, in
//! nanoseconds. Payloads: 16 bytes (a PAN) and 256 bytes (a card-data plaintext).

use std::hint::black_box;
use std::time::Instant;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use mpos_seal::{PAIR_KEY_CACHE_CAPACITY, PublicKey, Sealed, Sealer, context};
use rand::RngCore;
use rand::rngs::OsRng;

/// Median over `samples` of the mean ns per call of `batch` calls of `run(i)`; `prepare`
/// builds a sample's inputs outside the timed part.
fn median_ns<T>(
    samples: usize,
    batch: usize,
    mut prepare: impl FnMut(usize) -> T,
    mut run: impl FnMut(&T, usize),
) -> f64 {
    let mut means = Vec::with_capacity(samples);
    for _ in 0..samples {
        let inputs = prepare(batch);
        let start = Instant::now();
        for i in 0..batch {
            run(&inputs, i);
        }
        #[allow(clippy::cast_precision_loss)]
        means.push(start.elapsed().as_nanos() as f64 / batch as f64);
    }
    means.sort_by(f64::total_cmp);
    means[means.len() / 2]
}

fn fresh_sealers(n: usize) -> Vec<Sealer> {
    (0..n).map(|_| Sealer::new().expect("rng")).collect()
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (samples, batch, cold_samples, cold_batch) = if quick {
        (21, 200, 11, 10)
    } else {
        (201, 1_000, 51, 20)
    };
    let a = Sealer::new().expect("rng");
    let b = Sealer::new().expect("rng");
    let b_key = b.public_key();
    let ctx = context(
        "hsm.DecryptDataResponse.plaintext",
        "0190f5a0-0000-7000-8000-000000000001",
    );

    println!(
        "mpos-seal micro benchmark: median ns per call ({samples} samples x {batch} calls cached, {cold_samples} x {cold_batch} uncached)"
    );
    println!("{:<46} {:>10} {:>10}", "", "16 B", "256 B");
    let mut rows: Vec<(&str, [f64; 2])> = Vec::new();
    let payloads = [vec![0x35_u8; 16], vec![0xa5_u8; 256]];

    let mut cached_seal = [0.0; 2];
    let mut cached_open = [0.0; 2];
    let mut cold_seal = [0.0; 2];
    let mut cold_seal_full = [0.0; 2];
    let mut cold_open = [0.0; 2];
    let mut floor_gcm_seal = [0.0; 2];
    let mut floor_gcm_open = [0.0; 2];
    for (column, plaintext) in payloads.iter().enumerate() {
        // Warm the pair keys in both directions.
        let warm = a.seal(&b_key, &ctx, plaintext).expect("seal");
        b.open(&warm, &ctx).expect("open");

        cached_seal[column] = median_ns(
            samples,
            batch,
            |_| (),
            |(), _| {
                black_box(
                    a.seal(black_box(&b_key), &ctx, black_box(plaintext))
                        .expect("seal"),
                );
            },
        );
        cached_open[column] = median_ns(
            samples,
            batch,
            |_| (),
            |(), _| {
                black_box(b.open(black_box(&warm), &ctx).expect("open"));
            },
        );

        // Uncached: every call meets a peer the sealer has not seen, with room in its cache
        // (a fresh sealer per sample) ...
        cold_seal[column] = median_ns(
            cold_samples,
            cold_batch,
            |n| {
                let sender = Sealer::new().expect("rng");
                let peers: Vec<PublicKey> =
                    fresh_sealers(n).iter().map(Sealer::public_key).collect();
                (sender, peers)
            },
            |(sender, peers), i| {
                black_box(sender.seal(&peers[i], &ctx, plaintext).expect("seal"));
            },
        );
        // ... and with a full cache, so that every miss also evicts the least recently used.
        for _ in a.cached_peers()..=PAIR_KEY_CACHE_CAPACITY {
            let peer = Sealer::new().expect("rng").public_key();
            a.seal(&peer, &ctx, plaintext).expect("seal");
        }
        assert_eq!(a.cached_peers(), PAIR_KEY_CACHE_CAPACITY);
        cold_seal_full[column] = median_ns(
            cold_samples,
            cold_batch,
            |n| {
                fresh_sealers(n)
                    .iter()
                    .map(Sealer::public_key)
                    .collect::<Vec<PublicKey>>()
            },
            |peers, i| {
                black_box(a.seal(&peers[i], &ctx, plaintext).expect("seal"));
            },
        );
        cold_open[column] = median_ns(
            cold_samples,
            cold_batch,
            |n| {
                fresh_sealers(n)
                    .into_iter()
                    .map(|r| {
                        let sealed = a.seal(&r.public_key(), &ctx, plaintext).expect("seal");
                        (r, sealed)
                    })
                    .collect::<Vec<(Sealer, Sealed)>>()
            },
            |pairs, i| {
                let (recipient, sealed) = &pairs[i];
                black_box(recipient.open(sealed, &ctx).expect("open"));
            },
        );

        // Floors: AES-256-GCM alone, with a ready key, the same associated data length.
        let gcm = Aes256Gcm::new(&[7_u8; 32].into());
        let aad = vec![0_u8; b"mpos-seal v1".len() + ctx.len() + 64];
        let nonce = [3_u8; 12];
        floor_gcm_seal[column] = median_ns(
            samples,
            batch,
            |_| (),
            |(), _| {
                let mut buffer = Vec::with_capacity(plaintext.len() + 16);
                buffer.extend_from_slice(plaintext);
                let tag = gcm
                    .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buffer)
                    .expect("gcm");
                buffer.extend_from_slice(&tag);
                black_box(buffer);
            },
        );
        let mut sealed = plaintext.clone();
        let tag = gcm
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut sealed)
            .expect("gcm");
        floor_gcm_open[column] = median_ns(
            samples,
            batch,
            |_| (),
            |(), _| {
                let mut buffer = sealed.clone();
                gcm.decrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buffer, &tag)
                    .expect("gcm");
                black_box(buffer);
            },
        );
    }
    let nonce_floor = median_ns(
        samples,
        batch,
        |_| (),
        |(), _| {
            let mut nonce = [0_u8; 12];
            OsRng.fill_bytes(&mut nonce);
            black_box(nonce);
        },
    );
    let x25519_floor = median_ns(
        cold_samples,
        cold_batch,
        |n| {
            (0..n)
                .map(|_| {
                    (
                        x25519_dalek::StaticSecret::random_from_rng(OsRng),
                        x25519_dalek::PublicKey::from(
                            &x25519_dalek::StaticSecret::random_from_rng(OsRng),
                        ),
                    )
                })
                .collect::<Vec<_>>()
        },
        |pairs, i| {
            black_box(pairs[i].0.diffie_hellman(&pairs[i].1));
        },
    );

    rows.push(("seal, pair keys cached", cached_seal));
    rows.push(("open, pair keys cached", cached_open));
    rows.push(("  floor: AES-256-GCM encrypt alone", floor_gcm_seal));
    rows.push(("  floor: AES-256-GCM decrypt alone", floor_gcm_open));
    rows.push(("  floor: 12-byte nonce from OsRng", [nonce_floor; 2]));
    rows.push(("seal, new peer (uncached)", cold_seal));
    rows.push(("seal, new peer, cache full (evicts one)", cold_seal_full));
    rows.push(("open, new peer (uncached)", cold_open));
    rows.push(("  floor: X25519 alone", [x25519_floor; 2]));
    for (name, [small, large]) in rows {
        println!("{name:<46} {small:>10.0} {large:>10.0}");
    }
}
