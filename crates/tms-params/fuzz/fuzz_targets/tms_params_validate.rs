//! `validate` on arbitrary protobuf and JSON input. Never panics; whatever validates is
//! canonical: its canonical form validates to the same set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpos_proto::terminal_management as pb;

fn check(parameters: &pb::RiskParameters) {
    if let Ok(valid) = tms_params::validate(parameters) {
        let canonical = valid.to_proto();
        let again = tms_params::validate(&canonical).expect("the canonical form validates");
        assert_eq!(again, valid);
        assert_eq!(again.to_proto(), canonical);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(parameters) = <pb::RiskParameters as prost::Message>::decode(data) {
        check(&parameters);
    }
    if let Ok(parameters) = serde_json::from_slice::<pb::RiskParameters>(data) {
        check(&parameters);
    }
});
