//! The global descriptor table and task-state segment: kernel and user segments, the
//! interrupt stacks (IST) every vector runs on, and the SYSCALL/SYSRET selector layout.

use core::mem::size_of;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data selector (RPL 3). SYSRET loads SS from STAR[63:48] + 8.
pub const USER_DS: u16 = 0x18 | 3;
/// User code selector (RPL 3). SYSRET loads CS from STAR[63:48] + 16.
pub const USER_CS: u16 = 0x20 | 3;
const TSS_SEL: u16 = 0x28;

/// IST slot of the double-fault handler.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of the NMI handler.
pub const IST_NMI: u8 = 2;
/// IST slot of the machine-check handler.
pub const IST_MACHINE_CHECK: u8 = 3;
/// IST slot of the page-fault handler.
pub const IST_PAGE_FAULT: u8 = 4;
/// IST slot of every other vector.
pub const IST_OTHER: u8 = 5;

const IST_SIZE: usize = 32 * 1024;
/// Bytes of one CPU's interrupt stacks.
pub(crate) const IST_TOTAL: usize = 5 * IST_SIZE;

#[repr(C, align(16))]
struct Stack([u8; IST_SIZE]);

static mut IST_STACKS: [Stack; 5] = [const { Stack([0; IST_SIZE]) }; 5];

/// The interrupt stacks, as one address range (they lie next to each other).
pub(crate) fn ist_range() -> core::ops::Range<u64> {
    let start = (&raw const IST_STACKS) as u64;
    start..start + (5 * IST_SIZE) as u64
}

#[repr(C, packed(4))]
#[derive(Clone, Copy)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

static mut TSS: Tss = TSS_TEMPLATE;

static mut GDT: [u64; 7] = [
    0,
    0x00af_9a00_0000_ffff, // kernel code: 64-bit, DPL 0
    0x00cf_9200_0000_ffff, // kernel data
    0x00cf_f200_0000_ffff, // user data: DPL 3
    0x00af_fa00_0000_ffff, // user code: 64-bit, DPL 3
    0,                     // TSS low
    0,                     // TSS high
];

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Loads the final GDT and TSS. `kernel_stack_top` becomes RSP0. Crate-private: only the
/// boot path may choose the kernel's stacks.
pub(crate) fn init(kernel_stack_top: u64) {
    // SAFETY: runs once on the boot CPU before interrupts are enabled; nothing else touches
    // these statics concurrently.
    unsafe {
        let ist_base = (&raw mut IST_STACKS) as u64;
        load(&raw mut GDT, &raw mut TSS, kernel_stack_top, ist_base);
    }
}

/// An AP's own GDT and TSS (in the kernel heap, never freed): RSP0 `kernel_stack_top`, the
/// interrupt stacks the [`IST_TOTAL`] bytes from `ist_base`.
pub(crate) fn init_ap(kernel_stack_top: u64, ist_base: u64) {
    let gdt = alloc::boxed::Box::leak(alloc::boxed::Box::new(GDT_TEMPLATE));
    let tss = alloc::boxed::Box::leak(alloc::boxed::Box::new(TSS_TEMPLATE));
    // SAFETY: fresh tables that only this CPU uses, for good; the stacks are this AP's own
    // block, which nothing else uses.
    unsafe { load(gdt, tss, kernel_stack_top, ist_base) }
}

const GDT_TEMPLATE: [u64; 7] = [
    0,
    0x00af_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0x00cf_f200_0000_ffff,
    0x00af_fa00_0000_ffff,
    0,
    0,
];

const TSS_TEMPLATE: Tss = Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: size_of::<Tss>() as u16,
};

/// Fills in `tss` and the TSS descriptor of `gdt` and loads both on this CPU.
///
/// # Safety
/// `gdt` and `tss` must stay valid and used by this CPU alone for good; `kernel_stack_top`
/// and the [`IST_TOTAL`] bytes from `ist_base` must be stacks nothing else uses.
unsafe fn load(gdt: *mut [u64; 7], tss: *mut Tss, kernel_stack_top: u64, ist_base: u64) {
    // SAFETY: per the contract; the descriptors written are valid for long mode.
    unsafe {
        (*tss).rsp[0] = kernel_stack_top;
        for i in 0..5 {
            (*tss).ist[i] = ist_base + ((i + 1) * IST_SIZE) as u64;
        }
        let base = tss as u64;
        let limit = (size_of::<Tss>() - 1) as u64;
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40) // present, 64-bit available TSS
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        (*gdt)[5] = low;
        (*gdt)[6] = base >> 32;
        let ptr = Pointer {
            limit: (size_of::<[u64; 7]>() - 1) as u16,
            base: gdt as u64,
        };
        core::arch::asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = in(reg) KERNEL_CS as u64,
            tmp = out(reg) _,
            ds = in(reg) KERNEL_DS as u64,
            tss = in(reg) TSS_SEL as u64,
        );
    }
}
