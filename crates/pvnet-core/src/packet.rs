//! Scatter-gather packet (being written)
