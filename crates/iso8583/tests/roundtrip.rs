//! Property tests over both built-in specs: any valid message survives encode → decode
//! unchanged, decode never panics on arbitrary or damaged input, whatever decodes re-encodes
//! and decodes to the same message, and the framer reassembles any chunking of a stream.

use iso8583::framing::{Framer, Framing, LengthPrefix};
use iso8583::{Content, FieldSpec, FieldValue, Length, Message, Mti, Spec, decode, encode};
use proptest::collection::vec;
use proptest::prelude::*;

fn chars(alphabet: &'static [u8], len: usize) -> impl Strategy<Value = String> {
    vec(prop::sample::select(alphabet), len)
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

/// A length for a field: exact for fixed fields; for variable ones mostly short, sometimes
/// anything up to the maximum.
fn length(field: &FieldSpec) -> BoxedStrategy<usize> {
    match field.length() {
        Length::Fixed(n) => Just(usize::from(n)).boxed(),
        length => {
            let max = length.max();
            prop_oneof![4 => 0..=max.min(24), 1 => 0..=max].boxed()
        }
    }
}

const DIGITS: &[u8] = b"0123456789";
const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ";

fn printable() -> &'static [u8] {
    static PRINTABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PRINTABLE.get_or_init(|| (0x20..=0x7E).collect())
}

/// A valid value for `field`. BCD `z` fields get `=` as separator (a `D` comes back as `=`).
fn value(field: &FieldSpec) -> BoxedStrategy<FieldValue> {
    let content = field.content();
    let bcd = field.encoding() == iso8583::Encoding::Bcd;
    length(field)
        .prop_flat_map(move |len| -> BoxedStrategy<FieldValue> {
            match content {
                Content::N => chars(DIGITS, len).prop_map(FieldValue::Text).boxed(),
                Content::An => chars(ALNUM, len).prop_map(FieldValue::Text).boxed(),
                Content::Ans => chars(printable(), len).prop_map(FieldValue::Text).boxed(),
                Content::B => vec(any::<u8>(), len).prop_map(FieldValue::Bytes).boxed(),
                Content::Z => {
                    let separators: &'static [u8] = if bcd { b"=" } else { b"=D" };
                    (
                        chars(DIGITS, len),
                        any::<prop::sample::Index>(),
                        prop::sample::select(separators),
                        any::<bool>(),
                    )
                        .prop_map(move |(digits, at, separator, with)| {
                            let mut text = digits.into_bytes();
                            if with && !text.is_empty() {
                                let index = at.index(text.len());
                                text[index] = separator;
                            }
                            FieldValue::Text(text.into_iter().map(char::from).collect())
                        })
                        .boxed()
                }
            }
        })
        .boxed()
}

fn message(spec: &Spec) -> impl Strategy<Value = Message> {
    let fields: Vec<BoxedStrategy<Option<(u8, FieldValue)>>> = spec
        .fields()
        .map(|(number, field)| {
            prop::option::weighted(0.1, value(field).prop_map(move |v| (number, v))).boxed()
        })
        .collect();
    (chars(DIGITS, 4), fields).prop_map(|(mti, values)| {
        let mut message =
            Message::new(Mti::parse(&mti).unwrap_or_else(|_| unreachable!("four digits")));
        for (number, value) in values.into_iter().flatten() {
            message.set(number, value);
        }
        message
    })
}

fn builtin(name: &str) -> Spec {
    Spec::builtin(name).expect("builtin spec")
}

fn check_decode_invariant(spec: &Spec, bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(message) = decode(spec, bytes) {
        let again = encode(spec, &message);
        prop_assert!(
            again.is_ok(),
            "decoded message does not re-encode: {:?}",
            again
        );
        if let Ok(again) = again {
            prop_assert_eq!(decode(spec, &again), Ok(message));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ascii_round_trip(message in message(&builtin("ascii-1987"))) {
        let spec = builtin("ascii-1987");
        let bytes = encode(&spec, &message).expect("valid message encodes");
        prop_assert_eq!(decode(&spec, &bytes), Ok(message));
    }

    #[test]
    fn bcd_round_trip(message in message(&builtin("bcd-1987"))) {
        let spec = builtin("bcd-1987");
        let bytes = encode(&spec, &message).expect("valid message encodes");
        prop_assert_eq!(decode(&spec, &bytes), Ok(message));
    }

    #[test]
    fn secondary_bitmap_exactly_when_needed(message in message(&builtin("bcd-1987"))) {
        let spec = builtin("bcd-1987");
        let bytes = encode(&spec, &message).expect("valid message encodes");
        let needs_secondary = message.fields().any(|(number, _)| number > 64);
        prop_assert_eq!(bytes[2] & 0x80 != 0, needs_secondary);
    }

    #[test]
    fn decode_never_panics(bytes in vec(any::<u8>(), 0..400)) {
        for name in Spec::builtin_names() {
            check_decode_invariant(&builtin(name), &bytes)?;
        }
    }

    #[test]
    fn decode_survives_damage(
        message in message(&builtin("ascii-1987")),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        for name in Spec::builtin_names() {
            let spec = builtin(name);
            let Ok(mut bytes) = encode(&spec, &message) else { continue };
            for (at, byte) in &flips {
                let index = at.index(bytes.len());
                bytes[index] = *byte;
            }
            check_decode_invariant(&spec, &bytes)?;
            check_decode_invariant(&spec, &bytes[..cut.index(bytes.len() + 1)])?;
        }
    }

    #[test]
    fn framer_reassembles_any_chunking(
        messages in vec(vec(any::<u8>(), 1..300), 1..5),
        prefix in prop::sample::select(LengthPrefix::ALL.to_vec()),
        header in vec(any::<u8>(), 0..6),
        chunk in 1usize..40,
    ) {
        let framing = Framing::new(prefix, header);
        let mut framer = Framer::new(framing.clone(), 300);
        let mut received = Vec::new();
        if prefix == LengthPrefix::None {
            // The transport delimits: one push a message.
            for message in &messages {
                framer.push(&framing.encode(message).expect("frame"));
                if let Some(frame) = framer.next_frame().expect("valid frame") {
                    received.push(frame);
                }
            }
        } else {
            let mut wire = Vec::new();
            for message in &messages {
                wire.extend(framing.encode(message).expect("frame"));
            }
            for piece in wire.chunks(chunk) {
                framer.push(piece);
                while let Some(frame) = framer.next_frame().expect("valid stream") {
                    received.push(frame);
                }
            }
        }
        prop_assert_eq!(received, messages);
        prop_assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn framer_never_panics(stream in vec(any::<u8>(), 0..300), chunk in 1usize..20, prefix in prop::sample::select(LengthPrefix::ALL.to_vec())) {
        let mut framer = Framer::new(Framing::new(prefix, [0x60, 0x00, 0x01]), 100);
        for piece in stream.chunks(chunk) {
            framer.push(piece);
            while let Ok(Some(frame)) = framer.next_frame() {
                prop_assert!(!frame.is_empty() && frame.len() <= 100);
            }
        }
    }
}
