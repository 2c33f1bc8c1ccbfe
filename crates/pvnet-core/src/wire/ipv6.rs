//! ipv6 view (being written)
