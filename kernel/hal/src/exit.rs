//! Leaving the virtual machine with a status.

use crate::cpu::{outb, outl};

/// Ends the VM with `status`: QEMU's isa-debug-exit when present (QEMU then exits with
/// `status * 2 + 1`), otherwise the i8042 reset (Firecracker), otherwise a triple fault
/// (with `-no-reboot` QEMU stops).
pub fn exit(status: u8) -> ! {
    // SAFETY: isa-debug-exit ends the VM, and 0xFE on the i8042 command port resets it;
    // either way nothing runs after these writes, which is what this function is for.
    unsafe {
        outl(kiln_abi::exit::DEBUG_EXIT_PORT, status as u32);
        outb(0x64, 0xFE);
    }
    triple_fault()
}

fn triple_fault() -> ! {
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let empty = Idtr { limit: 0, base: 0 };
    // SAFETY: loading an empty IDT and raising an interrupt resets the CPU on purpose.
    unsafe { core::arch::asm!("lidt [{}]", "int3", in(reg) &empty, options(nostack)) }
    crate::cpu::halt_forever()
}
