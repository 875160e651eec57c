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

/// The registers of a user thread, as the kernel saves them (one definition, in the ABI
/// crate, shared with the hardware layer).
pub use kiln_abi::regs::UserRegs;

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
    /// Faulting address for SIGSEGV/SIGBUS/SIGFPE/SIGILL; sender pid otherwise; for a
    /// POSIX timer's signal (`SI_TIMER`) its id, then the overrun count in the high half.
    pub addr_or_pid: u64,
    /// `si_value` (at 24): the `sigval` a POSIX timer or `sigqueue` passes; 0 otherwise.
    pub value: u64,
}

impl SigInfo {
    /// The 128-byte `siginfo_t`: number, code, at 16 the sender's pid or the faulting
    /// address, at 24 the value.
    pub fn to_bytes(&self) -> [u8; SIGINFO_SIZE as usize] {
        let mut b = [0; SIGINFO_SIZE as usize];
        b[..4].copy_from_slice(&self.signo.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr_or_pid.to_le_bytes());
        b[24..32].copy_from_slice(&self.value.to_le_bytes());
        b
    }
}

const SIGCONTEXT_SIZE: u64 = 256;
const UCONTEXT_SIZE: u64 = 8 + 8 + 24 + SIGCONTEXT_SIZE + 8;
const SIGINFO_SIZE: u64 = 128;
/// Bytes of the `rt_sigframe` Kiln lays out (return address, `ucontext`, `siginfo`).
pub const FRAME_SIZE: u64 = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
const RED_ZONE: u64 = 128;
const DF: u64 = 1 << 10;
const TF: u64 = 1 << 8;
/// RFLAGS bits a program may change through `rt_sigreturn`: Linux's `FIX_EFLAGS` (CF, PF,
/// AF, ZF, SF, DF, OF, RF, AC) without TF (single-stepping is not supported). IOPL, NT, IF,
/// VM and the reserved bits are never taken from the frame.
const USER_RFLAGS: u64 = 0x5_0cd5;
/// RFLAGS bits always set in user mode: IF and the reserved bit 1.
const FIXED_RFLAGS: u64 = 0x202;
/// `uc_flags`: the frame carries `ss` (`UC_SIGCONTEXT_SS`), and `rt_sigreturn` must restore
/// it as given rather than repair it (`UC_STRICT_RESTORE_SS`), as Linux's 64-bit frames say.
const UC_SIGCONTEXT_SS: u64 = 0x2;
const UC_STRICT_RESTORE_SS: u64 = 0x4;
/// Kiln's user code and stack selectors (what frames carry), and Linux's (`__USER_CS`,
/// `__USER_DS`), which programs written for Linux may store: both mean 64-bit user mode.
const USER_CS: [u16; 2] = [0x23, 0x33];
const USER_SS: [u16; 2] = [0x1b, 0x2b];
/// The first address above user space (`TASK_SIZE_MAX`, as Linux): no user code or stack
/// lies at or above it.
pub const USER_TOP: u64 = (1 << 47) - 4096;
/// `si_code` of a `SIGSEGV` raised by the kernel (a general protection fault).
const SI_KERNEL: i32 = 0x80;
/// `si_code` of a `SIGSEGV` for an address with no mapping.
const SEGV_MAPERR: i32 = 1;

/// The RFLAGS a thread resumes with when a program asks for `requested` (from a signal
/// frame): only the bits a program may change are taken; IF and bit 1 are forced on.
pub fn sanitize_rflags(requested: u64) -> u64 {
    (requested & USER_RFLAGS) | FIXED_RFLAGS
}

/// Whether the program can be resumed at `rip`: `None` when it can; otherwise the
/// `SIGSEGV` the program gets instead, as on Linux, where returning to such an address
/// faults at once: a general protection fault (`SI_KERNEL`, address 0) for a non-canonical
/// address, a page fault (`SEGV_MAPERR` at `rip`) for one in the kernel's half. The kernel
/// never returns to user mode at such an address (`sysretq` with a non-canonical address
/// faults in ring 0 on Intel CPUs).
pub fn check_resume(rip: u64) -> Option<SigInfo> {
    if rip < USER_TOP {
        return None;
    }
    let canonical = !((1 << 47)..0xffff_8000_0000_0000).contains(&rip);
    Some(if canonical {
        SigInfo {
            signo: 11,
            code: SEGV_MAPERR,
            addr_or_pid: rip,
            value: 0,
        }
    } else {
        SigInfo {
            signo: 11,
            code: SI_KERNEL,
            addr_or_pid: 0,
            value: 0,
        }
    })
}

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
    // The alternate stack's end; a range that wraps around can take no frame.
    let alt_end = |a: &AltStack| a.sp.checked_add(a.size).ok_or(Errno::EFAULT);
    let on_alt = match altstack {
        Some(a) => sp > a.sp && sp <= alt_end(&a)?,
        None => false,
    };
    let mut top = match altstack {
        Some(a) if act.flags & SA_ONSTACK != 0 && !on_alt => alt_end(&a)?,
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
    put(&mut b, uc, UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
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
    b[(sc + 144) as usize..(sc + 146) as usize].copy_from_slice(&USER_CS[0].to_le_bytes());
    b[(sc + 150) as usize..(sc + 152) as usize].copy_from_slice(&USER_SS[0].to_le_bytes());
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
    let si = (8 + UCONTEXT_SIZE) as usize;
    b[si..si + SIGINFO_SIZE as usize].copy_from_slice(&info.to_bytes());
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
    let altstack = m.thread().signals.altstack();
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

fn get16(buf: &[u8], at: u64) -> u16 {
    u16::from_le_bytes([buf[at as usize], buf[at as usize + 1]])
}

/// The registers a frame's `sigcontext` asks for, checked as Linux's `restore_sigcontext`
/// does: RFLAGS sanitised; the code selector must be a 64-bit user one (any other would
/// make the return fault: `EFAULT`, the caller delivers SIGSEGV); the stack selector is
/// forced to the user one unless `uc_flags` asks for a strict restore, when a bad one is
/// `EFAULT` too, and so are fewer than [`FRAME_SIZE`] bytes. RIP and RSP are taken as they
/// are ([`check_resume`] guards the return).
pub fn restore_regs(b: &[u8]) -> KResult<UserRegs> {
    if (b.len() as u64) < FRAME_SIZE {
        return Err(Errno::EFAULT);
    }
    let sc = 8 + 40;
    let mut regs = UserRegs::default();
    for (i, r) in sigcontext_regs(&mut regs).into_iter().enumerate() {
        *r = get(b, sc + i as u64 * 8);
    }
    regs.rflags = sanitize_rflags(regs.rflags);
    let uc_flags = get(b, 8);
    let cs = get16(b, sc + 144) | 3;
    let ss = get16(b, sc + 150) | 3;
    if !USER_CS.contains(&cs) {
        return Err(Errno::EFAULT);
    }
    if uc_flags & UC_STRICT_RESTORE_SS != 0 && !USER_SS.contains(&ss) {
        return Err(Errno::EFAULT);
    }
    Ok(regs)
}

/// Clears the reserved MXCSR bits of an FXSAVE area a program wrote: set, they would make
/// `FXRSTOR` fault in the kernel.
pub fn sanitise_fx(fx: &mut [u8; 512]) {
    let mxcsr = u32::from_le_bytes([fx[24], fx[25], fx[26], fx[27]]) & 0xffff;
    fx[24..28].copy_from_slice(&mxcsr.to_le_bytes());
}

/// `rt_sigreturn`: reads the frame the handler returned from (its `rsp` is just past the
/// return address) and gives the state to resume and the mask to restore. `EFAULT` when the
/// frame cannot be read or asks for a state no user thread can have.
pub fn sigreturn(p: &mut Process, m: &mut dyn Machine, rsp: u64) -> KResult<(UserState, u64)> {
    let addr = rsp.checked_sub(8).ok_or(Errno::EFAULT)?;
    let mut b = alloc::vec![0u8; FRAME_SIZE as usize];
    p.vm.copy_from_user(m.pages(), addr, &mut b)?;
    let sc = 8 + 40;
    let regs = restore_regs(&b)?;
    let mut fx = [0u8; 512];
    let fpstate = get(&b, sc + 184);
    if fpstate != 0 {
        p.vm.copy_from_user(m.pages(), fpstate, &mut fx)?;
        sanitise_fx(&mut fx);
    }
    let mask = get(&b, 8 + 40 + SIGCONTEXT_SIZE);
    Ok((UserState { regs, fx }, mask))
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
            value: 0,
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
            value: 0,
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
            value: 0,
        };
        assert_eq!(
            layout(&state(0x7fff_0000), &a, None, &info, 0).unwrap_err(),
            Errno::EFAULT
        );
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
            value: 0,
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
    fn frame_bytes() -> alloc::vec::Vec<u8> {
        let info = SigInfo {
            signo: 10,
            code: 0,
            addr_or_pid: 0,
            value: 0,
        };
        layout(&state(0x7fff_0000), &act(), None, &info, 0)
            .unwrap()
            .bytes
    }

    const SC: usize = 8 + 40;

    fn set16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn an_untouched_frame_restores_and_says_it_carries_ss() {
        let b = frame_bytes();
        assert_eq!(get(&b, 8), UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
        let r = restore_regs(&b).unwrap();
        assert_eq!(r.rip, 0x40_0500);
        assert_eq!(r.rflags, 0x202 | DF);
    }

    #[test]
    fn rflags_keep_only_what_a_program_may_change() {
        let mut b = frame_bytes();
        put(&mut b, (SC + 17 * 8) as u64, u64::MAX);
        let f = restore_regs(&b).unwrap().rflags;
        assert_eq!(f, USER_RFLAGS | 0x202);
        assert_eq!(f & 0x3000, 0, "IOPL stays 0");
        assert_eq!(f & 0x4000, 0, "NT stays clear (iretq would fault)");
        assert_eq!(f & (1 << 17), 0, "no virtual-8086 mode");
        assert_eq!(f & TF, 0, "no single-stepping");
        assert_eq!(f >> 22, 0, "reserved high bits clear");
        assert_eq!(
            f & (1 << 3 | 1 << 5 | 1 << 15),
            0,
            "reserved low bits clear"
        );
        put(&mut b, (SC + 17 * 8) as u64, 0);
        assert_eq!(
            restore_regs(&b).unwrap().rflags,
            0x202,
            "IF and bit 1 forced"
        );
    }

    #[test]
    fn code_selectors_other_than_user_ones_are_refused() {
        for cs in [0u16, 0x08, 0x10, 0x18, 0x2b, 0xffff] {
            let mut b = frame_bytes();
            set16(&mut b, SC + 144, cs);
            assert_eq!(restore_regs(&b).unwrap_err(), Errno::EFAULT, "cs {cs:#x}");
        }
        for cs in [0x20u16, 0x23, 0x30, 0x33] {
            let mut b = frame_bytes();
            set16(&mut b, SC + 144, cs);
            assert!(restore_regs(&b).is_ok(), "cs {cs:#x}");
        }
    }

    #[test]
    fn a_bad_stack_selector_fails_only_when_strict() {
        let mut b = frame_bytes();
        set16(&mut b, SC + 150, 0);
        assert_eq!(restore_regs(&b).unwrap_err(), Errno::EFAULT);
        set16(&mut b, SC + 150, 0x2b);
        assert!(restore_regs(&b).is_ok(), "Linux's __USER_DS");
        set16(&mut b, SC + 150, 0x10);
        put(&mut b, 8, UC_SIGCONTEXT_SS);
        assert!(
            restore_regs(&b).is_ok(),
            "repaired, as Linux's force_valid_ss"
        );
    }

    #[test]
    fn only_user_addresses_are_resumed() {
        for ok in [0u64, 0x40_0000, USER_TOP - 1] {
            assert_eq!(check_resume(ok), None, "{ok:#x}");
        }
        let unmappable = [USER_TOP, (1 << 47) - 1, 0xffff_8000_0000_0000, u64::MAX];
        for kernel_half in unmappable.into_iter().chain([0xffff_ffff_8100_0000]) {
            let i = check_resume(kernel_half).unwrap();
            assert_eq!((i.signo, i.code, i.addr_or_pid), (11, 1, kernel_half));
        }
        for bad in [1 << 47, 0x0000_8000_0000_1000, 0x8000_0000_0000_0000] {
            let i = check_resume(bad).unwrap();
            assert_eq!((i.signo, i.code, i.addr_or_pid), (11, 0x80, 0), "{bad:#x}");
        }
    }

    #[test]
    fn sigreturn_refuses_a_frame_with_a_kernel_code_selector() {
        use crate::syscall::testutil::*;
        let (mut p, mut m, buf) = setup();
        let mut s = state(buf + 0x3000);
        let info = SigInfo {
            signo: 10,
            code: 0,
            addr_or_pid: 0,
            value: 0,
        };
        deliver(&mut p, &mut m, &mut s, &act(), &info, 0).unwrap();
        let cs_at = s.regs.rsp + 8 + 40 + 144;
        poke(&mut p, &mut m, cs_at, &0x10u16.to_le_bytes());
        assert_eq!(
            sigreturn(&mut p, &mut m, s.regs.rsp + 8).unwrap_err(),
            Errno::EFAULT
        );
    }
    #[test]
    fn stacks_at_the_ends_of_the_address_space_are_efault() {
        let info = SigInfo {
            signo: 10,
            code: 0,
            addr_or_pid: 0,
            value: 0,
        };
        let wraps = AltStack {
            sp: u64::MAX - 0x1000,
            flags: 0,
            size: 0x4000,
        };
        let mut a = act();
        a.flags |= SA_ONSTACK;
        let e = layout(&state(0x7fff_0000), &a, Some(wraps), &info, 0).unwrap_err();
        assert_eq!(e, Errno::EFAULT);
        for sp in [0, 8, RED_ZONE, RED_ZONE + 600] {
            assert_eq!(
                layout(&state(sp), &act(), None, &info, 0).unwrap_err(),
                Errno::EFAULT,
                "rsp {sp:#x}"
            );
        }
    }
}
