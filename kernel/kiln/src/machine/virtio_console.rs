//! The virtio console that carries the program's standard output and error, and its standard
//! input, when the command line routes them there (`kiln.stdout=virtio:1`,
//! `kiln.stderr=virtio:2`, `kiln.stdin=virtio:3`): found among the virtio-mmio transports on
//! the command line or in the DSDT, else on PCI bus 0. An output stream whose port is missing
//! goes to the serial console, with a warning; standard input without its port is empty.

use alloc::vec::Vec;

use kiln_abi::cmdline::{Config, InputChannel, Sink};
use kiln_hal::virtio_console::VirtioConsole;

use crate::console;

/// The device, once found.
static DEVICE: spin::Mutex<Option<VirtioConsole>> = spin::Mutex::new(None);

/// What this kernel declares to the runner (`kiln_abi::caps`): it reads `virtio:N` sinks (a
/// kernel that does not stops at boot on them).
static CAPABILITIES: [u8; 37] = *b"KILN-CAPS:virtio-ports;virtio-stdin;\0";

/// Finds the console when a stream is routed to one of its ports; reroutes the output
/// streams whose port is missing to the serial console. Returns whether standard input's
/// port (`kiln.stdin=virtio:N`) is open.
pub fn start(config: &Config, acpi: &[super::acpi::Transport]) -> bool {
    // Referenced, so the linker keeps the record.
    core::hint::black_box(&CAPABILITIES);
    let mut routes = console::routes();
    let input = match config.stdin {
        Some(InputChannel::Virtio(port)) => Some(port),
        _ => None,
    };
    let wanted: Vec<(u32, bool)> = [routes.stdout, routes.stderr]
        .iter()
        .filter_map(|s| match s {
            Sink::Virtio(port) => Some((*port, false)),
            _ => None,
        })
        .chain(input.map(|port| (port, true)))
        .collect();
    if wanted.is_empty() {
        return false;
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
    let input_open = input.is_some_and(|p| found.as_ref().is_some_and(|d| d.has_port(p)));
    *DEVICE.lock() = found;
    if missing {
        console::set_routes(routes);
        console::warn(format_args!(
            "no virtio console port for the program's output: it goes to the serial console"
        ));
    }
    if input.is_some() && !input_open {
        console::warn(format_args!(
            "no virtio console port for standard input: the program's standard input is empty"
        ));
    }
    input_open
}

/// Hands what arrived on `port` to `f`, a filled buffer at a time; `false` when there is no
/// such port open for reading, or the console is busy (another CPU writing).
pub fn read(port: u32, f: &mut dyn FnMut(&[u8])) -> bool {
    DEVICE
        .try_lock()
        .is_some_and(|mut d| d.as_mut().is_some_and(|d| d.read(port, f)))
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
