//! Response decoding (client side): never panics, and whatever decodes re-encodes to a
//! message that decodes to the same response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payshield::codec::{decode_response, encode_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_response(4, data) {
        let again = encode_response(&message).expect("a decoded response re-encodes");
        let decoded = decode_response(4, &again).expect("a re-encoded response decodes");
        assert_eq!(decoded, message);
    }
});
