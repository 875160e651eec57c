//! The kernel's ELF loader (`os::elf`): the program inside the payload, and any file a
//! program `execve`s from the root filesystem.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = kiln_os::elf::parse(data) {
        for s in &p.segments {
            // Every segment's file bytes are inside the file.
            let _ = &data[s.file_range()];
        }
        let _ = p.exec_stack();
        // The kernel image sits low in the address space; any range will do for the check.
        let _ = p.load_bias(&(0x10_0000..0x80_0000));
    }
});
