//! Known-answer and property tests for `paycrypto::pin`.

use paycrypto::pin::{
    Pan, Pin, PinBlockContext, PinBlockFormat, decipher_pin_block, decode_pin_block,
    decrypt_pin_block, encode_pin_block, encrypt_pin_block, translate_pin_block,
};
use paycrypto::{CryptoError, SecretBytes};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).expect("hex")
}

/// A "random" source that returns one constant byte, to reproduce published examples that
/// fixed their random fill.
struct ConstRng(u8);

impl RngCore for ConstRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_be_bytes([self.0; 4])
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_be_bytes([self.0; 8])
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(self.0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        dest.fill(self.0);
        Ok(())
    }
}

fn pin(text: &str) -> Pin {
    Pin::new(text).expect("pin")
}

fn pan(text: &str) -> Pan {
    Pan::new(text).expect("pan")
}

// ---------------------------------------------------------------------------------------------
// Format 0
// ---------------------------------------------------------------------------------------------

/// psec public test suite (knovichikhin/psec tests/test_pinblock.py,
/// `test_encode_pinblock_iso_0` and `test_decode_pinblock_iso_0`), PAN 5555555551234567.
#[test]
fn iso0_psec_suite() {
    let p = pan("5555555551234567");
    let mut rng = ConstRng(0);
    for (digits, block) in [
        ("1234", "041261AAAAEDCBA9"),
        ("123456789012", "0C1261032D8226A9"),
    ] {
        let encoded = encode_pin_block(PinBlockFormat::Iso0, &pin(digits), Some(&p), &mut rng)
            .expect("encode");
        assert_eq!(encoded.expose(), h(block).as_slice(), "{digits}");
    }
    let cases = [
        ("1234", "041261AAAAEDCBA9"),
        ("123456789", "091261032D8DCBA9"),
        ("1234567890", "0A1261032D82CBA9"),
        ("123456789012", "0C1261032D8226A9"),
    ];
    for (digits, block) in cases {
        let decoded = decode_pin_block(PinBlockFormat::Iso0, &SecretBytes::new(h(block)), Some(&p))
            .expect("decode");
        assert_eq!(*decoded.expose(), digits);
    }
}

/// psec public test suite, `test_decode_pinblock_iso_0_exception`: wrong control field,
/// PIN length 15 and 2, bad filler, non-numeric PIN.
#[test]
fn iso0_rejects_malformed_blocks() {
    let p = pan("5555555551234567");
    for block in [
        "241261AAAAEDCBA9",
        "0F1261AAAAEDCBA9",
        "021261AAAAEDCBA9",
        "041261AAAAEDCBAA",
        "051261AAAAEDCBA9",
    ] {
        let result = decode_pin_block(PinBlockFormat::Iso0, &SecretBytes::new(h(block)), Some(&p));
        assert!(
            matches!(result, Err(CryptoError::InvalidFormat { .. })),
            "{block}: {result:?}"
        );
    }
    let short = decode_pin_block(
        PinBlockFormat::Iso0,
        &SecretBytes::new(h("041261AAAAEDCB")),
        Some(&p),
    );
    assert!(matches!(short, Err(CryptoError::InvalidLength { .. })));
    let no_pan = decode_pin_block(
        PinBlockFormat::Iso0,
        &SecretBytes::new(h("041261AAAAEDCBA9")),
        None,
    );
    assert!(no_pan.is_err());
}

// ---------------------------------------------------------------------------------------------
// Format 3
// ---------------------------------------------------------------------------------------------

/// psec public test suite, `test_encode_pinblock_iso_3` (only the deterministic prefix: the
/// fill is random) and `test_decode_pinblock_iso_3`, PAN 5555555551234567.
#[test]
fn iso3_psec_suite() {
    let p = pan("5555555551234567");
    let mut rng = StdRng::seed_from_u64(3);
    for (digits, prefix) in [("1234", "341261"), ("123456789012", "3C1261032D8226")] {
        let encoded = encode_pin_block(PinBlockFormat::Iso3, &pin(digits), Some(&p), &mut rng)
            .expect("encode");
        assert!(encoded.to_hex_upper().starts_with(prefix), "{digits}");
    }
    let cases = [
        ("1234", "341261AAAAEDCBA9"),
        ("123456789", "391261032D8DCBA9"),
        ("1234567890", "3A1261032D82CBA9"),
        ("123456789012", "3C1261032D8226A9"),
    ];
    for (digits, block) in cases {
        let decoded = decode_pin_block(PinBlockFormat::Iso3, &SecretBytes::new(h(block)), Some(&p))
            .expect("decode");
        assert_eq!(*decoded.expose(), digits);
    }
    // `test_decode_pinblock_iso_3_exception`: filler FFFFFFFFF4 is not A–F.
    let bad = decode_pin_block(
        PinBlockFormat::Iso3,
        &SecretBytes::new(h("341261AAAAEDCBA2")),
        Some(&p),
    );
    assert!(matches!(bad, Err(CryptoError::InvalidFormat { .. })));
}

// ---------------------------------------------------------------------------------------------
// Format 1
// ---------------------------------------------------------------------------------------------

/// Structure of format 1 per ISO 9564-1 (control 1, length, PIN, fill); there is no
/// published fixed-fill example, so this checks the layout and the decode.
#[test]
fn iso1_layout() {
    let mut rng = StdRng::seed_from_u64(1);
    let encoded =
        encode_pin_block(PinBlockFormat::Iso1, &pin("1234"), None, &mut rng).expect("encode");
    assert!(encoded.to_hex_upper().starts_with("141234"));
    let decoded = decode_pin_block(PinBlockFormat::Iso1, &encoded, None).expect("decode");
    assert_eq!(*decoded.expose(), "1234");
}

// ---------------------------------------------------------------------------------------------
// Format 4
// ---------------------------------------------------------------------------------------------

/// ep2 (eft/pos 2000) Security Specification 8.0.0, §8.4 PIN Encryption, as reproduced in the
/// psec public test suite (`test_decipher_pinblock_iso_4`): AES key
/// C1D0F8FB4958670DBA40AB1F3752EF0D, PAN 432198765432109870, enciphered PIN block
/// CC17F65586BFD0953010226C4FC5B3CA → PIN 1234.
#[test]
fn iso4_ep2_vector() {
    let key = SecretBytes::new(h("C1D0F8FB4958670DBA40AB1F3752EF0D"));
    let p = pan("432198765432109870");
    let block = h("CC17F65586BFD0953010226C4FC5B3CA");
    let decoded = decrypt_pin_block(PinBlockFormat::Iso4, &key, &block, Some(&p)).expect("decrypt");
    assert_eq!(*decoded.expose(), "1234");
    // The clear PIN field starts 441234AAAAAAAAAA (ISO 9564-1:2017 format 4 layout).
    let field = decipher_pin_block(PinBlockFormat::Iso4, &key, &block, Some(&p)).expect("decipher");
    assert!(field.to_hex_upper().starts_with("441234AAAAAAAAAA"));
    // The wrong PAN does not decode.
    let wrong = decrypt_pin_block(
        PinBlockFormat::Iso4,
        &key,
        &block,
        Some(&pan("432198765432109871")),
    );
    assert!(wrong.is_err());
}

/// psec public test suite, `test_encipher_pinblock_iso_4_det`: AES key
/// 00112233445566778899AABBCCDDEEFF, PIN 1234, PAN 1234567890123456789, random fill fixed to
/// FF bytes → 28B41FDDD29B743E93124BD8E32D921E.
#[test]
fn iso4_psec_deterministic() {
    let key = SecretBytes::new(h("00112233445566778899AABBCCDDEEFF"));
    let p = pan("1234567890123456789");
    let block = encrypt_pin_block(
        PinBlockFormat::Iso4,
        &key,
        &pin("1234"),
        Some(&p),
        &mut ConstRng(0xFF),
    )
    .expect("encrypt");
    assert_eq!(block, h("28B41FDDD29B743E93124BD8E32D921E"));
}

/// ANSI X9.24-3:2017 supplement test vectors (AES PIN block format 4), as reproduced in Leon
/// Lynch's pinblock_format4_test.c: the PIN field for PIN 1234 begins 441234AAAAAAAAAA.
/// psec's `test_decode_pin_field_iso_4`: 441234AAAAAAAAAA548ED7FD65495950 decodes to 1234.
#[test]
fn iso4_pin_field() {
    let field = encode_pin_block(
        PinBlockFormat::Iso4,
        &pin("1234"),
        None,
        &mut ConstRng(0x11),
    )
    .expect("encode");
    assert_eq!(
        field.expose(),
        h("441234AAAAAAAAAA1111111111111111").as_slice()
    );
    let decoded = decode_pin_block(
        PinBlockFormat::Iso4,
        &SecretBytes::new(h("441234AAAAAAAAAA548ED7FD65495950")),
        None,
    )
    .expect("decode");
    assert_eq!(*decoded.expose(), "1234");
    for bad in [
        "541234AAAAAAAAAA548ED7FD65495950",
        "43123AAAAAAAAAAA548ED7FD65495950",
        "441234ABCDEFABCD548ED7FD65495950",
    ] {
        assert!(
            decode_pin_block(PinBlockFormat::Iso4, &SecretBytes::new(h(bad)), None).is_err(),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Translation and errors
// ---------------------------------------------------------------------------------------------

/// Translating the ep2 ISO-4 block to ISO-0 under a TDES key gives the ISO-0 block that the
/// psec suite lists for PIN 1234 (after deciphering): format 0 for PAN 5555555551234567 is
/// 041261AAAAEDCBA9, so use that PAN on the destination side.
#[test]
fn translate_iso4_to_iso0() {
    let aes = SecretBytes::new(h("C1D0F8FB4958670DBA40AB1F3752EF0D"));
    let tdes = SecretBytes::new(h("0123456789ABCDEFFEDCBA9876543210"));
    let src_pan = pan("432198765432109870");
    let dst_pan = pan("5555555551234567");
    let from = PinBlockContext {
        format: PinBlockFormat::Iso4,
        key: &aes,
        pan: Some(&src_pan),
    };
    let to = PinBlockContext {
        format: PinBlockFormat::Iso0,
        key: &tdes,
        pan: Some(&dst_pan),
    };
    let out = translate_pin_block(
        &from,
        &h("CC17F65586BFD0953010226C4FC5B3CA"),
        &to,
        &mut ConstRng(0),
    )
    .expect("translate");
    let clear =
        decipher_pin_block(PinBlockFormat::Iso0, &tdes, &out, Some(&dst_pan)).expect("decipher");
    assert_eq!(clear.expose(), h("041261AAAAEDCBA9").as_slice());
}

#[test]
fn key_and_length_errors() {
    let p = pan("5555555551234567");
    let mut rng = ConstRng(0);
    let bad_tdes = SecretBytes::new(vec![1; 15]);
    assert!(
        encrypt_pin_block(
            PinBlockFormat::Iso0,
            &bad_tdes,
            &pin("1234"),
            Some(&p),
            &mut rng
        )
        .is_err()
    );
    let bad_aes = SecretBytes::new(vec![1; 8]);
    assert!(
        encrypt_pin_block(
            PinBlockFormat::Iso4,
            &bad_aes,
            &pin("1234"),
            Some(&p),
            &mut rng
        )
        .is_err()
    );
    let key = SecretBytes::new(vec![1; 16]);
    assert!(decrypt_pin_block(PinBlockFormat::Iso0, &key, &[0; 7], Some(&p)).is_err());
    assert!(decrypt_pin_block(PinBlockFormat::Iso4, &key, &[0; 8], Some(&p)).is_err());
    assert!(encrypt_pin_block(PinBlockFormat::Iso4, &key, &pin("1234"), None, &mut rng).is_err());
}

#[test]
fn debug_output_hides_pin_and_pan() {
    let p = pan("4123456789012345");
    assert_eq!(format!("{p:?}"), "Pan(412345******2345)");
    assert_eq!(format!("{:?}", pin("987654")), "***");
    let err = Pin::new("98").expect_err("short");
    assert!(!format!("{err}").contains("98"));
    let err = Pan::new("41234567890123456789").expect_err("long");
    assert!(!format!("{err}").contains("4123456789"));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn formats() -> impl Strategy<Value = PinBlockFormat> {
    prop_oneof![
        Just(PinBlockFormat::Iso0),
        Just(PinBlockFormat::Iso1),
        Just(PinBlockFormat::Iso3),
        Just(PinBlockFormat::Iso4)
    ]
}

fn key_for(format: PinBlockFormat, seed: &[u8], pick: usize) -> SecretBytes {
    let len = if format == PinBlockFormat::Iso4 {
        [16, 24, 32][pick % 3]
    } else {
        [16, 24][pick % 2]
    };
    SecretBytes::from_slice(&seed[..len])
}

proptest! {
    #[test]
    fn encode_decode_round_trip(format in formats(), pin_text in "[0-9]{4,12}", pan_text in "[0-9]{12,19}", seed in any::<u64>()) {
        let (pin, pan) = (pin(&pin_text), pan(&pan_text));
        let mut rng = StdRng::seed_from_u64(seed);
        let clear = encode_pin_block(format, &pin, Some(&pan), &mut rng).expect("encode");
        prop_assert_eq!(clear.len(), format.block_len());
        let decoded = decode_pin_block(format, &clear, Some(&pan)).expect("decode");
        prop_assert_eq!(decoded, pin);
    }

    #[test]
    fn encrypt_decrypt_and_translate_round_trip(
        from_format in formats(),
        to_format in formats(),
        pin_text in "[0-9]{4,12}",
        pan_text in "[0-9]{12,19}",
        pan2_text in "[0-9]{12,19}",
        seed in proptest::collection::vec(any::<u8>(), 64),
        pick in any::<usize>(),
        rng_seed in any::<u64>(),
    ) {
        let (pin, pan, pan2) = (pin(&pin_text), pan(&pan_text), pan(&pan2_text));
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let key_a = key_for(from_format, &seed[..32], pick);
        let key_b = key_for(to_format, &seed[32..], pick / 3);
        let block = encrypt_pin_block(from_format, &key_a, &pin, Some(&pan), &mut rng).expect("encrypt");
        let back = decrypt_pin_block(from_format, &key_a, &block, Some(&pan)).expect("decrypt");
        prop_assert_eq!(&back, &pin);
        let from = PinBlockContext { format: from_format, key: &key_a, pan: Some(&pan) };
        let to = PinBlockContext { format: to_format, key: &key_b, pan: Some(&pan2) };
        let translated = translate_pin_block(&from, &block, &to, &mut rng).expect("translate");
        let back = decrypt_pin_block(to_format, &key_b, &translated, Some(&pan2)).expect("decrypt translated");
        prop_assert_eq!(&back, &pin);
    }

    #[test]
    fn parsing_arbitrary_input_never_panics(
        text in ".{0,25}",
        bytes in proptest::collection::vec(any::<u8>(), 0..20),
        key_len in 0_usize..40,
        format in formats(),
    ) {
        let _ = Pin::new(&text);
        let _ = Pan::new(&text);
        let _ = Pan::new_luhn_checked(&text);
        let pan = pan("4111111111111111");
        let clear = SecretBytes::from_slice(&bytes);
        let _ = decode_pin_block(format, &clear, Some(&pan));
        let _ = decode_pin_block(format, &clear, None);
        let key = SecretBytes::new(vec![7; key_len]);
        let _ = decrypt_pin_block(format, &key, &bytes, Some(&pan));
        let _ = decrypt_pin_block(format, &key, &bytes, None);
    }
}
