//! From boot information to the program's first instruction.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use kiln_abi::cmdline::{Config, Sink};
use kiln_abi::record::BootPhase;
use kiln_hal::BootInfo;
use kiln_os::process::{Process, ThreadState, PID};

use crate::console::{self, Routes};
use crate::machine::{self, HalMachine, HalPages};
use crate::{fault, run, Kernel, KERNEL};

/// Stops the boot with a one-line reason (exit status 125).
fn fail(args: core::fmt::Arguments<'_>) -> ! {
    let r = console::routes();
    console::line(r.stderr, args);
    if r.log != r.stderr {
        console::line(r.log, args);
    }
    console::exit(kiln_abi::exit::KERNEL_FAILURE)
}

/// Boots the program described by the payload and the command line. Never returns.
pub fn run(boot: BootInfo) -> ! {
    let runtime =
        Config::parse(boot.cmdline).unwrap_or_else(|e| fail(format_args!("kernel panic: {e}")));
    let Some(payload) = boot.payload else {
        fail(format_args!("kernel panic: this kernel has no program linked in: build an image with `cargo xtask build-image`"));
    };
    let header = kiln_abi::payload::parse(payload)
        .unwrap_or_else(|e| fail(format_args!("kernel panic: {e}")));
    let baked_text = core::str::from_utf8(&payload[header.config.clone()]).unwrap_or_else(|_| {
        fail(format_args!(
            "kernel panic: baked-in configuration is not UTF-8"
        ))
    });
    let baked = Config::parse(baked_text)
        .unwrap_or_else(|e| fail(format_args!("kernel panic: baked-in configuration: {e}")));
    let config = baked.overridden_by(runtime);
    console::set_routes(Routes {
        stdout: config.stdout.unwrap_or(Sink::Serial),
        stderr: config.stderr.unwrap_or(Sink::Serial),
        log: config.log.unwrap_or(Sink::Serial),
        status: config.status.unwrap_or(Sink::Off),
        records: config.records.unwrap_or(Sink::Off),
        verbose: config.verbose,
    });
    console::info(format_args!(
        "kernel {} booted: {} MiB RAM, TSC about {} MHz ({:?} estimate, refined over the boot), {} ms since TSC start",
        env!("CARGO_PKG_VERSION"),
        boot.ram_bytes >> 20,
        kiln_hal::time::tsc_hz() / 1_000_000,
        boot.calibration,
        crate::console::since_boot(),
    ));

    let exe = config.name.clone().unwrap_or_else(|| b"/bin/app".to_vec());
    let exe_path = String::from_utf8_lossy(&exe).into_owned();
    let mut argv: Vec<Vec<u8>> = alloc::vec![exe.clone()];
    argv.extend(config.argv.clone().unwrap_or_default());
    let mut envp: Vec<Vec<u8>> = config
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push(b'=');
            kv.extend_from_slice(v);
            kv
        })
        .collect();
    // What a container runtime gives a program whose image and command line do not.
    kiln_abi::cmdline::add_default_env(&mut envp);

    let rootfs = &payload[header.rootfs.clone()];
    let program = &payload[header.program.clone()];
    let vfs = kiln_os::fs::Vfs::new(rootfs, &exe_path, program)
        .unwrap_or_else(|e| fail(format_args!("kernel panic: root filesystem: {e:?}")));
    mark(BootPhase::Rootfs);
    if !config.net.dns.is_empty() {
        // `kiln.dns` at run time replaces the image's resolver list.
        let mut text = String::new();
        for d in &config.net.dns {
            text.push_str(&alloc::format!(
                "nameserver {}.{}.{}.{}\n",
                d[0],
                d[1],
                d[2],
                d[3]
            ));
        }
        let bytes: &'static [u8] = alloc::vec::Vec::leak(text.into_bytes());
        if let Err(e) = vfs.set_static_file("/etc/resolv.conf", bytes) {
            console::warn(format_args!(
                "could not write /etc/resolv.conf: {}",
                e.name()
            ));
        }
    }
    let mut vm = kiln_os::vm::AddressSpace::new(boot.kernel.clone());
    // Regions live in the kernel's reserve when memory is short: allow what half of it holds
    // (a region takes up to 128 bytes of heap).
    let reserve = kiln_hal::frames::reserve_bytes();
    vm.set_max_regions((reserve / 2 / 128) as usize);
    let mut random = [0u8; 16];
    machine::fill_random(&mut random);
    let hwcap = kiln_hal::cpu::cpuid(1, 0).edx as u64;
    let mut interp_random = [0u8; 8];
    machine::fill_random(&mut interp_random);
    // A dynamically linked program's loader comes from the root filesystem.
    let find_file = |path: &str| -> Option<&'static [u8]> {
        let node = vfs.find("/", path, true).ok()?;
        match node.body {
            kiln_os::fs::node::Body::StaticFile(data) => Some(data),
            _ => None,
        }
    };
    let loaded = kiln_os::loader::load_dynamic(
        &mut vm,
        &mut HalPages,
        program,
        &argv,
        &envp,
        &exe,
        random,
        hwcap,
        &find_file,
        u64::from_le_bytes(interp_random),
    )
    .unwrap_or_else(|e| fail(format_args!("cannot start {exe_path}: {e}")));

    mark(BootPhase::Loaded);
    crate::crash::set_load_bias(loaded.load_bias);
    crate::crash::set_core_limit(config.core.unwrap_or(0));
    let mut process = Process::new(vm, vfs, exe_path);
    process.proc =
        kiln_os::syscall::proc::ProcState::with_strings(loaded.args.clone(), loaded.env.clone());
    process.trace = config.trace;
    let main = ThreadState {
        tid: PID as u32,
        ..ThreadState::default()
    };
    let mut machine = HalMachine::new(main);
    let acpi = machine::acpi::start(boot.rsdp);
    let transports = acpi.transports;
    let input_on_virtio = machine::virtio_console::start(&config, &transports);
    if let Err(why) = machine::volumes::start(&config, &transports, &mut process.vfs) {
        fail(format_args!("kernel panic: {why}"));
    }
    machine.net_candidates = Some(machine::net::start(&config, &transports, &mut process));
    crate::memlog::start(config.memlog);
    crate::control::start(config.control);
    crate::stdin::start(config.stdin, input_on_virtio);
    if let Err(why) = crate::profile::start(config.profile, program, loaded.load_bias) {
        fail(format_args!("kernel panic: {why}"));
    }
    // The TSC's and the APIC timer's rates, measured over the whole boot (see
    // `time::init`); before the program can read a clock or arm a timer. The clock's
    // numbers are final from here on: the vDSO's clock page gets them, and the program's
    // clock reads need no system call.
    kiln_hal::time::finish_calibration();
    if let Err(e) = kiln_os::vdso::publish(
        &mut process.vm,
        &mut HalPages,
        &kiln_hal::time::clock_page(),
    ) {
        fail(format_args!("kernel panic: vDSO clock page: {}", e.name()));
    }
    // Forgotten, not dropped: what this replaces is `None`, and the kernel is never dropped
    // (runs end in `finish`), so no code to drop a `Kernel` is needed (1 KB of drop glue).
    core::mem::forget(KERNEL.lock().replace(Box::new(Kernel { process, machine })));
    kiln_hal::syscall::init(run::on_syscall);
    kiln_hal::trap::set_user_fault_handler(fault::on_user_fault);
    kiln_hal::trap::set_timer_handler(run::on_timer);
    start_cpus(&acpi.apic_ids);
    mark(BootPhase::Devices);
    // Everything after this stamp is the report of it: the program starts right after.
    mark(BootPhase::Program);
    report_boot(loaded.entry);
    if let Some(k) = crate::lock().get() {
        k.machine.sched.begin(kiln_hal::time::ticks());
    }
    kiln_hal::syscall::enter_user(loaded.entry, loaded.stack_pointer)
}

/// Starts the other CPUs the firmware lists (`--cpus`); each then waits for a thread.
fn start_cpus(apic_ids: &[u32]) {
    if apic_ids.len() <= 1 {
        return;
    }
    let (online, error) = kiln_hal::smp::start_aps(apic_ids, run::ap_main);
    match error {
        None => console::info(format_args!("{online} CPUs online")),
        Some(e) => console::warn(format_args!(
            "{online} of {} CPUs online: the next did not start: {}",
            apic_ids.len().min(kiln_hal::smp::MAX_CPUS),
            e.reason()
        )),
    }
}

fn mark(phase: BootPhase) {
    kiln_hal::boot::mark(phase)
}

/// Reports the boot's phases: a `Boot` record for the host (`bench boot`) and, with
/// `--verbose`, one log line of microseconds since the kernel's entry.
fn report_boot(program_entry: u64) {
    let record = kiln_abi::record::Boot {
        tsc_hz: kiln_hal::time::tsc_hz(),
        stamps: kiln_hal::boot::phase_stamps().to_vec(),
    };
    let r = console::routes();
    if r.records != Sink::Off {
        console::write(r.records, &record.encode());
    }
    let mut line = String::new();
    let mut last = 0;
    let hz = record.tsc_hz.max(1) as u128;
    let entry = record.stamp(BootPhase::Entry).unwrap_or(0);
    for p in &BootPhase::ALL[1..] {
        if let Some(t) = record.stamp(*p).filter(|&t| t >= entry) {
            let us = ((t - entry) as u128 * 1_000_000 / hz) as u64;
            line.push_str(&alloc::format!(", {} +{}", p.name(), us - last.min(us)));
            last = us;
        }
    }
    console::info(format_args!(
        "entering program at {program_entry:#x}: {last} us from kernel entry (TSC {} kHz, {} MiB RAM, {} KiB in use; phases in us{line})",
        record.tsc_hz / 1000,
        kiln_hal::frames::total_bytes() >> 20,
        kiln_hal::frames::used_bytes() >> 10,
    ));
}
