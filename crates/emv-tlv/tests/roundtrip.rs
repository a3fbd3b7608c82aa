//! Property tests: any well-formed list of data objects survives encode → parse unchanged,
//! whatever parses re-encodes to bytes that parse to the same objects, and parse never panics.

use emv_tlv::{MAX_DEPTH, Tag, Tlv, Value, encode, find, parse};
use proptest::collection::vec;
use proptest::prelude::*;

/// Well-formed primitive tags of one, two and three bytes.
fn primitive_tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        // One byte: not 00, primitive (bit 6 clear), low five bits not all set.
        any::<u8>()
            .prop_filter("one-byte primitive", |b| *b != 0
                && b & 0x20 == 0
                && b & 0x1F != 0x1F)
            .prop_map(|b| Tag(u32::from(b))),
        // Two bytes: first xx011111 primitive, second with bit 8 clear.
        (0u8..4, 0u8..0x80).prop_map(|(class, second)| Tag(
            u32::from((class << 6) | 0x1F) << 8 | u32::from(second)
        )),
        // Three bytes: second byte with bit 8 set, third with it clear.
        (0u8..4, 0x80u8..=0xFF, 0u8..0x80).prop_map(|(class, second, third)| Tag(u32::from(
            (class << 6) | 0x1F
        ) << 16
            | u32::from(second) << 8
            | u32::from(third))),
    ]
}

fn constructed_tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        Just(Tag(0x70)),
        Just(Tag(0x77)),
        Just(Tag(0xA5)),
        Just(Tag(0xE0)),
        Just(Tag(0xBF0C)),
        Just(Tag(0xFF01)),
    ]
}

fn tlv_tree() -> impl Strategy<Value = Tlv> {
    let leaf = (
        primitive_tag(),
        prop_oneof![vec(any::<u8>(), 0..20), vec(any::<u8>(), 120..300)],
    )
        .prop_map(|(tag, value)| Tlv::primitive(tag, value));
    leaf.prop_recursive(MAX_DEPTH as u32, 64, 6, |inner| {
        (constructed_tag(), vec(inner, 0..6)).prop_map(|(tag, items)| Tlv::constructed(tag, items))
    })
}

fn first_primitive_depth_first(items: &[Tlv], tag: Tag) -> Option<&[u8]> {
    for item in items {
        match &item.value {
            Value::Primitive(bytes) if item.tag == tag => return Some(bytes),
            Value::Primitive(_) => {}
            Value::Constructed(children) => {
                if let Some(found) = first_primitive_depth_first(children, tag) {
                    return Some(found);
                }
            }
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_parse_is_identity(items in vec(tlv_tree(), 0..5)) {
        let encoded = encode(&items);
        prop_assert_eq!(parse(&encoded), Ok(items.clone()));
        // Minimally encoded, padding-free input re-encodes to itself.
        prop_assert_eq!(encode(&parse(&encoded).unwrap_or_default()), encoded);
    }

    #[test]
    fn padding_is_ignored(items in vec(tlv_tree(), 1..4), pad in 1usize..4) {
        let mut padded = vec![0u8; pad];
        for item in &items {
            padded.extend(encode(std::slice::from_ref(item)));
            padded.extend(std::iter::repeat_n(0u8, pad));
        }
        prop_assert_eq!(parse(&padded), Ok(items));
    }

    #[test]
    fn find_matches_a_depth_first_walk(items in vec(tlv_tree(), 0..5), probe in primitive_tag()) {
        prop_assert_eq!(find(&items, probe), first_primitive_depth_first(&items, probe));
        if let Some(first) = items.first()
            && let Value::Primitive(bytes) = &first.value
        {
            prop_assert_eq!(find(&items, first.tag), Some(bytes.as_slice()));
        }
    }

    #[test]
    fn parse_never_panics(data in vec(any::<u8>(), 0..512)) {
        if let Ok(items) = parse(&data) {
            let again = encode(&items);
            prop_assert_eq!(parse(&again), Ok(items));
        }
    }

    #[test]
    fn truncation_is_an_error_not_a_panic(items in vec(tlv_tree(), 1..4), cut in any::<prop::sample::Index>()) {
        let encoded = encode(&items);
        let cut = cut.index(encoded.len());
        // Any strict prefix either fails or parses to something else; it never panics.
        let _ = parse(&encoded[..cut]);
    }
}
