//! PVH entry: 32-bit protected mode to 64-bit long mode, then [`crate::start`].
//!
//! The loader (QEMU `-kernel`, Firecracker, Cloud Hypervisor) finds the entry point through
//! the Xen ELF note below and jumps to it in 32-bit protected mode with paging off and the
//! physical address of `hvm_start_info` in `ebx`. The code here builds boot page tables that
//! map the first 4 GiB twice (identity, and at [`crate::DIRECT_MAP`]) with 2 MiB pages,
//! enables PAE, long mode, NX, write protection and SSE, and calls `start` on the boot stack.

use core::arch::global_asm;

/// Size of the boot (and first kernel) stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

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

    .section .rodata.boot, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi
    movl $kiln_boot_stack_top, %esp

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

    /* CR4: PAE | OSFXSR | OSXMMEXCPT */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3

    /* EFER: SCE | LME | NXE */
    movl $0xC0000080, %ecx
    rdmsr
    orl $((1 << 0) | (1 << 8) | (1 << 11)), %eax
    wrmsr

    /* CR0: PE | MP | NE | WP | PG, clear EM */
    movl %cr0, %eax
    andl $~(1 << 2), %eax
    orl $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1), %eax
    movl %eax, %cr0

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
    "#,
    stack_size = const BOOT_STACK_SIZE,
    start = sym crate::start,
    options(att_syntax),
);
