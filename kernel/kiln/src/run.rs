//! Running threads: system calls, blocking and wake-ups, preemption, idling.
//!
//! A system call runs on the CPU's one kernel stack. When it blocks (or the thread exits),
//! its registers are saved in the scheduler and the stub returns into whichever thread runs
//! next: its registers replace the frame. A blocked call that is woken runs again from the
//! start (see `kiln_os::sched`). The timer interrupt preempts a thread that has run for a
//! time slice while another is ready, and wakes sleepers at their deadlines.

use kiln_abi::record::Place;
use kiln_hal::context::{FxArea, UserContext};
use kiln_hal::syscall::SyscallFrame;
use kiln_hal::trap::TrapFrame;
use kiln_hal::{syscall as entry, time};
use kiln_os::process::Outcome;
use kiln_os::sched::Resume;
use kiln_os::sysno;

use crate::{console, fault, signals, Held, Kernel};

/// How long a thread runs before another ready thread gets the CPU.
const SLICE_NS: u64 = 10_000_000;

/// How the program's registers reach the kernel: which GS base register holds the user's.
#[derive(Clone, Copy)]
enum Via {
    Syscall,
    Trap,
}

fn args(r: &kiln_hal::context::UserRegs) -> [u64; 6] {
    r.syscall_args()
}

fn bases(k: &mut Kernel, tid: u32) -> (u64, u64) {
    k.machine
        .sched
        .state(tid)
        .map(|s| (s.fs_base, s.gs_base))
        .unwrap_or((0, 0))
}

fn apply_bases(k: &mut Kernel, tid: u32, via: Via) {
    let (fs, gs) = bases(k, tid);
    entry::set_user_fs_base(fs);
    match via {
        Via::Syscall => entry::set_user_gs_base_from_kernel(gs),
        Via::Trap => entry::set_user_gs_base_from_trap(gs),
    }
}

/// Fires the timers due at `now`: timerfds, and `ITIMER_REAL`, whose expiry sends the
/// process `SIGALRM` (which ends it, as on Linux, unless it handles or ignores it).
/// POSIX timers' signals go where their `sigevent` said.
fn fire_timers(k: &mut Kernel, now: u64) {
    use kiln_os::syscall::signal::{Fate, SIGALRM};
    let mut signals = alloc::vec::Vec::new();
    let alarm = k.process.timers.fire(&mut k.machine, now, &mut signals);
    let signals = signals.into_iter().map(|s| (s.tid, s.info));
    let alarm = alarm.then(|| (None, kiln_os::syscall::signal::send::user_info(SIGALRM)));
    for (tid, info) in alarm.into_iter().chain(signals) {
        let fate = match tid {
            None => Some(k.process.signals.send_info(&mut k.machine, info)),
            // A thread that ended takes no more signals.
            Some(tid) => k.process.signals.send_thread(&mut k.machine, tid, info),
        };
        if let Some(Fate::Killed(sig)) = fate {
            fault::report_signal(sig);
            crate::end(k, kiln_abi::exit::killed_by(sig));
        }
    }
}

/// Makes sure the timer fires for the next preemption or deadline, whichever comes first.
fn arm_timer(k: &mut Kernel) {
    // A deadline already past fires at once (`fire_by`).
    let mut next = k
        .machine
        .sched
        .has_ready()
        .then(|| k.machine.sched.slice_end(SLICE_NS));
    for d in [
        k.machine.sched.next_deadline(),
        k.process.timers.next_deadline(),
        crate::machine::net::deadline(k),
        crate::memlog::deadline(),
        crate::profile::deadline(),
    ]
    .into_iter()
    .flatten()
    {
        next = Some(next.map_or(d, |n| n.min(d)));
    }
    // With nothing due the timer may stay armed: an early interrupt only re-arms.
    if let Some(t) = next {
        time::fire_by(t);
    }
}

/// Handles one system call of the running thread; takes the profiler's sample on the way
/// back when one fell due while the kernel served it (interrupts are off meanwhile).
pub fn on_syscall(frame: &mut SyscallFrame, fx: &mut FxArea) {
    let (nr, rip, rsp, rbp) = (frame.rax, frame.rip, frame.rsp, frame.rbp);
    crate::control::SYSCALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    serve_syscall(frame, fx);
    if crate::profile::due() {
        if let Some(k) = crate::lock().get() {
            let place = Place::Syscall(nr as u32);
            crate::profile::sample(k, place, rip, rsp, rbp);
        }
    }
}

/// Serves one system call with the kernel lock held, charging the calling thread's user
/// time before it and the system time of whichever thread returns to user mode after it
/// (see [`kiln_os::sched::Scheduler::charge`]).
fn serve_syscall(frame: &mut SyscallFrame, fx: &mut FxArea) {
    let mut held = crate::lock();
    let k = held.get().expect("system call before the kernel was ready");
    k.machine.sched.charge(time::ticks(), true);
    serve(&mut held, frame, fx);
    if let Some(k) = held.get() {
        k.machine.sched.charge(time::ticks(), false);
    }
}

fn serve(held: &mut Held, frame: &mut SyscallFrame, fx: &mut FxArea) {
    let k = held.k();
    let tid = k.machine.current_tid();
    if end_if_doomed(k, tid) {
        return switch_from_syscall(held, frame, fx);
    }
    let nr = frame.rax;
    if nr == sysno::RT_SIGRETURN {
        let mut ctx = signals::sigreturn(k, frame.rsp);
        signals::deliver(k, &mut ctx);
        ctx.to_syscall(frame, fx);
        arm_timer(k);
        return;
    }
    if nr == sysno::CLONE || nr == sysno::CLONE3 {
        k.machine.caller = Some(UserContext::from_syscall(frame, fx));
    }
    let before = bases(k, tid);
    let a = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    k.process.net.set_busy(k.machine.sched.has_ready());
    let outcome = kiln_os::syscall::dispatch(&mut k.process, &mut k.machine, nr, a);
    k.machine.caller = None;
    if let Outcome::Return(v) = outcome {
        if signals::pending(k) {
            let mut ctx = UserContext::from_syscall(frame, fx);
            ctx.regs.rax = v as u64;
            signals::deliver(k, &mut ctx);
            ctx.to_syscall(frame, fx);
            arm_timer(k);
            return;
        }
        // The common case: the same thread goes on.
        frame.rax = v as u64;
        let after = bases(k, tid);
        if after.0 != before.0 {
            entry::set_user_fs_base(after.0);
        }
        if after.1 != before.1 {
            entry::set_user_gs_base_from_kernel(after.1);
        }
        arm_timer(k);
        return;
    }
    let exec = matches!(outcome, Outcome::Exec(_));
    // The thread may stop running here (it waits or ends): its time so far is charged now.
    k.machine.sched.charge(time::ticks(), false);
    let ctx = UserContext::from_syscall(frame, fx);
    if let Some(mut ctx) = settle(k, tid, ctx, outcome) {
        signals::deliver(k, &mut ctx);
        ctx.to_syscall(frame, fx);
        if exec {
            apply_bases(k, k.machine.current_tid(), Via::Syscall);
            arm_timer(k);
        }
        return;
    }
    switch_from_syscall(held, frame, fx);
}

/// The system call's thread does not go on (it waits or ended): the next thread to run
/// takes the frame.
fn switch_from_syscall(held: &mut Held, frame: &mut SyscallFrame, fx: &mut FxArea) {
    let (next, mut ctx) = next_thread(held);
    let k = held.k();
    signals::deliver(k, &mut ctx);
    ctx.to_syscall(frame, fx);
    apply_bases(k, next, Via::Syscall);
    arm_timer(k);
}

/// The interrupted thread does not go on (preempted, or ended): the next thread to run
/// takes the frame (which may be `from` itself again).
fn switch_from_trap(held: &mut Held, from: Option<u32>, frame: &mut TrapFrame, fx: &mut FxArea) {
    let (next, mut ctx) = next_thread(held);
    let k = held.k();
    signals::deliver(k, &mut ctx);
    ctx.to_trap(frame, fx);
    if Some(next) != from {
        apply_bases(k, next, Via::Trap);
    }
}

/// An AP's start once the kernel exists: it waits for a thread to run and enters user
/// mode with it. From then on it enters the kernel as the boot CPU does, through system
/// calls and interrupts.
pub fn ap_main() -> ! {
    let mut held = crate::lock();
    let (tid, mut ctx) = next_thread(&mut held);
    let k = held.k();
    signals::deliver(k, &mut ctx);
    // In the kernel, outside a trap: KERNEL_GS_BASE holds the program's GS base.
    apply_bases(k, tid, Via::Syscall);
    arm_timer(k);
    drop(held);
    kiln_hal::syscall::resume_user(&ctx)
}

/// Records the outcome of a system call of thread `tid` (registers `ctx`, with `rax` still
/// the call's number). Returns the registers to resume when the thread goes on.
fn settle(k: &mut Kernel, tid: u32, mut ctx: UserContext, outcome: Outcome) -> Option<UserContext> {
    match outcome {
        Outcome::Return(v) => {
            ctx.regs.rax = v as u64;
            Some(ctx)
        }
        Outcome::Exit(status) => crate::end(k, status),
        Outcome::Killed(sig) => {
            fault::report_signal(sig);
            // SI_TKILL: what raise() and abort() use.
            crate::crash::report(k, tid, &ctx, sig, -6, None);
            crate::end(k, kiln_abi::exit::killed_by(sig))
        }
        Outcome::Block(wait) => {
            if signals::has_queued(k, tid) {
                // A handler is already due: the call is interrupted before it waits.
                signals::interrupted(k, tid, &mut ctx, wait.deadline);
                return Some(ctx);
            }
            if let Some(saved) = k.machine.sched.ctx(tid) {
                *saved = ctx;
            }
            k.machine.sched.block_current(wait);
            None
        }
        Outcome::ThreadExit(status) => {
            if k.machine.sched.exit_current() == 0 {
                crate::end(k, status);
            }
            None
        }
        Outcome::Exec(start) => {
            // A new program: the registers Linux starts one with (all zero but the
            // instruction and stack pointers, interrupts on, the default SSE state).
            let mut ctx = UserContext::default();
            ctx.regs.rip = start.entry;
            ctx.regs.rsp = start.stack_pointer;
            ctx.regs.rflags = 0x202;
            Some(ctx)
        }
    }
}

/// Ends thread `tid` when an `execve` in another thread ended every other thread while it
/// ran here (`Scheduler::end_others`); wakes that `execve`. Whether it ended.
fn end_if_doomed(k: &mut Kernel, tid: u32) -> bool {
    if !k.machine.sched.is_doomed(tid) {
        return false;
    }
    k.machine.sched.exit_current();
    k.machine
        .sched
        .wake(kiln_os::process::EXEC_CHANNEL, usize::MAX);
    true
}

/// Picks the thread to run next: runs woken system calls again, finishes timed-out ones,
/// and idles the CPU until some thread can run.
fn next_thread(held: &mut Held) -> (u32, UserContext) {
    loop {
        let k = held.k();
        crate::machine::net::flush_writes(k);
        crate::machine::net::service(k);
        crate::memlog::service(k);
        crate::stop::check(k);
        crate::control::service(k);
        crate::stdin::service(k);
        let now = time::monotonic_ns();
        fire_timers(k, now);
        k.machine.sched.expire(now);
        if held_back(k, now) {
            // The lock is what limits the program: this CPU takes no new thread for a
            // while (not marked idle, so no one wakes it for ready threads).
            time::fire_by(k.machine.pressure.held_back_until());
            let halted = time::monotonic_ns();
            held.unlocked(kiln_hal::cpu::wait_for_interrupt);
            let idle = time::monotonic_ns().saturating_sub(halted);
            crate::control::IDLE_NS.fetch_add(idle, core::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let Some((tid, mut how)) = k.machine.sched.pick(now, time::ticks()) else {
            idle(held);
            continue;
        };
        if how == Resume::Restart && signals::has_queued(k, tid) {
            // Woken, and a handler is due too: the handler comes first.
            how = Resume::Interrupted;
        }
        if how == Resume::Interrupted {
            let deadline = k.machine.sched.restart_deadline(tid);
            k.machine.sched.clear_restart(tid);
            let mut ctx = k
                .machine
                .sched
                .ctx(tid)
                .expect("picked thread exists")
                .clone();
            signals::interrupted(k, tid, &mut ctx, deadline);
            return (tid, ctx);
        }
        let ctx = k.machine.sched.ctx(tid).expect("picked thread exists");
        match how {
            Resume::Interrupted => unreachable!("handled above"),
            Resume::Continue => return (tid, ctx.clone()),
            Resume::Return(v) => {
                ctx.regs.rax = v as u64;
                return (tid, ctx.clone());
            }
            Resume::Restart => {
                let ctx = ctx.clone();
                let nr = ctx.regs.rax;
                if nr == sysno::CLONE || nr == sysno::CLONE3 {
                    k.machine.caller = Some(ctx.clone());
                }
                k.process.net.set_busy(k.machine.sched.has_ready());
                let outcome =
                    kiln_os::syscall::dispatch(&mut k.process, &mut k.machine, nr, args(&ctx.regs));
                k.machine.caller = None;
                k.machine.sched.clear_restart(tid);
                if let Some(ctx) = settle(k, tid, ctx, outcome) {
                    // `execve` makes its caller the main thread: its id may have changed.
                    let tid = k.machine.current_tid();
                    if let Some(saved) = k.machine.sched.ctx(tid) {
                        *saved = ctx.clone();
                    }
                    return (tid, ctx);
                }
            }
        }
    }
}

/// Whether this CPU, one beyond the boot CPU, running no thread and outside an interrupt
/// handler, is held back from taking one because the kernel lock is contended
/// (`kiln_os::lock_pressure`). The boot CPU keeps the measurement up to date.
fn held_back(k: &mut Kernel, now: u64) -> bool {
    if kiln_hal::smp::online() == 1 {
        return false;
    }
    if kiln_hal::smp::current() == 0 {
        let taken = crate::LOCK_TAKEN.load(core::sync::atomic::Ordering::Relaxed);
        let waited = crate::LOCK_WAITED.load(core::sync::atomic::Ordering::Relaxed);
        let holds = k.machine.pressure.holds();
        k.machine.pressure.update(now, taken, waited);
        if holds == 0 && k.machine.pressure.holds() == 1 {
            console::info(format_args!(
                "cpus: most kernel-lock acquisitions wait; the other CPUs take no new thread while that lasts"
            ));
        }
        return false;
    }
    // Inside an interrupt handler (a preempting timer) the CPU cannot halt: it takes a
    // thread as usual.
    k.machine.sched.current().is_none()
        && k.machine.pressure.held_back(now)
        && !kiln_hal::trap::in_handler()
}

/// Halts until an interrupt: the timer at the next deadline, a device, or another CPU
/// that made a thread ready. With more than one CPU the kernel lock is let go meanwhile.
fn idle(held: &mut Held) {
    let k = held.k();
    let net = crate::machine::net::deadline(k);
    let memlog = crate::memlog::deadline();
    let stdin = crate::stdin::deadline();
    match k
        .machine
        .sched
        .next_deadline()
        .into_iter()
        .chain(k.process.timers.next_deadline())
        .chain(net)
        .chain(memlog)
        .chain(stdin)
        .min()
    {
        Some(d) => time::fire_by(d),
        None => {
            static WARNED: core::sync::atomic::AtomicBool =
                core::sync::atomic::AtomicBool::new(false);
            if k.machine.sched.running_count() == 0
                && !WARNED.swap(true, core::sync::atomic::Ordering::Relaxed)
            {
                console::info(format_args!(
                    "every thread waits with no timeout: idling until a device interrupt"
                ));
            }
        }
    }
    let halted = time::monotonic_ns();
    if kiln_hal::smp::online() > 1 {
        // Marked idle under the lock, so whoever readies a thread next sees it and sends
        // the interrupt that ends the halt (kept pending if it comes before the halt).
        kiln_hal::smp::set_idle(true);
        held.unlocked(kiln_hal::cpu::wait_for_interrupt);
        kiln_hal::smp::set_idle(false);
    } else {
        kiln_hal::cpu::wait_for_interrupt();
    }
    let idle = time::monotonic_ns().saturating_sub(halted);
    crate::control::IDLE_NS.fetch_add(idle, core::sync::atomic::Ordering::Relaxed);
}

/// The timer interrupt: wakes sleepers and preempts a thread whose slice is over.
pub fn on_timer(frame: &mut TrapFrame, fx: &mut FxArea) {
    if !frame.from_user() {
        // The kernel was idling; its loop looks at the deadlines itself.
        if crate::profile::due() {
            crate::profile::sample_idle();
        }
        return;
    }
    let mut held = crate::lock();
    let Some(k) = held.get() else { return };
    k.machine.sched.charge(time::ticks(), true);
    preempt_if_due(&mut held, frame, fx);
    held.k().machine.sched.charge(time::ticks(), false);
}

/// The timer interrupt's work once the interrupted thread's user time is charged: the
/// devices, the timers, and the switch to another thread when the slice is over.
fn preempt_if_due(held: &mut Held, frame: &mut TrapFrame, fx: &mut FxArea) {
    let k = held.k();
    let tid = k.machine.current_tid();
    if end_if_doomed(k, tid) {
        switch_from_trap(held, None, frame, fx);
        arm_timer(held.k());
        return;
    }
    crate::machine::net::service(k);
    crate::memlog::service(k);
    crate::stop::check(k);
    crate::control::service(k);
    crate::stdin::service(k);
    if crate::profile::due() {
        crate::profile::sample(k, Place::User, frame.rip, frame.rsp, frame.rbp);
    }
    let now = time::monotonic_ns();
    fire_timers(k, now);
    k.machine.sched.expire(now);
    // Ready threads that idle CPUs will take (they are woken when the lock is let go) are
    // no reason to stop this CPU's thread: it would only move to another CPU.
    let ready = k.machine.sched.ready_count();
    if ready > kiln_hal::smp::idle_count() && now >= k.machine.sched.slice_end(SLICE_NS) {
        if let Some(saved) = k.machine.sched.ctx(tid) {
            *saved = UserContext::from_trap(frame, fx);
        }
        k.machine.sched.charge(time::ticks(), false);
        k.machine.sched.yield_current();
        switch_from_trap(held, Some(tid), frame, fx);
    } else if signals::pending(k) {
        let mut ctx = UserContext::from_trap(frame, fx);
        signals::deliver(k, &mut ctx);
        ctx.to_trap(frame, fx);
    }
    arm_timer(held.k());
}
