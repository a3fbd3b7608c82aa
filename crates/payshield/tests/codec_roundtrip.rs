//! Property tests: every command and response survives encode → decode unchanged, the
//! decoders never panic on arbitrary or truncated input, and the framer reassembles any
//! chunking of a stream.

#![allow(clippy::unwrap_used)]

use payshield::codec::{
    ArqcRequest, DataRequest, DukptPinTranslation, ErrorCode, ExportKey, ExportTarget, GenerateKey,
    ImportKey, KeyBlockAttributes, KeyField, MacRequest, PinTranslation, Request, Response,
    ResponseMessage, Sensitive, decode_request, decode_response, encode, encode_response,
    response_code_for,
};
use payshield::framing::{Framer, encode_frame};
use proptest::collection::vec;
use proptest::prelude::*;

fn hex_string(len: usize) -> impl Strategy<Value = String> {
    vec(prop::sample::select(b"0123456789ABCDEF".to_vec()), len)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

fn digit_string(len: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = String> {
    vec(prop::sample::select(b"0123456789".to_vec()), len)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

fn alnum(len: usize) -> impl Strategy<Value = String> {
    vec(
        prop::sample::select(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ".to_vec()),
        len,
    )
    .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

/// A self-describing key block text: version, 4-digit length, header and body characters.
fn key_block() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!['A', 'B', 'C', 'D']),
        alnum(2),
        prop::sample::select(vec!['T', 'A']),
        vec(
            prop::sample::select(b"0123456789ABCDEFabc=+/".to_vec()),
            9..120,
        ),
    )
        .prop_map(|(version, usage, algorithm, body)| {
            let body = String::from_utf8(body).unwrap();
            let len = 5 + 2 + 1 + body.len();
            format!("{version}{len:04}{usage}{algorithm}{body}")
        })
}

fn key_field() -> impl Strategy<Value = KeyField> {
    prop_oneof![
        key_block().prop_map(KeyField::KeyBlock),
        key_block().prop_map(KeyField::Tr31),
        (prop::sample::select(vec!['U', 'X']), hex_string(32))
            .prop_map(|(scheme, hex)| KeyField::Scheme { scheme, hex }),
        (prop::sample::select(vec!['T', 'Y']), hex_string(48))
            .prop_map(|(scheme, hex)| KeyField::Scheme { scheme, hex }),
        hex_string(16).prop_map(KeyField::Single),
    ]
}

fn attributes() -> impl Strategy<Value = KeyBlockAttributes> {
    (
        alnum(2),
        prop::sample::select(vec!["T2", "T3", "A1", "A2", "A3"]),
        prop::sample::select(vec!['B', 'C', 'D', 'E', 'G', 'N', 'V', 'X']),
        alnum(2),
        prop::sample::select(vec!['E', 'N', 'S']),
    )
        .prop_map(
            |(key_usage, algorithm, mode_of_use, key_version, exportability)| KeyBlockAttributes {
                key_usage,
                algorithm: algorithm.to_owned(),
                mode_of_use,
                key_version,
                exportability,
            },
        )
}

fn target() -> impl Strategy<Value = ExportTarget> {
    (
        prop::sample::select(vec!['0', '1']),
        key_field(),
        prop::sample::select(vec!['R', 'U', 'T', 'S']),
    )
        .prop_map(|(zmk_tmk_flag, kek, scheme)| ExportTarget {
            zmk_tmk_flag,
            kek,
            scheme,
        })
}

fn pin_format() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["01", "03", "05", "47", "48"]).prop_map(str::to_owned)
}

fn pin_translation() -> impl Strategy<Value = PinTranslation> {
    (
        key_field(),
        key_field(),
        0_u8..100,
        pin_format(),
        pin_format(),
        hex_string(32),
        digit_string(12..=19),
    )
        .prop_map(
            |(source_key, destination_key, max, source, destination, block, pan)| {
                let block_len = if source == "48" { 32 } else { 16 };
                let full = source == "48" || destination == "48";
                PinTranslation {
                    source_key,
                    destination_key,
                    max_pin_length: max,
                    pin_block: Sensitive(block[..block_len].to_owned()),
                    account: Sensitive(if full { pan } else { pan[..12].to_owned() }),
                    source_format: source,
                    destination_format: destination,
                }
            },
        )
}

fn dukpt(g0: bool) -> impl Strategy<Value = DukptPinTranslation> {
    (
        key_field(),
        key_field(),
        prop::sample::select(vec!["906", "A05", "605", "555", "F00"]),
        hex_string(20),
        hex_string(16),
        pin_format(),
        pin_format(),
        digit_string(12),
    )
        .prop_map(
            move |(bdk, zpk, descriptor, ksn, block, source, destination, account)| {
                let len: usize = descriptor
                    .chars()
                    .map(|c| c.to_digit(16).unwrap() as usize)
                    .sum::<usize>()
                    + 5;
                DukptPinTranslation {
                    bdk,
                    zpk,
                    ksn_descriptor: descriptor.to_owned(),
                    ksn: ksn[..len].to_owned(),
                    pin_block: Sensitive(block),
                    source_format: g0.then_some(source),
                    destination_format: destination,
                    account: Sensitive(account),
                }
            },
        )
}

fn arqc() -> impl Strategy<Value = ArqcRequest> {
    (
        prop::sample::select(vec!['0', '1', '2']),
        prop::sample::select(vec!['0', '1']),
        key_field(),
        any::<[u8; 8]>(),
        any::<[u8; 2]>(),
        any::<[u8; 4]>(),
        vec(any::<u8>(), 1..256),
        any::<[u8; 8]>(),
        any::<[u8; 2]>(),
    )
        .prop_map(
            |(mode, scheme, mk_ac, pan_psn, atc, un, data, arqc, arc)| ArqcRequest {
                mode,
                scheme,
                mk_ac,
                pan_psn: Sensitive(pan_psn),
                atc,
                unpredictable_number: un,
                transaction_data: if mode == '2' { Vec::new() } else { data },
                arqc,
                arc: (mode != '0').then_some(arc),
            },
        )
}

fn mac(verify: bool) -> impl Strategy<Value = MacRequest> {
    (
        prop::sample::select(vec!['0', '1', '2', '3']),
        prop::sample::select(vec!['0', '1', '2']),
        digit_string(2),
        prop::sample::select(vec!['0', '1', '2', '3']),
        hex_string(3),
        key_field(),
        hex_string(16),
        vec(any::<u8>(), 0..300),
        prop::sample::select(vec![8_usize, 16]),
    )
        .prop_map(
            move |(mode, input_format, algorithm, padding, key_type, key, iv, message, mac_len)| {
                MacRequest {
                    mode,
                    input_format,
                    algorithm,
                    padding,
                    key_type,
                    key,
                    iv: matches!(mode, '2' | '3').then(|| iv.clone()),
                    message: Sensitive(message),
                    mac: verify.then(|| iv[..mac_len].to_owned()),
                }
            },
        )
}

fn data() -> impl Strategy<Value = DataRequest> {
    (
        prop::bool::ANY,
        prop::sample::select(vec!['0', '1']),
        prop::sample::select(vec!['0', '1']),
        hex_string(3),
        key_field(),
        hex_string(32),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(cbc, input_format, output_format, key_type, key, iv, message)| {
                let iv_len = if key.algorithm() == 'A' { 32 } else { 16 };
                DataRequest {
                    mode: if cbc { "01" } else { "00" }.to_owned(),
                    input_format,
                    output_format,
                    key_type,
                    key,
                    iv: cbc.then(|| iv[..iv_len].to_owned()),
                    message: Sensitive(message),
                }
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Diagnostics),
        digit_string(2).prop_map(|mode| Request::Status { mode }),
        (hex_string(3), proptest::option::of(target()), attributes()).prop_map(
            |(key_type, export, attributes)| Request::GenerateKey(GenerateKey {
                key_type,
                lmk_scheme: 'S',
                export,
                attributes,
            })
        ),
        (
            hex_string(3),
            key_field(),
            key_field(),
            proptest::option::of(attributes())
        )
            .prop_map(
                |(key_type, zmk, key, attributes)| Request::ImportKey(ImportKey {
                    key_type,
                    zmk,
                    key,
                    lmk_scheme: 'S',
                    attributes,
                })
            ),
        (hex_string(3), target(), key_field()).prop_map(|(key_type, target, key)| {
            Request::ExportKey(ExportKey {
                key_type,
                target,
                key,
            })
        }),
        pin_translation().prop_map(Request::TranslatePinTpkToZpk),
        pin_translation().prop_map(Request::TranslatePinZpkToZpk),
        dukpt(false).prop_map(Request::TranslatePinDukpt),
        dukpt(true).prop_map(Request::TranslatePinDukpt3Des),
        arqc().prop_map(Request::VerifyArqc),
        mac(false).prop_map(Request::GenerateMac),
        mac(true).prop_map(Request::VerifyMac),
        data().prop_map(Request::EncryptData),
        data().prop_map(Request::DecryptData),
        (
            hex_string(2),
            prop::sample::select(vec!['0', '1', '2']),
            key_field()
        )
            .prop_map(|(key_type_code, key_length_flag, key)| {
                Request::KeyCheckValue(payshield::codec::KeyCheckValueRequest {
                    key_type_code,
                    key_length_flag,
                    key,
                })
            }),
    ]
}

fn response() -> impl Strategy<Value = ([u8; 2], Response)> {
    prop_oneof![
        (hex_string(16), alnum(9)).prop_map(|(lmk_check_value, firmware)| (
            *b"ND",
            Response::Diagnostics {
                lmk_check_value,
                firmware
            }
        )),
        (digit_string(2), alnum(9), alnum(6)).prop_map(|(tcp_sockets, firmware, extra)| (
            *b"NP",
            Response::Status {
                io_buffer_size: '2',
                ethernet_type: '1',
                tcp_sockets,
                firmware,
                extra,
            }
        )),
        (
            key_field(),
            proptest::option::of(key_field()),
            hex_string(6)
        )
            .prop_map(|(key_under_lmk, key_under_kek, check_value)| (
                *b"A1",
                Response::GenerateKey {
                    key_under_lmk,
                    key_under_kek,
                    check_value
                }
            )),
        prop_oneof![hex_string(6), hex_string(16)]
            .prop_map(|check_value| (*b"BV", Response::KeyCheckValue { check_value })),
        (key_field(), hex_string(6)).prop_map(|(key_under_lmk, check_value)| (
            *b"A7",
            Response::ImportKey {
                key_under_lmk,
                check_value
            }
        )),
        (key_field(), hex_string(6)).prop_map(|(key_under_kek, check_value)| (
            *b"A9",
            Response::ExportKey {
                key_under_kek,
                check_value
            }
        )),
        (
            prop::sample::select(vec![*b"CB", *b"CD", *b"CJ", *b"G1"]),
            0_u8..100,
            pin_format(),
            hex_string(32)
        )
            .prop_map(|(code, pin_length, format, block)| {
                let len = if format == "48" { 32 } else { 16 };
                (
                    code,
                    Response::TranslatePin {
                        pin_length,
                        pin_block: Sensitive(block[..len].to_owned()),
                        format,
                    },
                )
            }),
        proptest::option::of(any::<[u8; 8]>())
            .prop_map(|arpc| (*b"KR", Response::VerifyArqc { arpc })),
        prop::sample::select(vec![8_usize, 16])
            .prop_flat_map(hex_string)
            .prop_map(|mac| (*b"M7", Response::GenerateMac { mac })),
        Just((*b"M9", Response::VerifyMac)),
        (
            prop::sample::select(vec![*b"M1", *b"M3"]),
            prop::bool::ANY,
            vec(any::<u8>(), 1..300)
        )
            .prop_map(|(code, hex_encoded, data)| (
                code,
                Response::Data {
                    hex_encoded,
                    data: Sensitive(data)
                }
            )),
    ]
}

proptest! {
    #[test]
    fn every_request_round_trips(header in alnum(4), request in request()) {
        let message = encode(header.as_bytes(), &request).unwrap();
        let (decoded_header, decoded) = decode_request(4, &message).unwrap();
        prop_assert_eq!(decoded_header, header.as_bytes());
        prop_assert_eq!(decoded, request);
    }

    #[test]
    fn truncated_requests_never_panic(request in request(), cut in any::<prop::sample::Index>()) {
        let message = encode(b"0000", &request).unwrap();
        let cut = cut.index(message.len());
        let _ = decode_request(4, &message[..cut]);
    }

    #[test]
    fn every_response_round_trips(header in alnum(4), (code, body) in response()) {
        let message = ResponseMessage {
            header: header.clone().into_bytes(),
            response_code: code,
            error: ErrorCode::OK,
            body: Some(body),
        };
        let bytes = encode_response(&message).unwrap();
        prop_assert_eq!(decode_response(4, &bytes).unwrap(), message);
    }

    #[test]
    fn error_responses_round_trip(code in prop::sample::select(vec![*b"ND", *b"CB", *b"M9", *b"KR"]),
                                  error in prop::sample::select(vec![*b"01", *b"15", *b"A4", *b"68"])) {
        let message = ResponseMessage {
            header: b"0042".to_vec(),
            response_code: code,
            error: ErrorCode(error),
            body: None,
        };
        let bytes = encode_response(&message).unwrap();
        prop_assert_eq!(decode_response(4, &bytes).unwrap(), message);
    }

    /// What the fuzz targets check, on mutations of valid messages: whatever still decodes
    /// re-encodes to a message that decodes to the same value.
    #[test]
    fn mutated_requests_that_decode_round_trip(
        request in request(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        operation in 0_u8..3,
    ) {
        let mut message = encode(b"0000", &request).unwrap();
        let index = position.index(message.len());
        match operation {
            0 => message[index] = byte,
            1 => message.insert(index, byte),
            _ => {
                message.remove(index);
            }
        }
        if let Ok((header, decoded)) = decode_request(4, &message) {
            let again = encode(&header, &decoded).unwrap();
            prop_assert_eq!(decode_request(4, &again).unwrap(), (header, decoded));
        }
    }

    #[test]
    fn mutated_responses_that_decode_round_trip(
        (code, body) in response(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        operation in 0_u8..3,
    ) {
        let message = ResponseMessage {
            header: b"0000".to_vec(),
            response_code: code,
            error: ErrorCode::OK,
            body: Some(body),
        };
        let mut bytes = encode_response(&message).unwrap();
        let index = position.index(bytes.len());
        match operation {
            0 => bytes[index] = byte,
            1 => bytes.insert(index, byte),
            _ => {
                bytes.remove(index);
            }
        }
        if let Ok(decoded) = decode_response(4, &bytes) {
            let again = encode_response(&decoded).unwrap();
            prop_assert_eq!(decode_response(4, &again).unwrap(), decoded);
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..400), header_len in 0_usize..10) {
        let _ = decode_request(header_len, &bytes);
        let _ = decode_response(header_len, &bytes);
    }

    #[test]
    fn framer_reassembles_any_chunking(
        messages in vec(vec(any::<u8>(), 1..200), 1..8),
        chunk in 1_usize..50,
    ) {
        let mut wire = Vec::new();
        for message in &messages {
            wire.extend(encode_frame(message).unwrap());
        }
        let mut framer = Framer::new(1000);
        let mut out = Vec::new();
        for piece in wire.chunks(chunk) {
            framer.push(piece);
            while let Some(message) = framer.next_frame().unwrap() {
                out.push(message);
            }
        }
        prop_assert_eq!(out, messages);
    }
}

#[test]
fn response_codes_increment_the_second_character() {
    assert_eq!(&response_code_for(*b"NC"), b"ND");
    assert_eq!(&response_code_for(*b"A0"), b"A1");
    assert_eq!(&response_code_for(*b"CA"), b"CB");
    assert_eq!(&response_code_for(*b"G0"), b"G1");
}

#[test]
fn debug_hides_pin_blocks_accounts_and_data() {
    let request = Request::TranslatePinZpkToZpk(PinTranslation {
        source_key: KeyField::Single("0123456789ABCDEF".into()),
        destination_key: KeyField::Single("0123456789ABCDEF".into()),
        max_pin_length: 12,
        pin_block: Sensitive("1B9C1845EB993A7A".into()),
        source_format: "01".into(),
        destination_format: "01".into(),
        account: Sensitive("401234567890".into()),
    });
    let text = format!("{request:?}");
    assert!(!text.contains("1B9C1845EB993A7A"));
    assert!(!text.contains("401234567890"));
}
