//! The control socket of a running switch (`pvnet switch --ctl PATH`) and its client
//! (`pvnet ctl`, `pvnet report`): line-delimited JSON, one request and one response,
//! described for users in `docs/ctl.md`.

pub mod client;
pub mod proto;
pub mod server;
