//! The framer with every prefix kind (first byte), a header of 0 to 5 bytes (second byte) and
//! an arbitrary chunking (third byte):
//! - on the rest of the input as a raw stream, it never panics and every message it returns
//!   is non-empty and within the maximum;
//! - the rest of the input cut into messages (each piece's first byte is its length), framed
//!   with `Framing::encode` and fed back in chunks, comes out unchanged.
#![no_main]

use iso8583::framing::{Framer, Framing, LengthPrefix};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 512;
const TPDU: [u8; 5] = [0x60, 0x00, 0x01, 0x00, 0x00];

fuzz_target!(|data: &[u8]| {
    let [kind, header, chunk, rest @ ..] = data else {
        return;
    };
    let prefix = LengthPrefix::ALL[usize::from(*kind) % LengthPrefix::ALL.len()];
    let framing = Framing::new(prefix, &TPDU[..usize::from(*header) % (TPDU.len() + 1)]);
    let chunk = usize::from(*chunk).max(1);

    // Arbitrary stream.
    let mut framer = Framer::new(framing.clone(), MAX);
    for piece in rest.chunks(chunk) {
        framer.push(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(message)) => assert!(!message.is_empty() && message.len() <= MAX),
                Ok(None) => break,
                Err(_) if prefix == LengthPrefix::None => continue,
                Err(_) => break,
            }
        }
    }

    // Framed messages come back.
    let mut messages = Vec::new();
    let mut input = rest;
    while let [len, tail @ ..] = input {
        let len = usize::from(*len).clamp(1, tail.len().max(1));
        if tail.is_empty() {
            break;
        }
        messages.push(tail[..len].to_vec());
        input = &tail[len..];
    }
    let mut framer = Framer::new(framing.clone(), MAX);
    let mut received = Vec::new();
    if prefix == LengthPrefix::None {
        for message in &messages {
            framer.push(&framing.encode(message).expect("frame"));
            received.extend(framer.next_frame().expect("valid frame"));
        }
    } else {
        let wire: Vec<u8> = messages
            .iter()
            .flat_map(|message| framing.encode(message).expect("frame"))
            .collect();
        for piece in wire.chunks(chunk) {
            framer.push(piece);
            while let Some(message) = framer.next_frame().expect("valid stream") {
                received.push(message);
            }
        }
    }
    assert_eq!(received, messages);
    assert_eq!(framer.buffered(), 0);
});
