//! A thread's user-mode state, saved while it does not run: registers and SSE state.

use crate::gdt;
use crate::syscall::SyscallFrame;
use crate::trap::TrapFrame;

/// The SSE state saved by `fxsave64` (512 bytes, 16-byte aligned).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FxArea(pub [u8; 512]);

impl Default for FxArea {
    fn default() -> Self {
        let mut a = FxArea([0; 512]);
        // FCW = 0x37f and MXCSR = 0x1f80: the state Linux starts programs with.
        a.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        a.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        a
    }
}

/// General registers of a user thread.
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
}

/// The general registers of a frame (system-call or interrupt: both name them alike).
macro_rules! regs_of {
    ($f:expr) => {
        Regs {
            rax: $f.rax,
            rbx: $f.rbx,
            rcx: $f.rcx,
            rdx: $f.rdx,
            rsi: $f.rsi,
            rdi: $f.rdi,
            rbp: $f.rbp,
            r8: $f.r8,
            r9: $f.r9,
            r10: $f.r10,
            r11: $f.r11,
            r12: $f.r12,
            r13: $f.r13,
            r14: $f.r14,
            r15: $f.r15,
            rip: $f.rip,
            rsp: $f.rsp,
            rflags: $f.rflags,
        }
    };
}

/// RFLAGS bits a program may set: the arithmetic flags, TF, DF, OF, RF, AC and ID (as
/// Linux's `FIX_EFLAGS`, plus ID, which `popf` may set). Never IOPL (port access), NT
/// (faults `iretq`), VM, VIF, VIP, or IF clear.
pub const USER_RFLAGS: u64 = 0x0025_0dd5;
/// Bits always set in a user RFLAGS: IF and the reserved bit 1.
const RFLAGS_FIXED: u64 = 0x202;

/// Makes an `iretq`/`sysretq` frame return to user mode with flags a program may have:
/// whatever the kernel's handlers wrote, the hardware layer calls this before returning,
/// so no handler can send the CPU to ring 0 at an address of its choosing or give the
/// program I/O privilege.
pub(crate) fn force_user(cs: &mut u64, ss: &mut u64, rflags: &mut u64) {
    *cs = gdt::USER_CS as u64;
    *ss = gdt::USER_DS as u64;
    *rflags = (*rflags & USER_RFLAGS) | RFLAGS_FIXED;
}

/// Everything needed to resume a user thread.
#[derive(Clone, Default)]
pub struct UserContext {
    /// General registers.
    pub regs: Regs,
    /// SSE state.
    pub fx: FxArea,
}

impl UserContext {
    /// The state of a thread stopped at a system call.
    pub fn from_syscall(f: &SyscallFrame, fx: &FxArea) -> UserContext {
        UserContext {
            regs: regs_of!(f),
            fx: *fx,
        }
    }

    /// Puts this state in a system-call frame, to resume it on the way out.
    pub fn to_syscall(&self, f: &mut SyscallFrame, fx: &mut FxArea) {
        let r = &self.regs;
        *f = SyscallFrame {
            r15: r.r15,
            r14: r.r14,
            r13: r.r13,
            r12: r.r12,
            rbp: r.rbp,
            rbx: r.rbx,
            r9: r.r9,
            r8: r.r8,
            r10: r.r10,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rax: r.rax,
            rcx: r.rcx,
            r11: r.r11,
            rip: r.rip,
            cs: gdt::USER_CS as u64,
            rflags: r.rflags,
            rsp: r.rsp,
            ss: gdt::USER_DS as u64,
        };
        *fx = self.fx;
    }

    /// The state of a thread interrupted in user mode.
    pub fn from_trap(f: &TrapFrame, fx: &FxArea) -> UserContext {
        UserContext {
            regs: regs_of!(f),
            fx: *fx,
        }
    }

    /// Puts this state in an interrupt frame, to resume it with `iretq`.
    pub fn to_trap(&self, f: &mut TrapFrame, fx: &mut FxArea) {
        let r = &self.regs;
        f.rax = r.rax;
        f.rbx = r.rbx;
        f.rcx = r.rcx;
        f.rdx = r.rdx;
        f.rsi = r.rsi;
        f.rdi = r.rdi;
        f.rbp = r.rbp;
        f.r8 = r.r8;
        f.r9 = r.r9;
        f.r10 = r.r10;
        f.r11 = r.r11;
        f.r12 = r.r12;
        f.r13 = r.r13;
        f.r14 = r.r14;
        f.r15 = r.r15;
        f.rip = r.rip;
        f.rsp = r.rsp;
        f.rflags = r.rflags;
        f.cs = gdt::USER_CS as u64;
        f.ss = gdt::USER_DS as u64;
        *fx = self.fx;
    }
}
