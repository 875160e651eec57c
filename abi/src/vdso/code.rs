//! The vDSO's machine code: four leaf functions that use no stack beyond their return
//! address (Go calls the vDSO on small stacks), save nothing (they touch only the System V
//! ABI's scratch registers) and reach the clock page RIP-relative, so they run at any
//! address. Each falls back to the real `syscall` instruction with its arguments untouched
//! when the clock page is not filled in (a zero rate) or for a clock it does not serve.
//!
//! The arithmetic is the kernel's (`hal::time`, [`super::ClockPage`]): nanoseconds since boot
//! are `(rdtsc - tsc_at_boot) * ns_per_tick >> 32` (saturating), the monotonic clocks add
//! [`super::MONOTONIC_AT_BOOT_NS`], the wall clock adds `epoch_at_boot_ns` to the time since
//! boot instead, the coarse clocks round down to [`super::COARSE_TICK_NS`].

use alloc::vec::Vec;
use core::ops::Range;

use super::asm::{Asm, Cond, Label};
use super::{ClockPage, CLOCK_ID_LIMIT, COARSE_TICK_NS, MONOTONIC_AT_BOOT_NS};
use crate::sysno;

/// Nanoseconds per second.
const NS_PER_SEC: u32 = 1_000_000_000;

/// One of the vDSO's functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `int clock_gettime(clockid_t, struct timespec *)`.
    ClockGettime,
    /// `int gettimeofday(struct timeval *, struct timezone *)`.
    Gettimeofday,
    /// `time_t time(time_t *)`.
    Time,
    /// `int clock_getres(clockid_t, struct timespec *)`.
    ClockGetres,
}

impl Function {
    /// Every function, in the order of the code.
    pub const ALL: [Function; 4] = [
        Function::ClockGettime,
        Function::Gettimeofday,
        Function::Time,
        Function::ClockGetres,
    ];

    /// Linux's name for it (`__vdso_...`, what glibc, musl and Go look up).
    pub fn name(self) -> &'static str {
        match self {
            Function::ClockGettime => "__vdso_clock_gettime",
            Function::Gettimeofday => "__vdso_gettimeofday",
            Function::Time => "__vdso_time",
            Function::ClockGetres => "__vdso_clock_getres",
        }
    }

    /// The weak alias Linux exports beside it.
    pub fn alias(self) -> &'static str {
        &self.name()["__vdso_".len()..]
    }

    /// The system call it stands for.
    pub fn syscall(self) -> u64 {
        match self {
            Function::ClockGettime => sysno::CLOCK_GETTIME,
            Function::Gettimeofday => sysno::GETTIMEOFDAY,
            Function::Time => sysno::TIME,
            Function::ClockGetres => sysno::CLOCK_GETRES,
        }
    }
}

/// The assembled functions.
#[derive(Debug)]
pub struct Code {
    /// The machine code.
    pub bytes: Vec<u8>,
    /// Where each function is, as addresses (the code starts at the `base` it was made for).
    pub functions: Vec<(Function, Range<u64>)>,
}

/// Assembles the functions to run at `base`, with the clock page at `page`.
pub fn assemble(base: u64, page: u64) -> Code {
    let mut a = Asm::new(base);
    let mut functions = Vec::new();
    for f in Function::ALL {
        let start = base + a.offset();
        match f {
            Function::ClockGettime => clock_gettime(&mut a, page),
            Function::Gettimeofday => gettimeofday(&mut a, page),
            Function::Time => time(&mut a, page),
            Function::ClockGetres => clock_getres(&mut a),
        }
        functions.push((f, start..base + a.offset()));
        // Functions start 16-byte aligned (int3 between them).
        while !a.offset().is_multiple_of(16) {
            a.raw(&[0xcc]);
        }
    }
    Code {
        bytes: a.finish(),
        functions,
    }
}

/// Bit `id` set for each clock id that `pick` accepts.
fn mask(pick: impl Fn(super::Served) -> bool) -> u32 {
    (0..CLOCK_ID_LIMIT).fold(0, |m, id| match super::served(id as i32) {
        Some(s) if pick(s) => m | 1 << id,
        _ => m,
    })
}

/// `r10d = 1 << edi`, or a jump to `fallback` for a clock id the vDSO does not serve (the
/// CPU-time clocks, whose ids are negative, and anything unknown).
fn classify(a: &mut Asm, fallback: Label) {
    a.raw(&[0x83, 0xff, CLOCK_ID_LIMIT as u8 - 1]); // cmp edi, 31
    a.jump_if(Cond::Above, fallback); //              ja fallback
    a.imm32(&[0x41, 0xba], 1); //                     mov r10d, 1
    a.raw(&[0x89, 0xf9]); //                          mov ecx, edi
    a.raw(&[0x41, 0xd3, 0xe2]); //                    shl r10d, cl
    a.imm32(&[0x41, 0xf7, 0xc2], mask(|_| true)); //  test r10d, SERVED
    a.jump_if(Cond::Zero, fallback); //               jz fallback
}

/// `rax` = the monotonic clock ([`MONOTONIC_AT_BOOT_NS`] plus nanoseconds since boot), or a
/// jump to `fallback` while the page is not filled in. Clobbers rcx, rdx, r8.
fn monotonic(a: &mut Asm, page: u64, fallback: Label) {
    let rate = page + ClockPage::NS_PER_TICK as u64;
    let boot = page + ClockPage::TSC_AT_BOOT as u64;
    a.rip_relative(&[0x4c, 0x8b, 0x05], rate); // mov r8, [rip + ns_per_tick]
    a.raw(&[0x4d, 0x85, 0xc0]); //                test r8, r8
    a.jump_if(Cond::Zero, fallback); //           jz fallback
    a.raw(&[0x0f, 0x31]); //                      rdtsc
    a.raw(&[0x48, 0xc1, 0xe2, 0x20]); //          shl rdx, 32
    a.raw(&[0x48, 0x09, 0xd0]); //                or rax, rdx
    a.rip_relative(&[0x48, 0x2b, 0x05], boot); // sub rax, [rip + tsc_at_boot]
    a.raw(&[0x49, 0xf7, 0xe0]); //                mul r8
    a.raw(&[0x48, 0x0f, 0xac, 0xd0, 0x20]); //    shrd rax, rdx, 32
    a.raw(&[0x48, 0xc1, 0xea, 0x20]); //          shr rdx, 32
    let fits = a.label();
    a.jump_if(Cond::Zero, fits); //               jz fits
    a.imm32(&[0x48, 0xc7, 0xc0], u32::MAX); //    mov rax, -1 (saturated)
    a.bind(fits);
    a.imm32(&[0x48, 0x05], MONOTONIC_AT_BOOT_NS as u32); // add rax, MONOTONIC_AT_BOOT_NS
}

/// `rax += epoch_at_boot_ns - MONOTONIC_AT_BOOT_NS`: the monotonic clock becomes the wall
/// clock.
fn add_epoch(a: &mut Asm, page: u64) {
    let epoch = page + ClockPage::EPOCH_AT_BOOT_NS as u64;
    a.imm32(&[0x48, 0x2d], MONOTONIC_AT_BOOT_NS as u32); // sub rax, MONOTONIC_AT_BOOT_NS
    a.rip_relative(&[0x48, 0x03, 0x05], epoch); //        add rax, [rip + epoch_at_boot_ns]
}

/// `rax, rdx = rax / divisor, rax % divisor`. Clobbers rcx.
fn divide(a: &mut Asm, divisor: u32) {
    a.raw(&[0x31, 0xd2]); //           xor edx, edx
    a.imm32(&[0xb9], divisor); //      mov ecx, divisor
    a.raw(&[0x48, 0xf7, 0xf1]); //     div rcx
}

/// `return 0`.
fn return_zero(a: &mut Asm) {
    a.raw(&[0x31, 0xc0]); // xor eax, eax
    a.raw(&[0xc3]); //        ret
}

/// The system call `nr` with the caller's arguments, as if the vDSO were not there.
fn syscall(a: &mut Asm, nr: u64) {
    a.imm32(&[0xb8], nr as u32); // mov eax, nr
    a.raw(&[0x0f, 0x05]); //        syscall
    a.raw(&[0xc3]); //              ret
}

fn clock_gettime(a: &mut Asm, page: u64) {
    let (fallback, monotonic_base, not_coarse) = (a.label(), a.label(), a.label());
    classify(a, fallback);
    monotonic(a, page, fallback);
    let realtime = mask(|s| s.base == super::Base::Realtime);
    a.imm32(&[0x41, 0xf7, 0xc2], realtime); //    test r10d, REALTIME
    a.jump_if(Cond::Zero, monotonic_base); //     jz monotonic_base
    add_epoch(a, page);
    a.bind(monotonic_base);
    a.imm32(&[0x41, 0xf7, 0xc2], mask(|s| s.coarse)); // test r10d, COARSE
    a.jump_if(Cond::Zero, not_coarse); //               jz not_coarse
    divide(a, COARSE_TICK_NS as u32);
    a.raw(&[0x48, 0x0f, 0xaf, 0xc1]); //          imul rax, rcx
    a.bind(not_coarse);
    divide(a, NS_PER_SEC);
    a.raw(&[0x48, 0x89, 0x06]); //                mov [rsi], rax
    a.raw(&[0x48, 0x89, 0x56, 0x08]); //          mov [rsi + 8], rdx
    return_zero(a);
    a.bind(fallback);
    syscall(a, Function::ClockGettime.syscall());
}

fn gettimeofday(a: &mut Asm, page: u64) {
    let (fallback, zone, done) = (a.label(), a.label(), a.label());
    a.raw(&[0x48, 0x85, 0xff]); //                test rdi, rdi
    a.jump_if(Cond::Zero, zone); //               jz zone
    monotonic(a, page, fallback);
    add_epoch(a, page);
    divide(a, NS_PER_SEC);
    a.raw(&[0x48, 0x89, 0x07]); //                mov [rdi], rax
    a.raw(&[0x48, 0x89, 0xd0]); //                mov rax, rdx
    divide(a, 1000);
    a.raw(&[0x48, 0x89, 0x47, 0x08]); //          mov [rdi + 8], rax
    a.bind(zone);
    a.raw(&[0x48, 0x85, 0xf6]); //                test rsi, rsi
    a.jump_if(Cond::Zero, done); //               jz done
    a.imm32(&[0x48, 0xc7, 0x06], 0); //           mov qword [rsi], 0 (UTC, no DST)
    a.bind(done);
    return_zero(a);
    a.bind(fallback);
    syscall(a, Function::Gettimeofday.syscall());
}

fn time(a: &mut Asm, page: u64) {
    let (fallback, done) = (a.label(), a.label());
    monotonic(a, page, fallback);
    add_epoch(a, page);
    divide(a, NS_PER_SEC);
    a.raw(&[0x48, 0x85, 0xff]); //                test rdi, rdi
    a.jump_if(Cond::Zero, done); //               jz done
    a.raw(&[0x48, 0x89, 0x07]); //                mov [rdi], rax
    a.bind(done);
    a.raw(&[0xc3]); //                            ret
    a.bind(fallback);
    syscall(a, Function::Time.syscall());
}

fn clock_getres(a: &mut Asm) {
    let (fallback, done) = (a.label(), a.label());
    classify(a, fallback);
    a.raw(&[0x48, 0x85, 0xf6]); //                test rsi, rsi
    a.jump_if(Cond::Zero, done); //               jz done
    a.imm32(&[0x48, 0xc7, 0x06], 0); //           mov qword [rsi], 0
    a.imm32(&[0xb8], 1); //                       mov eax, 1
    a.imm32(&[0xba], COARSE_TICK_NS as u32); //   mov edx, COARSE_TICK_NS
    a.imm32(&[0x41, 0xf7, 0xc2], mask(|s| s.coarse)); // test r10d, COARSE
    a.raw(&[0x0f, 0x45, 0xc2]); //                cmovnz eax, edx
    a.raw(&[0x48, 0x89, 0x46, 0x08]); //          mov [rsi + 8], rax
    a.bind(done);
    return_zero(a);
    a.bind(fallback);
    syscall(a, Function::ClockGetres.syscall());
}
