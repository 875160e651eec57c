use super::node::{S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};
use super::tar::tests::{finish, leak, push};
use super::*;
use crate::fd::{O_RDWR, O_WRONLY};

/// A small root: /bin/app, /etc/hosts (+ hard link), links, and implied /usr/lib.
pub(crate) fn rootfs() -> &'static [u8] {
    let mut a = Vec::new();
    push(&mut a, b"./", b'5', 0o755, b"", b"");
    push(&mut a, b"bin/app", b'0', 0o755, b"", b"\x7fELF");
    push(&mut a, b"etc/", b'5', 0o700, b"", b"");
    push(
        &mut a,
        b"etc/hosts",
        b'0',
        0o644,
        b"",
        b"127.0.0.1 localhost\n",
    );
    push(&mut a, b"etc/hosts2", b'1', 0o644, b"etc/hosts", b"");
    push(&mut a, b"etc/rel", b'2', 0o777, b"hosts", b"");
    push(&mut a, b"etc/abs", b'2', 0o777, b"/etc/hosts", b"");
    push(&mut a, b"etc/up", b'2', 0o777, b"../bin", b"");
    push(&mut a, b"loop1", b'2', 0o777, b"loop2", b"");
    push(&mut a, b"loop2", b'2', 0o777, b"loop1", b"");
    push(&mut a, b"dangling", b'2', 0o777, b"/tmp/made", b"");
    push(&mut a, b"usr/lib/libc.so", b'0', 0o644, b"", b"lib");
    push(&mut a, b"tmp/hidden", b'0', 0o644, b"", b"mounted over");
    finish(&mut a);
    leak(a)
}

pub(crate) fn vfs() -> Vfs {
    Vfs::new(rootfs(), "/bin/app", b"").unwrap()
}

fn err<T: core::fmt::Debug>(r: KResult<T>) -> Errno {
    r.unwrap_err()
}

#[test]
fn tree_from_tar() {
    let v = vfs();
    let hosts = v.find("/", "/etc/hosts", true).unwrap();
    let st = hosts.stat();
    assert_eq!(st.mode, S_IFREG | 0o644);
    assert_eq!(st.size, 20);
    assert_eq!(st.nlink, 2);
    assert_eq!(st.blksize, 4096);
    assert_eq!(st.blocks, 8);
    // The archive's mtime, in nanoseconds.
    let t = crate::fs::tar::tests::MTIME * 1_000_000_000;
    assert_eq!((st.atime, st.mtime, st.ctime), (t, t, t));
    // The program, when the archive lacks it, gets the archive's newest time.
    assert_eq!(v.find("/", "/bin/app", true).unwrap().stat().mtime, t);
    assert_eq!(st.dev, (0, FsId::Root as u32));
    let again = v.find("/etc", "hosts2", true).unwrap();
    assert_eq!(again.ino, hosts.ino);
    assert_eq!(
        v.find("/", "/etc", true).unwrap().stat().mode,
        S_IFDIR | 0o700
    );
    // Implied directories.
    let usr = v.find("/", "/usr/lib", true).unwrap();
    assert_eq!(usr.stat().mode, S_IFDIR | 0o755);
    assert_eq!(v.find("/", "/usr", true).unwrap().nlink(), 3);
    // Mounts hide the archive's /tmp.
    assert_eq!(err(v.find("/", "/tmp/hidden", true)), Errno::ENOENT);
    assert_eq!(
        v.find("/", "/tmp", true).unwrap().stat().mode,
        S_IFDIR | 0o1777
    );
    let null = v.find("/", "/dev/null", true).unwrap();
    assert_eq!(null.stat().mode, S_IFCHR | 0o666);
    assert_eq!(null.stat().rdev, (1, 3));
    for d in [
        "/dev/zero",
        "/dev/random",
        "/dev/urandom",
        "/proc/self/maps",
    ] {
        v.find("/", d, true).unwrap();
    }
    assert_eq!(v.readlink("/", "/proc/self/exe").unwrap(), "/bin/app");
    assert_eq!(
        v.find("/", "/proc/self/exe", true).unwrap().ino,
        v.find("/", "/bin/app", true).unwrap().ino
    );
}

#[test]
fn bad_archives_are_rejected() {
    let mut a = Vec::new();
    push(&mut a, b"x", b'1', 0o644, b"missing", b"");
    assert_eq!(
        Vfs::new(leak(a), "/x", b"").unwrap_err(),
        tar::TarError::BadLink
    );
    assert_eq!(
        Vfs::new(leak(vec![1; 100]), "/x", b"").unwrap_err(),
        tar::TarError::Truncated
    );
    assert!(Vfs::new(&[], "/x", b"").is_ok());
}

#[test]
fn resolution() {
    let v = vfs();
    let hosts = v.find("/", "/etc/hosts", true).unwrap().ino;
    assert_eq!(v.find("/etc", "rel", true).unwrap().ino, hosts);
    assert_eq!(v.find("/etc", "./abs", true).unwrap().ino, hosts);
    assert_eq!(
        v.find("/usr/lib", "../../etc/../etc//hosts", true)
            .unwrap()
            .ino,
        hosts
    );
    assert_eq!(v.find("/", "/../../etc/hosts", true).unwrap().ino, hosts);
    assert_eq!(v.find("/", "etc/up/app", true).unwrap().stat().size, 4);
    // Not following the last link.
    let l = v.find("/", "/etc/rel", false).unwrap();
    assert_eq!(l.stat().mode, S_IFLNK | 0o777);
    assert_eq!(l.stat().size, 5);
    // Canonical paths see through links.
    assert_eq!(v.lookup("/", "/etc/up/", true).unwrap().path(), "/bin");
    assert_eq!(v.lookup("/", "/etc/up/..", true).unwrap().path(), "/");
    assert_eq!(v.lookup("/etc", "..", true).unwrap().last, Last::DotDot);
    assert_eq!(v.lookup("/etc", "/", true).unwrap().last, Last::Root);
    assert_eq!(v.dir_path("/", "etc/up").unwrap(), "/bin");
    assert_eq!(err(v.dir_path("/", "etc/hosts")), Errno::ENOTDIR);
    // Errors.
    assert_eq!(err(v.find("/", "/loop1", true)), Errno::ELOOP);
    assert_eq!(
        v.find("/", "/loop1", false).unwrap().stat().mode & S_IFLNK,
        S_IFLNK
    );
    assert_eq!(err(v.find("/", "/loop1/x", false)), Errno::ELOOP);
    assert_eq!(err(v.find("/", "/nope", true)), Errno::ENOENT);
    assert_eq!(err(v.find("/", "/nope/x", true)), Errno::ENOENT);
    assert_eq!(err(v.find("/", "/etc/hosts/x", true)), Errno::ENOTDIR);
    assert_eq!(err(v.find("/", "/etc/hosts/", true)), Errno::ENOTDIR);
    assert_eq!(err(v.find("/", "/etc/hosts/.", true)), Errno::ENOTDIR);
    assert_eq!(err(v.find("/", "/etc/rel/", false)), Errno::ENOTDIR);
    assert_eq!(err(v.find("/", "", true)), Errno::ENOENT);
    assert_eq!(
        err(v.find("/", &"a".repeat(256), true)),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        err(v.find("/", &"a/".repeat(2048), true)),
        Errno::ENAMETOOLONG
    );
    assert_eq!(err(v.find("/", "/dangling", true)), Errno::ENOENT);
    // A chain of exactly 40 links resolves; 41 does not.
    let mut a = Vec::new();
    for i in 0..41 {
        let target = alloc::format!("l{}", i + 1);
        push(
            &mut a,
            alloc::format!("l{i}").as_bytes(),
            b'2',
            0o777,
            target.as_bytes(),
            b"",
        );
    }
    push(&mut a, b"l41", b'0', 0o644, b"", b"end");
    let v = Vfs::new(leak(a), "/x", b"").unwrap();
    assert_eq!(v.find("/", "/l1", true).unwrap().size(), 3);
    assert_eq!(err(v.find("/", "/l0", true)), Errno::ELOOP);
}

#[test]
fn open_checks() {
    let v = vfs();
    let o = v
        .open("/", "/etc/hosts", O_RDONLY | O_CREAT, 0o644, 1)
        .unwrap();
    assert_eq!(o.path, "/etc/hosts");
    assert_eq!(err(v.open("/", "/etc/hosts", O_WRONLY, 0, 1)), Errno::EROFS);
    assert_eq!(
        err(v.open("/", "/etc/hosts", O_RDONLY | O_TRUNC, 0, 1)),
        Errno::EROFS
    );
    assert_eq!(
        err(v.open("/", "/etc/new", O_RDWR | O_CREAT, 0o644, 1)),
        Errno::EROFS
    );
    assert_eq!(err(v.open("/", "/etc/new", O_RDONLY, 0, 1)), Errno::ENOENT);
    assert_eq!(
        err(v.open("/", "/etc/hosts", O_CREAT | O_EXCL, 0, 1)),
        Errno::EEXIST
    );
    assert_eq!(
        err(v.open("/", "/etc/rel", O_CREAT | O_EXCL, 0, 1)),
        Errno::EEXIST
    );
    assert_eq!(
        err(v.open("/", "/etc/hosts", O_DIRECTORY, 0, 1)),
        Errno::ENOTDIR
    );
    assert_eq!(err(v.open("/", "/etc", O_WRONLY, 0, 1)), Errno::EISDIR);
    assert_eq!(err(v.open("/", "/etc", O_CREAT, 0, 1)), Errno::EISDIR);
    assert_eq!(
        err(v.open("/", "/etc", O_CREAT | O_DIRECTORY, 0, 1)),
        Errno::EINVAL
    );
    assert_eq!(err(v.open("/", "/etc/rel", O_NOFOLLOW, 0, 1)), Errno::ELOOP);
    assert!(v
        .open("/", "/etc/rel", O_NOFOLLOW | O_PATH, 0, 1)
        .unwrap()
        .inode
        .symlink_target()
        .is_some());
    assert_eq!(v.open("/", "/etc", O_DIRECTORY, 0, 1).unwrap().path, "/etc");
    assert_eq!(
        err(v.open("/", "/tmp/x/", O_CREAT | O_WRONLY, 0, 1)),
        Errno::EISDIR
    );
    assert_eq!(
        err(v.open("/", "/proc/self/maps", O_WRONLY, 0, 1)),
        Errno::EACCES
    );
    v.open("/", "/dev/null", O_RDWR, 0, 1).unwrap();
    // Creation in /tmp, masked by the umask; O_TRUNC empties.
    let f = v.open("/tmp", "f", O_CREAT | O_WRONLY, 0o666, 7).unwrap();
    assert_eq!(f.path, "/tmp/f");
    let st = f.inode.stat();
    assert_eq!(st.mode, S_IFREG | 0o644);
    assert_eq!((st.atime, st.mtime, st.ctime, st.dev), (7, 7, 7, (0, 2)));
    f.inode.write_at(0, b"data", 8).unwrap();
    let g = v.open("/", "/tmp/f", O_CREAT | O_RDWR, 0o600, 9).unwrap();
    assert!(Arc::ptr_eq(&g.inode, &f.inode));
    assert_eq!(g.inode.size(), 4);
    v.open("/", "/tmp/f", O_RDWR | O_TRUNC, 0, 9).unwrap();
    assert_eq!(f.inode.size(), 0);
    // A dangling link with O_CREAT creates its target.
    let d = v
        .open("/", "/dangling", O_CREAT | O_WRONLY, 0o600, 1)
        .unwrap();
    assert_eq!(d.path, "/tmp/made");
    assert!(v.find("/", "/tmp/made", true).is_ok());
    // O_TMPFILE: unnamed, only in /tmp.
    let t = v.open("/", "/tmp", O_TMPFILE | O_RDWR, 0o600, 1).unwrap();
    assert_eq!(t.inode.nlink(), 0);
    assert_eq!(
        err(v.open("/", "/etc", O_TMPFILE | O_RDWR, 0o600, 1)),
        Errno::EOPNOTSUPP
    );
    assert_eq!(err(v.open("/", "/tmp", O_TMPFILE, 0o600, 1)), Errno::EINVAL);
}

#[test]
fn directories_in_tmp() {
    let mut v = vfs();
    v.umask = 0o077;
    v.mkdir("/", "/tmp/d", 0o777, 3).unwrap();
    assert_eq!(
        v.find("/", "/tmp/d", true).unwrap().stat().mode,
        S_IFDIR | 0o700
    );
    assert_eq!(v.find("/", "/tmp", true).unwrap().nlink(), 3);
    assert_eq!(err(v.mkdir("/", "/tmp/d", 0o777, 3)), Errno::EEXIST);
    assert_eq!(err(v.mkdir("/", "/etc", 0o777, 3)), Errno::EEXIST);
    assert_eq!(err(v.mkdir("/", "/etc/x", 0o777, 3)), Errno::EROFS);
    assert_eq!(err(v.mkdir("/", "/tmp/no/x", 0o777, 3)), Errno::ENOENT);
    assert_eq!(err(v.mkdir("/tmp", ".", 0o777, 3)), Errno::EEXIST);
    v.mkdir("/tmp", "d/e/", 0o777, 3).unwrap();
    assert_eq!(err(v.rmdir("/", "/tmp/d", 4)), Errno::ENOTEMPTY);
    assert_eq!(err(v.rmdir("/tmp/d", ".", 4)), Errno::EINVAL);
    assert_eq!(err(v.rmdir("/tmp/d", "..", 4)), Errno::ENOTEMPTY);
    assert_eq!(err(v.rmdir("/", "/", 4)), Errno::EBUSY);
    assert_eq!(err(v.rmdir("/", "/usr/lib", 4)), Errno::EROFS);
    assert_eq!(err(v.rmdir("/", "/tmp/nope", 4)), Errno::ENOENT);
    v.open("/", "/tmp/file", O_CREAT | O_WRONLY, 0o644, 1)
        .unwrap();
    assert_eq!(err(v.rmdir("/", "/tmp/file", 4)), Errno::ENOTDIR);
    assert_eq!(err(v.unlink("/", "/tmp/d", 4)), Errno::EISDIR);
    assert_eq!(err(v.unlink("/", "/tmp/file/", 4)), Errno::ENOTDIR);
    assert_eq!(err(v.unlink("/", "/etc/hosts", 4)), Errno::EROFS);
    assert_eq!(err(v.unlink("/", "/tmp/nope", 4)), Errno::ENOENT);
    let e = v.find("/", "/tmp/d/e", true).unwrap();
    v.rmdir("/", "/tmp/d/e/", 5).unwrap();
    assert_eq!(e.nlink(), 0);
    assert_eq!(v.find("/", "/tmp/d", true).unwrap().stat().mtime, 5);
    v.rmdir("/", "/tmp/d", 5).unwrap();
    assert_eq!(err(v.find("/", "/tmp/d", true)), Errno::ENOENT);
    let f = v.find("/", "/tmp/file", true).unwrap();
    v.unlink("/", "/tmp/file", 6).unwrap();
    assert_eq!(f.nlink(), 0);
    assert_eq!(err(v.find("/", "/tmp/file", true)), Errno::ENOENT);
    // Still usable through the reference.
    f.write_at(0, b"x", 7).unwrap();
}

#[test]
fn rename_rules() {
    let v = vfs();
    v.mkdir("/", "/tmp/a", 0o755, 1).unwrap();
    v.mkdir("/", "/tmp/a/sub", 0o755, 1).unwrap();
    v.mkdir("/", "/tmp/empty", 0o755, 1).unwrap();
    let f = v
        .open("/", "/tmp/f", O_CREAT | O_WRONLY, 0o644, 1)
        .unwrap()
        .inode;
    let g = v
        .open("/", "/tmp/g", O_CREAT | O_WRONLY, 0o644, 1)
        .unwrap()
        .inode;
    assert_eq!(
        err(v.rename("/", "/tmp/f", "/", "/etc/f", 0, 2)),
        Errno::EXDEV
    );
    assert_eq!(
        err(v.rename("/", "/etc/hosts", "/", "/etc/h", 0, 2)),
        Errno::EROFS
    );
    assert_eq!(
        err(v.rename("/", "/etc/nothing", "/", "/etc/h", 0, 2)),
        Errno::EROFS
    );
    assert_eq!(
        err(v.rename("/", "/tmp/none", "/", "/tmp/h", 0, 2)),
        Errno::ENOENT
    );
    assert_eq!(
        err(v.rename("/", "/tmp/a", "/", "/tmp/a/sub/x", 0, 2)),
        Errno::EINVAL
    );
    assert_eq!(
        err(v.rename("/", "/tmp/a", "/", "/tmp/f", 0, 2)),
        Errno::ENOTDIR
    );
    assert_eq!(
        err(v.rename("/", "/tmp/f", "/", "/tmp/a", 0, 2)),
        Errno::EISDIR
    );
    assert_eq!(
        err(v.rename("/", "/tmp/empty", "/", "/tmp/a", 0, 2)),
        Errno::ENOTEMPTY
    );
    assert_eq!(
        err(v.rename("/", "/tmp/f", "/", "/tmp/g", RENAME_NOREPLACE, 2)),
        Errno::EEXIST
    );
    assert_eq!(
        err(v.rename("/", "/tmp/f", "/", "/tmp/g", 3, 2)),
        Errno::EINVAL
    );
    assert_eq!(
        err(v.rename("/", "/tmp/f", "/", "/tmp/g", 8, 2)),
        Errno::EINVAL
    );
    assert_eq!(
        err(v.rename("/", "/tmp/f/", "/", "/tmp/h", 0, 2)),
        Errno::ENOTDIR
    );
    assert_eq!(
        err(v.rename("/tmp", ".", "/", "/tmp/h", 0, 2)),
        Errno::EBUSY
    );
    // Same directory, replacing g.
    v.rename("/", "/tmp/f", "/tmp", "g", 0, 3).unwrap();
    assert!(Arc::ptr_eq(&v.find("/", "/tmp/g", true).unwrap(), &f));
    assert_eq!(err(v.find("/", "/tmp/f", true)), Errno::ENOENT);
    assert_eq!(g.nlink(), 0);
    assert_eq!(f.stat().ctime, 3);
    // Into another directory; a directory over an empty one.
    v.rename("/", "/tmp/g", "/", "/tmp/a/sub/g", 0, 4).unwrap();
    v.rename("/", "/tmp/a/sub", "/", "/tmp/empty", 0, 4)
        .unwrap();
    assert!(Arc::ptr_eq(&v.find("/", "/tmp/empty/g", true).unwrap(), &f));
    // Same file is a no-op.
    v.rename("/", "/tmp/empty/g", "/", "/tmp/empty/g", 0, 4)
        .unwrap();
    // Exchange.
    let h = v
        .open("/", "/tmp/h", O_CREAT | O_WRONLY, 0o644, 1)
        .unwrap()
        .inode;
    v.rename("/", "/tmp/h", "/", "/tmp/empty/g", RENAME_EXCHANGE, 5)
        .unwrap();
    assert!(Arc::ptr_eq(&v.find("/", "/tmp/h", true).unwrap(), &f));
    assert!(Arc::ptr_eq(&v.find("/", "/tmp/empty/g", true).unwrap(), &h));
    assert_eq!(
        err(v.rename("/", "/tmp/h", "/", "/tmp/zz", RENAME_EXCHANGE, 5)),
        Errno::ENOENT
    );
}

#[test]
fn access_and_truncate() {
    let v = vfs();
    v.access("/", "/etc/hosts", 4, true).unwrap();
    v.access("/", "/bin/app", 1, true).unwrap();
    assert_eq!(err(v.access("/", "/etc/hosts", 1, true)), Errno::EACCES);
    assert_eq!(err(v.access("/", "/etc/hosts", 2, true)), Errno::EROFS);
    assert_eq!(err(v.access("/", "/etc/hosts", 8, true)), Errno::EINVAL);
    assert_eq!(err(v.access("/", "/dangling", 0, true)), Errno::ENOENT);
    v.access("/", "/dangling", 0, false).unwrap();
    v.access("/", "/dev/null", 6, true).unwrap();
    assert_eq!(err(v.truncate("/", "/etc/hosts", 0, 1)), Errno::EROFS);
    assert_eq!(err(v.truncate("/", "/tmp", 0, 1)), Errno::EISDIR);
    assert_eq!(err(v.truncate("/", "/dev/null", 0, 1)), Errno::EINVAL);
    let f = v
        .open("/", "/tmp/t", O_CREAT | O_WRONLY, 0o644, 1)
        .unwrap()
        .inode;
    v.truncate("/", "/tmp/t", 10, 2).unwrap();
    assert_eq!(f.size(), 10);
    assert_eq!(err(v.readlink("/", "/etc/hosts")), Errno::EINVAL);
    assert_eq!(v.readlink("/etc", "up").unwrap(), "../bin");
}

#[test]
fn exe_file_from_memory() {
    // Missing from the archive: created (with parents) from the program's bytes.
    let v = Vfs::new(rootfs(), "/opt/app/run", b"\x7fELF-prog").unwrap();
    let n = v.find("/", "/proc/self/exe", true).unwrap();
    assert_eq!(n.stat().mode, S_IFREG | 0o755);
    assert_eq!(n.fs, FsId::Root);
    let mut buf = [0u8; 16];
    assert_eq!(n.read_at(0, &mut buf), 9);
    assert_eq!(&buf[..9], b"\x7fELF-prog");
    assert!(v.find("/", "/opt", true).unwrap().is_dir());
    // The archive's file wins.
    let v = Vfs::new(rootfs(), "/bin/app", b"other").unwrap();
    assert_eq!(v.find("/", "/bin/app", true).unwrap().size(), 4);
    // Through an archive symlink to a directory (/etc/up -> ../bin).
    let v = Vfs::new(rootfs(), "/etc/up/new", b"x").unwrap();
    assert_eq!(v.find("/", "/bin/new", true).unwrap().size(), 1);
    // A file in the way: nothing is created.
    let v = Vfs::new(rootfs(), "/etc/hosts/x", b"x").unwrap();
    assert!(v.find("/", "/etc/hosts", true).unwrap().is_regular());
    assert!(Vfs::new(&[], "", b"x").is_ok());
    assert!(Vfs::new(&[], "/", b"x").is_ok());
}

#[test]
fn vfs_symlink_and_link() {
    let v = vfs();
    v.symlink("/etc/hosts", "/", "/tmp/s", 5).unwrap();
    assert_eq!(v.readlink("/", "/tmp/s").unwrap(), "/etc/hosts");
    assert_eq!(err(v.symlink("x", "/", "/tmp/s", 5)), Errno::EEXIST);
    assert_eq!(err(v.symlink("", "/", "/tmp/e", 5)), Errno::ENOENT);
    assert_eq!(err(v.symlink("x", "/", "/etc/e", 5)), Errno::EROFS);
    assert_eq!(err(v.symlink("x", "/", "/tmp/", 5)), Errno::EEXIST);
    assert_eq!(err(v.symlink("x", "/", "/tmp/e/", 5)), Errno::ENOENT);
    let o = v
        .open("/", "/tmp/f", O_WRONLY | crate::fd::O_CREAT, 0o644, 1)
        .unwrap();
    v.link(&o.inode, "/", "/tmp/g", false, 2).unwrap();
    assert_eq!(o.inode.nlink(), 2);
    assert_eq!(
        err(v.link(&o.inode, "/", "/tmp/g", false, 2)),
        Errno::EEXIST
    );
    assert_eq!(err(v.link(&o.inode, "/", "/etc/g", false, 2)), Errno::EROFS);
    let hosts = v.find("/", "/etc/hosts", true).unwrap();
    assert_eq!(err(v.link(&hosts, "/", "/tmp/h", false, 2)), Errno::EXDEV);
    let tmp = v.find("/", "/tmp", true).unwrap();
    assert_eq!(err(v.link(&tmp, "/", "/tmp/t", false, 2)), Errno::EPERM);
    v.unlink("/", "/tmp/f", 3).unwrap();
    v.unlink("/", "/tmp/g", 3).unwrap();
    assert_eq!(
        err(v.link(&o.inode, "/", "/tmp/back", false, 4)),
        Errno::ENOENT
    );
    v.link(&o.inode, "/", "/tmp/back", true, 4).unwrap();
    assert_eq!(o.inode.nlink(), 1);
}

#[test]
fn proc_self_links() {
    use crate::fd::{FdTable, NodeFile, OpenFile};
    let mut v = vfs();
    let mut files = FdTable::with_console();
    v.sync_proc(&files, "/etc", &[1]);
    assert_eq!(v.readlink("/", "/proc/self/fd/2").unwrap(), "/dev/console");
    assert_eq!(v.readlink("/", "/proc/self/cwd").unwrap(), "/etc");
    assert_eq!(err(v.readlink("/", "/proc/self/fd/3")), Errno::ENOENT);
    let n = v.find("/", "/etc/hosts", true).unwrap();
    let fd = files
        .install(
            OpenFile::new(Arc::new(NodeFile(n)), "/etc/hosts".into(), 0),
            false,
        )
        .unwrap();
    v.sync_proc(&files, "/etc", &[1]);
    assert_eq!(v.readlink("/", "/proc/self/fd/3").unwrap(), "/etc/hosts");
    // Unchanged links keep their nodes.
    let before = v.find("/", "/proc/self/fd/0", false).unwrap().ino;
    files.close(fd).unwrap();
    v.sync_proc(&files, "/", &[1]);
    assert_eq!(v.find("/", "/proc/self/fd/0", false).unwrap().ino, before);
    assert_eq!(err(v.readlink("/", "/proc/self/fd/3")), Errno::ENOENT);
    assert_eq!(v.readlink("/", "/proc/self/cwd").unwrap(), "/");
    // One task directory per thread.
    v.sync_proc(&files, "/", &[1, 4, 7]);
    let tasks: Vec<String> = v
        .find("/", "/proc/self/task", true)
        .unwrap()
        .dir()
        .unwrap()
        .lock()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(tasks, ["1", "4", "7"]);
    assert!(v.find("/", "/proc/self/task/7/status", true).is_ok());
    v.sync_proc(&files, "/", &[1]);
    assert_eq!(err(v.find("/", "/proc/self/task/7", true)), Errno::ENOENT);
    // fd_link finds the descriptor behind a chain of links.
    assert_eq!(v.fd_link("/", "/dev/stdout", true), Ok(Some(1)));
    assert_eq!(v.fd_link("/", "/dev/fd/2", true), Ok(Some(2)));
    assert_eq!(v.fd_link("/dev", "stdin", true), Ok(Some(0)));
    assert_eq!(v.fd_link("/", "/dev/stdout", false), Ok(None));
    assert_eq!(v.fd_link("/", "/etc/abs", true), Ok(None));
    assert_eq!(v.fd_link("/", "/etc/hosts", true), Ok(None));
    assert_eq!(v.fd_link("/", "/nope", true), Ok(None));
    assert_eq!(v.fd_link("/", "/loop1", true), Err(Errno::ELOOP));
    assert_eq!(v.readlink("/", "/dev/fd").unwrap(), "/proc/self/fd");
}

#[test]
fn generated_files_replace_the_images() {
    let v = vfs();
    v.set_static_file("/etc/resolv.conf", b"nameserver 10.0.0.1\n")
        .unwrap();
    let n = v.find("/", "/etc/resolv.conf", true).unwrap();
    assert!(!n.is_dir());
    assert_eq!(n.stat().size, 20);
    v.set_static_file("/new/dir/file", b"x").unwrap();
    assert!(v.find("/", "/new/dir", true).unwrap().is_dir());
    assert_eq!(v.set_static_file("relative", b"x"), Err(Errno::EINVAL));
    assert_eq!(v.set_static_file("/dir/", b"x"), Err(Errno::EINVAL));
}

#[test]
fn proc_self_fd_follows_many_changes_piecemeal_and_after_bulk_closes() {
    use crate::fd::{FdTable, NodeFile, OpenFile};
    let mut v = vfs();
    let mut files = FdTable::with_console();
    let n = v.find("/", "/etc/hosts", true).unwrap();
    let open = |files: &mut FdTable, path: &str| {
        files
            .install(
                OpenFile::new(Arc::new(NodeFile(n.clone())), path.into(), 0),
                true,
            )
            .unwrap()
    };
    let listing = |v: &Vfs| -> Vec<(String, String)> {
        let d = v.find("/", "/proc/self/fd", true).unwrap();
        let mut l: Vec<(String, String)> = (d.dir().unwrap().lock().iter())
            .map(|(k, node)| (k.clone(), node.symlink_target().unwrap().into()))
            .collect();
        l.sort_by_key(|(k, _)| k.parse::<u32>().unwrap());
        l
    };
    let expected = |files: &FdTable| -> Vec<(String, String)> {
        files
            .open()
            .map(|(fd, f)| (alloc::format!("{fd}"), f.path.clone()))
            .collect()
    };
    v.sync_proc(&files, "/", &[1]);
    // A server's churn: opens and closes between lookups, a descriptor reused for
    // another file, dup2 over an open one; more changes than the table keeps, too.
    for round in 0..3 {
        let count = [5, 40, 300][round];
        let fds: Vec<i32> = (0..count)
            .map(|i| open(&mut files, &alloc::format!("/a{i}")))
            .collect();
        for fd in fds.iter().step_by(2) {
            files.close(*fd).unwrap();
        }
        let again = open(&mut files, "/again");
        files.dup3(again, 4, None).unwrap();
        v.sync_proc(&files, "/", &[1]);
        assert_eq!(listing(&v), expected(&files), "round {round}");
    }
    // A bulk close (execve's close-on-exec): rebuilt from the table.
    files.close_on_exec();
    v.sync_proc(&files, "/", &[1]);
    assert_eq!(listing(&v), expected(&files));
    assert_eq!(
        listing(&v).len(),
        4,
        "0, 1, 2 and the dup2 without close-on-exec"
    );
}
