//! The kernel's own call stack, for panic reports: return addresses found by following the
//! frame pointers (the kernel is built with `force-frame-pointers`), checked to stay on the
//! kernel's stacks so a corrupt chain ends the walk instead of faulting.

use core::ops::Range;

// SAFETY: the linker script defines both symbols as the bounds of the boot stack; only
// their addresses are used, never their contents.
unsafe extern "C" {
    static kiln_boot_stack_bottom: u8;
    static kiln_boot_stack_top: u8;
}

/// The stacks kernel code runs on: the boot stack (also the system-call stack) and the
/// interrupt stacks.
fn stacks() -> [Range<u64>; 2] {
    // Taking the address of an extern static reads nothing, so it needs no `unsafe`.
    let boot = (&raw const kiln_boot_stack_bottom) as u64..(&raw const kiln_boot_stack_top) as u64;
    [boot, crate::gdt::ist_range()]
}

fn on_a_stack(addr: u64, len: u64) -> bool {
    stacks()
        .iter()
        .any(|s| s.start <= addr && addr.checked_add(len).is_some_and(|end| end <= s.end))
}

/// Fills `out` with the return addresses of the calling code's callers, innermost first,
/// and returns how many it found.
#[inline(never)]
pub fn kernel_return_addresses(out: &mut [u64]) -> usize {
    let mut rbp: u64;
    // SAFETY: copies the frame-pointer register; no memory is touched.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    let mut n = 0;
    while n < out.len() && rbp.is_multiple_of(8) && on_a_stack(rbp, 16) {
        // SAFETY: `rbp..rbp + 16` lies within one of the kernel's stacks (checked above),
        // which are mapped, aligned and readable for the kernel's whole life.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    n
}
