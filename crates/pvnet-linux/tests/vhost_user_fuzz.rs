//! The vhost-user ring fuzz body (also the cargo-fuzz target `vhost_ring`) over random
//! guests: rings and descriptors anywhere, lengths of any size, loops, indirect tables.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hostile_rings_never_panic(data in proptest::collection::vec(any::<u8>(), 8..600)) {
        pvnet_linux::vhost_user::fuzz::ring_body(&data);
    }

    /// Rings in valid places (inside the first region, aligned) so that chains are
    /// actually walked, with random descriptors.
    #[test]
    fn random_descriptors_in_valid_rings(
        size_log in 0u8..6,
        body in proptest::collection::vec(any::<u8>(), 64..1024),
        flags in any::<u8>(),
    ) {
        let mut data = vec![size_log, 0, 0, 0x00, 0x04, 0x00, 0x08, flags];
        data.extend(body);
        pvnet_linux::vhost_user::fuzz::ring_body(&data);
    }
}
