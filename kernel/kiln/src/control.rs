//! The control channel (`kiln.control=PORT`, see `kiln_abi::control`): a UART the host's
//! `stats` writes requests to while the image runs. The kernel answers from its own
//! bookkeeping, so a running image can be looked at without changing it. Also the counters
//! the answer carries.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use kiln_abi::control::{FileStat, Stats, ThreadStat, REQUEST_STATS};
use kiln_hal::once::SetOnce;
use kiln_hal::uart::Uart;
use spin::Mutex;

use crate::{console, Kernel};

/// System calls served.
pub static SYSCALLS: AtomicU64 = AtomicU64::new(0);
/// Page faults handled for the program.
pub static PAGE_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Time the CPU spent halted, waiting for an interrupt.
pub static IDLE_NS: AtomicU64 = AtomicU64::new(0);

static UART: SetOnce<Uart> = SetOnce::new();
/// A request line being received.
static LINE: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Longest request line kept.
const MAX_LINE: usize = 256;

/// Opens the control UART at `port`, if the command line names one.
pub fn start(port: Option<u16>) {
    let Some(port) = port else { return };
    match Uart::open(port) {
        Some(u) => {
            UART.set(u);
        }
        None => console::warn(format_args!(
            "control: no UART at {port:#x}; `stats` cannot reach this image"
        )),
    }
}

/// Answers the requests that arrived (cheap when none did).
pub fn service(k: &mut Kernel) {
    let Some(uart) = UART.get() else { return };
    if !uart.take_pending() {
        return;
    }
    let mut requests = 0;
    {
        let mut line = LINE.lock();
        while let Some(b) = uart.read_byte() {
            if line.len() < MAX_LINE {
                line.push(b);
            }
            if b == b'\n' {
                if line.as_slice() == REQUEST_STATS {
                    requests += 1;
                }
                line.clear();
            }
        }
    }
    for _ in 0..requests {
        uart.write(&snapshot(k).encode());
    }
}

/// The kernel's figures now.
fn snapshot(k: &mut Kernel) -> Stats {
    let uptime_ns = kiln_hal::time::since_boot_ns();
    let now = kiln_hal::time::ticks();
    let ns = kiln_hal::time::ticks_to_ns;
    let sched = &k.machine.sched;
    let threads = sched
        .tids()
        .map(|tid| {
            let cpu = sched.cpu_time(tid, now).unwrap_or_default();
            ThreadStat {
                tid,
                state: String::from(sched.activity(tid).unwrap_or("?")),
                user_ns: ns(cpu.user),
                system_ns: ns(cpu.system),
            }
        })
        .collect();
    let cpu_time = sched.process_cpu_time(now);
    let files = k
        .process
        .files
        .open()
        .map(|(fd, f)| FileStat {
            fd: fd as u32,
            what: kiln_os::fd::FdTable::describe(f),
        })
        .collect();
    let (rx, tx) = crate::machine::net::counters();
    Stats {
        uptime_ns,
        busy_ns: uptime_ns.saturating_sub(IDLE_NS.load(Ordering::Relaxed)),
        syscalls: SYSCALLS.load(Ordering::Relaxed),
        page_faults: PAGE_FAULTS.load(Ordering::Relaxed),
        mem_total: kiln_hal::frames::total_bytes(),
        mem_used: kiln_hal::frames::used_bytes(),
        heap: kiln_hal::heap::in_use_bytes() as u64,
        page_tables: kiln_hal::paging::table_bytes(),
        net_buffers: k.process.net.buffer_bytes() as u64,
        rx,
        tx,
        threads,
        files,
        cpus: kiln_abi::control::CpuStat {
            online: kiln_hal::smp::online() as u64,
            lock_taken: crate::LOCK_TAKEN.load(Ordering::Relaxed),
            lock_waited: crate::LOCK_WAITED.load(Ordering::Relaxed),
            held_back: k.machine.pressure.holds(),
        },
        user_ns: ns(cpu_time.user),
        system_ns: ns(cpu_time.system),
    }
}
