//! The virtio console that carries the program's standard output when the command line
//! routes it there (`kiln.stdout=virtio`): found among the virtio-mmio transports on the
//! command line or in the DSDT, else on PCI bus 0. Without one, the output goes to the
//! serial console, with a warning.

use kiln_abi::cmdline::{Config, Sink};
use kiln_hal::virtio_console::VirtioConsole;

use crate::console;

/// The device, once found.
static DEVICE: spin::Mutex<Option<VirtioConsole>> = spin::Mutex::new(None);

/// What this kernel declares to the runner (`kiln_abi::caps`): it reads `kiln.stdout=virtio`
/// (a kernel that does not stops at boot on it).
static CAPABILITIES: [u8; 25] = *b"KILN-CAPS:stdout-virtio;\0";

/// Finds the console when a stream is routed to it; reroutes such streams to the serial
/// console when there is none.
pub fn start(config: &Config, acpi: &[super::acpi::Transport]) {
    // Referenced, so the linker keeps the record.
    core::hint::black_box(&CAPABILITIES);
    let mut routes = console::routes();
    if routes.stdout != Sink::Virtio && routes.stderr != Sink::Virtio {
        return;
    }
    let announced = config
        .other
        .iter()
        .filter_map(|t| super::mmio::parse_mmio_token(t));
    let found = announced
        .chain(acpi.iter().copied())
        .find_map(|(base, size, _)| VirtioConsole::mmio(base, size).ok())
        .or_else(|| VirtioConsole::pci().into_iter().next());
    match found {
        Some(dev) => *DEVICE.lock() = Some(dev),
        None => {
            for sink in [&mut routes.stdout, &mut routes.stderr] {
                if *sink == Sink::Virtio {
                    *sink = Sink::Serial;
                }
            }
            console::set_routes(routes);
            console::warn(format_args!(
                "no virtio console found: the program's output goes to the serial console"
            ));
        }
    }
}

/// Writes `data` to the console; `false` when there is none or it refused the bytes. Only
/// the program's writes come here (kernel messages and crash reports have their own
/// ports), so a panic cannot find the lock held by the code it interrupted.
pub fn write(data: &[u8]) -> bool {
    DEVICE.lock().as_mut().is_some_and(|d| d.write(data))
}
