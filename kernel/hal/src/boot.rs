//! PVH entry: 32-bit protected mode to 64-bit long mode, then [`crate::start`].
//!
//! The loader (QEMU `-kernel`, Firecracker, Cloud Hypervisor) finds the entry point through
//! the Xen ELF note below and jumps to it in 32-bit protected mode with paging off and the
//! physical address of `hvm_start_info` in `ebx`. The code here builds boot page tables that
//! map the first 4 GiB twice (identity, and at [`crate::DIRECT_MAP`]) with 2 MiB pages,
//! enables PAE, long mode, NX, write protection and SSE, and calls `start` on the boot stack.
//!
//! A second, 64-bit entry, `kiln_start64`, serves Kiln's EFI stub (`kernel/efistub`), which
//! enters in long mode with the firmware's identity map and the physical address of an
//! `hvm_start_info` it built in `rdi`. It switches to the same boot page tables, GDT and
//! stack and calls `start` exactly as the 32-bit path does. Loaders find it through the
//! [`ENTRY64_MAGIC`] record placed in the 16 bytes just before the PVH entry (`e_entry`):
//! 8 bytes of magic, then the entry's physical address as a little-endian u64.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

pub use kiln_abi::record::BootPhase;

/// Size of the boot (and first kernel) stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

/// Magic of the record in the 16 bytes before the PVH entry that gives the 64-bit entry.
pub const ENTRY64_MAGIC: &[u8; 8] = b"KILN64E\0";

global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_start32

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:   .skip 4096
boot_pdpt:   .skip 4096
boot_pd:     .skip 4096 * 4
    .balign 16
    .global kiln_boot_stack_bottom
kiln_boot_stack_bottom:
    .skip {stack_size}
    .global kiln_boot_stack_top
kiln_boot_stack_top:

    .section .data.boot, "aw"
    .balign 8
    .global kiln_entry_tsc
kiln_entry_tsc:
    .quad 0

    .global kiln_ap_cr3
kiln_ap_cr3:
    .quad 0
    .global kiln_ap_stack
kiln_ap_stack:
    .quad 0
    .global kiln_ap_cpu
kiln_ap_cpu:
    .quad 0

    /* The AP trampoline: copied to {tramp} and run there in real mode (STARTUP vector
       {tramp} >> 12, CS = {tramp} >> 4, IP = 0). It loads its own GDT and jumps to
       kiln_ap_start32 in protected mode. Addresses inside it are {tramp} + offset. */
    .section .rodata.boot, "a"
    .balign 16
    .global kiln_ap_trampoline
kiln_ap_trampoline:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl ({tramp} + ap_gdt_ptr - kiln_ap_trampoline)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $kiln_ap_start32
    .code64
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_gdt_ptr:
    .word ap_gdt_ptr - ap_gdt - 1
    .long {tramp} + ap_gdt - kiln_ap_trampoline
    .global kiln_ap_trampoline_end
kiln_ap_trampoline_end:

    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
boot_gdt_ptr:
    /* a 64-bit base: 32-bit lgdt reads its low half, 64-bit lgdt all of it */
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    /* Long mode on the boot page tables, for the boot CPU and every AP alike. */
    /* EFER: SCE | LME | NXE (valid in 32- and 64-bit code). */
    .macro SET_EFER
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 0) | (1 << 8) | (1 << 11)), %eax
    wrmsr
    .endm

    .macro ENABLE_LONG_MODE
    /* CR4: PAE | OSFXSR | OSXMMEXCPT */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3

    SET_EFER

    /* CR0: PE | MP | NE | WP | PG, clear EM */
    movl %cr0, %eax
    andl $~(1 << 2), %eax
    orl $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1), %eax
    movl %eax, %cr0
    .endm

    /* Builds the boot page tables; assembles the same in 32- and 64-bit mode. */
    .macro BUILD_BOOT_TABLES
    /* zero the boot page tables (6 pages) */
    movl $boot_pml4, %edi
    xorl %eax, %eax
    movl $(6 * 1024), %ecx
    rep stosl

    /* PML4[0] and PML4[256] -> boot_pdpt; PDPT[0..4] -> boot_pd pages */
    movl $boot_pdpt, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl %eax, boot_pml4 + 256 * 8
    movl $boot_pdpt, %edi
    movl $boot_pd, %eax
    orl $3, %eax
    movl $4, %ecx
2:  movl %eax, (%edi)
    addl $8, %edi
    addl $4096, %eax
    loop 2b

    /* 2048 PD entries of 2 MiB: present | writable | huge */
    movl $boot_pd, %edi
    movl $0x83, %eax
    xorl %edx, %edx
    movl $2048, %ecx
3:  movl %eax, (%edi)
    movl %edx, 4(%edi)
    addl $0x200000, %eax
    adcl $0, %edx
    addl $8, %edi
    loop 3b
    .endm

    .section .text.boot, "ax"
    /* The 64-bit entry record: loaders read it at e_entry - 16. */
    .balign 16
    .ascii "KILN64E\0"
    .quad kiln_start64
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    /* The boot's first timestamp (see `phase_stamps`). */
    rdtsc
    movl %eax, kiln_entry_tsc
    movl %edx, kiln_entry_tsc + 4
    movl %ebx, %esi
    movl $kiln_boot_stack_top, %esp

    BUILD_BOOT_TABLES

    ENABLE_LONG_MODE

    lgdt boot_gdt_ptr
    ljmp $0x08, $4f

    .code64
4:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movl %esi, %edi
    movq $kiln_boot_stack_top, %rsp
    xorl %ebp, %ebp
    call {start}
5:  cli
    hlt
    jmp 5b

    /* An AP, from the trampoline: 32-bit protected mode on the trampoline's GDT (code
       0x08, data 0x10, 64-bit code 0x18), paging off. The same steps as the boot CPU's
       above, on the boot page tables (they identity-map the trampoline and this code),
       then the kernel's own tables, the stack the boot CPU chose, and Rust. */
    .code32
    .global kiln_ap_start32
kiln_ap_start32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    ENABLE_LONG_MODE
    ljmp $0x18, $6f
    .code64
6:  /* No segment loads from here on: the kernel's tables do not map the trampoline's GDT;
       Rust loads this CPU's own. */
    movq kiln_ap_cr3, %rax
    movq %rax, %cr3
    movq kiln_ap_stack, %rsp
    movq kiln_ap_cpu, %rdi
    xorl %ebp, %ebp
    call {ap_entry}
7:  cli
    hlt
    jmp 7b

    /* 64-bit entry (EFI stub): long mode, firmware identity map, rdi = start info. */
    .code64
    .global kiln_start64
kiln_start64:
    cli
    cld
    rdtsc
    movl %eax, kiln_entry_tsc
    movl %edx, kiln_entry_tsc + 4
    movl %edi, %esi
    movl $kiln_boot_stack_top, %esp
    BUILD_BOOT_TABLES

    /* Our tables first (they identity-map this code), then CR4 exactly as the 32-bit path
       leaves it: PAE | OSFXSR | OSXMMEXCPT. Clearing PGE flushes the firmware's global
       TLB entries. */
    movl $boot_pml4, %eax
    movq %rax, %cr3
    movl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movq %rax, %cr4

    /* LME is on already: setting it again changes nothing. */
    SET_EFER

    /* CR0: MP | NE | WP, clear EM */
    movq %cr0, %rax
    andl $~(1 << 2), %eax
    orl $((1 << 16) | (1 << 5) | (1 << 1)), %eax
    movq %rax, %cr0

    lgdt boot_gdt_ptr
    pushq $0x08
    movl $4b, %eax
    pushq %rax
    lretq
    "#,
    stack_size = const BOOT_STACK_SIZE,
    start = sym crate::start,
    ap_entry = sym crate::smp::ap_entry,
    tramp = const crate::smp::TRAMPOLINE,
    options(att_syntax),
);

// SAFETY: `kiln_entry_tsc` is defined by the entry code above as an 8-byte, 8-aligned
// word in `.data`; Rust only reads it (`phase_stamps`).
unsafe extern "C" {
    /// The TSC at the kernel's first instruction, written by the entry code above.
    static kiln_entry_tsc: u64;
}

/// The TSC at each [`BootPhase`] after the entry (0: not reached yet).
static STAMPS: [AtomicU64; BootPhase::ALL.len()] =
    [const { AtomicU64::new(0) }; BootPhase::ALL.len()];

/// Records that the boot reached `phase` now (the entry records itself).
pub fn mark(phase: BootPhase) {
    STAMPS[phase as usize].store(crate::cpu::rdtsc(), Ordering::Relaxed);
}

/// The TSC at each [`BootPhase`], indexed by phase (0: not reached).
pub fn phase_stamps() -> [u64; BootPhase::ALL.len()] {
    let mut out = [0; BootPhase::ALL.len()];
    for (o, s) in out.iter_mut().zip(&STAMPS) {
        *o = s.load(Ordering::Relaxed);
    }
    // SAFETY: `kiln_entry_tsc` is an initialised u64 in the kernel's data, written once by
    // the entry code before any Rust code runs; volatile so its initial 0 is not assumed.
    out[BootPhase::Entry as usize] = unsafe { core::ptr::read_volatile(&raw const kiln_entry_tsc) };
    out
}
