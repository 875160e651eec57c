//! `kiln.profile=HZ`: a sampling profiler. HZ times a second the kernel notes where the CPU
//! is: in the program (a timer interrupt from user mode), in one of its system calls (the
//! sample fell due while the kernel served it, which runs with interrupts off, so it is
//! taken on the way back), or idle. It walks the program's stack there with the program's
//! call-frame information ([`kiln_abi::unwind`]) and counts the stack in a table. The table
//! goes to the host as [`kiln_abi::record::Profile`] records when the program ends (or when
//! it fills), where the toolchain symbolizes it into folded stacks and a flame graph.
//!
//! Counting in the kernel keeps the cost of a sample to a stack walk: the records channel
//! moves a byte per port write, far too slow to carry stacks a thousand times a second.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use kiln_abi::cmdline::Sink;
use kiln_abi::record::{Place, Profile, ProfileStack, Regs, RBP};
use kiln_abi::unwind::{self, Cfi};
use spin::Mutex;

use crate::{console, Kernel};

/// The interval in ns (0: off).
static INTERVAL_NS: AtomicU64 = AtomicU64::new(0);
/// When the next sample is due (monotonic ns).
static NEXT_NS: AtomicU64 = AtomicU64::new(0);

/// Return addresses the table holds before it is sent early (bounds the kernel's memory).
const TABLE_PCS: usize = 16 * 1024;
/// Stacks per record (a record of them is at most about 34 KiB).
const RECORD_STACKS: usize = 64;

/// The samples so far.
struct Table {
    /// The program's call-frame information.
    cfi: Option<Cfi<'static>>,
    /// Distinct stacks, sorted by (place, pcs).
    stacks: Vec<ProfileStack>,
    /// Return addresses held in `stacks`.
    pcs: usize,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// Starts sampling `hz` times a second (not at all when `None`). `program` is the program's
/// ELF file and `bias` where it was loaded. Never fails in this kernel (the kernel built
/// without the profiler refuses a rate, see `profile_off.rs`).
pub fn start(hz: Option<u32>, program: &'static [u8], bias: u64) -> Result<(), &'static str> {
    let Some(hz) = hz.filter(|h| *h > 0) else {
        return Ok(());
    };
    let cfi = Cfi::from_elf(program, bias);
    if cfi.is_none() {
        console::info(format_args!(
            "profiler: the program has no call-frame information; stacks follow frame pointers"
        ));
    }
    *TABLE.lock() = Some(Table {
        cfi,
        stacks: Vec::new(),
        pcs: 0,
    });
    let interval = 1_000_000_000 / u64::from(hz);
    INTERVAL_NS.store(interval, Ordering::Relaxed);
    NEXT_NS.store(kiln_hal::time::monotonic_ns() + interval, Ordering::Relaxed);
    Ok(())
}

/// When the next sample is due, if profiling.
pub fn deadline() -> Option<u64> {
    (INTERVAL_NS.load(Ordering::Relaxed) != 0).then(|| NEXT_NS.load(Ordering::Relaxed))
}

/// Whether a sample is due now.
pub fn due() -> bool {
    deadline().is_some_and(|next| kiln_hal::time::monotonic_ns() >= next)
}

/// Moves the next sample one interval past now: after the sample's own work, so that
/// sampling can never take all of the CPU's time.
fn sampled() {
    let interval = INTERVAL_NS.load(Ordering::Relaxed);
    NEXT_NS.store(kiln_hal::time::monotonic_ns() + interval, Ordering::Relaxed);
}

/// Takes a sample of the program at `place`, with its registers `rip`, `rsp`, `rbp`
/// (the thread's user state). Call only when [`due`].
pub fn sample(k: &mut Kernel, place: Place, rip: u64, rsp: u64, rbp: u64) {
    let Some(mut guard) = TABLE.try_lock() else {
        return;
    };
    let Some(table) = guard.as_mut() else { return };
    let mut gpr = [0; 15];
    gpr[RBP] = rbp;
    let regs = Regs {
        rip,
        rsp,
        rflags: 0,
        gpr,
    };
    let vm = &mut k.process.vm;
    let pcs = unwind::walk(table.cfi.as_ref(), &regs, Profile::MAX_PCS, |addr| {
        let mut word = [0u8; 8];
        vm.copy_from_user(&mut crate::machine::HalPages, addr, &mut word)
            .ok()?;
        Some(u64::from_le_bytes(word))
    });
    count(table, place, pcs);
    drop(guard);
    sampled();
}

/// Takes a sample of the idle kernel (no program stack).
pub fn sample_idle() {
    if let Some(mut guard) = TABLE.try_lock() {
        if let Some(table) = guard.as_mut() {
            count(table, Place::Idle, Vec::new());
        }
    }
    sampled();
}

/// Counts one sample of `pcs` at `place`, sending the table first when it is full. A
/// sample the kernel has no memory for is dropped.
fn count(table: &mut Table, place: Place, pcs: Vec<u64>) {
    let at = table
        .stacks
        .binary_search_by(|s| (s.place, s.pcs.as_slice()).cmp(&(place, pcs.as_slice())));
    let i = match at {
        Ok(i) => {
            table.stacks[i].count = table.stacks[i].count.saturating_add(1);
            return;
        }
        Err(i) => i,
    };
    if table.pcs + pcs.len() > TABLE_PCS || table.stacks.try_reserve(1).is_err() {
        send(table);
        // The table is empty now: the stack goes first.
        if table.stacks.try_reserve(1).is_err() {
            return;
        }
        table.pcs = pcs.len();
        table.stacks.push(ProfileStack {
            count: 1,
            place,
            pcs,
        });
        return;
    }
    table.pcs += pcs.len();
    table.stacks.insert(
        i,
        ProfileStack {
            count: 1,
            place,
            pcs,
        },
    );
}

/// Sends the table's stacks to the host and empties it.
fn send(table: &mut Table) {
    let sink = console::routes().records;
    if sink != Sink::Off {
        let interval = INTERVAL_NS.load(Ordering::Relaxed);
        for chunk in table.stacks.chunks(RECORD_STACKS) {
            console::write(sink, &Profile::encode_stacks(interval, chunk));
        }
    }
    table.stacks.clear();
    table.pcs = 0;
}

/// `execve` replaced the program with `program`, loaded at `bias`: the samples so far go
/// to the host (after them comes the `Exec` record the host switches programs at), and the
/// new program's call-frame information unwinds from here on.
pub fn exec(program: &'static [u8], bias: u64) {
    if INTERVAL_NS.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(table) = TABLE.lock().as_mut() {
        send(table);
        table.cfi = Cfi::from_elf(program, bias);
    }
}

/// Sends what the profiler counted (call once, as the program ends).
pub fn finish() {
    if INTERVAL_NS.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(mut guard) = TABLE.try_lock() {
        if let Some(table) = guard.as_mut() {
            send(table);
        }
    }
    INTERVAL_NS.store(0, Ordering::Relaxed);
}
