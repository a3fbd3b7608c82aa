//! The framer on an arbitrary byte stream fed in arbitrary chunks (the first byte picks the
//! chunk size): never panics, and every returned message has a length within the maximum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payshield::framing::Framer;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut framer = Framer::new(512);
    for piece in stream.chunks(usize::from(chunk).max(1)) {
        framer.push(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(message)) => assert!(!message.is_empty() && message.len() <= 512),
                Ok(None) | Err(_) => break,
            }
        }
    }
});
