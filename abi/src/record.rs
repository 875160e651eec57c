//! Binary records the kernel sends the host on a channel of their own (`kiln.records=PORT`),
//! apart from the program's stdout/stderr and the kernel log.
//!
//! The kernel collects, the host explains: a crash record holds raw registers and stack
//! bytes, and the toolchain unwinds and symbolizes them. Each record is a 16-byte header
//! (magic `KREC`, kind, length of the body) followed by the body, all little-endian.

use alloc::vec::Vec;

/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"KREC";
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Most stack bytes a crash record carries for the crashed thread.
pub const MAX_STACK: usize = 256 * 1024;
/// Most threads a crash record describes.
pub const MAX_THREADS: usize = 1024;

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// The program died of a signal: [`Crash`].
    Crash = 1,
    /// The program's memory, for a core file: [`Memory`] (follows a [`Crash`]).
    Memory = 2,
    /// One system call, for `run --trace`: [`Syscall`].
    Syscall = 3,
    /// A path the program looked for and the image does not have: [`Missing`].
    Missing = 4,
    /// The kernel panicked: [`KernelPanic`].
    KernelPanic = 5,
    /// Profiler samples, counted by stack: [`Profile`].
    Profile = 6,
    /// When the kernel reached each phase of its boot: [`Boot`].
    Boot = 7,
    /// `execve` replaced the program: [`Exec`].
    Exec = 8,
}

/// Where the CPU was when the profiler sampled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// Running the program's code.
    User,
    /// In the kernel, serving the program's system call with this number (the stack is
    /// the caller's).
    Syscall(u32),
    /// Idle: every thread was waiting.
    Idle,
}

impl Place {
    fn code(self) -> (u32, u32) {
        match self {
            Place::User => (0, 0),
            Place::Syscall(nr) => (1, nr),
            Place::Idle => (2, 0),
        }
    }

    fn from_code(code: u32, nr: u32) -> Result<Place, RecordError> {
        Ok(match code {
            0 => Place::User,
            1 => Place::Syscall(nr),
            2 => Place::Idle,
            _ => return Err(RecordError::BadLength),
        })
    }
}

/// One distinct stack the profiler saw, and how many samples found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileStack {
    /// Samples that found this stack.
    pub count: u32,
    /// Where the CPU was.
    pub place: Place,
    /// The program's instruction pointer and return addresses, innermost first (empty
    /// for [`Place::Idle`]).
    pub pcs: Vec<u64>,
}

/// A batch of profiler samples, counted by stack (the kernel unwinds each sample and
/// counts it, so a busy loop costs one entry however long it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Time between samples, in nanoseconds.
    pub interval_ns: u64,
    /// The stacks.
    pub stacks: Vec<ProfileStack>,
}

impl Profile {
    /// Most return addresses a stack carries.
    pub const MAX_PCS: usize = crate::unwind::MAX_FRAMES;

    /// The whole record.
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_stacks(self.interval_ns, &self.stacks)
    }

    /// The record of `stacks` sampled every `interval_ns`, without building a [`Profile`].
    pub fn encode_stacks(interval_ns: u64, stacks: &[ProfileStack]) -> Vec<u8> {
        let mut b = Vec::new();
        put_u64(&mut b, interval_ns);
        put_u32(&mut b, stacks.len() as u32);
        put_u32(&mut b, 0);
        for s in stacks {
            let (code, nr) = s.place.code();
            put_u32(&mut b, s.count);
            put_u32(&mut b, code);
            put_u32(&mut b, nr);
            put_u32(&mut b, s.pcs.len() as u32);
            for pc in &s.pcs {
                put_u64(&mut b, *pc);
            }
        }
        let mut v = header(Kind::Profile, b.len() as u32).to_vec();
        v.extend_from_slice(&b);
        v
    }
}

fn parse_profile(body: &[u8]) -> Result<Profile, RecordError> {
    let mut r = Reader { b: body, at: 0 };
    let interval_ns = r.u64()?;
    let n = r.u32()? as usize;
    r.u32()?;
    // Each stack takes at least 16 bytes: a count larger than the body allows is a lie.
    if n > body.len() / 16 {
        return Err(RecordError::BadLength);
    }
    let mut stacks = Vec::with_capacity(n);
    for _ in 0..n {
        let count = r.u32()?;
        let (code, nr) = (r.u32()?, r.u32()?);
        let len = r.u32()? as usize;
        if len > Profile::MAX_PCS {
            return Err(RecordError::BadLength);
        }
        let pcs = r
            .take(len * 8)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        stacks.push(ProfileStack {
            count,
            place: Place::from_code(code, nr)?,
            pcs,
        });
    }
    Ok(Profile {
        interval_ns,
        stacks,
    })
}

/// The kernel's call stack when it panicked: return addresses, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPanic {
    /// The return addresses (kernel addresses: the kernel is not relocated).
    pub frames: Vec<u64>,
}

impl KernelPanic {
    /// The most frames a record carries.
    pub const MAX_FRAMES: usize = 64;

    /// The whole record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = header(Kind::KernelPanic, (8 * self.frames.len()) as u32).to_vec();
        for f in &self.frames {
            put_u64(&mut v, *f);
        }
        v
    }
}

/// Where a traced call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Entered and returned.
    Complete = 0,
    /// Entered and blocked (strace's `<unfinished ...>`).
    Unfinished = 1,
    /// Returned after blocking (strace's `<... resumed>`).
    Resumed = 2,
}

/// Bytes of memory behind one argument of a traced call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The argument (0-5).
    pub arg: u8,
    /// Copied after the call (an output) rather than before it.
    pub out: bool,
    /// The bytes (possibly the first part of a longer buffer).
    pub data: Vec<u8>,
}

/// One system call of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    /// The calling thread.
    pub tid: u32,
    /// Complete, unfinished or resumed.
    pub phase: Phase,
    /// The call's number.
    pub nr: u64,
    /// Its arguments.
    pub args: [u64; 6],
    /// What it returned (`-errno` for errors; meaningless for [`Phase::Unfinished`]).
    pub ret: i64,
    /// When it was entered (nanoseconds since boot).
    pub start_ns: u64,
    /// When it returned (or blocked).
    pub end_ns: u64,
    /// Memory behind its pointer arguments ([`crate::trace::captures`]).
    pub blobs: Vec<Blob>,
}

impl Syscall {
    /// The whole record.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96);
        put_u32(&mut b, self.tid);
        put_u32(&mut b, self.phase as u32);
        put_u64(&mut b, self.nr);
        for a in self.args {
            put_u64(&mut b, a);
        }
        put_u64(&mut b, self.ret as u64);
        put_u64(&mut b, self.start_ns);
        put_u64(&mut b, self.end_ns);
        put_u32(&mut b, self.blobs.len() as u32);
        put_u32(&mut b, 0);
        for blob in &self.blobs {
            b.push(blob.arg);
            b.push(u8::from(blob.out));
            b.extend_from_slice(&[0, 0]);
            put_u32(&mut b, blob.data.len() as u32);
            b.extend_from_slice(&blob.data);
        }
        let mut v = header(Kind::Syscall, b.len() as u32).to_vec();
        v.extend_from_slice(&b);
        v
    }

    /// The blob of argument `arg`, if the record has one.
    pub fn blob(&self, arg: u8) -> Option<&[u8]> {
        self.blobs
            .iter()
            .find(|b| b.arg == arg)
            .map(|b| b.data.as_slice())
    }
}

/// A path the program tried to open and the image does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The path as the program gave it (made absolute).
    pub path: Vec<u8>,
}

impl Missing {
    /// The whole record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = header(Kind::Missing, self.path.len() as u32).to_vec();
        v.extend_from_slice(&self.path);
        v
    }
}

/// `execve` replaced the program with the file at `path` of the image's root filesystem:
/// a crash or profile samples after it are symbolized from that file, not from the image's
/// program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// What the kernel added to the new program's link-time addresses.
    pub load_bias: u64,
    /// The new program's canonical path (its ELF file, after any `#!` interpreters).
    pub path: Vec<u8>,
}

impl Exec {
    /// The whole record: the bias, then the path.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = header(Kind::Exec, 8 + self.path.len() as u32).to_vec();
        v.extend_from_slice(&self.load_bias.to_le_bytes());
        v.extend_from_slice(&self.path);
        v
    }
}

/// The phases of a boot, in order; [`Boot::stamps`] holds one TSC reading per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BootPhase {
    /// The kernel's first instruction (the PVH or EFI-stub entry).
    Entry = 0,
    /// Frames, the kernel heap and the final page tables are set up.
    Memory = 1,
    /// GDT, IDT, local APIC and clocks are set up (the TSC's and APIC timer's calibration
    /// starts here and is finished over the rest of the boot).
    Cpu = 2,
    /// The configuration is read and the root filesystem is ready.
    Rootfs = 3,
    /// The program is loaded into its address space.
    Loaded = 4,
    /// Devices are set up (ACPI, volumes, the control channel) and the clocks' calibration,
    /// begun in [`BootPhase::Cpu`], is finished.
    Devices = 5,
    /// The kernel jumps to the program's first instruction.
    Program = 6,
}

impl BootPhase {
    /// Every phase, in boot order.
    pub const ALL: [BootPhase; 7] = [
        BootPhase::Entry,
        BootPhase::Memory,
        BootPhase::Cpu,
        BootPhase::Rootfs,
        BootPhase::Loaded,
        BootPhase::Devices,
        BootPhase::Program,
    ];

    /// A short name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            BootPhase::Entry => "entry",
            BootPhase::Memory => "memory",
            BootPhase::Cpu => "cpu and clocks",
            BootPhase::Rootfs => "root filesystem",
            BootPhase::Loaded => "program loaded",
            BootPhase::Devices => "devices",
            BootPhase::Program => "first instruction",
        }
    }
}

/// Most stamps a [`Boot`] record carries.
pub const MAX_BOOT_STAMPS: usize = 16;

/// When the kernel reached each [`BootPhase`], from its own TSC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// The TSC at each phase, indexed by [`BootPhase`] (0: not recorded).
    pub stamps: Vec<u64>,
}

impl Boot {
    /// The whole record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = header(Kind::Boot, (16 + 8 * self.stamps.len()) as u32).to_vec();
        put_u64(&mut v, self.tsc_hz);
        put_u32(&mut v, self.stamps.len() as u32);
        put_u32(&mut v, 0);
        for s in &self.stamps {
            put_u64(&mut v, *s);
        }
        v
    }

    /// The TSC at `phase`, when recorded.
    pub fn stamp(&self, phase: BootPhase) -> Option<u64> {
        self.stamps.get(phase as usize).copied().filter(|&t| t != 0)
    }

    /// Microseconds from the entry to `phase`, when both were recorded.
    pub fn us_since_entry(&self, phase: BootPhase) -> Option<f64> {
        let (t0, t) = (self.stamp(BootPhase::Entry)?, self.stamp(phase)?);
        (self.tsc_hz != 0 && t >= t0).then(|| (t - t0) as f64 * 1e6 / self.tsc_hz as f64)
    }
}

fn parse_boot(body: &[u8]) -> Result<Boot, RecordError> {
    let mut r = Reader { b: body, at: 0 };
    let tsc_hz = r.u64()?;
    let n = r.u32()? as usize;
    r.u32()?;
    if n > MAX_BOOT_STAMPS {
        return Err(RecordError::BadLength);
    }
    let mut stamps = Vec::with_capacity(n);
    for _ in 0..n {
        stamps.push(r.u64()?);
    }
    Ok(Boot { tsc_hz, stamps })
}

/// One region of the program's memory in a [`Memory`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address (page-aligned).
    pub start: u64,
    /// One past the last address (page-aligned).
    pub end: u64,
    /// `PROT_READ` (4), `PROT_WRITE` (2), `PROT_EXEC` (1), as ELF's `PF_*` bits.
    pub prot: u32,
    /// What the region holds: [`REGION_ANON`], [`REGION_STACK`], [`REGION_HEAP`] or
    /// [`REGION_PROGRAM`].
    pub kind: u32,
    /// Bytes of the region the record carries, from its start (a core-size limit may cut it).
    pub sent: u64,
}

/// [`Region::kind`]: anonymous memory.
pub const REGION_ANON: u32 = 0;
/// [`Region::kind`]: the main thread's stack.
pub const REGION_STACK: u32 = 1;
/// [`Region::kind`]: the `brk` heap.
pub const REGION_HEAP: u32 = 2;
/// [`Region::kind`]: a segment of the program.
pub const REGION_PROGRAM: u32 = 3;

/// Bytes of one region's description.
pub const REGION_LEN: usize = 32;

/// The program's memory: region descriptions, then each region's first `sent` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// The regions, in address order.
    pub regions: Vec<Region>,
    /// Their bytes, one region after the other.
    pub data: Vec<u8>,
}

impl Memory {
    /// The body's head: the region count and descriptions (the kernel streams the bytes
    /// after it).
    pub fn encode_head(regions: &[Region]) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + regions.len() * REGION_LEN);
        put_u32(&mut v, regions.len() as u32);
        put_u32(&mut v, 0);
        for r in regions {
            put_u64(&mut v, r.start);
            put_u64(&mut v, r.end);
            put_u32(&mut v, r.prot);
            put_u32(&mut v, r.kind);
            put_u64(&mut v, r.sent);
        }
        v
    }

    /// The body's length for `regions`.
    pub fn body_len(regions: &[Region]) -> u64 {
        8 + (regions.len() * REGION_LEN) as u64 + regions.iter().map(|r| r.sent).sum::<u64>()
    }

    /// The whole record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = header(Kind::Memory, Memory::body_len(&self.regions) as u32).to_vec();
        v.extend_from_slice(&Memory::encode_head(&self.regions));
        v.extend_from_slice(&self.data);
        v
    }

    /// The bytes of region `i`.
    pub fn bytes_of(&self, i: usize) -> &[u8] {
        let start: u64 = self.regions[..i].iter().map(|r| r.sent).sum();
        let r = &self.regions[i];
        &self.data[start as usize..(start + r.sent) as usize]
    }
}

/// A thread's general-purpose registers as the program saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8 ... r15, in that order.
    pub gpr: [u64; 15],
}

/// Index of rbp in [`Regs::gpr`].
pub const RBP: usize = 6;
/// The names of [`Regs::gpr`], in order.
pub const GPR_NAMES: [&str; 15] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];

/// Bytes of one thread in a crash record: tid, padding, 18 registers.
const THREAD_LEN: usize = 8 + 18 * 8;

/// One thread's state at the crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadState {
    /// Thread id.
    pub tid: u32,
    /// Registers (for a thread blocked in the kernel: where it entered it).
    pub regs: Regs,
}

/// Why and where the program died, with what the host needs to unwind its stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// The signal that killed the program.
    pub signal: u32,
    /// `si_code` of the signal.
    pub code: i32,
    /// The faulting address, for SIGSEGV/SIGBUS/SIGILL/SIGFPE.
    pub fault_addr: Option<u64>,
    /// The thread that crashed.
    pub tid: u32,
    /// What the kernel added to the program's addresses when it loaded it.
    pub load_bias: u64,
    /// Every thread, the crashed one first.
    pub threads: Vec<ThreadState>,
    /// Address of the first byte of [`Crash::stack`] (the crashed thread's stack pointer).
    pub stack_addr: u64,
    /// The crashed thread's stack from its stack pointer upwards.
    pub stack: Vec<u8>,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the header or body says.
    Truncated,
    /// The magic is wrong.
    BadMagic,
    /// A kind this version does not know.
    UnknownKind(u16),
    /// A count or length out of range.
    BadLength,
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordError::Truncated => f.write_str("record truncated"),
            RecordError::BadMagic => f.write_str("not a record (bad magic)"),
            RecordError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            RecordError::BadLength => f.write_str("record length out of range"),
        }
    }
}

fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn put_u64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// A header for a record of `kind` with a body of `len` bytes.
pub fn header(kind: Kind, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&(kind as u16).to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h
}

impl Crash {
    /// The body's fixed part and threads (everything but the stack bytes, which the kernel
    /// streams straight from the program's memory after it).
    pub fn encode_head(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48 + self.threads.len() * THREAD_LEN);
        put_u32(&mut v, self.signal);
        put_u32(&mut v, self.code as u32);
        put_u64(&mut v, self.fault_addr.unwrap_or(0));
        put_u32(&mut v, u32::from(self.fault_addr.is_some()));
        put_u32(&mut v, self.tid);
        put_u64(&mut v, self.load_bias);
        put_u32(&mut v, self.threads.len() as u32);
        put_u32(&mut v, 0);
        for t in &self.threads {
            put_u32(&mut v, t.tid);
            put_u32(&mut v, 0);
            put_u64(&mut v, t.regs.rip);
            put_u64(&mut v, t.regs.rsp);
            put_u64(&mut v, t.regs.rflags);
            for g in t.regs.gpr {
                put_u64(&mut v, g);
            }
        }
        put_u64(&mut v, self.stack_addr);
        put_u32(&mut v, self.stack.len() as u32);
        put_u32(&mut v, 0);
        v
    }

    /// The whole record: header, body, stack bytes.
    pub fn encode(&self) -> Vec<u8> {
        let head = self.encode_head();
        let mut v = Vec::with_capacity(HEADER_LEN + head.len() + self.stack.len());
        v.extend_from_slice(&header(Kind::Crash, (head.len() + self.stack.len()) as u32));
        v.extend_from_slice(&head);
        v.extend_from_slice(&self.stack);
        v
    }
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        let end = self.at.checked_add(n).ok_or(RecordError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(RecordError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// A parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// See [`Crash`].
    Crash(Crash),
    /// See [`Memory`].
    Memory(Memory),
    /// See [`Syscall`].
    Syscall(Syscall),
    /// See [`Missing`].
    Missing(Missing),
    /// See [`KernelPanic`].
    KernelPanic(KernelPanic),
    /// See [`Profile`].
    Profile(Profile),
    /// See [`Boot`].
    Boot(Boot),
    /// See [`Exec`].
    Exec(Exec),
}

/// Parses the first record of `bytes`; returns it and the bytes it used.
pub fn parse(bytes: &[u8]) -> Result<(Record, usize), RecordError> {
    if bytes.len() < HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    if bytes[0..4] != MAGIC {
        return Err(RecordError::BadMagic);
    }
    let kind = u16::from_le_bytes([bytes[4], bytes[5]]);
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let body = bytes
        .get(HEADER_LEN..HEADER_LEN.checked_add(len).ok_or(RecordError::BadLength)?)
        .ok_or(RecordError::Truncated)?;
    let record = match kind {
        1 => Record::Crash(parse_crash(body)?),
        2 => Record::Memory(parse_memory(body)?),
        3 => Record::Syscall(parse_syscall(body)?),
        4 => Record::Missing(Missing {
            path: body.to_vec(),
        }),
        5 if body.len() % 8 == 0 && body.len() / 8 <= KernelPanic::MAX_FRAMES => {
            Record::KernelPanic(KernelPanic {
                frames: body
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            })
        }
        5 => return Err(RecordError::BadLength),
        6 => Record::Profile(parse_profile(body)?),
        7 => Record::Boot(parse_boot(body)?),
        8 if body.len() >= 8 => Record::Exec(Exec {
            load_bias: u64::from_le_bytes(
                body[..8].try_into().map_err(|_| RecordError::BadLength)?,
            ),
            path: body[8..].to_vec(),
        }),
        8 => return Err(RecordError::BadLength),
        k => return Err(RecordError::UnknownKind(k)),
    };
    Ok((record, HEADER_LEN + len))
}

/// Parses every whole record in `bytes`, stopping at the first that does not parse.
pub fn parse_all(mut bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while let Ok((r, used)) = parse(bytes) {
        out.push(r);
        bytes = &bytes[used..];
    }
    out
}

fn parse_syscall(body: &[u8]) -> Result<Syscall, RecordError> {
    let mut r = Reader { b: body, at: 0 };
    let tid = r.u32()?;
    let phase = match r.u32()? {
        0 => Phase::Complete,
        1 => Phase::Unfinished,
        2 => Phase::Resumed,
        _ => return Err(RecordError::BadLength),
    };
    let nr = r.u64()?;
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = r.u64()?;
    }
    let ret = r.u64()? as i64;
    let start_ns = r.u64()?;
    let end_ns = r.u64()?;
    let n = r.u32()? as usize;
    r.u32()?;
    if n > 6 {
        return Err(RecordError::BadLength);
    }
    let mut blobs = Vec::with_capacity(n);
    for _ in 0..n {
        let head = r.take(4)?;
        let (arg, out) = (head[0], head[1] != 0);
        let len = r.u32()? as usize;
        if arg > 5 || len > crate::trace::MAX_STR {
            return Err(RecordError::BadLength);
        }
        blobs.push(Blob {
            arg,
            out,
            data: r.take(len)?.to_vec(),
        });
    }
    Ok(Syscall {
        tid,
        phase,
        nr,
        args,
        ret,
        start_ns,
        end_ns,
        blobs,
    })
}

fn parse_memory(body: &[u8]) -> Result<Memory, RecordError> {
    let mut r = Reader { b: body, at: 0 };
    let n = r.u32()? as usize;
    r.u32()?;
    if n > body.len() / REGION_LEN {
        return Err(RecordError::BadLength);
    }
    let mut regions = Vec::with_capacity(n);
    let mut total: u64 = 0;
    for _ in 0..n {
        let region = Region {
            start: r.u64()?,
            end: r.u64()?,
            prot: r.u32()?,
            kind: r.u32()?,
            sent: r.u64()?,
        };
        if region.end < region.start || region.sent > region.end - region.start {
            return Err(RecordError::BadLength);
        }
        total = total
            .checked_add(region.sent)
            .ok_or(RecordError::BadLength)?;
        regions.push(region);
    }
    let len = usize::try_from(total).map_err(|_| RecordError::BadLength)?;
    let data = r.take(len)?.to_vec();
    Ok(Memory { regions, data })
}

fn parse_crash(body: &[u8]) -> Result<Crash, RecordError> {
    let mut r = Reader { b: body, at: 0 };
    let signal = r.u32()?;
    let code = r.u32()? as i32;
    let addr = r.u64()?;
    let has_addr = r.u32()? != 0;
    let tid = r.u32()?;
    let load_bias = r.u64()?;
    let n = r.u32()? as usize;
    r.u32()?;
    if n > MAX_THREADS {
        return Err(RecordError::BadLength);
    }
    let mut threads = Vec::with_capacity(n);
    for _ in 0..n {
        let tid = r.u32()?;
        r.u32()?;
        let rip = r.u64()?;
        let rsp = r.u64()?;
        let rflags = r.u64()?;
        let mut gpr = [0u64; 15];
        for g in &mut gpr {
            *g = r.u64()?;
        }
        threads.push(ThreadState {
            tid,
            regs: Regs {
                rip,
                rsp,
                rflags,
                gpr,
            },
        });
    }
    let stack_addr = r.u64()?;
    let stack_len = r.u32()? as usize;
    r.u32()?;
    if stack_len > MAX_STACK {
        return Err(RecordError::BadLength);
    }
    let stack = r.take(stack_len)?.to_vec();
    Ok(Crash {
        signal,
        code,
        fault_addr: has_addr.then_some(addr),
        tid,
        load_bias,
        threads,
        stack_addr,
        stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Crash {
        Crash {
            signal: 11,
            code: 1,
            fault_addr: Some(0x10),
            tid: 1,
            load_bias: 0x5555_5555_4000,
            threads: vec![
                ThreadState {
                    tid: 1,
                    regs: Regs {
                        rip: 0x5555_5555_9000,
                        rsp: 0x7fff_0000,
                        rflags: 0x246,
                        gpr: [7; 15],
                    },
                },
                ThreadState {
                    tid: 2,
                    regs: Regs::default(),
                },
            ],
            stack_addr: 0x7fff_0000,
            stack: vec![1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn crash_records_round_trip() {
        let c = sample();
        let bytes = c.encode();
        let (r, used) = parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(r, Record::Crash(c.clone()));
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        two.extend_from_slice(b"KREC junk");
        assert_eq!(parse_all(&two).len(), 2);
        let no_addr = Crash {
            fault_addr: None,
            ..c
        };
        let (r, _) = parse(&no_addr.encode()).unwrap();
        assert_eq!(r, Record::Crash(no_addr));
    }

    #[test]
    fn syscall_and_missing_records_round_trip() {
        let s = Syscall {
            tid: 2,
            phase: Phase::Resumed,
            nr: 257,
            args: [u64::MAX - 99, 0x1000, 0x80000, 0, 0, 0],
            ret: -2,
            start_ns: 10,
            end_ns: 20,
            blobs: vec![Blob {
                arg: 1,
                out: false,
                data: b"/etc/passwd".to_vec(),
            }],
        };
        let bytes = s.encode();
        assert_eq!(
            parse(&bytes).unwrap(),
            (Record::Syscall(s.clone()), bytes.len())
        );
        assert_eq!(s.blob(1), Some(&b"/etc/passwd"[..]));
        assert_eq!(s.blob(0), None);
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err());
        }
        let b = Boot {
            tsc_hz: 2_000_000_000,
            stamps: alloc::vec![1000, 0, 3000],
        };
        let bytes = b.encode();
        assert_eq!(
            parse(&bytes).unwrap(),
            (Record::Boot(b.clone()), bytes.len())
        );
        assert_eq!(b.stamp(BootPhase::Memory), None);
        assert_eq!(b.us_since_entry(BootPhase::Cpu), Some(1.0));
        assert_eq!(b.us_since_entry(BootPhase::Program), None);
        let m = Missing {
            path: b"/etc/ssl/certs/ca-certificates.crt".to_vec(),
        };
        let bytes = m.encode();
        assert_eq!(parse(&bytes).unwrap(), (Record::Missing(m), bytes.len()));
        let e = Exec {
            load_bias: 0x5555_5555_4000,
            path: b"/bin/busybox".to_vec(),
        };
        let bytes = e.encode();
        assert_eq!(parse(&bytes).unwrap(), (Record::Exec(e), bytes.len()));
        let profile = Profile {
            interval_ns: 1_003_009,
            stacks: vec![
                ProfileStack {
                    count: 7,
                    place: Place::User,
                    pcs: vec![0x40_1000, 0x40_2000],
                },
                ProfileStack {
                    count: 2,
                    place: Place::Syscall(1),
                    pcs: vec![0x40_3000],
                },
                ProfileStack {
                    count: 1,
                    place: Place::Idle,
                    pcs: vec![],
                },
            ],
        };
        let bytes = profile.encode();
        assert_eq!(
            parse(&bytes).unwrap(),
            (Record::Profile(profile), bytes.len())
        );
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err());
        }
        let mut lie = bytes.clone();
        lie[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&lie).is_err());
        let k = KernelPanic {
            frames: vec![0x10_1234, 0x10_5678],
        };
        let bytes = k.encode();
        assert_eq!(
            parse(&bytes).unwrap(),
            (Record::KernelPanic(k), bytes.len())
        );
        let mut odd = bytes.clone();
        odd[8] = 12;
        assert!(parse(&odd).is_err());
    }

    #[test]
    fn memory_records_round_trip() {
        let m = Memory {
            regions: vec![
                Region {
                    start: 0x1000,
                    end: 0x3000,
                    prot: 6,
                    kind: REGION_HEAP,
                    sent: 0x2000,
                },
                Region {
                    start: 0x7000,
                    end: 0x9000,
                    prot: 6,
                    kind: REGION_STACK,
                    sent: 0x1000,
                },
            ],
            data: vec![7u8; 0x3000],
        };
        let bytes = m.encode();
        let (r, used) = parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(r, Record::Memory(m.clone()));
        assert_eq!(m.bytes_of(1).len(), 0x1000);
        for cut in [0, 20, 60, bytes.len() - 1] {
            assert!(parse(&bytes[..cut]).is_err());
        }
        // A region claiming more bytes than it spans.
        let mut bad = bytes;
        bad[HEADER_LEN + 8 + 24..HEADER_LEN + 8 + 32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&bad), Err(RecordError::BadLength));
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(RecordError::BadMagic));
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(parse(&bad), Err(RecordError::UnknownKind(9)));
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&bad).is_err());
        // A thread count beyond the limit.
        let mut bad = bytes;
        bad[HEADER_LEN + 32..HEADER_LEN + 36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&bad), Err(RecordError::BadLength));
    }
}
