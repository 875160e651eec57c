//! Generates the vDSO image that `kiln_os::vdso` embeds: `kiln_abi::vdso::image`, where
//! host tests check it.
fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("vdso.so"), kiln_abi::vdso::image()).expect("OUT_DIR is writable");
    // A change to the generator rebuilds this script (a build dependency), which runs it.
    println!("cargo:rerun-if-changed=build.rs");
}
