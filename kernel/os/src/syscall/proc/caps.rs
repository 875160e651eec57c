//! Scheduling priority (`getpriority`, `setpriority`) and capabilities (`capget`,
//! `capset`).
//!
//! The program is the machine's only process and runs as root with every capability, as
//! a container's root does with a full set. Both are kept and reported as the program set
//! them: `nice` and `renice` see their change, and a program dropping capabilities
//! (`ping`, daemons giving up privileges) sees the smaller set. Kiln enforces neither:
//! there is no other process to yield to or to protect from.

use crate::errno::{Errno, KResult};
use crate::machine::Machine;
use crate::process::{Process, PID};
use crate::syscall::{read_user, write_user};

/// `PRIO_PROCESS`: `who` is a process (or thread) id.
pub const PRIO_PROCESS: u64 = 0;
/// `PRIO_PGRP`: `who` is a process group.
pub const PRIO_PGRP: u64 = 1;
/// `PRIO_USER`: `who` is a user id.
pub const PRIO_USER: u64 = 2;

/// The highest capability number (`CAP_CHECKPOINT_RESTORE`).
pub const CAP_LAST_CAP: u32 = 40;
/// Every capability.
pub const CAP_FULL_SET: u64 = (1 << (CAP_LAST_CAP + 1)) - 1;
const VERSION_1: u32 = 0x1998_0330;
const VERSION_2: u32 = 0x2007_1026;
const VERSION_3: u32 = 0x2008_0522;

/// The process's capability sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// In effect.
    pub effective: u64,
    /// May be made effective.
    pub permitted: u64,
    /// Kept across `execve` of a program with file capabilities.
    pub inheritable: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            effective: CAP_FULL_SET,
            permitted: CAP_FULL_SET,
            inheritable: 0,
        }
    }
}

/// Whether `who` of kind `which` names this process (or one of its threads, or its user).
fn names_us(p: &Process, m: &mut dyn Machine, which: u64, who: u64) -> KResult<bool> {
    let who = who as u32 as i32;
    Ok(match which {
        PRIO_PROCESS => who == 0 || i64::from(who) == PID || m.thread_of(who as u32).is_some(),
        PRIO_PGRP => who == 0 || i64::from(who) == PID,
        PRIO_USER => who == 0 || who as u32 == p.proc.uid.effective,
        _ => return Err(Errno::EINVAL),
    })
}

/// `getpriority(which, who)`: 20 minus the nice value, as the system call returns it.
pub fn getpriority(p: &mut Process, m: &mut dyn Machine, which: u64, who: u64) -> KResult<i64> {
    if !names_us(p, m, which, who)? {
        return Err(Errno::ESRCH);
    }
    Ok(20 - i64::from(p.proc.nice))
}

/// `setpriority(which, who, prio)`: the nice value, clamped to -20..=19.
pub fn setpriority(
    p: &mut Process,
    m: &mut dyn Machine,
    which: u64,
    who: u64,
    prio: u64,
) -> KResult<i64> {
    if !names_us(p, m, which, who)? {
        return Err(Errno::ESRCH);
    }
    let nice = (prio as i32).clamp(-20, 19) as i8;
    if nice < p.proc.nice && p.proc.caps.effective & (1 << CAP_SYS_NICE) == 0 {
        return Err(Errno::EACCES);
    }
    p.proc.nice = nice;
    Ok(0)
}

const CAP_SYS_NICE: u32 = 23;

/// Reads a `cap_user_header_t`: how many `cap_user_data` structs its version takes. A
/// version Kiln does not know gets the one it prefers written back, and `EINVAL`.
fn header(p: &mut Process, m: &mut dyn Machine, hdr: u64) -> KResult<(usize, i32)> {
    let h: [u8; 8] = read_user(p, m, hdr)?;
    let version = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
    let pid = i32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
    let structs = match version {
        VERSION_1 => 1,
        VERSION_2 | VERSION_3 => 2,
        _ => {
            write_user(p, m, hdr, &VERSION_3.to_le_bytes())?;
            return Err(Errno::EINVAL);
        }
    };
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    Ok((structs, pid))
}

/// `capget(hdr, data)`.
pub fn capget(p: &mut Process, m: &mut dyn Machine, hdr: u64, data: u64) -> KResult<i64> {
    let (structs, pid) = match header(p, m, hdr) {
        // Asking for the version alone (no data) is how libcap learns it.
        Err(Errno::EINVAL) if data == 0 => return Ok(0),
        r => r?,
    };
    if pid != 0 && i64::from(pid) != PID && m.thread_of(pid as u32).is_none() {
        return Err(Errno::ESRCH);
    }
    if data == 0 {
        return Ok(0);
    }
    let c = p.proc.caps;
    let mut out = [0u8; 24];
    for (i, half) in out.chunks_exact_mut(12).take(structs).enumerate() {
        for (j, set) in [c.effective, c.permitted, c.inheritable]
            .into_iter()
            .enumerate()
        {
            let word = (set >> (32 * i)) as u32;
            half[j * 4..j * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
    }
    write_user(p, m, data, &out[..12 * structs])?;
    Ok(0)
}

/// `capset(hdr, data)`: sets may shrink, never grow (`EPERM`); the effective set stays
/// within the permitted one.
pub fn capset(p: &mut Process, m: &mut dyn Machine, hdr: u64, data: u64) -> KResult<i64> {
    let (structs, pid) = header(p, m, hdr)?;
    if pid != 0 && i64::from(pid) != PID {
        return Err(Errno::EPERM);
    }
    let mut raw = [0u8; 24];
    p.vm.copy_from_user(m.pages(), data, &mut raw[..12 * structs])?;
    let set = |j: usize| {
        (0..structs).fold(0u64, |acc, i| {
            let o = i * 12 + j * 4;
            acc | u64::from(u32::from_le_bytes(
                raw[o..o + 4].try_into().expect("4 bytes"),
            )) << (32 * i)
        })
    };
    let new = Caps {
        effective: set(0),
        permitted: set(1),
        inheritable: set(2),
    };
    let old = p.proc.caps;
    if new.permitted & !old.permitted != 0
        || new.effective & !new.permitted != 0
        || new.inheritable & !(old.inheritable | old.permitted) != 0
    {
        return Err(Errno::EPERM);
    }
    p.proc.caps = new;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::testutil::*;
    use crate::sysno;

    #[test]
    fn nice_values_are_kept_and_reported() {
        let (mut p, mut m, _) = setup();
        assert_eq!(
            call(&mut p, &mut m, sysno::GETPRIORITY, &[PRIO_PROCESS, 0]),
            20
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::SETPRIORITY, &[PRIO_PROCESS, 0, 10]),
            0
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::GETPRIORITY, &[PRIO_PROCESS, 1]),
            10
        );
        // Clamped, as Linux does; other processes do not exist.
        assert_eq!(
            call(&mut p, &mut m, sysno::SETPRIORITY, &[PRIO_USER, 0, 99]),
            0
        );
        assert_eq!(call(&mut p, &mut m, sysno::GETPRIORITY, &[PRIO_PGRP, 0]), 1);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETPRIORITY, &[PRIO_PROCESS, 77]),
            -3
        );
        assert_eq!(call(&mut p, &mut m, sysno::GETPRIORITY, &[9, 0]), -22);
        // PRIO_USER names the effective user, here root; no other user has processes.
        assert_eq!(call(&mut p, &mut m, sysno::GETPRIORITY, &[PRIO_USER, 0]), 1);
        assert_eq!(
            call(&mut p, &mut m, sysno::GETPRIORITY, &[PRIO_USER, 1000]),
            -3
        );
        // Without CAP_SYS_NICE the nice value only goes up.
        p.proc.caps.effective = 0;
        assert_eq!(
            call(&mut p, &mut m, sysno::SETPRIORITY, &[PRIO_PROCESS, 0, 0]),
            -13
        );
    }

    #[test]
    fn capabilities_start_full_and_only_shrink() {
        let (mut p, mut m, buf) = setup();
        let hdr = |p: &mut Process, m: &mut crate::testing::FakeMachine, v: u32| {
            let mut h = [0u8; 8];
            h[..4].copy_from_slice(&v.to_le_bytes());
            poke(p, m, buf, &h);
        };
        // An unknown version: the preferred one is written back.
        hdr(&mut p, &mut m, 0);
        assert_eq!(call(&mut p, &mut m, sysno::CAPGET, &[buf, 0]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 4), VERSION_3.to_le_bytes());
        assert_eq!(call(&mut p, &mut m, sysno::CAPGET, &[buf, buf + 64]), 0);
        let d = peek(&mut p, &mut m, buf + 64, 24);
        assert_eq!(d[..4], [0xff; 4], "effective, low word");
        assert_eq!(d[12..16], 0x1ffu32.to_le_bytes(), "effective, high word");
        assert_eq!(d[8..12], [0; 4], "inheritable");
        // Drop everything but CAP_NET_RAW (13), as ping does.
        let mut sets = [0u8; 24];
        sets[..4].copy_from_slice(&(1u32 << 13).to_le_bytes());
        sets[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
        poke(&mut p, &mut m, buf + 64, &sets);
        assert_eq!(call(&mut p, &mut m, sysno::CAPSET, &[buf, buf + 64]), 0);
        assert_eq!(p.proc.caps.permitted, 1 << 13);
        // Growing again is refused.
        sets[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        poke(&mut p, &mut m, buf + 64, &sets);
        assert_eq!(call(&mut p, &mut m, sysno::CAPSET, &[buf, buf + 64]), -1);
        hdr(&mut p, &mut m, 0x1234);
        assert_eq!(call(&mut p, &mut m, sysno::CAPGET, &[buf, buf + 64]), -22);
    }
}
