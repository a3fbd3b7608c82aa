//! `resolve` over fuzzed hierarchies: the input is split on 0xFF into up to five protobuf
//! `RiskParameters`, one per level from the tenant down. Never panics; a resolved set is
//! deterministic and every value it holds has a source.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpos_proto::terminal_management as pb;
use tms_params::{Level, LevelKind};

const KINDS: [LevelKind; 5] = [
    LevelKind::Tenant,
    LevelKind::Merchant,
    LevelKind::Store,
    LevelKind::TerminalGroup,
    LevelKind::Terminal,
];

fuzz_target!(|data: &[u8]| {
    let sets: Vec<tms_params::RiskParameters> = data
        .split(|byte| *byte == 0xFF)
        .take(KINDS.len())
        .filter_map(|part| <pb::RiskParameters as prost::Message>::decode(part).ok())
        .filter_map(|parameters| tms_params::validate(&parameters).ok())
        .collect();
    let ids = ["t", "m", "s", "g", "x"];
    let levels: Vec<Level<'_>> = sets
        .iter()
        .enumerate()
        .map(|(index, parameters)| Level {
            kind: KINDS[index],
            node_id: ids[index],
            parameters,
        })
        .collect();
    let first = tms_params::resolve(&levels);
    let second = tms_params::resolve(&levels);
    assert_eq!(first, second, "resolution is deterministic");
    if let Ok(effective) = first {
        let proto = effective.to_proto();
        assert_eq!(proto.sources.len(), effective.sources().count());
    }
});
