//! pvnet-linux: the I/O side of pvnet. Thin drivers that move bytes between the kernel or
//! files and the sans-IO core.
//!
//! The `testing` feature adds what tests need and programs must not rely on: the kernel
//! as a segmentation oracle (`oracle`) and shared test helpers (`testing`).

pub mod epoll;
pub mod netns;
#[cfg(feature = "testing")]
pub mod oracle;
pub mod overlay_port;
pub mod packet_socket;
pub mod pcap;
pub mod port;
pub mod portspec;
pub mod sched;
pub mod sys;
pub mod tap;
#[cfg(feature = "testing")]
pub mod testing;
pub mod udp_tunnel;
pub mod vhost_user;
