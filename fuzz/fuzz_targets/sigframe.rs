//! Signal frames (`os::sigframe`): `rt_sigreturn` reads a frame that the program may have
//! overwritten with anything, and delivery lays one out below whatever `rsp` and
//! alternate stack the program set.
#![no_main]

use kiln_os::sigframe::{self, SigInfo, UserRegs, UserState};
use kiln_os::syscall::signal::{AltStack, SigAction, SA_ONSTACK, SA_RESTORER};
use libfuzzer_sys::fuzz_target;

fn u64_at(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (k, v) in b.iter_mut().enumerate() {
        *v = data.get(i * 8 + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // Delivery: the first words pick the stack pointer, the alternate stack and the flags.
    let (rsp, alt_sp, alt_size, flags) = (
        u64_at(data, 0),
        u64_at(data, 1),
        u64_at(data, 2),
        u64_at(data, 3),
    );
    let state = UserState {
        regs: UserRegs {
            rsp,
            ..UserRegs::default()
        },
        fx: [0; 512],
    };
    let act = SigAction {
        handler: 0x40_1000,
        flags: SA_RESTORER | (flags & SA_ONSTACK),
        restorer: 0x40_2000,
        mask: 0,
    };
    let alt = (flags & 1 != 0).then_some(AltStack {
        sp: alt_sp,
        flags: 0,
        size: alt_size,
    });
    let info = SigInfo {
        signo: 11,
        code: 1,
        addr_or_pid: 0,
        value: 0,
    };
    if let Ok(f) = sigframe::layout(&state, &act, alt, &info, 0) {
        assert_eq!(f.bytes.len() as u64, sigframe::FRAME_SIZE);
        assert!(f
            .addr
            .checked_add(sigframe::FRAME_SIZE)
            .is_some_and(|e| e <= f.fx_addr));
    }

    // Restore: the frame's bytes, then the FXSAVE area.
    let Ok(regs) = sigframe::restore_regs(data) else {
        return;
    };
    // No privileged flag survives: IF stays set, IOPL, NT, VM and friends are dropped.
    assert_eq!(regs.rflags & !0x5_0cd5, 0x202);
    let mut fx = [0u8; 512];
    let rest = &data[sigframe::FRAME_SIZE as usize..];
    let n = rest.len().min(512);
    fx[..n].copy_from_slice(&rest[..n]);
    sigframe::sanitise_fx(&mut fx);
    assert_eq!(u32::from_le_bytes(fx[24..28].try_into().unwrap()) >> 16, 0);
});
