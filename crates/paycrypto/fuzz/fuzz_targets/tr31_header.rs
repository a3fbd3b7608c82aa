//! TR-31 header parsing: never panics; whatever parses formats back to text that parses to
//! the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycrypto::tr31::KeyBlockHeader;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((header, layout)) = KeyBlockHeader::parse(text) {
        let formatted = header
            .format(layout.block_length)
            .expect("a parsed header formats");
        let (again, again_layout) =
            KeyBlockHeader::parse(&formatted).expect("a formatted header parses");
        assert_eq!(again, header);
        assert_eq!(again_layout.block_length, layout.block_length);
    }
});
