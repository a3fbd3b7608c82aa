//! `pg_copy::Decoder` with a column count (first byte) and a chunking (second byte) over the
//! rest of the input, once as it is and once behind a valid header: it never panics, every
//! row it returns has the column count, and every typed read of a field gives a value or an
//! error. Feeding the same stream whole gives the same rows and the same outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_copy::{CopyError, Decoder, SIGNATURE};

type Rows = Vec<Vec<Option<Vec<u8>>>>;

fn run(stream: &[u8], columns: u16, piece: usize) -> (Rows, Result<(), CopyError>) {
    let mut decoder = Decoder::new(columns);
    let mut rows = Vec::new();
    for chunk in stream.chunks(piece) {
        decoder.push(chunk);
        loop {
            match decoder.next_row() {
                Ok(Some(row)) => {
                    let mut owned = Vec::new();
                    for column in 0..usize::from(columns) {
                        let field = row.get(column).expect("a column inside the row");
                        let _ = row.int8(column);
                        let _ = row.text(column);
                        owned.push(field.map(<[u8]>::to_vec));
                    }
                    assert!(row.get(usize::from(columns)).is_err());
                    rows.push(owned);
                }
                Ok(None) => break,
                Err(error) => return (rows, Err(error)),
            }
        }
    }
    (rows, decoder.finish())
}

fuzz_target!(|data: &[u8]| {
    let [columns, piece, rest @ ..] = data else {
        return;
    };
    let columns = u16::from(*columns % 16);
    let piece = usize::from(*piece).max(1);
    let mut framed = SIGNATURE.to_vec();
    framed.extend_from_slice(&[0; 8]);
    framed.extend_from_slice(rest);
    for stream in [rest, &framed[..]] {
        let chunked = run(stream, columns, piece);
        let whole = run(stream, columns, stream.len().max(1));
        assert_eq!(chunked.0, whole.0, "rows depend on the chunking");
        assert_eq!(chunked.1.is_ok(), whole.1.is_ok(), "the outcome depends on the chunking");
    }
});
