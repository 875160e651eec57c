//! SYSCALL entry and the first switch to user mode.
//!
//! On SYSCALL the CPU leaves the user stack in place; the stub swaps GS to reach the per-CPU
//! block, switches to the kernel stack, saves every register and the SSE state (Linux
//! preserves all registers but rax, rcx and r11), and calls the registered handler with a
//! [`SyscallFrame`] it may edit. RFLAGS.IF is masked on entry: system calls run with
//! interrupts off.

use core::arch::{asm, global_asm};

use crate::cpu::{msr, wrmsr};
use crate::gdt;

/// Registers of the program at a system call; `rax` carries the number in and the result out.
///
/// The last five fields are laid out as an `iretq` frame, so the entry stub can return
/// either with `sysretq` (when `rcx == rip` and `r11 == rflags`, as after a system call,
/// and `rcx` is a lower-half address) or with `iretq` (when the handler switched to a
/// thread that was preempted elsewhere).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct SyscallFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r9: u64,
    pub r8: u64,
    pub r10: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rax: u64,
    pub rcx: u64,
    pub r11: u64,
    /// User RIP.
    pub rip: u64,
    /// User code selector.
    pub cs: u64,
    /// User RFLAGS.
    pub rflags: u64,
    /// User stack pointer.
    pub rsp: u64,
    /// User stack selector.
    pub ss: u64,
}

// The order `kiln_syscall_entry` pushes (the last five an `iretq` frame).
crate::context::frame_layout!(
    SyscallFrame,
    [
        r15, r14, r13, r12, rbp, rbx, r9, r8, r10, rdx, rsi, rdi, rax, rcx, r11, rip, cs, rflags,
        rsp, ss
    ]
);

/// Handler of system calls: the frame and the saved SSE state, both of which it may replace
/// (to resume another thread).
pub type SyscallHandler = fn(&mut SyscallFrame, &mut crate::context::FxArea);

static HANDLER: crate::once::SetOnce<SyscallHandler> = crate::once::SetOnce::new();

/// Per-CPU block reached through GS in the entry stub: [kernel stack top, user rsp scratch].
#[repr(C)]
struct PerCpu([u64; 2]);

/// The boot CPU's block (an AP's is in the kernel heap).
static mut PER_CPU: PerCpu = PerCpu([0; 2]);

/// Per CPU: set while a system call's handler runs.
static IN_SYSCALL: [core::sync::atomic::AtomicBool; crate::smp::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; crate::smp::MAX_CPUS];

#[unsafe(no_mangle)]
extern "C" fn kiln_syscall(frame: &mut SyscallFrame, fx: &mut crate::context::FxArea) {
    let cpu = crate::smp::current();
    IN_SYSCALL[cpu].store(true, core::sync::atomic::Ordering::Relaxed);
    match HANDLER.get() {
        Some(h) => h(frame, fx),
        None => frame.rax = (-38i64) as u64,
    }
    crate::context::force_user(&mut frame.cs, &mut frame.ss, &mut frame.rflags);
    IN_SYSCALL[cpu].store(false, core::sync::atomic::Ordering::Relaxed);
}

global_asm!(
    r#"
    .section .text
    .global kiln_syscall_entry
    kiln_syscall_entry:
        swapgs
        mov gs:[8], rsp
        mov rsp, gs:[0]
        push {user_ds}
        push qword ptr gs:[8]
        push r11
        push {user_cs}
        push rcx
        push r11
        push rcx
        push rax
        push rdi
        push rsi
        push rdx
        push r10
        push r8
        push r9
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        mov rdi, rsp
        sub rsp, 512
        // Only the SSE registers: the kernel's code uses them, never the x87 ones, which
        // stay live until the kernel needs them (`FxArea`, "SSE only").
        movdqa [rsp + 160], xmm0
        movdqa [rsp + 176], xmm1
        movdqa [rsp + 192], xmm2
        movdqa [rsp + 208], xmm3
        movdqa [rsp + 224], xmm4
        movdqa [rsp + 240], xmm5
        movdqa [rsp + 256], xmm6
        movdqa [rsp + 272], xmm7
        movdqa [rsp + 288], xmm8
        movdqa [rsp + 304], xmm9
        movdqa [rsp + 320], xmm10
        movdqa [rsp + 336], xmm11
        movdqa [rsp + 352], xmm12
        movdqa [rsp + 368], xmm13
        movdqa [rsp + 384], xmm14
        movdqa [rsp + 400], xmm15
        stmxcsr [rsp + 24]
        mov byte ptr [rsp + {sse_only_at}], {sse_only}
        mov rsi, rsp
        cld
        call kiln_syscall
    .global kiln_syscall_exit
    kiln_syscall_exit:
        cmp byte ptr [rsp + {sse_only_at}], {sse_only}
        jne 3f
        movdqa xmm0, [rsp + 160]
        movdqa xmm1, [rsp + 176]
        movdqa xmm2, [rsp + 192]
        movdqa xmm3, [rsp + 208]
        movdqa xmm4, [rsp + 224]
        movdqa xmm5, [rsp + 240]
        movdqa xmm6, [rsp + 256]
        movdqa xmm7, [rsp + 272]
        movdqa xmm8, [rsp + 288]
        movdqa xmm9, [rsp + 304]
        movdqa xmm10, [rsp + 320]
        movdqa xmm11, [rsp + 336]
        movdqa xmm12, [rsp + 352]
        movdqa xmm13, [rsp + 368]
        movdqa xmm14, [rsp + 384]
        movdqa xmm15, [rsp + 400]
        ldmxcsr [rsp + 24]
        jmp 4f
    3:
        fxrstor64 [rsp]
    4:
        add rsp, 512
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        pop r9
        pop r8
        pop r10
        pop rdx
        pop rsi
        pop rdi
        pop rax
        pop rcx
        pop r11
        cmp rcx, [rsp]
        jne 2f
        cmp r11, [rsp + 16]
        jne 2f
        // sysretq to a non-canonical rcx faults in ring 0 on Intel CPUs, with the user's
        // stack pointer loaded: only a lower-half rcx may take this path (the kernel never
        // resumes a program above user space either, so this is a second line).
        push rcx
        shr rcx, 47
        pop rcx
        jnz 2f
        mov rsp, [rsp + 24]
        swapgs
        sysretq
    2:
        swapgs
        iretq
    "#,
    user_ds = const gdt::USER_DS as u64,
    user_cs = const gdt::USER_CS as u64,
    sse_only_at = const crate::context::FxArea::SSE_ONLY_AT,
    sse_only = const crate::context::FxArea::SSE_ONLY,
);

unsafe extern "C" {
    fn kiln_syscall_entry();
    fn kiln_syscall_exit();
}

/// Programs the SYSCALL MSRs and the per-CPU block; `handler` receives every system call,
/// running on the boot stack ([`crate::boot_stack_top`]), which the kernel keeps for this.
/// Whatever the handler leaves in the frame, the stub returns to user mode: the selectors
/// are forced to the user ones and RFLAGS to bits a program may set.
pub fn init(handler: SyscallHandler) {
    HANDLER.set(handler);
    init_cpu(0, crate::boot_stack_top());
}

/// Programs this CPU's SYSCALL MSRs and per-CPU block (`cpu`'s, with its kernel stack).
pub(crate) fn init_cpu(cpu: usize, kernel_stack_top: u64) {
    // SAFETY: this CPU, interrupts off; `cpu`'s block is this CPU's alone. STAR selects the
    // GDT layout of `gdt` (SYSRET loads CS = base + 16 and SS = base + 8 with base 0x10);
    // FMASK clears IF, TF, DF, NT and AC (NT left set by a program would make the kernel's
    // own iretq fault). GS_BASE points at the per-CPU block until the first swapgs into
    // user mode.
    unsafe {
        let pc = if cpu == 0 {
            &raw mut PER_CPU
        } else {
            alloc::boxed::Box::leak(alloc::boxed::Box::new(PerCpu([0; 2]))) as *mut PerCpu
        };
        (*pc).0[0] = kernel_stack_top;
        wrmsr(
            msr::STAR,
            ((gdt::KERNEL_DS as u64 & !3) << 48) | ((gdt::KERNEL_CS as u64) << 32),
        );
        wrmsr(msr::LSTAR, kiln_syscall_entry as *const () as u64);
        wrmsr(msr::FMASK, 0x4_4700);
        wrmsr(msr::GS_BASE, pc as u64);
        wrmsr(msr::KERNEL_GS_BASE, 0);
    }
}

/// A thread's state laid out as the system-call stub keeps it on the kernel stack.
#[repr(C)]
struct Resume {
    fx: crate::context::FxArea,
    frame: SyscallFrame,
}

/// Bytes at the top of an AP's kernel stack that stay unused until [`resume_user`] puts
/// the first thread's state there (the AP starts its Rust code below them).
pub(crate) const RESUME_RESERVE: u64 = 1024;
const _: () = assert!(core::mem::size_of::<Resume>() as u64 <= RESUME_RESERVE);

/// Resumes a user thread on an AP from the kernel's idle loop (no system call or trap to
/// return through): its registers and SSE state go to the top of this CPU's kernel stack,
/// and the system-call stub's way out runs from there. The selectors and RFLAGS are forced
/// to user ones, as on every way out. Never returns; the stack below is abandoned.
///
/// Panics on the boot CPU (it enters user mode once, through [`enter_user`], and then only
/// returns through frames), when called twice on one CPU (the reserved bytes are then in
/// use) and inside a handler.
pub fn resume_user(ctx: &crate::context::UserContext) -> ! {
    let cpu = crate::smp::current();
    static RESUMED: [core::sync::atomic::AtomicBool; crate::smp::MAX_CPUS] =
        [const { core::sync::atomic::AtomicBool::new(false) }; crate::smp::MAX_CPUS];
    assert!(
        cpu != 0
            && !crate::trap::in_handler()
            && !IN_SYSCALL[cpu].load(core::sync::atomic::Ordering::Relaxed)
            && !RESUMED[cpu].swap(true, core::sync::atomic::Ordering::Relaxed),
        "resume_user on the boot CPU, twice, or from a handler"
    );
    let mut frame = SyscallFrame::default();
    frame.set_user_regs(&ctx.regs);
    crate::context::force_user(&mut frame.cs, &mut frame.ss, &mut frame.rflags);
    let at = crate::smp::kernel_stack_top(cpu) - core::mem::size_of::<Resume>() as u64;
    // SAFETY: the top RESUME_RESERVE bytes of this AP's kernel stack are unused (its Rust
    // code started below them) and 16-byte aligned; interrupts are off. The stub's exit
    // restores the state from there and SWAPGSes (GS_BASE holds the per-CPU block and
    // KERNEL_GS_BASE the program's base, as in a system call); the stack below is
    // abandoned.
    unsafe {
        (at as *mut Resume).write(Resume {
            fx: ctx.fx.whole(),
            frame,
        });
        asm!(
            "mov rsp, {at}",
            "jmp {exit}",
            at = in(reg) at,
            exit = sym kiln_syscall_exit,
            options(noreturn),
        )
    }
}

/// Sets the program's FS base (its thread pointer).
pub fn set_user_fs_base(base: u64) {
    // SAFETY: FS is only used by user code; the kernel never reads through it.
    unsafe { wrmsr(msr::FS_BASE, base) }
}

/// Sets the program's GS base from a system call, or before the program starts (after
/// SWAPGS the user value lives in KERNEL_GS_BASE; SWAPGS exchanges them again on the way
/// out).
///
/// Panics inside the handler of a trap taken in user mode: there KERNEL_GS_BASE holds the
/// per-CPU block the next system call switches stacks with.
pub fn set_user_gs_base_from_kernel(base: u64) {
    assert!(
        !crate::trap::in_user_trap(),
        "set_user_gs_base_from_kernel in a trap handler"
    );
    // SAFETY: outside a user-mode trap (checked above), KERNEL_GS_BASE holds the user GS
    // base; the kernel never reads through it.
    unsafe { wrmsr(msr::KERNEL_GS_BASE, base) }
}

/// Sets the program's GS base from the handler of an interrupt or exception taken in user
/// mode (no SWAPGS happened: GS_BASE still holds the user value).
///
/// Panics anywhere else: there GS_BASE holds the per-CPU block.
pub fn set_user_gs_base_from_trap(base: u64) {
    assert!(
        crate::trap::in_user_trap(),
        "set_user_gs_base_from_trap outside a user-mode trap"
    );
    // SAFETY: in a user-mode trap (checked above) GS_BASE is the program's; trap handlers
    // never use GS.
    unsafe { wrmsr(msr::GS_BASE, base) }
}

/// Enters user mode at `rip` with stack `rsp` and all other registers zero. Never returns:
/// the program comes back only through system calls and traps.
///
/// Panics unless called once, from the boot path (not from a system call or trap handler,
/// where GS is already switched and a stack would be abandoned mid-use), after [`init`].
pub fn enter_user(rip: u64, rsp: u64) -> ! {
    static ENTERED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    assert!(
        HANDLER.get().is_some()
            && !crate::trap::in_handler()
            && !IN_SYSCALL[0].load(core::sync::atomic::Ordering::Relaxed)
            && !ENTERED.swap(true, core::sync::atomic::Ordering::Relaxed),
        "enter_user called twice, before syscall::init, or from a handler"
    );
    // SAFETY: first entry to user mode (checked above), so GS_BASE holds the per-CPU block:
    // SWAPGS makes GS_BASE the user's and parks the per-CPU pointer in KERNEL_GS_BASE, as the
    // entry stub expects. User mode cannot touch kernel pages (supervisor-only), whatever
    // `rip` and `rsp` are; a non-canonical `rip` faults on `iretq` in the kernel.
    unsafe {
        asm!(
            "swapgs",
            "push {ss}",
            "push {rsp}",
            "push 0x202",
            "push {cs}",
            "push {rip}",
            "xor eax, eax",
            "xor ebx, ebx",
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor edi, edi",
            "xor ebp, ebp",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            "xor r12d, r12d",
            "xor r13d, r13d",
            "xor r14d, r14d",
            "xor r15d, r15d",
            "iretq",
            ss = in(reg) gdt::USER_DS as u64,
            rsp = in(reg) rsp,
            cs = in(reg) gdt::USER_CS as u64,
            rip = in(reg) rip,
            options(noreturn),
        )
    }
}
