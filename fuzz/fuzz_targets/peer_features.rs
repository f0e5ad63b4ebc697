//! What other servers tell peer discovery: a `server.features` answer (or `server.add_peer`
//! argument) and a `server.peers.subscribe` answer. The input is JSON: either one value used as
//! both, or a pair `[features, peer_list]`; as text, it is also one peer's real name
//! (`host v1.4 s50002 t50001 p10000`, as a coin file or `add_peer` on the admin RPC gives it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        sextant::fuzzing::peer_real_name(text);
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    sextant::fuzzing::peer_answers(&v, &v);
    if let Some([features, list]) = v.as_array().map(Vec::as_slice) {
        sextant::fuzzing::peer_answers(features, list);
    }
});
