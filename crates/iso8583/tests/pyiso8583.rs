//! Interop with a third-party implementation, pyiso8583 (PyPI `pyiso8583`): for both built-in
//! specs, messages encoded by pyiso8583 (with a spec dict derived from the same TOML file by
//! `tests/py/pyiso8583_interop.py`) decode here field by field, and messages encoded here
//! decode in pyiso8583 to the same fields; the bytes of both encoders are compared too.
//!
//! Runs when `MPOS_TEST_PYTHON` names a Python 3.11+ with pyiso8583 installed
//! (`infra/pyiso8583.sh` makes one; `infra/test.sh` sets the variable). Skipped with a note
//! when the variable is unset; fails when it is set but the interpreter or pyiso8583 is
//! missing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use emv_tlv::{Tag, TlvList};
use iso8583::{FieldValue, Message, Mti, Spec, decode, encode};

fn python() -> Option<PathBuf> {
    std::env::var_os("MPOS_TEST_PYTHON").map(PathBuf::from)
}

fn run_python(
    python: &Path,
    spec_path: &Path,
    mode: &str,
    input: &serde_json::Value,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/pyiso8583_interop.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(spec_path)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("MPOS_TEST_PYTHON={} cannot run: {error}", python.display())
        });
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(input.to_string().as_bytes())
        .expect("write to python");
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "{} {mode} failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python prints JSON")
}

/// An EMV field 55 as a terminal sends it with an ARQC (tags of a GENERATE AC request; the
/// cryptogram is the one of python-emv's published GENERATE AC response, see emv-tlv's
/// known-answer tests).
fn icc_request() -> Vec<u8> {
    TlvList::new()
        .push(
            Tag(0x9F26),
            [0x6E, 0xCF, 0x93, 0x47, 0xC1, 0xA9, 0x24, 0x71],
        )
        .push(Tag(0x9F27), [0x80])
        .push(Tag(0x9F10), [0x06, 0x0B, 0x0A, 0x03, 0xA4, 0x90, 0x00])
        .push(Tag(0x9F37), [0x1A, 0x2B, 0x3C, 0x4D])
        .push(Tag(0x9F36), [0x00, 0x05])
        .push(Tag(0x95), [0x00, 0x00, 0x00, 0x80, 0x00])
        .push(Tag(0x9A), [0x25, 0x06, 0x30])
        .push(Tag(0x9C), [0x00])
        .push(Tag(0x9F02), [0x00, 0x00, 0x00, 0x00, 0x10, 0x00])
        .push(Tag(0x5F2A), [0x09, 0x78])
        .push(Tag(0x82), [0x39, 0x00])
        .push(Tag(0x9F1A), [0x02, 0x50])
        .push(Tag(0x9F03), [0x00; 6])
        .push(Tag(0x9F33), [0xE0, 0xF0, 0xC8])
        .push(Tag(0x9F34), [0x1F, 0x03, 0x02])
        .push(Tag(0x84), [0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10])
        .encode()
}

/// Messages valid under both built-in specs: odd and even BCD lengths, track 2 with its
/// separator, field 55, binary PIN block and MACs, LLLVAR fields, a secondary bitmap (70, 90,
/// 95, 102, 103, 127, 128) and an empty variable field.
fn messages() -> Vec<Message> {
    let mti = |text: &str| Mti::parse(text).expect("valid MTI");
    let mut purchase = Message::new(mti("0200"));
    purchase
        .set_text(2, "4761739001010010")
        .set_text(3, "000000")
        .set_text(4, "000000001000")
        .set_text(7, "0630142530")
        .set_text(11, "000123")
        .set_text(12, "142530")
        .set_text(13, "0630")
        .set_text(14, "2512")
        .set_text(18, "5411")
        .set_text(22, "051")
        .set_text(23, "001")
        .set_text(25, "00")
        .set_text(35, "4761739001010010=25122011143804400000")
        .set_text(37, "000000000123")
        .set_text(41, "TERM0001")
        .set_text(42, "MERCHANT0000001")
        .set_text(43, "MPOS TEST SHOP          PARIS        FR ")
        .set_text(49, "978")
        .set_bytes(52, &[0x04, 0x12, 0x34, 0xFE, 0xDC, 0xBA, 0x98, 0x76])
        .set_bytes(55, &icc_request())
        .set_bytes(64, &[0xA1, 0xB2, 0xC3, 0xD4, 0x00, 0x00, 0x00, 0x00]);

    let mut response = Message::new(mti("0210"));
    response
        .set_text(3, "000000")
        .set_text(4, "000000001000")
        .set_text(11, "000123")
        .set_text(37, "000000000123")
        .set_text(38, "A1B2C3")
        .set_text(39, "00")
        .set_text(41, "TERM0001")
        .set_text(54, "0040978C000000001000")
        .set_bytes(
            55,
            &TlvList::new()
                .push(
                    Tag(0x91),
                    [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x30, 0x30],
                )
                .push_constructed(
                    Tag(0x72),
                    TlvList::new().push(Tag(0x86), [0x84, 0x24, 0x00, 0x00, 0x08]),
                )
                .encode(),
        );

    let mut echo = Message::new(mti("0800"));
    echo.set_text(7, "0630142530")
        .set_text(11, "000124")
        .set_text(70, "301");

    let mut reversal = Message::new(mti("0420"));
    reversal
        .set_text(2, "6011000990139424123") // 19 digits: odd
        .set_text(3, "000000")
        .set_text(4, "000000005000")
        .set_text(11, "000125")
        .set_text(32, "12345678901") // 11 digits: odd LLVAR
        .set_text(35, "6011000990139424123=251210100000") // odd track 2
        .set_text(39, "68")
        .set_text(90, "020000012306301425300000001234500000000000")
        .set_text(95, "000000000000000000000000C00000000D00000000")
        .set_text(102, "ACCOUNT-1/00042")
        .set_text(103, "")
        .set_text(127, "reserved private ~ {data} with | punctuation")
        .set_bytes(128, &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);

    let mut authorization = Message::new(mti("0100"));
    authorization
        .set_text(2, "371449635398431") // 15 digits
        .set_text(3, "003000")
        .set_text(4, "000000012345")
        .set_text(14, "2701")
        .set_text(22, "901")
        .set_text(44, "")
        .set_text(45, "B371449635398431^TEST/CARD^27011010000000000000")
        .set_text(48, "TAG01=VALUE;TAG02=~!@#$%^&*()")
        .set_text(62, "x")
        .set_text(104, "Transaction description")
        .set_bytes(55, &[0x9F, 0x27, 0x01, 0x40]);

    vec![purchase, response, echo, reversal, authorization]
}

fn to_json(message: &Message) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("t".into(), message.mti().to_string().into());
    for (number, value) in message.fields() {
        let text = match value {
            FieldValue::Text(text) => text.clone(),
            FieldValue::Bytes(bytes) => hex::encode_upper(bytes),
        };
        object.insert(number.to_string(), text.into());
    }
    object.into()
}

#[test]
fn interop_with_pyiso8583() {
    let Some(python) = python() else {
        eprintln!(
            "pyiso8583 interop skipped: MPOS_TEST_PYTHON is not set (infra/pyiso8583.sh makes a venv; infra/test.sh sets it)"
        );
        return;
    };
    let messages = messages();
    for name in Spec::builtin_names() {
        let spec = Spec::builtin(name).expect("builtin");
        let spec_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("specs/{name}.toml"));

        // pyiso8583 encodes, this crate decodes.
        let input = serde_json::Value::Array(messages.iter().map(to_json).collect());
        let encoded = run_python(&python, &spec_path, "encode", &input);
        let encoded: Vec<String> = serde_json::from_value(encoded).expect("a list of hex strings");
        assert_eq!(encoded.len(), messages.len());
        for (index, (hex_message, message)) in encoded.iter().zip(&messages).enumerate() {
            let bytes = hex::decode(hex_message).expect("hex");
            let decoded = decode(&spec, &bytes).unwrap_or_else(|error| {
                panic!("{name}, message {index}: pyiso8583's encoding does not decode: {error}")
            });
            assert_eq!(decoded.mti(), message.mti(), "{name}, message {index}");
            for (number, value) in message.fields() {
                assert!(
                    decoded.get(number) == Some(value),
                    "{name}, message {index}: field {number} differs"
                );
            }
            assert_eq!(&decoded, message, "{name}, message {index}");
            // Both encoders produce the same bytes (reported by offset: they hold a PAN).
            let ours = encode(&spec, message).expect("encodes");
            let first_difference = ours.iter().zip(&bytes).position(|(a, b)| a != b);
            assert!(
                ours == bytes,
                "{name}, message {index}: encodings differ at offset {first_difference:?} (lengths {} and {})",
                ours.len(),
                bytes.len()
            );
        }
        // The ARQC survives pyiso8583's encoding.
        let purchase = decode(&spec, &hex::decode(&encoded[0]).expect("hex")).expect("decodes");
        let icc = emv_tlv::parse(purchase.get_bytes(55).expect("field 55")).expect("BER-TLV");
        assert_eq!(
            emv_tlv::find(&icc, Tag(0x9F26)),
            Some(&[0x6E, 0xCF, 0x93, 0x47, 0xC1, 0xA9, 0x24, 0x71][..])
        );

        // This crate encodes, pyiso8583 decodes.
        let ours: Vec<serde_json::Value> = messages
            .iter()
            .map(|message| hex::encode_upper(encode(&spec, message).expect("encodes")).into())
            .collect();
        let decoded = run_python(
            &python,
            &spec_path,
            "decode",
            &serde_json::Value::Array(ours),
        );
        let decoded: Vec<BTreeMap<String, String>> =
            serde_json::from_value(decoded).expect("a list of objects");
        assert_eq!(decoded.len(), messages.len());
        for (index, (theirs, message)) in decoded.iter().zip(&messages).enumerate() {
            let expected: BTreeMap<String, String> =
                serde_json::from_value(to_json(message)).expect("an object of strings");
            for (key, value) in &expected {
                assert!(
                    theirs.get(key) == Some(value),
                    "{name}, message {index}: pyiso8583 reads field {key} differently"
                );
            }
            assert_eq!(
                theirs.len(),
                expected.len(),
                "{name}, message {index}: field sets differ"
            );
        }
    }
}
