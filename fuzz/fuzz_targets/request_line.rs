//! A client's bytes: newline framing (buffer size and line limit taken from the input's length,
//! so lines straddle refills), then each line, and the whole input as one line, through JSON-RPC
//! parsing, method lookup, argument binding and the argument validators.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sextant::fuzzing::request_line(data);
    let capacity = data.len() % 61 + 1;
    let max = data.len() % 97;
    for line in sextant::fuzzing::frame_lines(data, capacity, max) {
        sextant::fuzzing::request_line(&line);
    }
});
