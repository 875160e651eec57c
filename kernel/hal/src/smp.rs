//! More than one CPU: which CPU runs this code, starting the other CPUs (application
//! processors, APs), and the inter-processor interrupts that wake an idle CPU and flush
//! stale user translations from other CPUs' TLBs.
//!
//! Each CPU has its own kernel stack and interrupt stacks; [`current`] tells CPUs apart by
//! the stack they run on (the kernel runs on nothing else), so finding the CPU costs a few
//! comparisons and no register that user code can change (GS holds the program's base in
//! a trap taken in user mode). With one CPU it is a load and a compare.
//!
//! Starting an AP (Intel SDM vol. 3, 8.4.4): INIT, then STARTUP with a vector that makes it
//! run 16-bit real-mode code at `vector << 12`. The trampoline copied there loads a small
//! GDT and jumps to 32-bit code in the kernel image (`kiln_ap_start32` in [`crate::boot`]),
//! which enables long mode on the boot page tables, switches to the kernel's own tables and
//! stack and calls [`ap_entry`].

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub use kiln_abi::MAX_CPUS;

use crate::{apic, gdt, phys_to_virt, time};

/// Vector that wakes an idle CPU (or makes a CPU running the program look at its state).
pub const RESCHEDULE_VECTOR: u8 = 0x21;
/// Vector that asks a CPU to flush its TLB.
pub const SHOOTDOWN_VECTOR: u8 = 0x22;

/// Bytes of one AP's stacks: its kernel stack, then its interrupt stacks.
const AP_BLOCK: u64 = (crate::boot::BOOT_STACK_SIZE + gdt::IST_TOTAL) as u64;

/// Where the trampoline runs (physical, below 1 MiB, page-aligned): STARTUP vector 0x08.
pub(crate) const TRAMPOLINE: u64 = 0x8000;

/// CPUs that run the kernel (the boot CPU, and each AP once it is ready).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// CPUs with stacks: [`current`] looks at this many.
static REGISTERED: AtomicUsize = AtomicUsize::new(1);
/// Each AP's stack block (index 0, the boot CPU, uses the image's own stacks).
static BLOCK_LO: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// A stack a CPU borrowed for one call ([`crate::cpu::on_stack`]): its range, per CPU
/// (`lo == 0`: none), so that [`current`] still knows the CPU there.
static BORROWED_LO: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// See [`BORROWED_LO`].
static BORROWED_HI: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Each CPU's local APIC ID.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// CPUs halted in the idle loop, one bit each.
static IDLE: AtomicU64 = AtomicU64::new(0);

/// How many CPUs run the kernel.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// The index of the CPU running this code (0 is the boot CPU).
#[inline]
pub fn current() -> usize {
    let n = REGISTERED.load(Ordering::Relaxed);
    if n == 1 {
        return 0;
    }
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    let borrowed = (0..n).find(|&i| {
        let lo = BORROWED_LO[i].load(Ordering::Relaxed);
        lo != 0 && rsp >= lo && rsp < BORROWED_HI[i].load(Ordering::Relaxed)
    });
    borrowed.unwrap_or_else(|| cpu_of(rsp, n, |i| BLOCK_LO[i].load(Ordering::Relaxed), AP_BLOCK))
}

/// Runs `f` with `lo..hi` counted as this CPU's stack ([`crate::cpu::on_stack`] switches to
/// it inside `f`).
pub(crate) fn lending(lo: u64, hi: u64, f: impl FnOnce()) {
    let me = current();
    BORROWED_HI[me].store(hi, Ordering::Relaxed);
    BORROWED_LO[me].store(lo, Ordering::Release);
    f();
    BORROWED_LO[me].store(0, Ordering::Release);
}

/// The CPU whose stack block (`lo(i)..lo(i) + block`, for APs 1..n) holds `rsp`; 0 (the
/// boot CPU, whose stacks are in the image) when none does.
fn cpu_of(rsp: u64, n: usize, lo: impl Fn(usize) -> u64, block: u64) -> usize {
    (1..n)
        .find(|&i| {
            let l = lo(i);
            l != 0 && rsp >= l && rsp < l + block
        })
        .unwrap_or(0)
}

/// Marks this CPU idle (it is about to halt) or busy; [`wake_idle`] wakes idle ones.
pub fn set_idle(idle: bool) {
    let bit = 1u64 << current();
    if idle {
        IDLE.fetch_or(bit, Ordering::SeqCst);
    } else {
        IDLE.fetch_and(!bit, Ordering::SeqCst);
    }
}

/// How many CPUs other than this one are idle (halted, or about to halt, with nothing to
/// run).
pub fn idle_count() -> usize {
    (IDLE.load(Ordering::SeqCst) & !(1u64 << current())).count_ones() as usize
}

/// Wakes up to `n` idle CPUs, if any, to look for threads to run. A CPU marks itself idle
/// with interrupts off before it halts; the interrupt stays pending until its `sti; hlt`,
/// so a wake-up sent in between is not lost.
pub fn wake_idle(n: usize) {
    if REGISTERED.load(Ordering::Relaxed) == 1 {
        return;
    }
    let me = current();
    for _ in 0..n {
        let idle = IDLE.load(Ordering::SeqCst) & !(1u64 << me);
        if idle == 0 {
            return;
        }
        let cpu = idle.trailing_zeros() as usize;
        // Clearing its bit here keeps a second wake-up from going to the same CPU.
        IDLE.fetch_and(!(1u64 << cpu), Ordering::SeqCst);
        apic::send_ipi(APIC_IDS[cpu].load(Ordering::Relaxed), RESCHEDULE_VECTOR);
    }
}

/// Asks CPU `cpu` (running the program) to enter the kernel and look at its thread's state
/// (a signal came for it).
pub fn kick(cpu: usize) {
    if cpu != current() && cpu < online() {
        apic::send_ipi(APIC_IDS[cpu].load(Ordering::Relaxed), RESCHEDULE_VECTOR);
    }
}

/// TLB generations: [`shootdown`] raises the global one; each CPU records the one it has
/// flushed up to.
static TLB_GEN: AtomicU64 = AtomicU64::new(0);
static FLUSHED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// How long [`shootdown`] waits for the other CPUs before it calls it a kernel bug.
const SHOOTDOWN_PATIENCE_NS: u64 = 5_000_000_000;

/// Flushes every other CPU's TLB after user mappings were removed or lost rights, and
/// waits until each has. This CPU's own entries are the caller's (it used `invlpg`).
///
/// Every other CPU gets an interrupt; one in user mode or halted takes it at once, and one
/// in the kernel with interrupts off is bound for the kernel lock, whose waiters call
/// [`flush_if_asked`] while they spin. So the caller may hold the kernel lock.
pub fn shootdown() {
    let n = online();
    if n == 1 {
        return;
    }
    let me = current();
    let gen = TLB_GEN.fetch_add(1, Ordering::SeqCst) + 1;
    FLUSHED[me].fetch_max(gen, Ordering::SeqCst);
    apic::broadcast_ipi(SHOOTDOWN_VECTOR);
    let start = time::monotonic_ns();
    for (cpu, flushed) in FLUSHED.iter().enumerate().take(n) {
        while flushed.load(Ordering::SeqCst) < gen {
            if time::monotonic_ns().saturating_sub(start) > SHOOTDOWN_PATIENCE_NS {
                panic!("CPU {cpu} did not flush its TLB within 5 s");
            }
            core::hint::spin_loop();
        }
    }
}

/// Flushes this CPU's TLB if a [`shootdown`] asked for it since its last flush. Called
/// by the shootdown interrupt and while waiting for the kernel lock.
pub fn flush_if_asked() {
    let gen = TLB_GEN.load(Ordering::SeqCst);
    let me = current();
    if FLUSHED[me].load(Ordering::SeqCst) < gen {
        // SAFETY: reloading CR3 with its own value only drops cached (non-global)
        // translations: the user half's.
        unsafe { crate::cpu::set_cr3(crate::cpu::cr3()) };
        FLUSHED[me].fetch_max(gen, Ordering::SeqCst);
    }
}

// SAFETY: the trampoline's symbols are defined by the assembly in `crate::boot`.
unsafe extern "C" {
    static kiln_ap_trampoline: u8;
    static kiln_ap_trampoline_end: u8;
    static mut kiln_ap_cr3: u64;
    static mut kiln_ap_stack: u64;
    static mut kiln_ap_cpu: u64;
}

/// What an AP runs once its tables and interrupts are set up (the kernel's idle loop).
static AP_MAIN: crate::once::SetOnce<fn() -> !> = crate::once::SetOnce::new();
/// Set by an AP when it is ready; the boot CPU waits for it before starting the next.
static AP_READY: AtomicBool = AtomicBool::new(false);

/// Why an AP did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// No memory for its stacks.
    NoMemory,
    /// It did not answer STARTUP within the time allowed.
    NoAnswer,
    /// The trampoline's page is not RAM.
    NoLowMemory,
}

impl StartError {
    /// The reason in words.
    pub fn reason(self) -> &'static str {
        match self {
            StartError::NoMemory => "no memory for its stacks",
            StartError::NoAnswer => "it did not answer STARTUP",
            StartError::NoLowMemory => "the trampoline page at 0x8000 is not RAM",
        }
    }
}

/// Starts the APs with these local APIC IDs (the boot CPU's own is skipped), one at a time,
/// up to [`MAX_CPUS`] CPUs in all; each runs `main` once ready. Returns how many CPUs are
/// online, and the first error, after which no more are started.
///
/// Call once (a second call panics), on the boot CPU, after the kernel's tables are final
/// and before the program starts: an AP takes the kernel lock in `main` only once it
/// exists.
pub fn start_aps(apic_ids: &[u32], main: fn() -> !) -> (usize, Option<StartError>) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    assert!(
        !STARTED.swap(true, Ordering::SeqCst) && !crate::trap::in_handler(),
        "start_aps called twice or from a handler"
    );
    let mine = apic::id();
    APIC_IDS[0].store(mine, Ordering::Relaxed);
    AP_MAIN.set(main);
    let others = apic_ids.iter().copied().filter(|&id| id != mine);
    let mut trampoline_ready = false;
    for id in others {
        let cpu = online();
        if cpu >= MAX_CPUS {
            break;
        }
        if !trampoline_ready {
            if !crate::pvh::is_ram(TRAMPOLINE, crate::PAGE_SIZE) {
                return (cpu, Some(StartError::NoLowMemory));
            }
            copy_trampoline();
            trampoline_ready = true;
        }
        let Some(block) = crate::frames::FRAMES.lock().alloc_contiguous(AP_BLOCK) else {
            return (cpu, Some(StartError::NoMemory));
        };
        let lo = phys_to_virt(block);
        BLOCK_LO[cpu].store(lo, Ordering::Relaxed);
        APIC_IDS[cpu].store(id, Ordering::Relaxed);
        REGISTERED.store(cpu + 1, Ordering::SeqCst);
        AP_READY.store(false, Ordering::SeqCst);
        // SAFETY: the AP reads these three words only after the STARTUP below, and the
        // boot CPU writes them only while no AP is starting.
        unsafe {
            kiln_ap_cr3 = crate::cpu::cr3();
            kiln_ap_stack =
                lo + crate::boot::BOOT_STACK_SIZE as u64 - crate::syscall::RESUME_RESERVE;
            kiln_ap_cpu = cpu as u64;
        }
        apic::send_init(id);
        spin_ns(1_000_000);
        let vector = (TRAMPOLINE >> 12) as u8;
        let mut answered = false;
        for wait in [20_000_000, 200_000_000] {
            apic::send_startup(id, vector);
            if wait_ready(wait) {
                answered = true;
                break;
            }
        }
        if !answered {
            // Park it again, so it cannot wake later on stacks that are given away.
            apic::send_init(id);
            REGISTERED.store(cpu, Ordering::SeqCst);
            BLOCK_LO[cpu].store(0, Ordering::Relaxed);
            return (cpu, Some(StartError::NoAnswer));
        }
        ONLINE.store(cpu + 1, Ordering::SeqCst);
    }
    (online(), None)
}

fn spin_ns(ns: u64) {
    let end = time::monotonic_ns() + ns;
    while time::monotonic_ns() < end {
        core::hint::spin_loop();
    }
}

fn wait_ready(ns: u64) -> bool {
    let end = time::monotonic_ns() + ns;
    while time::monotonic_ns() < end {
        if AP_READY.load(Ordering::SeqCst) {
            return true;
        }
        core::hint::spin_loop();
    }
    AP_READY.load(Ordering::SeqCst)
}

fn copy_trampoline() {
    let start = (&raw const kiln_ap_trampoline) as usize;
    let end = (&raw const kiln_ap_trampoline_end) as usize;
    assert!(end - start <= crate::PAGE_SIZE as usize);
    // SAFETY: the trampoline page is RAM below 1 MiB (checked by the caller) that the
    // frame allocator never hands out and nothing else uses once the boot has read the
    // loader's tables; the source is the image's read-only trampoline code.
    unsafe {
        core::ptr::copy_nonoverlapping(
            start as *const u8,
            phys_to_virt(TRAMPOLINE) as *mut u8,
            end - start,
        )
    }
}

/// The top of AP `cpu`'s kernel stack.
pub(crate) fn kernel_stack_top(cpu: usize) -> u64 {
    BLOCK_LO[cpu].load(Ordering::Relaxed) + crate::boot::BOOT_STACK_SIZE as u64
}

/// First Rust code of an AP, on its kernel stack, with the kernel's page tables.
pub(crate) extern "C" fn ap_entry(cpu: u64) -> ! {
    let cpu = cpu as usize;
    let kernel_stack_top = kernel_stack_top(cpu);
    gdt::init_ap(kernel_stack_top, kernel_stack_top);
    crate::trap::load();
    crate::syscall::init_cpu(cpu, kernel_stack_top);
    apic::init_cpu();
    FLUSHED[cpu].store(TLB_GEN.load(Ordering::SeqCst), Ordering::SeqCst);
    AP_READY.store(true, Ordering::SeqCst);
    // Wait until the boot CPU counts it online (so `online()` covers it in shootdowns)
    // and the kernel exists.
    while online() <= cpu {
        core::hint::spin_loop();
    }
    let main = AP_MAIN.get().expect("AP started without a main function");
    main()
}
