//! The scheduler's bookkeeping: which threads exist, which may run, and what the blocked
//! ones wait for. Pure logic: the kernel keeps each thread's saved registers in `C` and does
//! the switching itself.
//!
//! Blocking works by restart: a system call that must wait returns
//! [`Outcome::Block`](crate::process::Outcome::Block); the thread sleeps with its
//! registers still at the system call, and when woken either runs the call again (a read
//! retries) or finishes it with a fixed result (a futex wait returns 0, a timeout
//! `-ETIMEDOUT`). System calls therefore never sleep inside the kernel, and one kernel stack
//! per CPU is enough.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::process::{Channel, ThreadState, Wait};
use crate::small::{SmallMap, SmallSet};

/// What a thread does when it next runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Continue in user mode where it was (newly created, or preempted).
    Continue,
    /// Finish the pending system call with this result.
    Return(i64),
    /// Run the pending system call again.
    Restart,
    /// A signal handler must run: the pending system call fails with `EINTR` or starts
    /// again after the handler ([`crate::syscall::signal::restart`]).
    Interrupted,
}

/// CPU time used, split as `getrusage` reports it. The scheduler counts in the units of
/// the clock the kernel charges with (TSC ticks: cheaper to read than nanoseconds, a
/// conversion per system call saved); [`crate::machine::Machine::cpu_time`] answers in
/// nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// In user mode (the program's own code).
    pub user: u64,
    /// In the kernel on the thread's behalf (its system calls and the faults it took).
    pub system: u64,
}

impl CpuTime {
    /// User and system time together (what the CPU-time clocks read).
    pub fn total(self) -> u64 {
        self.user.saturating_add(self.system)
    }

    /// Both parts converted by `f` (ticks to nanoseconds).
    pub fn map(self, f: impl Fn(u64) -> u64) -> CpuTime {
        CpuTime {
            user: f(self.user),
            system: f(self.system),
        }
    }

    fn add(&mut self, other: CpuTime) {
        self.user = self.user.saturating_add(other.user);
        self.system = self.system.saturating_add(other.system);
    }
}

/// A CPU's charging clock: what its running thread used since it was picked (moved to the
/// thread's entry when it stops running), and the time charged up to.
#[derive(Debug, Clone, Copy, Default)]
struct CpuClock {
    charged_to: u64,
    running: CpuTime,
}

#[derive(Debug)]
enum Status {
    Ready(Resume),
    Running,
    Blocked(Wait),
}

struct Entry<C> {
    state: ThreadState,
    ctx: C,
    status: Status,
    /// Deadline of the wait that was interrupted by a wake-up, for [`Scheduler::restart_deadline`].
    restart_deadline: Option<u64>,
    /// Order in which it started waiting (wake-ups go first come, first served).
    wait_seq: u64,
    /// CPU time charged so far (see [`Scheduler::charge`]).
    cpu_time: CpuTime,
}

/// What a channel is indexed by: futex waiters match on the address first (their bitsets
/// are compared after), the others exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Futex(u64),
    Object(u64),
    Io,
}

fn key(c: &Channel) -> Key {
    match c {
        Channel::Futex { addr, .. } => Key::Futex(*addr),
        Channel::Object(id) => Key::Object(*id),
        Channel::Io => Key::Io,
    }
}

/// Threads, run queue and wait channels.
///
/// Blocked threads are indexed by channel and by deadline, so a wake-up, a timeout check
/// and the next deadline cost the same with 2 threads or 2,000 (a server with a thread per
/// connection has one per client).
pub struct Scheduler<C> {
    /// Boxed, so that the sorted `Vec` moves only key and pointer on insert and remove.
    threads: SmallMap<u32, Box<Entry<C>>>,
    ready: VecDeque<u32>,
    /// The thread each CPU runs (one run queue serves them all).
    running: Vec<Option<u32>>,
    /// When each CPU's running thread was picked, in monotonic ns (its slice's start).
    since: Vec<u64>,
    /// Per CPU, its running thread's CPU time since it was picked.
    clocks: Vec<CpuClock>,
    /// CPU time of the threads that ended.
    ended: CpuTime,
    /// The CPU the calls are made for: "the running thread" is the one it runs.
    cpu: usize,
    seq: u64,
    /// Blocked threads by channel, then in the order they started waiting.
    waiting: SmallSet<(Key, u64, u32)>,
    /// Blocked threads with a deadline, by deadline.
    timed: SmallSet<(u64, u32)>,
    /// Threads running on other CPUs that end at their next kernel entry (`execve` ended
    /// every thread but its caller).
    doomed: SmallSet<u32>,
}

impl<C> Scheduler<C> {
    /// A scheduler whose one thread, `main`, is running.
    pub fn new(main: ThreadState, ctx: C) -> Scheduler<C> {
        let tid = main.tid;
        let mut threads = SmallMap::new();
        threads.insert(
            tid,
            Box::new(Entry {
                state: main,
                ctx,
                status: Status::Running,
                restart_deadline: None,
                wait_seq: 0,
                cpu_time: CpuTime::default(),
            }),
        );
        Scheduler {
            threads,
            ready: VecDeque::new(),
            running: alloc::vec![Some(tid)],
            since: alloc::vec![0],
            clocks: alloc::vec![CpuClock::default()],
            ended: CpuTime::default(),
            cpu: 0,
            seq: 0,
            waiting: SmallSet::new(),
            timed: SmallSet::new(),
            doomed: SmallSet::new(),
        }
    }

    /// Makes room for `n` CPUs (they run nothing yet).
    pub fn set_cpus(&mut self, n: usize) {
        self.running.resize(n.max(self.running.len()), None);
        self.since.resize(self.running.len(), 0);
        self.clocks.resize(self.running.len(), CpuClock::default());
    }

    /// Charges this CPU's time since the last charge to its running thread, as user time
    /// (`user`: the kernel was just entered from user mode) or as system time (the kernel
    /// is about to return to user mode, or the thread stops running). The kernel charges
    /// at each entry from and each return to user mode; time with no thread running
    /// (idle, or the kernel's own work between threads) is charged to no one.
    ///
    /// Twice per system call, so it only adds to this CPU's clock (no thread lookup), and
    /// inline: under TCG a call and its return cost as much as the charge itself.
    #[inline(always)]
    pub fn charge(&mut self, now: u64, user: bool) {
        let c = &mut self.clocks[self.cpu];
        let spent = now.saturating_sub(c.charged_to);
        c.charged_to = now.max(c.charged_to);
        if user {
            c.running.user = c.running.user.saturating_add(spent);
        } else {
            c.running.system = c.running.system.saturating_add(spent);
        }
    }

    /// The running thread enters user mode for the first time at `now` (the program's
    /// start): the boot before it is no thread's time.
    pub fn begin(&mut self, now: u64) {
        self.clocks[self.cpu] = CpuClock {
            charged_to: now,
            running: CpuTime::default(),
        };
    }

    /// Moves this CPU's clock into its running thread's entry, which stops running.
    fn settle_cpu_time(&mut self, tid: u32) {
        let spent = core::mem::take(&mut self.clocks[self.cpu].running);
        if let Some(e) = self.threads.get_mut(&tid) {
            e.cpu_time.add(spent);
        }
    }

    /// The CPU time thread `tid` has used by `now`, with what was not charged yet: on this
    /// CPU that is the system call being served (system time), on another CPU it counts as
    /// user time.
    pub fn cpu_time(&self, tid: u32, now: u64) -> Option<CpuTime> {
        let mut t = self.threads.get(&tid)?.cpu_time;
        if let Some(cpu) = self.cpu_of(tid) {
            let c = &self.clocks[cpu];
            t.add(c.running);
            let spent = now.saturating_sub(c.charged_to);
            if cpu == self.cpu {
                t.system = t.system.saturating_add(spent);
            } else {
                t.user = t.user.saturating_add(spent);
            }
        }
        Some(t)
    }

    /// The CPU time of the whole process by `now`: its threads' and the ended threads'.
    pub fn process_cpu_time(&self, now: u64) -> CpuTime {
        let mut all = self.ended;
        for &tid in self.threads.keys() {
            if let Some(t) = self.cpu_time(tid, now) {
                all.add(t);
            }
        }
        all
    }

    fn end_thread(&mut self, e: &Entry<C>) {
        self.ended.add(e.cpu_time);
    }

    /// The calls that follow are made on CPU `cpu`: the running thread is the one it runs.
    pub fn on_cpu(&mut self, cpu: usize) {
        assert!(
            cpu < self.running.len(),
            "CPU {cpu} unknown to the scheduler"
        );
        self.cpu = cpu;
    }

    /// The CPU running thread `tid`, if one does.
    pub fn cpu_of(&self, tid: u32) -> Option<usize> {
        self.running.iter().position(|&t| t == Some(tid))
    }

    /// How many CPUs run a thread.
    pub fn running_count(&self) -> usize {
        self.running.iter().filter(|t| t.is_some()).count()
    }

    /// How many threads are ready and wait for a CPU.
    pub fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// Every thread's id, in order.
    pub fn tids(&self) -> impl Iterator<Item = u32> + '_ {
        self.threads.keys().copied()
    }

    /// The running thread's id, if one runs.
    pub fn current(&self) -> Option<u32> {
        self.running[self.cpu]
    }

    /// Number of threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether no thread is left.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Whether a thread other than the running one could run now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// State of thread `tid`.
    pub fn state(&mut self, tid: u32) -> Option<&mut ThreadState> {
        self.threads.get_mut(&tid).map(|e| &mut e.state)
    }

    /// What thread `tid` is doing, for `stats`: `running`, `ready`, `sleeping`, or what it
    /// waits on (`futex`, `I/O`, `poll`).
    pub fn activity(&self, tid: u32) -> Option<&'static str> {
        Some(match &self.threads.get(&tid)?.status {
            Status::Running => "running",
            Status::Ready(_) => "ready",
            Status::Blocked(w) => match w.channels.first() {
                None => "sleeping",
                Some(Channel::Futex { .. }) => "waiting (futex)",
                Some(Channel::Object(_)) => "waiting (I/O)",
                Some(Channel::Io) => "waiting (poll)",
            },
        })
    }

    /// Saved registers of thread `tid`.
    pub fn ctx(&mut self, tid: u32) -> Option<&mut C> {
        self.threads.get_mut(&tid).map(|e| &mut e.ctx)
    }

    /// State and registers of thread `tid` together.
    pub fn entry(&mut self, tid: u32) -> Option<(&mut ThreadState, &mut C)> {
        self.threads
            .get_mut(&tid)
            .map(|e| (&mut e.state, &mut e.ctx))
    }

    /// For a restarted system call of `tid`: the deadline of its earlier wait.
    pub fn restart_deadline(&self, tid: u32) -> Option<u64> {
        self.threads.get(&tid).and_then(|e| e.restart_deadline)
    }

    /// Forgets the deadline kept for a restarted call of `tid` once that call has settled.
    pub fn clear_restart(&mut self, tid: u32) {
        if let Some(e) = self.threads.get_mut(&tid) {
            e.restart_deadline = None;
        }
    }

    /// Adds a ready thread.
    pub fn spawn(&mut self, state: ThreadState, ctx: C) {
        let tid = state.tid;
        self.threads.insert(
            tid,
            Box::new(Entry {
                state,
                ctx,
                status: Status::Ready(Resume::Continue),
                restart_deadline: None,
                wait_seq: 0,
                cpu_time: CpuTime::default(),
            }),
        );
        self.ready.push_back(tid);
    }

    /// The running thread starts waiting; nothing runs until [`Scheduler::pick`].
    pub fn block_current(&mut self, wait: Wait) {
        let tid = self.running[self.cpu]
            .take()
            .expect("block with no running thread");
        self.settle_cpu_time(tid);
        self.seq += 1;
        let e = self.threads.get_mut(&tid).expect("running thread exists");
        e.wait_seq = self.seq;
        for c in &wait.channels {
            self.waiting.insert((key(c), self.seq, tid));
        }
        if let Some(d) = wait.deadline {
            self.timed.insert((d, tid));
        }
        e.status = Status::Blocked(wait);
    }

    /// Removes blocked thread `tid`'s wait (channels `channels`, started at `seq`, until
    /// `deadline`) from the indexes.
    fn unindex(&mut self, tid: u32, seq: u64, channels: &[Channel], deadline: Option<u64>) {
        for c in channels {
            self.waiting.remove(&(key(c), seq, tid));
        }
        if let Some(d) = deadline {
            self.timed.remove(&(d, tid));
        }
    }

    /// The running thread yields the CPU (preemption or `sched_yield`): it goes to the back
    /// of the run queue.
    pub fn yield_current(&mut self) {
        if let Some(tid) = self.running[self.cpu].take() {
            self.settle_cpu_time(tid);
            if let Some(e) = self.threads.get_mut(&tid) {
                e.status = Status::Ready(Resume::Continue);
                self.ready.push_back(tid);
            }
        }
    }

    /// Removes the running thread; returns how many threads are left.
    pub fn exit_current(&mut self) -> usize {
        if let Some(tid) = self.running[self.cpu].take() {
            self.settle_cpu_time(tid);
            if let Some(e) = self.threads.remove(&tid) {
                self.end_thread(&e);
            }
            self.doomed.remove(&tid);
        }
        self.threads.len()
    }

    /// Ends every thread but the running one, as `execve` does: ready and blocked threads
    /// go now; a thread running on another CPU is marked to end when it next enters the
    /// kernel ([`Scheduler::is_doomed`]). Returns the CPUs that run such threads (none: the
    /// running thread is the only one left).
    pub fn end_others(&mut self) -> Vec<usize> {
        let me = self.running[self.cpu];
        let tids: Vec<u32> = self.threads.keys().copied().collect();
        let mut busy = Vec::new();
        for tid in tids {
            if Some(tid) == me {
                continue;
            }
            if let Some(cpu) = self.cpu_of(tid) {
                self.doomed.insert(tid);
                busy.push(cpu);
                continue;
            }
            if let Some(e) = self.threads.remove(&tid) {
                self.end_thread(&e);
                match e.status {
                    Status::Blocked(w) => self.unindex(tid, e.wait_seq, &w.channels, w.deadline),
                    _ => self.ready.retain(|&t| t != tid),
                }
            }
        }
        busy
    }

    /// Whether thread `tid` must end at its next kernel entry (see [`Scheduler::end_others`]).
    pub fn is_doomed(&self, tid: u32) -> bool {
        !self.doomed.is_empty() && self.doomed.contains(&tid)
    }

    /// Gives the running thread the id `tid` (`execve` from a thread other than the main
    /// one makes the caller the main thread, whose id is the process's).
    pub fn renumber_current(&mut self, tid: u32) {
        let Some(old) = self.running[self.cpu] else {
            return;
        };
        if old == tid || self.threads.contains_key(&tid) {
            return;
        }
        if let Some(mut e) = self.threads.remove(&old) {
            e.state.tid = tid;
            self.threads.insert(tid, e);
            self.running[self.cpu] = Some(tid);
        }
    }

    fn make_ready(&mut self, tid: u32, how: Resume) {
        let Some(e) = self.threads.get_mut(&tid) else {
            return;
        };
        let old = core::mem::replace(&mut e.status, Status::Ready(how));
        let seq = e.wait_seq;
        if let Status::Blocked(w) = old {
            e.restart_deadline = if matches!(how, Resume::Restart | Resume::Interrupted) {
                w.deadline
            } else {
                None
            };
            self.unindex(tid, seq, &w.channels, w.deadline);
        }
        self.ready.push_back(tid);
    }

    /// Blocked threads waiting on a channel that `channel` reaches, oldest first.
    fn waiters(&self, channel: &Channel) -> Vec<u32> {
        let k = key(channel);
        let mut out: Vec<u32> = Vec::new();
        for &(_, _, tid) in self.waiting.range(&(k, 0, 0), &(k, u64::MAX, u32::MAX)) {
            let reached = match self.threads.get(&tid).map(|e| &e.status) {
                Some(Status::Blocked(w)) => w.channels.iter().any(|c| channel.reaches(c)),
                _ => false,
            };
            // A thread waiting twice on one channel is listed once.
            if reached && !out.contains(&tid) {
                out.push(tid);
            }
        }
        out
    }

    /// Wakes up to `max` waiters of `channel`; returns how many.
    pub fn wake(&mut self, channel: Channel, max: usize) -> usize {
        let woken: Vec<u32> = self.waiters(&channel).into_iter().take(max).collect();
        for &tid in &woken {
            let how = match self.threads.get(&tid).map(|e| &e.status) {
                Some(Status::Blocked(w)) => match w.on_wake {
                    Some(v) => Resume::Return(v),
                    None => Resume::Restart,
                },
                _ => continue,
            };
            self.make_ready(tid, how);
        }
        woken.len()
    }

    /// Wakes up to `wake` waiters of `from` and moves up to `requeue` others to `to`.
    pub fn requeue(&mut self, from: Channel, to: Channel, wake: usize, requeue: usize) -> usize {
        let waiters = self.waiters(&from);
        let woken = self.wake(from, wake);
        let mut moved = 0;
        for tid in waiters.into_iter().skip(woken).take(requeue) {
            if let Some(Entry {
                status: Status::Blocked(w),
                wait_seq,
                ..
            }) = self.threads.get_mut(&tid).map(|e| &mut **e)
            {
                let seq = *wait_seq;
                for c in w.channels.iter_mut() {
                    if from.reaches(c) {
                        self.waiting.remove(&(key(c), seq, tid));
                        *c = to;
                        self.waiting.insert((key(c), seq, tid));
                    }
                }
                moved += 1;
            }
        }
        woken + moved
    }

    /// Ends the wait of thread `tid` for a signal handler (it resumes as
    /// [`Resume::Interrupted`], with its wait's deadline kept for the sleeps that report
    /// the time left); `false` when it was not blocked.
    pub fn interrupt(&mut self, tid: u32) -> bool {
        let blocked = self
            .threads
            .get(&tid)
            .is_some_and(|e| matches!(e.status, Status::Blocked(_)));
        if blocked {
            self.make_ready(tid, Resume::Interrupted);
        }
        blocked
    }

    /// Readies every blocked thread whose deadline is at or before `now`, with its timeout
    /// result.
    pub fn expire(&mut self, now: u64) {
        let due: Vec<u32> = self
            .timed
            .range(&(0, 0), &(now, u32::MAX))
            .map(|&(_, tid)| tid)
            .collect();
        for tid in due {
            let v = match self.threads.get(&tid).map(|e| &e.status) {
                Some(Status::Blocked(w)) => w.on_timeout,
                _ => continue,
            };
            self.make_ready(tid, Resume::Return(v));
        }
    }

    /// The earliest deadline among blocked threads.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timed.first().map(|&(d, _)| d)
    }

    /// Makes the next ready thread the running one and says how it resumes; `None` when no
    /// thread is ready (the CPU idles). The running thread, if any, keeps running.
    /// `now` (monotonic ns) starts the slice of a newly picked thread (see
    /// [`Scheduler::slice_end`]), `stamp` (the charging clock) its CPU time.
    pub fn pick(&mut self, now: u64, stamp: u64) -> Option<(u32, Resume)> {
        if let Some(tid) = self.running[self.cpu] {
            return Some((tid, Resume::Continue));
        }
        while let Some(tid) = self.ready.pop_front() {
            if let Some(e) = self.threads.get_mut(&tid) {
                if let Status::Ready(how) = e.status {
                    e.status = Status::Running;
                    if !matches!(how, Resume::Restart | Resume::Interrupted) {
                        e.restart_deadline = None;
                    }
                    self.running[self.cpu] = Some(tid);
                    self.since[self.cpu] = now;
                    self.begin(stamp);
                    return Some((tid, how));
                }
            }
        }
        None
    }

    /// When the slice of this CPU's running thread ends, for a slice of `slice` ns: a
    /// thread is preempted for another only then, not on every timer interrupt (device
    /// deadlines come every millisecond under network load, and a thread taking turns
    /// with hundreds at each of them, such as a server's accept loop, made little progress).
    pub fn slice_end(&self, slice: u64) -> u64 {
        self.since[self.cpu].saturating_add(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn thread(tid: u32) -> ThreadState {
        ThreadState {
            tid,
            ..ThreadState::default()
        }
    }

    fn wait_on(c: Channel, on_wake: Option<i64>, deadline: Option<u64>) -> Wait {
        Wait {
            channels: vec![c],
            deadline,
            on_timeout: -110,
            on_wake,
        }
    }

    const FUTEX: Channel = Channel::Futex {
        addr: 0x1000,
        bitset: u32::MAX,
    };

    #[test]
    fn cpu_time_is_charged_to_the_running_thread_as_user_or_system_time() {
        let mut s = Scheduler::new(thread(1), ());
        s.set_cpus(2);
        // Boot is no one's: the program starts at 100.
        s.begin(100);
        // User mode until a system call at 400, served until 450.
        s.charge(400, true);
        s.charge(450, false);
        let t = s.cpu_time(1, 450).unwrap();
        assert_eq!((t.user, t.system), (300, 50));
        // While the kernel serves its next call (entered at 500), the call so far counts
        // as system time.
        s.charge(500, true);
        let t = s.cpu_time(1, 530).unwrap();
        assert_eq!((t.user, t.system), (350, 80));
        // It blocks at 540: charged, then nothing runs; the idle time is no one's.
        s.charge(540, false);
        s.block_current(wait_on(FUTEX, Some(0), None));
        s.spawn(thread(2), ());
        assert_eq!(s.pick(900, 900), Some((2, Resume::Continue)));
        s.charge(1_000, true);
        assert_eq!(s.cpu_time(1, 1_000).unwrap().total(), 440);
        assert_eq!(s.cpu_time(2, 1_000).unwrap().user, 100);
        // A thread running on another CPU: its time so far counts as user time.
        s.wake(FUTEX, 1);
        s.on_cpu(1);
        assert_eq!(s.pick(1_100, 1_100), Some((1, Resume::Return(0))));
        s.on_cpu(0);
        assert_eq!(s.cpu_time(1, 1_300).unwrap().user, 350 + 200);
        // The process: both threads, and what ended threads used.
        s.charge(1_300, false);
        assert_eq!(s.process_cpu_time(1_300).total(), 640 + 400);
        assert_eq!(s.exit_current(), 1);
        assert_eq!(s.process_cpu_time(1_300).total(), 640 + 400);
        assert_eq!(s.cpu_time(2, 1_300), None);
    }

    #[test]
    fn execve_ends_the_other_threads_and_its_caller_becomes_the_main_thread() {
        let mut s = Scheduler::new(thread(1), ());
        s.set_cpus(2);
        s.spawn(thread(2), ());
        s.spawn(thread(3), ());
        s.spawn(thread(4), ());
        // 1 blocks with a deadline, 2 runs on CPU 1, 3 is the caller on CPU 0, 4 is ready.
        s.block_current(wait_on(FUTEX, Some(0), Some(500)));
        s.on_cpu(1);
        assert_eq!(s.pick(0, 0), Some((2, Resume::Continue)));
        s.on_cpu(0);
        assert_eq!(s.pick(0, 0), Some((3, Resume::Continue)));
        assert_eq!(s.end_others(), vec![1]);
        // The blocked and the ready thread are gone, with their waits; 2 ends when CPU 1
        // enters the kernel.
        assert_eq!(s.tids().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.wake(FUTEX, usize::MAX), 0);
        assert!(s.is_doomed(2) && !s.is_doomed(3));
        s.on_cpu(1);
        s.exit_current();
        assert!(!s.is_doomed(2));
        s.on_cpu(0);
        assert!(s.end_others().is_empty());
        s.renumber_current(1);
        assert_eq!(s.current(), Some(1));
        assert_eq!(s.state(1).map(|t| t.tid), Some(1));
        assert_eq!(s.tids().collect::<Vec<_>>(), vec![1]);
        // Nothing else is ready: the ready queue lost thread 4 too.
        s.block_current(wait_on(FUTEX, Some(0), None));
        assert_eq!(s.pick(0, 0), None);
    }

    #[test]
    fn blocked_thread_runs_after_wake() {
        let mut s = Scheduler::new(thread(1), ());
        s.spawn(thread(2), ());
        s.block_current(wait_on(FUTEX, Some(0), None));
        assert_eq!(s.pick(0, 0), Some((2, Resume::Continue)));
        assert_eq!(s.wake(FUTEX, 1), 1);
        assert_eq!(s.wake(FUTEX, 1), 0, "already woken");
        s.yield_current();
        assert_eq!(s.pick(0, 0), Some((1, Resume::Return(0))));
    }

    #[test]
    fn restart_keeps_the_first_deadline() {
        let mut s = Scheduler::new(thread(1), ());
        s.block_current(wait_on(Channel::Object(7), None, Some(500)));
        assert_eq!(s.pick(0, 0), None);
        assert_eq!(s.next_deadline(), Some(500));
        s.wake(Channel::Object(7), usize::MAX);
        assert_eq!(s.pick(0, 0), Some((1, Resume::Restart)));
        assert_eq!(s.restart_deadline(1), Some(500));
    }

    #[test]
    fn many_waiters_are_found_by_channel_and_deadline() {
        let mut s = Scheduler::new(thread(1), ());
        for tid in 2..=200 {
            s.spawn(thread(tid), ());
        }
        // Every thread blocks on its own object; even ones with a deadline.
        for _ in 1..=200 {
            let (tid, _) = s.pick(0, 0).unwrap();
            let deadline = (tid % 2 == 0).then_some(1000 + u64::from(tid));
            s.block_current(wait_on(Channel::Object(u64::from(tid)), None, deadline));
        }
        assert_eq!(s.next_deadline(), Some(1002));
        assert_eq!(s.wake(Channel::Object(2), usize::MAX), 1);
        assert_eq!(s.wake(Channel::Object(2), usize::MAX), 0);
        assert_eq!(s.pick(0, 0), Some((2, Resume::Restart)));
        // The woken thread's deadline is gone from the index.
        assert_eq!(s.next_deadline(), Some(1004));
        s.expire(1010);
        let mut timed_out = Vec::new();
        while let Some((tid, how)) = s.pick(0, 0) {
            if tid == 2 {
                s.block_current(wait_on(Channel::Io, None, None));
                continue;
            }
            assert_eq!(how, Resume::Return(-110));
            timed_out.push(tid);
            s.block_current(wait_on(Channel::Io, None, None));
        }
        assert_eq!(timed_out, vec![4, 6, 8, 10]);
        assert_eq!(s.next_deadline(), Some(1012));
        assert_eq!(s.wake(Channel::Io, usize::MAX), 5);
    }

    #[test]
    fn deadlines_expire_with_the_timeout_result() {
        let mut s = Scheduler::new(thread(1), ());
        s.block_current(wait_on(FUTEX, Some(0), Some(100)));
        s.expire(99);
        assert_eq!(s.pick(0, 0), None);
        s.expire(100);
        assert_eq!(s.pick(0, 0), Some((1, Resume::Return(-110))));
    }

    #[test]
    fn wakes_go_oldest_first_and_respect_bitsets() {
        let mut s = Scheduler::new(thread(1), ());
        for t in 2..=4 {
            s.spawn(thread(t), ());
        }
        let bits = |b| Channel::Futex {
            addr: 0x1000,
            bitset: b,
        };
        s.block_current(wait_on(bits(1), Some(0), None)); // 1
        for bitset in [2, 1, 1] {
            s.pick(0, 0);
            s.block_current(wait_on(bits(bitset), Some(0), None)); // 2, 3, 4
        }
        assert_eq!(s.wake(bits(2), 5), 1);
        assert_eq!(s.pick(0, 0), Some((2, Resume::Return(0))));
        s.block_current(wait_on(bits(2), Some(0), None));
        assert_eq!(s.wake(bits(1), 2), 2);
        assert_eq!(s.pick(0, 0).map(|p| p.0), Some(1));
        s.yield_current();
        assert_eq!(s.pick(0, 0).map(|p| p.0), Some(3));
    }

    #[test]
    fn requeue_moves_waiters() {
        let mut s = Scheduler::new(thread(1), ());
        for t in 2..=3 {
            s.spawn(thread(t), ());
        }
        let other = Channel::Futex {
            addr: 0x2000,
            bitset: u32::MAX,
        };
        s.block_current(wait_on(FUTEX, Some(0), None));
        for _ in 0..2 {
            s.pick(0, 0);
            s.block_current(wait_on(FUTEX, Some(0), None));
        }
        // Three waiters: one woken, one moved, one left where it was.
        assert_eq!(s.requeue(FUTEX, other, 1, 1), 2);
        assert_eq!(s.wake(other, 10), 1);
        assert_eq!(s.wake(FUTEX, 10), 1);
    }

    #[test]
    fn interrupt_ends_any_wait_once() {
        let mut s = Scheduler::new(thread(1), ());
        s.spawn(thread(2), ());
        s.block_current(wait_on(FUTEX, Some(0), Some(900)));
        assert!(!s.interrupt(2), "ready, not blocked");
        assert!(s.interrupt(1));
        assert!(!s.interrupt(1), "already interrupted");
        assert_eq!(s.wake(FUTEX, 1), 0, "no longer waiting");
        assert_eq!(s.pick(0, 0), Some((2, Resume::Continue)));
        s.yield_current();
        assert_eq!(s.pick(0, 0), Some((1, Resume::Interrupted)));
        assert_eq!(s.restart_deadline(1), Some(900));
    }

    #[test]
    fn each_cpu_runs_its_own_thread_from_one_queue() {
        let mut s = Scheduler::new(thread(1), ());
        s.set_cpus(2);
        s.spawn(thread(2), ());
        s.spawn(thread(3), ());
        s.on_cpu(1);
        assert_eq!(s.current(), None);
        assert_eq!(s.pick(0, 0), Some((2, Resume::Continue)));
        assert_eq!(s.cpu_of(2), Some(1));
        s.on_cpu(0);
        assert_eq!(s.current(), Some(1));
        assert_eq!(
            s.pick(0, 0),
            Some((1, Resume::Continue)),
            "CPU 0 keeps its thread"
        );
        // CPU 0's thread blocks and CPU 0 takes thread 3; CPU 1 wakes the sleeper, and its
        // own thread exits, so it runs the woken one.
        s.block_current(wait_on(FUTEX, Some(0), None));
        assert_eq!(s.pick(0, 0), Some((3, Resume::Continue)));
        assert_eq!(s.ready_count(), 0);
        s.on_cpu(1);
        assert_eq!(s.wake(FUTEX, 1), 1);
        assert_eq!(s.ready_count(), 1);
        assert_eq!(s.exit_current(), 2);
        assert_eq!(s.pick(0, 0), Some((1, Resume::Return(0))));
        assert_eq!(
            (s.cpu_of(1), s.cpu_of(2), s.cpu_of(3)),
            (Some(1), None, Some(0))
        );
        s.on_cpu(0);
        assert_eq!(s.current(), Some(3));
        assert!(!s.has_ready());
    }

    #[test]
    fn exit_and_yield() {
        let mut s = Scheduler::new(thread(1), 'a');
        s.spawn(thread(2), 'b');
        s.yield_current();
        assert_eq!(s.pick(0, 0), Some((2, Resume::Continue)));
        assert_eq!(*s.ctx(2).unwrap(), 'b');
        assert_eq!(s.exit_current(), 1);
        assert_eq!(s.pick(0, 0), Some((1, Resume::Continue)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_slice_starts_when_its_thread_is_picked() {
        let mut s = Scheduler::new(thread(1), ());
        s.spawn(thread(2), ());
        // The first thread has run since boot; the next one's slice starts when picked.
        assert_eq!(s.slice_end(10), 10);
        s.yield_current();
        assert_eq!(s.pick(500, 500).map(|(t, _)| t), Some(2));
        assert_eq!(s.slice_end(10), 510);
        // Picking again the thread that runs does not restart its slice.
        assert_eq!(s.pick(700, 700).map(|(t, _)| t), Some(2));
        assert_eq!(s.slice_end(10), 510);
    }
}
