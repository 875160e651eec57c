//! Where things live in a Kiln checkout.

use std::path::{Path, PathBuf};

/// The directories Kiln reads from and writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The sources' root (holds `kernel/` and `abi/`): the repository, or for an installed
    /// `kiln` the sources it carries, unpacked.
    pub root: PathBuf,
    /// Where outputs go (`target/kiln` under it): the repository, or the user's project.
    pub work: PathBuf,
}

impl Layout {
    /// A layout rooted at `root`, writing there too.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Layout {
            work: root.clone(),
            root,
        }
    }

    /// The same sources, with outputs under `work` instead.
    pub fn with_work(self, work: impl Into<PathBuf>) -> Self {
        Layout {
            work: work.into(),
            ..self
        }
    }

    /// The kernel's cargo workspace.
    pub fn kernel_dir(&self) -> PathBuf {
        self.root.join("kernel")
    }

    /// The kernel ELF that `cargo build --release` in [`Layout::kernel_dir`] produces.
    pub fn kernel_elf(&self) -> PathBuf {
        self.kernel_dir()
            .join("target/x86_64-unknown-linux-gnu/release/kiln-kernel")
    }

    /// The kernel ELF of variant `v` (see [`crate::link::KernelVariant`]), in the variant's
    /// own target directory.
    pub fn kernel_elf_for(&self, v: crate::link::KernelVariant) -> PathBuf {
        self.kernel_dir()
            .join(v.target_dir())
            .join("x86_64-unknown-linux-gnu/release/kiln-kernel")
    }

    /// The example programs.
    pub fn examples_dir(&self) -> PathBuf {
        self.root.join("examples")
    }

    /// Kiln's scratch and output directory (`target/kiln`).
    pub fn kiln_dir(&self) -> PathBuf {
        self.work.join("target/kiln")
    }

    /// Shared cargo target directory for applications.
    pub fn apps_target_dir(&self) -> PathBuf {
        self.kiln_dir().join("apps")
    }

    /// Default directory for built images.
    pub fn images_dir(&self) -> PathBuf {
        self.kiln_dir().join("images")
    }

    /// Default image path for an application called `name`.
    pub fn default_image(&self, name: &str) -> PathBuf {
        self.images_dir().join(format!("{name}.elf"))
    }

    /// Shows `path` relative to the working directory's root when it lies inside it.
    pub fn display<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.work).unwrap_or(path).display()
    }
}
