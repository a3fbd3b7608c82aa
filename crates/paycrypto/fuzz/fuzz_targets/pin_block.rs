//! PIN block decoding: clear PIN blocks of every ISO 9564 format, with and without a PAN,
//! and deciphering under fixed keys. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, Pin, PinBlockFormat, decipher_pin_block, decode_pin_block};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let format = [
        PinBlockFormat::Iso0,
        PinBlockFormat::Iso1,
        PinBlockFormat::Iso3,
        PinBlockFormat::Iso4,
    ][usize::from(selector % 4)];
    // The PAN comes from the tail when it is digits, else a fixed one or none.
    let split = rest.len().min(format.block_len());
    let (block, tail) = rest.split_at(split);
    let pan = std::str::from_utf8(tail)
        .ok()
        .and_then(|digits| Pan::new(digits).ok());
    let fixed_pan = Pan::new("4111111111111111").ok();
    let pan = if selector & 0x80 != 0 {
        None
    } else {
        pan.or(fixed_pan)
    };

    let clear = SecretBytes::from_slice(block);
    let _ = decode_pin_block(format, &clear, pan.as_ref());

    // 16 bytes: a 2-key TDES key for formats 0/1/3, an AES-128 key for format 4.
    let key = SecretBytes::from_slice(&[0x5A; 16]);
    if let Ok(deciphered) = decipher_pin_block(format, &key, block, pan.as_ref()) {
        let _ = decode_pin_block(format, &deciphered, pan.as_ref());
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = Pin::new(text);
        let _ = Pan::new(text);
        let _ = Pan::new_luhn_checked(text);
    }
});
