//! tcp view (being written)
