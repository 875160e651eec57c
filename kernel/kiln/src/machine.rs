//! The real machine behind the Linux personality's [`Machine`] and [`PageTable`] traits.

use kiln_hal::context::UserContext;
use kiln_hal::paging::{self, BorrowError, UserRights};
use kiln_os::errno::{Errno, KResult};
use kiln_os::machine::{Machine, PageTable, Prot};
use kiln_os::process::{Channel, ThreadState};
use kiln_os::sched::Scheduler;

use crate::console;

pub mod acpi;
pub mod mmio;
#[cfg(feature = "net")]
pub mod net;
#[cfg(not(feature = "net"))]
#[path = "machine/no_net.rs"]
pub mod net;
pub mod virtio_console;
#[cfg(feature = "volumes")]
pub mod volumes;
#[cfg(not(feature = "volumes"))]
#[path = "machine/volumes_off.rs"]
pub mod volumes;

/// The user page tables of the one address space.
pub struct HalPages;

fn rights(p: Prot) -> UserRights {
    UserRights {
        read: p.read,
        write: p.write,
        exec: p.exec,
    }
}

impl PageTable for HalPages {
    fn map_zeroed(&mut self, page: u64, prot: Prot) -> KResult<()> {
        if paging::map_user_zeroed(page, rights(prot)) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }
    fn map_borrowed(&mut self, page: u64, bytes: &'static [u8], prot: Prot) -> KResult<bool> {
        match paging::map_user_borrowed(page, bytes, rights(prot)) {
            Ok(()) => Ok(true),
            Err(BorrowError::NotShareable) => Ok(false),
            Err(BorrowError::OutOfMemory) => Err(Errno::ENOMEM),
        }
    }
    fn query(&self, addr: u64) -> Option<Prot> {
        paging::query_user(addr).map(|r| Prot {
            read: r.read,
            write: r.write,
            exec: r.exec,
        })
    }
    fn unmap_range(&mut self, start: u64, end: u64) {
        paging::unmap_user_range(start, end)
    }
    fn protect_range(&mut self, start: u64, end: u64, prot: Prot) -> KResult<()> {
        if paging::protect_user_range(start, end, rights(prot)) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }
    fn move_range(&mut self, from: u64, to: u64, len: u64) -> KResult<()> {
        if paging::move_user_range(from, to, len) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }
    fn memory_low(&self) -> bool {
        kiln_hal::frames::memory_low()
    }
    fn read(&self, addr: u64, buf: &mut [u8]) {
        paging::read_user(addr, buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        paging::write_user(addr, data)
    }
    fn read_if_readable(&self, addr: u64, buf: &mut [u8]) -> bool {
        paging::read_user_if_readable(addr, buf)
    }
    fn write_if_writable(&mut self, addr: u64, data: &[u8]) -> bool {
        paging::write_user_if_writable(addr, data)
    }
}

/// Most threads a program may have.
pub const MAX_THREADS: usize = 4096;

/// Clocks, consoles, entropy and threads of the real machine.
pub struct HalMachine {
    pages: HalPages,
    /// The threads and what they wait for.
    pub sched: Scheduler<UserContext>,
    /// The registers of the thread making the current system call, when it may spawn a
    /// thread (`clone`): the child starts from them.
    pub caller: Option<UserContext>,
    /// The network card, once set up and when there is one (see [`net`]).
    pub net: Option<net::NetCard>,
    /// Where the card may be, until the program first uses the network ([`net::open`]).
    pub net_candidates: Option<net::Candidates>,
    /// Whether the CPUs beyond the boot CPU take threads (`kiln_os::lock_pressure`, fed by
    /// [`crate::lock`]'s counts).
    pub pressure: kiln_os::lock_pressure::LockPressure,
}

impl HalMachine {
    /// The machine, running `main`.
    pub fn new(main: ThreadState) -> HalMachine {
        let mut sched = Scheduler::new(main, UserContext::default());
        sched.set_cpus(kiln_hal::smp::MAX_CPUS);
        HalMachine {
            pages: HalPages,
            sched,
            caller: None,
            net: None,
            net_candidates: None,
            pressure: Default::default(),
        }
    }

    /// The running thread's id.
    pub fn current_tid(&self) -> u32 {
        self.sched.current().expect("no thread is running")
    }
}

/// Random bytes from RDRAND, or (without it) from a SplitMix64 stream seeded by the TSC.
pub fn fill_random(buf: &mut [u8]) {
    static FALLBACK: spin::Mutex<u64> = spin::Mutex::new(0);
    for chunk in buf.chunks_mut(8) {
        let v = match kiln_hal::cpu::rdrand() {
            Some(v) => v,
            None => {
                let mut s = FALLBACK.lock();
                *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15 ^ kiln_hal::cpu::rdtsc());
                let mut z = *s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            }
        };
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
}

impl Machine for HalMachine {
    fn net_counters(&self) -> ((u64, u64), (u64, u64)) {
        net::counters()
    }
    fn idle_ns(&self) -> u64 {
        crate::control::IDLE_NS.load(core::sync::atomic::Ordering::Relaxed)
    }
    fn cpu_time(&self, tid: Option<u32>) -> Option<kiln_os::sched::CpuTime> {
        let now = kiln_hal::time::ticks();
        let t = match tid {
            None => Some(self.sched.process_cpu_time(now)),
            Some(tid) => self.sched.cpu_time(tid, now),
        };
        t.map(|t| t.map(kiln_hal::time::ticks_to_ns))
    }
    fn ram(&self) -> (u64, u64) {
        let total = kiln_hal::frames::total_bytes();
        (total, total.saturating_sub(kiln_hal::frames::used_bytes()))
    }
    fn pages(&mut self) -> &mut dyn PageTable {
        &mut self.pages
    }
    fn monotonic_ns(&self) -> u64 {
        kiln_hal::time::monotonic_ns()
    }
    fn realtime_ns(&self) -> u64 {
        kiln_hal::time::realtime_ns()
    }
    fn sleep_until(&mut self, deadline: u64) {
        kiln_hal::time::sleep_until(deadline)
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        fill_random(buf)
    }
    fn write_stdout(&mut self, data: &[u8]) {
        console::write(console::routes().stdout, data)
    }
    fn write_stderr(&mut self, data: &[u8]) {
        console::write(console::routes().stderr, data)
    }
    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        console::warn(line)
    }
    fn thread(&mut self) -> &mut ThreadState {
        let tid = self.current_tid();
        self.sched.state(tid).expect("running thread exists")
    }
    fn thread_count(&self) -> usize {
        self.sched.len()
    }
    fn running(&self) -> Option<u32> {
        self.sched.current()
    }
    fn cpus(&self) -> usize {
        kiln_hal::smp::online()
    }
    fn cpu(&self) -> usize {
        kiln_hal::smp::current()
    }
    fn tids(&self) -> alloc::vec::Vec<u32> {
        self.sched.tids().collect()
    }
    fn thread_of(&mut self, tid: u32) -> Option<&mut ThreadState> {
        self.sched.state(tid)
    }
    fn interrupt(&mut self, tid: u32) {
        if !self.sched.interrupt(tid) {
            // Running on another CPU: it looks at its signals when it enters the kernel,
            // which this makes it do now.
            if let Some(cpu) = self.sched.cpu_of(tid) {
                kiln_hal::smp::kick(cpu);
            }
        }
    }
    fn spawn_thread(&mut self, state: ThreadState, stack: u64) -> KResult<()> {
        // A thread's registers and scheduler entry are kernel memory the program asks for:
        // out of memory is EAGAIN, as Linux's clone says.
        if self.sched.len() >= MAX_THREADS || self.pages.memory_low() {
            return Err(Errno::EAGAIN);
        }
        let mut ctx = self
            .caller
            .clone()
            .expect("clone without the caller's registers");
        ctx.regs.rax = 0;
        if stack != 0 {
            ctx.regs.rsp = stack;
        }
        self.sched.spawn(state, ctx);
        Ok(())
    }
    fn wake(&mut self, channel: Channel, max: usize) -> usize {
        self.sched.wake(channel, max)
    }
    fn requeue(&mut self, from: Channel, to: Channel, wake: usize, requeue: usize) -> usize {
        self.sched.requeue(from, to, wake, requeue)
    }
    fn restart_deadline(&self) -> Option<u64> {
        self.sched
            .current()
            .and_then(|t| self.sched.restart_deadline(t))
    }
    fn end_other_threads(&mut self) -> bool {
        let busy = self.sched.end_others();
        if !busy.is_empty() {
            // They end at their next kernel entry, which this makes them do now.
            for cpu in busy {
                kiln_hal::smp::kick(cpu);
            }
            return false;
        }
        self.sched.renumber_current(kiln_os::process::PID as u32);
        true
    }
    fn program_replaced(&mut self, program: &'static [u8], load_bias: u64) {
        crate::crash::set_load_bias(load_bias);
        crate::profile::exec(program, load_bias);
    }
    fn hwcap(&self) -> u64 {
        u64::from(kiln_hal::cpu::cpuid(1, 0).edx)
    }
    fn clock_page(&self) -> Option<kiln_abi::vdso::ClockPage> {
        Some(kiln_hal::time::clock_page())
    }
    fn random_is_seeded(&self) -> bool {
        kiln_hal::cpu::rdrand().is_some()
    }
    fn with_stack(&mut self, bytes: usize, f: &mut dyn FnMut()) {
        let mut stack = alloc::vec![0u8; bytes];
        kiln_hal::cpu::on_stack(&mut stack, f);
    }
    fn net_device(&mut self) -> Option<&mut dyn kiln_os::net::NetDevice> {
        if let Some(c) = self.net_candidates.take() {
            self.net = net::open(c);
        }
        self.net
            .as_mut()
            .map(|n| n as &mut dyn kiln_os::net::NetDevice)
    }
    fn record(&mut self, bytes: &[u8]) {
        let sink = crate::console::routes().records;
        if sink != kiln_abi::cmdline::Sink::Off {
            crate::console::write(sink, bytes);
        }
    }
}
