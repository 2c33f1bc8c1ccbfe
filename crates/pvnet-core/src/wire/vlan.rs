//! vlan view (being written)
