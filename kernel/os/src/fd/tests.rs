use super::*;
use crate::fs::node::{S_IFCHR, S_IFIFO, S_IFREG};
use crate::fs::Vfs;
use crate::testing::FakeMachine;

fn vfs() -> Vfs {
    Vfs::new(&[], "/app", b"").unwrap()
}

#[test]
fn console_descriptors() {
    let mut m = FakeMachine::default();
    let t = FdTable::with_console();
    assert_eq!(t.fds().collect::<Vec<_>>(), [0, 1, 2]);
    let (i, o, e) = (t.get(0).unwrap(), t.get(1).unwrap(), t.get(2).unwrap());
    let mut buf = [0u8; 4];
    assert_eq!(i.read(&mut m, &mut buf), Ok(0));
    assert_eq!(i.write(&mut m, b"x", 0), Err(Errno::EBADF));
    assert_eq!(o.read(&mut m, &mut buf), Err(Errno::EBADF));
    assert_eq!(o.write(&mut m, b"out", 0), Ok(3));
    assert_eq!(e.write(&mut m, b"err", 0), Ok(3));
    assert_eq!(m.stdout, b"out");
    assert_eq!(m.stderr, b"err");
    assert_eq!(o.seek(0, 0), Err(Errno::ESPIPE));
    assert_eq!(o.pwrite(&mut m, b"x", 0, 0), Err(Errno::ESPIPE));
    assert_eq!(o.stat().mode, S_IFCHR | 0o620);
    assert_eq!(i.poll(POLLIN | POLLOUT), POLLIN);
    assert_eq!(o.poll(POLLIN | POLLOUT), POLLOUT);
    assert_eq!(i.status_flags(), O_RDONLY);
    assert_eq!(o.status_flags(), O_WRONLY);
}

#[test]
fn allocation_close_and_limits() {
    let mut t = FdTable::with_console();
    let f = t.get(1).unwrap();
    assert_eq!(t.get(3).unwrap_err(), Errno::EBADF);
    assert_eq!(t.get(-1).unwrap_err(), Errno::EBADF);
    assert_eq!(t.get(1 << 20).unwrap_err(), Errno::EBADF);
    t.close(1).unwrap();
    assert_eq!(t.close(1), Err(Errno::EBADF));
    assert_eq!(t.install(f.clone(), false), Ok(1));
    assert_eq!(t.install(f.clone(), true), Ok(3));
    assert_eq!(t.cloexec(3), Ok(true));
    assert_eq!(t.install_from(10, f.clone(), false), Ok(10));
    assert_eq!(t.install_from(1024, f.clone(), false), Err(Errno::EINVAL));
    assert_eq!(t.install_from(-1, f.clone(), false), Err(Errno::EINVAL));
    for _ in t.fds().count()..MAX_FDS {
        t.install(f.clone(), false).unwrap();
    }
    assert_eq!(t.install(f.clone(), false), Err(Errno::EMFILE));
    assert_eq!(t.dup(0), Err(Errno::EMFILE));
    t.close_range(5, u32::MAX, false).unwrap();
    assert_eq!(t.fds().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    t.close_range(0, 1, true).unwrap();
    assert_eq!((t.cloexec(0), t.cloexec(2)), (Ok(true), Ok(false)));
    assert_eq!(t.close_range(3, 2, false), Err(Errno::EINVAL));
    t.close_on_exec();
    assert_eq!(t.fds().collect::<Vec<_>>(), [2, 4]);
}

#[test]
fn dup_shares_offset_and_flags() {
    let mut m = FakeMachine::default();
    let v = vfs();
    let o = v.open("/", "/tmp/f", O_CREAT | O_RDWR, 0o644, 1).unwrap();
    let mut t = FdTable::new();
    let fd = t
        .install(
            OpenFile::new(Arc::new(NodeFile(o.inode)), o.path, O_RDWR),
            true,
        )
        .unwrap();
    let d = t.dup(fd).unwrap();
    assert_eq!(t.cloexec(d), Ok(false));
    t.get(fd).unwrap().write(&mut m, b"hello", 2).unwrap();
    assert_eq!(t.get(d).unwrap().offset(), 5);
    t.get(d)
        .unwrap()
        .set_status_flags(O_APPEND | O_NONBLOCK | O_CREAT);
    assert_eq!(
        t.get(fd).unwrap().status_flags(),
        O_RDWR | O_APPEND | O_NONBLOCK
    );
    assert_eq!(t.dup3(fd, 7, Some(O_CLOEXEC)), Ok(7));
    assert_eq!(t.cloexec(7), Ok(true));
    assert_eq!(t.dup3(fd, fd, Some(0)), Err(Errno::EINVAL));
    assert_eq!(t.dup3(fd, 7, Some(O_NONBLOCK)), Err(Errno::EINVAL));
    assert_eq!(t.dup3(fd, fd, None), Ok(fd));
    assert_eq!(t.dup3(9, 3, None), Err(Errno::EBADF));
    assert_eq!(t.dup3(fd, 1024, None), Err(Errno::EBADF));
}

#[test]
fn file_reads_writes_and_seeks() {
    let mut m = FakeMachine::default();
    let v = vfs();
    let o = v.open("/", "/tmp/f", O_CREAT | O_RDWR, 0o644, 1).unwrap();
    let f = OpenFile::new(Arc::new(NodeFile(o.inode.clone())), o.path, O_RDWR);
    assert_eq!(f.write(&mut m, b"0123456789", 5), Ok(10));
    assert_eq!(f.seek(2, 0), Ok(2));
    let mut b = [0u8; 3];
    assert_eq!(f.read(&mut m, &mut b), Ok(3));
    assert_eq!(&b, b"234");
    assert_eq!(f.seek(-1, 1), Ok(4));
    assert_eq!(f.seek(-2, 2), Ok(8));
    assert_eq!(f.seek(-20, 2), Err(Errno::EINVAL));
    assert_eq!(f.seek(0, 9), Err(Errno::EINVAL));
    assert_eq!(f.seek(3, 3), Ok(3));
    assert_eq!(f.seek(3, 4), Ok(10));
    assert_eq!(f.seek(10, 3), Err(Errno::ENXIO));
    assert_eq!(f.seek(i64::MAX, 0), Ok(i64::MAX as u64));
    assert_eq!(f.seek(1, 1), Err(Errno::EOVERFLOW));
    assert_eq!(f.pread(&mut m, &mut b, 7), Ok(3));
    assert_eq!(&b, b"789");
    assert_eq!(f.pwrite(&mut m, b"ab", 12, 6), Ok(2));
    assert_eq!(o.inode.size(), 14);
    assert_eq!(f.stat().mode, S_IFREG | 0o644);
    f.set_status_flags(O_APPEND);
    f.seek(0, 0).unwrap();
    f.write(&mut m, b"Z", 7).unwrap();
    assert_eq!(f.offset(), 15);
    // Read-only and directory files.
    let ro = OpenFile::new(
        Arc::new(NodeFile(o.inode.clone())),
        "/tmp/f".into(),
        O_RDONLY,
    );
    assert_eq!(ro.write(&mut m, b"x", 1), Err(Errno::EBADF));
    let d = v.open("/", "/tmp", O_RDONLY, 0, 1).unwrap();
    let d = OpenFile::new(Arc::new(NodeFile(d.inode)), d.path, O_RDONLY);
    assert_eq!(d.read(&mut m, &mut b), Err(Errno::EISDIR));
    assert_eq!(d.seek(0, 2), Err(Errno::EINVAL));
    let path = OpenFile::new(Arc::new(NodeFile(o.inode)), "/tmp/f".into(), O_PATH);
    assert_eq!(path.read(&mut m, &mut b), Err(Errno::EBADF));
    assert_eq!(path.poll(POLLIN), POLLNVAL);
}

#[test]
fn devices() {
    let mut m = FakeMachine::default();
    let v = vfs();
    let open = |p: &str| {
        let o = v.open("/", p, O_RDWR, 0, 1).unwrap();
        OpenFile::new(Arc::new(NodeFile(o.inode)), o.path, O_RDWR)
    };
    let mut b = [7u8; 4];
    assert_eq!(open("/dev/null").read(&mut m, &mut b), Ok(0));
    assert_eq!(open("/dev/null").write(&mut m, b"gone", 1), Ok(4));
    assert_eq!(open("/dev/zero").read(&mut m, &mut b), Ok(4));
    assert_eq!(b, [0; 4]);
    assert_eq!(open("/dev/urandom").read(&mut m, &mut b), Ok(4));
    assert_eq!(b, [1, 2, 3, 4]);
    assert_eq!(open("/dev/random").read(&mut m, &mut b), Ok(4));
    assert_eq!(b, [5, 6, 7, 8]);
    let z = open("/dev/zero");
    z.read(&mut m, &mut b).unwrap();
    assert_eq!(z.seek(100, 0), Ok(0));
    assert_eq!(z.stat().rdev, (1, 5));
}

#[test]
fn pipes() {
    let mut m = FakeMachine::default();
    let mut t = FdTable::with_console();
    let (r, w) = t.pipe(0).unwrap();
    assert_eq!((r, w), (3, 4));
    let (rf, wf) = (t.get(r).unwrap(), t.get(w).unwrap());
    assert_eq!(rf.stat().mode, S_IFIFO | 0o600);
    assert_eq!(rf.stat().ino, wf.stat().ino);
    assert_eq!(rf.seek(0, 0), Err(Errno::ESPIPE));
    assert_eq!(rf.pread(&mut m, &mut [0; 1], 0), Err(Errno::ESPIPE));
    assert_eq!(rf.poll(POLLIN), 0);
    assert_eq!(wf.poll(POLLOUT), POLLOUT);
    let mut b = [0u8; 8];
    // Empty with a writer: not ready, whether blocking or not (the system-call layer
    // decides to wait); one thread could never be woken.
    assert_eq!(rf.read(&mut m, &mut b), Err(Errno::EAGAIN));
    assert_eq!(
        rf.block_on_eagain(&mut m, Err(Errno::EAGAIN)),
        Outcome::Return(Errno::EDEADLK.as_return())
    );
    rf.set_nonblock(true);
    assert_eq!(rf.read(&mut m, &mut b), Err(Errno::EAGAIN));
    assert_eq!(
        rf.block_on_eagain(&mut m, Err(Errno::EAGAIN)),
        Outcome::Return(Errno::EAGAIN.as_return())
    );
    let seq = rf.event_seq();
    assert_eq!(wf.write(&mut m, b"hello", 0), Ok(5));
    assert_ne!(rf.event_seq(), seq, "a write is an edge");
    assert_eq!(rf.poll(POLLIN), POLLIN);
    assert_eq!(wf.read(&mut m, &mut b), Err(Errno::EBADF));
    assert_eq!(rf.write(&mut m, b"x", 0), Err(Errno::EBADF));
    assert_eq!(rf.read(&mut m, &mut b[..2]), Ok(2));
    assert_eq!(rf.read(&mut m, &mut b), Ok(3));
    assert_eq!(&b[..3], b"llo");
    // Fill it up.
    let big = vec![1u8; PIPE_CAPACITY + 10];
    assert_eq!(wf.write(&mut m, &big, 0), Ok(PIPE_CAPACITY));
    assert_eq!(wf.poll(POLLOUT), 0);
    assert_eq!(wf.write(&mut m, b"x", 0), Err(Errno::EAGAIN));
    wf.set_nonblock(true);
    assert_eq!(wf.write(&mut m, b"x", 0), Err(Errno::EAGAIN));
    assert_eq!(rf.pipe().unwrap().set_capacity(4096), Err(Errno::EBUSY));
    assert_eq!(rf.pipe().unwrap().set_capacity(1 << 21), Err(Errno::EINVAL));
    assert_eq!(rf.pipe().unwrap().set_capacity(100_000), Ok(131072));
    let mut sink = vec![0u8; PIPE_CAPACITY];
    assert_eq!(rf.read(&mut m, &mut sink), Ok(PIPE_CAPACITY));
    // Writer closed (both references): end of file and hang-up.
    wf.write(&mut m, b"tail", 0).unwrap();
    drop(wf);
    t.close(w).unwrap();
    assert_eq!(rf.poll(POLLIN), POLLIN | POLLHUP);
    assert_eq!(rf.read(&mut m, &mut b), Ok(4));
    assert_eq!(rf.read(&mut m, &mut b), Ok(0));
    // Reader closed: EPIPE and POLLERR.
    let (r2, w2) = t.pipe(O_CLOEXEC | O_NONBLOCK).unwrap();
    assert_eq!(t.cloexec(r2), Ok(true));
    let wf2 = t.get(w2).unwrap();
    assert_eq!(wf2.status_flags(), O_WRONLY | O_NONBLOCK);
    t.close(r2).unwrap();
    assert_eq!(wf2.write(&mut m, b"x", 0), Err(Errno::EPIPE));
    assert_eq!(wf2.poll(POLLOUT), POLLERR);
    assert_eq!(t.pipe(O_APPEND), Err(Errno::EINVAL));
}

#[test]
fn snapshot_files() {
    let mut m = FakeMachine::default();
    let v = vfs();
    let o = v.open("/", "/proc/self/maps", O_RDONLY, 0, 1).unwrap();
    let f = OpenFile::new(
        Arc::new(Snapshot::new(o.inode, b"line\n".to_vec())),
        o.path,
        O_RDONLY,
    );
    let mut b = [0u8; 16];
    assert_eq!(f.read(&mut m, &mut b), Ok(5));
    assert_eq!(f.read(&mut m, &mut b), Ok(0));
    assert_eq!(f.pread(&mut m, &mut b, 2), Ok(3));
    assert_eq!(f.stat().size, 0);
    assert_eq!(f.seek(0, 2), Ok(5));
}

#[test]
fn generation_tracks_changes() {
    let mut t = FdTable::with_console();
    let g0 = t.generation();
    let _ = t.get(0).unwrap();
    assert_eq!(t.generation(), g0);
    let fd = t.dup(1).unwrap();
    let g1 = t.generation();
    assert_ne!(g1, g0);
    t.close(fd).unwrap();
    let g2 = t.generation();
    assert_ne!(g2, g1);
    assert!(t.close(fd).is_err());
    assert_eq!(t.generation(), g2);
    t.dup3(1, 7, None).unwrap();
    let g3 = t.generation();
    assert_ne!(g3, g2);
    t.close_range(5, 9, false).unwrap();
    assert_ne!(t.generation(), g3);
    let g4 = t.generation();
    t.close_on_exec();
    assert_ne!(t.generation(), g4);
}

#[test]
fn kernel_buffers_stop_growing_when_memory_is_low() {
    let mut m = FakeMachine::default();
    let mut t = FdTable::with_console();
    let (r, w) = t.pipe(0).unwrap();
    let (rf, wf) = (t.get(r).unwrap(), t.get(w).unwrap());
    assert_eq!(wf.write(&mut m, b"before", 0), Ok(6));
    m.pages.out_of_frames = true;
    // Growing the pipe's buffer needs memory; the bytes already there still read back.
    assert_eq!(wf.write(&mut m, &[7; 8192], 0), Err(Errno::ENOMEM));
    let mut b = [0u8; 6];
    assert_eq!(rf.read(&mut m, &mut b), Ok(6));
    assert_eq!(&b, b"before");

    let v = vfs();
    let o = v.open("/", "/tmp/f", O_CREAT | O_RDWR, 0o644, 1).unwrap();
    let fd = t
        .install(
            OpenFile::new(Arc::new(NodeFile(o.inode)), o.path, O_RDWR),
            false,
        )
        .unwrap();
    let f = t.get(fd).unwrap();
    m.pages.out_of_frames = false;
    assert_eq!(f.write(&mut m, b"abc", 1), Ok(3));
    m.pages.out_of_frames = true;
    // A full tmpfs: a write that needs a new page is ENOSPC; within the pages the file
    // has (growing inside its last page too, as Linux's tmpfs counts pages), it works.
    assert_eq!(f.write(&mut m, b"d", 1), Ok(1));
    assert_eq!(f.pwrite(&mut m, b"X", 0, 1), Ok(1));
    assert_eq!(f.pwrite(&mut m, b"XY", 4095, 1), Err(Errno::ENOSPC));
    assert_eq!(f.pwrite(&mut m, b"Z", 8192, 1), Err(Errno::ENOSPC));
}
