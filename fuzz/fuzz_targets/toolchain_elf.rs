//! The toolchain's ELF checks: `build-image --elf` programs and PVH images read back by
//! `inspect` go through `elf::validate`, `elf::headers` and `provenance::find_payload`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = kiln_toolchain::elf::validate(data) {
        assert!(info.loads > 0);
    }
    if let Ok((_, phdrs)) = kiln_toolchain::elf::headers(data) {
        // Every PT_LOAD that `headers` accepts lies inside the file.
        for p in phdrs.iter().filter(|p| p.p_type == 1) {
            assert!(p.p_offset as u128 + p.p_filesz as u128 <= data.len() as u128);
        }
    }
    if let Ok(span) = kiln_toolchain::provenance::find_payload(data) {
        let _ = &data[span.provenance()];
    }
});
