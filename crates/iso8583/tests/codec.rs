//! The codec's rules: exact fixed lengths, content checks, bitmaps, BCD padding, typed errors
//! with offsets and without content.

use iso8583::{
    Content, Element, FieldValue, Iso8583Error, Message, Mti, Spec, ValueKind, decode, encode,
};

fn ascii() -> Spec {
    Spec::builtin("ascii-1987").expect("builtin")
}

fn bcd() -> Spec {
    Spec::builtin("bcd-1987").expect("builtin")
}

fn new(mti: &str) -> Message {
    Message::new(Mti::parse(mti).expect("valid"))
}

#[test]
fn bcd_layout_on_the_wire() {
    let mut message = new("0200");
    message
        .set_text(2, "476173900101001") // 15 digits: left pad 0
        .set_text(3, "000000")
        .set_text(22, "051") // n3: 0051
        .set_text(35, "4761739001010010=2512201") // 24 characters, separator as D
        .set_text(41, "TERM0001")
        .set_bytes(52, &[0x11; 8])
        .set_bytes(55, &[0x9F, 0x27, 0x01, 0x80]);
    let wire = encode(&bcd(), &message).expect("encodes");
    let mut offset = 0;
    let mut take = |n: usize| {
        let part = hex::encode_upper(&wire[offset..offset + n]);
        offset += n;
        part
    };
    assert_eq!(take(2), "0200");
    // Bits 2, 3, 22, 35, 41, 52, 55.
    assert_eq!(take(8), "6000040020801200");
    assert_eq!(take(1), "15");
    assert_eq!(take(8), "0476173900101001");
    assert_eq!(take(3), "000000");
    assert_eq!(take(2), "0051");
    assert_eq!(take(1), "24");
    assert_eq!(take(12), "4761739001010010D2512201");
    assert_eq!(take(8), hex::encode_upper(b"TERM0001"));
    assert_eq!(take(8), "1111111111111111");
    assert_eq!(take(2), "0004");
    assert_eq!(take(4), "9F270180");
    assert_eq!(offset, wire.len());
    assert_eq!(decode(&bcd(), &wire), Ok(message));
}

#[test]
fn z_separator_and_padding() {
    // Odd track 2 in BCD: right pad F; 'D' given is sent as nibble D and comes back as '='.
    let mut message = new("0100");
    message.set_text(35, "4761739001010010D251");
    let wire = encode(&bcd(), &message).expect("encodes");
    assert_eq!(hex::encode_upper(&wire[10..]), "204761739001010010D251");
    assert_eq!(
        decode(&bcd(), &wire).expect("decodes").get_text(35),
        Some("4761739001010010=251")
    );
    message.set_text(35, "4761739001010010=2512");
    let wire = encode(&bcd(), &message).expect("encodes");
    assert_eq!(hex::encode_upper(&wire[10..]), "214761739001010010D2512F");
    assert_eq!(decode(&bcd(), &wire), Ok(message.clone()));
    // In ASCII the separator goes as given.
    message.set_text(35, "4761739001010010D2512");
    let wire = encode(&ascii(), &message).expect("encodes");
    assert_eq!(&wire[12..], b"214761739001010010D2512");
    assert_eq!(decode(&ascii(), &wire), Ok(message.clone()));
    // Two separators, or another letter, are not z.
    for bad in ["4761=7390=0101", "4761739001010010A2512"] {
        message.set_text(35, bad);
        assert_eq!(
            encode(&ascii(), &message),
            Err(Iso8583Error::InvalidContent {
                field: 35,
                content: Content::Z,
                offset: None
            })
        );
    }
    // A pad nibble other than 0 or F is refused; 0 is accepted for z as well.
    let mut wire = encode(&bcd(), new("0100").set_text(35, "123")).expect("encodes");
    let last = wire.len() - 1;
    assert_eq!(wire[last], 0x3F);
    wire[last] = 0x30;
    assert_eq!(
        decode(&bcd(), &wire).expect("decodes").get_text(35),
        Some("123")
    );
    wire[last] = 0x3A;
    assert_eq!(
        decode(&bcd(), &wire),
        Err(Iso8583Error::InvalidPadding {
            field: 35,
            offset: 11
        })
    );
    // n left pad: F accepted, 5 not.
    let mut wire = encode(&bcd(), new("0200").set_text(22, "051")).expect("encodes");
    assert_eq!(&wire[10..], &[0x00, 0x51]);
    wire[10] = 0xF0;
    assert_eq!(
        decode(&bcd(), &wire).expect("decodes").get_text(22),
        Some("051")
    );
    wire[10] = 0x50;
    assert_eq!(
        decode(&bcd(), &wire),
        Err(Iso8583Error::InvalidPadding {
            field: 22,
            offset: 10
        })
    );
}

#[test]
fn encode_refuses_what_the_spec_does_not_allow() {
    let spec = ascii();
    let cases: Vec<(Message, Iso8583Error)> = vec![
        (
            new("0200").set_text(4, "1000").clone(),
            Iso8583Error::FixedLength {
                field: 4,
                expected: 12,
                actual: 4,
            },
        ),
        (
            new("0200").set_text(4, "0000000010000").clone(),
            Iso8583Error::FixedLength {
                field: 4,
                expected: 12,
                actual: 13,
            },
        ),
        (
            new("0200").set_text(2, &"4".repeat(20)).clone(),
            Iso8583Error::TooLong {
                field: 2,
                max: 19,
                actual: 20,
                offset: None,
            },
        ),
        (
            new("0200").set_bytes(55, &[0; 256]).clone(),
            Iso8583Error::TooLong {
                field: 55,
                max: 255,
                actual: 256,
                offset: None,
            },
        ),
        (
            new("0200").set_text(3, "00000A").clone(),
            Iso8583Error::InvalidContent {
                field: 3,
                content: Content::N,
                offset: None,
            },
        ),
        (
            new("0200").set_text(39, "0!").clone(),
            Iso8583Error::InvalidContent {
                field: 39,
                content: Content::An,
                offset: None,
            },
        ),
        (
            new("0200")
                .set_text(43, &format!("{:<39}\n", "SHOP"))
                .clone(),
            Iso8583Error::InvalidContent {
                field: 43,
                content: Content::Ans,
                offset: None,
            },
        ),
        (
            new("0200")
                .set_text(43, &format!("{:<38}é", "SHOP"))
                .clone(),
            Iso8583Error::InvalidContent {
                field: 43,
                content: Content::Ans,
                offset: None,
            },
        ),
        (
            new("0200").set_text(52, "1234567890ABCDEF").clone(),
            Iso8583Error::WrongValueKind {
                field: 52,
                expected: ValueKind::Bytes,
            },
        ),
        (
            new("0200").set_bytes(3, b"000000").clone(),
            Iso8583Error::WrongValueKind {
                field: 3,
                expected: ValueKind::Text,
            },
        ),
        (
            new("0200").set_text(1, "x").clone(),
            Iso8583Error::UndefinedField {
                field: 1,
                offset: None,
            },
        ),
        (
            new("0200").set_text(65, "x").clone(),
            Iso8583Error::UndefinedField {
                field: 65,
                offset: None,
            },
        ),
        (
            new("0200").set_text(0, "x").clone(),
            Iso8583Error::UndefinedField {
                field: 0,
                offset: None,
            },
        ),
        (
            new("0200").set_text(129, "x").clone(),
            Iso8583Error::UndefinedField {
                field: 129,
                offset: None,
            },
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(encode(&spec, &message), Err(expected.clone()));
        // No error message carries content.
        let text = expected.to_string();
        for (_, value) in message.fields() {
            if let FieldValue::Text(content) = value {
                assert!(!text.contains(content.as_str()), "{text}");
            }
        }
    }
    // A spec that defines fewer fields refuses the others.
    let small = Spec::from_toml(
        "name = \"small\"\nmti_encoding = \"ascii\"\nbitmap_encoding = \"hex\"\n[fields]\n3 = { name = \"p\", length = { fixed = 6 }, content = \"n\", encoding = \"ascii\" }",
    )
    .expect("valid");
    assert_eq!(
        encode(&small, new("0200").set_text(4, "000000001000")),
        Err(Iso8583Error::UndefinedField {
            field: 4,
            offset: None
        })
    );
}

#[test]
fn decode_errors_carry_offsets() {
    let spec = ascii();
    let mut message = new("0200");
    message
        .set_text(2, "4761739001010010")
        .set_text(4, "000000001000")
        .set_text(41, "TERM0001");
    let wire = encode(&spec, &message).expect("encodes");
    // 0200 | bitmap (8) | 16 + PAN | amount | TID
    assert_eq!(
        decode(&spec, &wire[..3]),
        Err(Iso8583Error::Truncated {
            element: Element::Mti,
            offset: 0,
            needed: 4,
            available: 3
        })
    );
    assert_eq!(
        decode(&spec, &wire[..10]),
        Err(Iso8583Error::Truncated {
            element: Element::PrimaryBitmap,
            offset: 4,
            needed: 8,
            available: 6
        })
    );
    assert_eq!(
        decode(&spec, &wire[..13]),
        Err(Iso8583Error::Truncated {
            element: Element::Field(2),
            offset: 12,
            needed: 2,
            available: 1
        })
    );
    assert_eq!(
        decode(&spec, &wire[..20]),
        Err(Iso8583Error::Truncated {
            element: Element::Field(2),
            offset: 14,
            needed: 16,
            available: 6
        })
    );
    assert_eq!(
        decode(&spec, &wire[..wire.len() - 1]),
        Err(Iso8583Error::Truncated {
            element: Element::Field(41),
            offset: 42,
            needed: 8,
            available: 7
        })
    );
    let mut extra = wire.clone();
    extra.extend(b"XY");
    assert_eq!(
        decode(&spec, &extra),
        Err(Iso8583Error::TrailingBytes {
            offset: wire.len(),
            count: 2
        })
    );

    let mut bad = wire.clone();
    bad[1] = b'X';
    assert_eq!(
        decode(&spec, &bad),
        Err(Iso8583Error::InvalidMti { offset: Some(0) })
    );
    let mut bad = wire.clone();
    bad[12] = b'A';
    assert_eq!(
        decode(&spec, &bad),
        Err(Iso8583Error::InvalidLengthPrefix {
            field: 2,
            offset: 12
        })
    );
    let mut bad = wire.clone();
    bad[12..14].copy_from_slice(b"20");
    assert_eq!(
        decode(&spec, &bad),
        Err(Iso8583Error::TooLong {
            field: 2,
            max: 19,
            actual: 20,
            offset: Some(12)
        })
    );
    let mut bad = wire.clone();
    bad[20] = b'=';
    let error = decode(&spec, &bad).expect_err("not n");
    assert_eq!(
        error,
        Iso8583Error::InvalidContent {
            field: 2,
            content: Content::N,
            offset: Some(14)
        }
    );
    assert!(!error.to_string().contains("476173"));

    // Bitmap: tertiary bitmap announced, hex bitmap not hex.
    let mut with_secondary = new("0800");
    with_secondary.set_text(70, "301");
    let mut wire = encode(&spec, &with_secondary).expect("encodes");
    wire[12] |= 0x80;
    assert_eq!(
        decode(&spec, &wire),
        Err(Iso8583Error::TertiaryBitmap { offset: 12 })
    );
    let hex_spec = Spec::from_toml(
        "name = \"h\"\nmti_encoding = \"bcd\"\nbitmap_encoding = \"hex\"\n[fields]\n70 = { name = \"n\", length = { fixed = 3 }, content = \"n\", encoding = \"bcd\" }",
    )
    .expect("valid");
    let wire = encode(&hex_spec, &with_secondary).expect("encodes");
    assert_eq!(hex::encode_upper(&wire[..2]), "0800");
    assert_eq!(&wire[2..34], b"80000000000000000400000000000000");
    assert_eq!(&wire[34..], &[0x03, 0x01]);
    let mut lower = wire.clone();
    lower[2..34].make_ascii_lowercase();
    assert_eq!(decode(&hex_spec, &lower), Ok(with_secondary.clone()));
    let mut bad = wire.clone();
    bad[20] = b'G';
    assert_eq!(
        decode(&hex_spec, &bad),
        Err(Iso8583Error::InvalidBitmap {
            element: Element::SecondaryBitmap,
            offset: 18
        })
    );
    // A bit for a field the spec does not define.
    let mut bad = wire.clone();
    bad[3] = b'1'; // primary bitmap 81..: field 8
    assert_eq!(
        decode(&hex_spec, &bad),
        Err(Iso8583Error::UndefinedField {
            field: 8,
            offset: Some(2)
        })
    );
    // BCD MTI with a nibble above 9.
    let mut bad = wire.clone();
    bad[0] = 0x0A;
    assert_eq!(
        decode(&hex_spec, &bad),
        Err(Iso8583Error::InvalidMti { offset: Some(0) })
    );
}

#[test]
fn binary_fields_in_ascii_are_hex() {
    let spec = ascii();
    let mut message = new("0200");
    message
        .set_bytes(52, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])
        .set_bytes(55, &[0x9F, 0x27, 0x01, 0x80]);
    let wire = encode(&spec, &message).expect("encodes");
    // LLL of field 55 counts bytes (4), data is 8 hex characters.
    assert_eq!(&wire[12..], b"0123456789ABCDEF0049F270180");
    let mut lower = wire.clone();
    lower[12..].make_ascii_lowercase();
    assert_eq!(decode(&spec, &lower), Ok(message));
    let mut bad = wire.clone();
    bad[13] = b'G';
    assert_eq!(
        decode(&spec, &bad),
        Err(Iso8583Error::InvalidContent {
            field: 52,
            content: Content::B,
            offset: Some(12)
        })
    );
}

#[test]
fn empty_variable_fields_and_responses() {
    for spec in [ascii(), bcd()] {
        let mut message = new("0100");
        message.set_text(2, "").set_bytes(55, &[]).set_text(48, "");
        let wire = encode(&spec, &message).expect("encodes");
        assert_eq!(decode(&spec, &wire), Ok(message.clone()));
        let response = Message::new(message.mti().response().expect("a request"));
        assert_eq!(response.mti().to_string(), "0110");
        assert_eq!(
            decode(&spec, &encode(&spec, &response).expect("encodes")),
            Ok(response)
        );
    }
}

#[test]
fn redacted_view_hides_spec_sensitive_fields() {
    let spec = Spec::from_toml(
        "name = \"s\"\nmti_encoding = \"ascii\"\nbitmap_encoding = \"hex\"\n[fields]\n48 = { name = \"p\", length = { lllvar = 999 }, content = \"ans\", encoding = \"ascii\", length_encoding = \"ascii\", sensitive = true }\n3 = { name = \"p\", length = { fixed = 6 }, content = \"n\", encoding = \"ascii\" }",
    )
    .expect("valid");
    let mut message = new("0200");
    message
        .set_text(48, "CVV2=123")
        .set_text(3, "000000")
        .set_text(2, "4761739001010010");
    let plain = format!("{message:?}");
    assert!(plain.contains("CVV2=123"));
    assert!(!plain.contains("4761739001010010"));
    let redacted = format!("{:?}", spec.redacted(&message));
    assert_eq!(
        redacted,
        "Message { mti: Mti(0200), fields: {2: ***, 3: \"000000\", 48: ***} }"
    );
}
