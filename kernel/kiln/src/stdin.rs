//! The standard-input channel (`kiln.stdin=0x3e8` or `kiln.stdin=virtio:3`, see
//! `kiln_abi::stdin`): a UART, or a port of the virtio console, that carries the host's
//! standard input when the program asks for it. The program-facing side (what arrived, who
//! waits) is `kiln_os::fd::console::HostInput`.
//!
//! The UART interrupts as bytes arrive. The virtio port is looked at whenever the kernel
//! looks for work (system calls ending, the timer, the idle loop); while a request is out,
//! the idle loop wakes to look again ([`deadline`], `kiln_abi::stdin::poll_step_ns`).

use core::sync::atomic::{AtomicU64, Ordering};

use kiln_abi::cmdline::InputChannel;
use kiln_abi::stdin::{encode_request, poll_step_ns, Decoder, Input};
use kiln_hal::once::SetOnce;
use kiln_hal::uart::Uart;
use kiln_os::fd::console::{input_arrived, HostInput, HOST_INPUT};
use spin::Mutex;

use crate::{console, Kernel};

/// What carries the input.
enum Channel {
    Uart(Uart),
    Virtio(u32),
}

static CHANNEL: SetOnce<Channel> = SetOnce::new();
/// Where the host's byte stream is between chunks.
static DECODER: Mutex<Decoder> = Mutex::new(Decoder::new());
/// When the request now out was sent (ns since boot; 0: none out).
static ASKED_AT: AtomicU64 = AtomicU64::new(0);

/// Opens the standard-input channel the command line names, if any; `virtio_open` tells
/// whether the virtio console opened the port of `virtio:N`.
pub fn start(channel: Option<InputChannel>, virtio_open: bool) {
    match channel {
        Some(InputChannel::Virtio(port)) if virtio_open => {
            CHANNEL.set(Channel::Virtio(port));
            HOST_INPUT.lock().connect();
            console::info(format_args!(
                "stdin: from port {port} of the virtio console"
            ));
        }
        // Without its port the console warned already: standard input stays empty.
        None | Some(InputChannel::Virtio(_)) => {}
        Some(InputChannel::Uart(port)) => match Uart::open(port) {
            Some(u) => {
                CHANNEL.set(Channel::Uart(u));
                HOST_INPUT.lock().connect();
                console::info(format_args!("stdin: from the UART at {port:#x}"));
            }
            None => console::warn(format_args!(
                "stdin: no UART at {port:#x}; the program's standard input is empty"
            )),
        },
    }
}

/// Takes what the host sent and asks it for more when a reader waits (cheap when neither).
pub fn service(k: &mut Kernel) {
    let Some(channel) = CHANNEL.get() else { return };
    let mut woke = false;
    {
        let mut input = HOST_INPUT.lock();
        let mut decoder = DECODER.lock();
        let mut feed = |bytes: &[u8]| {
            decoder.feed(bytes, |i| woke |= take(&mut input, i));
        };
        match channel {
            Channel::Uart(uart) => {
                if uart.take_pending() {
                    let mut chunk = [0u8; 64];
                    loop {
                        let mut n = 0;
                        while n < chunk.len() {
                            let Some(b) = uart.read_byte() else { break };
                            chunk[n] = b;
                            n += 1;
                        }
                        if n == 0 {
                            break;
                        }
                        feed(&chunk[..n]);
                    }
                }
            }
            Channel::Virtio(port) => {
                crate::machine::virtio_console::read(*port, &mut feed);
            }
        }
    }
    if woke {
        ASKED_AT.store(0, Ordering::Relaxed);
        input_arrived(&mut k.machine);
    }
    if let Some(want) = HOST_INPUT.lock().take_request() {
        let request = encode_request(want);
        match channel {
            Channel::Uart(uart) => uart.write(&request),
            Channel::Virtio(port) => {
                crate::machine::virtio_console::write(*port, &request);
            }
        }
        let now = kiln_hal::time::monotonic_ns().max(1);
        ASKED_AT.store(now, Ordering::Relaxed);
    }
}

/// Records what the host sent in `input`; whether it ended a chunk (so readers wake).
fn take(input: &mut HostInput, i: Input<'_>) -> bool {
    match i {
        Input::Data(d) => {
            input.arrived(d);
            false
        }
        Input::ChunkEnd => {
            input.answered(false);
            true
        }
        Input::End => {
            input.answered(true);
            true
        }
    }
}

/// When the idle loop should look at a virtio channel again: while a request is out,
/// [`poll_step_ns`] from now; `None` otherwise (the UART interrupts).
pub fn deadline() -> Option<u64> {
    if !matches!(CHANNEL.get(), Some(Channel::Virtio(_))) {
        return None;
    }
    let asked = ASKED_AT.load(Ordering::Relaxed);
    if asked == 0 {
        return None;
    }
    let now = kiln_hal::time::monotonic_ns();
    Some(now + poll_step_ns(now.saturating_sub(asked)))
}
