//! EMV BER-TLV parsing: never panics, and whatever parses re-encodes to bytes that parse to
//! the same objects; `find` on every parsed tag never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = emv_tlv::parse(data) {
        let again = emv_tlv::encode(&items);
        let items2 = emv_tlv::parse(&again).expect("re-encoded TLV parses");
        assert_eq!(items2, items);
        for item in &items {
            let _ = emv_tlv::find(&items, item.tag);
        }
        let _ = format!("{items:?}");
    }
});
