//! Embeds the XDP object built by `cargo xtask build` (nightly, bpfel-unknown-none).
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DHCPV6_EBPF_OBJ");
    let obj = match env::var_os("DHCPV6_EBPF_OBJ") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
            manifest.join("../target/ebpf/bpfel-unknown-none/release/dhcpv6-ebpf")
        }
    };
    if !obj.exists() {
        panic!(
            "the XDP object {} is missing: build with `cargo xtask build` (it bootstraps the \
             nightly toolchain pieces and bpf-linker, then builds the program), or set \
             DHCPV6_EBPF_OBJ to a built object",
            obj.display()
        );
    }
    println!("cargo:rerun-if-changed={}", obj.display());
    println!("cargo:rustc-env=DHCPV6_EBPF_OBJ={}", obj.display());
}
