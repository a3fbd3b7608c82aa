//! The decoder against streams laid out as the PostgreSQL documentation describes the binary
//! COPY format (<https://www.postgresql.org/docs/current/sql-copy.html>, "Binary Format").
//! What a real server sends is checked in `mpos-es`'s PostgreSQL tests, which decode the
//! server's own COPY output and compare it with the same rows read by `SELECT`.

use pg_copy::{CopyError, Decoder, SIGNATURE};
use proptest::prelude::*;

/// The header with no flags and an extension area of `extension` bytes.
fn header(extension: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&u32::try_from(extension.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(extension);
    out
}

fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = i16::try_from(fields.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    for field in fields {
        match field {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(bytes) => {
                out.extend_from_slice(&i32::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    out
}

const TRAILER: [u8; 2] = [0xff, 0xff];

type Owned = Vec<Option<Vec<u8>>>;

/// Every row, feeding `stream` in pieces of `piece` bytes.
fn decode(stream: &[u8], columns: u16, piece: usize) -> Result<Vec<Owned>, CopyError> {
    let mut decoder = Decoder::new(columns);
    let mut rows = Vec::new();
    for chunk in stream.chunks(piece.max(1)) {
        decoder.push(chunk);
        while let Some(row) = decoder.next_row()? {
            let mut owned = Vec::new();
            for column in 0..usize::from(columns) {
                owned.push(row.get(column)?.map(<[u8]>::to_vec));
            }
            rows.push(owned);
        }
    }
    decoder.finish()?;
    Ok(rows)
}

#[test]
fn the_documented_layout_decodes_whole_and_byte_by_byte() {
    // int8 42, text "aé", NULL, bytea 00 ff.
    let mut stream = header(&[]);
    stream.extend(tuple(&[
        Some(&42i64.to_be_bytes()),
        Some("aé".as_bytes()),
        None,
        Some(&[0x00, 0xff]),
    ]));
    stream.extend(tuple(&[
        Some(&(-7i64).to_be_bytes()),
        Some(b""),
        Some(b"x"),
        None,
    ]));
    stream.extend(TRAILER);
    for piece in [stream.len(), 1, 3, 17] {
        let rows = decode(&stream, 4, piece).expect("decodes");
        assert_eq!(rows.len(), 2, "piece {piece}");
        assert_eq!(rows[0][0].as_deref(), Some(&42i64.to_be_bytes()[..]));
        assert_eq!(rows[0][1].as_deref(), Some("aé".as_bytes()));
        assert_eq!(rows[0][2], None);
        assert_eq!(rows[1][3], None);
    }
    let mut decoder = Decoder::new(4);
    decoder.push(&stream);
    let row = decoder.next_row().expect("decodes").expect("a row");
    assert_eq!(row.int8(0), Ok(42));
    assert_eq!(row.text(1), Ok("aé"));
    assert_eq!(row.get(2), Ok(None));
    assert_eq!(row.bytes(2), Err(CopyError::Null(2)));
    assert_eq!(row.bytes(3), Ok(&[0x00, 0xff][..]));
    assert_eq!(row.get(4), Err(CopyError::Column(4)));
    assert_eq!(
        row.int8(1),
        Err(CopyError::Value {
            column: 1,
            what: "an int8 is 8 bytes"
        })
    );
}

#[test]
fn the_header_extension_is_skipped_and_low_flag_bits_ignored() {
    let mut stream = SIGNATURE.to_vec();
    // Bits 0-15 "flag backwards-compatible format issues; a reader should simply ignore" them.
    stream.extend_from_slice(&0x0000_0001u32.to_be_bytes());
    stream.extend_from_slice(&5u32.to_be_bytes());
    stream.extend_from_slice(b"12345");
    stream.extend(tuple(&[Some(b"v")]));
    stream.extend(TRAILER);
    assert_eq!(decode(&stream, 1, 2), Ok(vec![vec![Some(b"v".to_vec())]]));
}

#[test]
fn an_empty_result_is_header_and_trailer() {
    let mut stream = header(&[]);
    stream.extend(TRAILER);
    assert_eq!(decode(&stream, 13, 1), Ok(vec![]));
}

#[test]
fn what_is_not_the_format_is_refused() {
    let mut bad_signature = header(&[]);
    bad_signature[5] = b'X';
    assert_eq!(decode(&bad_signature, 1, 64), Err(CopyError::Signature));
    // A text-format stream.
    assert_eq!(decode(b"1\tabc\n", 2, 64), Err(CopyError::Signature));

    let mut oids = SIGNATURE.to_vec();
    oids.extend_from_slice(&(1u32 << 16).to_be_bytes());
    oids.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(decode(&oids, 1, 64), Err(CopyError::Flags(1 << 16)));
    let mut critical = SIGNATURE.to_vec();
    critical.extend_from_slice(&(1u32 << 31).to_be_bytes());
    critical.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(decode(&critical, 1, 64), Err(CopyError::Flags(1 << 31)));

    let mut wrong_count = header(&[]);
    wrong_count.extend(tuple(&[Some(b"a"), Some(b"b")]));
    assert_eq!(
        decode(&wrong_count, 3, 64),
        Err(CopyError::FieldCount {
            expected: 3,
            found: 2
        })
    );

    let mut bad_length = header(&[]);
    bad_length.extend_from_slice(&1i16.to_be_bytes());
    bad_length.extend_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(decode(&bad_length, 1, 64), Err(CopyError::FieldLength(-2)));

    let mut trailing = header(&[]);
    trailing.extend(TRAILER);
    trailing.push(0);
    assert_eq!(decode(&trailing, 1, 64), Err(CopyError::TrailingData(1)));

    let mut truncated = header(&[]);
    truncated.extend(tuple(&[Some(b"abc")]));
    truncated.pop();
    assert_eq!(decode(&truncated, 1, 64), Err(CopyError::Truncated));
    let mut no_trailer = header(&[]);
    no_trailer.extend(tuple(&[Some(b"abc")]));
    assert_eq!(decode(&no_trailer, 1, 64), Err(CopyError::Truncated));
    assert_eq!(decode(&SIGNATURE[..4], 1, 64), Err(CopyError::Truncated));
}

fn rows_strategy() -> impl Strategy<Value = (u16, Vec<Owned>)> {
    (1u16..16).prop_flat_map(|columns| {
        let row = proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            usize::from(columns),
        );
        (Just(columns), proptest::collection::vec(row, 0..20))
    })
}

proptest! {
    /// Any rows laid out as documented come back as they were, however the stream is cut.
    #[test]
    fn rows_come_back_whatever_the_chunking((columns, rows) in rows_strategy(), piece in 1usize..64) {
        let mut stream = header(&[]);
        for row in &rows {
            let fields: Vec<Option<&[u8]>> = row.iter().map(Option::as_deref).collect();
            stream.extend(tuple(&fields));
        }
        stream.extend(TRAILER);
        prop_assert_eq!(decode(&stream, columns, piece), Ok(rows));
    }

    /// Arbitrary bytes give whole rows or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), columns in 0u16..8, piece in 1usize..32) {
        let mut stream = header(&[]);
        stream.extend(&bytes);
        for input in [&stream, &bytes] {
            if let Ok(rows) = decode(input, columns, piece) {
                prop_assert!(rows.iter().all(|row| row.len() == usize::from(columns)));
            }
        }
    }
}
