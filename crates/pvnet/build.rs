//! Records how this pvnet was built, for `pvnet report`: the target triple, the compiler's
//! version and the profile. Only what cargo or the compiler says; nothing is guessed.

use std::process::Command;

fn main() {
    // Nothing here depends on the sources: a new compiler rebuilds everything anyway.
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=PVNET_BUILD_TARGET={target}");
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=PVNET_BUILD_PROFILE={profile}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=PVNET_BUILD_RUSTC={version}");
}
