//! Links the kernel as a freestanding, static, non-PIE ELF with Kiln's linker script.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=link.ld");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--gc-sections",
        // Identical code folding (rust-lld): functions whose machine code came out the same,
        // such as generic code instantiated for types of one layout, are kept once
        // (about 1 KB of text).
        "-Wl,--icf=all",
        "-Wl,--build-id=none",
        "-Wl,-z,noexecstack",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/link.ld");
}
