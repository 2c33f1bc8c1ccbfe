//! pcap and pcapng files (being written)
