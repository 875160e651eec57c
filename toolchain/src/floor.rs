//! The "floor" image: a do-nothing PVH kernel that exits at once. It measures what QEMU itself
//! costs (for `bench boot`), probes whether KVM works, and stands in for a kernel in tests.

use crate::pvh::{PvhImage, Segment, READ_EXEC};

/// Where the floor's code is loaded (1 MiB, the lowest address PVH loaders accept).
pub const LOAD_ADDR: u64 = 0x10_0000;

/// 32-bit code: `mov al,0; out 0xf4,al; cli; hlt; jmp $-2` (exit status 0 through
/// isa-debug-exit, then halt forever if the device is absent).
pub const CODE: [u8; 8] = [
    0xb0, 0x00, // mov al, 0
    0xe6, 0xf4, // out 0xf4, al
    0xfa, // cli
    0xf4, // hlt
    0xeb, 0xfc, // jmp $-2 (back to cli)
];

/// Describes the floor image.
pub fn image() -> PvhImage {
    image_with_code(CODE.to_vec())
}

/// 32-bit code that writes each `(port, bytes)` pair byte by byte (`out dx, al`), then exits
/// with `status` through isa-debug-exit (or hangs when `None`). Used to test the runner
/// without a kernel.
pub fn scripted_code(writes: &[(u16, &[u8])], status: Option<u8>) -> Vec<u8> {
    let mut c = Vec::new();
    for (port, bytes) in writes {
        c.extend_from_slice(&[0x66, 0xba]); // mov dx, imm16
        c.extend_from_slice(&port.to_le_bytes());
        for &b in *bytes {
            c.extend_from_slice(&[0xb0, b, 0xee]); // mov al, b; out dx, al
        }
    }
    if let Some(s) = status {
        c.extend_from_slice(&[0xb0, s, 0xe6, 0xf4]); // mov al, s; out 0xf4, al
    }
    c.extend_from_slice(&[0xfa, 0xf4, 0xeb, 0xfc]); // cli; hlt; jmp $-2
    c
}

/// A floor-like image running `code` at [`LOAD_ADDR`].
pub fn image_with_code(code: Vec<u8>) -> PvhImage {
    let len = code.len() as u64;
    PvhImage {
        entry: LOAD_ADDR,
        pvh_desc: LOAD_ADDR.to_le_bytes().to_vec(),
        segments: vec![Segment {
            paddr: LOAD_ADDR,
            vaddr: LOAD_ADDR,
            flags: READ_EXEC,
            align: 0x1000,
            data: code,
            memsz: len,
        }],
    }
}

/// The floor image's ELF bytes.
pub fn bytes() -> Vec<u8> {
    image().write()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_a_valid_pvh_image() {
        let b = bytes();
        let info = crate::pvh::verify(&b).unwrap();
        assert_eq!(info.pvh_entry, LOAD_ADDR);
        assert!(b.len() < 8192, "floor image is {} bytes", b.len());
        assert_eq!(b, bytes());
    }

    #[test]
    fn scripted_code_matches_floor() {
        assert_eq!(scripted_code(&[], Some(0)), CODE);
        let c = scripted_code(&[(0x402, b"A")], None);
        assert_eq!(
            c,
            [0x66, 0xba, 0x02, 0x04, 0xb0, b'A', 0xee, 0xfa, 0xf4, 0xeb, 0xfc]
        );
    }
}
