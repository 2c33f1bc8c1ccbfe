//! ethernet view (being written)
