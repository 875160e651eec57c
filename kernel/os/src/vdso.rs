//! The vDSO in the program's address space: the image `kiln_abi::vdso::image` generates
//! (embedded by this crate's build script) mapped read and execute at [`IMAGE_START`],
//! its address given to the program as `AT_SYSINFO_EHDR`, and the clock page its code
//! reads mapped read-only right below it (Linux's `[vvar]`).
//!
//! The clock page starts out empty (a zero rate sends every vDSO call to the system call),
//! since the program is loaded before the TSC's calibration is finished; [`publish`] fills
//! it in once the clock's numbers are final, before the program's first instruction.

use kiln_abi::vdso::ClockPage;

use crate::errno::KResult;
use crate::machine::{PageTable, Prot, PAGE_SIZE};
use crate::vm::{page_up, AddressSpace, Vma, VmaKind, MMAP_BASE};

/// The vDSO's ELF image.
pub static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

/// Where the clock page is mapped: the page right above where `mmap` places mappings
/// top-down, so neither `mmap` nor the dynamic loader's placement ever lands on it.
pub const CLOCK_PAGE: u64 = MMAP_BASE;
/// Where the image is mapped (`AT_SYSINFO_EHDR`): right above the clock page, which its
/// code addresses relative to itself.
pub const IMAGE_START: u64 = CLOCK_PAGE + PAGE_SIZE;

/// One past the image's last mapped byte.
pub fn image_end() -> u64 {
    IMAGE_START + page_up(IMAGE.len() as u64).unwrap_or(PAGE_SIZE)
}

/// Maps the clock page (empty until [`publish`]) and the image into `vm`. Returns the
/// image's address, for `AT_SYSINFO_EHDR`.
pub fn map(vm: &mut AddressSpace, pt: &mut dyn PageTable) -> KResult<u64> {
    let read = Prot {
        read: true,
        write: false,
        exec: false,
    };
    vm.insert(
        CLOCK_PAGE,
        Vma {
            end: IMAGE_START,
            prot: read,
            kind: VmaKind::Vvar,
            shared: false,
            offset: 0,
        },
    )?;
    vm.insert(
        IMAGE_START,
        Vma {
            end: image_end(),
            prot: Prot { exec: true, ..read },
            kind: VmaKind::Vdso,
            shared: false,
            offset: 0,
        },
    )?;
    vm.populate(pt, IMAGE_START, IMAGE)?;
    Ok(IMAGE_START)
}

/// Writes the kernel's clock into the clock page, from which the vDSO's functions then
/// answer without system calls. `EFAULT` when the program has unmapped the page.
pub fn publish(vm: &mut AddressSpace, pt: &mut dyn PageTable, clock: &ClockPage) -> KResult<()> {
    vm.populate(pt, CLOCK_PAGE, &clock.encode())
}

/// Whether `addr` is in the vDSO's code (for reports of where a program was).
pub fn contains(addr: u64) -> bool {
    (IMAGE_START..image_end()).contains(&addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::time::{Clock, COARSE_TICK_NS};
    use crate::testing::FakePages;
    use alloc::vec::Vec;
    use kiln_abi::vdso::{served, Base, CLOCK_ID_LIMIT};

    const RESERVED: core::ops::Range<u64> = 0x10_0000..0x30_0000;

    fn read(vm: &mut AddressSpace, pt: &mut FakePages, addr: u64, len: usize) -> Vec<u8> {
        let mut b = alloc::vec![0u8; len];
        vm.copy_from_user(pt, addr, &mut b).unwrap();
        b
    }

    #[test]
    fn the_image_is_mapped_read_execute_above_an_empty_read_only_clock_page() {
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        assert_eq!(map(&mut vm, &mut pt).unwrap(), IMAGE_START);
        assert_eq!(read(&mut vm, &mut pt, IMAGE_START, IMAGE.len()), IMAGE);
        assert_eq!(&IMAGE[..4], b"\x7fELF");
        let rx = Prot {
            read: true,
            write: false,
            exec: true,
        };
        assert_eq!(pt.query(IMAGE_START), Some(rx));
        // The clock page reads as zeros (calls fall back to system calls) until published.
        assert_eq!(read(&mut vm, &mut pt, CLOCK_PAGE, 24), [0; 24]);
        assert_eq!(
            pt.query(CLOCK_PAGE),
            Some(Prot {
                read: true,
                write: false,
                exec: false
            })
        );
        let clock = ClockPage {
            ns_per_tick: 7 << 30,
            tsc_at_boot: 123,
            epoch_at_boot_ns: 456,
        };
        publish(&mut vm, &mut pt, &clock).unwrap();
        assert_eq!(read(&mut vm, &mut pt, CLOCK_PAGE, 24), clock.encode());
        // The program cannot write either page.
        assert!(vm.copy_to_user(&mut pt, CLOCK_PAGE, &[1]).is_err());
        assert!(vm.copy_to_user(&mut pt, IMAGE_START, &[1]).is_err());
        assert!(contains(IMAGE_START) && !contains(CLOCK_PAGE) && !contains(image_end()));

        let maps = vm.maps_text("/app");
        let lines: Vec<&str> = maps.lines().collect();
        assert_eq!(lines.len(), 2, "{maps}");
        assert!(lines[0].starts_with(&alloc::format!("{CLOCK_PAGE:08x}-{IMAGE_START:08x} r--p")));
        assert!(lines[0].ends_with(" [vvar]"), "{maps}");
        assert!(lines[1].starts_with(&alloc::format!("{IMAGE_START:08x}-")));
        assert!(
            lines[1].contains(" r-xp ") && lines[1].ends_with(" [vdso]"),
            "{maps}"
        );
    }

    #[test]
    fn mmap_never_places_a_mapping_over_the_vdso() {
        let mut vm = AddressSpace::new(RESERVED);
        let mut pt = FakePages::default();
        map(&mut vm, &mut pt).unwrap();
        let rw = Prot {
            read: true,
            write: true,
            exec: false,
        };
        for _ in 0..4 {
            let a = vm
                .mmap(
                    &mut pt,
                    0,
                    3 * PAGE_SIZE,
                    rw,
                    crate::vm::MAP_PRIVATE | crate::vm::MAP_ANONYMOUS,
                )
                .unwrap();
            assert!(a + 3 * PAGE_SIZE <= CLOCK_PAGE, "{a:#x}");
        }
    }

    #[test]
    fn the_vdso_serves_exactly_the_clocks_the_kernel_reads_from_the_tsc() {
        // Every id the vDSO serves is one the system call computes from the monotonic or
        // the real-time clock the same way, and every such id is served.
        assert_eq!(kiln_abi::vdso::COARSE_TICK_NS, COARSE_TICK_NS);
        for id in -64..CLOCK_ID_LIMIT as i32 + 8 {
            let kernel = Clock::from_id(id).ok();
            let expect = match kernel {
                Some(Clock::Realtime | Clock::Tai) => Some((Base::Realtime, false)),
                Some(Clock::RealtimeCoarse) => Some((Base::Realtime, true)),
                Some(Clock::Monotonic | Clock::MonotonicRaw | Clock::Boottime) => {
                    Some((Base::Monotonic, false))
                }
                Some(Clock::MonotonicCoarse) => Some((Base::Monotonic, true)),
                // CPU time belongs to the kernel; invalid ids get its EINVAL.
                Some(Clock::ProcessCpu | Clock::ThreadCpu(_)) | None => None,
            };
            assert_eq!(served(id).map(|s| (s.base, s.coarse)), expect, "clock {id}");
        }
    }
}
