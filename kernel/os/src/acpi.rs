//! ACPI tables, read from their bytes: just enough to find where a hypervisor's power button
//! arrives (the fixed PM1 event of a full ACPI machine such as q35, or the generic event
//! device, `ACPI0013`, of a hardware-reduced one such as microvm with `acpi=on`) and the
//! virtio-mmio devices a DSDT lists (`LNRO0005`). The kernel maps the tables and hands their
//! bytes here; nothing here touches hardware.
//!
//! The DSDT is AML, a bytecode with an interpreter behind it. Hypervisors declare these
//! devices with constant objects (`Name (_HID, "ACPI0013")`, `Name (_CRS, ResourceTemplate
//! ...)`, `OperationRegion (EREG, SystemMemory, ADDR, 4)`), so [`devices`] reads those
//! constants where they stand instead of interpreting methods.

use alloc::vec::Vec;
use kiln_abi::bytes::{u16_at, u32_at, u64_at};

/// The RSDP's signature.
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Length of every system description table's header.
pub const SDT_HEADER_LEN: usize = 36;

fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
}

/// Where the root tables are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// The RSDT's physical address (32-bit entries).
    pub rsdt: u32,
    /// The XSDT's physical address (64-bit entries), from ACPI 2.0 on.
    pub xsdt: Option<u64>,
}

/// Reads an RSDP (`b` from its first byte); `None` unless signature and checksums hold.
pub fn parse_rsdp(b: &[u8]) -> Option<Rsdp> {
    if b.get(..8)? != RSDP_SIGNATURE || !sums_to_zero(b.get(..20)?) {
        return None;
    }
    let rsdt = u32_at(b, 16)?;
    let xsdt = match u8_at(b, 15)? {
        0 => None,
        _ => {
            let len = usize::try_from(u32_at(b, 20)?).ok()?;
            if len < 36 || !sums_to_zero(b.get(..len)?) {
                return None;
            }
            Some(u64_at(b, 24)?).filter(|&x| x != 0)
        }
    };
    Some(Rsdp { rsdt, xsdt })
}

/// Finds an RSDP in a BIOS memory area (it sits on a 16-byte boundary); its offset.
pub fn find_rsdp(area: &[u8]) -> Option<usize> {
    (0..area.len().saturating_sub(20))
        .step_by(16)
        .find(|&at| parse_rsdp(&area[at..]).is_some())
}

/// A table's signature and length from its header, when the header is whole.
pub fn table_header(b: &[u8]) -> Option<([u8; 4], usize)> {
    let sig = b.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32_at(b, 4)?).ok()?;
    (len >= SDT_HEADER_LEN).then_some((sig, len))
}

/// Whether `table` (exactly its header's length) has a valid checksum.
pub fn table_ok(table: &[u8]) -> bool {
    table_header(table).is_some_and(|(_, len)| len == table.len()) && sums_to_zero(table)
}

/// The table addresses an RSDT (`wide == false`) or XSDT (`wide == true`) lists.
pub fn root_entries(table: &[u8], wide: bool) -> Vec<u64> {
    let body = table.get(SDT_HEADER_LEN..).unwrap_or(&[]);
    if wide {
        body.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    } else {
        body.chunks_exact(4)
            .map(|c| u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
            .collect()
    }
}

/// What the kernel needs of the FADT (`FACP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fadt {
    /// The SCI's interrupt (an ISA IRQ number).
    pub sci_int: u16,
    /// The port that switches the machine into ACPI mode (0: always in it).
    pub smi_cmd: u32,
    /// The value to write to `smi_cmd` for that.
    pub acpi_enable: u8,
    /// The PM1a event block's port (status, then enable registers).
    pub pm1a_evt: u32,
    /// The PM1 event block's length (status and enable are half each).
    pub pm1_evt_len: u8,
    /// The PM1a control block's port (SCI_EN is bit 0).
    pub pm1a_cnt: u32,
    /// Hardware-reduced ACPI: no fixed events, the power button is a device.
    pub hw_reduced: bool,
    /// The power button is a control-method device, not the fixed PM1 event.
    pub power_button_is_device: bool,
    /// The DSDT's physical address.
    pub dsdt: u64,
}

/// Reads a FADT.
pub fn parse_fadt(b: &[u8]) -> Option<Fadt> {
    let (sig, len) = table_header(b)?;
    if &sig != b"FACP" || len < 116 {
        return None;
    }
    let flags = u32_at(b, 112)?;
    let x_dsdt = if len >= 148 { u64_at(b, 140) } else { None };
    Some(Fadt {
        sci_int: u16_at(b, 46)?,
        smi_cmd: u32_at(b, 48)?,
        acpi_enable: u8_at(b, 52)?,
        pm1a_evt: u32_at(b, 56)?,
        pm1_evt_len: u8_at(b, 88)?,
        pm1a_cnt: u32_at(b, 64)?,
        hw_reduced: flags & (1 << 20) != 0,
        power_button_is_device: flags & (1 << 4) != 0,
        dsdt: x_dsdt
            .filter(|&d| d != 0)
            .unwrap_or(u64::from(u32_at(b, 40)?)),
    })
}

/// An interrupt line and how it signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Irq {
    /// The GSI (or ISA IRQ, before overrides).
    pub gsi: u32,
    /// Level-triggered (not edge).
    pub level: bool,
    /// Active low (not high).
    pub active_low: bool,
}

/// The GSI an ISA IRQ arrives on, from the MADT's interrupt source overrides. ISA
/// defaults (same number, edge, active high) when the MADT says nothing of it.
pub fn isa_irq(madt: &[u8], irq: u8) -> Irq {
    let mut at = 44;
    while let (Some(kind), Some(len)) = (u8_at(madt, at), u8_at(madt, at + 1)) {
        if len < 2 {
            break;
        }
        if kind == 2 && u8_at(madt, at + 3) == Some(irq) {
            if let (Some(gsi), Some(flags)) = (u32_at(madt, at + 4), u16_at(madt, at + 8)) {
                // Polarity bits 0-1 (3: low), trigger bits 2-3 (3: level); 0 is the bus's
                // default, which for ISA is high and edge.
                return Irq {
                    gsi,
                    level: (flags >> 2) & 3 == 3,
                    active_low: flags & 3 == 3,
                };
            }
        }
        at += usize::from(len);
    }
    Irq {
        gsi: u32::from(irq),
        level: false,
        active_low: false,
    }
}

/// The local APIC IDs of the processors the MADT lists as enabled (processor local APIC
/// and local x2APIC entries), in the table's order, each once. Processors that are only
/// "online capable" (hot-pluggable, not present) are left out.
pub fn local_apic_ids(madt: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut at = 44;
    while let (Some(kind), Some(len)) = (u8_at(madt, at), u8_at(madt, at + 1)) {
        if len < 2 {
            break;
        }
        let entry = match kind {
            0 if len >= 8 => u8_at(madt, at + 3).map(u32::from).zip(u32_at(madt, at + 4)),
            9 if len >= 16 => u32_at(madt, at + 4).zip(u32_at(madt, at + 8)),
            _ => None,
        };
        if let Some((id, flags)) = entry {
            if flags & 1 != 0 && !out.contains(&id) {
                out.push(id);
            }
        }
        at += usize::from(len);
    }
    out
}

/// A device the DSDT declares, and the resources it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// Fixed memory ranges (`Memory32Fixed`): base and length.
    pub memory: Vec<(u64, u64)>,
    /// Interrupts (`Interrupt` and `IRQ` descriptors).
    pub irqs: Vec<Irq>,
    /// System-memory operation regions the device declares: name, base and length.
    pub regions: Vec<([u8; 4], u64, u64)>,
}

/// Every device in `aml` (a DSDT or SSDT, header included) whose `_HID` is the string `hid`.
pub fn devices(aml: &[u8], hid: &str) -> Vec<Device> {
    let mut pattern = Vec::with_capacity(hid.len() + 7);
    pattern.extend_from_slice(b"\x08_HID\x0d");
    pattern.extend_from_slice(hid.as_bytes());
    pattern.push(0);
    let starts: Vec<usize> = find_all(aml, b"\x08_HID").collect();
    let mut out = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        if !aml[start..].starts_with(&pattern) {
            continue;
        }
        // The device's objects run to the next device's _HID (or the table's end).
        let end = starts.get(i + 1).copied().unwrap_or(aml.len());
        let body = &aml[start..end];
        let mut dev = Device::default();
        if let Some(crs) = find_all(body, b"\x08_CRS\x11").next() {
            if let Some(res) = buffer(&body[crs + 6..]) {
                resources(res, &mut dev);
            }
        }
        for at in find_all(body, b"\x5b\x80") {
            if let Some(region) = op_region(&body[at + 2..]) {
                dev.regions.push(region);
            }
        }
        out.push(dev);
    }
    out
}

fn find_all<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    hay.windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// An AML PkgLength: the value and the bytes it took.
fn pkg_length(b: &[u8]) -> Option<(usize, usize)> {
    let lead = *b.first()?;
    let extra = usize::from(lead >> 6);
    if extra == 0 {
        return Some((usize::from(lead & 0x3f), 1));
    }
    let mut len = usize::from(lead & 0x0f);
    for i in 0..extra {
        len |= usize::from(*b.get(1 + i)?) << (4 + 8 * i);
    }
    Some((len, 1 + extra))
}

/// An AML integer constant: the value and the bytes it took.
fn integer(b: &[u8]) -> Option<(u64, usize)> {
    Some(match *b.first()? {
        0x00 => (0, 1),
        0x01 => (1, 1),
        0xff => (u64::MAX, 1),
        0x0a => (u64::from(u8_at(b, 1)?), 2),
        0x0b => (u64::from(u16_at(b, 1)?), 3),
        0x0c => (u64::from(u32_at(b, 1)?), 5),
        0x0e => (u64_at(b, 1)?, 9),
        _ => return None,
    })
}

/// The bytes of a `Buffer` whose PkgLength starts `b` (just after BufferOp).
fn buffer(b: &[u8]) -> Option<&[u8]> {
    let (pkg, used) = pkg_length(b)?;
    let body = b.get(used..pkg)?;
    let (size, used) = integer(body)?;
    let size = usize::try_from(size).ok()?;
    body.get(used..used.checked_add(size)?)
}

/// `OperationRegion (NAME, SystemMemory, OFFSET, LENGTH)` after its `0x5b 0x80` opcode.
fn op_region(b: &[u8]) -> Option<([u8; 4], u64, u64)> {
    let name: [u8; 4] = b.get(..4)?.try_into().ok()?;
    if *b.get(4)? != 0 {
        return None; // not SystemMemory
    }
    let (offset, used) = integer(&b[5..])?;
    let (len, _) = integer(b.get(5 + used..)?)?;
    Some((name, offset, len))
}

/// Reads a resource template's descriptors into `dev`.
fn resources(mut b: &[u8], dev: &mut Device) {
    while let Some(&tag) = b.first() {
        if tag & 0x80 == 0 {
            let (kind, len) = ((tag >> 3) & 0x0f, usize::from(tag & 7));
            if kind == 0x0f {
                return; // end tag
            }
            if kind == 0x04 && len >= 2 {
                // IRQ: a 16-bit mask; flags (when present): bit 0 edge, bit 3 active low.
                let mask = u16_at(b, 1).unwrap_or(0);
                let flags = if len >= 3 {
                    u8_at(b, 3).unwrap_or(1)
                } else {
                    1
                };
                for gsi in (0..16).filter(|i| mask & (1 << i) != 0) {
                    dev.irqs.push(Irq {
                        gsi,
                        level: flags & 1 == 0,
                        active_low: flags & 8 != 0,
                    });
                }
            }
            b = b.get(1 + len..).unwrap_or(&[]);
        } else {
            let Some(len) = u16_at(b, 1).map(usize::from) else {
                return;
            };
            let body = b.get(3..3 + len).unwrap_or(&[]);
            match tag & 0x7f {
                0x06 => {
                    if let (Some(base), Some(size)) = (u32_at(body, 1), u32_at(body, 5)) {
                        dev.memory.push((u64::from(base), u64::from(size)));
                    }
                }
                0x09 => {
                    // Extended interrupt: flags bit 1 edge, bit 2 active low; then a count.
                    let flags = u8_at(body, 0).unwrap_or(0);
                    let count = usize::from(u8_at(body, 1).unwrap_or(0));
                    for i in 0..count {
                        if let Some(gsi) = u32_at(body, 2 + 4 * i) {
                            dev.irqs.push(Irq {
                                gsi,
                                level: flags & 2 == 0,
                                active_low: flags & 4 != 0,
                            });
                        }
                    }
                }
                _ => {}
            }
            b = b.get(3 + len..).unwrap_or(&[]);
        }
    }
}

/// The generic event device's event bit for the power button.
pub const GED_POWER_DOWN: u32 = 0x2;
/// PM1 status/enable bit of the fixed power-button event.
pub const PM1_POWER_BUTTON: u16 = 1 << 8;
/// PM1 control: SCI_EN, set once the machine is in ACPI mode.
pub const PM1_SCI_EN: u16 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn with_checksum(mut t: Vec<u8>, at: usize) -> Vec<u8> {
        t[at] = 0;
        let sum = t.iter().fold(0u8, |s, x| s.wrapping_add(*x));
        t[at] = 0u8.wrapping_sub(sum);
        t
    }

    fn rsdp_v2(xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(RSDP_SIGNATURE);
        r[15] = 2;
        r[16..20].copy_from_slice(&0x1234u32.to_le_bytes());
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        let head = with_checksum(r[..20].to_vec(), 8);
        r[..20].copy_from_slice(&head);
        with_checksum(r, 32)
    }

    #[test]
    fn madt_lists_enabled_processors() {
        let mut madt = vec![0u8; 44];
        madt.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // CPU 0, APIC 0, enabled
        madt.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]); // an I/O APIC
        madt.extend_from_slice(&[0, 8, 1, 1, 1, 0, 0, 0]); // CPU 1, APIC 1, enabled
        madt.extend_from_slice(&[0, 8, 2, 2, 2, 0, 0, 0]); // APIC 2: online capable only
        madt.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]); // an override
        let mut x2 = vec![9, 16, 0, 0];
        x2.extend_from_slice(&300u32.to_le_bytes()); // x2APIC 300
        x2.extend_from_slice(&1u32.to_le_bytes()); // enabled
        x2.extend_from_slice(&7u32.to_le_bytes()); // UID
        madt.extend_from_slice(&x2);
        madt.extend_from_slice(&[0, 8, 3, 1, 1, 0, 0, 0]); // APIC 1 again
        assert_eq!(local_apic_ids(&madt), vec![0, 1, 300]);
        // A truncated or zero-length entry ends the walk.
        let mut cut = madt[..44 + 8].to_vec();
        cut.extend_from_slice(&[0, 0, 5, 5]);
        assert_eq!(local_apic_ids(&cut), vec![0]);
        assert_eq!(local_apic_ids(&[]), Vec::<u32>::new());
        assert_eq!(
            local_apic_ids(&madt[..44 + 8 + 12 + 4]),
            vec![0],
            "entry cut short"
        );
    }

    #[test]
    fn the_rsdp_is_found_on_a_paragraph_and_checked() {
        let mut area = vec![0u8; 256];
        area[64..100].copy_from_slice(&rsdp_v2(0xbfff_0000));
        assert_eq!(find_rsdp(&area), Some(64));
        assert_eq!(
            parse_rsdp(&area[64..]),
            Some(Rsdp {
                rsdt: 0x1234,
                xsdt: Some(0xbfff_0000)
            })
        );
        area[70] ^= 1;
        assert_eq!(find_rsdp(&area), None);
        assert_eq!(find_rsdp(&[]), None);
    }

    fn fadt(flags: u32) -> Vec<u8> {
        let mut f = vec![0u8; 244];
        f[..4].copy_from_slice(b"FACP");
        f[4..8].copy_from_slice(&244u32.to_le_bytes());
        f[40..44].copy_from_slice(&0x7fe0_0000u32.to_le_bytes());
        f[46..48].copy_from_slice(&9u16.to_le_bytes());
        f[48..52].copy_from_slice(&0xb2u32.to_le_bytes());
        f[52] = 2;
        f[56..60].copy_from_slice(&0x600u32.to_le_bytes());
        f[64..68].copy_from_slice(&0x604u32.to_le_bytes());
        f[88] = 4;
        f[112..116].copy_from_slice(&flags.to_le_bytes());
        with_checksum(f, 9)
    }

    #[test]
    fn a_q35_style_fadt_has_the_fixed_power_button() {
        let f = fadt(0x1 | 0x20);
        assert!(table_ok(&f));
        let p = parse_fadt(&f).unwrap();
        assert_eq!((p.sci_int, p.smi_cmd, p.acpi_enable), (9, 0xb2, 2));
        assert_eq!((p.pm1a_evt, p.pm1_evt_len, p.pm1a_cnt), (0x600, 4, 0x604));
        assert!(!p.hw_reduced && !p.power_button_is_device);
        assert_eq!(p.dsdt, 0x7fe0_0000);
        assert!(parse_fadt(&fadt(1 << 20)).unwrap().hw_reduced);
        assert!(parse_fadt(&f[..100]).is_none());
    }

    #[test]
    fn interrupt_source_overrides_move_the_sci() {
        let mut madt = vec![0u8; 44];
        madt.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // a local APIC
        madt.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]); // IRQ 9: level, high
        let sci = isa_irq(&madt, 9);
        assert_eq!(
            sci,
            Irq {
                gsi: 9,
                level: true,
                active_low: false
            }
        );
        assert!(!isa_irq(&madt, 4).level);
        // A zero-length entry ends the walk instead of looping.
        madt.extend_from_slice(&[2, 0]);
        assert_eq!(isa_irq(&madt, 5).gsi, 5);
    }

    /// AML as QEMU writes it for microvm's GED and one virtio-mmio transport.
    fn microvm_dsdt() -> Vec<u8> {
        let mut a = vec![0u8; SDT_HEADER_LEN];
        // Device (GED) { Name (_HID, "ACPI0013") Name (_UID, GED)
        a.extend_from_slice(b"\x5b\x82\x40\x05GED_\x08_HID\x0dACPI0013\x00");
        // Name (_CRS, ResourceTemplate () { Interrupt (Consumer, Edge, High) { 9 } })
        a.extend_from_slice(b"\x08_CRS\x11\x0e\x0a\x0b");
        a.extend_from_slice(&[0x89, 0x06, 0x00, 0x03, 0x01, 9, 0, 0, 0, 0x79, 0x00]);
        // OperationRegion (EREG, SystemMemory, 0xFEA00000, 4)
        a.extend_from_slice(b"\x5b\x80EREG\x00\x0c\x00\x00\xa0\xfe\x0a\x04");
        // Device (VR07) { _HID "LNRO0005", _UID 7, _CCA 1, _CRS { Memory32Fixed, Interrupt } }
        a.extend_from_slice(b"\x5b\x82\x3a\x05VR07\x08_HID\x0dLNRO0005\x00");
        a.extend_from_slice(b"\x08_UID\x0a\x07\x08_CCA\x01");
        a.extend_from_slice(b"\x08_CRS\x11\x1a\x0a\x17");
        a.extend_from_slice(&[0x86, 0x09, 0x00, 0x01]);
        a.extend_from_slice(&0xfeb0_0e00u32.to_le_bytes());
        a.extend_from_slice(&512u32.to_le_bytes());
        a.extend_from_slice(&[0x89, 0x06, 0x00, 0x01, 0x01, 12, 0, 0, 0, 0x79, 0x00]);
        a
    }

    #[test]
    fn the_ged_and_virtio_transports_are_read_from_the_dsdt() {
        let dsdt = microvm_dsdt();
        let ged = devices(&dsdt, "ACPI0013");
        assert_eq!(ged.len(), 1);
        assert_eq!(
            ged[0].irqs,
            [Irq {
                gsi: 9,
                level: false,
                active_low: false
            }]
        );
        assert_eq!(ged[0].regions, [(*b"EREG", 0xfea0_0000, 4)]);
        let virtio = devices(&dsdt, "LNRO0005");
        assert_eq!(virtio.len(), 1);
        assert_eq!(virtio[0].memory, [(0xfeb0_0e00, 512)]);
        assert_eq!(virtio[0].irqs[0].gsi, 12);
        assert!(virtio[0].irqs[0].level);
        assert!(devices(&dsdt, "PNP0A03").is_empty());
    }

    #[test]
    fn truncated_aml_yields_what_is_whole() {
        let dsdt = microvm_dsdt();
        for cut in 0..dsdt.len() {
            let _ = devices(&dsdt[..cut], "ACPI0013");
            let _ = devices(&dsdt[..cut], "LNRO0005");
        }
        assert_eq!(pkg_length(&[0x4a, 0x01]), Some((0x1a, 2)));
    }
}
