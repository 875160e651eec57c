use super::*;
use crate::fd::poll::{POLLHUP, POLLIN, POLLOUT};
use crate::fd::{O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR};
use crate::fs::node::{S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG};
use crate::fs::Vfs;
use crate::testing::FakeMachine;

const SCRATCH: u64 = 0x10_0000;
const SCRATCH_LEN: u64 = 0x10_0000;

struct T {
    p: Process,
    m: FakeMachine,
    next: u64,
}

fn rootfs() -> &'static [u8] {
    crate::fs::tests::rootfs()
}

impl T {
    fn new() -> T {
        let vfs = Vfs::new(rootfs(), "/bin/app", b"").unwrap();
        let (p, mut m) =
            crate::syscall::testutil::process_with_memory(vfs, "/bin/app", SCRATCH, SCRATCH_LEN);
        m.now = 1_000;
        m.epoch_offset = 5_000_000_000;
        T {
            p,
            m,
            next: SCRATCH,
        }
    }

    fn call(&mut self, nr: u64, args: &[u64]) -> i64 {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        match handle(&mut self.p, &mut self.m, nr, a) {
            Some(Outcome::Return(v)) => v,
            other => panic!("syscall {nr}: {other:?}"),
        }
    }

    fn outcome(&mut self, nr: u64, args: &[u64]) -> Outcome {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        handle(&mut self.p, &mut self.m, nr, a).expect("owned by the family")
    }

    fn alloc(&mut self, n: u64) -> u64 {
        let a = self.next;
        self.next += n.div_ceil(16) * 16;
        assert!(self.next <= SCRATCH + SCRATCH_LEN);
        a
    }

    fn put(&mut self, data: &[u8]) -> u64 {
        let a = self.alloc(data.len() as u64 + 1);
        self.p.vm.copy_to_user(self.m.pages(), a, data).unwrap();
        a
    }

    fn cstr(&mut self, s: &str) -> u64 {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(&v)
    }

    fn read(&mut self, addr: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.p
            .vm
            .copy_from_user(self.m.pages(), addr, &mut b)
            .unwrap();
        b
    }

    fn open(&mut self, path: &str, flags: u32, mode: u64) -> i64 {
        let p = self.cstr(path);
        self.call(nr::OPENAT, &[AT_FDCWD as u64, p, u64::from(flags), mode])
    }

    fn read_fd(&mut self, fd: i64, n: usize) -> Result<Vec<u8>, i64> {
        let b = self.alloc(n as u64);
        let r = self.call(nr::READ, &[fd as u64, b, n as u64]);
        if r < 0 {
            return Err(r);
        }
        Ok(self.read(b, r as usize))
    }

    fn write_fd(&mut self, fd: i64, data: &[u8]) -> i64 {
        let b = self.put(data);
        self.call(nr::WRITE, &[fd as u64, b, data.len() as u64])
    }

    fn stat(&mut self, nr: u64, args: &[u64]) -> Result<Stat144, i64> {
        let buf = self.alloc(144);
        let mut a = args.to_vec();
        // The buffer goes in the slot after the path (stat/lstat: 1, newfstatat: 2).
        let slot = if nr == nr::NEWFSTATAT { 2 } else { 1 };
        a.insert(slot, buf);
        let r = self.call(nr, &a);
        if r < 0 {
            return Err(r);
        }
        Ok(Stat144(self.read(buf, 144)))
    }
}

struct Stat144(Vec<u8>);

impl Stat144 {
    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.0[off..off + 8].try_into().unwrap())
    }
    fn ino(&self) -> u64 {
        self.u64(8)
    }
    fn mode(&self) -> u32 {
        u32::from_le_bytes(self.0[24..28].try_into().unwrap())
    }
    fn size(&self) -> u64 {
        self.u64(48)
    }
}

const E: fn(Errno) -> i64 = Errno::as_return;

#[test]
fn not_ours() {
    let mut t = T::new();
    assert!(handle(&mut t.p, &mut t.m, nr::MMAP, [0; 6]).is_none());
    assert!(handle(&mut t.p, &mut t.m, nr::EXIT_GROUP, [0; 6]).is_none());
}

#[test]
fn console() {
    let mut t = T::new();
    assert_eq!(t.write_fd(1, b"out\n"), 4);
    assert_eq!(t.write_fd(2, b"err\n"), 4);
    assert_eq!(t.m.stdout, b"out\n");
    assert_eq!(t.m.stderr, b"err\n");
    assert_eq!(t.read_fd(0, 10), Ok(vec![]));
    assert_eq!(t.write_fd(0, b"x"), E(Errno::EBADF));
    assert_eq!(t.read_fd(1, 1), Err(E(Errno::EBADF)));
    let ws = t.alloc(8);
    assert_eq!(t.call(nr::IOCTL, &[1, 0x5401, ws]), E(Errno::ENOTTY));
    assert_eq!(t.call(nr::IOCTL, &[1, 0x5413, ws]), E(Errno::ENOTTY));
    assert_eq!(t.call(nr::IOCTL, &[9, 0x5413, ws]), E(Errno::EBADF));
    assert_eq!(t.call(nr::LSEEK, &[1, 0, 0]), E(Errno::ESPIPE));
    assert_eq!(t.stat(nr::FSTAT, &[1]).unwrap().mode(), S_IFCHR | 0o620);
    assert_eq!(t.call(nr::FSYNC, &[1]), E(Errno::EINVAL));
    // glibc's start-up check: poll fds 0-2 with timeout 0.
    let mut pfds = Vec::new();
    for fd in 0..3i32 {
        pfds.extend_from_slice(&fd.to_le_bytes());
        pfds.extend_from_slice(&POLLIN.to_le_bytes());
        pfds.extend_from_slice(&[0, 0]);
    }
    let a = t.put(&pfds);
    assert_eq!(t.call(nr::POLL, &[a, 3, 0]), 1);
    let back = t.read(a, 24);
    assert_eq!(u16::from_le_bytes([back[6], back[7]]), POLLIN);
    assert_eq!(u16::from_le_bytes([back[14], back[15]]), 0);
}

#[test]
fn reading_the_rootfs() {
    let mut t = T::new();
    let fd = t.open("/etc/hosts", O_RDONLY | O_CLOEXEC, 0);
    assert_eq!(fd, 3);
    assert_eq!(t.read_fd(fd, 9).unwrap(), b"127.0.0.1");
    assert_eq!(t.read_fd(fd, 100).unwrap(), b" localhost\n");
    assert_eq!(t.read_fd(fd, 100).unwrap(), b"");
    assert_eq!(t.call(nr::LSEEK, &[fd as u64, 4, 0]), 4);
    let b = t.alloc(3);
    assert_eq!(t.call(nr::PREAD64, &[fd as u64, b, 3, 0]), 3);
    assert_eq!(t.read(b, 3), b"127");
    assert_eq!(
        t.call(nr::PREAD64, &[fd as u64, b, 3, u64::MAX]),
        E(Errno::EINVAL)
    );
    assert_eq!(t.read_fd(fd, 1).unwrap(), b"0");
    // readv across two buffers.
    t.call(nr::LSEEK, &[fd as u64, 0, 0]);
    let (b1, b2) = (t.alloc(4), t.alloc(4));
    let mut iov = Vec::new();
    for (b, l) in [(b1, 4u64), (b2, 4)] {
        iov.extend_from_slice(&b.to_le_bytes());
        iov.extend_from_slice(&l.to_le_bytes());
    }
    let iova = t.put(&iov);
    assert_eq!(t.call(nr::READV, &[fd as u64, iova, 2]), 8);
    assert_eq!(t.read(b2, 4), b"0.0.");
    assert_eq!(
        t.call(nr::READV, &[fd as u64, iova, 1025]),
        E(Errno::EINVAL)
    );
    // Errors.
    assert_eq!(t.call(nr::READ, &[fd as u64, 0x10, 4]), E(Errno::EFAULT));
    assert_eq!(t.write_fd(fd, b"x"), E(Errno::EBADF));
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, 1]), 1);
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, 3]), i64::from(O_LARGEFILE));
    assert_eq!(t.call(nr::CLOSE, &[fd as u64]), 0);
    assert_eq!(t.call(nr::CLOSE, &[fd as u64]), E(Errno::EBADF));
    assert_eq!(t.read_fd(fd, 1), Err(E(Errno::EBADF)));
    assert_eq!(t.open("/etc/hosts", O_RDWR, 0), E(Errno::EROFS));
    assert_eq!(
        t.open("/etc/nothing", O_RDWR | O_CREAT, 0o644),
        E(Errno::EROFS)
    );
    assert_eq!(t.open("/etc/hosts", O_RDONLY | O_CREAT, 0o644), 3);
    assert_eq!(
        t.open("/etc/hosts", O_RDONLY | O_CREAT | O_EXCL, 0o644),
        E(Errno::EEXIST)
    );
    assert_eq!(t.open("/etc/hosts", O_DIRECTORY, 0), E(Errno::ENOTDIR));
    assert_eq!(t.open("/nope", O_RDONLY, 0), E(Errno::ENOENT));
    assert_eq!(
        t.call(nr::OPENAT, &[AT_FDCWD as u64, 0x10, 0, 0]),
        E(Errno::EFAULT)
    );
    let long = "a/".repeat(2048);
    assert_eq!(t.open(&long, O_RDONLY, 0), E(Errno::ENAMETOOLONG));
    let dir = t.open("/etc", O_RDONLY | O_DIRECTORY, 0);
    assert_eq!(t.read_fd(dir, 4), Err(E(Errno::EISDIR)));
    // Old-style open and relative openat.
    let p = t.cstr("hosts");
    assert_eq!(t.call(nr::OPENAT, &[dir as u64, p, 0, 0]), 5);
    let hosts = t.open("/etc/hosts", 0, 0);
    assert_eq!(
        t.call(nr::OPENAT, &[hosts as u64, p, 0, 0]),
        E(Errno::ENOTDIR)
    );
    assert_eq!(t.call(nr::OPENAT, &[99, p, 0, 0]), E(Errno::EBADF));
    let abs = t.cstr("/etc/hosts");
    assert_eq!(t.call(nr::OPENAT, &[99, abs, 0, 0]), 7);
    assert_eq!(t.call(nr::OPEN, &[abs, 0, 0]), 8);
}

#[test]
fn tmp_files() {
    let mut t = T::new();
    let fd = t.open("/tmp/log", O_RDWR | O_CREAT | O_EXCL, 0o666) as u64;
    assert_eq!(t.write_fd(fd as i64, b"hello"), 5);
    let st = t.stat(nr::FSTAT, &[fd]).unwrap();
    assert_eq!(st.mode(), S_IFREG | 0o644);
    assert_eq!(st.size(), 5);
    assert_eq!(st.u64(88), 5, "mtime is the wall clock");
    let b = t.put(b"XY");
    assert_eq!(t.call(nr::PWRITE64, &[fd, b, 2, 1]), 2);
    assert_eq!(t.call(nr::LSEEK, &[fd, 0, 0]), 0);
    assert_eq!(t.read_fd(fd as i64, 10).unwrap(), b"hXYlo");
    assert_eq!(t.call(nr::FTRUNCATE, &[fd, 2]), 0);
    assert_eq!(t.call(nr::FTRUNCATE, &[fd, u64::MAX]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::FTRUNCATE, &[1, 0]), E(Errno::EINVAL));
    let path = t.cstr("/tmp/log");
    assert_eq!(t.call(nr::TRUNCATE, &[path, 3]), 0);
    let etc = t.cstr("/etc/hosts");
    assert_eq!(t.call(nr::TRUNCATE, &[etc, 0]), E(Errno::EROFS));
    // O_APPEND and writev.
    let a = t.open("/tmp/log", O_WRONLY | O_APPEND, 0) as u64;
    let (x, y) = (t.put(b"ab"), t.put(b"cd"));
    let mut iov = Vec::new();
    for p in [x, y] {
        iov.extend_from_slice(&p.to_le_bytes());
        iov.extend_from_slice(&2u64.to_le_bytes());
    }
    let iova = t.put(&iov);
    assert_eq!(t.call(nr::WRITEV, &[a, iova, 2]), 4);
    assert_eq!(t.call(nr::PREAD64, &[fd, b, 7, 0]), 7);
    assert_eq!(t.read(b, 7), b"hX\0abcd");
    // Unlinked while open: still readable.
    assert_eq!(t.call(nr::UNLINK, &[path]), 0);
    assert_eq!(t.stat(nr::FSTAT, &[fd]).unwrap().u64(16), 0);
    assert_eq!(t.call(nr::PREAD64, &[fd, b, 2, 0]), 2);
    assert_eq!(t.stat(nr::STAT, &[path]).err(), Some(E(Errno::ENOENT)));
    // O_TRUNC.
    let g = t.open("/tmp/g", O_WRONLY | O_CREAT | O_TRUNC, 0o600);
    t.write_fd(g, b"12345");
    t.open("/tmp/g", O_WRONLY | O_TRUNC, 0);
    let gp = t.cstr("/tmp/g");
    assert_eq!(t.stat(nr::STAT, &[gp]).unwrap().size(), 0);
    // creat.
    let c = t.cstr("/tmp/c");
    let cfd = t.call(nr::CREAT, &[c, 0o600]);
    assert_eq!(t.read_fd(cfd, 1), Err(E(Errno::EBADF)));
    assert_eq!(t.call(nr::FSYNC, &[cfd as u64]), 0);
    assert_eq!(t.call(nr::FDATASYNC, &[cfd as u64]), 0);
}

#[test]
fn proc_and_dev() {
    let mut t = T::new();
    let fd = t.open("/proc/self/maps", O_RDONLY, 0);
    let text = t.p.vm.maps_text("/bin/app");
    assert!(!text.is_empty());
    assert_eq!(t.read_fd(fd, 100_000).unwrap(), text.as_bytes());
    let p = t.cstr("/proc/self/exe");
    let b = t.alloc(64);
    assert_eq!(t.call(nr::READLINK, &[p, b, 64]), 8);
    assert_eq!(t.read(b, 8), b"/bin/app");
    assert_eq!(t.call(nr::READLINK, &[p, b, 4]), 4);
    assert_eq!(t.call(nr::READLINK, &[p, b, 0]), E(Errno::EINVAL));
    let hosts = t.cstr("/etc/hosts");
    assert_eq!(t.call(nr::READLINK, &[hosts, b, 64]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::READLINKAT, &[AT_FDCWD as u64, p, b, 64]), 8);
    let r = t.open("/dev/urandom", O_RDONLY, 0);
    assert_eq!(t.read_fd(r, 3).unwrap(), [1, 2, 3]);
    // The listen backlog limit, as Go reads it.
    let so = t.open("/proc/sys/net/core/somaxconn", O_RDONLY, 0);
    let text = format!("{}\n", crate::net::SOMAXCONN);
    assert_eq!(t.read_fd(so, 64).unwrap(), text.as_bytes());
    let z = t.open("/dev/zero", O_RDONLY, 0);
    assert_eq!(t.read_fd(z, 200_000).unwrap(), vec![0u8; 200_000]);
    let n = t.open("/dev/null", O_RDWR, 0);
    assert_eq!(t.write_fd(n, b"void"), 4);
    assert_eq!(t.read_fd(n, 4).unwrap(), b"");
    // /dev/full: zeros in, ENOSPC out.
    let full = t.open("/dev/full", O_RDWR, 0);
    assert_eq!(t.read_fd(full, 3).unwrap(), [0, 0, 0]);
    assert_eq!(t.write_fd(full, b"x"), E(Errno::ENOSPC));
    // /dev/shm is writable (shm_open, sem_open).
    let shm = t.open("/dev/shm/sem.test", O_RDWR | O_CREAT | O_EXCL, 0o600);
    assert_eq!(t.write_fd(shm, b"sem"), 3);
    // The CPUs, as glibc's get_nprocs and thread-pool sizing read them; vmstat's counters.
    for f in ["online", "possible", "present"] {
        let fd = t.open(&format!("/sys/devices/system/cpu/{f}"), O_RDONLY, 0);
        assert_eq!(t.read_fd(fd, 16).unwrap(), b"0\n");
    }
    let vm = t.open("/proc/vmstat", O_RDONLY, 0);
    let text = String::from_utf8(t.read_fd(vm, 4096).unwrap()).unwrap();
    assert!(text.starts_with("nr_free_pages "), "{text}");
    assert!(text.contains("\npswpin 0\n"), "{text}");
}

#[test]
fn fadvise_and_readahead_take_valid_advice() {
    let mut t = T::new();
    let f = t.open("/etc/hosts", O_RDONLY, 0) as u64;
    // POSIX_FADV_SEQUENTIAL, DONTNEED: nothing to do for files in memory.
    assert_eq!(t.call(nr::FADVISE64, &[f, 0, 0, 2]), 0);
    assert_eq!(t.call(nr::FADVISE64, &[f, 0, 100, 4]), 0);
    assert_eq!(t.call(nr::FADVISE64, &[f, 0, 0, 9]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::FADVISE64, &[99, 0, 0, 0]), E(Errno::EBADF));
    assert_eq!(t.call(nr::READAHEAD, &[f, 0, 4096]), 0);
    let fds = t.alloc(8);
    assert_eq!(t.call(nr::PIPE2, &[fds, 0]), 0);
    let r = u32::from_le_bytes(t.read(fds, 4).try_into().unwrap()) as u64;
    assert_eq!(t.call(nr::FADVISE64, &[r, 0, 0, 0]), E(Errno::ESPIPE));
    assert_eq!(t.call(nr::READAHEAD, &[r, 0, 4096]), E(Errno::EINVAL));
}

#[test]
fn pipes() {
    let mut t = T::new();
    let fds = t.alloc(8);
    assert_eq!(
        t.call(nr::PIPE2, &[fds, u64::from(O_NONBLOCK | O_CLOEXEC)]),
        0
    );
    let v = t.read(fds, 8);
    let (r, w) = (
        i32::from_le_bytes(v[..4].try_into().unwrap()) as i64,
        i32::from_le_bytes(v[4..].try_into().unwrap()) as i64,
    );
    assert_eq!((r, w), (3, 4));
    assert_eq!(t.call(nr::FCNTL, &[r as u64, 1]), 1);
    assert_eq!(t.read_fd(r, 4), Err(E(Errno::EAGAIN)));
    assert_eq!(t.write_fd(w, b"ping"), 4);
    let n = t.alloc(4);
    assert_eq!(t.call(nr::IOCTL, &[r as u64, 0x541b, n]), 0);
    assert_eq!(t.read(n, 4), 4i32.to_le_bytes());
    assert_eq!(t.call(nr::LSEEK, &[r as u64, 0, 1]), E(Errno::ESPIPE));
    assert_eq!(t.call(nr::PREAD64, &[r as u64, n, 1, 0]), E(Errno::ESPIPE));
    assert_eq!(
        t.stat(nr::FSTAT, &[r as u64]).unwrap().mode(),
        S_IFIFO | 0o600
    );
    assert_eq!(t.call(nr::FCNTL, &[r as u64, 1032]), 65536);
    assert_eq!(t.call(nr::FCNTL, &[0, 1032]), E(Errno::EBADF));
    assert_eq!(t.read_fd(r, 10).unwrap(), b"ping");
    // Blocking read with our own writer open: EDEADLK.
    assert_eq!(t.call(nr::FCNTL, &[r as u64, 4, 0]), 0);
    assert_eq!(t.call(nr::FCNTL, &[r as u64, 3]), 0);
    assert_eq!(t.read_fd(r, 10), Err(E(Errno::EDEADLK)));
    assert_eq!(t.m.log.len(), 1);
    // FIONBIO turns non-blocking back on.
    let one = t.put(&1i32.to_le_bytes());
    assert_eq!(t.call(nr::IOCTL, &[r as u64, 0x5421, one]), 0);
    assert_eq!(t.read_fd(r, 10), Err(E(Errno::EAGAIN)));
    // Close the writer: EOF.
    assert_eq!(t.call(nr::CLOSE, &[w as u64]), 0);
    assert_eq!(t.read_fd(r, 10).unwrap(), b"");
    // No reader: EPIPE.
    t.call(nr::PIPE, &[fds]);
    let v = t.read(fds, 8);
    let (r2, w2) = (v[0] as u64, v[4] as u64);
    t.call(nr::CLOSE, &[r2]);
    assert_eq!(t.write_fd(w2 as i64, b"x"), E(Errno::EPIPE));
    assert_eq!(t.call(nr::PIPE2, &[fds, 0x8000_0000]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::PIPE2, &[0x10, 0]), E(Errno::EFAULT));
    assert_eq!(
        t.p.files.fds().count(),
        5,
        "a failed pipe2 leaves no descriptors"
    );
}

#[test]
fn poll_waits_and_deadlocks() {
    let mut t = T::new();
    let fds = t.alloc(8);
    t.call(nr::PIPE, &[fds]);
    let v = t.read(fds, 8);
    let (r, w) = (i32::from(v[0]), i32::from(v[4]));
    let entry = |fd: i32, ev: u16| {
        let mut e = fd.to_le_bytes().to_vec();
        e.extend_from_slice(&ev.to_le_bytes());
        e.extend_from_slice(&[0xff, 0xff]);
        e
    };
    let mut pf = entry(r, POLLIN);
    pf.extend(entry(-1, POLLIN));
    pf.extend(entry(50, POLLIN));
    let a = t.put(&pf);
    // fd 50 is invalid: POLLNVAL counts as ready.
    assert_eq!(t.call(nr::POLL, &[a, 3, u64::MAX]), 1);
    let back = t.read(a, 24);
    assert_eq!(u16::from_le_bytes([back[6], back[7]]), 0);
    assert_eq!(u16::from_le_bytes([back[14], back[15]]), 0);
    assert_eq!(u16::from_le_bytes([back[22], back[23]]), POLLNVAL);
    // Nothing ready, finite timeout: waits on I/O until the deadline, returning 0 then,
    // with `revents` already cleared.
    let a = t.put(&entry(r, POLLIN));
    let wait = |deadline| {
        Outcome::Block(Wait {
            channels: vec![Channel::Io],
            deadline,
            on_timeout: 0,
            on_wake: None,
        })
    };
    let now = t.m.now;
    assert_eq!(
        t.outcome(nr::POLL, &[a, 1, 25]),
        wait(Some(now + 25_000_000))
    );
    assert_eq!(t.read(a + 6, 2), [0, 0]);
    // Run again after a wake-up: the first deadline holds; past it, 0.
    t.m.restart = Some(now + 25_000_000);
    t.m.now += 1000;
    assert_eq!(
        t.outcome(nr::POLL, &[a, 1, 25]),
        wait(Some(now + 25_000_000))
    );
    t.m.now = now + 25_000_000;
    assert_eq!(t.call(nr::POLL, &[a, 1, 25]), 0);
    t.m.restart = None;
    // Infinite with one thread and only a pipe: nothing could end it.
    assert_eq!(t.call(nr::POLL, &[a, 1, (-1i64) as u64]), E(Errno::EDEADLK));
    // With another thread, it waits for good.
    t.m.other_threads = 1;
    assert_eq!(t.outcome(nr::POLL, &[a, 1, (-1i64) as u64]), wait(None));
    t.m.other_threads = 0;
    // No descriptor at all: a wait for a signal, as pause (nc waits so for its alarm).
    assert_eq!(t.outcome(nr::POLL, &[a, 0, (-1i64) as u64]), wait(None));
    // An alarm armed: its SIGALRM will end the wait.
    t.p.timers.real = Some(crate::fd::timerfd::RealTimer {
        deadline: t.m.now + 5_000_000_000,
        interval: 0,
    });
    assert_eq!(t.outcome(nr::POLL, &[a, 1, (-1i64) as u64]), wait(None));
    t.p.timers.real = None;
    assert_eq!(t.call(nr::POLL, &[a, 1, (-1i64) as u64]), E(Errno::EDEADLK));
    assert_eq!(t.call(nr::POLL, &[a, 2000, 0]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::POLL, &[0x10, 1, 0]), E(Errno::EFAULT));
    // ppoll: timespec in, remaining time out.
    let mut ts = 1i64.to_le_bytes().to_vec();
    ts.extend_from_slice(&0i64.to_le_bytes());
    let tsa = t.put(&ts);
    let now = t.m.now;
    assert_eq!(
        t.outcome(nr::PPOLL, &[a, 1, tsa, 0, 8]),
        wait(Some(now + 1_000_000_000))
    );
    assert_eq!(t.read(tsa, 16), [0u8; 16]);
    let bad = t.put(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0xca, 0x9a, 0x3b, 0, 0, 0, 0]);
    assert_eq!(t.call(nr::PPOLL, &[a, 1, bad, 0, 8]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::PPOLL, &[a, 1, 0, tsa, 4]), E(Errno::EINVAL));
    // Writable pipe and a hang-up.
    let a = t.put(&entry(w, POLLOUT));
    assert_eq!(t.call(nr::PPOLL, &[a, 1, 0, 0, 0]), 1);
    t.call(nr::CLOSE, &[w as u64]);
    let a = t.put(&entry(r, POLLIN));
    assert_eq!(t.call(nr::POLL, &[a, 1, 0]), 1);
    assert_eq!(
        u16::from_le_bytes(t.read(a + 6, 2).try_into().unwrap()),
        POLLHUP
    );
}

#[test]
fn descriptors() {
    let mut t = T::new();
    let fd = t.open("/tmp/f", O_RDWR | O_CREAT, 0o644) as u64;
    assert_eq!(t.call(nr::DUP, &[fd]), 4);
    assert_eq!(t.call(nr::DUP2, &[fd, 10]), 10);
    assert_eq!(t.call(nr::DUP2, &[fd, fd]), fd as i64);
    assert_eq!(t.call(nr::DUP2, &[77, 10]), E(Errno::EBADF));
    assert_eq!(t.call(nr::DUP3, &[fd, fd, 0]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::DUP3, &[fd, 11, u64::from(O_CLOEXEC)]), 11);
    assert_eq!(t.call(nr::FCNTL, &[11, 1]), 1);
    assert_eq!(t.call(nr::FCNTL, &[11, 2, 0]), 0);
    assert_eq!(t.call(nr::FCNTL, &[11, 1]), 0);
    assert_eq!(t.call(nr::FCNTL, &[fd, 0, 5]), 5);
    assert_eq!(t.call(nr::FCNTL, &[fd, 1030, 5]), 6);
    assert_eq!(t.call(nr::FCNTL, &[6, 1]), 1);
    assert_eq!(t.call(nr::FCNTL, &[fd, 0, 1024]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::FCNTL, &[fd, 999]), E(Errno::EINVAL));
    // Shared offset and status flags.
    t.write_fd(fd as i64, b"abc");
    assert_eq!(t.call(nr::LSEEK, &[10, 0, 1]), 3);
    assert_eq!(
        t.call(nr::FCNTL, &[4, 4, u64::from(O_APPEND | O_NONBLOCK)]),
        0
    );
    assert_eq!(
        t.call(nr::FCNTL, &[fd, 3]),
        i64::from(O_RDWR | O_LARGEFILE | O_APPEND | O_NONBLOCK)
    );
    // Locks never conflict.
    let mut fl = vec![0u8; 32];
    fl[0] = 1; // F_WRLCK
    let fla = t.put(&fl);
    assert_eq!(t.call(nr::FCNTL, &[fd, 5, fla]), 0);
    assert_eq!(t.read(fla, 2), [2, 0]);
    let fla = t.put(&fl);
    assert_eq!(t.call(nr::FCNTL, &[fd, 6, fla]), 0);
    assert_eq!(t.call(nr::FCNTL, &[fd, 7, fla]), 0);
    assert_eq!(t.call(nr::FCNTL, &[3 + 4, 6, fla]), E(Errno::EBADF));
    let ro = t.open("/etc/hosts", O_RDONLY, 0) as u64;
    assert_eq!(t.call(nr::FCNTL, &[ro, 6, fla]), E(Errno::EBADF));
    fl[0] = 7;
    let bad = t.put(&fl);
    assert_eq!(t.call(nr::FCNTL, &[fd, 6, bad]), E(Errno::EINVAL));
    // ioctls.
    assert_eq!(t.call(nr::IOCTL, &[fd, 0x5451]), 0);
    assert_eq!(t.call(nr::FCNTL, &[fd, 1]), 1);
    assert_eq!(t.call(nr::IOCTL, &[fd, 0x5450]), 0);
    assert_eq!(t.call(nr::FCNTL, &[fd, 1]), 0);
    let n = t.alloc(4);
    t.call(nr::LSEEK, &[fd, 1, 0]);
    assert_eq!(t.call(nr::IOCTL, &[fd, 0x541b, n]), 0);
    assert_eq!(t.read(n, 4), 2i32.to_le_bytes());
    // close_range.
    assert_eq!(t.call(nr::CLOSE_RANGE, &[5, u64::from(u32::MAX), 4]), 0);
    assert_eq!(t.call(nr::FCNTL, &[10, 1]), 1);
    assert_eq!(t.call(nr::CLOSE_RANGE, &[5, u64::from(u32::MAX), 0]), 0);
    assert_eq!(t.call(nr::FCNTL, &[10, 1]), E(Errno::EBADF));
    assert_eq!(t.call(nr::CLOSE_RANGE, &[5, 4, 0]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::CLOSE_RANGE, &[0, 1, 1]), E(Errno::EINVAL));
    // EMFILE.
    for _ in t.p.files.fds().count()..MAX_FDS {
        assert!(t.call(nr::DUP, &[0]) > 0);
    }
    assert_eq!(t.call(nr::DUP, &[0]), E(Errno::EMFILE));
    assert_eq!(t.open("/etc/hosts", O_RDONLY, 0), E(Errno::EMFILE));
    let fds = t.alloc(8);
    assert_eq!(t.call(nr::PIPE, &[fds]), E(Errno::EMFILE));
}

#[test]
fn o_path() {
    let mut t = T::new();
    let fd = t.open("/etc/rel", O_PATH | O_NOFOLLOW, 0) as u64;
    assert_eq!(t.read_fd(fd as i64, 1), Err(E(Errno::EBADF)));
    assert_eq!(t.call(nr::LSEEK, &[fd, 0, 0]), E(Errno::EBADF));
    assert_eq!(t.call(nr::IOCTL, &[fd, 0x5451]), E(Errno::EBADF));
    assert_eq!(t.call(nr::FCNTL, &[fd, 4, 0]), E(Errno::EBADF));
    assert_eq!(t.stat(nr::FSTAT, &[fd]).unwrap().mode(), S_IFLNK | 0o777);
    let empty = t.cstr("");
    let st = t.stat(nr::NEWFSTATAT, &[fd, empty, AT_EMPTY_PATH]).unwrap();
    assert_eq!(st.mode(), S_IFLNK | 0o777);
}

#[test]
fn stat_family() {
    let mut t = T::new();
    let hosts = t.cstr("/etc/hosts");
    let rel = t.cstr("/etc/rel");
    let st = t.stat(nr::STAT, &[hosts]).unwrap();
    assert_eq!((st.mode(), st.size(), st.u64(16)), (S_IFREG | 0o644, 20, 2));
    assert_eq!(t.stat(nr::STAT, &[rel]).unwrap().ino(), st.ino());
    assert_eq!(t.stat(nr::LSTAT, &[rel]).unwrap().mode(), S_IFLNK | 0o777);
    let l = t
        .stat(nr::NEWFSTATAT, &[AT_FDCWD as u64, rel, AT_SYMLINK_NOFOLLOW])
        .unwrap();
    assert_eq!(l.mode(), S_IFLNK | 0o777);
    let empty = t.cstr("");
    assert_eq!(t.stat(nr::STAT, &[empty]).err(), Some(E(Errno::ENOENT)));
    let cwd = t
        .stat(nr::NEWFSTATAT, &[AT_FDCWD as u64, empty, AT_EMPTY_PATH])
        .unwrap();
    assert_eq!(cwd.mode(), S_IFDIR | 0o755);
    assert_eq!(
        t.stat(nr::NEWFSTATAT, &[1, empty, AT_EMPTY_PATH])
            .unwrap()
            .mode(),
        S_IFCHR | 0o620
    );
    assert_eq!(
        t.stat(nr::NEWFSTATAT, &[1, 0, AT_EMPTY_PATH])
            .unwrap()
            .mode(),
        S_IFCHR | 0o620
    );
    assert_eq!(
        t.stat(nr::NEWFSTATAT, &[1, empty, 0]).err(),
        Some(E(Errno::ENOENT))
    );
    assert_eq!(
        t.stat(nr::NEWFSTATAT, &[1, hosts, 0x4]).err(),
        Some(E(Errno::EINVAL))
    );
    assert_eq!(t.stat(nr::FSTAT, &[40]).err(), Some(E(Errno::EBADF)));
    assert_eq!(t.call(nr::STAT, &[hosts, 0x10]), E(Errno::EFAULT));
    // statx.
    let fd = t.open("/etc/hosts", O_RDONLY, 0) as u64;
    let buf = t.alloc(256);
    assert_eq!(
        t.call(nr::STATX, &[fd, empty, AT_EMPTY_PATH, 0x7ff, buf]),
        0
    );
    let x = t.read(buf, 256);
    assert_eq!(u32::from_le_bytes(x[0..4].try_into().unwrap()), 0x7ff);
    assert_eq!(u16::from_le_bytes([x[28], x[29]]), (S_IFREG | 0o644) as u16);
    assert_eq!(u64::from_le_bytes(x[32..40].try_into().unwrap()), st.ino());
    assert_eq!(u64::from_le_bytes(x[40..48].try_into().unwrap()), 20);
    assert_eq!(
        t.call(nr::STATX, &[fd, empty, 0x6000, 0x7ff, buf]),
        E(Errno::EINVAL)
    );
    assert_eq!(
        t.call(nr::STATX, &[fd, empty, AT_EMPTY_PATH, 0x8000_0000, buf]),
        E(Errno::EINVAL)
    );
    assert_eq!(
        t.call(nr::STATX, &[AT_FDCWD as u64, hosts, 0, 0x7ff, buf]),
        0
    );
    // access.
    let app = t.cstr("/bin/app");
    assert_eq!(t.call(nr::ACCESS, &[hosts, 4]), 0);
    assert_eq!(t.call(nr::ACCESS, &[hosts, 2]), E(Errno::EROFS));
    assert_eq!(t.call(nr::ACCESS, &[hosts, 1]), E(Errno::EACCES));
    assert_eq!(t.call(nr::ACCESS, &[app, 1]), 0);
    assert_eq!(t.call(nr::ACCESS, &[hosts, 9]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::FACCESSAT, &[AT_FDCWD as u64, hosts, 0]), 0);
    assert_eq!(
        t.call(nr::FACCESSAT2, &[AT_FDCWD as u64, hosts, 0, 0x8000]),
        E(Errno::EINVAL)
    );
    let dangling = t.cstr("/dangling");
    assert_eq!(
        t.call(nr::FACCESSAT2, &[AT_FDCWD as u64, dangling, 0, 0]),
        E(Errno::ENOENT)
    );
    assert_eq!(
        t.call(
            nr::FACCESSAT2,
            &[AT_FDCWD as u64, dangling, 0, AT_SYMLINK_NOFOLLOW]
        ),
        0
    );
    assert_eq!(t.call(nr::FACCESSAT2, &[fd, empty, 4, AT_EMPTY_PATH]), 0);
}

#[test]
fn directories() {
    let mut t = T::new();
    let b = t.alloc(64);
    assert_eq!(t.call(nr::GETCWD, &[b, 64]), 2);
    assert_eq!(t.read(b, 2), b"/\0");
    assert_eq!(t.call(nr::GETCWD, &[b, 1]), E(Errno::ERANGE));
    let etc_up = t.cstr("etc/up");
    assert_eq!(t.call(nr::CHDIR, &[etc_up]), 0);
    assert_eq!(t.call(nr::GETCWD, &[b, 64]), 5);
    assert_eq!(t.read(b, 5), b"/bin\0");
    assert_eq!(t.p.cwd, "/bin");
    let hosts = t.cstr("/etc/hosts");
    assert_eq!(t.call(nr::CHDIR, &[hosts]), E(Errno::ENOTDIR));
    assert_eq!(t.call(nr::CHDIR, &[0x10]), E(Errno::EFAULT));
    let app = t.cstr("app");
    assert_eq!(t.stat(nr::STAT, &[app]).unwrap().size(), 4);
    let dfd = t.open("/usr/lib", O_RDONLY | O_DIRECTORY, 0) as u64;
    assert_eq!(t.call(nr::FCHDIR, &[dfd]), 0);
    assert_eq!(t.p.cwd, "/usr/lib");
    assert_eq!(t.call(nr::FCHDIR, &[1]), E(Errno::ENOTDIR));
    assert_eq!(t.call(nr::FCHDIR, &[100]), E(Errno::EBADF));
    // mkdir, mkdirat, rmdir, unlinkat.
    let tmp = t.open("/tmp", O_RDONLY | O_DIRECTORY, 0) as u64;
    let d = t.cstr("d");
    assert_eq!(t.call(nr::MKDIRAT, &[tmp, d, 0o755]), 0);
    assert_eq!(t.call(nr::MKDIRAT, &[tmp, d, 0o755]), E(Errno::EEXIST));
    let x = t.cstr("/etc/x");
    assert_eq!(t.call(nr::MKDIR, &[x, 0o755]), E(Errno::EROFS));
    let td = t.cstr("/tmp/d");
    assert_eq!(t.stat(nr::STAT, &[td]).unwrap().mode(), S_IFDIR | 0o755);
    let f = t.cstr("/tmp/d/f");
    let ffd = t.call(nr::CREAT, &[f, 0o644]);
    assert!(ffd > 0);
    assert_eq!(t.call(nr::RMDIR, &[td]), E(Errno::ENOTEMPTY));
    assert_eq!(t.call(nr::UNLINKAT, &[tmp, d, 0]), E(Errno::EISDIR));
    assert_eq!(t.call(nr::UNLINKAT, &[tmp, d, 1]), E(Errno::EINVAL));
    // getdents64 of /tmp/d: ".", "..", "f".
    let dd = t.open("/tmp/d", O_RDONLY | O_DIRECTORY, 0) as u64;
    let buf = t.alloc(256);
    let n = t.call(nr::GETDENTS64, &[dd, buf, 256]);
    assert_eq!(n, 24 + 24 + 24);
    let raw = t.read(buf, n as usize);
    let mut names = Vec::new();
    let mut off = 0;
    while off < raw.len() {
        let reclen = u16::from_le_bytes([raw[off + 16], raw[off + 17]]) as usize;
        let name: Vec<u8> = raw[off + 19..off + reclen]
            .iter()
            .copied()
            .take_while(|&c| c != 0)
            .collect();
        names.push((String::from_utf8(name).unwrap(), raw[off + 18]));
        off += reclen;
    }
    assert_eq!(names, [(".".into(), 4), ("..".into(), 4), ("f".into(), 8)]);
    let tmp_ino = t.stat(nr::FSTAT, &[tmp]).unwrap().ino();
    assert_eq!(u64::from_le_bytes(raw[24..32].try_into().unwrap()), tmp_ino);
    assert_eq!(t.call(nr::GETDENTS64, &[dd, buf, 256]), 0);
    t.call(nr::LSEEK, &[dd, 0, 0]);
    assert_eq!(t.call(nr::GETDENTS64, &[dd, buf, 10]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::GETDENTS64, &[dd, buf, 24]), 24);
    // Old getdents: d_type in the last byte of the record.
    assert_eq!(t.call(nr::GETDENTS, &[dd, buf, 256]), 48);
    let raw = t.read(buf, 48);
    assert_eq!(&raw[18..20], b"..");
    assert_eq!(raw[23], 4);
    assert_eq!(raw[24 + 18], b'f');
    assert_eq!(raw[47], 8);
    assert_eq!(
        t.call(nr::GETDENTS64, &[ffd as u64, buf, 256]),
        E(Errno::ENOTDIR)
    );
    let etc = t.open("/etc", O_RDONLY | O_DIRECTORY, 0) as u64;
    let n = t.call(nr::GETDENTS64, &[etc, buf, 256]);
    assert_eq!(n, 5 * 24 + 2 * 32);
    // rename family.
    let g = t.cstr("/tmp/d/g");
    assert_eq!(t.call(nr::RENAME, &[f, g]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).err(), Some(E(Errno::ENOENT)));
    let eg = t.cstr("/etc/g");
    assert_eq!(t.call(nr::RENAME, &[g, eg]), E(Errno::EXDEV));
    let gg = t.cstr("g");
    let h = t.cstr("h");
    assert_eq!(t.call(nr::RENAMEAT, &[dd, gg, tmp, h]), 0);
    let th = t.cstr("/tmp/h");
    t.call(nr::CREAT, &[g, 0o644]);
    assert_eq!(
        t.call(nr::RENAMEAT2, &[AT_FDCWD as u64, th, AT_FDCWD as u64, g, 1]),
        E(Errno::EEXIST)
    );
    assert_eq!(
        t.call(nr::RENAMEAT2, &[AT_FDCWD as u64, th, AT_FDCWD as u64, g, 2]),
        0
    );
    assert_eq!(
        t.call(nr::RENAMEAT2, &[AT_FDCWD as u64, th, AT_FDCWD as u64, g, 4]),
        E(Errno::EINVAL)
    );
    assert_eq!(t.call(nr::UNLINK, &[g]), 0);
    assert_eq!(t.call(nr::UNLINK, &[g]), E(Errno::ENOENT));
    assert_eq!(t.call(nr::UNLINKAT, &[tmp, d, AT_REMOVEDIR]), 0);
    assert_eq!(t.call(nr::RMDIR, &[td]), E(Errno::ENOENT));
    assert_eq!(t.call(nr::UNLINK, &[hosts]), E(Errno::EROFS));
    // umask.
    assert_eq!(t.call(nr::UMASK, &[0o077]), 0o022);
    assert_eq!(t.call(nr::UMASK, &[0o1022]), 0o077);
    assert_eq!(t.p.vfs.umask, 0o022);
}

#[test]
fn sendfile_copies() {
    let mut t = T::new();
    let src = t.open("/etc/hosts", O_RDONLY, 0) as u64;
    assert_eq!(t.call(nr::SENDFILE, &[1, src, 0, 9]), 9);
    assert_eq!(t.m.stdout, b"127.0.0.1");
    let off = t.put(&10u64.to_le_bytes());
    assert_eq!(t.call(nr::SENDFILE, &[1, src, off, 100]), 10);
    assert_eq!(t.read(off, 8), 20u64.to_le_bytes());
    assert_eq!(t.call(nr::LSEEK, &[src, 0, 1]), 9);
    assert_eq!(t.call(nr::SENDFILE, &[src, 1, 0, 1]), E(Errno::EBADF));
    let fds = t.alloc(8);
    t.call(nr::PIPE, &[fds]);
    let r = u64::from(t.read(fds, 1)[0]);
    assert_eq!(t.call(nr::SENDFILE, &[1, r, off, 1]), E(Errno::ESPIPE));
}

#[test]
fn mmap_reads() {
    let mut t = T::new();
    let fd = t.open("/etc/hosts", O_RDONLY, 0) as i32;
    // Only the file's bytes: the mapping's rest reads as zeros without being read here
    // (a 10 GiB mapping of a small file takes no 10 GiB).
    let v = read_for_mmap(&mut t.p, &mut t.m, fd, 4, 32).unwrap();
    assert_eq!(&v[..], b"0.0.1 localhost\n");
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, fd, 1 << 40, 8).unwrap(),
        [0; 0]
    );
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, fd, 0, 10 << 30)
            .unwrap()
            .len(),
        20
    );
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, 1, 0, 8),
        Err(Errno::EACCES)
    );
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, 0, 0, 8),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, 77, 0, 8),
        Err(Errno::EBADF)
    );
    let d = t.open("/etc", O_RDONLY, 0) as i32;
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, d, 0, 8),
        Err(Errno::ENODEV)
    );
    let z = t.open("/dev/zero", O_RDONLY, 0) as i32;
    // /dev/zero holds nothing: the mapping's zeros are its own.
    assert_eq!(read_for_mmap(&mut t.p, &mut t.m, z, 0, 4).unwrap(), [0; 0]);
    let n = t.open("/dev/null", O_RDONLY, 0) as i32;
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, n, 0, 4),
        Err(Errno::ENODEV)
    );
    let w = t.open("/tmp/w", O_WRONLY | O_CREAT, 0o644) as i32;
    assert_eq!(
        read_for_mmap(&mut t.p, &mut t.m, w, 0, 4),
        Err(Errno::EACCES)
    );
}

impl Stat144 {
    fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
    }
    fn times(&self) -> [(u64, u64); 3] {
        [72, 88, 104].map(|o| (self.u64(o), self.u64(o + 8)))
    }
}

fn ts(pairs: [(i64, i64); 2]) -> Vec<u8> {
    let mut v = Vec::new();
    for (a, b) in pairs {
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&b.to_le_bytes());
    }
    v
}

#[test]
fn utimensat_family() {
    use attr::{UTIME_NOW, UTIME_OMIT};
    let mut t = T::new();
    let fd = t.open("/tmp/f", O_CREAT | O_RDWR, 0o644);
    let f = t.cstr("/tmp/f");
    let cwd = AT_FDCWD as u64;
    let times = ts([(7, 8), (9, 10)]);
    let tp = t.put(&times);
    t.m.now += 5;
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, f, tp, 0]), 0);
    let st = t.stat(nr::STAT, &[f]).unwrap();
    assert_eq!(st.times(), [(7, 8), (9, 10), (5, 1005)]);
    // OMIT keeps, NOW takes the clock.
    let tp2 = t.put(&ts([(0, UTIME_OMIT), (0, UTIME_NOW)]));
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, f, tp2, 0]), 0);
    assert_eq!(
        t.stat(nr::STAT, &[f]).unwrap().times()[..2],
        [(7, 8), (5, 1005)]
    );
    // NULL times: both now.
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, f, 0, 0]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().times()[0], (5, 1005));
    // Descriptor form (null path) and AT_EMPTY_PATH.
    assert_eq!(t.call(nr::UTIMENSAT, &[fd as u64, 0, tp, 0]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().times()[0], (7, 8));
    assert_eq!(
        t.call(nr::UTIMENSAT, &[fd as u64, 0, tp, AT_EMPTY_PATH]),
        E(Errno::EINVAL)
    );
    let empty = t.cstr("");
    assert_eq!(
        t.call(nr::UTIMENSAT, &[fd as u64, empty, 0, AT_EMPTY_PATH]),
        0
    );
    assert_eq!(
        t.call(nr::UTIMENSAT, &[fd as u64, empty, 0, 0]),
        E(Errno::ENOENT)
    );
    assert_eq!(t.call(nr::UTIMENSAT, &[99, 0, 0, 0]), E(Errno::EBADF));
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, 0, 0, 0]), E(Errno::EFAULT));
    // AT_SYMLINK_NOFOLLOW changes the link, not the target.
    let l = t.cstr("/tmp/l");
    assert_eq!(t.call(nr::SYMLINK, &[f, l]), 0);
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, l, tp, AT_SYMLINK_NOFOLLOW]), 0);
    assert_eq!(t.stat(nr::LSTAT, &[l]).unwrap().times()[1], (9, 10));
    assert_eq!(t.stat(nr::STAT, &[l]).unwrap().times()[1], (5, 1005));
    // Errors.
    let bad = t.put(&ts([(0, 1_000_000_000), (0, 0)]));
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, f, bad, 0]), E(Errno::EINVAL));
    let neg = t.put(&ts([(-1, 0), (0, 0)]));
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, f, neg, 0]), E(Errno::EINVAL));
    assert_eq!(
        t.call(nr::UTIMENSAT, &[cwd, f, tp, 0x8000]),
        E(Errno::EINVAL)
    );
    assert_eq!(
        t.call(nr::UTIMENSAT, &[cwd, f, UNMAPPED_ADDR, 0]),
        E(Errno::EFAULT)
    );
    let omit = t.put(&ts([(0, UTIME_OMIT), (0, UTIME_OMIT)]));
    let missing = t.cstr("/tmp/missing");
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, missing, omit, 0]), 0);
    assert_eq!(
        t.call(nr::UTIMENSAT, &[cwd, missing, 0, 0]),
        E(Errno::ENOENT)
    );
    // Read-only root: EROFS for existing files; busybox `touch /etc/new` gets ENOENT,
    // then open(O_CREAT) fails with EROFS ("Read-only file system").
    let hosts = t.cstr("/etc/hosts");
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, hosts, 0, 0]), E(Errno::EROFS));
    let new = t.cstr("/etc/new");
    assert_eq!(t.call(nr::UTIMENSAT, &[cwd, new, 0, 0]), E(Errno::ENOENT));
    assert_eq!(
        t.open("/etc/new", O_WRONLY | O_CREAT, 0o666),
        E(Errno::EROFS)
    );
    assert_eq!(Errno::EROFS.name(), "EROFS");
    // utimes, futimesat (timeval) and utime (utimbuf).
    let tv = t.put(&ts([(11, 12), (13, 14)]));
    assert_eq!(t.call(nr::UTIMES, &[f, tv]), 0);
    assert_eq!(
        t.stat(nr::STAT, &[f]).unwrap().times()[..2],
        [(11, 12_000), (13, 14_000)]
    );
    let badtv = t.put(&ts([(1, 1_000_000), (0, 0)]));
    assert_eq!(t.call(nr::UTIMES, &[f, badtv]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::UTIMES, &[hosts, 0]), E(Errno::EROFS));
    assert_eq!(t.call(nr::UTIMES, &[missing, 0]), E(Errno::ENOENT));
    let tmpdir = t.open("/tmp", O_RDONLY | O_DIRECTORY, 0);
    let rel = t.cstr("f");
    assert_eq!(t.call(nr::FUTIMESAT, &[tmpdir as u64, rel, tv]), 0);
    assert_eq!(t.call(nr::FUTIMESAT, &[fd as u64, 0, 0]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().times()[0], (5, 1005));
    assert_eq!(
        t.call(nr::FUTIMESAT, &[fd as u64, rel, 0]),
        E(Errno::ENOTDIR)
    );
    let ub = t.put(&ts([(21, 22), (0, 0)])[..16]);
    assert_eq!(t.call(nr::UTIME, &[f, ub]), 0);
    assert_eq!(
        t.stat(nr::STAT, &[f]).unwrap().times()[..2],
        [(21, 0), (22, 0)]
    );
    assert_eq!(t.call(nr::UTIME, &[hosts, ub]), E(Errno::EROFS));
    assert_eq!(t.call(nr::UTIME, &[missing, 0]), E(Errno::ENOENT));
    // The console has no stored metadata.
    assert_eq!(t.call(nr::UTIMENSAT, &[1, 0, 0, 0]), E(Errno::EPERM));
}

const UNMAPPED_ADDR: u64 = 0x5000_0000;

#[test]
fn chmod_chown_family() {
    let mut t = T::new();
    let cwd = AT_FDCWD as u64;
    let fd = t.open("/tmp/f", O_CREAT | O_RDWR, 0o644);
    let f = t.cstr("/tmp/f");
    assert_eq!(t.call(nr::CHMOD, &[f, 0o4751]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().mode(), S_IFREG | 0o4751);
    assert_eq!(t.call(nr::FCHMOD, &[fd as u64, 0o600]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().mode(), S_IFREG | 0o600);
    let rel = t.cstr("f");
    let tmpdir = t.open("/tmp", O_RDONLY | O_DIRECTORY, 0);
    assert_eq!(t.call(nr::FCHMODAT, &[tmpdir as u64, rel, 0o640]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().mode(), S_IFREG | 0o640);
    let l = t.cstr("/tmp/l");
    t.call(nr::SYMLINK, &[f, l]);
    assert_eq!(
        t.call(nr::FCHMODAT2, &[cwd, l, 0o600, AT_SYMLINK_NOFOLLOW]),
        E(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        t.call(nr::FCHMODAT2, &[cwd, l, 0o600, 0x8000]),
        E(Errno::EINVAL)
    );
    assert_eq!(t.call(nr::FCHMODAT2, &[cwd, l, 0o604, 0]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().mode(), S_IFREG | 0o604);
    let hosts = t.cstr("/etc/hosts");
    let missing = t.cstr("/tmp/missing");
    assert_eq!(t.call(nr::CHMOD, &[hosts, 0o600]), E(Errno::EROFS));
    assert_eq!(t.call(nr::CHMOD, &[missing, 0o600]), E(Errno::ENOENT));
    let maps = t.cstr("/proc/self/maps");
    assert_eq!(t.call(nr::CHMOD, &[maps, 0o600]), E(Errno::EPERM));
    assert_eq!(t.call(nr::FCHMOD, &[99, 0]), E(Errno::EBADF));
    let opath = t.open("/tmp/f", O_PATH, 0);
    assert_eq!(t.call(nr::FCHMOD, &[opath as u64, 0]), E(Errno::EBADF));
    assert_eq!(t.call(nr::FCHMOD, &[1, 0o600]), E(Errno::EPERM));
    // Owners: -1 keeps; stat and statx report them; set-user-ID drops.
    t.call(nr::CHMOD, &[f, 0o4755]);
    assert_eq!(t.call(nr::CHOWN, &[f, 1000, u64::from(u32::MAX)]), 0);
    let st = t.stat(nr::STAT, &[f]).unwrap();
    assert_eq!(
        (st.u32(28), st.u32(32), st.mode()),
        (1000, 0, S_IFREG | 0o755)
    );
    assert_eq!(t.call(nr::FCHOWN, &[fd as u64, u64::from(u32::MAX), 50]), 0);
    let st = t.stat(nr::STAT, &[f]).unwrap();
    assert_eq!((st.u32(28), st.u32(32)), (1000, 50));
    let sx = t.alloc(256);
    assert_eq!(t.call(nr::STATX, &[cwd, f, 0, 0x7ff, sx]), 0);
    let x = t.read(sx, 256);
    assert_eq!(&x[20..28], &[0xe8, 3, 0, 0, 50, 0, 0, 0]);
    assert_eq!(t.call(nr::LCHOWN, &[l, 7, 8]), 0);
    let st = t.stat(nr::LSTAT, &[l]).unwrap();
    assert_eq!((st.u32(28), st.u32(32)), (7, 8));
    assert_eq!(t.stat(nr::STAT, &[l]).unwrap().u32(28), 1000);
    assert_eq!(t.call(nr::FCHOWNAT, &[tmpdir as u64, rel, 3, 4, 0]), 0);
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().u32(28), 3);
    let empty = t.cstr("");
    assert_eq!(
        t.call(nr::FCHOWNAT, &[fd as u64, empty, 5, 5, AT_EMPTY_PATH]),
        0
    );
    assert_eq!(t.stat(nr::STAT, &[f]).unwrap().u32(28), 5);
    assert_eq!(
        t.call(nr::FCHOWNAT, &[fd as u64, empty, 5, 5, 0]),
        E(Errno::ENOENT)
    );
    assert_eq!(t.call(nr::FCHOWNAT, &[cwd, f, 5, 5, 1]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::CHOWN, &[hosts, 1, 1]), E(Errno::EROFS));
    assert_eq!(t.call(nr::LCHOWN, &[missing, 1, 1]), E(Errno::ENOENT));
    assert_eq!(t.call(nr::FCHOWN, &[99, 1, 1]), E(Errno::EBADF));
    // /dev nodes keep changes too.
    let null = t.cstr("/dev/null");
    assert_eq!(t.call(nr::CHMOD, &[null, 0o600]), 0);
    assert_eq!(t.stat(nr::STAT, &[null]).unwrap().mode(), S_IFCHR | 0o600);
}

#[test]
fn symlinks_and_links() {
    let mut t = T::new();
    let cwd = AT_FDCWD as u64;
    let fd = t.open("/tmp/f", O_CREAT | O_RDWR, 0o644);
    t.write_fd(fd, b"data");
    let f = t.cstr("/tmp/f");
    let l = t.cstr("/tmp/l");
    assert_eq!(t.call(nr::SYMLINK, &[f, l]), 0);
    assert_eq!(t.stat(nr::LSTAT, &[l]).unwrap().mode(), S_IFLNK | 0o777);
    let b = t.alloc(64);
    assert_eq!(t.call(nr::READLINK, &[l, b, 64]), 6);
    let lf = t.open("/tmp/l", O_RDONLY, 0);
    assert_eq!(t.read_fd(lf, 10).unwrap(), b"data");
    assert_eq!(t.call(nr::SYMLINK, &[f, l]), E(Errno::EEXIST));
    let tmpdir = t.open("/tmp", O_RDONLY | O_DIRECTORY, 0);
    let rel = t.cstr("rel");
    let target = t.cstr("f");
    assert_eq!(t.call(nr::SYMLINKAT, &[target, tmpdir as u64, rel]), 0);
    let relp = t.cstr("/tmp/rel");
    assert_eq!(t.stat(nr::STAT, &[relp]).unwrap().size(), 4);
    let etc = t.cstr("/etc/l");
    assert_eq!(t.call(nr::SYMLINK, &[f, etc]), E(Errno::EROFS));
    let empty = t.cstr("");
    let l2 = t.cstr("/tmp/l2");
    assert_eq!(t.call(nr::SYMLINK, &[empty, l2]), E(Errno::ENOENT));
    let nodir = t.cstr("/tmp/nodir/x");
    assert_eq!(t.call(nr::SYMLINK, &[f, nodir]), E(Errno::ENOENT));
    assert_eq!(t.call(nr::SYMLINKAT, &[f, 99, rel]), E(Errno::EBADF));
    // Hard links.
    let h = t.cstr("/tmp/h");
    assert_eq!(t.call(nr::LINK, &[f, h]), 0);
    let (sf, sh) = (
        t.stat(nr::STAT, &[f]).unwrap(),
        t.stat(nr::STAT, &[h]).unwrap(),
    );
    assert_eq!((sf.ino(), sf.u64(16)), (sh.ino(), 2));
    assert_eq!(t.call(nr::LINK, &[f, h]), E(Errno::EEXIST));
    let d = t.cstr("/tmp/d");
    t.call(nr::MKDIR, &[d, 0o755]);
    let d2 = t.cstr("/tmp/d2");
    assert_eq!(t.call(nr::LINK, &[d, d2]), E(Errno::EPERM));
    let hosts = t.cstr("/etc/hosts");
    assert_eq!(t.call(nr::LINK, &[hosts, d2]), E(Errno::EXDEV));
    let etc2 = t.cstr("/etc/h3");
    assert_eq!(t.call(nr::LINK, &[hosts, etc2]), E(Errno::EROFS));
    assert_eq!(t.call(nr::LINK, &[f, etc2]), E(Errno::EROFS));
    let missing = t.cstr("/tmp/missing");
    assert_eq!(t.call(nr::LINK, &[missing, d2]), E(Errno::ENOENT));
    // link does not follow a final symlink; linkat with AT_SYMLINK_FOLLOW does.
    let hl = t.cstr("/tmp/hl");
    assert_eq!(t.call(nr::LINK, &[l, hl]), 0);
    assert_eq!(t.stat(nr::LSTAT, &[hl]).unwrap().mode(), S_IFLNK | 0o777);
    let hf = t.cstr("/tmp/hf");
    assert_eq!(t.call(nr::LINKAT, &[cwd, l, cwd, hf, 0x400]), 0);
    assert_eq!(t.stat(nr::LSTAT, &[hf]).unwrap().ino(), sf.ino());
    assert_eq!(t.call(nr::LINKAT, &[cwd, l, cwd, hf, 1]), E(Errno::EINVAL));
    // AT_EMPTY_PATH: an open file, including an O_TMPFILE one.
    let he = t.cstr("/tmp/he");
    assert_eq!(
        t.call(nr::LINKAT, &[fd as u64, empty, cwd, he, AT_EMPTY_PATH]),
        0
    );
    assert_eq!(
        t.call(nr::LINKAT, &[fd as u64, empty, cwd, he, 0]),
        E(Errno::ENOENT)
    );
    let tf = t.open("/tmp", crate::fd::O_TMPFILE | O_RDWR, 0o600);
    assert!(tf >= 0);
    let named = t.cstr("/tmp/named");
    assert_eq!(
        t.call(nr::LINKAT, &[tf as u64, empty, cwd, named, AT_EMPTY_PATH]),
        0
    );
    assert_eq!(t.stat(nr::STAT, &[named]).unwrap().u64(16), 1);
    // An unlinked (not O_TMPFILE) file cannot come back.
    let g = t.open("/tmp/g", O_CREAT | O_RDWR, 0o644);
    let gp = t.cstr("/tmp/g");
    t.call(nr::UNLINK, &[gp]);
    assert_eq!(
        t.call(nr::LINKAT, &[g as u64, empty, cwd, gp, AT_EMPTY_PATH]),
        E(Errno::ENOENT)
    );
}

#[test]
fn select_and_pselect() {
    let mut t = T::new();
    let fds = t.alloc(8);
    t.call(nr::PIPE, &[fds]);
    let v = t.read(fds, 8);
    let (r, w) = (u64::from(v[0]), u64::from(v[4]));
    let set = |fds: &[u64]| {
        let mut b = [0u8; 16];
        for &fd in fds {
            b[fd as usize / 8] |= 1 << (fd % 8);
        }
        b
    };
    // Writable pipe, stdout writable, empty pipe not readable.
    let rs = t.put(&set(&[r]));
    let ws = t.put(&set(&[w, 1]));
    let zero = t.put(&ts([(0, 0), (0, 0)]));
    assert_eq!(t.call(nr::SELECT, &[w + 1, rs, ws, 0, zero]), 2);
    assert_eq!(t.read(rs, 16), set(&[]));
    assert_eq!(t.read(ws, 16), set(&[w, 1]));
    // Data makes it readable; stdin (console) is always readable.
    t.write_fd(w as i64, b"x");
    let rs = t.put(&set(&[r, 0]));
    let es = t.put(&set(&[r]));
    assert_eq!(t.call(nr::SELECT, &[r + 1, rs, 0, es, zero]), 2);
    assert_eq!(t.read(rs, 16), set(&[r, 0]));
    assert_eq!(t.read(es, 16), set(&[]));
    // nfds limits what is looked at.
    let rs = t.put(&set(&[r, 0]));
    assert_eq!(t.call(nr::SELECT, &[1, rs, 0, 0, zero]), 1);
    // Timeout: waits on I/O with the sets and the time left already cleared (what a
    // timeout leaves); the request is kept for the rerun after a wake-up.
    t.read_fd(r as i64, 1).unwrap();
    let rs = t.put(&set(&[r]));
    let tv = t.put(&ts([(1, 500_000), (0, 0)])[..16]);
    let now = t.m.now;
    let wait = |deadline| {
        Outcome::Block(Wait {
            channels: vec![Channel::Io],
            deadline,
            on_timeout: 0,
            on_wake: None,
        })
    };
    assert_eq!(
        t.outcome(nr::SELECT, &[r + 1, rs, 0, 0, tv]),
        wait(Some(now + 1_500_000_000))
    );
    assert_eq!(t.read(tv, 16), [0u8; 16]);
    assert_eq!(t.read(rs, 16), set(&[]));
    // Another thread writes; the woken select runs again with its first deadline and
    // request, and reports the pipe with the time left.
    t.write_fd(w as i64, b"y");
    t.m.restart = Some(now + 1_500_000_000);
    t.m.now = now + 500_000_000;
    assert_eq!(
        t.outcome(nr::SELECT, &[r + 1, rs, 0, 0, tv]),
        Outcome::Return(1)
    );
    assert_eq!(t.read(rs, 16), set(&[r]));
    assert_eq!(t.read(tv, 16), ts([(1, 0), (0, 0)])[..16]);
    t.m.restart = None;
    t.read_fd(r as i64, 1).unwrap();
    // select(0, NULL, NULL, NULL, &tv) waits for the deadline.
    let tv = t.put(&ts([(0, 1000), (0, 0)])[..16]);
    let now = t.m.now;
    assert_eq!(
        t.outcome(nr::SELECT, &[0, 0, 0, 0, tv]),
        wait(Some(now + 1_000_000))
    );
    // Infinite wait with nothing ready: EDEADLK, logged once.
    let rs = t.put(&set(&[r]));
    assert_eq!(t.call(nr::SELECT, &[r + 1, rs, 0, 0, 0]), E(Errno::EDEADLK));
    assert_eq!(
        t.call(nr::PSELECT6, &[r + 1, rs, 0, 0, 0, 0]),
        E(Errno::EDEADLK)
    );
    assert_eq!(
        t.m.log.iter().filter(|l| l.starts_with("select:")).count(),
        1
    );
    // Errors.
    let bad = t.put(&set(&[9]));
    assert_eq!(t.call(nr::SELECT, &[10, bad, 0, 0, zero]), E(Errno::EBADF));
    assert_eq!(
        t.call(nr::SELECT, &[(-1i64) as u64, 0, 0, 0, zero]),
        E(Errno::EINVAL)
    );
    let badtv = t.put(&ts([(0, 1_000_000), (0, 0)])[..16]);
    assert_eq!(t.call(nr::SELECT, &[1, 0, 0, 0, badtv]), E(Errno::EINVAL));
    assert_eq!(
        t.call(nr::SELECT, &[1, UNMAPPED_ADDR, 0, 0, zero]),
        E(Errno::EFAULT)
    );
    let op = t.open("/tmp", O_PATH, 0) as u64;
    let ops = t.put(&set(&[op]));
    assert_eq!(
        t.call(nr::SELECT, &[op + 1, ops, 0, 0, zero]),
        E(Errno::EBADF)
    );
    // pselect6: timespec and the sigmask argument.
    let tsp = t.put(&ts([(0, 2000), (0, 0)])[..16]);
    let mask = t.put(&[0u8; 8]);
    let mut sm = mask.to_le_bytes().to_vec();
    sm.extend_from_slice(&8u64.to_le_bytes());
    let smp = t.put(&sm);
    let rs = t.put(&set(&[r]));
    let now = t.m.now;
    assert_eq!(
        t.outcome(nr::PSELECT6, &[r + 1, rs, 0, 0, tsp, smp]),
        wait(Some(now + 2000))
    );
    let ws = t.put(&set(&[w]));
    assert_eq!(t.call(nr::PSELECT6, &[w + 1, 0, ws, 0, 0, smp]), 1);
    let mut bad_sm = mask.to_le_bytes().to_vec();
    bad_sm.extend_from_slice(&4u64.to_le_bytes());
    let bsm = t.put(&bad_sm);
    assert_eq!(
        t.call(nr::PSELECT6, &[w + 1, 0, ws, 0, 0, bsm]),
        E(Errno::EINVAL)
    );
    let badts = t.put(&ts([(0, 1_000_000_000), (0, 0)])[..16]);
    assert_eq!(
        t.call(nr::PSELECT6, &[w + 1, 0, ws, 0, badts, 0]),
        E(Errno::EINVAL)
    );
    // A hang-up reads as readable.
    t.call(nr::CLOSE, &[w]);
    let rs = t.put(&set(&[r]));
    assert_eq!(t.call(nr::SELECT, &[r + 1, rs, 0, 0, 0]), 1);
}

#[test]
fn vector_io_at_offsets() {
    let mut t = T::new();
    let fd = t.open("/tmp/v", O_CREAT | O_RDWR, 0o644) as u64;
    let (a, b) = (t.put(b"hello "), t.put(b"world"));
    let mut iov = a.to_le_bytes().to_vec();
    iov.extend_from_slice(&6u64.to_le_bytes());
    iov.extend_from_slice(&b.to_le_bytes());
    iov.extend_from_slice(&5u64.to_le_bytes());
    let iv = t.put(&iov);
    assert_eq!(t.call(nr::PWRITEV, &[fd, iv, 2, 3, 0]), 11);
    assert_eq!(t.p.files.get(fd as i32).unwrap().offset(), 0);
    let (x, y) = (t.alloc(4), t.alloc(20));
    let mut riov = x.to_le_bytes().to_vec();
    riov.extend_from_slice(&4u64.to_le_bytes());
    riov.extend_from_slice(&y.to_le_bytes());
    riov.extend_from_slice(&20u64.to_le_bytes());
    let ri = t.put(&riov);
    assert_eq!(t.call(nr::PREADV, &[fd, ri, 2, 0, 0]), 14);
    assert_eq!(t.read(x, 4), b"\0\0\0h");
    assert_eq!(t.read(y, 10), b"ello world");
    assert_eq!(t.call(nr::PREADV2, &[fd, ri, 2, 5, 0, 0]), 9);
    assert_eq!(t.read(x, 4), b"llo ");
    // -1: the file offset, which moves.
    assert_eq!(t.call(nr::PWRITEV2, &[fd, iv, 1, u64::MAX, 0, 0]), 6);
    assert_eq!(t.p.files.get(fd as i32).unwrap().offset(), 6);
    assert_eq!(t.call(nr::PREADV2, &[fd, ri, 1, u64::MAX, 0, 0]), 4);
    // "hello lo world": read at offset 6, which moves to 10.
    assert_eq!(t.read(x, 4), b"lo w");
    assert_eq!(t.p.files.get(fd as i32).unwrap().offset(), 10);
    // Errors.
    assert_eq!(
        t.call(nr::PREADV2, &[fd, ri, 2, 0, 0, 1]),
        E(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        t.call(nr::PWRITEV2, &[fd, iv, 2, 0, 0, 4]),
        E(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        t.call(nr::PREADV, &[fd, ri, 2, u64::MAX, 0]),
        E(Errno::EINVAL)
    );
    assert_eq!(t.call(nr::PREADV, &[99, ri, 2, 0, 0]), E(Errno::EBADF));
    assert_eq!(t.call(nr::PREADV, &[1, ri, 2, 0, 0]), E(Errno::EBADF));
    assert_eq!(t.call(nr::PWRITEV, &[1, iv, 2, 0, 0]), E(Errno::ESPIPE));
    assert_eq!(t.call(nr::PREADV, &[fd, ri, 5000, 0, 0]), E(Errno::EINVAL));
    let ro = t.open("/etc/hosts", O_RDONLY, 0) as u64;
    assert_eq!(t.call(nr::PWRITEV, &[ro, iv, 2, 0, 0]), E(Errno::EBADF));
}

#[test]
fn copy_fallocate_statfs_sync() {
    let mut t = T::new();
    let src = t.open("/etc/hosts", O_RDONLY, 0) as u64;
    let dst = t.open("/tmp/c", O_CREAT | O_RDWR, 0o644) as u64;
    assert_eq!(t.call(nr::COPY_FILE_RANGE, &[src, 0, dst, 0, 9, 0]), 9);
    assert_eq!(t.p.files.get(src as i32).unwrap().offset(), 9);
    let off = t.put(&4u64.to_le_bytes());
    assert_eq!(
        t.call(nr::COPY_FILE_RANGE, &[src, off, dst, 0, 1000, 0]),
        16
    );
    assert_eq!(t.read(off, 8), 20u64.to_le_bytes());
    let c = t.open("/tmp/c", O_RDONLY, 0);
    assert_eq!(t.read_fd(c, 100).unwrap(), b"127.0.0.10.0.1 localhost\n");
    assert_eq!(t.call(nr::COPY_FILE_RANGE, &[src, off, dst, 0, 10, 0]), 0);
    assert_eq!(
        t.call(nr::COPY_FILE_RANGE, &[src, 0, dst, 0, 1, 1]),
        E(Errno::EINVAL)
    );
    assert_eq!(
        t.call(nr::COPY_FILE_RANGE, &[dst, 0, src, 0, 1, 0]),
        E(Errno::EBADF)
    );
    assert_eq!(
        t.call(nr::COPY_FILE_RANGE, &[0, 0, dst, 0, 1, 0]),
        E(Errno::EINVAL)
    );
    assert_eq!(
        t.call(nr::COPY_FILE_RANGE, &[99, 0, dst, 0, 1, 0]),
        E(Errno::EBADF)
    );
    let o0 = t.put(&0u64.to_le_bytes());
    let o1 = t.put(&2u64.to_le_bytes());
    assert_eq!(
        t.call(nr::COPY_FILE_RANGE, &[dst, o0, dst, o1, 5, 0]),
        E(Errno::EINVAL)
    );
    let dir = t.open("/tmp", O_RDONLY, 0) as u64;
    assert_eq!(
        t.call(nr::COPY_FILE_RANGE, &[dir, 0, dst, 0, 1, 0]),
        E(Errno::EISDIR)
    );
    // fallocate.
    assert_eq!(t.call(nr::FALLOCATE, &[dst, 0, 100, 28]), 0);
    assert_eq!(t.stat(nr::FSTAT, &[dst]).unwrap().size(), 128);
    assert_eq!(t.call(nr::FALLOCATE, &[dst, 0, 0, 10]), 0);
    assert_eq!(t.stat(nr::FSTAT, &[dst]).unwrap().size(), 128);
    assert_eq!(
        t.call(nr::FALLOCATE, &[dst, 1, 0, 10]),
        E(Errno::EOPNOTSUPP)
    );
    assert_eq!(t.call(nr::FALLOCATE, &[dst, 0, 0, 0]), E(Errno::EINVAL));
    assert_eq!(
        t.call(nr::FALLOCATE, &[dst, 0, u64::MAX, 1]),
        E(Errno::EINVAL)
    );
    assert_eq!(
        t.call(nr::FALLOCATE, &[dst, 0, i64::MAX as u64, 1]),
        E(Errno::EFBIG)
    );
    assert_eq!(t.call(nr::FALLOCATE, &[src, 0, 0, 1]), E(Errno::EBADF));
    assert_eq!(t.call(nr::FALLOCATE, &[1, 0, 0, 1]), E(Errno::ENODEV));
    assert_eq!(t.call(nr::FALLOCATE, &[99, 0, 0, 1]), E(Errno::EBADF));
    let fds = t.alloc(8);
    t.call(nr::PIPE, &[fds]);
    let w = u64::from(t.read(fds + 4, 1)[0]);
    assert_eq!(t.call(nr::FALLOCATE, &[w, 0, 0, 1]), E(Errno::ESPIPE));
    // statfs.
    let buf = t.alloc(120);
    let fs_of = |t: &mut T, path: &str| {
        let p = t.cstr(path);
        assert_eq!(t.call(nr::STATFS, &[p, buf]), 0);
        let b = t.read(buf, 120);
        let at = |o: usize| i64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        (at(0), at(8), at(64), at(80))
    };
    // nosuid, nodev, noexec (Kiln runs programs only from the root filesystem).
    assert_eq!(fs_of(&mut t, "/tmp/c"), (0x0102_1994, 4096, 255, 0x20 | 14));
    assert_eq!(fs_of(&mut t, "/etc/hosts").3 & 1, 1);
    assert_eq!(fs_of(&mut t, "/proc/self/maps").0, 0x9fa0);
    assert_eq!(fs_of(&mut t, "/").3, 0x21);
    // Sizes, in 4 KiB blocks: /tmp may take half the RAM, as far as it is free; the root is
    // the image's archive, full.
    let blocks = |t: &mut T, path: &str| {
        let p = t.cstr(path);
        assert_eq!(t.call(nr::STATFS, &[p, buf]), 0);
        let b = t.read(buf, 120);
        let at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        (at(16), at(24), at(32))
    };
    let (total, free) = t.m.ram;
    let half = total / 2 / 4096;
    assert_eq!(
        blocks(&mut t, "/tmp"),
        (half, half.min(free / 4096), half.min(free / 4096))
    );
    let (root, root_free, _) = blocks(&mut t, "/");
    assert!(root > 0 && root_free == 0, "{root} {root_free}");
    assert_eq!(blocks(&mut t, "/proc").0, 0);
    let missing = t.cstr("/tmp/nope");
    assert_eq!(t.call(nr::STATFS, &[missing, buf]), E(Errno::ENOENT));
    assert_eq!(
        t.call(nr::STATFS, &[missing, UNMAPPED_ADDR]),
        E(Errno::ENOENT)
    );
    let tmp = t.cstr("/tmp");
    assert_eq!(t.call(nr::STATFS, &[tmp, UNMAPPED_ADDR]), E(Errno::EFAULT));
    assert_eq!(t.call(nr::FSTATFS, &[src, buf]), 0);
    assert_eq!(t.read(buf, 8), attr::RAMFS_MAGIC.to_le_bytes());
    assert_eq!(t.call(nr::FSTATFS, &[w, buf]), 0);
    assert_eq!(t.read(buf, 8), attr::PIPEFS_MAGIC.to_le_bytes());
    assert_eq!(t.call(nr::FSTATFS, &[99, buf]), E(Errno::EBADF));
    // sync: nothing is buffered.
    assert_eq!(t.call(nr::SYNC, &[]), 0);
    assert_eq!(t.call(nr::SYNCFS, &[dst]), 0);
    assert_eq!(t.call(nr::SYNCFS, &[99]), E(Errno::EBADF));
}

#[test]
fn proc_self_fd_and_dev_links() {
    let mut t = T::new();
    let fd = t.open("/tmp/f", O_CREAT | O_RDWR, 0o644);
    assert_eq!(fd, 3);
    let b = t.alloc(64);
    let p3 = t.cstr("/proc/self/fd/3");
    assert_eq!(t.call(nr::READLINK, &[p3, b, 64]), 6);
    assert_eq!(t.read(b, 6), b"/tmp/f");
    let p1 = t.cstr("/dev/fd/1");
    assert_eq!(t.call(nr::READLINK, &[p1, b, 64]), 12);
    assert_eq!(t.read(b, 12), b"/dev/console");
    let so = t.cstr("/dev/stdout");
    assert_eq!(t.call(nr::READLINK, &[so, b, 64]), 15);
    assert_eq!(t.read(b, 15), b"/proc/self/fd/1");
    // Listing shows every descriptor, including the directory's own.
    let d = t.open("/proc/self/fd", O_RDONLY | O_DIRECTORY, 0);
    let buf = t.alloc(1024);
    let n = t.call(nr::GETDENTS64, &[d as u64, buf, 1024]);
    assert!(n > 0);
    let raw = t.read(buf, n as usize);
    let mut names = Vec::new();
    let mut off = 0;
    while off < raw.len() {
        let reclen = u16::from_le_bytes([raw[off + 16], raw[off + 17]]) as usize;
        let name: Vec<u8> = raw[off + 19..off + reclen]
            .iter()
            .take_while(|&&c| c != 0)
            .copied()
            .collect();
        names.push(String::from_utf8(name).unwrap());
        off += reclen;
    }
    assert_eq!(names, [".", "..", "0", "1", "2", "3", "4"]);
    // Closed descriptors disappear.
    t.call(nr::CLOSE, &[fd as u64]);
    assert_eq!(t.call(nr::READLINK, &[p3, b, 64]), E(Errno::ENOENT));
    // Opening /dev/stdout reaches the console; writing goes to standard output.
    let o = t.open("/dev/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o666);
    assert_eq!(t.write_fd(o, b"hi\n"), 3);
    assert_eq!(t.m.stdout, b"hi\n");
    let e = t.open("/dev/stderr", O_WRONLY, 0);
    assert_eq!(t.write_fd(e, b"err"), 3);
    assert_eq!(t.m.stderr, b"err");
    let i = t.open("/dev/stdin", O_RDONLY, 0);
    assert_eq!(t.read_fd(i, 4).unwrap(), b"");
    // stat follows to the open file; lstat shows the link.
    let st = t.stat(nr::STAT, &[so]).unwrap();
    assert_eq!(st.mode(), S_IFCHR | 0o620);
    assert_eq!(t.stat(nr::LSTAT, &[so]).unwrap().mode(), S_IFLNK | 0o777);
    // A pipe reopens by access mode.
    let fds = t.alloc(8);
    t.call(nr::PIPE, &[fds]);
    let v = t.read(fds, 8);
    let (r, w) = (v[0], v[4]);
    let wpath = format!("/proc/self/fd/{r}");
    let w2 = t.open(&wpath, O_WRONLY, 0);
    assert_eq!(t.write_fd(w2, b"via proc"), 8);
    assert_eq!(t.read_fd(i64::from(r), 20).unwrap(), b"via proc");
    assert_eq!(t.open(&wpath, O_RDWR, 0), E(Errno::EINVAL));
    let _ = w;
    // A file reopens with the usual checks.
    let h = t.open("/etc/hosts", O_RDONLY, 0);
    let hp = format!("/proc/self/fd/{h}");
    assert_eq!(t.open(&hp, O_WRONLY, 0), E(Errno::EROFS));
    let h2 = t.open(&hp, O_RDONLY, 0);
    assert_eq!(t.read_fd(h2, 9).unwrap(), b"127.0.0.1");
    assert_eq!(t.open(&hp, O_RDONLY | O_DIRECTORY, 0), E(Errno::ENOTDIR));
    let hpp = t.cstr(&hp);
    assert_eq!(t.open(&hp, O_RDONLY | O_NOFOLLOW, 0), E(Errno::ELOOP));
    let _ = hpp;
    // Unlinked files stay reachable.
    let g = t.open("/tmp/g", O_CREAT | O_RDWR, 0o644);
    t.write_fd(g, b"kept");
    let gp = t.cstr("/tmp/g");
    t.call(nr::UNLINK, &[gp]);
    let g2 = t.open(&format!("/proc/self/fd/{g}"), O_RDONLY, 0);
    assert_eq!(t.read_fd(g2, 9).unwrap(), b"kept");
    // /proc/self/cwd follows chdir.
    let tmp = t.cstr("/tmp");
    t.call(nr::CHDIR, &[tmp]);
    let cwdl = t.cstr("/proc/self/cwd");
    assert_eq!(t.call(nr::READLINK, &[cwdl, b, 64]), 4);
    assert_eq!(t.read(b, 4), b"/tmp");
}

#[test]
fn exe_is_readable() {
    let mut t = T::new();
    // The test archive has /bin/app itself: the archive wins.
    let fd = t.open("/proc/self/exe", O_RDONLY, 0);
    assert_eq!(t.read_fd(fd, 10).unwrap(), b"\x7fELF");
}

#[test]
fn tmpfs_is_full_when_memory_is_low() {
    let mut t = T::new();
    let fd = t.open("/tmp/kept", O_RDWR | O_CREAT, 0o644);
    assert!(fd >= 3);
    assert_eq!(t.write_fd(fd, b"abc"), 3);
    t.m.pages.out_of_frames = true;
    // No new names, no growth; existing files open and are written in place.
    assert_eq!(
        t.open("/tmp/new", O_RDWR | O_CREAT, 0o644),
        E(Errno::ENOSPC)
    );
    assert!(t.open("/tmp/kept", O_RDWR | O_CREAT, 0o644) >= 3);
    let tmpfile = crate::fd::O_TMPFILE | O_RDWR;
    assert_eq!(t.open("/tmp", tmpfile, 0o600), E(Errno::ENOSPC));
    let d = t.cstr("/tmp/dir");
    assert_eq!(
        t.call(nr::MKDIRAT, &[AT_FDCWD as u64, d, 0o755]),
        E(Errno::ENOSPC)
    );
    let (target, link) = (t.cstr("/tmp/kept"), t.cstr("/tmp/link"));
    assert_eq!(
        t.call(nr::SYMLINKAT, &[target, AT_FDCWD as u64, link]),
        E(Errno::ENOSPC)
    );
    assert_eq!(
        t.call(nr::FTRUNCATE, &[fd as u64, 1 << 20]),
        E(Errno::ENOSPC)
    );
    assert_eq!(
        t.call(nr::FALLOCATE, &[fd as u64, 0, 0, 1 << 20]),
        E(Errno::ENOSPC)
    );
    assert_eq!(t.call(nr::FTRUNCATE, &[fd as u64, 1]), 0, "shrinking works");
    t.m.pages.out_of_frames = false;
    assert!(t.open("/tmp/new", O_RDWR | O_CREAT, 0o644) >= 3);
}

#[test]
fn extended_attributes_are_absent() {
    let mut t = T::new();
    let fd = t.open("/tmp/x", O_CREAT | O_RDWR, 0o644);
    let x = t.cstr("/tmp/x");
    let hosts = t.cstr("/etc/hosts");
    let missing = t.cstr("/tmp/missing");
    let name = t.cstr("security.selinux");
    let buf = t.cstr("................");
    // No file has attributes: ENODATA, and empty lists.
    assert_eq!(t.call(nr::GETXATTR, &[x, name, buf, 16]), E(Errno::ENODATA));
    assert_eq!(
        t.call(nr::LGETXATTR, &[hosts, name, buf, 16]),
        E(Errno::ENODATA)
    );
    assert_eq!(
        t.call(nr::FGETXATTR, &[fd as u64, name, buf, 16]),
        E(Errno::ENODATA)
    );
    assert_eq!(t.call(nr::LISTXATTR, &[x, buf, 16]), 0);
    assert_eq!(t.call(nr::FLISTXATTR, &[fd as u64, buf, 16]), 0);
    assert_eq!(
        t.call(nr::GETXATTR, &[missing, name, buf, 16]),
        E(Errno::ENOENT)
    );
    assert_eq!(t.call(nr::FGETXATTR, &[99, name, buf, 16]), E(Errno::EBADF));
    // None can be set: the root is read-only, /tmp keeps none.
    assert_eq!(
        t.call(nr::SETXATTR, &[hosts, name, buf, 1, 0]),
        E(Errno::EROFS)
    );
    assert_eq!(
        t.call(nr::SETXATTR, &[x, name, buf, 1, 0]),
        E(Errno::EOPNOTSUPP)
    );
    assert_eq!(t.call(nr::REMOVEXATTR, &[x, name]), E(Errno::ENODATA));
}

#[test]
fn memfd_create_files_and_their_seals() {
    use crate::fs::node::{F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE};
    let mut t = T::new();
    let name = t.cstr("cache");
    let fd = t.call(nr::MEMFD_CREATE, &[name, 1 | 2]);
    assert!(fd >= 0, "{fd}");
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, F_GETFD]), 1, "MFD_CLOEXEC");
    assert_eq!(t.write_fd(fd, b"hello"), 5);
    let link = t.cstr(&alloc::format!("/proc/self/fd/{fd}"));
    let b = t.alloc(64);
    let n = t.call(nr::READLINK, &[link, b, 64]);
    assert_eq!(t.read(b, n as usize), b"/memfd:cache (deleted)");
    // Sealing: growing and shrinking stop, writing in place does not.
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, 1034]), 0);
    let seals = u64::from(F_SEAL_GROW | F_SEAL_SHRINK);
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, 1033, seals]), 0);
    assert_eq!(t.write_fd(fd, b"!"), E(Errno::EPERM));
    assert_eq!(t.call(nr::FTRUNCATE, &[fd as u64, 2]), E(Errno::EPERM));
    let h = t.put(b"J");
    assert_eq!(t.call(nr::PWRITE64, &[fd as u64, h, 1, 0]), 1);
    // A write seal stops writes; after F_SEAL_SEAL nothing more is added.
    let ws = u64::from(F_SEAL_WRITE | F_SEAL_SEAL);
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, 1033, ws]), 0);
    assert_eq!(t.call(nr::PWRITE64, &[fd as u64, h, 1, 0]), E(Errno::EPERM));
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, 1033, 4]), E(Errno::EPERM));
    assert_eq!(t.call(nr::FCNTL, &[fd as u64, 1034]), (seals | ws) as i64);
    let r = t.alloc(8);
    assert_eq!(t.call(nr::PREAD64, &[fd as u64, r, 8, 0]), 5);
    assert_eq!(t.read(r, 5), b"Jello");
    // Without MFD_ALLOW_SEALING: sealed against seals, as tmpfs files are.
    let plain = t.call(nr::MEMFD_CREATE, &[name, 0]);
    assert_eq!(t.call(nr::FCNTL, &[plain as u64, F_GETFD]), 0);
    assert_eq!(t.call(nr::FCNTL, &[plain as u64, 1034]), 1);
    assert_eq!(t.call(nr::FCNTL, &[plain as u64, 1033, 4]), E(Errno::EPERM));
    // Bad flags and names.
    assert_eq!(t.call(nr::MEMFD_CREATE, &[name, 0x100]), E(Errno::EINVAL));
    assert_eq!(t.call(nr::MEMFD_CREATE, &[name, 4]), E(Errno::EINVAL));
    let long = t.cstr(&"x".repeat(250));
    assert_eq!(t.call(nr::MEMFD_CREATE, &[long, 0]), E(Errno::EINVAL));
    // Root-filesystem files have no seals to read.
    let hosts = t.open("/etc/hosts", O_RDONLY, 0);
    assert_eq!(t.call(nr::FCNTL, &[hosts as u64, 1034]), E(Errno::EINVAL));
}
