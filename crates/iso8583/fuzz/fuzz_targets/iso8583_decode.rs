//! Message decoding under both built-in specs (ascii-1987, bcd-1987): never panics, and
//! whatever decodes re-encodes and decodes to the same message; printing it never panics.
#![no_main]

use std::sync::OnceLock;

use iso8583::{Spec, decode, encode};
use libfuzzer_sys::fuzz_target;

fn specs() -> &'static [Spec] {
    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        Spec::builtin_names()
            .iter()
            .map(|name| Spec::builtin(name).expect("built-in spec"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    for spec in specs() {
        if let Ok(message) = decode(spec, data) {
            let again = encode(spec, &message).expect("a decoded message re-encodes");
            let message2 = decode(spec, &again).expect("a re-encoded message decodes");
            assert_eq!(message2, message);
            let _ = format!("{message:?} {:?}", spec.redacted(&message));
        }
    }
});
