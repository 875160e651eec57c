//! Host directories (`kiln.volume=TAG,PATH[,ro]`): finds the virtio-9p devices (virtio-mmio
//! transports on the command line or in the DSDT, else PCI bus 0), matches them to the
//! volumes by mount tag, attaches each with the 9P2000.L client and mounts it in the tree.
//! A volume asked for but missing stops the boot: the program would otherwise write into
//! a directory that vanishes with the VM.

use alloc::boxed::Box;
use alloc::vec::Vec;

use kiln_abi::cmdline::Config;
use kiln_hal::virtio9p::Virtio9p;
use kiln_os::fs::p9::{Client, Transport};
use kiln_os::fs::volume::Volume;
use kiln_os::fs::Vfs;

use crate::console;

/// A virtio-9p device as the client's transport.
struct Device(Virtio9p);

impl Transport for Device {
    fn request(&mut self, req: &[u8], resp: &mut [u8]) -> Option<usize> {
        self.0.request(req, resp)
    }
}

/// Mounts every volume of `config` in `vfs`; an error names the volume that failed.
pub fn start(
    config: &Config,
    acpi: &[super::acpi::Transport],
    vfs: &mut Vfs,
) -> Result<(), alloc::string::String> {
    if config.volumes.is_empty() {
        return Ok(());
    }
    let announced = config
        .other
        .iter()
        .filter_map(|t| super::mmio::parse_mmio_token(t));
    let mut devices: Vec<Virtio9p> = announced
        .chain(acpi.iter().copied())
        .filter_map(|(base, size, _)| Virtio9p::mmio(base, size).ok())
        .collect();
    devices.extend(Virtio9p::pci());
    for (i, v) in config.volumes.iter().enumerate() {
        let at = devices
            .iter()
            .position(|d| d.tag() == v.tag)
            .ok_or_else(|| {
                alloc::format!("volume {}: no virtio-9p device with tag {}", v.path, v.tag)
            })?;
        let dev = devices.swap_remove(at);
        let fail = |what: &str, e: kiln_os::errno::Errno| {
            alloc::format!("volume {}: {what}: {}", v.path, e.name())
        };
        let client = Client::connect(Box::new(Device(dev))).map_err(|e| fail("9P attach", e))?;
        let vol = Volume::new(client, v.readonly, i as u32);
        let root = vol.root().map_err(|e| fail("root", e))?;
        vfs.mount(&v.path, root, &v.tag, v.readonly)
            .map_err(|e| fail("mount", e))?;
        console::info(format_args!(
            "volume {} mounted at {}{}",
            v.tag,
            v.path,
            if v.readonly { " (read-only)" } else { "" }
        ));
    }
    Ok(())
}
