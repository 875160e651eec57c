//! The control channel: a second serial port (`kiln.control=PORT`) that the host's
//! `stats` talks to while the image runs, without changing the image. The host writes a
//! request line ([`REQUEST_STATS`]); the kernel answers with one [`Stats`] record:
//! [`MAGIC`], the body's length (`u32`), then the body, little-endian.

use alloc::string::String;
use alloc::vec::Vec;

/// What the host writes to ask for a [`Stats`] record.
pub const REQUEST_STATS: &[u8] = b"stats\n";
/// The first four bytes of a stats record.
pub const MAGIC: [u8; 4] = *b"KSTA";
/// Largest body the host accepts.
pub const MAX_LEN: usize = 1 << 20;

/// One thread of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStat {
    /// Thread id.
    pub tid: u32,
    /// `running`, `ready`, or what it waits for (`futex`, `socket`, `sleep`, ...).
    pub state: String,
    /// CPU time it used in user mode (0 from a kernel that does not say).
    pub user_ns: u64,
    /// CPU time the kernel spent on its behalf: its system calls and faults.
    pub system_ns: u64,
}

/// One open file descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    /// The descriptor.
    pub fd: u32,
    /// What it is: `file /etc/hosts`, `pipe`, `TCP 10.0.2.15:8080 LISTEN`, ...
    pub what: String,
}

/// The CPUs and the kernel lock they share (all zeros from a kernel that predates them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// CPUs running the kernel.
    pub online: u64,
    /// Times the kernel lock was taken (counted with more than one CPU only).
    pub lock_taken: u64,
    /// Of those, times a CPU had to wait for another to let it go.
    pub lock_waited: u64,
    /// Times the CPUs beyond the first were held back from taking threads because most
    /// acquisitions waited.
    pub held_back: u64,
}

/// A snapshot of the running kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Time since boot.
    pub uptime_ns: u64,
    /// Of that, time the CPU was not idle (the program and the kernel working for it).
    pub busy_ns: u64,
    /// System calls served.
    pub syscalls: u64,
    /// Page faults handled for the program.
    pub page_faults: u64,
    /// RAM the kernel manages.
    pub mem_total: u64,
    /// Of that, in use (kernel heap, page tables, the program's pages).
    pub mem_used: u64,
    /// The kernel heap's live allocations.
    pub heap: u64,
    /// RAM holding page tables (the kernel's and the program's).
    pub page_tables: u64,
    /// Network buffers (sockets' receive and send buffers, queued frames), part of `heap`.
    pub net_buffers: u64,
    /// Frames received and bytes in them.
    pub rx: (u64, u64),
    /// Frames sent and bytes in them.
    pub tx: (u64, u64),
    /// The program's threads.
    pub threads: Vec<ThreadStat>,
    /// The program's open file descriptors.
    pub files: Vec<FileStat>,
    /// The CPUs (after the files in the record, so older readers ignore it).
    pub cpus: CpuStat,
    /// CPU time the program used in user mode, its ended threads' included (after the
    /// CPUs in the record, with the threads' own times; zero from an older kernel).
    pub user_ns: u64,
    /// CPU time the kernel spent on the program's behalf (system calls, faults). The rest
    /// of `busy_ns` is the kernel's own work (the network stack between calls, devices).
    pub system_ns: u64,
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    /// A count of items each at least `min` bytes long, checked against what is left.
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n <= (self.b.len() - self.at) / min).then_some(n)
    }
}

impl Stats {
    /// The whole record: magic, length, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [
            self.uptime_ns,
            self.busy_ns,
            self.syscalls,
            self.page_faults,
            self.mem_total,
            self.mem_used,
            self.heap,
            self.rx.0,
            self.rx.1,
            self.tx.0,
            self.tx.1,
            self.page_tables,
            self.net_buffers,
        ] {
            put_u64(&mut b, v);
        }
        put_u32(&mut b, self.threads.len() as u32);
        for t in &self.threads {
            put_u32(&mut b, t.tid);
            put_str(&mut b, &t.state);
        }
        put_u32(&mut b, self.files.len() as u32);
        for f in &self.files {
            put_u32(&mut b, f.fd);
            put_str(&mut b, &f.what);
        }
        let c = &self.cpus;
        for v in [c.online, c.lock_taken, c.lock_waited, c.held_back] {
            put_u64(&mut b, v);
        }
        put_u64(&mut b, self.user_ns);
        put_u64(&mut b, self.system_ns);
        put_u32(&mut b, self.threads.len() as u32);
        for t in &self.threads {
            put_u32(&mut b, t.tid);
            put_u64(&mut b, t.user_ns);
            put_u64(&mut b, t.system_ns);
        }
        let mut out = Vec::with_capacity(8 + b.len());
        out.extend_from_slice(&MAGIC);
        put_u32(&mut out, b.len() as u32);
        out.extend_from_slice(&b);
        out
    }

    /// The length of the body after a record's 8-byte head, if `head` is one.
    pub fn body_len(head: &[u8; 8]) -> Option<usize> {
        let len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
        (head[..4] == MAGIC && len <= MAX_LEN).then_some(len)
    }

    /// Reads a record's body.
    pub fn decode(body: &[u8]) -> Option<Stats> {
        let mut r = Reader { b: body, at: 0 };
        let mut v = [0u64; 13];
        for x in &mut v {
            *x = r.u64()?;
        }
        let mut s = Stats {
            uptime_ns: v[0],
            busy_ns: v[1],
            syscalls: v[2],
            page_faults: v[3],
            mem_total: v[4],
            mem_used: v[5],
            heap: v[6],
            rx: (v[7], v[8]),
            tx: (v[9], v[10]),
            page_tables: v[11],
            net_buffers: v[12],
            ..Stats::default()
        };
        for _ in 0..r.count(8)? {
            s.threads.push(ThreadStat {
                tid: r.u32()?,
                state: r.string()?,
                user_ns: 0,
                system_ns: 0,
            });
        }
        for _ in 0..r.count(8)? {
            s.files.push(FileStat {
                fd: r.u32()?,
                what: r.string()?,
            });
        }
        // A kernel from before the CPU figures ends here.
        if r.at < r.b.len() {
            s.cpus = CpuStat {
                online: r.u64()?,
                lock_taken: r.u64()?,
                lock_waited: r.u64()?,
                held_back: r.u64()?,
            };
        }
        // A kernel from before CPU-time accounting ends here.
        if r.at < r.b.len() {
            s.user_ns = r.u64()?;
            s.system_ns = r.u64()?;
            for _ in 0..r.count(20)? {
                let (tid, user, system) = (r.u32()?, r.u64()?, r.u64()?);
                if let Some(t) = s.threads.iter_mut().find(|t| t.tid == tid) {
                    (t.user_ns, t.system_ns) = (user, system);
                }
            }
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn stats_round_trip_and_refuse_garbage() {
        let s = Stats {
            uptime_ns: 5_000_000_000,
            busy_ns: 1_000_000_000,
            syscalls: 1234,
            page_faults: 56,
            mem_total: 128 << 20,
            mem_used: 6 << 20,
            heap: 2 << 20,
            page_tables: 160 << 10,
            net_buffers: 128 << 10,
            rx: (10, 1500),
            tx: (12, 2000),
            threads: vec![ThreadStat {
                tid: 1,
                state: "socket".to_string(),
                user_ns: 700_000_000,
                system_ns: 200_000_000,
            }],
            files: vec![FileStat {
                fd: 3,
                what: "TCP 0.0.0.0:8080 LISTEN".to_string(),
            }],
            cpus: CpuStat {
                online: 2,
                lock_taken: 1000,
                lock_waited: 700,
                held_back: 3,
            },
            user_ns: 800_000_000,
            system_ns: 150_000_000,
        };
        let bytes = s.encode();
        let head: [u8; 8] = bytes[..8].try_into().unwrap();
        assert_eq!(Stats::body_len(&head), Some(bytes.len() - 8));
        assert_eq!(Stats::decode(&bytes[8..]), Some(s.clone()));
        // Records of older kernels still read, with zeros for what they lack: without
        // the CPU times (16 bytes, a count and 20 bytes per thread), and without the CPU
        // figures before them (32 bytes).
        let no_times_end = bytes.len() - 16 - 4 - 20;
        let no_times = Stats {
            user_ns: 0,
            system_ns: 0,
            threads: s
                .threads
                .iter()
                .map(|t| ThreadStat {
                    user_ns: 0,
                    system_ns: 0,
                    ..t.clone()
                })
                .collect(),
            ..s.clone()
        };
        assert_eq!(
            Stats::decode(&bytes[8..no_times_end]),
            Some(no_times.clone())
        );
        let old_end = no_times_end - 32;
        let old = Stats {
            cpus: CpuStat::default(),
            ..no_times
        };
        assert_eq!(Stats::decode(&bytes[8..old_end]), Some(old));
        for cut in (8..bytes.len()).filter(|&c| c != old_end && c != no_times_end) {
            assert!(Stats::decode(&bytes[8..cut]).is_none(), "cut at {cut}");
        }
        let mut lie = bytes[8..].to_vec();
        lie[104..108].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Stats::decode(&lie).is_none());
        assert_eq!(Stats::body_len(b"KRECxxxx"), None);
    }
}
