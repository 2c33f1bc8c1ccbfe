//! virtio_net_hdr codec and validation (being written)
