//! The virtio console that carries the program's standard output and error when the command
//! line routes them there (`kiln.stdout=virtio:1`, `kiln.stderr=virtio:2`): found among the
//! virtio-mmio transports on the command line or in the DSDT, else on PCI bus 0. A stream
//! whose port is missing goes to the serial console, with a warning.

use alloc::vec::Vec;

use kiln_abi::cmdline::{Config, Sink};
use kiln_hal::virtio_console::VirtioConsole;

use crate::console;

/// The device, once found.
static DEVICE: spin::Mutex<Option<VirtioConsole>> = spin::Mutex::new(None);

/// What this kernel declares to the runner (`kiln_abi::caps`): it reads `virtio:N` sinks (a
/// kernel that does not stops at boot on them).
static CAPABILITIES: [u8; 24] = *b"KILN-CAPS:virtio-ports;\0";

/// Finds the console when a stream is routed to one of its ports; reroutes the streams
/// whose port is missing to the serial console.
pub fn start(config: &Config, acpi: &[super::acpi::Transport]) {
    // Referenced, so the linker keeps the record.
    core::hint::black_box(&CAPABILITIES);
    let mut routes = console::routes();
    let wanted: Vec<u32> = [routes.stdout, routes.stderr]
        .iter()
        .filter_map(|s| match s {
            Sink::Virtio(port) => Some(*port),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let announced = config
        .other
        .iter()
        .filter_map(|t| super::mmio::parse_mmio_token(t));
    let found = announced
        .chain(acpi.iter().copied())
        .find_map(|(base, size, _)| VirtioConsole::mmio(base, size, &wanted).ok())
        .or_else(|| VirtioConsole::pci(&wanted).into_iter().next());
    let mut missing = false;
    for sink in [&mut routes.stdout, &mut routes.stderr] {
        if let Sink::Virtio(port) = *sink {
            if !found.as_ref().is_some_and(|d| d.has_port(port)) {
                *sink = Sink::Serial;
                missing = true;
            }
        }
    }
    *DEVICE.lock() = found;
    if missing {
        console::set_routes(routes);
        console::warn(format_args!(
            "no virtio console port for the program's output: it goes to the serial console"
        ));
    }
}

/// Writes `data` to `port`; `false` when there is no such port, it refused the bytes, or
/// the console stayed busy (a panic that interrupted a write, whose message then goes
/// elsewhere rather than waiting forever).
pub fn write(port: u32, data: &[u8]) -> bool {
    // Another CPU's write takes far less than this many tries.
    for _ in 0..10_000_000 {
        if let Some(mut dev) = DEVICE.try_lock() {
            return dev.as_mut().is_some_and(|d| d.write(port, data));
        }
        core::hint::spin_loop();
    }
    false
}
