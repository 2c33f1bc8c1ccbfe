//! UDP tunnel super-frame (VXLAN/GENEVE) built from the input, header mutated, validated,
//! segmented in both checksum modes and checked against the RFC arithmetic. The body lives
//! in pvnet_core::offload::gso::fuzz so that tests/gso_tunnel.rs runs the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pvnet_core::offload::gso::fuzz::gso_tunnel(data);
});
