//! ipv4 view (being written)
