//! The standard-input channel (`kiln.stdin=PORT`, see `kiln_abi::stdin`): a UART that
//! carries the host's standard input when the program asks for it. The program-facing
//! side (what arrived, who waits) is `kiln_os::fd::console::HostInput`.

use kiln_abi::stdin::{encode_request, Decoder, Input};
use kiln_hal::once::SetOnce;
use kiln_hal::uart::Uart;
use kiln_os::fd::console::{input_arrived, HOST_INPUT};
use spin::Mutex;

use crate::{console, Kernel};

static UART: SetOnce<Uart> = SetOnce::new();
/// Where the host's byte stream is between chunks.
static DECODER: Mutex<Decoder> = Mutex::new(Decoder::new());

/// Opens the standard-input UART at `port`, if the command line names one.
pub fn start(port: Option<u16>) {
    let Some(port) = port else { return };
    match Uart::open(port) {
        Some(u) => {
            UART.set(u);
            HOST_INPUT.lock().connect();
        }
        None => console::warn(format_args!(
            "stdin: no UART at {port:#x}; the program's standard input is empty"
        )),
    }
}

/// Takes what the host sent and asks it for more when a reader waits (cheap when neither).
pub fn service(k: &mut Kernel) {
    let Some(uart) = UART.get() else { return };
    let mut woke = false;
    if uart.take_pending() {
        let mut input = HOST_INPUT.lock();
        let mut decoder = DECODER.lock();
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
            decoder.feed(&chunk[..n], |i| match i {
                Input::Data(d) => input.arrived(d),
                Input::ChunkEnd => {
                    input.answered(false);
                    woke = true;
                }
                Input::End => {
                    input.answered(true);
                    woke = true;
                }
            });
        }
    }
    if woke {
        input_arrived(&mut k.machine);
    }
    if let Some(want) = HOST_INPUT.lock().take_request() {
        uart.write(&encode_request(want));
    }
}
