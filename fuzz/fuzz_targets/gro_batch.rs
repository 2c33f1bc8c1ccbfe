//! GRO on arbitrary frames: frame by frame and as one gathered batch, which must agree.
//! The body lives in pvnet_core::offload::gro::fuzz so that tests/gro_fuzz.rs runs the same
//! code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pvnet_core::offload::gro::fuzz::gro_batch(data);
});
