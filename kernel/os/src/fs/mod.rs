//! Files.

/// The file-system tree.
pub struct Vfs {}
