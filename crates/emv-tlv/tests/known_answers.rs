//! Known answers from published BER-TLV samples. Every input and every expected value below is
//! copied from the cited source, not produced by this crate.

use emv_tlv::{Tag, Tlv, TlvError, encode, find, parse};

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text.replace(' ', "")).expect("hex in a test vector")
}

/// Source: pyemv (github.com/knovichikhin/pyemv), `pyemv/tlv.py`, docstrings of `decode` and
/// `encode`: `9C0101E0055F2A0202089F0200` decodes to
/// `{'9C': b'\x01', 'E0': {'5F2A': b'\x02\x08'}, '9F02': b''}` and that dict encodes back to
/// the same hex.
#[test]
fn pyemv_docstring_example() {
    let input = bytes("9C0101E0055F2A0202089F0200");
    let expected = vec![
        Tlv::primitive(Tag(0x9C), [0x01]),
        Tlv::constructed(Tag(0xE0), vec![Tlv::primitive(Tag(0x5F2A), [0x02, 0x08])]),
        Tlv::primitive(Tag(0x9F02), []),
    ];
    assert_eq!(parse(&input), Ok(expected.clone()));
    assert_eq!(encode(&expected), input);
}

/// Source: pyemv, `tests/test_tlv.py`, `test_decode_nested`:
/// `9f0201ffe0039f03009f0400` decodes to `{"9F02": b"\xff", "E0": {"9F03": b""}, "9F04": b""}`.
#[test]
fn pyemv_nested() {
    let input = bytes("9f0201ffe0039f03009f0400");
    assert_eq!(
        parse(&input),
        Ok(vec![
            Tlv::primitive(Tag(0x9F02), [0xFF]),
            Tlv::constructed(Tag(0xE0), vec![Tlv::primitive(Tag(0x9F03), [])]),
            Tlv::primitive(Tag(0x9F04), []),
        ])
    );
}

/// Source: pyemv, `tests/test_tlv.py`, `test_encode` (minimal lengths, multi-byte tags,
/// constructed objects) — each pair is (value, published encoding).
#[test]
fn pyemv_encode_vectors() {
    let cases: Vec<(Vec<Tlv>, String)> = vec![
        (vec![], String::new()),
        (vec![Tlv::primitive(Tag(0x9C), [])], "9C00".into()),
        (vec![Tlv::primitive(Tag(0x9C), [0xFF])], "9C01FF".into()),
        (vec![Tlv::primitive(Tag(0x9F00), [0xFF])], "9F0001FF".into()),
        (
            vec![Tlv::primitive(Tag(0x9F8001), [0xFF])],
            "9F800101FF".into(),
        ),
        (
            vec![Tlv::primitive(Tag(0x9C), vec![0xFF; 128])],
            format!("9C8180{}", "FF".repeat(128)),
        ),
        (
            vec![Tlv::primitive(Tag(0x9C), vec![0xFF; 511])],
            format!("9C8201FF{}", "FF".repeat(511)),
        ),
        (vec![Tlv::constructed(Tag(0xE0), vec![])], "E000".into()),
        (
            vec![Tlv::constructed(
                Tag(0xE0),
                vec![Tlv::primitive(Tag(0x9C), [0xFF])],
            )],
            "E0039C01FF".into(),
        ),
        (
            vec![
                Tlv::constructed(Tag(0xE0), vec![Tlv::primitive(Tag(0x9F00), [0xFF])]),
                Tlv::primitive(Tag(0x9C), [0xFF]),
            ],
            "E0049F0001FF9C01FF".into(),
        ),
    ];
    for (items, published) in cases {
        let published = bytes(&published);
        assert_eq!(encode(&items), published);
        assert_eq!(parse(&published), Ok(items));
    }
}

/// Source: pyemv, `tests/test_tlv.py`, `test_decode_tag`: long-form lengths, including
/// non-minimal ones (`9C8101FF`, `9C820001FF`, `9C83000001FF` all decode to `9C` = `FF`) and a
/// three-byte tag (`9F820101FF` decodes to `9F8201` = `FF`).
///
/// pyemv also decodes `9C80` (indefinite form) and `9C8400000001FF` (four length bytes); this
/// crate refuses both on purpose (EMV uses neither), so those vectors are checked as refusals.
#[test]
fn pyemv_decode_lengths() {
    for input in ["9C01FF", "9C8101FF", "9C820001FF", "9C83000001FF"] {
        assert_eq!(
            parse(&bytes(input)),
            Ok(vec![Tlv::primitive(Tag(0x9C), [0xFF])]),
            "{input}"
        );
    }
    for input in ["9C00", "9C8100", "9C820000", "9C83000000"] {
        assert_eq!(
            parse(&bytes(input)),
            Ok(vec![Tlv::primitive(Tag(0x9C), [])]),
            "{input}"
        );
    }
    assert_eq!(
        parse(&bytes("9F820101FF")),
        Ok(vec![Tlv::primitive(Tag(0x9F8201), [0xFF])])
    );
    assert_eq!(
        parse(&bytes("9C80")),
        Err(TlvError::IndefiniteLength { offset: 1 })
    );
    assert_eq!(
        parse(&bytes("9C8400000001FF")),
        Err(TlvError::LengthTooLong {
            offset: 1,
            bytes: 4
        })
    );
}

/// Source: pyemv, `tests/test_tlv.py`, `test_decode_exception`: where the published decoder
/// reports the same kind of fault, this crate reports the same offset.
#[test]
fn pyemv_decode_errors() {
    // "Tag malformed, expecting more data: tag '9F', offset 0."
    assert_eq!(
        parse(&bytes("9F")),
        Err(TlvError::TruncatedTag { offset: 0 })
    );
    // "Tag length malformed, expecting 1 byte(s): tag '9C', offset 1."
    assert_eq!(
        parse(&bytes("9C")),
        Err(TlvError::TruncatedLength { offset: 1 })
    );
    // "Tag value malformed, expecting 1 byte(s): tag '9C', offset 2."
    assert_eq!(
        parse(&bytes("9C01")),
        Err(TlvError::ValueOverflow {
            offset: 2,
            declared: 1,
            available: 0
        })
    );
    // "Tag value malformed, expecting 1 byte(s): tag 'E0', offset 2."
    assert_eq!(
        parse(&bytes("E001")),
        Err(TlvError::ValueOverflow {
            offset: 2,
            declared: 1,
            available: 0
        })
    );
    // "Tag malformed, expecting more data: tag '9F', offset 2." (the template ends inside the tag)
    assert_eq!(
        parse(&bytes("E0019F0001FF")),
        Err(TlvError::TruncatedTag { offset: 2 })
    );
    // "Tag value malformed, expecting 1 byte(s): tag '9C', offset 5."
    assert_eq!(
        parse(&bytes("E0039C8101C001FF")),
        Err(TlvError::ValueOverflow {
            offset: 5,
            declared: 1,
            available: 0
        })
    );
    // "Tag length malformed, expecting 1 byte(s): tag 'AA', offset 4."
    assert_eq!(
        parse(&bytes("9C01FFAA")),
        Err(TlvError::TruncatedLength { offset: 4 })
    );
    // "Tag length malformed, expecting 1 byte(s): tag 'AA', offset 6."
    assert_eq!(
        parse(&bytes("E0039C01FFAA")),
        Err(TlvError::TruncatedLength { offset: 6 })
    );
}

/// Source: python-emv (github.com/russss/python-emv), `emv/protocol/test_tlv.py`, `test_tlv`:
/// a real card's GENERATE AC response (Response Message Template Format 2, tag 77) carrying an
/// ARQC. The test asserts that `9F26` inside `77` is `6E CF 93 47 C1 A9 24 71`. The other
/// values are the published bytes read field by field: CID `9F27` = `80` (ARQC), ATC `9F36` =
/// `0005`, issuer application data `9F10` = `06 0B 0A 03 A4 90 00`.
#[test]
fn python_emv_generate_ac_response_with_arqc() {
    let input = bytes(
        "77 1E 9F 27 01 80 9F 36 02 00 05 9F 26 08 6E CF 93 47 C1 A9 24 71 9F 10 07 06 0B 0A 03 A4 90 00",
    );
    let items = parse(&input).expect("published response parses");
    assert_eq!(
        find(&items, Tag(0x9F26)),
        Some(&bytes("6E CF 93 47 C1 A9 24 71")[..])
    );
    assert_eq!(
        items,
        vec![Tlv::constructed(
            Tag(0x77),
            vec![
                Tlv::primitive(Tag(0x9F27), [0x80]),
                Tlv::primitive(Tag(0x9F36), [0x00, 0x05]),
                Tlv::primitive(Tag(0x9F26), bytes("6ECF9347C1A92471")),
                Tlv::primitive(Tag(0x9F10), bytes("060B0A03A49000")),
            ],
        )]
    );
    assert_eq!(encode(&items), input);
}

/// Source: python-emv, `emv/protocol/test_tlv.py`, `test_tlv`: a card's FCI template (`6F`)
/// with a DF name `84`, and the FCI proprietary template `A5` holding application label `50`
/// ("BARCLAYS"), priority `87` and language preference `5F2D` ("en"). The test asserts that
/// `50` is inside `A5` inside `6F`.
#[test]
fn python_emv_fci_template() {
    let input = bytes(
        "6F 1D 84 07 A0 00 00 00 03 80 02 A5 12 50 08 42 41 52 43 4C 41 59 53 87 01 00 5F 2D 02 65 6E",
    );
    let items = parse(&input).expect("published FCI parses");
    assert_eq!(
        items,
        vec![Tlv::constructed(
            Tag(0x6F),
            vec![
                Tlv::primitive(Tag(0x84), bytes("A0000000038002")),
                Tlv::constructed(
                    Tag(0xA5),
                    vec![
                        Tlv::primitive(Tag(0x50), b"BARCLAYS".to_vec()),
                        Tlv::primitive(Tag(0x87), [0x00]),
                        Tlv::primitive(Tag(0x5F2D), b"en".to_vec()),
                    ],
                ),
            ],
        )]
    );
    assert_eq!(find(&items, Tag(0x50)), Some(&b"BARCLAYS"[..]));
    assert_eq!(encode(&items), input);
}

/// Source: python-emv, `emv/protocol/test_tlv.py`, `test_tlv_2`: `9F 17 01 03` is PIN try
/// counter `9F17` = 3.
#[test]
fn python_emv_pin_try_counter() {
    let items = parse(&bytes("9F 17 01 03")).expect("parses");
    assert_eq!(find(&items, Tag(0x9F17)), Some(&[3u8][..]));
}

/// Source: pyiso8583 (github.com/knovichikhin/pyiso8583), `docs/howto.rst`, "Sending Binary
/// Data": the EMV data `9F02060000000123455F340102` sent in field 55 — amount authorised
/// `9F02` = `000000012345`, PAN sequence number `5F34` = `02`.
#[test]
fn pyiso8583_field_55_example() {
    let input = bytes("9F02060000000123455F340102");
    let items = parse(&input).expect("parses");
    assert_eq!(
        items,
        vec![
            Tlv::primitive(Tag(0x9F02), bytes("000000012345")),
            Tlv::primitive(Tag(0x5F34), [0x02]),
        ]
    );
    assert_eq!(encode(&items), input);
}
