//! virtio_net_hdr validate → segment (both checksum modes) on arbitrary bytes.
//! The body lives in pvnet_core::offload::gso::fuzz so that tests/gso_fuzz.rs runs the same
//! code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pvnet_core::offload::gso::fuzz::gso_segment(data);
});
