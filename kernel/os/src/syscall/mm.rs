//! Memory system calls: `brk`, `mmap`, `munmap`, `mprotect`, `mremap`, `madvise`, `msync`,
//! `mincore`, and the `mlock` family.
//!
//! File mappings are copies: Kiln's files live in memory (the read-only root and `/tmp`), so
//! `MAP_PRIVATE` file maps copy the bytes in (pages of root-filesystem files that the mapping
//! cannot write are mapped in place where their bytes are page-aligned, and copied when a
//! write or `mprotect` makes them writable), `MAP_SHARED` file maps are accepted when they
//! cannot write (nobody can tell the copy from the file), and shared maps of `/tmp` files
//! and of volumes' files are copies kept coherent with the file ([`shared`]). Other
//! writable shared file maps fail with `ENODEV` ("this file cannot be memory-mapped that
//! way").

pub mod shared;

use crate::errno::{Errno, KResult};
use crate::machine::{Machine, Prot, PAGE_SIZE};
use crate::process::{Outcome, Process};
use crate::sysno;
use crate::vm::{
    page_down, page_up, Access, MAP_ANONYMOUS, MAP_FIXED, MAP_SHARED, MAP_SHARED_VALIDATE,
    MAP_TYPE, USER_END,
};

const PROT_READ_WRITE_EXEC: u64 = 0x7;
const PROT_SEM: u64 = 0x8;
const PROT_GROWSDOWN: u64 = 0x0100_0000;
const PROT_GROWSUP: u64 = 0x0200_0000;

const MS_ASYNC: u64 = 1;
const MS_INVALIDATE: u64 = 2;
const MS_SYNC: u64 = 4;

const MLOCK_ONFAULT: u64 = 1;
const MCL_CURRENT: u64 = 1;
const MCL_FUTURE: u64 = 2;
const MCL_ONFAULT: u64 = 4;

/// Handles the memory system calls; `None` for numbers this family does not own.
#[inline(never)]
pub fn handle(p: &mut Process, m: &mut dyn Machine, nr: u64, a: [u64; 6]) -> Option<Outcome> {
    let r: KResult<u64> = match nr {
        sysno::BRK => Ok(p.vm.brk(m.pages(), a[0])),
        sysno::MMAP => mmap(p, m, a),
        sysno::MUNMAP => {
            shared::flush_range(p, m, a[0], a[0].saturating_add(a[1]));
            p.vm.munmap(m.pages(), a[0], a[1]).map(|_| 0)
        }
        sysno::MPROTECT => prot(a[2]).and_then(|prot| {
            if a[2] & PROT_GROWSDOWN != 0 && a[2] & PROT_GROWSUP != 0 {
                return Err(Errno::EINVAL);
            }
            p.vm.mprotect(m.pages(), a[0], a[1], prot).map(|_| 0)
        }),
        sysno::MREMAP => {
            shared::flush_range(p, m, a[0], a[0].saturating_add(a[1]));
            p.vm.mremap(m.pages(), a[0], a[1], a[2], a[3], a[4])
        }
        sysno::MADVISE => p.vm.madvise(m.pages(), a[0], a[1], a[2]).map(|_| 0),
        sysno::MSYNC => {
            shared::flush_range(p, m, a[0], a[0].saturating_add(a[1]));
            msync(p, a)
        }
        sysno::MINCORE => mincore(p, m, a),
        sysno::MLOCK => mlock(p, m, a[0], a[1], 0),
        sysno::MLOCK2 => mlock(p, m, a[0], a[1], a[2]),
        sysno::MUNLOCK => range(a[0], a[1]).and_then(|(s, e)| {
            if p.vm.is_mapped(s, e) {
                Ok(0)
            } else {
                Err(Errno::ENOMEM)
            }
        }),
        sysno::MLOCKALL => mlockall(p, m, a[0]),
        sysno::MUNLOCKALL => Ok(0),
        _ => return None,
    };
    Some(match r {
        Ok(v) => Outcome::Return(v as i64),
        Err(e) => Outcome::Return(e.as_return()),
    })
}

/// Decodes `PROT_*` bits, refusing unknown ones (`EINVAL`).
fn prot(bits: u64) -> KResult<Prot> {
    if bits & !(PROT_READ_WRITE_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Prot::from_bits(bits))
}

/// The page range `[page_down(addr), page_up(addr + len))` for `mlock`-style calls, which
/// round the start down (`ENOMEM` when it leaves user space, `EINVAL` when it wraps).
fn range(addr: u64, len: u64) -> KResult<(u64, u64)> {
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    let end = page_up(end).ok_or(Errno::EINVAL)?;
    if end > USER_END {
        return Err(Errno::ENOMEM);
    }
    Ok((page_down(addr), end))
}

fn mmap(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<u64> {
    let [addr, len, prot_bits, flags, fd, offset] = a;
    // mmap ignores unknown PROT bits other than the grows flags, as Linux does.
    let prot = Prot::from_bits(prot_bits);
    if !offset.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_ANONYMOUS != 0 {
        return p.vm.mmap(m.pages(), addr, len, prot, flags);
    }
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    if offset.checked_add(len).is_none() {
        return Err(Errno::EOVERFLOW);
    }
    let fd = i32::try_from(fd as i64).map_err(|_| Errno::EBADF)?;
    let path = p.files.get(fd)?.path.clone();
    if path == "/dev/zero" {
        // Mapping /dev/zero is how anonymous memory was asked for before MAP_ANONYMOUS
        // (shared or private): it is exactly that.
        return p.vm.mmap(m.pages(), addr, len, prot, flags);
    }
    if flags & MAP_FIXED != 0 {
        shared::flush_range(p, m, addr, addr.saturating_add(len));
    }
    let file = p.files.get(fd)?;
    if let Some(inode) = file.inode().cloned() {
        shared::flush_inode(p, m, &inode);
    }
    let kind = flags & MAP_TYPE;
    if (kind == MAP_SHARED || kind == MAP_SHARED_VALIDATE) && prot.write {
        // A /tmp file opened for writing is shared through a copy kept coherent (see
        // `shared`); writes through other mappings would never reach their file.
        return match file.inode() {
            Some(inode)
                if inode.seals().unwrap_or(0)
                    & (crate::fs::node::F_SEAL_WRITE | crate::fs::node::F_SEAL_FUTURE_WRITE)
                    != 0 =>
            {
                Err(Errno::EPERM)
            }
            Some(inode) if inode.maps_shared() && file.writable() => {
                let inode = inode.clone();
                p.vm.mmap_shared_file(m.pages(), addr, len, prot, flags, path, offset, inode)
            }
            _ if file.readable() && !file.writable() => Err(Errno::EACCES),
            _ => Err(Errno::ENODEV),
        };
    }
    // A read-only shared mapping of a /tmp file follows the file's changes (bbolt, inside
    // etcd, writes its database with pwrite and reads it through such a mapping).
    if kind == MAP_SHARED || kind == MAP_SHARED_VALIDATE {
        if let Some(inode) = file.inode().filter(|i| i.maps_shared()) {
            if !file.readable() {
                return Err(Errno::EACCES);
            }
            let inode = inode.clone();
            return p
                .vm
                .mmap_shared_file(m.pages(), addr, len, prot, flags, path, offset, inode);
        }
    }
    if let Some(file) = crate::syscall::fs::static_bytes_for_mmap(p, fd)? {
        return p
            .vm
            .mmap_file_in_place(m.pages(), addr, len, prot, flags, path, offset, file);
    }
    let want = usize::try_from(len).map_err(|_| Errno::ENOMEM)?;
    let data = crate::syscall::fs::read_for_mmap(p, m, fd, offset, want)?;
    p.vm.mmap_file(m.pages(), addr, len, prot, flags, path, offset, &data)
}

fn msync(p: &mut Process, a: [u64; 6]) -> KResult<u64> {
    let [addr, len, flags, ..] = a;
    if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
        || (flags & MS_ASYNC != 0 && flags & MS_SYNC != 0)
        || !addr.is_multiple_of(PAGE_SIZE)
    {
        return Err(Errno::EINVAL);
    }
    let end = addr
        .checked_add(len)
        .and_then(page_up)
        .ok_or(Errno::ENOMEM)?;
    if end > USER_END || !p.vm.is_mapped(addr, end) {
        return Err(Errno::ENOMEM);
    }
    // Every file mapping is a private copy or read-only: there is nothing to write back.
    Ok(0)
}

fn mincore(p: &mut Process, m: &mut dyn Machine, a: [u64; 6]) -> KResult<u64> {
    let [addr, len, vec, ..] = a;
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let end = addr
        .checked_add(len)
        .and_then(page_up)
        .ok_or(Errno::ENOMEM)?;
    if end > USER_END {
        return Err(Errno::ENOMEM);
    }
    let pt = m.pages();
    let resident = p.vm.residency(pt, addr, end)?;
    p.vm.copy_to_user(pt, vec, &resident)?;
    Ok(0)
}

/// `mlock`/`mlock2`: memory is never swapped here, so locking only means giving the pages
/// frames now (unless `MLOCK_ONFAULT`).
fn mlock(p: &mut Process, m: &mut dyn Machine, addr: u64, len: u64, flags: u64) -> KResult<u64> {
    if flags & !MLOCK_ONFAULT != 0 {
        return Err(Errno::EINVAL);
    }
    let (start, end) = range(addr, len)?;
    if !p.vm.is_mapped(start, end) {
        return Err(Errno::ENOMEM);
    }
    if flags & MLOCK_ONFAULT == 0 {
        p.vm.populate_range(m.pages(), start, end, Access::Read)?;
    }
    Ok(0)
}

/// `mlockall`: `MCL_CURRENT` gives every accessible page of every region a frame;
/// `MCL_FUTURE` needs nothing (pages are never swapped out).
fn mlockall(p: &mut Process, m: &mut dyn Machine, flags: u64) -> KResult<u64> {
    if flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0
        || flags & (MCL_CURRENT | MCL_FUTURE) == 0
    {
        return Err(Errno::EINVAL);
    }
    if flags & MCL_CURRENT != 0 && flags & MCL_ONFAULT == 0 {
        let regions: alloc::vec::Vec<(u64, u64)> = p.vm.vmas().map(|(s, v)| (s, v.end)).collect();
        let pt = m.pages();
        for (s, e) in regions {
            p.vm.populate_range(pt, s, e, Access::Read)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::testutil::*;
    use crate::vm::{MAP_FIXED, MAP_PRIVATE, MMAP_BASE};
    use alloc::vec::Vec;

    const P: u64 = PAGE_SIZE;
    const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
    const EINVAL: i64 = -22;
    const ENOMEM: i64 = -12;

    fn open(p: &mut Process, m: &mut crate::testing::FakeMachine, buf: u64, path: &str) -> u64 {
        let mut z = path.as_bytes().to_vec();
        z.push(0);
        poke(p, m, buf, &z);
        let fd = call(p, m, sysno::OPENAT, &[(-100i64) as u64, buf, 0, 0]);
        assert!(fd >= 0, "open {path}: {fd}");
        fd as u64
    }

    #[test]
    fn other_numbers_are_not_ours() {
        let (mut p, mut m, _) = setup();
        assert_eq!(handle(&mut p, &mut m, sysno::READ, [0; 6]), None);
    }

    #[test]
    fn anonymous_mmap_munmap_mprotect() {
        let (mut p, mut m, _) = setup();
        let a = call(
            &mut p,
            &mut m,
            sysno::MMAP,
            &[0, 2 * P, 3, ANON, u64::MAX, 0],
        );
        assert!(a > 0 && a as u64 <= MMAP_BASE - 2 * P);
        let a = a as u64;
        poke(&mut p, &mut m, a, b"hi");
        assert_eq!(call(&mut p, &mut m, sysno::MPROTECT, &[a, P, 1]), 0);
        assert!(p.vm.copy_to_user(&mut m.pages, a, b"x").is_err());
        assert_eq!(call(&mut p, &mut m, sysno::MPROTECT, &[a, P, 0x10]), EINVAL);
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::MPROTECT,
                &[a, P, 1 | PROT_GROWSDOWN | PROT_GROWSUP]
            ),
            EINVAL
        );
        assert_eq!(call(&mut p, &mut m, sysno::MUNMAP, &[a, 2 * P]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::MPROTECT, &[a, P, 1]), ENOMEM);
        assert_eq!(
            call(&mut p, &mut m, sysno::MMAP, &[0, P, 3, ANON, 0, 1]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::MMAP, &[0, 0, 3, ANON, 0, 0]),
            EINVAL
        );
    }

    #[test]
    fn brk_and_mremap_through_the_table() {
        let (mut p, mut m, _) = setup();
        p.vm.init_brk(0x60_0000);
        assert_eq!(call(&mut p, &mut m, sysno::BRK, &[0]), 0x60_0000);
        assert_eq!(call(&mut p, &mut m, sysno::BRK, &[0x60_2000]), 0x60_2000);
        assert_eq!(call(&mut p, &mut m, sysno::BRK, &[0x10]), 0x60_2000);
        let a = call(
            &mut p,
            &mut m,
            sysno::MMAP,
            &[0x7000_0000, P, 3, ANON, 0, 0],
        ) as u64;
        let b = call(&mut p, &mut m, sysno::MREMAP, &[a, P, 4 * P, 0, 0]);
        assert_eq!(b as u64, a);
        assert_eq!(call(&mut p, &mut m, sysno::MADVISE, &[a, 4 * P, 4]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::MADVISE, &[a + 1, P, 4]), EINVAL);
    }

    #[test]
    fn msync_mincore_mlock() {
        let (mut p, mut m, buf) = setup();
        let a = call(
            &mut p,
            &mut m,
            sysno::MMAP,
            &[0x7000_0000, 3 * P, 3, ANON, 0, 0],
        ) as u64;
        assert_eq!(call(&mut p, &mut m, sysno::MSYNC, &[a, 3 * P, MS_SYNC]), 0);
        assert_eq!(
            call(
                &mut p,
                &mut m,
                sysno::MSYNC,
                &[a, 3 * P, MS_SYNC | MS_ASYNC]
            ),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::MSYNC, &[a + 1, P, MS_SYNC]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::MSYNC, &[a, 4 * P, MS_ASYNC]),
            ENOMEM
        );
        poke(&mut p, &mut m, a + P, b"x");
        assert_eq!(call(&mut p, &mut m, sysno::MINCORE, &[a, 3 * P, buf]), 0);
        assert_eq!(peek(&mut p, &mut m, buf, 3), [0, 1, 0]);
        assert_eq!(
            call(&mut p, &mut m, sysno::MINCORE, &[a, 3 * P, UNMAPPED]),
            -14
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::MINCORE, &[a, 4 * P, buf]),
            ENOMEM
        );
        // mlock gives the pages frames now; ONFAULT does not.
        assert_eq!(
            call(&mut p, &mut m, sysno::MLOCK2, &[a, 3 * P, MLOCK_ONFAULT]),
            0
        );
        assert!(!m.pages.pages.contains_key(&a));
        assert_eq!(call(&mut p, &mut m, sysno::MLOCK, &[a + 5, 3 * P - 5]), 0);
        assert_eq!(m.pages.pages.range(a..a + 3 * P).count(), 3);
        assert_eq!(call(&mut p, &mut m, sysno::MLOCK, &[a, 4 * P]), ENOMEM);
        assert_eq!(call(&mut p, &mut m, sysno::MLOCK2, &[a, P, 2]), EINVAL);
        assert_eq!(call(&mut p, &mut m, sysno::MUNLOCK, &[a, 3 * P]), 0);
        assert_eq!(call(&mut p, &mut m, sysno::MUNLOCK, &[a, 4 * P]), ENOMEM);
        assert_eq!(call(&mut p, &mut m, sysno::MLOCKALL, &[0]), EINVAL);
        assert_eq!(
            call(&mut p, &mut m, sysno::MLOCKALL, &[MCL_ONFAULT]),
            EINVAL
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::MLOCKALL, &[MCL_CURRENT | MCL_FUTURE]),
            0
        );
        assert_eq!(m.pages.pages.range(buf..buf + 4 * P).count(), 4);
        assert_eq!(call(&mut p, &mut m, sysno::MUNLOCKALL, &[]), 0);
    }

    #[test]
    fn file_mappings_are_private_copies() {
        let (mut p, mut m, buf) = setup_with(&[("etc/data", b"hello, file")]);
        let fd = open(&mut p, &mut m, buf, "/etc/data");
        let a = call(
            &mut p,
            &mut m,
            sysno::MMAP,
            &[0, 100, 1, MAP_PRIVATE, fd, 0],
        );
        assert!(a > 0, "{a}");
        let a = a as u64;
        assert_eq!(peek(&mut p, &mut m, a, 12), b"hello, file\0");
        assert!(p.vm.maps_text("/bin/prog").contains("/etc/data"));
        // Private and writable: a copy.
        let b = call(&mut p, &mut m, sysno::MMAP, &[0, P, 3, MAP_PRIVATE, fd, 0]) as u64;
        poke(&mut p, &mut m, b, b"J");
        assert_eq!(peek(&mut p, &mut m, b, 5), b"Jello");
        // Shared read-only is fine; shared writable needs a descriptor open for writing.
        assert!(call(&mut p, &mut m, sysno::MMAP, &[0, P, 1, MAP_SHARED, fd, 0]) > 0);
        assert_eq!(
            call(&mut p, &mut m, sysno::MMAP, &[0, P, 3, MAP_SHARED, fd, 0]),
            -13
        );
        // Bad descriptors and offsets.
        assert_eq!(
            call(&mut p, &mut m, sysno::MMAP, &[0, P, 1, MAP_PRIVATE, 99, 0]),
            -9
        );
        assert_eq!(
            call(&mut p, &mut m, sysno::MMAP, &[0, P, 1, MAP_PRIVATE, fd, 3]),
            EINVAL
        );
        // /dev/zero maps as anonymous memory, shared writable included.
        let z = open(&mut p, &mut m, buf, "/dev/zero");
        let c = call(&mut p, &mut m, sysno::MMAP, &[0, P, 3, MAP_SHARED, z, 0]);
        assert!(c > 0, "{c}");
        let f = call(
            &mut p,
            &mut m,
            sysno::MMAP,
            &[0x7100_0000, P, 3, MAP_PRIVATE | MAP_FIXED, fd, 0],
        );
        assert_eq!(f, 0x7100_0000);
    }

    /// `openat(path, flags, 0o600)`: the descriptor.
    fn open_rw(p: &mut Process, m: &mut crate::testing::FakeMachine, buf: u64, path: &str) -> u64 {
        let mut z = path.as_bytes().to_vec();
        z.push(0);
        poke(p, m, buf, &z);
        let flags = u64::from(crate::fd::O_RDWR | crate::fd::O_CREAT);
        let fd = call(p, m, sysno::OPENAT, &[(-100i64) as u64, buf, flags, 0o600]);
        assert!(fd >= 0, "open {path}: {fd}");
        fd as u64
    }

    /// `pwrite(fd, data, off)` through a scratch buffer at `buf`.
    fn pwrite(
        p: &mut Process,
        m: &mut crate::testing::FakeMachine,
        buf: u64,
        fd: u64,
        data: &[u8],
        off: u64,
    ) {
        poke(p, m, buf, data);
        let n = data.len() as u64;
        assert_eq!(call(p, m, sysno::PWRITE64, &[fd, buf, n, off]), n as i64);
    }

    /// `pread(fd, n, off)` through a scratch buffer at `buf`.
    fn pread(
        p: &mut Process,
        m: &mut crate::testing::FakeMachine,
        buf: u64,
        fd: u64,
        n: usize,
        off: u64,
    ) -> Vec<u8> {
        let got = call(p, m, sysno::PREAD64, &[fd, buf, n as u64, off]);
        assert!(got >= 0, "pread: {got}");
        peek(p, m, buf, got as usize)
    }

    #[test]
    fn shared_tmp_mappings_and_the_file_are_one() {
        let (mut p, mut m, buf) = setup();
        let (p_, m_) = (&mut p, &mut m);
        let fd = open_rw(p_, m_, buf, "/tmp/shm");
        assert_eq!(call(p_, m_, sysno::FTRUNCATE, &[fd, 2 * P]), 0);
        let a = call(p_, m_, sysno::MMAP, &[0, 2 * P, 3, MAP_SHARED, fd, 0]);
        assert!(a > 0, "{a}");
        let a = a as u64;
        assert!(
            p_.vm.maps_text("/bin/prog").contains("rw-s"),
            "{}",
            p_.vm.maps_text("/bin/prog")
        );
        // Written through the mapping: read through the descriptor, both pages.
        poke(p_, m_, a + 10, b"through the map");
        poke(p_, m_, a + P + 1, b"page two");
        assert_eq!(pread(p_, m_, buf, fd, 15, 10), b"through the map");
        assert_eq!(pread(p_, m_, buf, fd, 8, P + 1), b"page two");
        // Written through the descriptor: seen in the mapping.
        pwrite(p_, m_, buf, fd, b"THROUGH", 10);
        assert_eq!(peek(p_, m_, a + 10, 15), b"THROUGH the map");
        // Another descriptor of the same file, and a private copy made now, see it all.
        let fd2 = open_rw(p_, m_, buf, "/tmp/shm");
        poke(p_, m_, a + 100, b"late");
        assert_eq!(pread(p_, m_, buf, fd2, 4, 100), b"late");
        poke(p_, m_, a + 200, b"copy");
        let c = call(p_, m_, sysno::MMAP, &[0, P, 1, MAP_PRIVATE, fd2, 0]) as u64;
        assert_eq!(peek(p_, m_, c + 200, 4), b"copy");
        // A second shared mapping of the same bytes cannot be a second copy.
        assert_eq!(
            call(p_, m_, sysno::MMAP, &[0, P, 3, MAP_SHARED, fd2, P]),
            -19
        );
        // Growing the file by a write shows in the mapping's second page...
        pwrite(p_, m_, buf, fd, b"end", 2 * P - 3);
        assert_eq!(peek(p_, m_, a + 2 * P - 3, 3), b"end");
        // and shrinking the file zeroes what is cut off.
        assert_eq!(call(p_, m_, sysno::FTRUNCATE, &[fd, P + 4]), 0);
        assert_eq!(peek(p_, m_, a + P + 1, 8), b"pag\0\0\0\0\0");
        // The mapping never grows the file.
        poke(p_, m_, a + P + 100, b"beyond");
        assert_eq!(pread(p_, m_, buf, fd, 64, P), b"\0pag");
        // Unmapping writes the last changes back.
        poke(p_, m_, a + 50, b"last words");
        assert_eq!(call(p_, m_, sysno::MUNMAP, &[a, 2 * P]), 0);
        assert_eq!(pread(p_, m_, buf, fd2, 10, 50), b"last words");
        // Now the bytes are free for a new shared mapping.
        assert!(call(p_, m_, sysno::MMAP, &[0, P, 3, MAP_SHARED, fd2, 0]) > 0);
    }

    #[test]
    fn writes_show_in_a_read_only_mapping_of_the_whole_file_page_by_page() {
        // bbolt's way: the file mapped read-only and shared, far beyond its end, written
        // with pwrite (and here with write and writev too); each write shows in the
        // mapping, and only what it wrote changes.
        let (mut p, mut m, buf) = setup();
        let (p_, m_) = (&mut p, &mut m);
        let fd = open_rw(p_, m_, buf, "/tmp/db");
        assert_eq!(call(p_, m_, sysno::FTRUNCATE, &[fd, 4 * P]), 0);
        let a = call(p_, m_, sysno::MMAP, &[0, 64 * P, 1, MAP_SHARED, fd, 0]);
        assert!(a > 0, "{a}");
        let a = a as u64;
        // The pages are read first, so each write must reach a page already mapped.
        for page in 0..6 {
            assert_eq!(peek(p_, m_, a + page * P, 1), [0]);
        }
        pwrite(p_, m_, buf, fd, b"page three", 3 * P + 8);
        assert_eq!(peek(p_, m_, a + 3 * P + 8, 10), b"page three");
        assert_eq!(peek(p_, m_, a + 3 * P, 8), [0; 8]);
        // Across a page boundary, growing the file.
        pwrite(p_, m_, buf, fd, b"straddles", 5 * P - 4);
        assert_eq!(peek(p_, m_, a + 5 * P - 4, 9), b"straddles");
        // write at the descriptor's position, then writev after it.
        assert_eq!(call(p_, m_, sysno::LSEEK, &[fd, P + 1, 0]), (P + 1) as i64);
        poke(p_, m_, buf, b"positioned");
        assert_eq!(call(p_, m_, sysno::WRITE, &[fd, buf, 10]), 10);
        poke(p_, m_, buf + 64, b"vector");
        let iov = [buf + 64, 6]
            .iter()
            .flat_map(|v: &u64| v.to_le_bytes())
            .collect::<Vec<u8>>();
        poke(p_, m_, buf + 128, &iov);
        assert_eq!(call(p_, m_, sysno::WRITEV, &[fd, buf + 128, 1]), 6);
        assert_eq!(peek(p_, m_, a + P + 1, 16), b"positionedvector");
        // A failed write changes nothing.
        assert_eq!(call(p_, m_, sysno::PWRITE64, &[fd, 8, 4, 0]), -14);
        assert_eq!(peek(p_, m_, a, 4), [0; 4]);
        // Earlier writes are still there.
        assert_eq!(peek(p_, m_, a + 3 * P + 8, 10), b"page three");
    }

    #[test]
    fn a_write_seal_and_a_writable_shared_mapping_exclude_each_other() {
        let (mut p, mut m, buf) = setup();
        let (p_, m_) = (&mut p, &mut m);
        poke(p_, m_, buf, b"seal\0");
        let fd = call(p_, m_, sysno::MEMFD_CREATE, &[buf, 2]);
        assert!(fd >= 0, "{fd}");
        let fd = fd as u64;
        assert_eq!(call(p_, m_, sysno::FTRUNCATE, &[fd, P]), 0);
        let a = call(p_, m_, sysno::MMAP, &[0, P, 3, MAP_SHARED, fd, 0]);
        assert!(a > 0, "{a}");
        assert_eq!(call(p_, m_, sysno::FCNTL, &[fd, 1033, 8]), -16, "EBUSY");
        assert_eq!(call(p_, m_, sysno::MUNMAP, &[a as u64, P]), 0);
        assert_eq!(call(p_, m_, sysno::FCNTL, &[fd, 1033, 8]), 0);
        assert_eq!(
            call(p_, m_, sysno::MMAP, &[0, P, 3, MAP_SHARED, fd, 0]),
            -1,
            "EPERM"
        );
        assert!(call(p_, m_, sysno::MMAP, &[0, P, 1, MAP_SHARED, fd, 0]) > 0);
    }
}
