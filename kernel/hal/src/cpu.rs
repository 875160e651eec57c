//! Single instructions: port I/O, model-specific and control registers, CPUID, halting.

use core::arch::asm;

/// Writes a byte to an I/O port.
///
/// # Safety
/// The write must not break memory safety: some ports program devices that read or write
/// memory on their own (DMA), move device windows (PCI configuration), or reset or power
/// off the machine under the kernel. The caller must know which device answers at `port`
/// and that this write cannot make it touch memory the kernel did not give it.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the device at `port`; the instruction itself touches
    // no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 16-bit value to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a 16-bit value from an I/O port.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As for [`outb`]: reading some device registers has side effects (acknowledging,
/// advancing a data stream); the caller must know the device at `port`.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Reads a 32-bit value from an I/O port.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Writes `data` to a port byte by byte (`rep outsb`).
///
/// # Safety
/// As for [`outb`], for every byte of `data`.
pub unsafe fn outsb(port: u16, data: &[u8]) {
    // SAFETY: reads exactly `data.len()` bytes from `data`, which is a valid slice; the
    // caller vouches for the device at `port`.
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rsi") data.as_ptr() => _, inout("rcx") data.len() => _,
             options(nostack, preserves_flags, readonly))
    }
}

/// A port that only takes bytes to print: a QEMU `isa-debugcon` device (Kiln's QEMU
/// targets put the program's stdout, stderr and exit status on 0x402-0x405) or the Bochs
/// debug port 0xe9. Writing to one cannot touch memory, so this handle makes byte output
/// safe; any other port number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugPort(u16);

impl DebugPort {
    /// The ports [`DebugPort::new`] accepts. No VMM Kiln targets puts a device that reads
    /// memory or resets the machine there (the 8237 DMA controller, fw_cfg, PCI
    /// configuration, i8042 and ACPI are elsewhere).
    pub const ALLOWED: [core::ops::RangeInclusive<u16>; 2] = [0xe9..=0xe9, 0x400..=0x40f];

    /// The debug port `port`, or `None` when it is not one of [`DebugPort::ALLOWED`].
    pub fn new(port: u16) -> Option<DebugPort> {
        Self::ALLOWED
            .iter()
            .any(|r| r.contains(&port))
            .then_some(DebugPort(port))
    }

    /// The port number.
    pub fn port(self) -> u16 {
        self.0
    }

    /// Writes `data` to the port.
    pub fn write(self, data: &[u8]) {
        // SAFETY: the port is one of `ALLOWED`, where only byte sinks live.
        unsafe { outsb(self.0, data) }
    }

    /// Writes one byte to the port.
    pub fn write_byte(self, value: u8) {
        // SAFETY: as for `write`.
        unsafe { outb(self.0, value) }
    }
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no memory effects; a missing one raises #GP, which the
    // exception handler reports as a kernel fault.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (hi as u64) << 32 | lo as u64
}

/// Writes a model-specific register.
///
/// # Safety
/// The caller must make sure the new value keeps the kernel's invariants (segment bases,
/// system-call entry points, ...).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// MSR numbers.
pub mod msr {
    /// Extended feature enable register.
    pub const EFER: u32 = 0xC000_0080;
    /// SYSCALL segment selectors.
    pub const STAR: u32 = 0xC000_0081;
    /// SYSCALL 64-bit entry point.
    pub const LSTAR: u32 = 0xC000_0082;
    /// RFLAGS bits cleared on SYSCALL.
    pub const FMASK: u32 = 0xC000_0084;
    /// FS segment base.
    pub const FS_BASE: u32 = 0xC000_0100;
    /// GS segment base.
    pub const GS_BASE: u32 = 0xC000_0101;
    /// The GS base swapped in by SWAPGS.
    pub const KERNEL_GS_BASE: u32 = 0xC000_0102;
    /// Local APIC base.
    pub const APIC_BASE: u32 = 0x1B;
    /// TSC deadline for the local APIC timer.
    pub const TSC_DEADLINE: u32 = 0x6E0;
}

/// Result of CPUID.
#[derive(Debug, Clone, Copy)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Executes CPUID for `leaf`/`subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// One random 64-bit value from RDRAND, if the CPU has it and it delivers.
pub fn rdrand() -> Option<u64> {
    if cpuid(1, 0).ecx & (1 << 30) == 0 {
        return None;
    }
    for _ in 0..10 {
        let v: u64;
        let ok: u8;
        // SAFETY: RDRAND is present (checked above) and only writes registers.
        unsafe {
            asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack))
        }
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR3.
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Loads CR3 (switching page tables and flushing the TLB).
///
/// # Safety
/// `pml4` must be the physical address of page tables that map the running kernel.
pub unsafe fn set_cr3(pml4: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) }
}

/// Flushes the TLB entry of one page.
pub fn invlpg(addr: u64) {
    // SAFETY: INVLPG only drops a cached translation.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) }
}

/// Enables interrupts, halts until one arrives, and disables them again.
///
/// Panics inside an interrupt or exception handler: the interrupt that wakes the CPU could
/// arrive on the handler's own IST stack and overwrite its frame.
pub fn wait_for_interrupt() {
    assert!(
        !crate::trap::in_handler(),
        "waiting for an interrupt inside an interrupt handler"
    );
    // SAFETY: the IDT is loaded before the kernel binary runs (`hal::start`); handlers run
    // on IST stacks that no running handler uses (checked above).
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Stops the CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: halting with interrupts off has no memory effects.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Runs `f` on `stack` instead of the current kernel stack (64 KiB): for the rare call whose
/// frame is larger than that, such as building smoltcp's `Interface`, which holds its
/// 64 KiB fragmentation buffer inline and is returned by value. Interrupts are off in the
/// kernel, so nothing else runs on `stack` meanwhile. `stack` is at least as large as a
/// kernel stack (it panics otherwise); that `f` fits it is assumed, not checked: unlike the
/// kernel's own stacks it has no guard page below it.
pub fn on_stack(stack: &mut [u8], f: &mut dyn FnMut()) {
    assert!(
        stack.len() >= crate::boot::BOOT_STACK_SIZE,
        "a lent stack smaller than a kernel stack"
    );
    let lo = stack.as_mut_ptr() as usize;
    let top = (lo + stack.len()) & !0xf;
    let mut f = f;
    let ctx: *mut &mut dyn FnMut() = &mut f;
    // `smp::current` tells CPUs apart by their stacks: this one counts as this CPU's.
    crate::smp::lending(lo as u64, top as u64, || {
        // SAFETY: `top` is the aligned end of `stack`, borrowed mutably until this returns,
        // at least a kernel stack's size; `ctx` points at the local `f` above.
        unsafe { switch(top, ctx) }
    });
}

/// Calls `*ctx` with the stack pointer at `top`.
///
/// # Safety
///
/// `top` must be the 16-byte aligned end of writable memory, large enough for the call
/// and used by nothing else until it returns; `ctx` must point at a live closure.
unsafe fn switch(top: usize, ctx: *mut &mut dyn FnMut()) {
    extern "sysv64" fn trampoline(f: *mut &mut dyn FnMut()) {
        // SAFETY: `f` points at `on_stack`'s local `f`, alive for the whole call below.
        unsafe { (*f)() }
    }
    // SAFETY: by the caller's promise `top` ends memory that is only this call's stack, so
    // the trampoline's frames land in it and nowhere else.
    // The old stack pointer is kept in r12, which the sysv64 callee preserves, and
    // restored before the block ends; every register the call may change is declared
    // clobbered (`clobber_abi`).
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {tramp}",
            "mov rsp, r12",
            top = in(reg) top,
            tramp = in(reg) trampoline as extern "sysv64" fn(*mut &mut dyn FnMut()),
            in("rdi") ctx,
            out("r12") _,
            clobber_abi("sysv64"),
        );
    }
}
