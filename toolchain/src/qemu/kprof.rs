//! `run --profile-kernel`: sampling the guest's kernel from outside, through QMP.
//!
//! The program profiler (`run --profile`) runs in the kernel and sees the program's
//! stacks; a system call is one `[kernel] NAME` frame to it. This one runs in the runner
//! and sees the kernel's own stacks. A thread talks to a QMP socket of its own (QEMU serves
//! one client per socket, so the power button keeps its socket) and, per sample, in one
//! round trip: asks whether the guest runs (`query-status`), stops it (HMP `stop`), reads
//! CPU 0's registers (`info registers`) and 4 KiB of stack from the stack pointer
//! (`x /512gx $esp`, which QEMU evaluates as the whole 64-bit RSP). It then walks the
//! kernel's frame-pointer chain (the kernel is built with frame pointers): `[rbp]` is the
//! caller's RBP, `[rbp+8]` the return address, inside the window read or with one more
//! `x` beyond it, until the next RBP is not above the current one, is 0, or a return
//! address leaves the kernel's text. Then it continues the guest (`cont`).
//!
//! TCG stops a CPU between translation blocks, and a call ends one, so many samples land
//! on a function's first instruction, before its `push rbp; mov rbp, rsp`: RBP is still
//! the caller's, and a plain walk would leave the caller out. The sampler reads the
//! instruction at RIP from the image's own copy of the kernel's code, and there (and at a
//! `ret`) takes the return address from the top of the stack first.
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
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most frames of one kernel stack (the sampled RIP included).
pub const MAX_FRAMES: usize = 16;
/// The outermost "address" of a stack cut at [`MAX_FRAMES`] that went on.
pub const TRUNCATED: u64 = 0;
/// 64-bit words of stack read with the registers, from RSP up (4 KiB: most of a system
/// call's kernel stack, so few samples need another read).
const WINDOW_WORDS: u64 = 512;
/// 64-bit words read at a frame outside what was read before (the frames above it follow).
const MORE_WORDS: u64 = 64;
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
    /// Stack pointer.
    pub rsp: u64,
    /// Frame pointer.
    pub rbp: u64,
    /// Privilege level (0 kernel, 3 user).
    pub cpl: u8,
    /// The CPU is halted (`hlt`, waiting for an interrupt).
    pub halted: bool,
}

/// Reads RIP, RSP, RBP, CPL and HLT from the text of `info registers` (the first CPU
/// shown; EIP, ESP and EBP in 32-bit modes).
pub fn parse_registers(text: &str) -> Option<Regs> {
    let mut rip = None;
    let mut rsp = None;
    let mut rbp = None;
    let mut cpl = None;
    let mut halted = None;
    for token in text.split_whitespace() {
        let Some((name, value)) = token.split_once('=') else {
            continue;
        };
        let hex = || u64::from_str_radix(value, 16).ok();
        match name {
            // 32-bit modes (firmware, the kernel's first instructions) show EIP...
            "RIP" | "EIP" if rip.is_none() => rip = hex(),
            "RSP" | "ESP" if rsp.is_none() => rsp = hex(),
            "RBP" | "EBP" if rbp.is_none() => rbp = hex(),
            "CPL" if cpl.is_none() => cpl = value.parse().ok(),
            "HLT" if halted.is_none() => halted = Some(value == "1"),
            _ => {}
        }
    }
    Some(Regs {
        rip: rip?,
        rsp: rsp?,
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

/// Walks the kernel's stack from `regs`: RIP, then the return addresses, at most
/// [`MAX_FRAMES`] (then [`TRUNCATED`] when the chain goes on). `read(addr)` gives the 64-bit word at `addr`. Where the instruction at
/// RIP shows the function's frame is not set up ([`KernelCode::frame_pending`]), the return
/// address on top of the stack comes first. Then the frame-pointer chain: `[rbp]` is the
/// next RBP, `[rbp+8]` a return address; the walk ends when the next RBP is not above the
/// current one (or is 0), when memory cannot be read, or at a return address outside the
/// kernel's code.
pub fn walk(regs: &Regs, code: &KernelCode, mut read: impl FnMut(u64) -> Option<u64>) -> Vec<u64> {
    let mut pcs = vec![regs.rip];
    if let Some(off) = code.frame_pending(regs.rip) {
        if let Some(ret) = read(regs.rsp.wrapping_add(off)).filter(|&r| code.contains(r)) {
            pcs.push(ret);
        }
    }
    let mut rbp = regs.rbp;
    while rbp != 0 && rbp.is_multiple_of(8) {
        let (Some(next), Some(ret)) = (read(rbp), read(rbp.wrapping_add(8))) else {
            break;
        };
        if !code.contains(ret) {
            break;
        }
        if pcs.len() == MAX_FRAMES {
            pcs.push(TRUNCATED);
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

/// The kernel's code, as the image holds it: its executable `PT_LOAD` segments (the
/// payload, which holds the program, is not executable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCode {
    /// Each segment's address and bytes.
    segments: Vec<(u64, Vec<u8>)>,
}

impl KernelCode {
    /// The kernel's code in the PVH image `image` (empty when it is not an ELF).
    pub fn from_image(image: &[u8]) -> KernelCode {
        use object::read::elf::{ElfFile64, ProgramHeader};
        let Ok(elf) = ElfFile64::<object::LittleEndian>::parse(image) else {
            return KernelCode::default();
        };
        let e = elf.endian();
        let segments = elf
            .elf_program_headers()
            .iter()
            .filter(|p| {
                p.p_type(e) == object::elf::PT_LOAD && p.p_flags(e) & object::elf::PF_X != 0
            })
            .filter_map(|p| {
                let bytes = p.data(e, image).ok()?;
                Some((p.p_vaddr(e), bytes.to_vec()))
            })
            .collect();
        KernelCode { segments }
    }

    /// Code of `bytes` at `addr` (tests).
    pub fn new(addr: u64, bytes: Vec<u8>) -> KernelCode {
        KernelCode {
            segments: vec![(addr, bytes)],
        }
    }

    /// Whether there is no code at all.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|(_, b)| b.is_empty())
    }

    /// The code from `addr` to its segment's end, if `addr` is kernel code.
    fn at(&self, addr: u64) -> Option<&[u8]> {
        self.segments.iter().find_map(|(start, bytes)| {
            let off = usize::try_from(addr.checked_sub(*start)?).ok()?;
            bytes.get(off..).filter(|b| !b.is_empty())
        })
    }

    /// Whether `addr` is kernel code.
    pub fn contains(&self, addr: u64) -> bool {
        self.at(addr).is_some()
    }

    /// Where the instruction at `rip` shows that its function's frame is not (or no
    /// longer) set up, the offset from RSP of its return address: 0 at `push rbp` (a
    /// function's first instruction) and at `ret`, 8 at `mov rbp, rsp` (after the push).
    pub fn frame_pending(&self, rip: u64) -> Option<u64> {
        match self.at(rip)? {
            [0x55, ..] | [0xc3, ..] => Some(0),
            [0x48, 0x89, 0xe5, ..] => Some(8),
            _ => None,
        }
    }
}

/// The running sampler of one QEMU.
pub struct Sampler {
    done: Arc<AtomicBool>,
    stream: Arc<Mutex<Option<UnixStream>>>,
    handle: JoinHandle<Samples>,
}

impl Sampler {
    /// Starts sampling the QEMU that serves (or is about to serve) QMP at `socket`, `hz`
    /// times a second at most, with the kernel's code `code`.
    pub fn start(socket: PathBuf, hz: u32, code: KernelCode) -> Sampler {
        let done = Arc::new(AtomicBool::new(false));
        let stream = Arc::new(Mutex::new(None));
        let handle = {
            let (done, stream) = (done.clone(), stream.clone());
            std::thread::spawn(move || {
                let mut s = Samples::default();
                if let Err(e) = sample_loop(&socket, hz, &code, &done, &stream, &mut s) {
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
    code: &KernelCode,
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
                let copy = stream.try_clone().map_err(|e| format!("QMP socket: {e}"))?;
                if let Ok(mut g) = shared.lock() {
                    *g = Some(copy);
                }
                // Finished meanwhile, before the stream could be shut down for us.
                if done.load(Ordering::Acquire) {
                    return Ok(());
                }
                break qmp::Client::over(stream, IO_TIMEOUT).map_err(|e| format!("QMP: {e}"))?;
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
        let r = sample(&mut client, code, s);
        s.span = first.map(|f| f.elapsed()).unwrap_or_default();
        match r {
            Ok(true) => s.held += t0.elapsed(),
            Ok(false) => {}
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
fn sample(client: &mut qmp::Client, code: &KernelCode, s: &mut Samples) -> std::io::Result<bool> {
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
        hmp(&format!("x /{WINDOW_WORDS}gx $esp")),
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
        if !code.contains(regs.rip) {
            s.firmware += 1;
            return Ok(());
        }
        // The stack read so far; a word outside it costs one more read (of a frame).
        let mut stack: BTreeMap<u64, u64> = parse_dump(&text_of(3)).into_iter().collect();
        let mut failed = None;
        let pcs = walk(&regs, code, |addr| {
            if let Some(&w) = stack.get(&addr) {
                return Some(w);
            }
            if failed.is_some() {
                return None;
            }
            match client.hmp(&[&format!("x /{MORE_WORDS}gx {addr:#x}")]) {
                Ok(mut r) => {
                    stack.extend(parse_dump(&r.remove(0).unwrap_or_default()));
                    stack.get(&addr).copied()
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

    const REGS: &str =
        "RAX=0000000000000005 RBX=00000000005ed6b4 RCX=00000000005858a0 RDX=0000000000000031\r\n\
RSI=00007fffffffe258 RDI=000000000000000a RBP=000000000012fe40 RSP=000000000012fd00\r\n\
RIP=000000000016ca26 RFL=00000293 [--S-A-C] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n\
ES =0000 0000000000000000 ffffffff 00cf1300\r\n";

    #[test]
    fn registers_and_dumps_parse() {
        assert_eq!(
            parse_registers(REGS),
            Some(Regs {
                rip: 0x16ca26,
                rsp: 0x12fd00,
                rbp: 0x12fe40,
                cpl: 0,
                halted: true
            })
        );
        assert_eq!(parse_registers("RIP=1 RSP=2 CPL=0"), None);
        assert_eq!(
            parse_registers("EAX=00000000 EBP=00000000 ESP=00006d7c\nEIP=000e9a5b EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0"),
            Some(Regs {
                rip: 0xe9a5b,
                rsp: 0x6d7c,
                rbp: 0,
                cpl: 0,
                halted: false
            })
        );
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

    /// Code at 0x10_0000: `push rbp; mov rbp, rsp; nop; ret` then zeros.
    fn code() -> KernelCode {
        let mut bytes = vec![0x55, 0x48, 0x89, 0xe5, 0x90, 0xc3];
        bytes.resize(0x8_0000, 0);
        KernelCode::new(0x10_0000, bytes)
    }

    fn regs(rip: u64, rsp: u64, rbp: u64) -> Regs {
        Regs {
            rip,
            rsp,
            rbp,
            cpl: 0,
            halted: false,
        }
    }

    fn memory(words: &[(u64, u64)]) -> impl FnMut(u64) -> Option<u64> + '_ {
        |a| words.iter().find(|w| w.0 == a).map(|w| w.1)
    }

    #[test]
    fn the_walk_follows_rising_frame_pointers_inside_the_text() {
        let code = code();
        let mem = [
            (0x1000, 0x1100),
            (0x1008, 0x10_1000),
            (0x1100, 0x1200),
            (0x1108, 0x10_2000),
            // The next return address is the program's: the kernel's stack ends here.
            (0x1200, 0x7fff_0000),
            (0x1208, 0x40_1000),
        ];
        let pcs = walk(&regs(0x16_0000, 0xf00, 0x1000), &code, memory(&mem));
        assert_eq!(pcs, [0x16_0000, 0x10_1000, 0x10_2000]);
        // A frame pointer that does not rise ends the walk after its return address.
        let down = [(0x1000, 0x800), (0x1008, 0x10_1000)];
        assert_eq!(
            walk(&regs(0x16_0000, 0xf00, 0x1000), &code, memory(&down)),
            [0x16_0000, 0x10_1000]
        );
        // Unreadable memory, a zero or misaligned RBP.
        assert_eq!(
            walk(&regs(0x16_0000, 0xf00, 0x1000), &code, |_| None),
            [0x16_0000]
        );
        for rbp in [0, 0x1003] {
            assert_eq!(
                walk(&regs(0x16_0000, 0xf00, rbp), &code, |_| unreachable!()),
                [0x16_0000]
            );
        }
        // A loop of frames stops at MAX_FRAMES.
        let deep = walk(&regs(0x16_0000, 0xf00, 0x1000), &code, |a| {
            Some(if a % 16 == 0 { a + 0x10 } else { 0x10_1000 })
        });
        assert_eq!(deep.len(), MAX_FRAMES + 1);
        assert_eq!(deep.last(), Some(&TRUNCATED));
        assert!(code.contains(0x10_0000) && !code.contains(0x18_0000));
    }

    #[test]
    fn a_function_entered_but_not_yet_framed_keeps_its_caller() {
        let code = code();
        // RBP is the caller's frame; the return address into the caller is on top of the
        // stack (at `push rbp` and `ret`), or under the pushed RBP (at `mov rbp, rsp`).
        let mem = [
            (0xf00, 0x10_3000),
            (0xef8, 0x1000),
            (0x1000, 0x1100),
            (0x1008, 0x10_1000),
        ];
        for (rip, rsp) in [(0x10_0000, 0xf00), (0x10_0005, 0xf00), (0x10_0001, 0xef8)] {
            assert_eq!(
                walk(&regs(rip, rsp, 0x1000), &code, memory(&mem)),
                [rip, 0x10_3000, 0x10_1000],
                "{rip:#x}"
            );
        }
        // Elsewhere in a function the top of the stack is not looked at.
        assert_eq!(
            walk(&regs(0x10_0004, 0xf00, 0x1000), &code, memory(&mem)),
            [0x10_0004, 0x10_1000]
        );
        assert_eq!(code.frame_pending(0x20_0000), None);
    }

    #[test]
    fn kernel_code_comes_from_the_images_executable_segments() {
        let image = std::fs::read("/proc/self/exe").unwrap();
        let code = KernelCode::from_image(&image);
        assert!(!code.is_empty());
        assert!(KernelCode::from_image(b"not an elf").is_empty());
    }

    /// A stand-in for QEMU's QMP socket: answers as `answer(command line or QMP command)`
    /// says (`None`: close the connection), with a STOP event before each answer.
    fn fake_qemu(
        dir: &std::path::Path,
        answer: impl Fn(&str) -> Option<serde_json::Value> + Send + 'static,
    ) -> (PathBuf, std::thread::JoinHandle<()>) {
        use std::io::{BufRead, Write};
        let path = dir.join("qmp");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let r = std::io::BufReader::new(stream);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            for line in r.lines() {
                let Ok(line) = line else { return };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let what = v["arguments"]["command-line"]
                    .as_str()
                    .or(v["execute"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let Some(a) = answer(&what) else { return };
                let event = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#;
                if writeln!(w, "{event}\n{a}").is_err() {
                    return;
                }
            }
        });
        (path, t)
    }

    #[test]
    fn the_sampler_counts_until_qemu_goes_and_a_qmp_error_ends_it_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let stops = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = stops.clone();
        let (sock, server) = fake_qemu(dir.path(), move |what| {
            Some(match what {
                "query-status" => {
                    serde_json::json!({"return": {"status": "running", "running": true}})
                }
                // QEMU exits after five samples: the socket closes.
                "stop" if counted.fetch_add(1, Ordering::SeqCst) == 5 => return None,
                "info registers" => serde_json::json!({"return": REGS.replace("CPL=0", "CPL=3")}),
                _ => serde_json::json!({"return": ""}),
            })
        });
        let samples = Sampler::start(sock, 1000, code());
        server.join().unwrap();
        let samples = samples.finish();
        assert_eq!(
            (samples.user, samples.ended.clone()),
            (5, None),
            "{samples:?}"
        );

        // An answer the sampler cannot use ends sampling, with the reason.
        let dir = tempfile::tempdir().unwrap();
        let (sock, server) = fake_qemu(dir.path(), |what| {
            Some(match what {
                "query-status" => serde_json::json!({"return": {"running": true}}),
                "info registers" => serde_json::json!({"return": "no registers here"}),
                _ => serde_json::json!({"return": ""}),
            })
        });
        let sampler = Sampler::start(sock, 1000, code());
        let start = Instant::now();
        while !sampler.handle.is_finished() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let samples = sampler.finish();
        assert!(
            samples
                .ended
                .as_deref()
                .unwrap_or_default()
                .contains("info registers"),
            "{samples:?}"
        );
        drop(server);

        // A QEMU that never answers does not hold the run: finishing shuts the socket.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let sampler = Sampler::start(path, 1000, code());
        let (_held, _) = listener.accept().unwrap();
        let start = Instant::now();
        let samples = sampler.finish();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(samples.total(), 0);
        // Nor does one that never made its socket.
        let start = Instant::now();
        Sampler::start(dir.path().join("none"), 1000, code()).finish();
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
