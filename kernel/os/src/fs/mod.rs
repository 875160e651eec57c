//! The file-system tree: a read-only root from the image's tar archive, a writable tmpfs at
//! `/tmp`, devices at `/dev` and process information at `/proc`.
//!
//! Paths resolve like Linux: absolute or relative to a base directory (the working
//! directory or a directory descriptor's path), with `.`, `..` and symbolic links (at most
//! 40 per lookup). Nodes are shared `Arc<Inode>`s, so files stay usable through open
//! descriptors after they are unlinked or renamed. Locks are `spin` mutexes held only for
//! the length of one operation, ready for threads.

pub mod filedata;
pub mod node;
pub mod p9;
pub mod tar;
pub mod volume;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::errno::{Errno, KResult};
use crate::fd::{
    FdTable, O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_TMPFILE,
    O_TRUNC,
};
use crate::procfs::ProcFile;
pub use node::{Body, Device, DirMap, FsId, Inode, Stat};

/// Longest path accepted, including its terminating NUL (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest file name (one component).
pub const NAME_MAX: usize = 255;
/// Symbolic links followed in one lookup before `ELOOP`.
pub const MAX_SYMLINKS: u32 = 40;

/// `renameat2` flag: fail with `EEXIST` if the target exists.
pub const RENAME_NOREPLACE: u32 = 1;
/// `renameat2` flag: swap the two paths.
pub const RENAME_EXCHANGE: u32 = 2;

/// The final component of a looked-up path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Last {
    /// An ordinary name.
    Name(String),
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// The path has no components (`/`).
    Root,
}

/// The result of resolving a path.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The directory holding the final component (for `Dot`, `DotDot` and `Root`: the node
    /// itself).
    pub parent: Arc<Inode>,
    /// Canonical absolute path of `parent`.
    pub parent_path: String,
    /// The final component.
    pub last: Last,
    /// The node the path names, if it exists.
    pub node: Option<Arc<Inode>>,
    /// The path ended with `/`.
    pub trailing_slash: bool,
}

impl Lookup {
    /// Canonical absolute path of what the path names (existing or not).
    pub fn path(&self) -> String {
        match &self.last {
            Last::Name(n) => join(&self.parent_path, n),
            _ => self.parent_path.clone(),
        }
    }

    /// The existing node, or `ENOENT`.
    pub fn existing(&self) -> KResult<Arc<Inode>> {
        self.node.clone().ok_or(Errno::ENOENT)
    }
}

/// `dir` + `/` + `name`, for a canonical `dir`.
fn join(dir: &str, name: &str) -> String {
    let mut s = String::with_capacity(dir.len() + name.len() + 1);
    s.push_str(dir);
    if !dir.ends_with('/') {
        s.push('/');
    }
    s.push_str(name);
    s
}

/// The parent of a canonical absolute path (`/` for `/`).
pub fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// What [`Vfs::open`] found or created.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The node.
    pub inode: Arc<Inode>,
    /// Its canonical path.
    pub path: String,
}

/// The file-system tree of the process.
#[derive(Debug)]
pub struct Vfs {
    root: Arc<Inode>,
    /// File-mode creation mask (`umask`).
    pub umask: u32,
    /// `/proc/self`.
    proc_self: Arc<Inode>,
    /// `/proc/self/fd`, whose links [`Vfs::sync_proc`] keeps up to date.
    proc_fd: Arc<Inode>,
    /// `/proc/self/task`, one entry per thread ([`Vfs::sync_proc`]).
    proc_task: Arc<Inode>,
    /// The threads `/proc/self/task` last listed.
    synced_tids: Vec<u32>,
    /// Descriptor-table generation and working directory `/proc/self` last reflected.
    synced: Option<(u64, String)>,
    /// The volumes mounted, for `/proc/self/mounts`.
    volumes: Vec<MountedVolume>,
    /// Bytes of the root filesystem (its archive and the program), for `statfs`.
    root_bytes: u64,
}

/// A volume [`Vfs::mount`] put in the tree.
#[derive(Debug, Clone)]
pub struct MountedVolume {
    /// Where it is mounted.
    pub path: String,
    /// What it is (its virtio-9p tag).
    pub source: String,
    /// Its `st_dev` minor number.
    pub minor: u32,
    /// Whether it is mounted read-only.
    pub readonly: bool,
}

fn new_dir(fs: FsId, perm: u32, now: u64) -> Arc<Inode> {
    Arc::new(Inode::new(
        fs,
        Body::Dir(Mutex::new(DirMap::new())),
        perm,
        now,
    ))
}

fn dir_of(n: &Inode) -> KResult<&Mutex<DirMap>> {
    n.dir().ok_or(Errno::ENOTDIR)
}

/// A new node that is not a directory (out of line: the tree is built from many of them,
/// and one call is smaller than each inlined).
#[inline(never)]
fn new_node(fs: FsId, body: Body, perm: u32, now: u64) -> Arc<Inode> {
    Arc::new(Inode::new(fs, body, perm, now))
}

/// Puts `node` in directory `dir` (which must be one) under `name`.
#[inline(never)]
fn put(dir: &Inode, name: &str, node: Arc<Inode>) {
    dir_of(dir).expect("dir").lock().insert(name.into(), node);
}

impl Vfs {
    /// Builds the tree from the root filesystem archive. `exe_path` is the target of
    /// `/proc/self/exe`; unless the archive holds something at that path, it becomes a
    /// read-only regular file (mode 0755) holding `exe`, the program's bytes, with any
    /// missing parent directories created. `/tmp`, `/dev` and `/proc` are mounted over
    /// whatever the archive holds at those paths; directories implied by entry paths exist
    /// even without entries.
    pub fn new(
        rootfs: &'static [u8],
        exe_path: &str,
        exe: &'static [u8],
    ) -> Result<Vfs, tar::TarError> {
        let entries = tar::parse(rootfs)?;
        let root = new_dir(FsId::Root, 0o755, 0);
        // The program gets the newest time in the archive (it is not always in it).
        let mut newest = 0;
        for e in entries {
            let t = e.mtime.saturating_mul(1_000_000_000);
            newest = newest.max(t);
            if e.path == "/" {
                if e.kind == tar::EntryKind::Dir {
                    root.set_perm(e.mode);
                }
                continue;
            }
            let (dir_path, name) = e.path.rsplit_once('/').ok_or(tar::TarError::BadName)?;
            let dir = Self::build_dirs(&root, dir_path);
            let node = match e.kind {
                tar::EntryKind::Dir => {
                    let existing = dir_of(&dir).ok().and_then(|d| d.lock().get(name).cloned());
                    if let Some(n) = existing.filter(|n| n.is_dir()) {
                        n.set_perm(e.mode);
                        continue;
                    }
                    new_dir(FsId::Root, e.mode, t)
                }
                tar::EntryKind::File => new_node(FsId::Root, Body::StaticFile(e.data), e.mode, t),
                tar::EntryKind::Symlink => new_node(FsId::Root, Body::Symlink(e.link), 0o777, t),
                tar::EntryKind::HardLink => {
                    let target = Self::find_built(&root, &e.link)
                        .filter(|n| !n.is_dir())
                        .ok_or(tar::TarError::BadLink)?;
                    target.link();
                    target
                }
            };
            let old = dir_of(&dir)
                .map_err(|_| tar::TarError::BadName)?
                .lock()
                .insert(name.into(), node);
            if let Some(old) = old {
                old.unlink(0);
            }
        }

        Self::add_exe(&root, exe_path, exe, newest);

        let now = 0;
        let tmp = new_dir(FsId::Tmp, 0o1777, now);
        let dev = new_dir(FsId::Dev, 0o755, now);
        for (name, device) in [
            ("null", Device::Null),
            ("zero", Device::Zero),
            ("random", Device::Random),
            ("urandom", Device::URandom),
            ("full", Device::Full),
        ] {
            put(
                &dev,
                name,
                new_node(FsId::Dev, Body::Device(device), 0o666, now),
            );
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            let link = Body::Symlink(target.into());
            put(&dev, name, new_node(FsId::Dev, link, 0o777, now));
        }
        // POSIX shared memory and semaphores (`shm_open`, `sem_open`) make their files in
        // /dev/shm: the writable tmpfs, as on Linux.
        put(&dev, "shm", new_dir(FsId::Tmp, 0o1777, now));
        // The program's directory is /proc/1 (its pid); /proc/self links there, as on Linux.
        let proc_ = new_dir(FsId::Proc, 0o555, now);
        let self_ = new_dir(FsId::Proc, 0o555, now);
        let proc_fd = new_dir(FsId::Proc, 0o500, now);
        let exe_link = Body::Symlink(exe_path.into());
        put(&self_, "exe", new_node(FsId::Proc, exe_link, 0o777, now));
        let proc_file = |f: ProcFile| new_node(FsId::Proc, Body::Proc(f), f.mode(), now);
        for (name, f) in ProcFile::PROCESS {
            put(&self_, name, proc_file(f));
        }
        for (name, f) in ProcFile::MACHINE {
            put(&proc_, name, proc_file(f));
        }
        let proc_net = new_dir(FsId::Proc, 0o555, now);
        for (name, f) in ProcFile::NET {
            put(&proc_net, name, proc_file(f));
        }
        put(&proc_, "net", proc_net);
        put(&self_, "fd", proc_fd.clone());
        // Names written out rather than formatted: formatting code run at boot is code
        // translated at boot under TCG (half a millisecond).
        const PID: &str = "1";
        const _: () = assert!(crate::process::PID == 1);
        let link = |target: &str| new_node(FsId::Proc, Body::Symlink(target.into()), 0o777, now);
        put(&proc_, "self", link(PID));
        put(&proc_, "thread-self", link("1/task/1"));
        put(&proc_, "mounts", link("self/mounts"));
        let task = new_dir(FsId::Proc, 0o555, now);
        put(&task, PID, link(".."));
        put(&self_, "task", task.clone());
        put(&proc_, PID, self_.clone());
        let mut sys = alloc::vec![new_dir(FsId::Proc, 0o555, now)];
        for (parent, name) in ProcFile::SYS_DIRS {
            let d = new_dir(FsId::Proc, 0o555, now);
            put(&sys[parent], name, d.clone());
            sys.push(d);
        }
        for (dir, name, f) in ProcFile::SYS {
            put(&sys[dir], name, proc_file(f));
        }
        put(&proc_, "sys", sys[0].clone());
        // /sys/devices/system/cpu: how many CPUs there are.
        let sys_root = new_dir(FsId::Proc, 0o555, now);
        let mut dir = sys_root.clone();
        for name in ["devices", "system", "cpu"] {
            let child = new_dir(FsId::Proc, 0o555, now);
            put(&dir, name, child.clone());
            dir = child;
        }
        for (name, f) in ProcFile::SYS_CPU {
            put(&dir, name, proc_file(f));
        }
        put(&root, "sys", sys_root);
        put(&root, "tmp", tmp);
        put(&root, "dev", dev);
        put(&root, "proc", proc_);
        Ok(Vfs {
            root,
            umask: 0o022,
            proc_self: self_,
            proc_fd,
            proc_task: task,
            synced_tids: Vec::new(),
            synced: None,
            volumes: Vec::new(),
            root_bytes: (rootfs.len() + exe.len()) as u64,
        })
    }

    /// While building: puts the program at `exe_path` unless something is there already,
    /// following the archive's symbolic links and creating missing directories. Gives up
    /// (leaving no file) when a non-directory is in the way or the path is unusable.
    fn add_exe(root: &Arc<Inode>, exe_path: &str, exe: &'static [u8], mtime: u64) {
        let probe = Vfs {
            root: root.clone(),
            umask: 0,
            proc_self: root.clone(),
            proc_fd: root.clone(),
            proc_task: root.clone(),
            synced_tids: Vec::new(),
            synced: None,
            volumes: Vec::new(),
            root_bytes: 0,
        };
        let Some((dir_path, name)) = exe_path.rsplit_once('/') else {
            return;
        };
        if name.is_empty() || name == "." || name == ".." {
            return;
        }
        let mut walked = String::new();
        for c in dir_path.split('/').filter(|c| !c.is_empty()) {
            walked.push('/');
            walked.push_str(c);
            let Ok(l) = probe.lookup("/", &walked, true) else {
                return;
            };
            match (&l.node, &l.last) {
                (Some(n), _) if n.is_dir() => {}
                (None, Last::Name(n)) => {
                    let Some(d) = l.parent.dir() else { return };
                    d.lock().insert(n.clone(), new_dir(FsId::Root, 0o755, 0));
                }
                _ => return,
            }
        }
        let Ok(l) = probe.lookup("/", exe_path, false) else {
            return;
        };
        if let (None, Last::Name(n)) = (&l.node, &l.last) {
            if let Some(d) = l.parent.dir() {
                d.lock().insert(
                    n.clone(),
                    Arc::new(Inode::new(FsId::Root, Body::StaticFile(exe), 0o755, mtime)),
                );
            }
        }
    }

    /// Brings `/proc/self/fd` (one symbolic link per open descriptor, to the path it was
    /// opened with), `/proc/self/cwd` and `/proc/self/task` (an entry per thread of `tids`)
    /// up to date with the descriptor table, working directory and threads. Cheap when
    /// nothing changed since the last call.
    pub fn sync_proc(&mut self, files: &FdTable, cwd: &str, tids: &[u32]) {
        if self.synced_tids != tids {
            // Each thread's directory: its own `stat`, `status` and `comm`.
            let mut d = dir_of(&self.proc_task).expect("dir").lock();
            let mut fresh = DirMap::new();
            for &tid in tids {
                let name = alloc::format!("{tid}");
                // The boot's stand-in for the main thread (a link to the process's
                // directory) is replaced too: the thread's own `stat` has its own times.
                let node = d.remove(&name).filter(|n| n.is_dir()).unwrap_or_else(|| {
                    let dir = new_dir(FsId::Proc, 0o555, 0);
                    for (file, f) in [
                        ("comm", ProcFile::TaskComm(tid)),
                        ("stat", ProcFile::TaskStat(tid)),
                        ("status", ProcFile::TaskStatus(tid)),
                    ] {
                        put(&dir, file, new_node(FsId::Proc, Body::Proc(f), f.mode(), 0));
                    }
                    dir
                });
                fresh.insert(name, node);
            }
            *d = fresh;
            self.synced_tids = tids.to_vec();
        }
        let gen = files.generation();
        if let Some((g, c)) = &self.synced {
            if *g == gen && c == cwd {
                return;
            }
        }
        let link = |target: &str| {
            Arc::new(Inode::new(
                FsId::Proc,
                Body::Symlink(target.into()),
                0o777,
                0,
            ))
        };
        let changes = self
            .synced
            .as_ref()
            .and_then(|(g, _)| files.changes_since(*g));
        if let Some(changes) = changes {
            // Only the descriptors that changed: a server opening and closing connections
            // among thousands would otherwise rebuild the whole directory at every path
            // lookup.
            let mut d = dir_of(&self.proc_fd).expect("dir").lock();
            for &fd in changes {
                let name = alloc::format!("{fd}");
                match files.get(fd as i32) {
                    Ok(f) => {
                        if d.get(&name).and_then(|n| n.symlink_target()) != Some(f.path.as_str()) {
                            d.insert(name, link(&f.path));
                        }
                    }
                    Err(_) => {
                        d.remove(&name);
                    }
                }
            }
        } else {
            let mut d = dir_of(&self.proc_fd).expect("dir").lock();
            let mut fresh = DirMap::new();
            for fd in files.fds() {
                let Ok(f) = files.get(fd) else { continue };
                let name = alloc::format!("{fd}");
                let node = match d.remove(&name) {
                    Some(old) if old.symlink_target() == Some(f.path.as_str()) => old,
                    _ => link(&f.path),
                };
                fresh.insert(name, node);
            }
            *d = fresh;
        }
        {
            let mut d = dir_of(&self.proc_self).expect("dir").lock();
            if d.get("cwd").and_then(|n| n.symlink_target()) != Some(cwd) {
                d.insert("cwd".into(), link(cwd));
            }
        }
        self.synced = Some((gen, cwd.into()));
    }

    /// If `path` names a `/proc/self/fd/N` link (itself, or at the end of a chain of
    /// symbolic links when `follow` is set, such as `/dev/stdout`), the descriptor `N`.
    /// Opening or `stat`ing such a path reaches the open file itself, as on Linux.
    pub fn fd_link(&self, base: &str, path: &str, follow: bool) -> KResult<Option<i32>> {
        if !follow {
            return Ok(None);
        }
        let mut base = String::from(base);
        let mut path = String::from(path);
        for _ in 0..=MAX_SYMLINKS {
            let l = self.lookup(&base, &path, false)?;
            let Some(n) = &l.node else { return Ok(None) };
            let Some(target) = n.symlink_target() else {
                return Ok(None);
            };
            if Arc::ptr_eq(&l.parent, &self.proc_fd) {
                if let Last::Name(name) = &l.last {
                    return Ok(
                        kiln_abi::cmdline::number(name, 10).and_then(|n| i32::try_from(n).ok())
                    );
                }
            }
            let target = String::from(target);
            base = l.parent_path.clone();
            path = target;
        }
        Err(Errno::ELOOP)
    }

    /// The checks `open` applies to an existing node for `flags`: `EEXIST` with
    /// `O_CREAT | O_EXCL`, `ELOOP` for a symbolic link without `O_PATH`, `ENOTDIR`,
    /// `EISDIR`, `EROFS` and `EACCES` for writes, and `O_TRUNC`.
    pub fn open_existing(&self, node: &Inode, flags: u32, now: u64) -> KResult<()> {
        let acc = flags & O_ACCMODE;
        if flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL {
            return Err(Errno::EEXIST);
        }
        if node.symlink_target().is_some() && flags & O_PATH == 0 {
            return Err(Errno::ELOOP);
        }
        if flags & O_DIRECTORY != 0 && !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if flags & O_PATH == 0 {
            let wants_write = acc != O_RDONLY || flags & O_TRUNC != 0;
            if node.is_dir() && (wants_write || flags & O_CREAT != 0) {
                return Err(Errno::EISDIR);
            }
            if wants_write {
                match node.body {
                    Body::Device(_) => {}
                    Body::Proc(f) if f.renames().is_none() => return Err(Errno::EACCES),
                    Body::Proc(_) => {}
                    Body::Remote(ref r) => r.vol.writable()?,
                    _ if node.fs != FsId::Tmp => return Err(Errno::EROFS),
                    _ => {}
                }
            }
            if flags & O_TRUNC != 0 {
                if let Body::MemFile(_) | Body::Remote(_) = node.body {
                    node.truncate(0, now)?;
                }
            }
        }
        Ok(())
    }

    /// While building: the directory at `path` (normalised), creating missing directories and
    /// replacing non-directories in the way.
    fn build_dirs(root: &Arc<Inode>, path: &str) -> Arc<Inode> {
        let mut cur = root.clone();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            let next = {
                let mut d = dir_of(&cur)
                    .expect("built directories are directories")
                    .lock();
                match d.get(c) {
                    Some(n) if n.is_dir() => n.clone(),
                    _ => {
                        let n = new_dir(FsId::Root, 0o755, 0);
                        if let Some(old) = d.insert(c.into(), n.clone()) {
                            old.unlink(0);
                        }
                        n
                    }
                }
            };
            cur = next;
        }
        cur
    }

    /// While building: the node at a normalised path, following no symlinks.
    fn find_built(root: &Arc<Inode>, path: &str) -> Option<Arc<Inode>> {
        let mut cur = root.clone();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            let next = cur.dir()?.lock().get(c).cloned()?;
            cur = next;
        }
        Some(cur)
    }

    /// Puts a read-only file holding `data` at absolute path `path` in the root file
    /// system, replacing what the image had there (for files the kernel generates at boot,
    /// such as `/etc/resolv.conf` from `kiln.dns`). Missing parent directories are created.
    pub fn set_static_file(&self, path: &str, data: &'static [u8]) -> KResult<()> {
        let (dir_path, name) = path.rsplit_once('/').ok_or(Errno::EINVAL)?;
        if !path.starts_with('/') || name.is_empty() {
            return Err(Errno::EINVAL);
        }
        let dir = Self::build_dirs(&self.root, dir_path);
        let node = Arc::new(Inode::new(FsId::Root, Body::StaticFile(data), 0o644, 0));
        let old = dir_of(&dir)?.lock().insert(name.into(), node);
        if let Some(old) = old {
            old.unlink(0);
        }
        Ok(())
    }

    /// Mounts the directory node `root` (a volume's, named `source`) at the absolute
    /// `path`, creating missing directories on the way and hiding whatever was there.
    pub fn mount(
        &mut self,
        path: &str,
        root: Arc<Inode>,
        source: &str,
        readonly: bool,
    ) -> KResult<()> {
        let (dir_path, name) = path
            .trim_end_matches('/')
            .rsplit_once('/')
            .ok_or(Errno::EINVAL)?;
        if !path.starts_with('/')
            || name.is_empty()
            || name == "."
            || name == ".."
            || !root.is_dir()
        {
            return Err(Errno::EINVAL);
        }
        let dir = Self::build_dirs(&self.root, dir_path);
        let minor = root.stat().dev.1;
        dir_of(&dir)?.lock().insert(name.into(), root);
        self.volumes.push(MountedVolume {
            path: path.into(),
            source: source.into(),
            minor,
            readonly,
        });
        Ok(())
    }

    /// Bytes of the root filesystem: its archive and the program.
    pub fn root_bytes(&self) -> u64 {
        self.root_bytes
    }

    /// The volumes mounted so far.
    pub fn volumes(&self) -> &[MountedVolume] {
        &self.volumes
    }

    /// The root directory.
    pub fn root(&self) -> &Arc<Inode> {
        &self.root
    }

    /// Resolves `path` relative to the canonical absolute directory `base` (ignored for
    /// absolute paths). A final symbolic link is followed when `follow` is set or the path
    /// ends with `/`. A missing final component is not an error (see [`Lookup::node`]);
    /// a missing or non-directory intermediate one is (`ENOENT`, `ENOTDIR`).
    pub fn lookup(&self, base: &str, path: &str, follow: bool) -> KResult<Lookup> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let trailing_slash = path.ends_with('/');
        let mut stack: Vec<(String, Arc<Inode>)> = alloc::vec![(String::new(), self.root.clone())];
        // Components still to walk, last first.
        let mut pending: Vec<String> = Vec::new();
        push_components(&mut pending, path);
        if !path.starts_with('/') {
            push_components(&mut pending, base);
        }
        let mut links = 0u32;
        let mut last = Last::Root;
        while let Some(comp) = pending.pop() {
            let is_last = pending.is_empty();
            let cur = stack.last().expect("root stays").1.clone();
            if !cur.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            match comp.as_str() {
                "." => last = Last::Dot,
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    last = Last::DotDot;
                }
                name => {
                    if name.len() > NAME_MAX {
                        return Err(Errno::ENAMETOOLONG);
                    }
                    let child = child_of(&cur, name)?;
                    match child {
                        None if is_last => {
                            return Ok(Lookup {
                                parent: cur,
                                parent_path: canonical(&stack),
                                last: Last::Name(comp),
                                node: None,
                                trailing_slash,
                            });
                        }
                        None => return Err(Errno::ENOENT),
                        Some(c) => {
                            if let Some(target) = c.symlink_target() {
                                if !is_last || follow || trailing_slash {
                                    links += 1;
                                    if links > MAX_SYMLINKS {
                                        return Err(Errno::ELOOP);
                                    }
                                    if target.is_empty() {
                                        return Err(Errno::ENOENT);
                                    }
                                    if target.starts_with('/') {
                                        stack.truncate(1);
                                    }
                                    push_components(&mut pending, target);
                                    if pending.is_empty() {
                                        // The link points at "/".
                                        last = Last::Root;
                                    }
                                    continue;
                                }
                            }
                            if is_last {
                                if trailing_slash && !c.is_dir() {
                                    return Err(Errno::ENOTDIR);
                                }
                                return Ok(Lookup {
                                    parent: cur,
                                    parent_path: canonical(&stack),
                                    last: Last::Name(comp),
                                    node: Some(c),
                                    trailing_slash,
                                });
                            }
                            stack.push((comp, c));
                        }
                    }
                }
            }
        }
        let node = stack.last().expect("root stays").1.clone();
        if !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(Lookup {
            parent: node.clone(),
            parent_path: canonical(&stack),
            last: if stack.len() == 1 && last != Last::Dot && last != Last::DotDot {
                Last::Root
            } else {
                last
            },
            node: Some(node),
            trailing_slash,
        })
    }

    /// Resolves an existing node (`ENOENT` if missing).
    pub fn find(&self, base: &str, path: &str, follow: bool) -> KResult<Arc<Inode>> {
        self.lookup(base, path, follow)?.existing()
    }

    /// The canonical path of an existing directory, for `chdir`.
    pub fn dir_path(&self, base: &str, path: &str) -> KResult<String> {
        let l = self.lookup(base, path, true)?;
        let n = l.existing()?;
        if !n.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(l.path())
    }

    /// Opens (and with `O_CREAT` creates) a file, applying Linux's checks for `O_EXCL`,
    /// `O_DIRECTORY`, `O_NOFOLLOW`, `O_TRUNC`, `O_TMPFILE` and write access (`EROFS` outside
    /// `/tmp` and `/dev`; `EISDIR` for directories). `mode` is masked with the umask.
    pub fn open(&self, base: &str, path: &str, flags: u32, mode: u32, now: u64) -> KResult<Opened> {
        let acc = flags & O_ACCMODE;
        if flags & O_TMPFILE == O_TMPFILE {
            if acc == O_RDONLY {
                return Err(Errno::EINVAL);
            }
            let l = self.lookup(base, path, true)?;
            let dir = l.existing()?;
            if !dir.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if dir.fs != FsId::Tmp {
                return Err(Errno::EOPNOTSUPP);
            }
            let n = Inode::new(
                FsId::Tmp,
                Body::MemFile(Mutex::new(filedata::FileData::new())),
                mode & !self.umask,
                now,
            );
            n.unlink(now);
            return Ok(Opened {
                inode: Arc::new(n),
                path: join(&l.path(), "#tmpfile"),
            });
        }
        if flags & O_CREAT != 0 && flags & O_DIRECTORY != 0 {
            return Err(Errno::EINVAL);
        }
        let excl = flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL;
        let follow = flags & O_NOFOLLOW == 0 && !excl;
        let l = self.lookup(base, path, follow)?;
        let Some(node) = l.node.clone() else {
            if flags & O_CREAT == 0 {
                return Err(Errno::ENOENT);
            }
            if l.trailing_slash {
                return Err(Errno::EISDIR);
            }
            let Last::Name(name) = &l.last else {
                return Err(Errno::ENOENT);
            };
            if let Some(r) = l.parent.remote() {
                r.create(name, mode & !self.umask)?;
                let inode = r.child(name)?.ok_or(Errno::ENOENT)?;
                return Ok(Opened {
                    inode,
                    path: l.path(),
                });
            }
            if l.parent.fs != FsId::Tmp {
                return Err(Errno::EROFS);
            }
            if l.parent.removed() {
                return Err(Errno::ENOENT);
            }
            let n = Arc::new(Inode::new(
                FsId::Tmp,
                Body::MemFile(Mutex::new(filedata::FileData::new())),
                mode & !self.umask,
                now,
            ));
            dir_of(&l.parent)?.lock().insert(name.clone(), n.clone());
            l.parent.touch(now);
            return Ok(Opened {
                inode: n,
                path: l.path(),
            });
        };
        self.open_existing(&node, flags, now)?;
        Ok(Opened {
            path: l.path(),
            inode: node,
        })
    }

    /// Creates a directory in `/tmp` (`EEXIST` if the path exists, `EROFS` elsewhere).
    pub fn mkdir(&self, base: &str, path: &str, mode: u32, now: u64) -> KResult<()> {
        let l = self.lookup(base, path, false)?;
        if l.node.is_some() {
            return Err(Errno::EEXIST);
        }
        let Last::Name(name) = &l.last else {
            return Err(Errno::EEXIST);
        };
        if let Some(r) = l.parent.remote() {
            return r.mkdir(name, mode & 0o1777 & !self.umask);
        }
        if l.parent.fs != FsId::Tmp {
            return Err(Errno::EROFS);
        }
        if l.parent.removed() {
            return Err(Errno::ENOENT);
        }
        let n = new_dir(FsId::Tmp, mode & 0o1777 & !self.umask, now);
        dir_of(&l.parent)?.lock().insert(name.clone(), n);
        l.parent.touch(now);
        Ok(())
    }

    /// Removes a non-directory (`EISDIR` for directories).
    pub fn unlink(&self, base: &str, path: &str, now: u64) -> KResult<()> {
        let l = self.lookup(base, path, false)?;
        let Last::Name(name) = &l.last else {
            return Err(Errno::EISDIR);
        };
        mount_point_busy(&l)?;
        if let Some(r) = l.parent.remote() {
            if l.existing()?.is_dir() {
                return Err(Errno::EISDIR);
            }
            return r.unlink(name, false);
        }
        if l.parent.fs != FsId::Tmp {
            return Err(Errno::EROFS);
        }
        let node = l.existing()?;
        if node.is_dir() {
            return Err(Errno::EISDIR);
        }
        dir_of(&l.parent)?.lock().remove(name);
        node.unlink(now);
        l.parent.touch(now);
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, base: &str, path: &str, now: u64) -> KResult<()> {
        let l = self.lookup(base, path, false)?;
        let name = match &l.last {
            Last::Name(n) => n,
            Last::Dot => return Err(Errno::EINVAL),
            Last::DotDot => return Err(Errno::ENOTEMPTY),
            Last::Root => return Err(Errno::EBUSY),
        };
        mount_point_busy(&l)?;
        if let Some(r) = l.parent.remote() {
            if !l.existing()?.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            return r.unlink(name, true);
        }
        if l.parent.fs != FsId::Tmp {
            return Err(Errno::EROFS);
        }
        let node = l.existing()?;
        let d = dir_of(&node)?;
        if !d.lock().is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        dir_of(&l.parent)?.lock().remove(name);
        node.unlink(now);
        l.parent.touch(now);
        Ok(())
    }

    /// The target of a symbolic link (`EINVAL` if not a link).
    pub fn readlink(&self, base: &str, path: &str) -> KResult<String> {
        let n = self.find(base, path, false)?;
        n.symlink_target().map(String::from).ok_or(Errno::EINVAL)
    }

    /// Sets the length of a file by path.
    pub fn truncate(&self, base: &str, path: &str, len: u64, now: u64) -> KResult<()> {
        let n = self.find(base, path, true)?;
        if n.is_dir() {
            return Err(Errno::EISDIR);
        }
        if !n.is_regular() {
            return Err(Errno::EINVAL);
        }
        if n.fs != FsId::Tmp && n.remote().is_none() {
            return Err(Errno::EROFS);
        }
        n.truncate(len, now)
    }

    /// `access`: `mode` is a mask of `R_OK` 4, `W_OK` 2, `X_OK` 1 (0: existence). Everything
    /// runs as root, so only `W_OK` on read-only file systems (`EROFS`) and `X_OK` on a
    /// file with no execute bit (`EACCES`) fail.
    pub fn access(&self, base: &str, path: &str, mode: u32, follow: bool) -> KResult<()> {
        if mode & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        let n = self.find(base, path, follow)?;
        if mode & 2 != 0 {
            match &n.body {
                Body::Remote(r) => r.vol.writable()?,
                Body::Device(_) => {}
                _ if n.fs != FsId::Tmp => return Err(Errno::EROFS),
                _ => {}
            }
        }
        if mode & 1 != 0 && !n.is_dir() && (n.perm() & 0o111 == 0 || !runnable(&n)) {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    /// The program file `execve` would run at `path`: its canonical path and bytes.
    /// `EACCES` for a directory, anything but a regular file, a file without an execute
    /// bit, or one outside the root filesystem (`/tmp` and volumes are mounted `noexec`:
    /// only the image's files can be mapped in place); `ELOOP` for a symbolic link when
    /// `follow` is off.
    pub fn executable(
        &self,
        base: &str,
        path: &str,
        follow: bool,
    ) -> KResult<(String, &'static [u8])> {
        let l = self.lookup(base, path, follow)?;
        let n = l.existing()?;
        if n.symlink_target().is_some() {
            return Err(Errno::ELOOP);
        }
        if !n.is_regular() || n.perm() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        match n.body {
            Body::StaticFile(bytes) => Ok((l.path(), bytes)),
            _ => Err(Errno::EACCES),
        }
    }

    /// Makes `/proc/self/exe` point at `path` (after `execve`).
    pub fn set_exe(&self, path: &str) {
        let node = Arc::new(Inode::new(FsId::Proc, Body::Symlink(path.into()), 0o777, 0));
        dir_of(&self.proc_self)
            .expect("dir")
            .lock()
            .insert("exe".into(), node);
    }

    /// Renames within `/tmp` (`EXDEV` across file systems, `EROFS` outside `/tmp`), with the
    /// `renameat2` flags [`RENAME_NOREPLACE`] and [`RENAME_EXCHANGE`].
    pub fn rename(
        &self,
        old_base: &str,
        old: &str,
        new_base: &str,
        new: &str,
        flags: u32,
        now: u64,
    ) -> KResult<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(Errno::EINVAL);
        }
        let lo = self.lookup(old_base, old, false)?;
        let ln = self.lookup(new_base, new, false)?;
        if lo.parent.fs != ln.parent.fs {
            return Err(Errno::EXDEV);
        }
        let Last::Name(old_name) = &lo.last else {
            return Err(Errno::EBUSY);
        };
        let Last::Name(new_name) = &ln.last else {
            return Err(if flags & RENAME_NOREPLACE != 0 {
                Errno::EEXIST
            } else {
                Errno::EBUSY
            });
        };
        mount_point_busy(&lo)?;
        mount_point_busy(&ln)?;
        if let (Some(a), Some(b)) = (lo.parent.remote(), ln.parent.remote()) {
            return rename_remote(a, &lo, b, &ln, flags);
        }
        if lo.parent.fs != FsId::Tmp {
            return Err(Errno::EROFS);
        }
        let src = lo.existing()?;
        if (lo.trailing_slash || ln.trailing_slash) && !src.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let old_path = lo.path();
        let new_path = ln.path();
        let inside = |outer: &str, inner: &str| {
            inner.len() > outer.len()
                && inner.starts_with(outer)
                && inner.as_bytes()[outer.len()] == b'/'
        };
        if flags & RENAME_EXCHANGE != 0 {
            let dst = ln.existing()?;
            if Arc::ptr_eq(&src, &dst) {
                return Ok(());
            }
            if inside(&old_path, &new_path) || inside(&new_path, &old_path) {
                return Err(Errno::EINVAL);
            }
            self.with_two_dirs(&lo.parent, &ln.parent, |a, b| {
                a.insert(old_name.clone(), dst.clone());
                b.unwrap_or(a).insert(new_name.clone(), src.clone());
            })?;
        } else {
            if let Some(dst) = &ln.node {
                if flags & RENAME_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                if Arc::ptr_eq(&src, dst) {
                    return Ok(());
                }
                match (src.is_dir(), dst.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if !dir_of(dst)?.lock().is_empty() => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
            }
            if src.is_dir() && inside(&old_path, &new_path) {
                return Err(Errno::EINVAL);
            }
            if ln.parent.removed() {
                return Err(Errno::ENOENT);
            }
            let replaced = self.with_two_dirs(&lo.parent, &ln.parent, |a, b| {
                a.remove(old_name);
                b.unwrap_or(a).insert(new_name.clone(), src.clone())
            })?;
            if let Some(r) = replaced {
                r.unlink(now);
            }
        }
        src.touch_ctime(now);
        lo.parent.touch(now);
        ln.parent.touch(now);
        Ok(())
    }

    /// Creates a symbolic link at `path` holding `target` (`ENOENT` for an empty target,
    /// `EEXIST` if the path exists, `EROFS` outside `/tmp`).
    pub fn symlink(&self, target: &str, base: &str, path: &str, now: u64) -> KResult<()> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        let l = self.lookup(base, path, false)?;
        if l.node.is_some() {
            return Err(Errno::EEXIST);
        }
        let Last::Name(name) = &l.last else {
            return Err(Errno::EEXIST);
        };
        if l.trailing_slash {
            return Err(Errno::ENOENT);
        }
        if let Some(r) = l.parent.remote() {
            return r.symlink(name, target);
        }
        if l.parent.fs != FsId::Tmp {
            return Err(Errno::EROFS);
        }
        if l.parent.removed() {
            return Err(Errno::ENOENT);
        }
        let n = Arc::new(Inode::new(
            FsId::Tmp,
            Body::Symlink(target.into()),
            0o777,
            now,
        ));
        dir_of(&l.parent)?.lock().insert(name.clone(), n);
        l.parent.touch(now);
        Ok(())
    }

    /// Adds the hard link `path` to `node` (`EEXIST` if the path exists, `EROFS` outside
    /// `/tmp`, `EXDEV` when `node` is elsewhere, `EPERM` for directories, `ENOENT` for a
    /// removed node unless `relink`, which revives an `O_TMPFILE` file).
    pub fn link(
        &self,
        node: &Arc<Inode>,
        base: &str,
        path: &str,
        relink: bool,
        now: u64,
    ) -> KResult<()> {
        let l = self.lookup(base, path, false)?;
        if l.node.is_some() {
            return Err(Errno::EEXIST);
        }
        let Last::Name(name) = &l.last else {
            return Err(Errno::EEXIST);
        };
        if l.trailing_slash {
            return Err(Errno::ENOENT);
        }
        if let Some(r) = l.parent.remote() {
            r.vol.writable()?;
            // Hard links on volumes are not supported (yet): the file system refuses them.
            return Err(Errno::EPERM);
        }
        if l.parent.fs != FsId::Tmp {
            return Err(Errno::EROFS);
        }
        if node.fs != l.parent.fs {
            return Err(Errno::EXDEV);
        }
        if node.is_dir() {
            return Err(Errno::EPERM);
        }
        if (node.removed() && !relink) || l.parent.removed() {
            return Err(Errno::ENOENT);
        }
        dir_of(&l.parent)?.lock().insert(name.clone(), node.clone());
        node.link();
        node.touch_ctime(now);
        l.parent.touch(now);
        Ok(())
    }

    /// Runs `f` with both directories' maps locked in inode order; the second is `None`
    /// when both are the same directory (locked once).
    fn with_two_dirs<R>(
        &self,
        a: &Arc<Inode>,
        b: &Arc<Inode>,
        f: impl FnOnce(&mut DirMap, Option<&mut DirMap>) -> R,
    ) -> KResult<R> {
        let (da, db) = (dir_of(a)?, dir_of(b)?);
        if Arc::ptr_eq(a, b) {
            return Ok(f(&mut da.lock(), None));
        }
        if a.ino < b.ino {
            let mut ga = da.lock();
            let mut gb = db.lock();
            Ok(f(&mut ga, Some(&mut gb)))
        } else {
            let mut gb = db.lock();
            let mut ga = da.lock();
            Ok(f(&mut ga, Some(&mut gb)))
        }
    }
}

/// Whether a node's metadata (owner, times, and with `mode` its permission bits) may
/// change: `EROFS` on the read-only root, `EPERM` for permission bits under `/proc`.
/// `/tmp` and `/dev` nodes keep what they are given.
pub fn check_setattr(n: &Inode, mode: bool) -> KResult<()> {
    if let Some(r) = n.remote() {
        return r.vol.writable();
    }
    match n.fs {
        FsId::Root => Err(Errno::EROFS),
        FsId::Proc | FsId::Pipe if mode => Err(Errno::EPERM),
        _ => Ok(()),
    }
}

/// The entry `name` of the directory `dir` (in memory or on a volume).
fn child_of(dir: &Inode, name: &str) -> KResult<Option<Arc<Inode>>> {
    match &dir.body {
        Body::Dir(d) => Ok(d.lock().get(name).cloned()),
        Body::Remote(r) => r.child(name),
        _ => Err(Errno::ENOTDIR),
    }
}

/// `EBUSY` when the lookup names a volume's mount point (its root, in a guest directory).
fn mount_point_busy(l: &Lookup) -> KResult<()> {
    let at_root = l.node.as_ref().is_some_and(|n| n.remote().is_some());
    if at_root && l.parent.remote().is_none() && matches!(l.last, Last::Name(_)) {
        return Err(Errno::EBUSY);
    }
    Ok(())
}

/// `rename` between two directories of volumes, with Linux's checks for the target.
fn rename_remote(
    a: &volume::Remote,
    lo: &Lookup,
    b: &volume::Remote,
    ln: &Lookup,
    flags: u32,
) -> KResult<()> {
    let (Last::Name(old), Last::Name(new)) = (&lo.last, &ln.last) else {
        return Err(Errno::EBUSY);
    };
    if flags & RENAME_EXCHANGE != 0 {
        // 9P2000.L has no exchange.
        return Err(Errno::EINVAL);
    }
    let src = lo.existing()?;
    if (lo.trailing_slash || ln.trailing_slash) && !src.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    if let Some(dst) = &ln.node {
        if flags & RENAME_NOREPLACE != 0 {
            return Err(Errno::EEXIST);
        }
        match (src.is_dir(), dst.is_dir()) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            _ => {}
        }
    }
    a.rename(old, b, new)
}

/// Pushes the components of `path` onto `pending` so that the first is popped first.
fn push_components(pending: &mut Vec<String>, path: &str) {
    for c in path.split('/').rev() {
        if !c.is_empty() {
            pending.push(c.into());
        }
    }
}

/// The canonical path of a lookup stack.
fn canonical(stack: &[(String, Arc<Inode>)]) -> String {
    if stack.len() == 1 {
        return "/".into();
    }
    let mut s = String::new();
    for (name, _) in &stack[1..] {
        s.push('/');
        s.push_str(name);
    }
    s
}

#[cfg(test)]
pub(crate) mod tests;

/// Whether a regular file can be run: only the root filesystem's files, whose bytes stay in
/// memory to be mapped in place (`/tmp` and volumes are `noexec`).
fn runnable(n: &Inode) -> bool {
    matches!(n.body, Body::StaticFile(_))
}
