//! Helpers for tests, behind the `testing` cargo feature: not part of the stable API.
//!
//! Where a shared test helper goes:
//!
//! - used by the tests of more than one crate, or needing this crate's internals: here
//!   (or in a `testing`-gated module such as [`crate::oracle`]), behind the feature. A
//!   crate's own integration tests get it through a dev-dependency on the crate itself
//!   with the feature on (`pvnet-linux = { path = ".", features = ["testing"] }`), other
//!   crates through their dev-dependency on `pvnet-linux` with `features = ["testing"]`;
//! - used by several test files of one crate only: that crate's `tests/NAME/mod.rs` (a
//!   directory, so that cargo does not build it as a test of its own), included with
//!   `mod NAME;`.
//!
//! Tests that need privileges never skip: they call [`require_root`] first and fail,
//! saying why, when not run as root.

/// Fail the calling test unless it runs as root (effective uid 0), with a message that
/// names `what` needs it, e.g. `require_root("the kernel GSO oracle (a namespace, a
/// bridge and taps)")`. Never skips: a test that cannot run must not pass.
#[track_caller]
pub fn require_root(what: &str) {
    let euid = rustix::process::geteuid();
    assert!(
        euid.is_root(),
        "{what} needs root, but the effective uid is {}: run the tests as root \
         (e.g. `sudo -E cargo test`)",
        euid.as_raw()
    );
}
