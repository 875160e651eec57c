//! The sources an installed `kiln` carries (the kernel's and the ABI crate's, packed by the
//! `cli` package's build script), unpacked once per version into the user's cache, so the
//! kernel is built from source with no clone of the repository.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Sources packed into a binary.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    /// A tar archive: `Cargo.toml` (a workspace for `abi`), `abi/`, `kernel/`.
    pub tar: &'static [u8],
    /// Its SHA-256 (hex), naming its directory in the cache.
    pub sha256: &'static str,
}

/// Kiln's cache: `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("KILN_CACHE_DIR") {
        return Ok(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Ok(d.join("kiln"));
    }
    var("HOME")
        .map(|h| h.join(".cache/kiln"))
        .context("no cache directory: set KILN_CACHE_DIR or HOME")
}

impl Embedded {
    /// The unpacked sources' root, unpacking them first when this version is not there yet
    /// (into a temporary directory renamed into place, so a half-unpacked tree is never used).
    pub fn unpack(&self) -> anyhow::Result<PathBuf> {
        self.unpack_into(&cache_dir()?)
    }

    /// [`Embedded::unpack`] into the cache at `cache`.
    pub fn unpack_into(&self, cache: &Path) -> anyhow::Result<PathBuf> {
        let base = cache.join("sources");
        let dir = base.join(&self.sha256[..self.sha256.len().min(16)]);
        if dir.join("kernel/Cargo.toml").is_file() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&base)
            .with_context(|| format!("could not create {}", base.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&base)
            .context("could not create a directory to unpack the kernel's sources in")?;
        tar::Archive::new(self.tar)
            .unpack(tmp.path())
            .context("could not unpack the kernel's sources")?;
        match std::fs::rename(tmp.path(), &dir) {
            Ok(()) => {
                // Renamed: nothing left for the temporary directory to remove.
                let _ = tmp.keep();
            }
            // Another `kiln` unpacked the same version first: use theirs.
            Err(_) if dir.join("kernel/Cargo.toml").is_file() => {}
            Err(e) => return Err(e).context(format!("could not create {}", dir.display())),
        }
        Ok(dir)
    }
}

/// Where an installed `kiln` writes its outputs: the target directory's parent of the
/// Cargo project around the current directory (so images land in its `target/kiln`), or
/// the current directory outside any project.
pub fn work_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("no current directory")?;
    Ok(project_root(&cwd).unwrap_or(cwd))
}

/// The nearest directory from `dir` up holding a `Cargo.toml`.
pub fn project_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_unpack_once_into_the_cache() {
        let mut builder = tar::Builder::new(Vec::new());
        let body = b"[package]\nname = \"k\"\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        builder
            .append_data(&mut h, "kernel/Cargo.toml", &body[..])
            .unwrap();
        let tar: &'static [u8] = Box::leak(builder.into_inner().unwrap().into_boxed_slice());
        let cache = tempfile::tempdir().unwrap();
        let e = Embedded {
            tar,
            sha256: "0123456789abcdef0123",
        };
        let dir = e.unpack_into(cache.path()).unwrap();
        assert_eq!(dir, cache.path().join("sources/0123456789abcdef"));
        assert_eq!(std::fs::read(dir.join("kernel/Cargo.toml")).unwrap(), body);
        // Again: the same directory, nothing unpacked twice, no temporary left behind.
        assert_eq!(e.unpack_into(cache.path()).unwrap(), dir);
        let entries = std::fs::read_dir(cache.path().join("sources"))
            .unwrap()
            .count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn projects_are_found_upwards() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(d.path().join("src/a")).unwrap();
        assert_eq!(
            project_root(&d.path().join("src/a")),
            Some(d.path().to_path_buf())
        );
    }
}
