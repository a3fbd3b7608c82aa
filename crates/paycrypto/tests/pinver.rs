//! Known-answer and property tests for `paycrypto::pinver` (Visa PVV, IBM 3624).

use paycrypto::pin::{Pan, Pin};
use paycrypto::pinver::{
    DecimalizationTable, Ibm3624, PinOffset, Pvki, Pvv, ValidationData, generate_ibm3624_offset,
    generate_pvv, generate_random_pin_with_offset, generate_random_pin_with_pvv,
    ibm3624_natural_pin, random_pin, verify_ibm3624_offset, verify_pvv,
};
use paycrypto::{CryptoError, SecretBytes};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn key(text: &str) -> SecretBytes {
    SecretBytes::new(hex::decode(text.replace(' ', "")).expect("hex"))
}

/// A published single-length DES key `K` as the equivalent TDES key `K‖K` (EDE with
/// K1 = K2 = K3 is single DES), since this module only takes TDES keys.
fn single_des_as_tdes(text: &str) -> SecretBytes {
    key(&format!("{text}{text}"))
}

fn pan(text: &str) -> Pan {
    Pan::new(text).expect("pan")
}

fn pin(text: &str) -> Pin {
    Pin::new(text).expect("pin")
}

fn pvki(value: u8) -> Pvki {
    Pvki::new(value).expect("pvki")
}

fn table(text: &str) -> DecimalizationTable {
    DecimalizationTable::parse(text).expect("decimalization table")
}

fn offset(text: &str) -> PinOffset {
    PinOffset::parse(text).expect("offset")
}

fn from_pan(pan_text: &str, start: usize, len: usize, pad: char) -> ValidationData {
    ValidationData::from_pan(&pan(pan_text), start, len, pad).expect("validation data")
}

// ---------------------------------------------------------------------------------------
// Visa PVV: published known answers
// ---------------------------------------------------------------------------------------

/// The usage example in the README of the `psec` Python library (knovichikhin/psec,
/// README.rst, https://github.com/knovichikhin/psec): PVK 0123456789ABCDEFFEDCBA9876543210,
/// PVKI 1, PIN 1234, PAN 4321000000001234 → PVV 6629.
#[test]
fn pvv_psec_readme_example() {
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let pvv = generate_pvv(&pvk, &pan("4321000000001234"), pvki(1), &pin("1234")).expect("pvv");
    assert_eq!(*pvv.expose(), "6629");
    verify_pvv(
        &pvk,
        &pan("4321000000001234"),
        pvki(1),
        &pin("1234"),
        &Pvv::parse("6629").expect("pvv"),
    )
    .expect("verify");
}

/// The `generate_visa_pvv` docstring example (psec/pin.py, knovichikhin/psec) and the
/// parametrised cases of `test_generate_visa_pvv` (tests/test_pin.py, same repository),
/// all under PVK 0123456789ABCDEFFEDCBA9876543210. The PANs ending in …718 and …708 are the
/// library's cases for ciphertexts with fewer than four decimal digits (second scan).
#[test]
fn pvv_psec_documented_cases() {
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let cases = [
        (3, "4524", "1122334455667788", "4021"), // docstring
        (1, "4524", "1122334455667788", "8523"),
        (2, "1912", "1122334455667788", "3244"),
        (1, "0570", "1122334455667718", "3144"),
        (1, "8299", "1122334455667708", "4422"),
    ];
    for (index, pin_text, pan_text, expected) in cases {
        let pvv = generate_pvv(&pvk, &pan(pan_text), pvki(index), &pin(pin_text)).expect("pvv");
        assert_eq!(*pvv.expose(), expected, "PVKI {index}, PAN {pan_text}");
        verify_pvv(
            &pvk,
            &pan(pan_text),
            pvki(index),
            &pin(pin_text),
            &Pvv::parse(expected).expect("pvv"),
        )
        .expect("verify");
    }
}

/// jPOS, an independent implementation: `JCESecurityModuleTest.testCalculatePVVImpl1/2`
/// (jpos/jPOS, jpos/src/test/java/org/jpos/security/jceadapter/JCESecurityModuleTest.java).
/// The PVK's clear value is documented there as "4 times 12345678" (the pair PVK A = PVK B
/// = "2 times 12345678"), the PIN 1234 is for account number 1234567890123, PVKI 0, and the
/// expected PVV is 1226.
#[test]
fn pvv_jpos_example() {
    let pvk = key("12345678123456781234567812345678");
    let pvv = generate_pvv(&pvk, &pan("1234567890123"), pvki(0), &pin("1234")).expect("pvv");
    assert_eq!(*pvv.expose(), "1226");
}

/// Only the 4 leftmost PIN digits take part (IBM CCA "VISA PIN Validation Value (PVV)
/// Calculation Method", payShield "PV" console command: "the 4 left-most digits of the
/// clear PIN"), so a 6-digit PIN starting 1234 has the psec README PVV too.
#[test]
fn pvv_uses_the_four_leftmost_pin_digits() {
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let pvv = generate_pvv(&pvk, &pan("4321000000001234"), pvki(1), &pin("123499")).expect("pvv");
    assert_eq!(*pvv.expose(), "6629");
}

#[test]
fn pvv_rejects_a_wrong_pin_pan_or_pvki() {
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let reference = Pvv::parse("6629").expect("pvv");
    let card = pan("4321000000001234");
    for wrong in ["1235", "4321", "0000", "2134"] {
        assert_eq!(
            verify_pvv(&pvk, &card, pvki(1), &pin(wrong), &reference),
            Err(CryptoError::VerificationFailed("PVV"))
        );
    }
    assert_eq!(
        verify_pvv(&pvk, &card, pvki(2), &pin("1234"), &reference),
        Err(CryptoError::VerificationFailed("PVV"))
    );
    assert_eq!(
        verify_pvv(
            &pvk,
            &pan("4321000000011234"),
            pvki(1),
            &pin("1234"),
            &reference
        ),
        Err(CryptoError::VerificationFailed("PVV"))
    );
}

#[test]
fn pvv_input_validation() {
    assert!(Pvki::new(9).is_ok());
    assert!(matches!(Pvki::new(10), Err(CryptoError::OutOfRange { .. })));
    assert!(Pvki::parse("7").is_ok_and(|value| value.value() == 7 && !value.is_visa_range()));
    assert!(Pvki::parse("6").is_ok_and(Pvki::is_visa_range));
    for bad in ["", "A", "11", "-1", " 1"] {
        assert!(Pvki::parse(bad).is_err(), "{bad:?}");
    }
    for bad in ["", "123", "12345", "12a4", "１２３４"] {
        assert!(Pvv::parse(bad).is_err(), "{bad:?}");
    }
    // PINs shorter than 4 digits cannot even be built.
    assert!(Pin::new("123").is_err());
    // Single-length and odd-length PVKs are refused.
    for bad_key in ["0123456789ABCDEF", "", "0123456789ABCDEFFEDCBA98765432"] {
        let result = generate_pvv(
            &key(bad_key),
            &pan("4321000000001234"),
            pvki(1),
            &pin("1234"),
        );
        assert!(
            matches!(result, Err(CryptoError::InvalidLength { .. })),
            "{bad_key:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// IBM 3624: published known answers
// ---------------------------------------------------------------------------------------

/// IBM 4758 CCA Basic Services Reference, Release 2.54 (February 2005), Appendix E,
/// "IBM 3624 PIN-Calculation Method", p. E-3: encrypted validation data E5C1BD67B66AE7C6,
/// decimalization table 8351296477461538 → 3913656466643416.
#[test]
fn decimalization_table_cca_example() {
    let table = table("8351296477461538");
    let decimalized: String = "E5C1BD67B66AE7C6"
        .chars()
        .map(|hex| {
            let nibble = u8::try_from(hex.to_digit(16).expect("hex")).expect("nibble");
            char::from(b'0' + table.decimalize(nibble))
        })
        .collect();
    assert_eq!(decimalized, "3913656466643416");
    assert_eq!(table.to_string(), "8351296477461538");
    assert_eq!(
        DecimalizationTable::default(),
        self::table("0123456789012345")
    );
}

/// "IBM 3624 customer PIN, natural PIN, PIN offset" examples, citing
/// http://www.gae.ucm.es/~padilla/extrawork/magexam1.html, as reproduced at
/// https://topic.alibabacloud.com/a/ibm-3624-customer-font-classtopic-s-color00c1depinfontnatural-font-classtopic-s-color00c1depinfontfont-classtopic-s-color00c1depinfont-offset-related-content_8_8_31433408.html
/// and http://mamicode.com/info-detail-865237.html, Example 1: account 1234567890123456,
/// PVK 1313131313131313 (single DES), table 0123456789012345, PIN length 6; enciphered
/// validation data 64DA85B3795AE4E4, natural PIN 643085; offset 456789 → customer PIN 099764;
/// offset 000000 → 643085.
#[test]
fn ibm3624_padilla_example_1() {
    let pvk = single_des_as_tdes("1313131313131313");
    let table = DecimalizationTable::STANDARD;
    let validation = from_pan("1234567890123456", 0, 16, 'F');
    let ibm = Ibm3624 {
        pvk: &pvk,
        table: &table,
        validation: &validation,
    };
    assert_eq!(*ibm.natural_pin(6).expect("natural").expose(), "643085");
    assert_eq!(
        *ibm.pin_from_offset(&offset("456789"), 6)
            .expect("pin")
            .expose(),
        "099764"
    );
    assert_eq!(
        *ibm.pin_from_offset(&offset("000000"), 6)
            .expect("pin")
            .expose(),
        "643085"
    );
    let generated = ibm.generate_offset(&pin("099764"), 6).expect("offset");
    assert_eq!(*generated.expose(), "456789");
    ibm.verify_offset(&pin("099764"), &offset("456789"))
        .expect("verify");
}

/// Same source, Example 2: card number 1234567890123445, PIN key 0123456789ABCDEF (single
/// DES), enciphered card number 9A466AD30DFE0381, natural PIN 9046, offset 2298 (track 3),
/// customer PIN 1234.
#[test]
fn ibm3624_padilla_example_2() {
    let pvk = single_des_as_tdes("0123456789ABCDEF");
    let table = DecimalizationTable::STANDARD;
    let validation = from_pan("1234567890123445", 0, 16, 'F');
    assert_eq!(
        *ibm3624_natural_pin(&pvk, &table, &validation, 4)
            .expect("natural")
            .expose(),
        "9046"
    );
    let generated =
        generate_ibm3624_offset(&pvk, &table, &validation, &pin("1234"), 4).expect("offset");
    assert_eq!(*generated.expose(), "2298");
    verify_ibm3624_offset(&pvk, &table, &validation, &pin("1234"), &offset("2298"))
        .expect("verify");
    assert_eq!(
        verify_ibm3624_offset(&pvk, &table, &validation, &pin("1235"), &offset("2298")),
        Err(CryptoError::VerificationFailed("PIN offset"))
    );
}

/// `psec` (knovichikhin/psec), tests/test_pin.py `test_generate_ibm3624_pin` and
/// `test_generate_ibm3624_offset` and the docstrings in psec/pin.py: PVK
/// 0123456789ABCDEFFEDCBA9876543210, decimalization table 1234567890123456, PAN
/// 1122334455667788 with validation-data start, length and pad character as listed.
#[test]
fn ibm3624_psec_cases() {
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let table = table("1234567890123456");
    // (start, length, pad, offset, PIN)
    let cases = [
        (0, 16, 'F', "0000", "4524"),
        (0, 16, 'f', "0000", "4524"),
        (0, 16, 'F', "1111", "5635"),
        (0, 16, 'F', "6586", "0000"),
        (0, 16, 'F', "7697", "1111"),
        (0, 16, 'F', "7710", "1234"),
        (0, 14, 'F', "0000", "5518"),
        (0, 14, 'f', "0000", "5518"),
        (1, 14, '1', "0000", "3675"),
        (2, 14, '1', "0000", "5550"),
    ];
    for (start, len, pad, offset_text, pin_text) in cases {
        let validation = from_pan("1122334455667788", start, len, pad);
        let ibm = Ibm3624 {
            pvk: &pvk,
            table: &table,
            validation: &validation,
        };
        let label = format!("start {start}, length {len}, pad {pad}, offset {offset_text}");
        assert_eq!(
            *ibm.pin_from_offset(&offset(offset_text), 4)
                .expect("pin")
                .expose(),
            pin_text,
            "{label}"
        );
        assert_eq!(
            *ibm.generate_offset(&pin(pin_text), 4)
                .expect("offset")
                .expose(),
            offset_text,
            "{label}"
        );
        ibm.verify_offset(&pin(pin_text), &offset(offset_text))
            .expect("verify");
    }
}

/// Validation data given directly (`ValidationData::parse`) is the same as taking it from
/// the PAN: the psec case with start 0, length 14, pad F (natural PIN 5518).
#[test]
fn ibm3624_explicit_validation_data() {
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let table = table("1234567890123456");
    let validation = ValidationData::parse("11223344556677", 'F').expect("validation data");
    assert_eq!(validation, from_pan("1122334455667788", 0, 14, 'F'));
    assert_eq!(
        *ibm3624_natural_pin(&pvk, &table, &validation, 4)
            .expect("natural")
            .expose(),
        "5518"
    );
    // Hex validation data and a lower-case pad are accepted.
    let upper = ValidationData::parse("ABCDEF0123", 'F').expect("upper");
    let lower = ValidationData::parse("abcdef0123", 'f').expect("lower");
    assert_eq!(upper, lower);
}

/// IBM CCA, "IBM 3624 PIN Offset Calculation Method" (CCA Basic Services Reference
/// Release 2.54, p. E-4): with a PIN check length shorter than the PIN, the offset covers the
/// rightmost (low-order) digits. Checked against Example 1 above (natural PIN 643085): the
/// 4-digit offset for the 6-digit PIN 099764 is its rightmost 4 digits, 6789, and only those
/// digits are verified.
#[test]
fn ibm3624_check_length_shorter_than_pin() {
    let pvk = single_des_as_tdes("1313131313131313");
    let table = DecimalizationTable::STANDARD;
    let validation = from_pan("1234567890123456", 0, 16, 'F');
    let ibm = Ibm3624 {
        pvk: &pvk,
        table: &table,
        validation: &validation,
    };
    let short = ibm.generate_offset(&pin("099764"), 4).expect("offset");
    assert_eq!(*short.expose(), "6789");
    ibm.verify_offset(&pin("099764"), &short).expect("verify");
    // The unchecked leftmost digits come from the natural PIN.
    assert_eq!(
        *ibm.pin_from_offset(&short, 6).expect("pin").expose(),
        "649764"
    );
    ibm.verify_offset(&pin("559764"), &short)
        .expect("leftmost digits are not checked");
    assert_eq!(
        ibm.verify_offset(&pin("099765"), &short),
        Err(CryptoError::VerificationFailed("PIN offset"))
    );
}

#[test]
fn ibm3624_input_validation() {
    // Decimalization tables: exactly 16 decimal digits.
    for bad in [
        "",
        "012345678901234",
        "01234567890123456",
        "012345678901234A",
        "0123 56789012345",
    ] {
        assert!(DecimalizationTable::parse(bad).is_err(), "{bad:?}");
    }
    // Validation data: 4 to 16 hex digits, a single hex pad digit, within the PAN.
    assert!(ValidationData::parse("123", 'F').is_err());
    assert!(ValidationData::parse("12345678901234567", 'F').is_err());
    assert!(matches!(
        ValidationData::parse("1234G", 'F'),
        Err(CryptoError::InvalidHex(_))
    ));
    assert!(ValidationData::parse("1234", 'X').is_err());
    assert!(ValidationData::parse("1234", 'é').is_err());
    let card = pan("1122334455667788");
    assert!(ValidationData::from_pan(&card, 1, 16, 'F').is_err());
    assert!(ValidationData::from_pan(&card, 0, 17, 'F').is_err());
    assert!(ValidationData::from_pan(&card, 0, 3, 'F').is_err());
    assert!(ValidationData::from_pan(&card, usize::MAX, 4, 'F').is_err());
    // Offsets: 4 to 12 digits.
    for bad in ["", "123", "1234567890123", "12a4"] {
        assert!(PinOffset::parse(bad).is_err(), "{bad:?}");
    }

    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let table = DecimalizationTable::STANDARD;
    let validation = from_pan("1122334455667788", 0, 16, 'F');
    let ibm = Ibm3624 {
        pvk: &pvk,
        table: &table,
        validation: &validation,
    };
    // PIN lengths and check lengths out of range.
    assert!(ibm.natural_pin(3).is_err());
    assert!(ibm.natural_pin(13).is_err());
    assert!(ibm.generate_offset(&pin("1234"), 3).is_err());
    assert!(ibm.generate_offset(&pin("1234"), 5).is_err());
    // An offset longer than the PIN.
    assert!(matches!(
        ibm.verify_offset(&pin("1234"), &offset("123456")),
        Err(CryptoError::OutOfRange { .. })
    ));
    assert!(ibm.pin_from_offset(&offset("123456"), 4).is_err());
    // Single-length key refused.
    let single = key("0123456789ABCDEF");
    assert!(matches!(
        ibm3624_natural_pin(&single, &table, &validation, 4),
        Err(CryptoError::InvalidLength { .. })
    ));
}

#[test]
fn errors_and_debug_never_show_pins_or_pans() {
    let card = pan("4321000000001234");
    let secret_pin = pin("987654");
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let mut texts = vec![
        format!("{secret_pin:?}"),
        format!(
            "{:?}",
            ValidationData::from_pan(&card, 0, 16, 'F').expect("data")
        ),
        format!(
            "{:?}",
            generate_pvv(&pvk, &card, pvki(1), &secret_pin).expect("pvv")
        ),
        format!("{:?}", PinOffset::parse("98765432").expect("offset")),
        format!("{:?}", Pvv::parse("9876")),
        format!("{:?}", PinOffset::parse("98765432109876")),
        format!("{:?}", ValidationData::from_pan(&card, 10, 16, 'F')),
        format!("{:?}", ValidationData::parse("43210000000012349", 'F')),
    ];
    let errors = [
        verify_pvv(
            &pvk,
            &card,
            pvki(1),
            &secret_pin,
            &Pvv::parse("0000").expect("pvv"),
        ),
        verify_ibm3624_offset(
            &pvk,
            &DecimalizationTable::STANDARD,
            &ValidationData::from_pan(&card, 0, 16, 'F').expect("data"),
            &secret_pin,
            &offset("987654"),
        ),
    ];
    for error in errors {
        let error = error.expect_err("must fail");
        texts.push(error.to_string());
        texts.push(format!("{error:?}"));
    }
    for text in texts {
        assert!(!text.contains("9876"), "{text}");
        assert!(!text.contains("43210000"), "{text}");
        assert!(!text.contains("00001234"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Random PINs
// ---------------------------------------------------------------------------------------

#[test]
fn random_pins_come_with_matching_verification_data() {
    let mut rng = StdRng::seed_from_u64(7);
    let pvk = key("0123456789ABCDEFFEDCBA9876543210");
    let card = pan("4321000000001234");
    for len in 4..=12 {
        let (new_pin, pvv) =
            generate_random_pin_with_pvv(&pvk, &card, pvki(1), len, &mut rng).expect("pin");
        assert_eq!(new_pin.len(), len);
        verify_pvv(&pvk, &card, pvki(1), &new_pin, &pvv).expect("verify");

        let validation = ValidationData::from_pan(&card, 3, 12, 'F').expect("data");
        let ibm = Ibm3624 {
            pvk: &pvk,
            table: &DecimalizationTable::STANDARD,
            validation: &validation,
        };
        let (new_pin, offset) = generate_random_pin_with_offset(&ibm, len, &mut rng).expect("pin");
        assert_eq!((new_pin.len(), offset.len()), (len, len));
        ibm.verify_offset(&new_pin, &offset).expect("verify");
    }
    assert!(random_pin(3, &mut rng).is_err());
    assert!(random_pin(13, &mut rng).is_err());
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn digits_of(text: &str) -> Vec<u8> {
    text.bytes().map(|byte| byte - b'0').collect()
}

proptest! {
    #[test]
    fn pvv_round_trip_and_wrong_pin(
        key_bytes in proptest::array::uniform16(any::<u8>()),
        pan_text in "[0-9]{12,19}",
        pin_text in "[0-9]{4,12}",
        wrong_text in "[0-9]{4}",
        index in 0_u8..=9,
    ) {
        let pvk = SecretBytes::new(key_bytes.to_vec());
        let (card, right) = (pan(&pan_text), pin(&pin_text));
        let pvv = generate_pvv(&pvk, &card, pvki(index), &right).expect("pvv");
        prop_assert!(verify_pvv(&pvk, &card, pvki(index), &right, &pvv).is_ok());
        // Only the 4 leftmost digits count.
        let prefix = pin(&pin_text[..4]);
        prop_assert_eq!(&generate_pvv(&pvk, &card, pvki(index), &prefix).expect("pvv"), &pvv);
        // A PIN with other leading digits fails, unless its PVV happens to collide
        // (4 decimal digits: about one in ten thousand).
        prop_assume!(wrong_text != pin_text[..4]);
        let wrong = pin(&wrong_text);
        let wrong_pvv = generate_pvv(&pvk, &card, pvki(index), &wrong).expect("pvv");
        prop_assume!(wrong_pvv != pvv);
        prop_assert_eq!(
            verify_pvv(&pvk, &card, pvki(index), &wrong, &pvv),
            Err(CryptoError::VerificationFailed("PVV"))
        );
    }

    #[test]
    fn ibm3624_round_trip_arithmetic_and_wrong_pin(
        key_bytes in proptest::array::uniform16(any::<u8>()),
        table_text in "[0-9]{16}",
        data_text in "[0-9A-F]{4,16}",
        pad in "[0-9A-F]",
        pin_text in "[0-9]{4,12}",
        check_seed in any::<usize>(),
        flip_seed in any::<usize>(),
        bump in 1_u8..=9,
    ) {
        let pvk = SecretBytes::new(key_bytes.to_vec());
        let table = table(&table_text);
        let pad = pad.chars().next().expect("pad");
        let validation = ValidationData::parse(&data_text, pad).expect("data");
        let ibm = Ibm3624 { pvk: &pvk, table: &table, validation: &validation };
        let customer = pin(&pin_text);
        let len = customer.len();
        let check_len = 4 + check_seed % (len - 3);

        let offset = ibm.generate_offset(&customer, check_len).expect("offset");
        prop_assert_eq!(offset.len(), check_len);
        prop_assert!(ibm.verify_offset(&customer, &offset).is_ok());

        // Offset arithmetic: per digit, offset = customer − natural (mod 10) over the
        // rightmost check_len digits.
        let natural = digits_of(&ibm.natural_pin(len).expect("natural").expose());
        let customer_digits = digits_of(&customer.expose());
        let offset_digits = digits_of(&offset.expose());
        for (index, offset_digit) in offset_digits.iter().enumerate() {
            let position = len - check_len + index;
            prop_assert_eq!(
                (natural[position] + offset_digit) % 10,
                customer_digits[position]
            );
        }
        // pin_from_offset gives back the customer PIN's checked digits.
        let rebuilt = digits_of(&ibm.pin_from_offset(&offset, len).expect("pin").expose());
        prop_assert_eq!(&rebuilt[len - check_len..], &customer_digits[len - check_len..]);

        // Changing any checked digit always fails (the method is a bijection per digit).
        let mut wrong_digits = customer_digits.clone();
        let position = len - check_len + flip_seed % check_len;
        wrong_digits[position] = (wrong_digits[position] + bump) % 10;
        let wrong_text: String = wrong_digits.iter().map(|digit| char::from(b'0' + digit)).collect();
        prop_assert_eq!(
            ibm.verify_offset(&pin(&wrong_text), &offset),
            Err(CryptoError::VerificationFailed("PIN offset"))
        );
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,24}", pad in any::<char>(), start in any::<usize>(), len in any::<usize>()) {
        let _ = Pvki::parse(&text);
        let _ = Pvv::parse(&text);
        let _ = PinOffset::parse(&text);
        let _ = DecimalizationTable::parse(&text);
        let _ = ValidationData::parse(&text, pad);
        let _ = ValidationData::from_pan(&pan("4321000000001234"), start, len, pad);
    }
}
