//! The payload parser (`abi::payload`): the kernel reads it from the image at boot and the
//! toolchain reads it back in `inspect`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = kiln_abi::payload::parse(data) {
        for r in [h.program, h.rootfs, h.config, h.provenance] {
            let _ = &data[r];
        }
    }
});
