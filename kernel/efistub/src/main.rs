//! Kiln's UEFI stub: makes the linked PVH image (kernel + payload) boot as a UEFI
//! application, without a third-party bootloader.
//!
//! The toolchain (`toolchain/src/efi.rs`) converts this freestanding static-pie ELF into a
//! PE32+ application and appends the PVH image as one more section, whose relative virtual
//! address and length it writes into [`KILN_EFI_EMBED`]. At run time the stub:
//!
//! 1. finds the embedded ELF through the loaded-image protocol's `ImageBase`;
//! 2. allocates its `PT_LOAD` segments at their physical addresses (`AllocateAddress`,
//!    `EfiLoaderData`) and copies them there, zeroing the rest of each segment;
//! 3. reads the 64-bit entry from the record the kernel keeps in the 16 bytes before its
//!    PVH entry (`e_entry - 16`: magic `KILN64E\0`, then the entry's physical address);
//! 4. builds the run-time command line: `\KILN\CMDLINE` on the volume the stub was loaded
//!    from (lines starting with `#` are comments, line breaks become spaces), then QEMU's
//!    fw_cfg file `opt/kiln/cmdline` when present; later tokens override earlier ones;
//! 5. builds an `hvm_start_info` (version 1) with that command line, the RSDP from the
//!    configuration table and a memory map converted from UEFI's, in pages of an OS-defined
//!    memory type that the converted map reports as reserved;
//! 6. calls `GetMemoryMap` + `ExitBootServices` (retrying when the map changed), and jumps
//!    to the 64-bit entry with the start-info address in `rdi`.
//!
//! Failures before `ExitBootServices` print one `kiln: kernel panic: efi stub: ...` line on
//! the firmware console and leave through QEMU's isa-debug-exit with status 125 when it is
//! there (elsewhere the write is ignored and the stub returns the error to the firmware).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use core::ffi::c_void;
use core::ptr::{null_mut, read_unaligned, write_unaligned};

/// Where the toolchain writes the embedded PVH image's relative virtual address and length.
/// Non-zero initial contents keep it in `.data`, with bytes in the file to patch.
#[unsafe(no_mangle)]
#[used]
static KILN_EFI_EMBED: [u64; 2] = [u64::MAX, u64::MAX];

type Handle = *mut c_void;
type Status = usize;

const ERROR_BIT: usize = 1 << 63;
const EFI_SUCCESS: Status = 0;
const EFI_INVALID_PARAMETER: Status = ERROR_BIT | 2;
const EFI_LOAD_ERROR: Status = ERROR_BIT | 1;
const EFI_BUFFER_TOO_SMALL: Status = ERROR_BIT | 5;

/// `KERNEL_FAILURE` of `kiln_abi::exit` (the stub has no dependencies).
const KERNEL_FAILURE: u32 = 125;
/// `DEBUG_EXIT_PORT` of `kiln_abi::exit`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Magic of the 64-bit entry record (`hal::boot::ENTRY64_MAGIC`).
const ENTRY64_MAGIC: &[u8; 8] = b"KILN64E\0";
/// `hvm_start_info` magic.
const START_INFO_MAGIC: u32 = 0x336e_c578;

/// An OS-defined UEFI memory type for the start-info block: the converted map reports it as
/// reserved, so the kernel never hands those frames out while it still reads them.
const KILN_BOOT_INFO_TYPE: u32 = 0x8000_4b49;
/// Pages of the start-info block: the header, the command line, the memory map.
const INFO_PAGES: usize = 8;
const CMDLINE_AT: usize = 0x1000;
const CMDLINE_MAX: usize = 0x4000 - 1;
const MEMMAP_AT: usize = 0x5000;
const MEMMAP_MAX: usize = (INFO_PAGES * 4096 - MEMMAP_AT) / 24;

#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
struct Guid(u32, u16, u16, [u8; 8]);

const LOADED_IMAGE_GUID: Guid = Guid(
    0x5b1b31a1,
    0x9562,
    0x11d2,
    [0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b],
);
const SIMPLE_FS_GUID: Guid = Guid(
    0x964e5b22,
    0x6459,
    0x11d2,
    [0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b],
);
const ACPI20_GUID: Guid = Guid(
    0x8868e871,
    0xe4f1,
    0x11d3,
    [0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81],
);
const ACPI10_GUID: Guid = Guid(
    0xeb9d2d30,
    0x2d88,
    0x11d3,
    [0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d],
);

#[repr(C)]
struct TableHeader {
    signature: u64,
    revision: u32,
    header_size: u32,
    crc32: u32,
    reserved: u32,
}

#[repr(C)]
struct SystemTable {
    hdr: TableHeader,
    firmware_vendor: *const u16,
    firmware_revision: u32,
    console_in_handle: Handle,
    con_in: *mut c_void,
    console_out_handle: Handle,
    con_out: *mut TextOutput,
    standard_error_handle: Handle,
    std_err: *mut TextOutput,
    runtime_services: *mut c_void,
    boot_services: *mut BootServices,
    number_of_table_entries: usize,
    configuration_table: *const ConfigurationTable,
}

#[repr(C)]
struct ConfigurationTable {
    guid: Guid,
    table: *mut c_void,
}

#[repr(C)]
struct TextOutput {
    reset: usize,
    output_string: unsafe extern "efiapi" fn(*mut TextOutput, *const u16) -> Status,
}

#[repr(C)]
struct BootServices {
    hdr: TableHeader,
    raise_tpl: usize,
    restore_tpl: usize,
    allocate_pages: unsafe extern "efiapi" fn(u32, u32, usize, *mut u64) -> Status,
    free_pages: unsafe extern "efiapi" fn(u64, usize) -> Status,
    get_memory_map:
        unsafe extern "efiapi" fn(*mut usize, *mut u8, *mut usize, *mut usize, *mut u32) -> Status,
    allocate_pool: unsafe extern "efiapi" fn(u32, usize, *mut *mut u8) -> Status,
    free_pool: usize,
    create_event: usize,
    set_timer: usize,
    wait_for_event: usize,
    signal_event: usize,
    close_event: usize,
    check_event: usize,
    install_protocol_interface: usize,
    reinstall_protocol_interface: usize,
    uninstall_protocol_interface: usize,
    handle_protocol: unsafe extern "efiapi" fn(Handle, *const Guid, *mut *mut c_void) -> Status,
    reserved: usize,
    register_protocol_notify: usize,
    locate_handle: usize,
    locate_device_path: usize,
    install_configuration_table: usize,
    load_image: usize,
    start_image: usize,
    exit: usize,
    unload_image: usize,
    exit_boot_services: unsafe extern "efiapi" fn(Handle, usize) -> Status,
}

#[repr(C)]
struct LoadedImage {
    revision: u32,
    parent_handle: Handle,
    system_table: *mut SystemTable,
    device_handle: Handle,
    file_path: *mut c_void,
    reserved: *mut c_void,
    load_options_size: u32,
    load_options: *mut c_void,
    image_base: *mut u8,
    image_size: u64,
    image_code_type: u32,
    image_data_type: u32,
    unload: usize,
}

#[repr(C)]
struct SimpleFileSystem {
    revision: u64,
    open_volume: unsafe extern "efiapi" fn(*mut SimpleFileSystem, *mut *mut File) -> Status,
}

#[repr(C)]
struct File {
    revision: u64,
    open: unsafe extern "efiapi" fn(*mut File, *mut *mut File, *const u16, u64, u64) -> Status,
    close: unsafe extern "efiapi" fn(*mut File) -> Status,
    delete: usize,
    read: unsafe extern "efiapi" fn(*mut File, *mut usize, *mut u8) -> Status,
}

const ALLOCATE_MAX_ADDRESS: u32 = 1;
const ALLOCATE_ADDRESS: u32 = 2;
const LOADER_DATA: u32 = 2;

/// Text for the firmware console, sent in UTF-16 chunks.
struct Console(*mut TextOutput);

impl Console {
    /// The console behind `out`.
    ///
    /// # Safety
    /// `out` is null or the firmware's text-output protocol, and the console is not used
    /// after `ExitBootServices`.
    unsafe fn new(out: *mut TextOutput) -> Console {
        Console(out)
    }

    fn write(&self, s: &[u8]) {
        if self.0.is_null() {
            return;
        }
        let mut buf = [0u16; 65];
        for chunk in s.chunks(64) {
            for (i, b) in chunk.iter().enumerate() {
                buf[i] = *b as u16;
            }
            buf[chunk.len()] = 0;
            // SAFETY: the pointer is the firmware's console protocol, valid before
            // ExitBootServices (`Console::new`'s contract); the string is NUL-terminated.
            unsafe { ((*self.0).output_string)(self.0, buf.as_ptr()) };
        }
    }

    fn hex(&self, v: u64) {
        let mut out = *b"0x0000000000000000";
        for i in 0..16 {
            let d = ((v >> ((15 - i) * 4)) & 0xf) as u8;
            out[2 + i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        self.write(&out);
    }
}

/// Reports a failure before `ExitBootServices` and leaves.
fn fail(con: &Console, what: &[u8], detail: Option<u64>) -> Status {
    con.write(b"kiln: kernel panic: efi stub: ");
    con.write(what);
    if let Some(d) = detail {
        con.write(b" (");
        con.hex(d);
        con.write(b")");
    }
    con.write(b"\r\n");
    // SAFETY: QEMU's isa-debug-exit ends the VM; elsewhere nothing answers at this port.
    unsafe { outl(DEBUG_EXIT_PORT, KERNEL_FAILURE) };
    EFI_LOAD_ERROR
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// The device at `port` (if any) must not touch memory, reset or reconfigure the machine
/// because of this write, beyond what the caller intends.
unsafe fn outl(port: u16, v: u32) {
    // SAFETY: the caller vouches for the device; the instruction touches no memory.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack)) }
}

/// Writes a 16-bit value to an I/O port.
///
/// # Safety
/// As for [`outl`].
unsafe fn outw(port: u16, v: u16) {
    // SAFETY: as for `outl`.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack)) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As for [`outl`] (reads can have side effects on a device).
unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as for `outl`.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) }
    v
}

/// QEMU's fw_cfg (I/O ports 0x510 selector, 0x511 data).
mod fw_cfg {
    const SELECTOR: u16 = 0x510;
    const DATA: u16 = 0x511;
    const SIGNATURE: u16 = 0x0000;
    const FILE_DIR: u16 = 0x0019;

    fn select(key: u16) {
        // SAFETY: fw_cfg's selector port only chooses the item the data port streams (the
        // DMA interface, at 0x514, is never used).
        unsafe { super::outw(SELECTOR, key) }
    }

    fn read(buf: &mut [u8]) {
        for b in buf {
            // SAFETY: reading fw_cfg's data port only advances its stream.
            *b = unsafe { super::inb(DATA) };
        }
    }

    fn read_be32() -> u32 {
        let mut b = [0u8; 4];
        read(&mut b);
        u32::from_be_bytes(b)
    }

    /// Reads the fw_cfg file `name` into `buf`; returns its length (truncated to `buf`), or
    /// `None` when there is no fw_cfg or no such file.
    pub fn read_file(name: &[u8], buf: &mut [u8]) -> Option<usize> {
        select(SIGNATURE);
        let mut sig = [0u8; 4];
        read(&mut sig);
        if &sig != b"QEMU" {
            return None;
        }
        select(FILE_DIR);
        let count = read_be32().min(4096);
        for _ in 0..count {
            let size = read_be32() as usize;
            let mut sel = [0u8; 4];
            read(&mut sel);
            let mut fname = [0u8; 56];
            read(&mut fname);
            let len = fname.iter().position(|&b| b == 0).unwrap_or(56);
            if &fname[..len] == name {
                let key = u16::from_be_bytes([sel[0], sel[1]]);
                let n = size.min(buf.len());
                select(key);
                read(&mut buf[..n]);
                return Some(n);
            }
        }
        None
    }
}

/// Reads `\KILN\CMDLINE` from the volume the stub was loaded from into `buf`.
fn read_esp_cmdline(bs: &BootServices, device: Handle, buf: &mut [u8]) -> Option<usize> {
    if device.is_null() {
        return None;
    }
    let mut fs: *mut c_void = null_mut();
    // SAFETY: boot services are valid before ExitBootServices; out-pointers are ours.
    unsafe {
        if (bs.handle_protocol)(device, &SIMPLE_FS_GUID, &mut fs) != EFI_SUCCESS || fs.is_null() {
            return None;
        }
        let fs = fs as *mut SimpleFileSystem;
        let mut root: *mut File = null_mut();
        if ((*fs).open_volume)(fs, &mut root) != EFI_SUCCESS || root.is_null() {
            return None;
        }
        let name: [u16; 14] = {
            let mut n = [0u16; 14];
            for (i, b) in b"\\KILN\\CMDLINE".iter().enumerate() {
                n[i] = *b as u16;
            }
            n
        };
        let mut file: *mut File = null_mut();
        let opened = ((*root).open)(root, &mut file, name.as_ptr(), 1, 0);
        let mut total = 0usize;
        if opened == EFI_SUCCESS && !file.is_null() {
            while total < buf.len() {
                let mut n = buf.len() - total;
                let st = ((*file).read)(file, &mut n, buf.as_mut_ptr().add(total));
                if st != EFI_SUCCESS || n == 0 {
                    break;
                }
                total += n;
            }
            ((*file).close)(file);
        }
        ((*root).close)(root);
        (opened == EFI_SUCCESS).then_some(total)
    }
}

/// Appends the tokens of a command-line source to `out` (at `len`), dropping `#` comment
/// lines and turning line breaks and tabs into spaces. Returns the new length.
fn append_cmdline(out: &mut [u8], mut len: usize, src: &[u8]) -> usize {
    for line in src.split(|&b| b == b'\n') {
        let trimmed = line
            .iter()
            .position(|&b| !matches!(b, b' ' | b'\t' | b'\r'))
            .map(|i| &line[i..])
            .unwrap_or(&[]);
        if trimmed.is_empty() || trimmed[0] == b'#' {
            continue;
        }
        if len > 0 && len < out.len() {
            out[len] = b' ';
            len += 1;
        }
        for &b in trimmed {
            if len >= out.len() {
                return len;
            }
            out[len] = match b {
                b'\t' | b'\r' | 0 => b' ',
                b => b,
            };
            len += 1;
        }
    }
    len
}

/// One `PT_LOAD` of the embedded image.
#[derive(Clone, Copy)]
struct Load {
    paddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

fn rd<T: Copy>(b: &[u8], at: usize) -> Option<T> {
    let end = at.checked_add(core::mem::size_of::<T>())?;
    if end > b.len() {
        return None;
    }
    // SAFETY: bounds checked above; read_unaligned handles any alignment.
    Some(unsafe { read_unaligned(b.as_ptr().add(at) as *const T) })
}

/// Walks the ELF program headers, calling `f` for each `PT_LOAD`. Returns `e_entry`.
fn each_load(elf: &[u8], mut f: impl FnMut(Load) -> bool) -> Result<u64, &'static [u8]> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(b"the embedded image is not a little-endian ELF64 file");
    }
    let entry: u64 = rd(elf, 24).ok_or(&b"bad ELF header"[..])?;
    let phoff: u64 = rd(elf, 32).ok_or(&b"bad ELF header"[..])?;
    let phentsize: u16 = rd(elf, 54).ok_or(&b"bad ELF header"[..])?;
    let phnum: u16 = rd(elf, 56).ok_or(&b"bad ELF header"[..])?;
    for i in 0..phnum as usize {
        let at = phoff as usize + i * phentsize as usize;
        let p_type: u32 = rd(elf, at).ok_or(&b"program header out of the file"[..])?;
        if p_type != 1 {
            continue;
        }
        let l = Load {
            offset: rd(elf, at + 8).ok_or(&b"bad program header"[..])?,
            paddr: rd(elf, at + 24).ok_or(&b"bad program header"[..])?,
            filesz: rd(elf, at + 32).ok_or(&b"bad program header"[..])?,
            memsz: rd(elf, at + 40).ok_or(&b"bad program header"[..])?,
        };
        if l.offset
            .checked_add(l.filesz)
            .is_none_or(|e| e > elf.len() as u64)
            || l.filesz > l.memsz
        {
            return Err(b"a PT_LOAD segment lies outside the embedded image");
        }
        if !f(l) {
            return Err(b"could not load a PT_LOAD segment");
        }
    }
    Ok(entry)
}

/// The UEFI memory type -> PVH (e820) type: memory free after ExitBootServices is RAM.
fn e820_type(efi: u32) -> u32 {
    match efi {
        1..=4 | 7 => 1,
        9 => 3,
        10 => 4,
        8 => 5,
        _ => 2,
    }
}

/// The UEFI entry point.
///
/// # Safety
/// Called by the firmware with a valid image handle and system table.
#[unsafe(no_mangle)]
unsafe extern "efiapi" fn efi_main(image: Handle, st: *mut SystemTable) -> Status {
    // SAFETY: the firmware passes a valid system table.
    let st = unsafe { &*st };
    // SAFETY: con_out is the firmware's console; the stub uses `con` only until
    // ExitBootServices succeeds (after that it only jumps to the kernel).
    let con = unsafe { Console::new(st.con_out) };
    // SAFETY: boot services are valid until ExitBootServices.
    let bs = unsafe { &*st.boot_services };

    let mut li: *mut c_void = null_mut();
    // SAFETY: a boot service called before ExitBootServices with our own image handle, a
    // GUID and an out-pointer that live across the call.
    let found = unsafe { (bs.handle_protocol)(image, &LOADED_IMAGE_GUID, &mut li) };
    if found != EFI_SUCCESS || li.is_null() {
        return fail(&con, b"no loaded-image protocol for the stub", None);
    }
    // SAFETY: the firmware's loaded-image protocol for our own image.
    let li = unsafe { &*(li as *const LoadedImage) };

    // SAFETY: volatile read of the patched static.
    let [rva, len] = unsafe { core::ptr::read_volatile(&raw const KILN_EFI_EMBED) };
    if rva == u64::MAX || len == 0 || rva.saturating_add(len) > li.image_size {
        return fail(
            &con,
            b"no embedded Kiln image: build this file with `cargo xtask build-image --format efi`",
            None,
        );
    }
    // SAFETY: the embedded image lies inside our loaded image (checked against its size).
    let elf = unsafe { core::slice::from_raw_parts(li.image_base.add(rva as usize), len as usize) };

    // Load the segments at their physical addresses.
    let mut failed_at = 0u64;
    let entry = each_load(elf, |l| {
        let start = l.paddr & !0xfff;
        let Some(end) = l
            .paddr
            .checked_add(l.memsz)
            .and_then(|e| e.checked_add(0xfff))
        else {
            failed_at = start;
            return false;
        };
        let end = end & !0xfff;
        let mut addr = start;
        // SAFETY: a boot service called before ExitBootServices; `addr` outlives the call.
        // The firmware refuses pages that are in use, so success means we own them.
        let allocated = unsafe {
            (bs.allocate_pages)(
                ALLOCATE_ADDRESS,
                LOADER_DATA,
                ((end - start) / 4096) as usize,
                &mut addr,
            )
        };
        if allocated != EFI_SUCCESS {
            failed_at = start;
            return false;
        }
        // SAFETY: we own [start, end) now; the source is inside the embedded image.
        unsafe {
            let dst = l.paddr as *mut u8;
            core::ptr::copy_nonoverlapping(
                elf.as_ptr().add(l.offset as usize),
                dst,
                l.filesz as usize,
            );
            core::ptr::write_bytes(dst.add(l.filesz as usize), 0, (l.memsz - l.filesz) as usize);
        }
        true
    });
    let entry = match entry {
        Ok(e) => e,
        Err(why) if failed_at != 0 => {
            con.write(b"kiln: kernel panic: efi stub: the memory the kernel is linked at is in use by the firmware (AllocatePages at the address in brackets failed); give the VM more memory or report this firmware\r\n");
            return fail(&con, why, Some(failed_at));
        }
        Err(why) => return fail(&con, why, None),
    };
    // The 64-bit entry record, now in memory just before the PVH entry.
    // SAFETY: e_entry - 16 lies in the kernel's first segment, just loaded (checked by the
    // magic; a foreign image fails the check).
    let record = unsafe { read_unaligned((entry - 16) as *const [u8; 16]) };
    if entry < 0x10_0010 || &record[..8] != ENTRY64_MAGIC {
        return fail(
            &con,
            b"the embedded kernel has no 64-bit entry record before its PVH entry; rebuild the image with this Kiln",
            Some(entry),
        );
    }
    let entry64 = u64::from_le_bytes(record[8..].try_into().unwrap_or([0; 8]));

    // The start-info block, below 4 GiB, in pages the kernel will see as reserved.
    let mut info_addr: u64 = 0xffff_ffff;
    // SAFETY: a boot service called before ExitBootServices; `info_addr` outlives the call.
    let allocated = unsafe {
        (bs.allocate_pages)(
            ALLOCATE_MAX_ADDRESS,
            KILN_BOOT_INFO_TYPE,
            INFO_PAGES,
            &mut info_addr,
        )
    };
    if allocated != EFI_SUCCESS {
        return fail(
            &con,
            b"could not allocate the start-info pages below 4 GiB",
            None,
        );
    }
    // SAFETY: the pages were just allocated for us.
    let info = unsafe { core::slice::from_raw_parts_mut(info_addr as *mut u8, INFO_PAGES * 4096) };
    info.fill(0);

    // Command line: \KILN\CMDLINE, then fw_cfg opt/kiln/cmdline.
    let mut len = 0usize;
    {
        let mut scratch = [0u8; 4096];
        let (cmd, _) = info[CMDLINE_AT..].split_at_mut(CMDLINE_MAX);
        if let Some(n) = read_esp_cmdline(bs, li.device_handle, &mut scratch) {
            len = append_cmdline(cmd, len, &scratch[..n]);
        }
        let mut fw = [0u8; 4096];
        if let Some(n) = fw_cfg::read_file(b"opt/kiln/cmdline", &mut fw) {
            len = append_cmdline(cmd, len, &fw[..n]);
        }
    }

    // RSDP from the configuration table (ACPI 2.0 preferred).
    let mut rsdp = 0u64;
    for want in [ACPI20_GUID, ACPI10_GUID] {
        for i in 0..st.number_of_table_entries {
            // SAFETY: the firmware's configuration table has that many entries.
            let t = unsafe { &*st.configuration_table.add(i) };
            if t.guid == want && rsdp == 0 {
                rsdp = t.table as u64;
            }
        }
    }

    // The memory map, then ExitBootServices (the map key must be current).
    let mut map_size = 0usize;
    let mut key = 0usize;
    let mut desc_size = 0usize;
    let mut desc_ver = 0u32;
    // SAFETY: a boot service called before ExitBootServices; a null buffer of size 0 only
    // asks for the size; the out-pointers outlive the call.
    let st0 = unsafe {
        (bs.get_memory_map)(
            &mut map_size,
            null_mut(),
            &mut key,
            &mut desc_size,
            &mut desc_ver,
        )
    };
    if st0 != EFI_BUFFER_TOO_SMALL || desc_size == 0 {
        return fail(
            &con,
            b"GetMemoryMap did not report its size",
            Some(st0 as u64),
        );
    }
    let cap = map_size + 16 * desc_size;
    let mut map: *mut u8 = null_mut();
    // SAFETY: a boot service called before ExitBootServices; `map` outlives the call.
    if unsafe { (bs.allocate_pool)(LOADER_DATA, cap, &mut map) } != EFI_SUCCESS {
        return fail(&con, b"could not allocate the memory map buffer", None);
    }
    let mut tries = 0;
    loop {
        map_size = cap;
        // SAFETY: `map` is our pool buffer of `cap` bytes, and `map_size` says so; the
        // out-pointers outlive the call.
        let s = unsafe {
            (bs.get_memory_map)(&mut map_size, map, &mut key, &mut desc_size, &mut desc_ver)
        };
        if s != EFI_SUCCESS {
            return fail(&con, b"GetMemoryMap failed", Some(s as u64));
        }
        // SAFETY: our image handle and the key of the map just read; on success no boot
        // service (nor `con`) is used again.
        let s = unsafe { (bs.exit_boot_services)(image, key) };
        if s == EFI_SUCCESS {
            break;
        }
        tries += 1;
        if s != EFI_INVALID_PARAMETER || tries > 8 {
            return fail(&con, b"ExitBootServices failed", Some(s as u64));
        }
    }

    // Boot services are gone: no more firmware calls. Convert the map, merging neighbours
    // of the same type.
    let mut entries = 0usize;
    let mut i = 0usize;
    while i + desc_size <= map_size {
        // SAFETY: the descriptors lie in our pool buffer, `map_size` bytes long.
        let (ty, start, pages) = unsafe {
            let d = map.add(i);
            (
                read_unaligned(d as *const u32),
                read_unaligned(d.add(8) as *const u64),
                read_unaligned(d.add(24) as *const u64),
            )
        };
        i += desc_size;
        let (kind, size) = (e820_type(ty), pages * 4096);
        if size == 0 {
            continue;
        }
        if entries > 0 {
            let prev = MEMMAP_AT + (entries - 1) * 24;
            let p_start: u64 = rd(info, prev).unwrap_or(0);
            let p_size: u64 = rd(info, prev + 8).unwrap_or(0);
            let p_kind: u32 = rd(info, prev + 16).unwrap_or(0);
            if p_kind == kind && p_start + p_size == start {
                put(info, prev + 8, p_size + size);
                continue;
            }
        }
        if entries == MEMMAP_MAX {
            break;
        }
        let e = MEMMAP_AT + entries * 24;
        put(info, e, start);
        put(info, e + 8, size);
        put(info, e + 16, kind);
        entries += 1;
    }

    put(info, 0, START_INFO_MAGIC);
    put(info, 4, 1u32);
    put(
        info,
        24,
        if len > 0 {
            info_addr + CMDLINE_AT as u64
        } else {
            0
        },
    );
    put(info, 32, rsdp);
    put(info, 40, info_addr + MEMMAP_AT as u64);
    put(info, 48, entries as u32);

    // SAFETY: the kernel's 64-bit entry takes the start-info address in rdi, with the
    // firmware's identity map still active (it switches to its own tables at once).
    unsafe {
        core::arch::asm!(
            "cli",
            "jmp {entry}",
            entry = in(reg) entry64,
            in("rdi") info_addr,
            options(noreturn)
        )
    }
}

fn put<T: Copy>(b: &mut [u8], at: usize, v: T) {
    if at
        .checked_add(core::mem::size_of::<T>())
        .is_some_and(|end| end <= b.len())
    {
        // SAFETY: bounds checked; unaligned writes are fine.
        unsafe { write_unaligned(b.as_mut_ptr().add(at) as *mut T, v) }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        // SAFETY: halting has no memory effects.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

// The C memory functions that core's code calls (compiler_builtins does not export them on
// this target). Written with string instructions so they cannot turn into calls to
// themselves.

/// # Safety
/// C `memcpy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// C `memmove`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: forward copy is safe when dst is below src or past it.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: backward copy with the direction flag set, then cleared.
    unsafe {
        core::arch::asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack)
        )
    };
    dst
}

/// # Safety
/// C `memset`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8, options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// C `memcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: the caller's contract.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// C `bcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { memcmp(a, b, n) }
}
