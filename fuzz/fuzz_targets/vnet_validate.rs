//! virtio_net_hdr decode + validate + from_meta round trip on arbitrary bytes.
//! The body lives in pvnet_core::vnet::fuzz so that tests/vnet_fuzz.rs runs the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pvnet_core::vnet::fuzz::vnet_validate(data);
});
