//! The PVH `hvm_start_info` block: command line and memory map, read at boot.

use crate::phys_to_virt;

const MAGIC: u32 = 0x336e_c578;

/// One RAM range from the memory map.
#[derive(Debug, Clone, Copy, Default)]
pub struct RamRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// What the loader told us.
pub struct StartInfo {
    /// Physical address and length of the command line (without its NUL).
    pub cmdline: Option<(u64, usize)>,
    /// RAM ranges (type 1, non-empty).
    pub ram: [RamRange; 32],
    /// Entries used in `ram`.
    pub ram_count: usize,
    /// Physical address of the ACPI RSDP, when the loader gave one.
    pub rsdp: Option<u64>,
}

static RAM: crate::once::SetOnce<([RamRange; 32], usize)> = crate::once::SetOnce::new();

/// Remembers the loader's RAM ranges (once, at boot) for [`overlaps_ram`].
pub(crate) fn remember_ram(info: &StartInfo) {
    RAM.set((info.ram, info.ram_count));
}

/// Whether `[start, end)` overlaps RAM the loader reported (`true` until it is known).
pub(crate) fn overlaps_ram(start: u64, end: u64) -> bool {
    match RAM.get() {
        None => true,
        Some((ram, count)) => ram[..*count].iter().any(|r| start < r.end && r.start < end),
    }
}

/// Whether `[start, start + len)` lies inside one RAM range the loader reported (`false`
/// until it is known).
pub(crate) fn is_ram(start: u64, len: u64) -> bool {
    match RAM.get() {
        None => false,
        Some((ram, count)) => ram[..*count]
            .iter()
            .any(|r| r.start <= start && start + len <= r.end),
    }
}

fn read<T: Copy>(phys: u64) -> T {
    // SAFETY: the start-info block and the tables it points to are in RAM below 4 GiB,
    // covered by the boot direct map, and not yet reused by anything.
    unsafe { core::ptr::read_unaligned(phys_to_virt(phys) as *const T) }
}

/// Reads the start-info block at physical address `addr`. `None` if its magic is wrong.
/// Crate-private: it reads whatever physical memory `addr` names, which only the boot path
/// (handed the address by the loader) may do.
pub(crate) fn parse(addr: u64) -> Option<StartInfo> {
    if addr == 0 || read::<u32>(addr) != MAGIC {
        return None;
    }
    let version: u32 = read(addr + 4);
    let cmdline_paddr: u64 = read(addr + 24);
    let cmdline = if cmdline_paddr != 0 {
        let mut len = 0usize;
        while len < 64 * 1024 && read::<u8>(cmdline_paddr + len as u64) != 0 {
            len += 1;
        }
        Some((cmdline_paddr, len))
    } else {
        None
    };
    let rsdp: u64 = read(addr + 32);
    let mut info = StartInfo {
        cmdline,
        ram: [RamRange::default(); 32],
        ram_count: 0,
        rsdp: (rsdp != 0).then_some(rsdp),
    };
    if version >= 1 {
        let map: u64 = read(addr + 40);
        let entries: u32 = read(addr + 48);
        for i in 0..entries.min(128) as u64 {
            let e = map + i * 24;
            let (start, size, kind): (u64, u64, u32) = (read(e), read(e + 8), read(e + 16));
            if kind == 1 && size > 0 && info.ram_count < info.ram.len() {
                info.ram[info.ram_count] = RamRange {
                    start,
                    end: start + size,
                };
                info.ram_count += 1;
            }
        }
    }
    Some(info)
}
