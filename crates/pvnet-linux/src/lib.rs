//! pvnet-linux: the I/O side of pvnet. Thin drivers that move bytes between the kernel or
//! files and the sans-IO core.

pub mod epoll;
pub mod netns;
pub mod oracle;
pub mod packet_socket;
pub mod pcap;
pub mod port;
pub mod portspec;
pub mod sched;
pub mod sys;
pub mod tap;
