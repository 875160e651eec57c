//! The Kiln kernel binary: wires the hardware layer ([`kiln_hal`]) to the Linux
//! personality ([`kiln_os`]).
//!
//! Boot: `kiln_hal` brings the CPU to long mode and calls [`kiln_main`], which reads the
//! payload (program, root filesystem, baked-in configuration) and the command line, loads
//! the program and enters user mode. From then on the kernel runs only in
//! [`on_syscall`] and [`fault::on_user_fault`].
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};

mod console;
mod control;
mod crash;
mod fault;
mod machine;
mod memlog;
#[cfg(feature = "profile")]
mod profile;
#[cfg(not(feature = "profile"))]
#[path = "profile_off.rs"]
mod profile;
mod run;
mod signals;
mod start;
mod stdin;
mod stop;

use kiln_os::process::Process;

use machine::HalMachine;

/// The running program and the machine it runs on.
pub struct Kernel {
    /// The program.
    pub process: Process,
    /// The machine.
    pub machine: HalMachine,
}

/// The kernel's state, set once before entering user mode. Its lock is the big kernel
/// lock: every CPU takes it (through [`lock`]) for system calls, faults, interrupts and
/// scheduling; the program's code runs without it on every CPU.
///
/// The kernel is boxed so that the static is all zeros (a null pointer for `None`) and
/// lands in `.bss`: an `Option<Kernel>` is `None` through a non-zero niche somewhere in
/// its 8 KB, which put all of it in `.data`, stored in every image.
pub static KERNEL: spin::Mutex<Option<Box<Kernel>>> = spin::Mutex::new(None);

/// The big kernel lock, held by this CPU. Letting it go wakes an idle CPU when threads
/// wait for one.
pub struct Held(Option<spin::MutexGuard<'static, Option<Box<Kernel>>>>);

/// How many times the kernel lock was taken, and how many of those had to wait for another
/// CPU to let it go (counted only with more than one CPU): `kiln_os::lock_pressure`
/// decides from them whether the other CPUs take threads.
pub static LOCK_TAKEN: AtomicU64 = AtomicU64::new(0);
/// See [`LOCK_TAKEN`].
pub static LOCK_WAITED: AtomicU64 = AtomicU64::new(0);

/// Takes the big kernel lock. While another CPU holds it, this one answers that CPU's TLB
/// shootdown (it may be waiting for this one with the lock held).
pub fn lock() -> Held {
    let mut waited = false;
    let mut guard = loop {
        if let Some(g) = KERNEL.try_lock() {
            break g;
        }
        waited = true;
        kiln_hal::smp::flush_if_asked();
        core::hint::spin_loop();
    };
    if kiln_hal::smp::online() > 1 {
        LOCK_TAKEN.fetch_add(1, Ordering::Relaxed);
        if waited {
            LOCK_WAITED.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(k) = guard.as_mut() {
        k.machine.sched.on_cpu(kiln_hal::smp::current());
    }
    Held(Some(guard))
}

impl Held {
    /// The kernel, once it exists.
    pub fn get(&mut self) -> Option<&mut Kernel> {
        self.0.as_mut().and_then(|g| g.as_deref_mut())
    }

    /// The kernel; panics before it exists.
    pub fn k(&mut self) -> &mut Kernel {
        self.get().expect("the kernel is not ready")
    }

    /// Runs `f` without the lock (this CPU halts in it), then takes the lock again.
    pub fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.release();
        let r = f();
        *self = lock();
        r
    }

    fn release(&mut self) {
        if let Some(g) = self.0.take() {
            let ready = g.as_ref().map_or(0, |k| k.machine.sched.ready_count());
            drop(g);
            if ready > 0 {
                kiln_hal::smp::wake_idle(ready);
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

// SAFETY: `kiln_main` is the one symbol the hardware layer calls after boot; its signature
// matches the declaration in `kiln_hal`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
fn kiln_main(boot: kiln_hal::BootInfo) -> ! {
    start::run(boot)
}

/// Ends the run with `status`.
/// Ends the program with `status` after what it left for the outside is out: frames queued
/// for the network, and the changes its shared mappings made to volumes' files.
pub fn end(k: &mut Kernel, status: u8) -> ! {
    crate::machine::net::flush(k);
    kiln_os::syscall::mm::shared::flush_all(&mut k.process, &mut k.machine);
    finish(status)
}

pub fn finish(status: u8) -> ! {
    profile::finish();
    console::info(format_args!(
        "program exited with status {status}, {} ms after boot ({} system calls, {} page faults, {} KiB of RAM in use)",
        crate::console::since_boot(),
        control::SYSCALLS.load(core::sync::atomic::Ordering::Relaxed),
        control::PAGE_FAULTS.load(core::sync::atomic::Ordering::Relaxed),
        kiln_hal::frames::used_bytes() >> 10,
    ));
    console::exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let r = match console::try_routes() {
        Some(r) => r,
        None => console::Routes::fallback(),
    };
    let sink = if r.log == kiln_abi::cmdline::Sink::Off {
        r.stderr
    } else {
        r.log
    };
    match info.location() {
        Some(l) => console::line(
            sink,
            format_args!(
                "kernel panic: {} at {}:{}",
                info.message(),
                l.file(),
                l.line()
            ),
        ),
        None => console::line(sink, format_args!("kernel panic: {}", info.message())),
    }
    // The kernel's call stack, for the host to symbolize (no allocation: the heap may be
    // what failed).
    if r.records != kiln_abi::cmdline::Sink::Off {
        let mut frames = [0u64; 32];
        let n = kiln_hal::backtrace::kernel_return_addresses(&mut frames);
        let mut head = [0u8; kiln_abi::record::HEADER_LEN];
        head.copy_from_slice(&kiln_abi::record::header(
            kiln_abi::record::Kind::KernelPanic,
            (8 * n) as u32,
        ));
        console::write(r.records, &head);
        for f in &frames[..n] {
            console::write(r.records, &f.to_le_bytes());
        }
    }
    console::exit(kiln_abi::exit::KERNEL_FAILURE)
}
