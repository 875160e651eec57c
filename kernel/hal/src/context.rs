//! A thread's user-mode state, saved while it does not run: registers and SSE state.

use crate::gdt;
use crate::syscall::SyscallFrame;
use crate::trap::TrapFrame;

/// The SSE state saved by `fxsave64` (512 bytes, 16-byte aligned).
///
/// The system-call stub saves only the SSE part (XMM0–15 and MXCSR, with plain moves):
/// `fxsave64` and `fxrstor64` are long helper routines under emulation, and they ran on
/// every system call. The kernel's code uses SSE registers but never x87 ones, so the
/// x87 part is still the program's in the FPU until another thread's state is loaded. An
/// area saved that way is marked "SSE only" in bytes FXSAVE leaves to software;
/// [`UserContext::from_syscall`] completes it from the FPU, and every way back to user mode
/// with a whole area (another thread, a signal handler) clears the mark ([`FxArea::whole`]).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FxArea(pub [u8; 512]);

impl FxArea {
    /// Where the "SSE only" mark is (bytes 464..512 are left to software by FXSAVE).
    pub(crate) const SSE_ONLY_AT: usize = 464;
    /// The mark's value.
    pub(crate) const SSE_ONLY: u8 = 0x5e;

    /// This area, marked whole (its x87 part is to be loaded too).
    pub fn whole(&self) -> FxArea {
        let mut a = *self;
        a.0[Self::SSE_ONLY_AT] = 0;
        a
    }

    /// This area with the x87 part the FPU holds filled in when it was saved SSE-only.
    fn completed(&self) -> FxArea {
        let mut a = self.whole();
        if self.0[Self::SSE_ONLY_AT] == Self::SSE_ONLY {
            let mut live = FxArea([0; 512]);
            // SAFETY: `fxsave64` stores this CPU's x87 and SSE state in the 512 bytes of a
            // 16-byte aligned area owned here; it changes no register. The x87 part is the
            // program's: the kernel runs no x87 instruction, and this is the CPU the
            // system call came in on (a system call does not move between CPUs).
            unsafe {
                core::arch::asm!("fxsave64 [{}]", in(reg) live.0.as_mut_ptr(), options(nostack));
            }
            // FCW, FSW, FTW, FOP, FIP, FDP; then MXCSR_MASK and ST0–7 (MXCSR and the XMM
            // registers were saved by the stub before the kernel touched them).
            a.0[..24].copy_from_slice(&live.0[..24]);
            a.0[28..160].copy_from_slice(&live.0[28..160]);
        }
        a
    }
}

impl Default for FxArea {
    fn default() -> Self {
        let mut a = FxArea([0; 512]);
        // FCW = 0x37f and MXCSR = 0x1f80: the state Linux starts programs with.
        a.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        a.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        a
    }
}

pub use kiln_abi::regs::UserRegs;

/// Copies between a frame the entry stubs lay out and [`UserRegs`] (the system-call and
/// interrupt frames name the registers alike, in different orders). The selectors are
/// always the user's on the way back.
macro_rules! user_regs_of_frame {
    ($frame:ty) => {
        impl $frame {
            /// The program's registers in this frame.
            pub fn user_regs(&self) -> UserRegs {
                UserRegs {
                    r8: self.r8,
                    r9: self.r9,
                    r10: self.r10,
                    r11: self.r11,
                    r12: self.r12,
                    r13: self.r13,
                    r14: self.r14,
                    r15: self.r15,
                    rdi: self.rdi,
                    rsi: self.rsi,
                    rbp: self.rbp,
                    rbx: self.rbx,
                    rdx: self.rdx,
                    rax: self.rax,
                    rcx: self.rcx,
                    rsp: self.rsp,
                    rip: self.rip,
                    rflags: self.rflags,
                }
            }

            /// Makes this frame return to user mode with registers `r`.
            pub fn set_user_regs(&mut self, r: &UserRegs) {
                self.r8 = r.r8;
                self.r9 = r.r9;
                self.r10 = r.r10;
                self.r11 = r.r11;
                self.r12 = r.r12;
                self.r13 = r.r13;
                self.r14 = r.r14;
                self.r15 = r.r15;
                self.rdi = r.rdi;
                self.rsi = r.rsi;
                self.rbp = r.rbp;
                self.rbx = r.rbx;
                self.rdx = r.rdx;
                self.rax = r.rax;
                self.rcx = r.rcx;
                self.rsp = r.rsp;
                self.rip = r.rip;
                self.rflags = r.rflags;
                self.cs = gdt::USER_CS as u64;
                self.ss = gdt::USER_DS as u64;
            }
        }
    };
}

user_regs_of_frame!(SyscallFrame);
user_regs_of_frame!(TrapFrame);

/// Checks at compile time that a frame's fields sit where its entry stub pushes them: one
/// `u64` each, in the order given, and nothing else.
macro_rules! frame_layout {
    ($frame:ty, [$($field:ident),* $(,)?]) => {
        const _: () = {
            let mut at = 0;
            $(
                assert!(core::mem::offset_of!($frame, $field) == at);
                at += 8;
            )*
            assert!(core::mem::size_of::<$frame>() == at);
        };
    };
}
pub(crate) use frame_layout;

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
    pub regs: UserRegs,
    /// SSE state.
    pub fx: FxArea,
}

// The four conversions below are out of line: each copies about twenty registers field by
// field, and the kernel's system-call and interrupt paths use them in a dozen places (the
// common path of a system call, returning to the same thread, does not).
impl UserContext {
    /// The state of a thread stopped at a system call.
    #[inline(never)]
    pub fn from_syscall(f: &SyscallFrame, fx: &FxArea) -> UserContext {
        UserContext {
            regs: f.user_regs(),
            fx: fx.completed(),
        }
    }

    /// Puts this state in a system-call frame, to resume it on the way out.
    #[inline(never)]
    pub fn to_syscall(&self, f: &mut SyscallFrame, fx: &mut FxArea) {
        f.set_user_regs(&self.regs);
        *fx = self.fx.whole();
    }

    /// The state of a thread interrupted in user mode.
    #[inline(never)]
    pub fn from_trap(f: &TrapFrame, fx: &FxArea) -> UserContext {
        UserContext {
            regs: f.user_regs(),
            fx: *fx,
        }
    }

    /// Puts this state in an interrupt frame, to resume it with `iretq`.
    #[inline(never)]
    pub fn to_trap(&self, f: &mut TrapFrame, fx: &mut FxArea) {
        f.set_user_regs(&self.regs);
        *fx = self.fx;
    }
}
