//! VXLAN and GENEVE decapsulation on arbitrary bytes (the first 3 are the port's VNI).
//! The body lives in pvnet_core::overlay::fuzz so that tests/overlay_decap.rs runs the
//! same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pvnet_core::overlay::fuzz::decap_body(data);
});
