//! udp view (being written)
