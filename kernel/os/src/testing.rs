//! A machine made of plain memory, for host tests of the Linux personality.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};
use crate::machine::{Machine, PageTable, Prot, PAGE_SIZE};
use crate::process::{Channel, ThreadState};

/// User pages kept in a map, with a frame budget to provoke `ENOMEM`.
#[derive(Default)]
pub struct FakePages {
    /// Mapped pages by page address.
    pub pages: BTreeMap<u64, (Vec<u8>, Prot)>,
    /// How many more pages may be mapped (`None`: unlimited).
    pub budget: Option<usize>,
    /// Pages mapped in place with `map_borrowed`.
    pub borrowed: usize,
    /// Makes `protect_range` and `move_range` fail with `ENOMEM` (no frame for a copy or a
    /// page table), changing nothing.
    pub out_of_frames: bool,
}

impl PageTable for FakePages {
    fn map_zeroed(&mut self, page: u64, prot: Prot) -> KResult<()> {
        assert_eq!(page % PAGE_SIZE, 0, "unaligned page {page:#x}");
        assert!(
            !self.pages.contains_key(&page),
            "page {page:#x} mapped twice"
        );
        if let Some(b) = &mut self.budget {
            if *b == 0 {
                return Err(Errno::ENOMEM);
            }
            *b -= 1;
        }
        self.pages
            .insert(page, (alloc::vec![0; PAGE_SIZE as usize], prot));
        Ok(())
    }
    fn map_borrowed(&mut self, page: u64, bytes: &'static [u8], prot: Prot) -> KResult<bool> {
        if bytes.len() != PAGE_SIZE as usize {
            return Ok(false);
        }
        self.map_zeroed(page, prot)?;
        self.write(page, bytes);
        self.borrowed += 1;
        Ok(true)
    }
    fn query(&self, addr: u64) -> Option<Prot> {
        self.pages.get(&(addr & !(PAGE_SIZE - 1))).map(|p| p.1)
    }
    fn unmap_range(&mut self, start: u64, end: u64) {
        let doomed: Vec<u64> = self.pages.range(start..end).map(|(k, _)| *k).collect();
        for k in doomed {
            self.pages.remove(&k);
            if let Some(b) = &mut self.budget {
                *b += 1;
            }
        }
    }
    fn protect_range(&mut self, start: u64, end: u64, prot: Prot) -> KResult<()> {
        if self.out_of_frames {
            return Err(Errno::ENOMEM);
        }
        for (_, p) in self.pages.range_mut(start..end) {
            p.1 = prot;
        }
        Ok(())
    }
    fn move_range(&mut self, from: u64, to: u64, len: u64) -> KResult<()> {
        if self.out_of_frames {
            return Err(Errno::ENOMEM);
        }
        let moved: Vec<u64> = self
            .pages
            .range(from..from + len)
            .map(|(k, _)| *k)
            .collect();
        for k in moved {
            let v = self.pages.remove(&k).unwrap();
            let dst = k - from + to;
            assert!(
                !self.pages.contains_key(&dst),
                "move onto mapped page {dst:#x}"
            );
            self.pages.insert(dst, v);
        }
        Ok(())
    }
    fn memory_low(&self) -> bool {
        self.out_of_frames
    }
    fn read(&self, addr: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            let page = self
                .pages
                .get(&(a & !(PAGE_SIZE - 1)))
                .expect("read of unmapped page");
            *b = page.0[(a % PAGE_SIZE) as usize];
        }
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = addr + i as u64;
            let page = self
                .pages
                .get_mut(&(a & !(PAGE_SIZE - 1)))
                .expect("write to unmapped page");
            page.0[(a % PAGE_SIZE) as usize] = *b;
        }
    }
    fn read_if_readable(&self, addr: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            let Some(a) = addr.checked_add(i as u64) else {
                return false;
            };
            match self.pages.get(&(a & !(PAGE_SIZE - 1))) {
                Some((bytes, prot)) if prot.read => *b = bytes[(a % PAGE_SIZE) as usize],
                _ => return false,
            }
        }
        true
    }
    fn write_if_writable(&mut self, addr: u64, data: &[u8]) -> bool {
        for (i, b) in data.iter().enumerate() {
            let Some(a) = addr.checked_add(i as u64) else {
                return false;
            };
            match self.pages.get_mut(&(a & !(PAGE_SIZE - 1))) {
                Some((bytes, prot)) if prot.write => bytes[(a % PAGE_SIZE) as usize] = *b,
                _ => return false,
            }
        }
        true
    }
}

/// A network card that receives nothing and keeps what is sent, noting when the stack
/// notified it.
#[cfg(feature = "net")]
#[derive(Default)]
pub struct FakeCard {
    /// Frames queued with `transmit`, in order.
    pub sent: Vec<Vec<u8>>,
    /// How many of `sent` the card was notified of (`flush`).
    pub notified: usize,
}

#[cfg(feature = "net")]
impl crate::net::NetDevice for FakeCard {
    fn mac(&self) -> [u8; 6] {
        [0x02, 0, 0, 0, 0, 0x09]
    }
    fn receive(&mut self) -> Option<alloc::vec::Vec<u8>> {
        None
    }
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.sent.push(frame.to_vec());
        true
    }
    fn has_received(&mut self) -> bool {
        false
    }
    fn flush(&mut self) {
        self.notified = self.sent.len();
    }
    fn unflushed(&self) -> bool {
        self.notified < self.sent.len()
    }
}

/// A machine whose clock only moves when slept, and whose consoles are buffers.
pub struct FakeMachine {
    /// The calling thread.
    pub thread: ThreadState,
    /// Threads besides the caller (for `thread_count`).
    pub other_threads: usize,
    /// Other threads with state of their own (signal targets), by id.
    pub others: BTreeMap<u32, ThreadState>,
    /// Threads [`Machine::interrupt`] was asked to interrupt, in order.
    pub interrupted: Vec<u32>,
    /// Threads started with `spawn_thread`: state and stack.
    pub spawned: Vec<(ThreadState, u64)>,
    /// Threads waiting, by channel (wake removes them).
    pub waiting: Vec<Channel>,
    /// What `restart_deadline` answers.
    pub restart: Option<u64>,
    /// The user pages.
    pub pages: FakePages,
    /// Monotonic time in nanoseconds.
    pub now: u64,
    /// Wall-clock offset from the monotonic clock, in nanoseconds.
    pub epoch_offset: u64,
    /// What the program wrote to standard output.
    pub stdout: Vec<u8>,
    /// What the program wrote to standard error.
    pub stderr: Vec<u8>,
    /// Kernel log lines.
    pub log: Vec<String>,
    /// Binary records sent to the host.
    pub records: Vec<u8>,
    /// Counter feeding the (predictable) random bytes.
    pub random_counter: u8,
    /// How many CPUs the machine has.
    pub cpus: usize,
    /// The CPU the caller runs on.
    pub cpu: usize,
    /// How many times the stack asked for the network card.
    pub net_device_asked: usize,
    /// The network card, if the test gave the machine one (none by default).
    #[cfg(feature = "net")]
    pub card: Option<FakeCard>,
    /// What `ram` answers: total and free bytes.
    pub ram: (u64, u64),
    /// What `idle_ns` answers.
    pub idle_ns: u64,
    /// Whether `random_is_seeded` says no.
    pub weak_random: bool,
    /// What `cpu_time` answers for the running thread; the process has it doubled (as if
    /// an ended thread had used as much).
    pub cpu_time: crate::sched::CpuTime,
    /// Other threads running on other CPUs: `end_other_threads` answers `false` while
    /// there are any (a test ends them by setting this to 0).
    pub others_running: usize,
}

impl Default for FakeMachine {
    fn default() -> Self {
        FakeMachine {
            thread: ThreadState {
                tid: 1,
                ..ThreadState::default()
            },
            other_threads: 0,
            others: BTreeMap::new(),
            interrupted: Vec::new(),
            spawned: Vec::new(),
            waiting: Vec::new(),
            restart: None,
            pages: FakePages::default(),
            now: 0,
            epoch_offset: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            log: Vec::new(),
            records: Vec::new(),
            random_counter: 0,
            cpus: 1,
            cpu: 0,
            net_device_asked: 0,
            #[cfg(feature = "net")]
            card: None,
            ram: (128 << 20, 100 << 20),
            others_running: 0,
            idle_ns: 0,
            cpu_time: crate::sched::CpuTime::default(),
            weak_random: false,
        }
    }
}

impl Machine for FakeMachine {
    fn ram(&self) -> (u64, u64) {
        self.ram
    }
    fn idle_ns(&self) -> u64 {
        self.idle_ns
    }
    fn random_is_seeded(&self) -> bool {
        !self.weak_random
    }
    fn cpu_time(&self, tid: Option<u32>) -> Option<crate::sched::CpuTime> {
        let t = self.cpu_time;
        match tid {
            None => Some(crate::sched::CpuTime {
                user: 2 * t.user,
                system: 2 * t.system,
            }),
            Some(tid) if tid == self.thread.tid || self.others.contains_key(&tid) => Some(t),
            Some(_) => None,
        }
    }
    fn net_device(&mut self) -> Option<&mut dyn crate::net::NetDevice> {
        self.net_device_asked += 1;
        #[cfg(feature = "net")]
        return self
            .card
            .as_mut()
            .map(|c| c as &mut dyn crate::net::NetDevice);
        #[cfg(not(feature = "net"))]
        None
    }
    fn cpus(&self) -> usize {
        self.cpus
    }
    fn cpu(&self) -> usize {
        self.cpu
    }
    fn thread(&mut self) -> &mut ThreadState {
        &mut self.thread
    }
    fn thread_count(&self) -> usize {
        1 + self.other_threads + self.spawned.len() + self.others.len()
    }
    fn running(&self) -> Option<u32> {
        Some(self.thread.tid)
    }
    fn tids(&self) -> Vec<u32> {
        let mut t: Vec<u32> = self.others.keys().copied().collect();
        t.push(self.thread.tid);
        t.sort_unstable();
        t
    }
    fn thread_of(&mut self, tid: u32) -> Option<&mut ThreadState> {
        if tid == self.thread.tid {
            Some(&mut self.thread)
        } else {
            self.others.get_mut(&tid)
        }
    }
    fn interrupt(&mut self, tid: u32) {
        if tid != self.thread.tid {
            self.interrupted.push(tid);
        }
    }
    fn spawn_thread(&mut self, state: ThreadState, stack: u64) -> KResult<()> {
        self.spawned.push((state, stack));
        Ok(())
    }
    fn end_other_threads(&mut self) -> bool {
        self.other_threads = 0;
        self.others.clear();
        self.spawned.clear();
        if self.others_running > 0 {
            return false;
        }
        self.thread.tid = crate::process::PID as u32;
        true
    }
    fn wake(&mut self, channel: Channel, max: usize) -> usize {
        let mut n = 0;
        self.waiting.retain(|w| {
            if n < max && channel.reaches(w) {
                n += 1;
                false
            } else {
                true
            }
        });
        n
    }
    fn requeue(&mut self, from: Channel, to: Channel, wake: usize, requeue: usize) -> usize {
        let woken = self.wake(from, wake);
        let mut moved = 0;
        for w in self.waiting.iter_mut() {
            if moved < requeue && from.reaches(w) {
                *w = to;
                moved += 1;
            }
        }
        woken + moved
    }
    fn restart_deadline(&self) -> Option<u64> {
        self.restart
    }
    fn pages(&mut self) -> &mut dyn PageTable {
        &mut self.pages
    }
    fn monotonic_ns(&self) -> u64 {
        self.now
    }
    fn realtime_ns(&self) -> u64 {
        self.now + self.epoch_offset
    }
    fn sleep_until(&mut self, deadline: u64) {
        self.now = self.now.max(deadline);
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.random_counter = self.random_counter.wrapping_add(1);
            *b = self.random_counter;
        }
    }
    fn write_stdout(&mut self, data: &[u8]) {
        self.stdout.extend_from_slice(data);
    }
    fn write_stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
    }
    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        self.log.push(alloc::format!("{line}"));
    }
    fn record(&mut self, bytes: &[u8]) {
        self.records.extend_from_slice(bytes);
    }
}
