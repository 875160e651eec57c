//! Where the program's output and the kernel's messages go (chosen on the command line).

use core::fmt::{self, Write};

use kiln_abi::cmdline::Sink;
use kiln_hal::cpu::DebugPort;
use kiln_hal::serial;

/// Routing of the three streams.
#[derive(Debug, Clone, Copy)]
pub struct Routes {
    /// The program's standard output.
    pub stdout: Sink,
    /// The program's standard error.
    pub stderr: Sink,
    /// The kernel log.
    pub log: Sink,
    /// Receives the final exit status as one byte.
    pub status: Sink,
    /// Binary records for the host (crash state).
    pub records: Sink,
    /// Log at info level too.
    pub verbose: bool,
}

static ROUTES: spin::Mutex<Routes> = spin::Mutex::new(Routes {
    stdout: Sink::Serial,
    stderr: Sink::Serial,
    log: Sink::Serial,
    status: Sink::Off,
    records: Sink::Off,
    verbose: false,
});

/// Sets the routing.
pub fn set_routes(r: Routes) {
    *ROUTES.lock() = r;
}

/// The current routing, unless the lock is held (a panic while writing).
pub fn try_routes() -> Option<Routes> {
    ROUTES.try_lock().map(|r| *r)
}

impl Routes {
    /// Everything on the serial console.
    pub fn fallback() -> Routes {
        Routes {
            stdout: Sink::Serial,
            stderr: Sink::Serial,
            log: Sink::Serial,
            status: Sink::Off,
            records: Sink::Off,
            verbose: false,
        }
    }
}

/// The current routing.
pub fn routes() -> Routes {
    *ROUTES.lock()
}

/// Writes bytes to a sink. A port that is not a debug port ([`DebugPort::ALLOWED`]) is
/// refused by the hardware layer; its bytes go to the serial console instead.
pub fn write(sink: Sink, data: &[u8]) {
    match sink {
        Sink::Serial => serial::write(data),
        Sink::Port(port) => match DebugPort::new(port) {
            Some(p) => p.write(data),
            None => serial::write(data),
        },
        Sink::Virtio(port) => {
            if !crate::machine::virtio_console::write(port, data) {
                serial::write(data);
            }
        }
        Sink::Off => {}
    }
}

struct SinkWriter(Sink);

impl Write for SinkWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write(self.0, s.as_bytes());
        Ok(())
    }
}

/// Writes `kiln: <message>` and a newline to a sink, without allocating.
pub fn line(sink: Sink, args: fmt::Arguments<'_>) {
    let mut w = SinkWriter(sink);
    let _ = w.write_str("kiln: ");
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
}

/// Logs a warning (always shown in the kernel log).
pub fn warn(args: fmt::Arguments<'_>) {
    line(routes().log, args);
}

/// Logs at info level (shown with `kiln.verbose`).
pub fn info(args: fmt::Arguments<'_>) {
    let r = routes();
    if r.verbose {
        line(r.log, args);
    }
}

/// Ends the VM with `status`, reporting it on the status port first when there is one.
pub fn exit(status: u8) -> ! {
    let sink = match ROUTES.try_lock() {
        Some(r) => r.status,
        None => Sink::Off,
    };
    if let Some(port) = match sink {
        Sink::Port(port) => DebugPort::new(port),
        _ => None,
    } {
        port.write_byte(status);
    }
    kiln_hal::exit::exit(status)
}

/// Nanoseconds shown as milliseconds with one decimal (`12.3`), without floating point
/// (its formatting code would add about 10 KB to the kernel).
pub struct Ms(pub u64);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 1_000_000, self.0 / 100_000 % 10)
    }
}

/// Milliseconds since boot, for the log.
pub fn since_boot() -> Ms {
    Ms(kiln_hal::time::since_boot_ns())
}
