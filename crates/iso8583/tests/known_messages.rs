//! Published ISO 8583 messages and bitmaps: decode gives the published field values and
//! encode gives the published bytes. Every input and expected value is copied from the cited
//! source, not produced by this crate.

use iso8583::{Iso8583Error, Message, Mti, Spec, decode, encode};

/// The fields of pyiso8583's `specs.default_ascii` (github.com/knovichikhin/pyiso8583,
/// `iso8583/specs.py`) that its documented examples use: ASCII MTI, ASCII hex bitmaps, ASCII
/// fields with ASCII length prefixes. pyiso8583 does not restrict content, so field 2 is `ans`
/// here (one example carries "cardholder PAN" in it). Field 55 is the binary LLLVAR field with
/// an ASCII length of the howto's "Sending Binary Data".
const PYISO8583_DEFAULT_ASCII: &str = r#"
name = "pyiso8583-default-ascii"
mti_encoding = "ascii"
bitmap_encoding = "hex"

[fields]
2 = { name = "Primary Account Number (PAN)", length = { llvar = 19 }, content = "ans", encoding = "ascii", length_encoding = "ascii" }
3 = { name = "Processing Code", length = { fixed = 6 }, content = "n", encoding = "ascii" }
12 = { name = "Time, Local Transaction", length = { fixed = 6 }, content = "n", encoding = "ascii" }
20 = { name = "PAN Country Code", length = { fixed = 3 }, content = "n", encoding = "ascii" }
21 = { name = "Forwarding Institution Country Code", length = { fixed = 3 }, content = "n", encoding = "ascii" }
39 = { name = "Response Code", length = { fixed = 2 }, content = "an", encoding = "ascii" }
55 = { name = "ICC data", length = { lllvar = 999 }, content = "b", encoding = "binary", length_encoding = "ascii" }
102 = { name = "Account ID 1", length = { llvar = 28 }, content = "ans", encoding = "ascii", length_encoding = "ascii" }
"#;

fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
    let mut message = Message::new(Mti::parse(mti).expect("valid MTI"));
    for (number, text) in fields {
        message.set_text(*number, text);
    }
    message
}

fn assert_known(spec: &Spec, wire: &[u8], expected: &Message) {
    assert_eq!(decode(spec, wire).as_ref(), Ok(expected));
    assert_eq!(encode(spec, expected).as_deref(), Ok(wire));
}

/// pyiso8583's documented examples, each with the docstring or howto section it comes from.
#[test]
fn pyiso8583_documented_messages() {
    let spec = Spec::from_toml(PYISO8583_DEFAULT_ASCII).expect("valid spec");
    // iso8583/decoder.py, `decode` docstring.
    assert_known(
        &spec,
        b"02004010100000000000161234567890123456123456111",
        &message(
            "0200",
            &[(2, "1234567890123456"), (12, "123456"), (20, "111")],
        ),
    );
    // iso8583/__init__.py, module docstring.
    assert_known(
        &spec,
        b"02004000000000000000101234567890",
        &message("0200", &[(2, "1234567890")]),
    );
    // iso8583/encoder.py, `encode` docstring.
    assert_known(
        &spec,
        b"0210200000000200000011111105",
        &message("0210", &[(3, "111111"), (39, "05")]),
    );
    // docs/howto.rst, "Create ISO8583 Message": no fields, then three.
    assert_known(&spec, b"02000000000000000000", &message("0200", &[]));
    assert_known(
        &spec,
        b"0200600008000000000014cardholder PAN111111021",
        &message("0200", &[(2, "cardholder PAN"), (3, "111111"), (21, "021")]),
    );
    // docs/howto.rst, "Add Secondary Bitmap".
    assert_known(
        &spec,
        b"02008000000000000000000000000400000006111111",
        &message("0200", &[(102, "111111")]),
    );
    // docs/howto.rst, "Check for Mandatory Fields".
    assert_known(
        &spec,
        b"02008000080000000000000000000400000005106111111",
        &message("0200", &[(21, "051"), (102, "111111")]),
    );
}

/// pyiso8583 `docs/howto.rst`, "Sending Binary Data": EMV data `9F02060000000123455F340102`
/// in field 55 (binary, ASCII LLL length) encodes to
/// `b'02000000000000000200013\x9f\x02\x06\x00\x00\x00\x01#E_4\x01\x02'`.
#[test]
fn pyiso8583_binary_field_55() {
    let spec = Spec::from_toml(PYISO8583_DEFAULT_ASCII).expect("valid spec");
    let wire = b"02000000000000000200013\x9f\x02\x06\x00\x00\x00\x01#E_4\x01\x02";
    let icc = hex::decode("9F02060000000123455F340102").expect("hex");
    let mut expected = Message::new(Mti::parse("0200").expect("valid"));
    expected.set_bytes(55, &icc);
    assert_known(&spec, wire, &expected);

    // The field is EMV BER-TLV: amount authorised 9F02 and PAN sequence number 5F34.
    let decoded = decode(&spec, wire).expect("decodes");
    let items = emv_tlv::parse(decoded.get_bytes(55).expect("field 55")).expect("BER-TLV");
    assert_eq!(
        emv_tlv::find(&items, emv_tlv::Tag(0x9F02)),
        Some(&[0x00, 0x00, 0x00, 0x01, 0x23, 0x45][..])
    );
    assert_eq!(
        emv_tlv::find(&items, emv_tlv::Tag(0x5F34)),
        Some(&[0x02][..])
    );
}

/// pyiso8583 `docs/howto.rst`, "Sending Binary Coded Decimal Data": the 15-digit PAN
/// `121200000002121` as an LLVAR BCD field right-padded with `0` encodes to
/// `b'02004000000000000000\x15\x12\x12\x00\x00\x00\x02\x12\x10'`. The howto sets
/// `len_enc = 'b'`, which meant BCD length in pyiso8583 2.x (its CHANGELOG, 3.0.0: "2.x.x used
/// len_enc set to b and bcd to represent BCD length encoding"): `\x15` is BCD 15.
#[test]
fn pyiso8583_bcd_pan() {
    let spec = Spec::from_toml(
        r#"
name = "pyiso8583-bcd-pan"
mti_encoding = "ascii"
bitmap_encoding = "hex"
[fields]
2 = { name = "PAN", length = { llvar = 19 }, content = "n", encoding = "bcd", length_encoding = "bcd", pad = "right" }
"#,
    )
    .expect("valid spec");
    assert_known(
        &spec,
        b"02004000000000000000\x15\x12\x12\x00\x00\x00\x02\x12\x10",
        &message("0200", &[(2, "121200000002121")]),
    );
}

/// The bitmap examples of the Wikipedia article "ISO 8583" (section "Bitmaps"):
/// `4210001102C04804` means fields 2, 7, 12, 28, 32, 39, 41, 42, 50, 53, 62 and
/// `7234054128C28805` fields 2, 3, 4, 7, 11, 12, 14, 22, 24, 26, 32, 35, 37, 41, 42, 47, 49,
/// 53, 62, 64. Messages with those fields (values made up, valid for ascii-1987) must carry
/// exactly the published bitmap, and decode back.
#[test]
fn wikipedia_primary_bitmaps() {
    let spec = Spec::builtin("ascii-1987").expect("builtin");
    let values: &[(u8, &str)] = &[
        (2, "4761739001010010"),
        (3, "000000"),
        (4, "000000001000"),
        (7, "0101123000"),
        (11, "000001"),
        (12, "123000"),
        (14, "2512"),
        (22, "051"),
        (24, "001"),
        (26, "12"),
        (28, "D00000000"),
        (32, "123456"),
        (35, "4761739001010010=25122011143804400000"),
        (37, "000000000001"),
        (39, "00"),
        (41, "TERM0001"),
        (42, "MERCHANT0000001"),
        (47, "national data"),
        (49, "978"),
        (50, "978"),
        (53, "0000000000000000"),
        (62, "private data"),
    ];
    for (bitmap, fields) in [
        (
            "4210001102C04804",
            &[2u8, 7, 12, 28, 32, 39, 41, 42, 50, 53, 62][..],
        ),
        (
            "7234054128C28805",
            &[
                2, 3, 4, 7, 11, 12, 14, 22, 24, 26, 32, 35, 37, 41, 42, 47, 49, 53, 62, 64,
            ][..],
        ),
    ] {
        let mut message = Message::new(Mti::parse("0200").expect("valid"));
        for number in fields {
            match values.iter().find(|(n, _)| n == number) {
                Some((_, text)) => message.set_text(*number, text),
                None => {
                    message.set_bytes(*number, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])
                }
            };
        }
        let wire = encode(&spec, &message).expect("encodes");
        assert_eq!(hex::encode_upper(&wire[4..12]), bitmap);
        assert_eq!(decode(&spec, &wire), Ok(message));
    }
}

/// Wikipedia "ISO 8583", section "Bitmaps": `0000000000000003` as a secondary bitmap means
/// fields 127 and 128; `8000000000000001` as a primary bitmap means fields 1 (a secondary
/// bitmap follows) and 64.
#[test]
fn wikipedia_secondary_bitmaps() {
    let spec = Spec::builtin("ascii-1987").expect("builtin");
    let mut message = Message::new(Mti::parse("0800").expect("valid"));
    message.set_text(127, "private").set_bytes(128, &[0xA5; 8]);
    let wire = encode(&spec, &message).expect("encodes");
    assert_eq!(hex::encode_upper(&wire[4..12]), "8000000000000000");
    assert_eq!(hex::encode_upper(&wire[12..20]), "0000000000000003");
    assert_eq!(decode(&spec, &wire), Ok(message));

    // Fields 1 and 64: a secondary bitmap with no bit set, then the MAC. It decodes; encoding
    // the result leaves the empty secondary bitmap out (it is sent exactly when a field from 65
    // to 128 is present).
    let mut wire = b"0800".to_vec();
    wire.extend(hex::decode("80000000000000010000000000000000").expect("hex"));
    wire.extend(b"0123456789ABCDEF");
    let decoded = decode(&spec, &wire).expect("decodes");
    assert_eq!(
        decoded.get_bytes(64),
        Some(&hex::decode("0123456789ABCDEF").expect("hex")[..])
    );
    assert_eq!(decoded.len(), 1);
    let again = encode(&spec, &decoded).expect("encodes");
    assert_eq!(hex::encode_upper(&again[4..12]), "0000000000000001");
}

/// The same pyiso8583 message under the builtin ascii-1987 spec: field 2 is `n` there, so
/// "cardholder PAN" is refused, and the error does not carry it.
#[test]
fn content_is_checked_against_the_spec() {
    let spec = Spec::builtin("ascii-1987").expect("builtin");
    let mut wire = b"0200".to_vec();
    wire.extend(hex::decode("6000080000000000").expect("hex"));
    wire.extend(b"14cardholder PAN111111021");
    let error = decode(&spec, &wire).expect_err("not n");
    assert_eq!(
        error,
        Iso8583Error::InvalidContent {
            field: 2,
            content: iso8583::Content::N,
            offset: Some(14)
        }
    );
    assert!(!error.to_string().contains("cardholder"));
}
