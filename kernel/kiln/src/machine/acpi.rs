//! What the firmware's ACPI tables say: where the power button is (enabled here, see
//! `kiln_hal::power`) and, on hardware-reduced machines that list them nowhere else
//! (microvm with `acpi=on`), the virtio-mmio transports. No tables (microvm with
//! `acpi=off`, Firecracker) is normal: there is then no power button to enable.

use alloc::vec;
use alloc::vec::Vec;

use kiln_hal::power::{self, Line, Pm1};
use kiln_os::acpi::{self, Irq};

use crate::console;

/// Largest table read (QEMU's DSDTs are a few KiB).
const MAX_TABLE: usize = 1 << 20;

/// A virtio-mmio transport the DSDT lists: base, size, GSI.
pub type Transport = (u64, u64, u8);

fn read(phys: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    power::read_firmware(phys, &mut buf).then_some(buf)
}

/// A whole, checksummed table at `phys`.
fn table(phys: u64) -> Option<Vec<u8>> {
    let head = read(phys, acpi::SDT_HEADER_LEN)?;
    let (_, len) = acpi::table_header(&head)?;
    let t = read(phys, len.min(MAX_TABLE))?;
    acpi::table_ok(&t).then_some(t)
}

fn find_rsdp(hint: Option<u64>) -> Option<acpi::Rsdp> {
    if let Some(r) = hint
        .and_then(|h| read(h, 36))
        .and_then(|b| acpi::parse_rsdp(&b))
    {
        return Some(r);
    }
    // The EBDA's first KiB, then the BIOS area below 1 MiB.
    let ebda = read(0x40e, 2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])) << 4);
    let areas = ebda
        .filter(|e| (0x8_0000..0xa_0000).contains(e))
        .map(|e| (e, 1024))
        .into_iter()
        .chain([(0xe_0000u64, 0x2_0000usize)]);
    for (base, len) in areas {
        let Some(area) = read(base, len) else {
            continue;
        };
        if let Some(at) = acpi::find_rsdp(&area) {
            return acpi::parse_rsdp(&area[at..]);
        }
    }
    None
}

fn line(irq: Irq) -> Option<Line> {
    Some(Line {
        gsi: u8::try_from(irq.gsi).ok()?,
        level: irq.level,
        active_low: irq.active_low,
    })
}

/// What the tables list that the kernel starts later.
#[derive(Default)]
pub struct Found {
    /// The virtio-mmio transports the DSDT lists.
    pub transports: Vec<Transport>,
    /// The local APIC IDs of the enabled processors (the MADT's; empty without one).
    pub apic_ids: Vec<u32>,
}

/// Reads the ACPI tables (from the RSDP at `rsdp_hint`, or found in the BIOS area),
/// enables the power button, and returns the virtio-mmio transports and processors they
/// list.
pub fn start(rsdp_hint: Option<u64>) -> Found {
    let mut found = Found::default();
    let Some(rsdp) = find_rsdp(rsdp_hint) else {
        console::info(format_args!("acpi: no tables; no power button"));
        return found;
    };
    let (root, wide) = match rsdp.xsdt {
        Some(x) => (table(x), true),
        None => (table(u64::from(rsdp.rsdt)), false),
    };
    let Some(root) = root else {
        console::warn(format_args!(
            "acpi: the root table is unreadable; no power button"
        ));
        return found;
    };
    let (mut fadt, mut madt) = (None, None);
    for t in acpi::root_entries(&root, wide)
        .into_iter()
        .filter_map(table)
    {
        match &t[..4] {
            b"FACP" => fadt = acpi::parse_fadt(&t),
            b"APIC" => madt = Some(t),
            _ => {}
        }
    }
    found.apic_ids = madt
        .as_deref()
        .map(acpi::local_apic_ids)
        .unwrap_or_default();
    let Some(fadt) = fadt else {
        console::warn(format_args!("acpi: no FADT; no power button"));
        return found;
    };
    let dsdt = table(fadt.dsdt).unwrap_or_default();
    found.transports = acpi::devices(&dsdt, "LNRO0005")
        .into_iter()
        .filter_map(|d| Some((*d.memory.first()?, line(*d.irqs.first()?)?.gsi)))
        .map(|((base, size), gsi)| (base, size, gsi))
        .collect();
    let enabled = if fadt.hw_reduced || fadt.power_button_is_device {
        ged_button(&dsdt)
    } else {
        let sci = acpi::isa_irq(madt.as_deref().unwrap_or(&[]), fadt.sci_int as u8);
        let pm1 = Pm1 {
            evt: fadt.pm1a_evt as u16,
            evt_len: fadt.pm1_evt_len,
            cnt: fadt.pm1a_cnt as u16,
            smi_cmd: fadt.smi_cmd as u16,
            acpi_enable: fadt.acpi_enable,
        };
        line(sci)
            .ok_or(power::Error::NoLine)
            .and_then(|l| power::enable_pm1(pm1, l))
            .map(|()| "ACPI PM1 power button")
    };
    match enabled {
        Ok(what) => console::info(format_args!("acpi: {what} enabled")),
        Err(e) => console::warn(format_args!("acpi: power button not enabled: {e:?}")),
    }
    found
}

/// The generic event device's power button.
fn ged_button(dsdt: &[u8]) -> Result<&'static str, power::Error> {
    let ged = acpi::devices(dsdt, "ACPI0013");
    let dev = ged.first().ok_or(power::Error::BadRegister)?;
    let sel = dev
        .regions
        .iter()
        .find(|(name, _, _)| name == b"EREG")
        .map(|r| r.1)
        .ok_or(power::Error::BadRegister)?;
    let irq = dev
        .irqs
        .first()
        .copied()
        .and_then(line)
        .ok_or(power::Error::NoLine)?;
    power::enable_ged(sel, irq).map(|()| "ACPI generic event device power button")
}
