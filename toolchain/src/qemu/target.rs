//! Platform definitions from `targets/*.toml`: the QEMU arguments of each machine, as data.
//!
//! The files are compiled in, so an installed toolchain needs no checkout.

use serde::Deserialize;

/// A machine Kiln can boot on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Machine {
    /// QEMU `microvm` (default).
    #[default]
    Microvm,
    /// QEMU `q35`.
    Q35,
}

impl Machine {
    /// Every machine, in display order.
    pub const ALL: [Machine; 2] = [Machine::Microvm, Machine::Q35];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }

    /// The machine's definition.
    pub fn target(self) -> Target {
        let text = match self {
            Machine::Microvm => include_str!("../../../targets/qemu-microvm.toml"),
            Machine::Q35 => include_str!("../../../targets/qemu-q35.toml"),
        };
        // Checked by a unit test; a broken file is a build defect, not bad input.
        Target::parse(text).expect("built-in target definition is valid")
    }
}

impl std::str::FromStr for Machine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "microvm" => Ok(Machine::Microvm),
            "q35" => Ok(Machine::Q35),
            _ => Err(format!("unknown machine `{s}`; use microvm or q35")),
        }
    }
}

/// One platform definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Short name (`qemu-microvm`).
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Boot protocol (`pvh`).
    pub boot: String,
    /// The QEMU program.
    pub binary: String,
    /// Machine selection (`-M ...`).
    pub machine: Vec<String>,
    /// Arguments every run gets.
    pub common: Vec<String>,
    /// Accelerator and CPU arguments under TCG.
    pub tcg: Vec<String>,
    /// Accelerator and CPU arguments under KVM.
    pub kvm: Vec<String>,
    /// Memory when `--memory` is not given.
    pub default_memory: String,
    /// Devices every run gets (the exit device).
    pub devices: Vec<String>,
    /// I/O port of the `isa-debugcon` carrying the program's stdout.
    pub stdout_port: u16,
    /// I/O port of the `isa-debugcon` carrying the program's stderr.
    pub stderr_port: u16,
    /// I/O port of the `isa-debugcon` receiving the exact exit status byte.
    pub status_port: u16,
    /// I/O port of the `isa-debugcon` carrying binary records (`kiln_abi::record`).
    pub records_port: u16,
    /// UEFI firmware code (`boot = "uefi"` only), mapped read-only.
    #[serde(default)]
    pub firmware_code: Option<String>,
    /// UEFI variable store template (`boot = "uefi"` only), copied for each run.
    #[serde(default)]
    pub firmware_vars: Option<String>,
    /// The Debian package that ships the firmware (`boot = "uefi"` only).
    #[serde(default)]
    pub firmware_package: Option<String>,
    /// QEMU device of the boot disk (`boot = "uefi"` only), given `bootindex=0` so the
    /// firmware boots it before any network card.
    #[serde(default)]
    pub disk_device: Option<String>,
    /// QEMU device of the network card (`virtio-net-device`, `virtio-net-pci`); no network
    /// when absent.
    #[serde(default)]
    pub net_device: Option<String>,
    /// QEMU device of a volume (`virtio-9p-device`, `virtio-9p-pci`).
    #[serde(default)]
    pub volume_device: Option<String>,
    /// QEMU virtio-serial device (`virtio-serial-device`, `virtio-serial-pci`) whose
    /// console carries the program's standard output, for kernels that can use it; the
    /// `stdout_port` debugcon otherwise.
    #[serde(default)]
    pub console_device: Option<String>,
}

/// The UEFI target (q35 + OVMF) that boots disk images.
pub fn uefi_target() -> Target {
    // Checked by a unit test; a broken file is a build defect, not bad input.
    Target::parse(include_str!("../../../targets/qemu-q35-uefi.toml"))
        .expect("built-in target definition is valid")
}

impl Target {
    /// Parses a definition.
    pub fn parse(text: &str) -> Result<Target, String> {
        let t: Target = toml::from_str(text).map_err(|e| e.to_string())?;
        let uefi_fields = [
            &t.firmware_code,
            &t.firmware_vars,
            &t.firmware_package,
            &t.disk_device,
        ];
        match t.boot.as_str() {
            "pvh" if uefi_fields.iter().all(|f| f.is_none()) => {}
            "pvh" => return Err("firmware_* and disk_device are for boot = \"uefi\"".into()),
            "uefi" if uefi_fields.iter().all(|f| f.is_some()) => {}
            "uefi" => {
                return Err("boot = \"uefi\" needs firmware_code, firmware_vars, firmware_package and disk_device".into())
            }
            other => {
                return Err(format!(
                    "boot protocol `{other}` is not supported (pvh or uefi)"
                ))
            }
        }
        crate::options::parse_memory(&t.default_memory).map_err(|e| e.0)?;
        let reserved = [0xf4, 0xf5, 0xf6, 0xf7, 0x3f8];
        let ports = [t.stdout_port, t.stderr_port, t.status_port, t.records_port];
        let distinct = ports
            .iter()
            .enumerate()
            .all(|(i, p)| !ports[..i].contains(p));
        if !distinct || ports.iter().any(|p| reserved.contains(p)) {
            return Err("stdout_port, stderr_port, status_port and records_port must differ from each other and from the exit and serial ports".into());
        }
        Ok(t)
    }

    /// `default_memory` in MiB.
    pub fn default_memory_mib(&self) -> u64 {
        crate::options::parse_memory(&self.default_memory).unwrap_or(128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_targets_parse() {
        for m in Machine::ALL {
            let t = m.target();
            assert_eq!(t.name, format!("qemu-{}", m.name()));
            assert_eq!(t.default_memory_mib(), 128);
            assert!(t.devices.join(" ").contains("isa-debug-exit,iobase=0xf4"));
            assert_eq!(m.name().parse::<Machine>().unwrap(), m);
        }
        assert!(Machine::Microvm.target().machine[1].starts_with("microvm,"));
        let u = uefi_target();
        assert_eq!(u.boot, "uefi");
        assert_eq!(u.stdout_port, 0x405);
        assert!(u
            .firmware_code
            .as_deref()
            .unwrap()
            .ends_with("OVMF_CODE.fd"));
        assert!("pc"
            .parse::<Machine>()
            .unwrap_err()
            .contains("microvm or q35"));
    }

    #[test]
    fn bad_definitions() {
        assert!(Target::parse("name = 1").is_err());
        let good = include_str!("../../../targets/qemu-q35.toml");
        assert!(Target::parse(&good.replace("\"pvh\"", "\"uefi\"")).is_err());
        assert!(Target::parse(&good.replace("\"128M\"", "\"lots\"")).is_err());
        assert!(Target::parse(&format!("{good}\nextra = 1\n")).is_err());
        assert!(Target::parse(&good.replace("0x405", "0x403")).is_err());
        assert!(Target::parse(&good.replace("0x404", "0x403")).is_err());
        assert!(Target::parse(&good.replace("0x404", "0xf4")).is_err());
        assert!(Target::parse(&good.replace("0x404", "0x10000")).is_err());
    }
}
