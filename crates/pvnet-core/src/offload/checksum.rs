//! Checksum offload: complete partial checksums, verify frames.
