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

/// The seed of a randomized test: the environment variable `var` when set (to replay a
/// failure), else one from the clock. The test prints it, so a failure can be replayed.
pub fn env_seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// How many cases a randomized test runs: the environment variable `var` when set, else
/// `default`.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: small, deterministic, good enough to pick the cases of a randomized test
/// from its seed ([`env_seed`]).
#[derive(Debug, Clone)]
pub struct TestRng(pub u64);

impl TestRng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}
