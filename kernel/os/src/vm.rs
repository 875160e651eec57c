//! The program's memory map. (Interface placeholder: being written.)

use alloc::string::String;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::machine::PageTable;

/// The program's memory map.
pub struct AddressSpace {}

impl AddressSpace {
    /// Copies `buf.len()` bytes from user address `addr`; `EFAULT` unless all are readable.
    pub fn copy_from_user(
        &mut self,
        _pt: &mut dyn PageTable,
        _addr: u64,
        _buf: &mut [u8],
    ) -> KResult<()> {
        Err(Errno::EFAULT)
    }
    /// Copies `data` to user address `addr`; `EFAULT` unless all are writable.
    pub fn copy_to_user(
        &mut self,
        _pt: &mut dyn PageTable,
        _addr: u64,
        _data: &[u8],
    ) -> KResult<()> {
        Err(Errno::EFAULT)
    }
    /// Reads a NUL-terminated string (without the NUL) of at most `max` bytes;
    /// `ENAMETOOLONG` when longer, `EFAULT` when unreadable.
    pub fn read_cstr(
        &mut self,
        _pt: &mut dyn PageTable,
        _addr: u64,
        _max: usize,
    ) -> KResult<Vec<u8>> {
        Err(Errno::EFAULT)
    }
    /// The text of `/proc/self/maps`.
    pub fn maps_text(&self, _exe_path: &str) -> String {
        String::new()
    }
}
