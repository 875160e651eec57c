//! The network card: finding it, its interrupt, and running the stack when it speaks.
//!
//! Devices: virtio-mmio transports announced on the command line
//! (`virtio_mmio.device=SIZE@BASE:GSI`, as QEMU microvm with `acpi=off` and Firecracker do)
//! or in the DSDT (microvm with `acpi=on`, see `machine::acpi`), else virtio-net on PCI bus
//! 0 (q35). The first network device found is used.
//!
//! Interrupts: the device's line goes through the I/O APIC to a vector whose handler masks
//! the line and sets [`PENDING`]; it takes no lock. The scheduler loop calls [`service`],
//! which acknowledges the device, unmasks the line and runs the stack
//! ([`kiln_os::net::Net::poll`]), waking the threads whose sockets changed. [`deadline`] is
//! when the stack next wants to run (TCP timers, DHCP), for the idle timer.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use kiln_abi::cmdline::Config;
use kiln_hal::virtio::VirtioNet;
use kiln_os::net::NetDevice;
use kiln_os::process::Process;

use super::HalMachine;
use crate::console;
use crate::Kernel;

/// Interrupt vector of the network card.
const VECTOR: u8 = kiln_hal::trap::FIRST_DEVICE_VECTOR + 1;
/// Without a working interrupt, the stack is polled this often.
const FALLBACK_POLL_NS: u64 = 2_000_000;
/// With one, the card is still looked at this often. On q35 (QEMU 7.2, TCG), frames that
/// reach the card while the kernel starts can leave it with its interrupt status set and
/// its line never seen by the I/O APIC (no request pending there or at the local APIC):
/// without this look, such a guest would wait for an interrupt that never comes.
const SAFETY_POLL_NS: u64 = 50_000_000;

/// The card interrupted since the stack last ran.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The I/O APIC line of the card (`u8::MAX`: none routed).
static LINE: AtomicU8 = AtomicU8::new(u8::MAX);
/// When the stack last ran (monotonic ns).
static LAST_RUN: AtomicU64 = AtomicU64::new(0);

/// Frames and bytes received, for `stats`.
static RX: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// Frames and bytes sent, for `stats`.
static TX: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Frames and bytes received and sent so far: `((frames, bytes), (frames, bytes))`.
pub fn counters() -> ((u64, u64), (u64, u64)) {
    let get = |c: &[AtomicU64; 2]| (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed));
    (get(&RX), get(&TX))
}

fn count(c: &[AtomicU64; 2], bytes: usize) {
    c[0].fetch_add(1, Ordering::Relaxed);
    c[1].fetch_add(bytes as u64, Ordering::Relaxed);
}

/// The machine's network card.
pub struct NetCard {
    dev: VirtioNet,
}

impl NetDevice for NetCard {
    fn mac(&self) -> [u8; 6] {
        self.dev.mac()
    }
    fn receive(&mut self) -> Option<Vec<u8>> {
        let frame = self.dev.receive()?;
        count(&RX, frame.len());
        Some(frame)
    }
    fn transmit(&mut self, frame: &[u8]) -> bool {
        let sent = self.dev.transmit(frame);
        if sent {
            count(&TX, frame.len());
        }
        sent
    }
    fn has_received(&mut self) -> bool {
        self.dev.has_received()
    }
    fn flush(&mut self) {
        self.dev.flush();
    }
    fn unflushed(&self) -> bool {
        self.dev.unflushed()
    }
}

fn on_irq(_vector: u8) -> bool {
    let line = LINE.load(Ordering::Relaxed);
    if line != u8::MAX {
        // Level-triggered: keep the line quiet until the device is acknowledged.
        kiln_hal::ioapic::set_masked(line, true);
    }
    PENDING.store(true, Ordering::Release);
    // A running program is interrupted: the kernel's look (`run::on_timer`) follows at
    // once and runs the stack. An idle kernel's loop does it.
    true
}

fn route(line: u8) {
    kiln_hal::trap::set_irq_handler(VECTOR, on_irq);
    LINE.store(line, Ordering::Relaxed);
    if !kiln_hal::ioapic::route(line, VECTOR) {
        LINE.store(u8::MAX, Ordering::Relaxed);
        console::warn(format_args!(
            "net: interrupt line {line} cannot be routed; polling the card instead"
        ));
    }
}

/// Where the network card may be: virtio-mmio transports (announced on the command line,
/// then those the DSDT lists), then virtio-net on PCI. Nothing is touched until [`open`].
pub struct Candidates {
    mmio: Vec<(u64, u64, u8)>,
}

/// Configures the stack from the command line (`kiln.ip`, `kiln.gw`, `kiln.dns`) and notes
/// where the card may be. The card itself is set up on the program's first use of the
/// network ([`open`], through `Machine::net_device`), so a program that never opens a
/// socket pays nothing for it at boot, and one that does pays once, at that point.
pub fn start(
    config: &Config,
    acpi: &[super::acpi::Transport],
    process: &mut Process,
) -> Candidates {
    process.net.configure(config.net.clone());
    let announced = config
        .other
        .iter()
        .filter_map(|t| super::mmio::parse_mmio_token(t));
    Candidates {
        mmio: announced.chain(acpi.iter().copied()).collect(),
    }
}

/// Finds the network card among `candidates`, sets it up and routes its interrupt; `None`
/// (loopback only) when there is none.
pub fn open(candidates: Candidates) -> Option<NetCard> {
    let mut card = None;
    for (base, size, gsi) in candidates.mmio {
        match VirtioNet::mmio(base, size) {
            Ok(dev) => {
                card = Some((dev, gsi, String::from("virtio-mmio")));
                break;
            }
            Err(why) => console::info(format_args!("net: virtio-mmio at {base:#x}: {why}")),
        }
    }
    if card.is_none() {
        card = VirtioNet::pci()
            .into_iter()
            .next()
            .map(|(dev, line)| (dev, line, String::from("virtio-pci")));
    }
    let Some((dev, line, kind)) = card else {
        console::info(format_args!("net: no network card; loopback only"));
        return None;
    };
    let mac = dev.mac();
    console::info(format_args!(
        "net: {kind} card {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, interrupt line {line}, set up at {} ms",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
        crate::console::since_boot()
    ));
    route(line);
    LAST_RUN.store(kiln_hal::time::monotonic_ns(), Ordering::Relaxed);
    Some(NetCard { dev })
}

fn run_stack(process: &mut Process, machine: &mut HalMachine) {
    process.net.poll(machine);
    LAST_RUN.store(kiln_hal::time::monotonic_ns(), Ordering::Relaxed);
}

/// When the stack next wants to run: its own timers, and without a working interrupt line,
/// a periodic look at the card.
fn next_run(k: &mut Kernel) -> Option<u64> {
    let mut next = k.process.net.next_poll();
    if k.machine.net.is_some() {
        let every = if LINE.load(Ordering::Relaxed) == u8::MAX {
            FALLBACK_POLL_NS
        } else {
            SAFETY_POLL_NS
        };
        let periodic = LAST_RUN.load(Ordering::Relaxed) + every;
        next = Some(next.map_or(periodic, |n| n.min(periodic)));
    }
    next
}

/// Runs the network stack if the card interrupted or the stack's time came: wakes the
/// threads whose sockets changed. Cheap otherwise. The scheduler calls it before picking a
/// thread to run (and may from the timer interrupt).
pub fn service(k: &mut Kernel) {
    let pending = PENDING.swap(false, Ordering::Acquire);
    let due = next_run(k).is_some_and(|d| d <= kiln_hal::time::monotonic_ns());
    let arrived = k.machine.net.as_ref().is_some_and(|c| c.dev.has_received()) && !batching(k);
    if pending || arrived || due {
        // Acknowledging lowers the card's line: the next frame raises it afresh.
        if let Some(card) = k.machine.net.as_mut() {
            card.dev.ack_interrupt();
        }
        let line = LINE.load(Ordering::Relaxed);
        if line != u8::MAX {
            kiln_hal::ioapic::set_masked(line, false);
        }
    }
    // An interrupt for frames a system call already took costs no run of the stack.
    if arrived || due {
        run_stack(&mut k.process, &mut k.machine);
    }
}

/// How long the end of a run waits for the card to send what the program wrote.
const FLUSH_NS: u64 = 500_000_000;

/// Before the VM ends: runs the stack once more and waits (at most [`FLUSH_NS`]) until the
/// card has sent every queued frame. A program that writes its answer and exits at once (as
/// a server's `/quit` does) would otherwise end the VM with the answer still in the queue.
pub fn flush(k: &mut Kernel) {
    if k.machine.net.is_none() {
        return;
    }
    run_stack(&mut k.process, &mut k.machine);
    let end = kiln_hal::time::monotonic_ns() + FLUSH_NS;
    while let Some(card) = k.machine.net.as_mut() {
        if !card.dev.transmitting() || kiln_hal::time::monotonic_ns() > end {
            break;
        }
        core::hint::spin_loop();
    }
}

/// After a thread started to wait, before another one runs: sends what its last system
/// call wrote (see `kiln_os::net::Net::end_of_call`, which leaves that to the kernel for a
/// call that waits).
pub fn flush_writes(k: &mut Kernel) {
    if batching(k) {
        return;
    }
    k.process.net.poll_if_dirty(&mut k.machine);
    LAST_RUN.store(kiln_hal::time::monotonic_ns(), Ordering::Relaxed);
}

/// Other threads are ready and the stack ran less than `kiln_os::net::BATCH_NS` ago: what
/// arrived or was written waits for the next run, which serves them all.
fn batching(k: &mut Kernel) -> bool {
    k.machine.sched.has_ready()
        && kiln_hal::time::monotonic_ns() < k.process.net.last_run() + kiln_os::net::BATCH_NS
}

/// When the network stack next wants to run (monotonic ns), for the idle timer.
pub fn deadline(k: &mut Kernel) -> Option<u64> {
    next_run(k)
}
