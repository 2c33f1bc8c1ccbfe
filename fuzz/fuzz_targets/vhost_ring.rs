//! A vhost-user port's descriptor-chain paths (guest transmit into a slot, guest receive
//! with and without merged buffers, used-ring publishing) over a fake guest memory made
//! of the input. The body lives in pvnet_linux::vhost_user::fuzz so that
//! tests/vhost_user_fuzz.rs runs the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pvnet_linux::vhost_user::fuzz::ring_body(data);
});
