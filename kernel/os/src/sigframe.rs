//! Running signal handlers: the x86_64 `rt_sigframe` built on the user stack, and
//! `rt_sigreturn` reading it back.
//!
//! The layout is Linux's: from the frame's address up, the return address (the action's
//! `sa_restorer`, glibc's `__restore_rt`), a `ucontext` (flags, link, `stack_t`, the
//! 256-byte `sigcontext`, the signal mask) and a 128-byte `siginfo`; the 512-byte FXSAVE
//! area sits above, 64-byte aligned, and `sigcontext.fpstate` points at it.

use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::Process;
use crate::syscall::signal::{
    AltStack, SigAction, SA_NODEFER, SA_ONSTACK, SA_RESETHAND, SA_RESTORER,
};

/// The registers of a user thread, as the kernel saves them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRegs {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// A thread's whole user state: registers and the FXSAVE area.
#[derive(Clone, PartialEq, Eq)]
pub struct UserState {
    /// General registers.
    pub regs: UserRegs,
    /// SSE/x87 state in FXSAVE format.
    pub fx: [u8; 512],
}

impl core::fmt::Debug for UserState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UserState")
            .field("regs", &self.regs)
            .finish_non_exhaustive()
    }
}

/// What the handler learns about the signal (`siginfo_t`'s common fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// `si_code`: `SI_USER` (0) for kill, `SI_TKILL` (-6) for tgkill, `SEGV_MAPERR`...
    pub code: i32,
    /// Faulting address for SIGSEGV/SIGBUS/SIGFPE/SIGILL; sender pid otherwise.
    pub addr_or_pid: u64,
}

const SIGCONTEXT_SIZE: u64 = 256;
const UCONTEXT_SIZE: u64 = 8 + 8 + 24 + SIGCONTEXT_SIZE + 8;
const SIGINFO_SIZE: u64 = 128;
/// Size of the frame below the FXSAVE area: return address, `ucontext`, `siginfo`.
pub const FRAME_SIZE: u64 = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
const RED_ZONE: u64 = 128;
const DF: u64 = 1 << 10;
const TF: u64 = 1 << 8;

fn put(buf: &mut [u8], at: u64, v: u64) {
    buf[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(buf[at as usize..at as usize + 8].try_into().unwrap())
}

/// Offsets of the registers inside `sigcontext`, in its order.
fn sigcontext_regs(r: &mut UserRegs) -> [&mut u64; 18] {
    [
        &mut r.r8,
        &mut r.r9,
        &mut r.r10,
        &mut r.r11,
        &mut r.r12,
        &mut r.r13,
        &mut r.r14,
        &mut r.r15,
        &mut r.rdi,
        &mut r.rsi,
        &mut r.rbp,
        &mut r.rbx,
        &mut r.rdx,
        &mut r.rax,
        &mut r.rcx,
        &mut r.rsp,
        &mut r.rip,
        &mut r.rflags,
    ]
}

/// Where the frame goes and its bytes.
#[derive(Debug)]
pub struct Frame {
    /// Address of the frame (the handler's `rsp`).
    pub addr: u64,
    /// Address of the FXSAVE copy.
    pub fx_addr: u64,
    /// The frame's bytes (`FRAME_SIZE`).
    pub bytes: alloc::vec::Vec<u8>,
}

/// Lays out the frame for running `act`'s handler for `info` on top of `state`, with
/// `mask` the thread's signal mask before the handler.
pub fn layout(
    state: &UserState,
    act: &SigAction,
    altstack: Option<AltStack>,
    info: &SigInfo,
    mask: u64,
) -> KResult<Frame> {
    if act.flags & SA_RESTORER == 0 || act.restorer == 0 {
        // x86_64 has no default return path: Linux refuses too.
        return Err(Errno::EFAULT);
    }
    let sp = state.regs.rsp;
    // The program chose the alternate stack's base and size: their sum may not fit in 64
    // bits, and such a stack cannot take a frame.
    let alt_top = |a: AltStack| a.sp.checked_add(a.size);
    let on_alt = altstack.is_some_and(|a| sp > a.sp && alt_top(a).is_some_and(|t| sp <= t));
    let mut top = match altstack {
        Some(a) if act.flags & SA_ONSTACK != 0 && !on_alt => alt_top(a).ok_or(Errno::EFAULT)?,
        _ => sp.checked_sub(RED_ZONE).ok_or(Errno::EFAULT)?,
    };
    top = top.checked_sub(512).ok_or(Errno::EFAULT)? & !63;
    let fx_addr = top;
    let addr = ((top.checked_sub(FRAME_SIZE).ok_or(Errno::EFAULT)?) & !15)
        .checked_sub(8)
        .ok_or(Errno::EFAULT)?;
    let mut b = alloc::vec![0u8; FRAME_SIZE as usize];
    put(&mut b, 0, act.restorer);
    // ucontext at 8: uc_flags, uc_link, uc_stack, uc_mcontext, uc_sigmask.
    let uc = 8;
    if let Some(a) = altstack {
        put(&mut b, uc + 16, a.sp);
        b[(uc + 24) as usize..(uc + 28) as usize]
            .copy_from_slice(&(if on_alt { 1i32 } else { 0 }).to_le_bytes());
        put(&mut b, uc + 32, a.size);
    } else {
        b[(uc + 24) as usize..(uc + 28) as usize].copy_from_slice(&2i32.to_le_bytes());
        // SS_DISABLE
    }
    let sc = uc + 40;
    let mut regs = state.regs;
    for (i, r) in sigcontext_regs(&mut regs).into_iter().enumerate() {
        put(&mut b, sc + i as u64 * 8, *r);
    }
    // cs, gs, fs, ss (u16 each) at sc + 144: user selectors.
    b[(sc + 144) as usize..(sc + 146) as usize].copy_from_slice(&0x23u16.to_le_bytes());
    b[(sc + 150) as usize..(sc + 152) as usize].copy_from_slice(&0x1bu16.to_le_bytes());
    put(&mut b, sc + 168, mask); // oldmask
    put(
        &mut b,
        sc + 176,
        if matches!(info.signo, 4 | 7 | 8 | 11) {
            info.addr_or_pid
        } else {
            0
        },
    ); // cr2
    put(&mut b, sc + 184, fx_addr); // fpstate
    put(&mut b, uc + 40 + SIGCONTEXT_SIZE, mask); // uc_sigmask
    let si = 8 + UCONTEXT_SIZE;
    b[si as usize..si as usize + 4].copy_from_slice(&info.signo.to_le_bytes());
    b[(si + 8) as usize..(si + 12) as usize].copy_from_slice(&info.code.to_le_bytes());
    put(&mut b, si + 16, info.addr_or_pid);
    Ok(Frame {
        addr,
        fx_addr,
        bytes: b,
    })
}

/// Delivers `sig` with `info` to the running thread whose state is `state`: writes the
/// frame to its stack and points it at the handler. Returns the mask to install while the
/// handler runs. `EFAULT` when the stack cannot take the frame (the caller then kills the
/// program with SIGSEGV, as Linux does).
pub fn deliver(
    p: &mut Process,
    m: &mut dyn Machine,
    state: &mut UserState,
    act: &SigAction,
    info: &SigInfo,
    mask: u64,
) -> KResult<u64> {
    let altstack = p.signals.altstack();
    let frame = layout(state, act, altstack, info, mask)?;
    p.vm.copy_to_user(m.pages(), frame.fx_addr, &state.fx)?;
    p.vm.copy_to_user(m.pages(), frame.addr, &frame.bytes)?;
    let r = &mut state.regs;
    r.rsp = frame.addr;
    r.rip = act.handler;
    r.rdi = info.signo as u64;
    r.rsi = frame.addr + 8 + UCONTEXT_SIZE;
    r.rdx = frame.addr + 8;
    r.rax = 0;
    r.rflags &= !(DF | TF);
    let sig_bit = 1u64 << (info.signo - 1);
    let mut new_mask = mask | act.mask;
    if act.flags & SA_NODEFER == 0 {
        new_mask |= sig_bit;
    }
    if act.flags & SA_RESETHAND != 0 {
        p.signals.reset_to_default(info.signo as u32);
    }
    Ok(new_mask)
}

/// What a signal frame asks `rt_sigreturn` to restore, read from its bytes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restore {
    /// The registers to resume with (privileged `rflags` bits already dropped).
    pub regs: UserRegs,
    /// `sigcontext.fpstate`: where the FXSAVE copy is (0: none).
    pub fpstate: u64,
    /// The signal mask to restore.
    pub mask: u64,
}

/// Reads the frame's bytes (at least [`FRAME_SIZE`]; the program may have written anything
/// there). `EFAULT` when there are too few bytes.
pub fn decode_frame(b: &[u8]) -> KResult<Restore> {
    if (b.len() as u64) < FRAME_SIZE {
        return Err(Errno::EFAULT);
    }
    let sc = 8 + 40;
    let mut regs = UserRegs::default();
    for (i, r) in sigcontext_regs(&mut regs).into_iter().enumerate() {
        *r = get(b, sc + i as u64 * 8);
    }
    // The program may not set privileged flags: keep IF, drop IOPL/NT/VM etc.
    regs.rflags = (regs.rflags & 0xcd5) | 0x202;
    Ok(Restore {
        regs,
        fpstate: get(b, sc + 184),
        mask: get(b, 8 + 40 + SIGCONTEXT_SIZE),
    })
}

/// Makes a FXSAVE area from user memory safe to load: MXCSR's reserved bits must stay clear
/// or FXRSTOR faults in the kernel.
pub fn sanitise_fx(fx: &mut [u8; 512]) {
    let mxcsr = u32::from_le_bytes([fx[24], fx[25], fx[26], fx[27]]) & 0xffff;
    fx[24..28].copy_from_slice(&mxcsr.to_le_bytes());
}

/// `rt_sigreturn`: reads the frame the handler returned from (its `rsp` is just past the
/// return address) and gives the state to resume and the mask to restore.
pub fn sigreturn(p: &mut Process, m: &mut dyn Machine, rsp: u64) -> KResult<(UserState, u64)> {
    let addr = rsp.checked_sub(8).ok_or(Errno::EFAULT)?;
    let mut b = alloc::vec![0u8; FRAME_SIZE as usize];
    p.vm.copy_from_user(m.pages(), addr, &mut b)?;
    let r = decode_frame(&b)?;
    let mut fx = [0u8; 512];
    if r.fpstate != 0 {
        p.vm.copy_from_user(m.pages(), r.fpstate, &mut fx)?;
        sanitise_fx(&mut fx);
    }
    Ok((UserState { regs: r.regs, fx }, r.mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act() -> SigAction {
        SigAction {
            handler: 0x40_1000,
            flags: SA_RESTORER,
            restorer: 0x40_2000,
            mask: 1 << 9,
        }
    }

    fn state(rsp: u64) -> UserState {
        let mut fx = [3; 512];
        fx[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        UserState {
            regs: UserRegs {
                rsp,
                rip: 0x40_0500,
                rax: 7,
                rflags: 0x202 | DF,
                ..UserRegs::default()
            },
            fx,
        }
    }

    #[test]
    fn frame_is_aligned_below_the_red_zone() {
        let info = SigInfo {
            signo: 10,
            code: 0,
            addr_or_pid: 1,
        };
        let f = layout(&state(0x7fff_0000), &act(), None, &info, 0).unwrap();
        assert_eq!((f.addr + 8) % 16, 0, "as after a call instruction");
        assert!(f.fx_addr + 512 <= 0x7fff_0000 - RED_ZONE);
        assert_eq!(f.fx_addr % 64, 0);
        assert!(f.addr + FRAME_SIZE <= f.fx_addr);
        assert_eq!(get(&f.bytes, 0), 0x40_2000, "returns to the restorer");
        assert_eq!(get(&f.bytes, 8 + 40 + 16 * 8), 0x40_0500, "saved rip");
        assert_eq!(get(&f.bytes, 8 + 40 + 184), f.fx_addr, "fpstate pointer");
    }

    #[test]
    fn altstack_is_used_when_asked_and_not_already_on_it() {
        let alt = AltStack {
            sp: 0x1000_0000,
            flags: 0,
            size: 0x4000,
        };
        let info = SigInfo {
            signo: 11,
            code: 1,
            addr_or_pid: 0xdead,
        };
        let mut a = act();
        a.flags |= SA_ONSTACK;
        let f = layout(&state(0x7fff_0000), &a, Some(alt), &info, 0).unwrap();
        assert!(f.addr >= alt.sp && f.fx_addr + 512 <= alt.sp + alt.size);
        assert_eq!(get(&f.bytes, 8 + 40 + 176), 0xdead, "cr2 for SIGSEGV");
        let inside = layout(&state(alt.sp + 0x2000), &a, Some(alt), &info, 0).unwrap();
        assert!(inside.addr < alt.sp + 0x2000 - RED_ZONE);
    }

    #[test]
    fn no_restorer_is_refused() {
        let mut a = act();
        a.flags = 0;
        let info = SigInfo {
            signo: 10,
            code: 0,
            addr_or_pid: 0,
        };
        assert_eq!(
            layout(&state(0x7fff_0000), &a, None, &info, 0).unwrap_err(),
            Errno::EFAULT
        );
    }

    /// Found by fuzzing (`sigframe` target): an alternate stack whose base plus size
    /// overflows, or a stack pointer just above zero, made the frame arithmetic overflow
    /// (a kernel panic in a checked build, a wrapped frame address otherwise).
    #[test]
    fn overflowing_stacks_are_efault_not_a_panic() {
        let info = SigInfo {
            signo: 11,
            code: 1,
            addr_or_pid: 0,
        };
        let mut a = act();
        a.flags |= SA_ONSTACK;
        let wraps = AltStack {
            sp: u64::MAX - 0x1000,
            flags: 0,
            size: 0x4000,
        };
        for rsp in [0, u64::MAX - 0x800, 0x7fff_0000] {
            assert_eq!(
                layout(&state(rsp), &a, Some(wraps), &info, 0).unwrap_err(),
                Errno::EFAULT,
                "rsp {rsp:#x}"
            );
        }
        // A stack pointer so low that the frame would start below address 0.
        let low = RED_ZONE + 512 + FRAME_SIZE + 8;
        assert_eq!(
            layout(&state(low), &act(), None, &info, 0).unwrap_err(),
            Errno::EFAULT
        );
        let tiny = AltStack {
            sp: 0,
            flags: 0,
            size: 512 + FRAME_SIZE,
        };
        assert_eq!(
            layout(&state(0x7fff_0000), &a, Some(tiny), &info, 0).unwrap_err(),
            Errno::EFAULT
        );
    }

    /// A frame with every byte set restores only the user-settable flags and a valid MXCSR.
    #[test]
    fn restore_drops_privileged_bits() {
        let r = decode_frame(&[0xff; FRAME_SIZE as usize]).unwrap();
        assert_eq!(r.regs.rflags, 0xcd5 | 0x202);
        assert_eq!((r.fpstate, r.mask), (u64::MAX, u64::MAX));
        assert_eq!(
            decode_frame(&[0; FRAME_SIZE as usize - 1]).unwrap_err(),
            Errno::EFAULT
        );
        let mut fx = [0xff; 512];
        sanitise_fx(&mut fx);
        assert_eq!(fx[24..28], [0xff, 0xff, 0, 0]);
    }

    #[test]
    fn deliver_then_sigreturn_round_trips() {
        use crate::syscall::testutil::*;
        let (mut p, mut m, buf) = setup();
        let before = state(buf + 0x3000);
        let mut s = before.clone();
        let info = SigInfo {
            signo: 10,
            code: -6,
            addr_or_pid: 1,
        };
        let mask = deliver(&mut p, &mut m, &mut s, &act(), &info, 0b1).unwrap();
        assert_eq!(mask, 0b1 | (1 << 9) | (1 << 9));
        assert_eq!(
            (s.regs.rip, s.regs.rdi, s.regs.rflags & DF),
            (0x40_1000, 10, 0)
        );
        assert_eq!(peek(&mut p, &mut m, s.regs.rsi, 4), 10i32.to_le_bytes());
        // The handler returns: `ret` pops the restorer, which calls rt_sigreturn.
        let (back, old_mask) = sigreturn(&mut p, &mut m, s.regs.rsp + 8).unwrap();
        assert_eq!(old_mask, 0b1);
        assert_eq!(back.regs.rip, before.regs.rip);
        assert_eq!(back.regs.rax, 7);
        assert_eq!(back.fx, before.fx);
    }
}
