//! TR-31 key block unwrap with a fixed KBPK of each length: never panics, and never returns
//! a key for a block it did not authenticate (random input essentially never carries a
//! valid MAC, so a returned key would point at a verification bypass).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycrypto::tr31;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kbpk_len = [16, 24, 32][usize::from(selector % 3)];
    let kbpk = vec![0x41_u8; kbpk_len];
    if let Ok((header, key)) = tr31::unwrap(&kbpk, text) {
        // Only reachable with a valid MAC: the header must re-format to the block's prefix.
        let layout_len = header.formatted_len();
        assert!(layout_len <= text.len());
        assert!(!key.is_empty());
    }
});
