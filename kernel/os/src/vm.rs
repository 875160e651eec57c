//! The program's memory map.

/// The program's memory map.
pub struct AddressSpace {}
