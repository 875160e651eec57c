//! More I/O: `select`/`pselect6`, positioned vector I/O (`preadv`, `pwritev` and their
//! `2` forms) and `copy_file_range`.

use super::*;
use crate::fd::poll::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLPRI, POLLRDNORM, POLLWRNORM};

/// Readiness that makes a descriptor readable, writable or exceptional (Linux's
/// `POLLIN_SET`, `POLLOUT_SET`, `POLLEX_SET`).
const IN_SET: u16 = POLLIN | POLLRDNORM | POLLHUP | POLLERR;
const OUT_SET: u16 = POLLOUT | POLLWRNORM | POLLERR;
const EX_SET: u16 = POLLPRI;

/// `select` on the three `fd_set`s (null pointers: none), with `poll`'s readiness rules
/// and waiting rules. `EBADF` when a set names a closed or `O_PATH` descriptor; `nfds` is
/// limited to the table size.
///
/// A timeout must leave the sets empty, yet a woken call runs again and needs what it was
/// asked: before a wait with a deadline the sets are cleared in user memory and the
/// request is kept in the descriptor table for the thread's rerun.
fn do_select(
    p: &mut Process,
    m: &mut dyn Machine,
    nfds: u64,
    sets: [u64; 3],
    timeout_ns: Option<u64>,
) -> KResult<Outcome> {
    let nfds = nfds as i32;
    if nfds < 0 {
        return Err(Errno::EINVAL);
    }
    let n = (nfds as usize).min(p.files.limit().max(MAX_FDS));
    let bytes = n.div_ceil(64) * 8;
    let deadline = wait_deadline(m, timeout_ns);
    let tid = m.thread().tid;
    let saved = p.files.select_saved.remove(&tid);
    let mut inp: [Vec<u8>; 3] = Default::default();
    match saved {
        Some(s) if m.restart_deadline().is_some() => inp = s,
        _ => {
            for (i, &addr) in sets.iter().enumerate() {
                if addr != 0 {
                    inp[i] = vec![0u8; bytes];
                    p.vm.copy_from_user(m.pages(), addr, &mut inp[i])?;
                }
            }
        }
    }
    let bit = |v: &Vec<u8>, fd: usize| v.get(fd / 8).is_some_and(|b| b & (1 << (fd % 8)) != 0);
    let mut out: [Vec<u8>; 3] = [vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]];
    let mut ready = 0i64;
    // With no descriptor to watch, the call waits for a signal, as `pause` does.
    let mut local = true;
    let mut watched = false;
    for fd in 0..n {
        let want = [bit(&inp[0], fd), bit(&inp[1], fd), bit(&inp[2], fd)];
        if !want.iter().any(|&w| w) {
            continue;
        }
        watched = true;
        let f = p.files.get(fd as i32)?;
        if f.is_path_only() {
            return Err(Errno::EBADF);
        }
        local &= f.locally_driven();
        let rev = f.poll(POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM | POLLPRI);
        for (i, mask) in [IN_SET, OUT_SET, EX_SET].into_iter().enumerate() {
            if want[i] && rev & mask != 0 {
                out[i][fd / 8] |= 1 << (fd % 8);
                ready += 1;
            }
        }
    }
    let mut result = Outcome::Return(ready);
    if ready == 0 {
        if let Some(wait) = io_wait(p, m, "select", timeout_ns, deadline, local && watched)? {
            if deadline.is_none() {
                // No timeout: the sets stay as asked for the rerun.
                return Ok(wait);
            }
            p.files.select_saved.insert(tid, inp);
            result = wait;
        }
    }
    for (i, &addr) in sets.iter().enumerate() {
        if addr != 0 {
            p.vm.copy_to_user(m.pages(), addr, &out[i])?;
        }
    }
    Ok(result)
}

/// Reads a `timeval` (`sub_scale` 1000) or `timespec` (1) timeout as nanoseconds.
pub(super) fn timeout(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    sub_limit: i64,
    sub_scale: u64,
) -> KResult<Option<u64>> {
    if addr == 0 {
        return Ok(None);
    }
    let ts = get::<16>(p, m, addr)?;
    let (sec, sub) = (le_u64(&ts[..8]) as i64, le_u64(&ts[8..]) as i64);
    if sec < 0 || !(0..sub_limit).contains(&sub) {
        return Err(Errno::EINVAL);
    }
    Ok(Some(
        (sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(sub as u64 * sub_scale),
    ))
}

/// Writes the time left before `deadline` back to the `timespec` (`sub_scale` 1) or
/// `timeval` (1000) at `addr`, as Linux does: zero when the call waits (a timeout leaves
/// none; a rerun rewrites it). Errors are ignored, as on Linux.
pub(super) fn put_remaining(
    p: &mut Process,
    m: &mut dyn Machine,
    addr: u64,
    deadline: Option<u64>,
    out: &Outcome,
    sub_scale: u64,
) {
    let left = match (out, deadline) {
        (Outcome::Return(_), Some(d)) => d.saturating_sub(m.monotonic_ns()),
        _ => 0,
    };
    let mut ts = [0u8; 16];
    ts[..8].copy_from_slice(&(left / 1_000_000_000).to_le_bytes());
    ts[8..].copy_from_slice(&((left % 1_000_000_000) / sub_scale).to_le_bytes());
    let _ = put(p, m, addr, &ts);
}

/// `select(nfds, readfds, writefds, exceptfds, timeval)`. The remaining time is written
/// back (zero after a timeout), as Linux does.
pub(super) fn sys_select(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<Outcome> {
    let t = timeout(p, m, a[4], 1_000_000, 1000)?;
    let out = do_select(p, m, a[0], [a[1], a[2], a[3]], t)?;
    if a[4] != 0 {
        let d = wait_deadline(m, t);
        put_remaining(p, m, a[4], d, &out, 1000);
    }
    Ok(out)
}

/// `pselect6(nfds, readfds, writefds, exceptfds, timespec, {sigmask, size})`. The mask is
/// checked and accepted (see the module documentation).
pub(super) fn sys_pselect6(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<Outcome> {
    let t = timeout(p, m, a[4], 1_000_000_000, 1)?;
    if a[5] != 0 {
        let d = get::<16>(p, m, a[5])?;
        if le_u64(&d) != 0 && le_u64(&d[8..]) != 8 {
            return Err(Errno::EINVAL);
        }
    }
    let out = do_select(p, m, a[0], [a[1], a[2], a[3]], t)?;
    if a[4] != 0 {
        let d = wait_deadline(m, t);
        put_remaining(p, m, a[4], d, &out, 1);
    }
    Ok(out)
}

/// `preadv`/`pwritev` (`flags` `None`) and `preadv2`/`pwritev2`: vector I/O at `pos`
/// without moving the offset; for the `2` forms `pos == -1` uses (and moves) the offset.
/// Flags other than 0 fail with `EOPNOTSUPP`.
pub(super) fn sys_prwv(
    p: &mut Process,
    m: &mut dyn Machine,
    a: [u64; 6],
    write: bool,
    flags: Option<u64>,
) -> KResult<i64> {
    let (fd, iov_addr, cnt, pos) = (a[0] as i32, a[1], a[2], a[3] as i64);
    let at = match (pos, flags) {
        (-1, Some(_)) => None,
        (p, _) if p < 0 => return Err(Errno::EINVAL),
        (p, _) => Some(p as u64),
    };
    let f = io_file(p, fd)?;
    if (write && !f.writable()) || (!write && !f.readable()) {
        return Err(Errno::EBADF);
    }
    if flags.is_some_and(|fl| fl != 0) {
        return Err(Errno::EOPNOTSUPP);
    }
    let Some(off) = at else {
        return if write {
            sys_writev(p, m, fd, iov_addr, cnt)
        } else {
            sys_readv(p, m, fd, iov_addr, cnt)
        };
    };
    if !f.seekable() {
        return Err(Errno::ESPIPE);
    }
    let iov = iovecs(p, m, iov_addr, cnt)?;
    let t = now(m);
    let mut total = 0u64;
    for (base, len) in iov {
        let start = off + total;
        let r = if write {
            write_from_user(p, m, base, len, &mut |m, b, done| {
                f.pwrite(m, b, start + done, t)
            })
        } else {
            read_into_user(p, m, base, len, &mut |m, b, done| {
                f.pread(m, b, start + done)
            })
        };
        match r {
            Ok(n) => {
                total += n;
                if n < len {
                    break;
                }
            }
            Err(_) if total > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total as i64)
}

/// `copy_file_range` between regular files (any file systems; the target must be a `/tmp`
/// file open for writing without `O_APPEND`). Offsets come from the pointers (updated) or
/// the files (advanced).
pub(super) fn sys_copy_file_range(
    p: &mut Process,
    m: &mut dyn Machine,
    a: [u64; 6],
) -> KResult<i64> {
    let (in_fd, in_ptr, out_fd, out_ptr, len, flags) =
        (a[0] as i32, a[1], a[2] as i32, a[3], a[4], a[5]);
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = io_file(p, in_fd)?;
    let fout = io_file(p, out_fd)?;
    let read_off = |p: &mut Process, m: &mut dyn Machine, ptr: u64, f: &OpenFile| {
        if ptr == 0 {
            return Ok(f.offset() as i64);
        }
        get::<8>(p, m, ptr).map(i64::from_le_bytes)
    };
    let in_off = read_off(p, m, in_ptr, &fin)?;
    let out_off = read_off(p, m, out_ptr, &fout)?;
    let (Some(src), Some(dst)) = (fin.inode().cloned(), fout.inode().cloned()) else {
        return Err(Errno::EINVAL);
    };
    if src.is_dir() || dst.is_dir() {
        return Err(Errno::EISDIR);
    }
    if !src.is_regular() || !dst.is_regular() {
        return Err(Errno::EINVAL);
    }
    if !fin.readable() || !fout.writable() || fout.status_flags() & O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    if in_off < 0 || out_off < 0 {
        return Err(Errno::EINVAL);
    }
    let (in_off, out_off) = (in_off as u64, out_off as u64);
    let len = len.min(MAX_RW).min(src.size().saturating_sub(in_off));
    if Arc::ptr_eq(&src, &dst) && in_off < out_off + len && out_off < in_off + len {
        return Err(Errno::EINVAL);
    }
    let t = now(m);
    let mut buf = vec![0u8; (len as usize).min(CHUNK)];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(CHUNK);
        let n = src.read_at(in_off + done, &mut buf[..want]);
        if n == 0 {
            break;
        }
        match dst.write_at(out_off + done, &buf[..n], t) {
            Ok(w) => done += w as u64,
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        }
    }
    if in_ptr != 0 {
        put(p, m, in_ptr, &(in_off + done).to_le_bytes())?;
    } else {
        fin.set_offset(in_off + done);
    }
    if out_ptr != 0 {
        put(p, m, out_ptr, &(out_off + done).to_le_bytes())?;
    } else {
        fout.set_offset(out_off + done);
    }
    Ok(done as i64)
}
