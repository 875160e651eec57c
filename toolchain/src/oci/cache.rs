//! The image cache of `pull` and `run REF`, content-addressed by manifest digest.
//!
//! ```text
//! $KILN_CACHE_DIR (else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)
//!   images/sha256/HEX/        one verified image; HEX is the manifest digest
//!     manifest.json  config.json  entry.json  NAME.elf (or NAME.qcow2, NAME.raw)
//!   tags/REGISTRY/REPO/TAG    the digest a tag resolved to when last pulled
//!   tmp/                      downloads in progress
//! ```
//!
//! An entry is assembled in a directory under `tmp/` and renamed into `images/` only after
//! every digest and the image's `image_sha256` have been checked, so `images/` never holds
//! anything half-downloaded or unverified.

use super::reference::{digest_ok, PullRef};
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// What `entry.json` records about a cached image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryInfo {
    /// The reference it was first pulled as.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// The bootable file's name in the entry.
    pub file: String,
    /// The image's own `image_sha256` (from its provenance).
    pub image_sha256: String,
}

/// A cached image.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its directory.
    pub dir: PathBuf,
    /// What `entry.json` says.
    pub info: EntryInfo,
}

impl Entry {
    /// The file `run` boots.
    pub fn image(&self) -> PathBuf {
        self.dir.join(&self.info.file)
    }
}

/// The cache root from the environment `var`s, in [`Cache::from_env`]'s order.
fn choose_root(var: impl Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    var("KILN_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("kiln")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/kiln")))
}

impl Cache {
    /// The cache at `root`.
    pub fn at(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The user's cache: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else
    /// `~/.cache/kiln`.
    pub fn from_env() -> anyhow::Result<Cache> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = choose_root(var).ok_or_else(|| {
            anyhow!("no cache directory: set KILN_CACHE_DIR (or XDG_CACHE_HOME or HOME)")
        })?;
        Ok(Cache { root })
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the entry for manifest `digest`.
    pub fn entry_dir(&self, digest: &str) -> anyhow::Result<PathBuf> {
        if !digest_ok(digest) {
            bail!("{digest:?} is not a sha256 digest");
        }
        Ok(self
            .root
            .join("images/sha256")
            .join(&digest["sha256:".len()..]))
    }

    /// The entry for manifest `digest`, if cached.
    pub fn get(&self, digest: &str) -> anyhow::Result<Option<Entry>> {
        let dir = self.entry_dir(digest)?;
        let Ok(text) = std::fs::read(dir.join("entry.json")) else {
            return Ok(None);
        };
        let info: EntryInfo = serde_json::from_slice(&text)
            .with_context(|| format!("{}/entry.json is damaged", dir.display()))?;
        if info.digest != digest || info.file.contains('/') {
            bail!("{}/entry.json is damaged", dir.display());
        }
        Ok(Some(Entry { dir, info }))
    }

    /// Removes the entry for `digest` (a damaged one).
    pub fn remove(&self, digest: &str) -> anyhow::Result<()> {
        let dir = self.entry_dir(digest)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("could not remove {}", dir.display()))?;
        }
        Ok(())
    }

    /// A fresh directory under `tmp/` to assemble an entry in (removed when dropped).
    pub fn staging(&self) -> anyhow::Result<tempfile::TempDir> {
        let tmp = self.root.join("tmp");
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("could not create the cache directory {}", tmp.display()))?;
        tempfile::Builder::new()
            .prefix("pull-")
            .tempdir_in(&tmp)
            .with_context(|| format!("could not write in {}", tmp.display()))
    }

    /// Moves a verified, complete `staging` directory (holding the file `info.file`) into
    /// place as the entry for `info.digest`. Another pull that got there first wins: the
    /// content is the same.
    pub fn commit(&self, staging: tempfile::TempDir, info: &EntryInfo) -> anyhow::Result<Entry> {
        std::fs::write(
            staging.path().join("entry.json"),
            serde_json::to_vec_pretty(info)?,
        )?;
        let dir = self.entry_dir(&info.digest)?;
        let parent = dir.parent().expect("entry directories have a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
        let from = staging.keep();
        if let Err(e) = std::fs::rename(&from, &dir) {
            let _ = std::fs::remove_dir_all(&from);
            if self.get(&info.digest)?.is_none() {
                bail!("could not move the image into {}: {e}", dir.display());
            }
        }
        Ok(Entry {
            dir,
            info: info.clone(),
        })
    }

    fn tag_file(&self, r: &PullRef) -> Option<PathBuf> {
        // Each part was checked by the parser: no `..`, no empty components.
        let tag = r.tag.as_ref()?;
        Some(
            self.root
                .join("tags")
                .join(&r.registry)
                .join(&r.repository)
                .join(tag),
        )
    }

    /// The digest `r`'s tag resolved to when it was last pulled.
    pub fn tag(&self, r: &PullRef) -> Option<String> {
        let text = std::fs::read_to_string(self.tag_file(r)?).ok()?;
        let d = text.trim();
        digest_ok(d).then(|| d.to_string())
    }

    /// Records that `r`'s tag resolved to `digest`.
    pub fn set_tag(&self, r: &PullRef, digest: &str) -> anyhow::Result<()> {
        match self.tag_file(r) {
            Some(f) => crate::image::write_atomically(&f, format!("{digest}\n").as_bytes()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn entries_appear_whole_and_tags_point_at_them() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path().join("kiln"));
        let d = digest('a');
        assert!(cache.get(&d).unwrap().is_none());
        assert!(cache.entry_dir("sha256:../x").is_err());
        let staging = cache.staging().unwrap();
        std::fs::write(staging.path().join("hello.elf"), b"image").unwrap();
        let info = EntryInfo {
            reference: "127.0.0.1:5000/kiln/hello:1".into(),
            digest: d.clone(),
            file: "hello.elf".into(),
            image_sha256: "cd".repeat(32),
        };
        let e = cache.commit(staging, &info).unwrap();
        assert_eq!(
            e.image(),
            tmp.path()
                .join("kiln/images/sha256")
                .join("a".repeat(64))
                .join("hello.elf")
        );
        assert_eq!(std::fs::read(e.image()).unwrap(), b"image");
        assert_eq!(cache.get(&d).unwrap().unwrap().info, info);
        // Nothing is left behind in tmp/.
        assert_eq!(
            std::fs::read_dir(cache.root().join("tmp")).unwrap().count(),
            0
        );
        // A second commit of the same digest keeps the first.
        let staging = cache.staging().unwrap();
        std::fs::write(staging.path().join("hello.elf"), b"image").unwrap();
        cache.commit(staging, &info).unwrap();
        assert_eq!(
            std::fs::read_dir(cache.root().join("tmp")).unwrap().count(),
            0
        );

        let r = PullRef::parse("127.0.0.1:5000/kiln/hello:1").unwrap();
        assert_eq!(cache.tag(&r), None);
        cache.set_tag(&r, &d).unwrap();
        assert_eq!(cache.tag(&r), Some(d.clone()));
        assert!(cache
            .root()
            .join("tags/127.0.0.1:5000/kiln/hello/1")
            .is_file());
        let by_digest = PullRef::parse(&format!("127.0.0.1:5000/kiln/hello@{d}")).unwrap();
        assert_eq!(cache.tag(&by_digest), None);
        cache.remove(&d).unwrap();
        assert!(cache.get(&d).unwrap().is_none());
    }

    #[test]
    fn the_root_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        const ALL: &[(&str, &str)] = &[
            ("KILN_CACHE_DIR", "/k"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(choose_root(env(ALL)), Some("/k".into()));
        assert_eq!(choose_root(env(&ALL[1..])), Some("/x/kiln".into()));
        assert_eq!(choose_root(env(&ALL[2..])), Some("/h/.cache/kiln".into()));
        assert_eq!(choose_root(env(&[])), None);
    }

    #[test]
    fn a_staging_directory_that_is_dropped_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path().to_path_buf());
        let staging = cache.staging().unwrap();
        std::fs::write(staging.path().join("partial"), b"half").unwrap();
        drop(staging);
        assert_eq!(
            std::fs::read_dir(cache.root().join("tmp")).unwrap().count(),
            0
        );
        assert!(!cache.root().join("images").exists());
    }
}
