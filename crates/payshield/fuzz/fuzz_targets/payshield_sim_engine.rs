//! The simulator's command processor on arbitrary messages: never panics, and every answer
//! echoes the header and carries the incremented response code and a 2-character error code.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use paycrypto::SecretBytes;
use payshield_sim::Engine;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(SecretBytes::new((0..32).collect()), 4).expect("32-byte LMK")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Some(answer) = engine().handle(data) {
        assert!(answer.len() >= 8);
        assert_eq!(answer[..4], data[..4]);
        assert_eq!(answer[4], data[4]);
        assert_eq!(answer[5], data[5].wrapping_add(1));
    }
});
