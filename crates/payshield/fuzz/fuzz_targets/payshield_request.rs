//! Command decoding (server side): never panics, and whatever decodes re-encodes to a
//! message that decodes to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payshield::codec::{decode_request, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, request)) = decode_request(4, data) {
        let again = encode(&header, &request).expect("a decoded command re-encodes");
        let (header2, request2) = decode_request(4, &again).expect("a re-encoded command decodes");
        assert_eq!(header2, header);
        assert_eq!(request2, request);
    }
});
