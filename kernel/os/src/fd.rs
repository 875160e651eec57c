//! File descriptors.

/// The file-descriptor table.
pub struct FdTable {}
