//! Interrupts and exceptions: the IDT, entry stubs, and dispatch to the kernel's handlers.
//!
//! Every vector runs on an IST stack (the precompiled core library uses the red zone, so an
//! interrupt must never push onto the interrupted stack). Stubs save all general registers
//! and the SSE state, so a fault taken in user mode can be resolved and resumed.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::gdt;

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector of spurious local APIC interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Registers saved on entry to an interrupt or exception.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector.
    pub vector: u64,
    /// Error code (0 for vectors without one).
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// The order `kiln_isr_common` pushes, then the vector and error code of the stub, then the
// CPU's `iretq` frame.
crate::context::frame_layout!(
    TrapFrame,
    [
        r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax, vector, error,
        rip, cs, rflags, rsp, ss
    ]
);

impl TrapFrame {
    /// Whether the CPU was in user mode (ring 3).
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// What the kernel decided about a fault taken in user mode.
pub enum UserFault {
    /// The fault was resolved (a page was mapped): resume the program.
    Resume,
}

/// Handler of exceptions raised by the program: returns only to resume it.
pub type UserFaultHandler = fn(&mut TrapFrame, &mut crate::context::FxArea, cr2: u64) -> UserFault;
/// Handler of the timer interrupt: the interrupted registers and SSE state, which it may
/// replace to resume another thread (only when the interrupt came from user mode).
pub type TimerHandler = fn(&mut TrapFrame, &mut crate::context::FxArea);

/// Handler of a device interrupt vector. Runs with interrupts off, on an IST stack, either
/// while the program runs or while the kernel idles; it must not block. It returns whether
/// the kernel should act now: when the program was interrupted, the timer's handler then
/// runs at once (an idle kernel's loop looks by itself).
pub type IrqHandler = fn(vector: u8) -> bool;

/// First vector available for devices.
pub const FIRST_DEVICE_VECTOR: u8 = 0x30;

static IRQ_HANDLERS: spin::Mutex<[Option<IrqHandler>; 256]> = spin::Mutex::new([None; 256]);

/// Routes interrupt `vector` (at least [`FIRST_DEVICE_VECTOR`]) to `handler`.
pub fn set_irq_handler(vector: u8, handler: IrqHandler) {
    assert!(
        vector >= FIRST_DEVICE_VECTOR && vector != SPURIOUS_VECTOR,
        "vector {vector:#x} is reserved"
    );
    IRQ_HANDLERS.lock()[vector as usize] = Some(handler);
}

static USER_FAULT: crate::once::SetOnce<UserFaultHandler> = crate::once::SetOnce::new();
static TIMER: crate::once::SetOnce<TimerHandler> = crate::once::SetOnce::new();

/// Sets the handler for exceptions raised in user mode.
pub fn set_user_fault_handler(h: UserFaultHandler) {
    USER_FAULT.set(h);
}

/// Sets the handler for timer interrupts.
pub fn set_timer_handler(h: TimerHandler) {
    TIMER.set(h);
}

/// Name of an exception vector.
pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "NMI",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point error",
        _ => "exception",
    }
}

/// Per CPU: how many interrupt or exception handlers are running (nested ones count again).
static DEPTH: [AtomicU32; crate::smp::MAX_CPUS] =
    [const { AtomicU32::new(0) }; crate::smp::MAX_CPUS];
/// Per CPU: how many of them interrupted user mode (at most one: user mode does not nest).
static FROM_USER: [AtomicU32; crate::smp::MAX_CPUS] =
    [const { AtomicU32::new(0) }; crate::smp::MAX_CPUS];

/// Whether a handler of a trap taken in user mode is running on this CPU: then GS_BASE
/// still holds the program's value (no SWAPGS on that path), while in a system call it is
/// parked in KERNEL_GS_BASE.
pub(crate) fn in_user_trap() -> bool {
    FROM_USER[crate::smp::current()].load(Ordering::Relaxed) != 0
}

/// Whether this CPU is inside an interrupt or exception handler. Such a handler runs on an
/// IST stack that the next interrupt of its kind would reuse from the top, so it must not
/// enable interrupts ([`crate::cpu::wait_for_interrupt`] checks this).
pub fn in_handler() -> bool {
    DEPTH[crate::smp::current()].load(Ordering::Relaxed) != 0
}

#[unsafe(no_mangle)]
extern "C" fn kiln_trap(frame: &mut TrapFrame, fx: &mut crate::context::FxArea) {
    let cpu = crate::smp::current();
    DEPTH[cpu].fetch_add(1, Ordering::Relaxed);
    if frame.from_user() {
        // The handlers may replace the program's registers (to resume another thread or
        // run a signal handler), but only within what a program may do.
        FROM_USER[cpu].fetch_add(1, Ordering::Relaxed);
        dispatch(frame, fx);
        FROM_USER[cpu].fetch_sub(1, Ordering::Relaxed);
        crate::context::force_user(&mut frame.cs, &mut frame.ss, &mut frame.rflags);
    } else {
        // The kernel itself was interrupted: handlers see its state but work on a copy, so
        // it resumes exactly where it was.
        let (mut f, mut x) = (*frame, *fx);
        dispatch(&mut f, &mut x);
    }
    DEPTH[cpu].fetch_sub(1, Ordering::Relaxed);
}

fn dispatch(frame: &mut TrapFrame, fx: &mut crate::context::FxArea) {
    let vector = frame.vector;
    if vector == TIMER_VECTOR as u64 {
        crate::apic::eoi();
        crate::time::timer_fired();
        if let Some(h) = TIMER.get() {
            h(frame, fx);
        }
        return;
    }
    if vector == SPURIOUS_VECTOR as u64 {
        return;
    }
    if vector == crate::smp::SHOOTDOWN_VECTOR as u64 {
        crate::smp::flush_if_asked();
        crate::apic::eoi();
        return;
    }
    if vector == crate::smp::RESCHEDULE_VECTOR as u64 {
        // An idle CPU's loop looks by itself; a CPU running the program looks now, as at
        // the timer.
        crate::apic::eoi();
        if frame.from_user() {
            if let Some(t) = TIMER.get() {
                t(frame, fx);
            }
        }
        return;
    }
    if vector >= 32 {
        let handler = IRQ_HANDLERS.try_lock().and_then(|h| h[vector as usize]);
        crate::apic::eoi();
        if let Some(h) = handler {
            if h(vector as u8) && frame.from_user() {
                // The kernel's look at the device, as the timer's (no second interrupt).
                if let Some(t) = TIMER.get() {
                    t(frame, fx);
                }
            }
        }
        return;
    }
    let cr2 = if vector == 14 { crate::cpu::cr2() } else { 0 };
    if frame.from_user() {
        if let Some(h) = USER_FAULT.get() {
            match h(frame, fx, cr2) {
                UserFault::Resume => return,
            }
        }
    }
    panic!(
        "{} (vector {}, error {:#x}) in kernel at rip {:#x}, address {:#x}, rsp {:#x}",
        exception_name(vector),
        vector,
        frame.error,
        frame.rip,
        cr2,
        frame.rsp
    );
}

global_asm!(
    r#"
    .altmacro
    .macro ISR_NOERR n
    .balign 16
    kiln_isr_\n:
        push 0
        push \n
        jmp kiln_isr_common
    .endm
    .macro ISR_ERR n
    .balign 16
    kiln_isr_\n:
        push \n
        jmp kiln_isr_common
    .endm

    .section .text
    .set i, 0
    .rept 256
        .if (i == 8) || (i == 10) || (i == 11) || (i == 12) || (i == 13) || (i == 14) || (i == 17) || (i == 21) || (i == 29) || (i == 30)
            ISR_ERR %i
        .else
            ISR_NOERR %i
        .endif
        .set i, i + 1
    .endr

    kiln_isr_common:
        push rax
        push rbx
        push rcx
        push rdx
        push rsi
        push rdi
        push rbp
        push r8
        push r9
        push r10
        push r11
        push r12
        push r13
        push r14
        push r15
        mov rdi, rsp
        sub rsp, 512
        fxsave64 [rsp]
        mov rsi, rsp
        cld
        call kiln_trap
        fxrstor64 [rsp]
        add rsp, 512
        pop r15
        pop r14
        pop r13
        pop r12
        pop r11
        pop r10
        pop r9
        pop r8
        pop rbp
        pop rdi
        pop rsi
        pop rdx
        pop rcx
        pop rbx
        pop rax
        add rsp, 16
        iretq

    .macro ISR_ADDR n
        .quad kiln_isr_\n
    .endm
    .section .rodata
    .balign 8
    .global kiln_isr_table
    kiln_isr_table:
    .set i, 0
    .rept 256
        ISR_ADDR %i
        .set i, i + 1
    .endr
    .noaltmacro
    "#
);

unsafe extern "C" {
    static kiln_isr_table: [u64; 256];
}

#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static mut IDT: Idt = Idt([[0; 2]; 256]);

/// Loads the IDT [`init`] built on this CPU (the boot CPU's from `init`, then each AP's).
pub(crate) fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: (&raw const IDT) as u64,
    };
    // SAFETY: `init` built the IDT before this runs (on the boot CPU at its end, on APs
    // after it), and it never changes afterwards.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &ptr, options(nostack)) };
}

/// Builds and loads the IDT: every vector gets an interrupt gate on an IST stack.
pub(crate) fn init() {
    // SAFETY: runs once on the boot CPU with interrupts off; the stub table is immutable and
    // each gate points at a stub with the right stack discipline.
    unsafe {
        let idt = &raw mut IDT;
        for (v, &handler) in kiln_isr_table.iter().enumerate() {
            let ist = match v {
                8 => gdt::IST_DOUBLE_FAULT,
                2 => gdt::IST_NMI,
                18 => gdt::IST_MACHINE_CHECK,
                14 => gdt::IST_PAGE_FAULT,
                _ => gdt::IST_OTHER,
            } as u64;
            // Interrupt gate (type 0xE), present, DPL 0 (int3 from user faults as #GP).
            let low = (handler & 0xffff)
                | ((gdt::KERNEL_CS as u64) << 16)
                | (ist << 32)
                | (0x8E << 40)
                | (((handler >> 16) & 0xffff) << 48);
            (*idt).0[v] = [low, handler >> 32];
        }
    }
    load();
}
