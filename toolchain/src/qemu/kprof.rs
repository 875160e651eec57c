//! `run --profile-kernel`: sampling the guest's kernel from outside, through QMP.
//!
//! The program profiler (`run --profile`) runs in the kernel and sees the program's
//! stacks; a system call is one `[kernel] NAME` frame to it. This one runs in the runner
//! and sees the kernel's own stacks. A thread talks to a QMP socket of its own (QEMU serves
//! one client per socket, so the power button keeps its socket) and, per sample, in one
//! round trip: asks whether the guest runs (`query-status`), stops it (HMP `stop`), reads
//! CPU 0's registers (`info registers`) and 2 KiB of stack from the frame pointer
//! (`x /256gx $ebp`, which QEMU evaluates as the whole 64-bit RBP). It then walks the
//! kernel's frame-pointer chain (the kernel is built with frame pointers): `[rbp]` is the
//! caller's RBP, `[rbp+8]` the return address, inside the window read or with one more
//! `x /2gx` per frame beyond it, until the next RBP is not above the current one, is 0, or a
//! return address leaves the kernel's text. Then it continues the guest (`cont`).
//!
//! A sample in ring 3 counts as user time and one in ring 0 outside the kernel's text as
//! firmware (UEFI boots). The guest's clocks stand still while it is stopped, so what it
//! measures of itself barely changes; the run takes longer in wall-clock time, by the
//! share [`Samples::held`] reports. The next sample is due one interval after the last one
//! finished, so sampling never takes all of the guest's time.
//!
//! The sampler never holds up the run: it ends when QEMU closes the socket (the guest
//! exited), when the runner says the run is over ([`Sampler::finish`] also shuts the socket
//! down), and at the first QMP error, which it records in [`Samples::ended`].

use super::qmp;
use std::collections::BTreeMap;
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most frames of one kernel stack (the sampled RIP included).
pub const MAX_FRAMES: usize = 16;
/// 64-bit words of stack read with the registers, from RBP up (2 KiB).
const WINDOW_WORDS: u64 = 256;
/// How long the sampler waits for QEMU's QMP socket to appear.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// How long one QMP exchange may take before the sampler gives up.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the sampler saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Samples {
    /// Kernel stacks, innermost first: the sampled RIP, then return addresses, each with
    /// the number of samples that found it.
    pub kernel: BTreeMap<Vec<u64>, u64>,
    /// Samples in user mode (ring 3).
    pub user: u64,
    /// Samples in ring 0 outside the kernel's text (firmware, the EFI stub).
    pub firmware: u64,
    /// Samples taken while the CPU was halted (the kernel's idle loop); also counted in
    /// [`Samples::kernel`].
    pub halted: u64,
    /// Time the guest was held stopped for sampling.
    pub held: Duration,
    /// From the first sample to the end of the last.
    pub span: Duration,
    /// Why sampling ended before the run did (a QMP error), if it did.
    pub ended: Option<String>,
}

impl Samples {
    /// Every sample.
    pub fn total(&self) -> u64 {
        self.kernel.values().sum::<u64>() + self.user + self.firmware
    }

    /// Samples in the kernel.
    pub fn in_kernel(&self) -> u64 {
        self.kernel.values().sum()
    }
}

/// The registers a sample needs, from HMP's `info registers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regs {
    /// Instruction pointer.
    pub rip: u64,
    /// Frame pointer.
    pub rbp: u64,
    /// Privilege level (0 kernel, 3 user).
    pub cpl: u8,
    /// The CPU is halted (`hlt`, waiting for an interrupt).
    pub halted: bool,
}

/// Reads RIP, RBP, CPL and HLT from the text of `info registers` (the first CPU shown).
pub fn parse_registers(text: &str) -> Option<Regs> {
    let mut rip = None;
    let mut rbp = None;
    let mut cpl = None;
    let mut halted = None;
    for token in text.split_whitespace() {
        let Some((name, value)) = token.split_once('=') else {
            continue;
        };
        let hex = || u64::from_str_radix(value, 16).ok();
        match name {
            "RIP" if rip.is_none() => rip = hex(),
            "RBP" if rbp.is_none() => rbp = hex(),
            "CPL" if cpl.is_none() => cpl = value.parse().ok(),
            "HLT" if halted.is_none() => halted = Some(value == "1"),
            _ => {}
        }
    }
    Some(Regs {
        rip: rip?,
        rbp: rbp?,
        cpl: cpl?,
        halted: halted.unwrap_or(false),
    })
}

/// The 64-bit words of an HMP `x /Ngx` dump (`ADDR: 0xV 0xV` lines), with their addresses,
/// up to the first line QEMU could not read.
pub fn parse_dump(text: &str) -> Vec<(u64, u64)> {
    let mut words = Vec::new();
    for line in text.lines() {
        let Some((addr, values)) = line.split_once(':') else {
            break;
        };
        let Ok(mut addr) = u64::from_str_radix(addr.trim(), 16) else {
            break;
        };
        let mut any = false;
        for v in values.split_whitespace() {
            let Some(v) = v
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                return words;
            };
            words.push((addr, v));
            addr = addr.wrapping_add(8);
            any = true;
        }
        if !any {
            break;
        }
    }
    words
}

/// Walks a frame-pointer chain from `rip` and `rbp`: `rip`, then the return addresses, at
/// most [`MAX_FRAMES`]. `read(addr)` gives the 16 bytes at `addr` (saved RBP, return
/// address). The walk ends when the next RBP is not above the current one (or is 0), when
/// memory cannot be read, or at a return address outside `text`.
pub fn walk(
    rip: u64,
    mut rbp: u64,
    text: &[Range<u64>],
    mut read: impl FnMut(u64) -> Option<(u64, u64)>,
) -> Vec<u64> {
    let mut pcs = vec![rip];
    while pcs.len() < MAX_FRAMES && rbp != 0 && rbp % 8 == 0 {
        let Some((next, ret)) = read(rbp) else {
            break;
        };
        if !in_text(text, ret) {
            break;
        }
        pcs.push(ret);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    pcs
}

/// Whether `addr` lies in one of the ranges of `text`.
pub fn in_text(text: &[Range<u64>], addr: u64) -> bool {
    text.iter().any(|r| r.contains(&addr))
}

/// The address ranges of the kernel's code in a PVH image: its executable `PT_LOAD`
/// segments (the payload, which holds the program, is not executable).
pub fn kernel_text(image: &[u8]) -> Vec<Range<u64>> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let Ok(elf) = ElfFile64::<object::LittleEndian>::parse(image) else {
        return Vec::new();
    };
    let e = elf.endian();
    elf.elf_program_headers()
        .iter()
        .filter(|p| {
            p.p_type(e) == object::elf::PT_LOAD && p.p_flags(e) & object::elf::PF_X != 0
        })
        .map(|p| p.p_vaddr(e)..p.p_vaddr(e) + p.p_memsz(e))
        .collect()
}

/// The running sampler of one QEMU.
pub struct Sampler {
    done: Arc<AtomicBool>,
    stream: Arc<Mutex<Option<UnixStream>>>,
    handle: JoinHandle<Samples>,
}

impl Sampler {
    /// Starts sampling the QEMU that serves (or is about to serve) QMP at `socket`, `hz`
    /// times a second at most, with the kernel's code at `text`.
    pub fn start(socket: PathBuf, hz: u32, text: Vec<Range<u64>>) -> Sampler {
        let done = Arc::new(AtomicBool::new(false));
        let stream = Arc::new(Mutex::new(None));
        let handle = {
            let (done, stream) = (done.clone(), stream.clone());
            std::thread::spawn(move || {
                let mut s = Samples::default();
                if let Err(e) = sample_loop(&socket, hz, &text, &done, &stream, &mut s) {
                    if !done.load(Ordering::Acquire) {
                        s.ended = Some(e);
                    }
                }
                s
            })
        };
        Sampler {
            done,
            stream,
            handle,
        }
    }

    /// Ends sampling (QEMU has exited or is about to) and returns the samples.
    pub fn finish(self) -> Samples {
        self.done.store(true, Ordering::Release);
        if let Ok(Some(s)) = self.stream.lock().map(|mut s| s.take()) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.handle.join().unwrap_or_else(|_| Samples {
            ended: Some("the kernel profiler's thread panicked".into()),
            ..Samples::default()
        })
    }
}

/// Sleeps for `d`, or less when `done` is set meanwhile. Returns whether it is set.
fn sleep_unless(done: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if done.load(Ordering::Acquire) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

fn sample_loop(
    socket: &std::path::Path,
    hz: u32,
    text: &[Range<u64>],
    done: &AtomicBool,
    shared: &Mutex<Option<UnixStream>>,
    s: &mut Samples,
) -> Result<(), String> {
    // QEMU makes the socket as it starts.
    let start = Instant::now();
    let mut client = loop {
        if done.load(Ordering::Acquire) {
            return Ok(());
        }
        match UnixStream::connect(socket) {
            Ok(stream) => {
                let copy = stream
                    .try_clone()
                    .map_err(|e| format!("QMP socket: {e}"))?;
                if let Ok(mut g) = shared.lock() {
                    *g = Some(copy);
                }
                break qmp::Client::over(stream, IO_TIMEOUT)
                    .map_err(|e| format!("QMP: {e}"))?;
            }
            Err(_) if start.elapsed() < CONNECT_DEADLINE => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("could not connect to QEMU's QMP socket: {e}")),
        }
    };
    let interval = Duration::from_secs(1) / hz.max(1);
    let mut first = None;
    loop {
        if sleep_unless(done, interval) {
            return Ok(());
        }
        let t0 = Instant::now();
        first.get_or_insert(t0);
        let r = sample(&mut client, text, s);
        s.span = first.map(|f| f.elapsed()).unwrap_or_default();
        match r {
            Ok(held) => s.held += held.then(|| t0.elapsed()).unwrap_or_default(),
            // QEMU closed the socket: it exited with the guest.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(format!("QMP: {e}")),
        }
    }
}

/// Takes one sample. Returns whether the guest was stopped for it (it is not when it was
/// not running: starting, paused by someone else, shutting down).
fn sample(client: &mut qmp::Client, text: &[Range<u64>], s: &mut Samples) -> std::io::Result<bool> {
    let hmp = |c: &str| {
        serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": c },
        })
    };
    let answers = client.batch(&[
        serde_json::json!({ "execute": "query-status" }),
        hmp("stop"),
        hmp("info registers"),
        hmp(&format!("x /{WINDOW_WORDS}gx $ebp")),
    ])?;
    let was_running = answers[0]
        .as_ref()
        .ok()
        .and_then(|v| v.get("running"))
        .and_then(|r| r.as_bool())
        .unwrap_or(false);
    if !was_running {
        // Not ours to continue; whatever it saw is not a sample of a running guest.
        return Ok(false);
    }
    let text_of = |i: usize| match &answers[i] {
        Ok(v) => v.as_str().unwrap_or_default().to_string(),
        Err(_) => String::new(),
    };
    // From here the guest is stopped: it is continued whatever happens.
    let walked = (|| -> std::io::Result<()> {
        let Some(regs) = parse_registers(&text_of(2)) else {
            return Err(std::io::Error::other(
                "`info registers` did not show RIP, RBP and CPL",
            ));
        };
        if regs.cpl != 0 {
            s.user += 1;
            return Ok(());
        }
        if !in_text(text, regs.rip) {
            s.firmware += 1;
            return Ok(());
        }
        let window: BTreeMap<u64, u64> = parse_dump(&text_of(3)).into_iter().collect();
        let mut failed = None;
        let pcs = walk(regs.rip, regs.rbp, text, |addr| {
            if let (Some(&a), Some(&b)) = (window.get(&addr), window.get(&(addr + 8))) {
                return Some((a, b));
            }
            match client.hmp(&[&format!("x /2gx {addr:#x}")]) {
                Ok(mut r) => {
                    let words = parse_dump(&r.remove(0).unwrap_or_default());
                    match words[..] {
                        [(_, a), (_, b), ..] => Some((a, b)),
                        _ => None,
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if regs.halted {
            s.halted += 1;
        }
        *s.kernel.entry(pcs).or_insert(0) += 1;
        Ok(())
    })();
    let resumed = client.hmp(&["cont"]);
    walked?;
    resumed?.remove(0).map_err(std::io::Error::other)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGS: &str = "RAX=0000000000000005 RBX=00000000005ed6b4 RCX=00000000005858a0 RDX=0000000000000031\r\n\
RSI=00007fffffffe258 RDI=000000000000000a RBP=000000000012fe40 RSP=000000000012fd00\r\n\
RIP=000000000016ca26 RFL=00000293 [--S-A-C] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n\
ES =0000 0000000000000000 ffffffff 00cf1300\r\n";

    #[test]
    fn registers_and_dumps_parse() {
        assert_eq!(
            parse_registers(REGS),
            Some(Regs {
                rip: 0x16ca26,
                rbp: 0x12fe40,
                cpl: 0,
                halted: true
            })
        );
        assert_eq!(parse_registers("RIP=1 CPL=0"), None);
        let dump = "000000000012fe40: 0x000000000012fe80 0x000000000010152b\r\n\
000000000012fe50: 0x0000000000000000 0x0000000000171460\r\n\
000000000012fe60: Cannot access memory\r\n";
        assert_eq!(
            parse_dump(dump),
            [
                (0x12fe40, 0x12fe80),
                (0x12fe48, 0x10152b),
                (0x12fe50, 0),
                (0x12fe58, 0x171460)
            ]
        );
        assert!(parse_dump("unknown register\r\nTry \"help x\"").is_empty());
        assert!(parse_dump("0000000000000001: Cannot access memory\r\n").is_empty());
    }

    #[test]
    fn the_walk_follows_rising_frame_pointers_inside_the_text() {
        let text = [0x10_0000..0x18_0000];
        let mem: BTreeMap<u64, (u64, u64)> = [
            (0x1000, (0x1100, 0x10_1000)),
            (0x1100, (0x1200, 0x10_2000)),
            // The next return address is the program's: the kernel's stack ends here.
            (0x1200, (0x7fff_0000, 0x40_1000)),
        ]
        .into();
        let pcs = walk(0x16_0000, 0x1000, &text, |a| mem.get(&a).copied());
        assert_eq!(pcs, [0x16_0000, 0x10_1000, 0x10_2000]);
        // A frame pointer that does not rise ends the walk after its return address.
        let down: BTreeMap<u64, (u64, u64)> = [(0x1000, (0x800, 0x10_1000))].into();
        assert_eq!(
            walk(0x16_0000, 0x1000, &text, |a| down.get(&a).copied()),
            [0x16_0000, 0x10_1000]
        );
        // Unreadable memory, a zero or misaligned RBP.
        assert_eq!(walk(0x16_0000, 0x1000, &text, |_| None), [0x16_0000]);
        assert_eq!(walk(0x16_0000, 0, &text, |_| unreachable!()), [0x16_0000]);
        assert_eq!(walk(0x16_0000, 0x1003, &text, |_| unreachable!()), [0x16_0000]);
        // A loop of frames stops at MAX_FRAMES.
        let mut next = 0x1000;
        let deep = walk(0x16_0000, 0x1000, &text, |a| {
            next = a + 0x10;
            Some((next, 0x10_1000))
        });
        assert_eq!(deep.len(), MAX_FRAMES);
        assert!(in_text(&text, 0x10_0000) && !in_text(&text, 0x18_0000));
    }
}
