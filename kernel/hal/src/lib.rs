//! Kiln's hardware layer: everything that touches the machine.
//!
//! Boot ([`boot`], [`pvh`]), CPU tables ([`gdt`], [`trap`]), system-call entry ([`syscall`]),
//! memory ([`frames`], [`paging`], [`heap`]), devices ([`serial`], [`apic`], [`time`],
//! [`exit`]) and the C memory functions ([`mem`]). All of the kernel's `unsafe` code lives in
//! this crate, each block with its reason; the rest of the kernel is safe Rust.
//!
//! The API is sound: no call from safe code, whatever its arguments, can break memory
//! safety. What could (writing an I/O port, freeing a frame) is an `unsafe fn` with a
//! `# Safety` section or crate-private; the rest takes handles that make misuse impossible
//! ([`cpu::DebugPort`], a `&'static [u8]` for [`paging::map_user_borrowed`], the locked page
//! tables inside [`paging`]) or checks at run time and refuses or panics (frames returned
//! to user mode, [`cpu::wait_for_interrupt`] inside a handler, [`virtio::VirtioNet::mmio`]
//! over RAM).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod apic;
pub mod backtrace;
pub mod boot;
pub mod context;
pub mod cpu;
pub mod exit;
pub mod frames;
pub mod gdt;
pub mod heap;
pub mod ioapic;
pub mod mem;
pub mod once;
pub mod paging;
pub mod pci;
pub mod power;
pub mod pvh;
pub mod serial;
pub mod smp;
pub mod syscall;
pub mod time;
pub mod trap;
pub mod uart;
pub mod virtio;
pub mod virtio9p;
pub mod virtio_console;

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;
/// Virtual address where all physical memory below 4 GiB is mapped.
pub const DIRECT_MAP: u64 = 0xffff_8000_0000_0000;

/// The kernel-virtual address of physical address `phys`.
pub const fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP + phys
}

/// Where the toolchain's link step writes the payload's physical address and length.
/// Non-zero initial contents keep it out of `.bss`, so it has bytes in the file to patch.
#[unsafe(no_mangle)]
#[used]
static KILN_PAYLOAD_LOCATION: [u64; 2] = [u64::MAX, u64::MAX];

/// What the boot code hands to the kernel.
pub struct BootInfo {
    /// The kernel command line.
    pub cmdline: &'static str,
    /// The payload the toolchain linked in (program, root filesystem, configuration), or
    /// `None` when the image has none.
    pub payload: Option<&'static [u8]>,
    /// The physical range of the kernel image.
    pub kernel: core::ops::Range<u64>,
    /// Usable RAM in bytes, as the loader reported it.
    pub ram_bytes: u64,
    /// How the TSC was calibrated.
    pub calibration: time::Calibration,
    /// Physical address of the ACPI RSDP, when the loader passed one (otherwise search
    /// the BIOS area).
    pub rsdp: Option<u64>,
}

unsafe extern "Rust" {
    /// The kernel's main function, defined by the kernel binary.
    safe fn kiln_main(boot: BootInfo) -> !;
}

static CMDLINE: once::SetOnce<alloc::string::String> = once::SetOnce::new();

/// First Rust code, called by the boot assembly with the PVH start-info address.
pub(crate) extern "C" fn start(start_info: u64) -> ! {
    serial::init();
    let Some(info) = pvh::parse(start_info) else {
        serial::write(b"kiln: kernel panic: no PVH start info: boot this image with a PVH loader (qemu -kernel, Firecracker, Cloud Hypervisor)\n");
        exit::exit(kiln_abi::exit::KERNEL_FAILURE);
    };
    pvh::remember_ram(&info);
    // SAFETY: reads the patched location static; volatile so the compiler cannot assume
    // its initial value.
    let [payload_addr, payload_len] =
        unsafe { core::ptr::read_volatile(&raw const KILN_PAYLOAD_LOCATION) };
    let has_payload = payload_addr != u64::MAX && payload_len != 0;
    let kernel = paging::kernel_range();
    let reserved_end = if has_payload {
        (payload_addr + payload_len).max(kernel.end)
    } else {
        kernel.end
    };
    let mut ram_bytes = 0;
    let mut ram_top = 0;
    {
        let mut frames = frames::FRAMES.lock();
        for r in &info.ram[..info.ram_count] {
            ram_bytes += r.end - r.start;
            ram_top = ram_top.max(r.end);
            // Keep below 1 MiB (firmware, start info) and the kernel + payload for ourselves;
            // only the direct-mapped first 4 GiB is used.
            let start = r.start.max(reserved_end).max(0x10_0000);
            let end = r.end.min(1 << 32);
            if start < end {
                // SAFETY: RAM from the loader's map, above 1 MiB and above the kernel image
                // and the payload, below 4 GiB (direct-mapped); the start info and command
                // line it still reads lie in reserved entries or below 1 MiB.
                unsafe { frames.add_region(start, end) };
            }
        }
        frames.build_map();
        // Too little memory for the image is the user's to fix: say how much it needs
        // (before anything touches the heap).
        let total = frames.total();
        if total * PAGE_SIZE < kiln_abi::memory::MIN_FREE {
            use core::fmt::Write;
            let msg = kiln_abi::memory::TooLittle {
                need_mib: kiln_abi::memory::min_mib(reserved_end),
                have_mib: ram_top.div_ceil(kiln_abi::memory::MIB),
            };
            let _ = writeln!(serial::Out, "kiln: fatal: {msg}");
            exit::exit(kiln_abi::exit::KERNEL_FAILURE);
        }
        // A sixteenth of memory (1 to 16 MiB) stays for the kernel heap once programs have
        // taken the rest, so running out of memory is the program's error, not the kernel's.
        frames.set_reserve((total / 16).clamp(256, 4096).min(total / 2));
    }
    // Copy the command line before the boot identity map goes away.
    let cmdline = match info.cmdline {
        Some((addr, len)) => {
            let mut bytes = alloc::vec![0u8; len];
            // SAFETY: the command line is `len` bytes of RAM in the direct map.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    phys_to_virt(addr) as *const u8,
                    bytes.as_mut_ptr(),
                    len,
                )
            };
            alloc::string::String::from_utf8_lossy(&bytes).into_owned()
        }
        None => alloc::string::String::new(),
    };
    CMDLINE.set(cmdline);
    let cmdline = CMDLINE.get().map_or("", |c| c.as_str());
    if paging::init().is_none() {
        serial::write(
            b"kiln: kernel panic: out of memory building page tables: give the VM more memory\n",
        );
        exit::exit(kiln_abi::exit::KERNEL_FAILURE);
    }
    boot::mark(boot::BootPhase::Memory);
    let stack_top = boot_stack_top();
    gdt::init(stack_top);
    trap::init();
    apic::init();
    let calibration = time::init();
    boot::mark(boot::BootPhase::Cpu);
    let payload = if has_payload {
        // SAFETY: the link step placed `payload_len` bytes at `payload_addr`; the frame
        // allocator never hands them out, so they stay valid and unchanged for good.
        Some(unsafe {
            core::slice::from_raw_parts(
                phys_to_virt(payload_addr) as *const u8,
                payload_len as usize,
            )
        })
    } else {
        None
    };
    kiln_main(BootInfo {
        cmdline,
        payload,
        kernel,
        ram_bytes,
        calibration,
        rsdp: info.rsdp,
    })
}

unsafe extern "C" {
    static kiln_boot_stack_top: u8;
}

/// Top of the boot stack, which the kernel keeps as its system-call stack.
pub fn boot_stack_top() -> u64 {
    (&raw const kiln_boot_stack_top) as u64
}
