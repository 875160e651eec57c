//! Where things live in a Kiln checkout.

use std::path::{Path, PathBuf};

/// The directories Kiln reads from and writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The repository root (holds the root `Cargo.toml`).
    pub root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
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

    /// The example programs.
    pub fn examples_dir(&self) -> PathBuf {
        self.root.join("examples")
    }

    /// Kiln's scratch and output directory (`target/kiln`).
    pub fn kiln_dir(&self) -> PathBuf {
        self.root.join("target/kiln")
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

    /// Shows `path` relative to the root when it lies inside it.
    pub fn display<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}
