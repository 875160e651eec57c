//! The root filesystem: a deterministic tar of `--rootfs DIR`, `--file SRC:DEST` and a few
//! generated `/etc` files.
//!
//! Determinism: entries sorted by path, one mtime for all ([`mtime`]), uid/gid 0 (`root`), modes normalised to
//! 0755 (directories, executables) or 0644, symlinks kept as symlinks, GNU long-name headers.
//! Paths are stored relative (`etc/hosts`, directories as `etc/`). `/dev`, `/proc` and `/tmp`
//! come from the kernel and are never put in the tar.

use crate::options::FileSpec;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level directories the kernel provides itself.
pub const KERNEL_PROVIDED: [&str; 3] = ["dev", "proc", "tmp"];

/// What goes into the root filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsSpec {
    /// `--rootfs DIR`: a tree copied as the root.
    pub dir: Option<PathBuf>,
    /// `--file SRC:DEST`, applied in order after the tree.
    pub files: Vec<FileSpec>,
    /// The program's name, used for `/etc/hostname` and `/etc/hosts`.
    pub app_name: String,
    /// Where the kernel puts the program ([`crate::app::program_path`]); when that is not
    /// `/bin/NAME`, `/bin/NAME` links to it (unless the tree has its own).
    pub program_path: String,
    /// A dynamically linked program's interpreter and libraries ([`crate::dynamic`]), packed
    /// at the paths the loader asks for, with the host's symbolic links on the way. Added
    /// before `--rootfs` and `--file`, which may replace them.
    pub libraries: Vec<crate::dynamic::Library>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File { exec: bool, data: Vec<u8> },
    Symlink(PathBuf),
}

#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, (Node, bool)>, // (node, generated)
    notes: Vec<String>,
}

/// Makes a valid host name (RFC 1123 label) from a program name.
pub fn hostname(app_name: &str) -> String {
    let mut h: String = app_name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    h.truncate(63);
    let h = h.trim_matches('-');
    if h.is_empty() {
        "kiln".into()
    } else {
        h.into()
    }
}

/// The generated files, as `(path, contents)`.
pub fn generated_files(app_name: &str) -> Vec<(&'static str, String)> {
    let host = hostname(app_name);
    vec![
        ("etc/hostname", format!("{host}\n")),
        (
            "etc/hosts",
            format!("127.0.0.1\tlocalhost {host}\n::1\tlocalhost ip6-localhost ip6-loopback {host}\n"),
        ),
        // QEMU user networking's DNS server; a run-time override comes with networking.
        ("etc/resolv.conf", "nameserver 10.0.2.3\n".into()),
        // `nobody`/`nogroup` as on Debian: servers such as nginx look them up by default.
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".into(),
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into()),
        (
            "etc/nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".into(),
        ),
    ]
}

impl Tree {
    fn insert(&mut self, path: String, node: Node, generated: bool) -> anyhow::Result<()> {
        if path.is_empty() {
            return Ok(()); // the root directory itself
        }
        let top = path.split('/').next().unwrap_or("");
        if KERNEL_PROVIDED.contains(&top) {
            if path == top && node == Node::Dir {
                return Ok(());
            }
            self.notes.push(format!(
                "skipping /{path}: /{top} is provided by the kernel, not the root filesystem"
            ));
            return Ok(());
        }
        // Every parent must be a directory.
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|x| x.1)
            .unwrap_or(&[])
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            match self.nodes.get(&parent) {
                Some((Node::Dir, _)) => {}
                Some(_) => {
                    bail!("cannot put /{path} in the image: /{parent} is not a directory there")
                }
                None => {
                    self.nodes.insert(parent.clone(), (Node::Dir, generated));
                }
            }
        }
        match self.nodes.get(&path) {
            Some((Node::Dir, _)) if node == Node::Dir => {}
            Some((Node::Dir, _)) => {
                bail!("cannot replace directory /{path} in the image with a file")
            }
            Some((old, was_generated)) => {
                let same = match (old, &node) {
                    (Node::File { data: a, .. }, Node::File { data: b, .. }) => a == b,
                    (a, b) => a == b,
                };
                if *was_generated && !generated && !same {
                    self.notes
                        .push(format!("your /{path} replaces the generated one"));
                }
                self.nodes.insert(path, (node, generated));
            }
            None => {
                self.nodes.insert(path, (node, generated));
            }
        }
        Ok(())
    }

    /// Adds a library at the path the loader asks for: the host's symbolic links along that
    /// path, then the file (or the file alone, when it was found next to the program and goes
    /// to a different place in the image).
    fn add_library(&mut self, lib: &crate::dynamic::Library) -> anyhow::Result<()> {
        use crate::dynamic::{host_entries, Entry};
        let entries = host_entries(Path::new("/"), &lib.path)
            .ok()
            .filter(|e| {
                matches!(e.last(), Some(Entry::File(_, h))
                    if std::fs::canonicalize(h).ok().as_deref() == Some(lib.host.as_path()))
            })
            .unwrap_or_else(|| vec![Entry::File(lib.path.clone(), lib.host.clone())]);
        for e in entries {
            match e {
                Entry::Symlink(path, target) => {
                    let path = self.through_links(&path);
                    if matches!(self.nodes.get(&path), Some((Node::Dir, _))) {
                        // Already a directory here (from another library's path): keep it.
                        continue;
                    }
                    self.insert(path, Node::Symlink(PathBuf::from(target)), true)?;
                }
                Entry::File(path, host) => {
                    let data = std::fs::read(&host)
                        .with_context(|| format!("could not read {}", host.display()))?;
                    let path = self.through_links(&path);
                    self.insert(path, Node::File { exec: true, data }, true)?;
                }
            }
        }
        Ok(())
    }

    /// Where `path` (absolute) lands once the symbolic links already in the tree are
    /// followed for its directories (such as `/lib -> usr/lib`), relative, without a leading
    /// slash: the path to insert at so that `path` resolves to it in the image.
    fn through_links(&self, path: &str) -> String {
        let mut parts: std::collections::VecDeque<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = parts.pop_front() {
            if parts.is_empty() {
                cur.push(part);
                break;
            }
            match part.as_str() {
                "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(part);
            if let Some((Node::Symlink(target), _)) = self.nodes.get(&cur.join("/")) {
                hops += 1;
                if hops > 40 {
                    break;
                }
                cur.pop();
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    cur.clear();
                }
                for t in target.split('/').filter(|t| !t.is_empty()).rev() {
                    parts.push_front(t.to_string());
                }
            }
        }
        cur.join("/")
    }

    /// Adds the host file or tree at `src` as `dest` (relative, no leading slash).
    fn add_host(&mut self, src: &Path, dest: &str, follow: bool) -> anyhow::Result<()> {
        let meta = if follow {
            std::fs::metadata(src)
        } else {
            std::fs::symlink_metadata(src)
        }
        .with_context(|| format!("{}: no such file or directory", src.display()))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(src)
                .with_context(|| format!("could not read symlink {}", src.display()))?;
            self.insert(dest.to_string(), Node::Symlink(target), false)
        } else if ft.is_dir() {
            self.insert(dest.to_string(), Node::Dir, false)?;
            let mut children: Vec<_> = std::fs::read_dir(src)
                .with_context(|| format!("could not list {}", src.display()))?
                .collect::<Result<_, _>>()?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let name = child.file_name();
                let Some(name) = name.to_str() else {
                    bail!(
                        "{}: file name is not UTF-8; rename it",
                        child.path().display()
                    );
                };
                let d = if dest.is_empty() {
                    name.to_string()
                } else {
                    format!("{dest}/{name}")
                };
                self.add_host(&child.path(), &d, false)?;
            }
            Ok(())
        } else if ft.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let data =
                std::fs::read(src).with_context(|| format!("could not read {}", src.display()))?;
            let exec = meta.permissions().mode() & 0o111 != 0;
            self.insert(dest.to_string(), Node::File { exec, data }, false)
        } else {
            self.notes.push(format!(
                "skipping {}: only files, directories and symlinks go into the image",
                src.display()
            ));
            Ok(())
        }
    }
}

/// Builds the tar. Returns the archive and notes for the user (overrides, skipped files).
pub fn build(spec: &RootfsSpec) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let mut tree = Tree::default();
    for (path, contents) in generated_files(&spec.app_name) {
        tree.insert(
            path.to_string(),
            Node::File {
                exec: false,
                data: contents.into_bytes(),
            },
            true,
        )?;
    }
    for lib in &spec.libraries {
        tree.add_library(lib)?;
    }
    if let Some(dir) = &spec.dir {
        if !dir.is_dir() {
            bail!("--rootfs {}: not a directory", dir.display());
        }
        tree.add_host(dir, "", true)?;
    }
    for f in &spec.files {
        if !f.src.exists() {
            bail!(
                "--file {}:{}: {} does not exist",
                f.src.display(),
                f.dest,
                f.src.display()
            );
        }
        let dest = crate::options::normalize_dest(&f.dest)
            .map_err(|e| anyhow::anyhow!("--file {}:{}: {e}", f.src.display(), f.dest))?;
        // Through the image's symbolic links (Debian's `/lib -> usr/lib`), as `cp` into
        // the path would go.
        let dest = tree.through_links(dest.trim_start_matches('/'));
        tree.add_host(&f.src, &dest, true)?;
    }
    let link = format!("bin/{}", spec.app_name);
    let bin_is_dir = matches!(tree.nodes.get("bin"), None | Some((Node::Dir, _)));
    if !spec.program_path.is_empty()
        && spec.program_path.trim_start_matches('/') != link
        && bin_is_dir
        && !tree.nodes.contains_key(&link)
    {
        tree.insert(link, Node::Symlink(PathBuf::from(&spec.program_path)), true)?;
    }
    Ok((write_tar(&tree.nodes)?, tree.notes))
}

/// The page size the kernel maps file data in.
const PAGE: u64 = 4096;

/// A pax record of exactly `len` bytes (at least 12): `"<len> comment=000...\n"`.
fn pax_comment(len: usize) -> Vec<u8> {
    let digits = len.to_string().len();
    let fill = len - digits - " comment=\n".len();
    format!("{len} comment={}\n", "0".repeat(fill)).into_bytes()
}

/// Makes the data of the next entry, a file at `path`, start at a page boundary of the
/// archive (the payload places the archive at a page boundary too), so the kernel can map
/// its pages into the program in place: a pax extended header whose only record is a
/// comment of the right length goes first. Readers ignore the comment.
fn pad_to_page(b: &mut tar::Builder<Vec<u8>>, path: &str) -> anyhow::Result<()> {
    let pos = b.get_ref().len() as u64;
    // The file's own header, and a GNU long-name entry before it when the path needs one.
    let name_len = path.len() as u64 + 1;
    let header = if path.len() > 100 {
        512 + 512 + name_len.div_ceil(512) * 512
    } else {
        512
    };
    let mut need = (PAGE - (pos + header) % PAGE) % PAGE;
    if need == 0 {
        return Ok(());
    }
    if need < 1024 {
        // A pax entry is at least its header and one block.
        need += PAGE;
    }
    let data = pax_comment((need - 512) as usize);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/pad")?;
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..])?;
    Ok(())
}

/// The mtime of every entry: `SOURCE_DATE_EPOCH` when set, else one second after the epoch
/// (as Jib stamps container layers): 0 means "no time" to programs such as gzip, which
/// warns and exits with status 2 when it compresses a file so stamped.
pub fn mtime() -> anyhow::Result<u64> {
    Ok(crate::oci::layer::mtime()?.max(1))
}

fn write_tar(nodes: &BTreeMap<String, (Node, bool)>) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let stamp = mtime()?;
    for (path, (node, _)) in nodes {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(stamp);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root")?;
        h.set_groupname("root")?;
        match node {
            Node::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            }
            Node::File { exec, data } => {
                if data.starts_with(b"\x7fELF") && data.len() as u64 >= PAGE {
                    pad_to_page(&mut b, path)?;
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if *exec { 0o755 } else { 0o644 });
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..])?;
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, u32, String)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut s = String::new();
                if h.entry_type() == tar::EntryType::Symlink {
                    s = e
                        .link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                } else {
                    e.read_to_string(&mut s).unwrap();
                }
                assert_eq!(h.mtime().unwrap(), mtime().unwrap());
                assert_eq!(h.uid().unwrap(), 0);
                assert_eq!(h.gid().unwrap(), 0);
                (path, h.mode().unwrap(), s)
            })
            .collect()
    }

    fn spec(dir: Option<&Path>, files: Vec<FileSpec>) -> RootfsSpec {
        RootfsSpec {
            dir: dir.map(Path::to_path_buf),
            files,
            app_name: "Hello_App".into(),
            program_path: "/bin/Hello_App".into(),
            libraries: vec![],
        }
    }

    #[test]
    fn bin_name_links_to_a_program_kept_at_its_own_path() {
        let names = |spec: &RootfsSpec| {
            let (tar, _) = build(spec).unwrap();
            let mut out = Vec::new();
            for e in tar::Archive::new(tar.as_slice()).entries().unwrap() {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                out.push((e.path().unwrap().display().to_string(), link));
            }
            out
        };
        let mut s = spec(None, vec![]);
        s.program_path = "/usr/bin/Hello_App".into();
        let all = names(&s);
        assert!(
            all.contains(&("bin/Hello_App".into(), Some("/usr/bin/Hello_App".into()))),
            "{all:?}"
        );
        // A program at /bin/NAME needs no link; nor does a tree with its own /bin/NAME.
        let plain = names(&spec(None, vec![]));
        assert!(
            !plain.iter().any(|(p, _)| p == "bin/Hello_App"),
            "{plain:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/Hello_App"), "mine").unwrap();
        let mut s = spec(Some(dir.path()), vec![]);
        s.program_path = "/usr/bin/Hello_App".into();
        let mine = names(&s);
        assert!(mine.contains(&("bin/Hello_App".into(), None)), "{mine:?}");
    }

    #[test]
    fn generated_only() {
        let (tar, notes) = build(&spec(None, vec![])).unwrap();
        assert!(notes.is_empty());
        let e = entries(&tar);
        let paths: Vec<_> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/",
                "etc/group",
                "etc/hostname",
                "etc/hosts",
                "etc/nsswitch.conf",
                "etc/passwd",
                "etc/resolv.conf"
            ]
        );
        assert_eq!(e[2].2, "hello-app\n");
        assert!(e[3].2.contains("127.0.0.1\tlocalhost hello-app"));
        assert!(e[3].2.contains("::1"));
        assert_eq!(e[6].2, "nameserver 10.0.2.3\n");
        assert!(e[4].2.contains("hosts: files dns"));
        assert_eq!(e[0].1, 0o755);
        assert_eq!(e[1].1, 0o644);
    }

    fn sample_tree() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("tmp")).unwrap();
        std::fs::write(r.join("etc/hosts"), "mine\n").unwrap();
        std::fs::write(r.join("tmp/x"), "x").unwrap();
        std::fs::write(r.join("usr/bin/tool"), "#!").unwrap();
        std::fs::set_permissions(
            r.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o4711),
        )
        .unwrap();
        std::fs::write(r.join("secret"), "s").unwrap();
        std::fs::set_permissions(r.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("usr/bin/tool", r.join("link")).unwrap();
        let long = "d".repeat(120);
        std::fs::create_dir_all(r.join(&long)).unwrap();
        std::fs::write(r.join(&long).join("f".repeat(60)), "long").unwrap();
        std::fs::write(t.path().join("extra.conf"), "extra\n").unwrap();
        std::fs::create_dir_all(t.path().join("data/sub")).unwrap();
        std::fs::write(t.path().join("data/sub/a"), "a").unwrap();
        t
    }

    #[test]
    fn tree_files_and_overrides() {
        let t = sample_tree();
        let files = vec![
            crate::options::parse_file_spec(&format!(
                "{}:/etc/app.conf",
                t.path().join("extra.conf").display()
            ))
            .unwrap(),
            crate::options::parse_file_spec(&format!(
                "{}:/srv/data",
                t.path().join("data").display()
            ))
            .unwrap(),
        ];
        let (tar, notes) = build(&spec(Some(&t.path().join("root")), files)).unwrap();
        assert!(
            notes.iter().any(|n| n.contains("/etc/hosts replaces")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("/tmp/x") && n.contains("kernel")),
            "{notes:?}"
        );
        let e = entries(&tar);
        let get = |p: &str| {
            e.iter()
                .find(|x| x.0 == p)
                .unwrap_or_else(|| panic!("{p} missing: {e:?}"))
        };
        assert_eq!(get("etc/hosts").2, "mine\n");
        assert_eq!(get("etc/app.conf").2, "extra\n");
        assert_eq!(get("srv/data/sub/a").2, "a");
        assert_eq!(get("usr/bin/tool").1, 0o755);
        assert_eq!(get("secret").1, 0o644);
        assert_eq!(get("link").2, "usr/bin/tool");
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(60));
        assert_eq!(get(&long).2, "long");
        assert!(!e.iter().any(|x| x.0.starts_with("tmp")));
        let mut sorted: Vec<_> = e.iter().map(|x| x.0.clone()).collect();
        sorted.sort();
        assert_eq!(sorted, e.iter().map(|x| x.0.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn deterministic() {
        let t = sample_tree();
        let s = spec(Some(&t.path().join("root")), vec![]);
        let a = build(&s).unwrap().0;
        // Touch a file's mtime: the archive must not change.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(t.path().join("root/secret"), "s").unwrap();
        assert_eq!(a, build(&s).unwrap().0);
    }

    #[test]
    fn bad_inputs() {
        let t = tempfile::tempdir().unwrap();
        let missing = FileSpec {
            src: t.path().join("nope"),
            dest: "/x".into(),
        };
        let e = build(&spec(None, vec![missing])).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(t.path().join("f"), "f").unwrap();
        for dest in ["relative", "/a/../b"] {
            let f = FileSpec {
                src: t.path().join("f"),
                dest: dest.into(),
            };
            assert!(build(&spec(None, vec![f])).is_err(), "{dest}");
        }
        let e = build(&spec(Some(&t.path().join("f")), vec![]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
        // A file where the image has a directory, and a file below a file.
        let f = FileSpec {
            src: t.path().join("f"),
            dest: "/etc".into(),
        };
        assert!(build(&spec(None, vec![f])).is_err());
        let f = FileSpec {
            src: t.path().join("f"),
            dest: "/etc/hostname/x".into(),
        };
        assert!(build(&spec(None, vec![f])).is_err());
    }

    #[test]
    fn hostnames() {
        assert_eq!(hostname("hello"), "hello");
        assert_eq!(hostname("My_App.v2"), "my-app-v2");
        assert_eq!(hostname("___"), "kiln");
        assert_eq!(hostname(&"a".repeat(100)).len(), 63);
    }

    #[test]
    fn files_go_through_the_images_symbolic_links() {
        // Debian's /lib is a link to usr/lib: `--file X:/lib/terminfo` lands in
        // /usr/lib/terminfo, where the link leads, instead of failing.
        if std::fs::read_link("/lib").is_err() {
            return; // a host without the merged /usr
        }
        let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let dir = sample_tree();
        let mut s = spec(
            None,
            vec![FileSpec {
                src: dir.path().join("root/etc/hosts"),
                dest: "/lib/terminfo/d/dumb".into(),
            }],
        );
        s.libraries = vec![crate::dynamic::Library {
            path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
            host: libc,
            reason: crate::dynamic::Reason::Requested,
        }];
        let (tar_bytes, _) = build(&s).unwrap();
        let names: Vec<String> = tar::Archive::new(&tar_bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n == "usr/lib/terminfo/d/dumb"),
            "{names:?}"
        );
    }

    #[test]
    fn libraries_start_at_page_boundaries() {
        let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let lib = |path: &str| crate::dynamic::Library {
            path: path.into(),
            host: libc.clone(),
            reason: crate::dynamic::Reason::Requested,
        };
        let long = format!("/opt/{}/libc.so.6", "d".repeat(120));
        let mut s = spec(None, vec![]);
        s.libraries = vec![
            lib("/lib/x86_64-linux-gnu/libc.so.6"),
            lib("/usr/lib/other/libc.so.6"),
            lib(&long),
        ];
        let (tar_bytes, _) = build(&s).unwrap();
        let mut a = tar::Archive::new(&tar_bytes[..]);
        let mut seen = 0;
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if path.ends_with("libc.so.6") && e.header().entry_type().is_file() {
                assert_eq!(e.raw_file_position() % PAGE, 0, "{path}");
                seen += 1;
            }
        }
        assert_eq!(seen, 3);
        // Deterministic.
        assert_eq!(build(&s).unwrap().0, tar_bytes);
        assert_eq!(pax_comment(600).len(), 600);
        assert_eq!(pax_comment(12), b"12 comment=\n");
    }
}
