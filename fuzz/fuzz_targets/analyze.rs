//! Arbitrary bytes into the statement analyzer: it must never panic and
//! must fail closed (see `pgward::sql::fuzz_logic`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgward::sql::fuzz_logic::analyze_arbitrary(data);
});
