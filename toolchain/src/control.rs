//! `stats`: live figures from a running image over its control channel
//! ([`kiln_abi::control`]), which QEMU serves on a Unix socket (`run --control-socket`),
//! shown `top`-like, as JSON, or in Prometheus's text format.

use anyhow::{bail, Context};
use kiln_abi::control::{Stats, REQUEST_STATS};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Asks the kernel behind `socket` for its figures.
pub fn fetch(socket: &Path) -> anyhow::Result<Stats> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the image's control channel at {} (is it running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(REQUEST_STATS)?;
    let mut head = [0u8; 8];
    s.read_exact(&mut head)
        .context("the image did not answer on its control channel (its kernel may predate it)")?;
    let Some(len) = Stats::body_len(&head) else {
        bail!("the control channel sent something that is not a stats record");
    };
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)
        .context("the stats record was cut short")?;
    Stats::decode(&body).context("the stats record does not parse")
}

/// Rates between two snapshots: per second of uptime.
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        now.saturating_sub(before) as f64 / secs
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// A `top`-like page: totals, rates since `before` (when given), threads and descriptors.
pub fn render_text(name: &str, s: &Stats, before: Option<&Stats>) -> String {
    let mut out = String::new();
    let up = s.uptime_ns as f64 / 1e9;
    let (cpu, user, sys_rate, fault_rate, rx_rate, tx_rate) = match before {
        Some(b) => {
            let secs = (s.uptime_ns.saturating_sub(b.uptime_ns)) as f64 / 1e9;
            let busy = rate(s.busy_ns, b.busy_ns, secs) / 1e9 * 100.0;
            (
                busy,
                rate(s.user_ns, b.user_ns, secs) / 1e9 * 100.0,
                rate(s.syscalls, b.syscalls, secs),
                rate(s.page_faults, b.page_faults, secs),
                rate(s.rx.1, b.rx.1, secs),
                rate(s.tx.1, b.tx.1, secs),
            )
        }
        None => (
            s.busy_ns as f64 / s.uptime_ns.max(1) as f64 * 100.0,
            s.user_ns as f64 / s.uptime_ns.max(1) as f64 * 100.0,
            rate(s.syscalls, 0, up),
            rate(s.page_faults, 0, up),
            rate(s.rx.1, 0, up),
            rate(s.tx.1, 0, up),
        ),
    };
    // The program's user time, and the kernel's: its system calls and its own work.
    let user = user.min(cpu);
    out.push_str(&format!(
        "{name}: up {up:.1} s, CPU {cpu:.1}% (program {user:.1}%, kernel {:.1}%), {} threads, {} open files\n",
        cpu - user,
        s.threads.len(),
        s.files.len()
    ));
    out.push_str(&format!(
        "memory: {} used of {}, kernel heap {} (network buffers {}), page tables {}\n",
        mib(s.mem_used),
        mib(s.mem_total),
        mib(s.heap),
        mib(s.net_buffers),
        mib(s.page_tables)
    ));
    out.push_str(&format!(
        "system calls: {} ({sys_rate:.0}/s), page faults: {} ({fault_rate:.0}/s)\n",
        s.syscalls, s.page_faults
    ));
    out.push_str(&format!(
        "network: rx {} frames {} bytes ({rx_rate:.0} B/s), tx {} frames {} bytes ({tx_rate:.0} B/s)\n",
        s.rx.0, s.rx.1, s.tx.0, s.tx.1
    ));
    let c = &s.cpus;
    if c.online > 1 {
        let waited = c.lock_waited as f64 / c.lock_taken.max(1) as f64 * 100.0;
        out.push_str(&format!(
            "cpus: {}, kernel lock taken {} times ({waited:.0}% waited for another CPU), other CPUs held back {} times\n",
            c.online, c.lock_taken, c.held_back
        ));
    }
    out.push_str("\n  TID    USER  SYSTEM  STATE\n");
    let secs = |ns: u64| format!("{:.2}s", ns as f64 / 1e9);
    for t in &s.threads {
        out.push_str(&format!(
            "{:>5} {:>7} {:>7}  {}\n",
            t.tid,
            secs(t.user_ns),
            secs(t.system_ns),
            t.state
        ));
    }
    out.push_str("\n   FD  WHAT\n");
    for f in &s.files {
        out.push_str(&format!("{:>5}  {}\n", f.fd, f.what));
    }
    out
}

/// The figures as one JSON object.
pub fn render_json(name: &str, s: &Stats) -> String {
    let v = serde_json::json!({
        "name": name,
        "uptime_seconds": s.uptime_ns as f64 / 1e9,
        "cpu_busy_seconds": s.busy_ns as f64 / 1e9,
        "cpu_user_seconds": s.user_ns as f64 / 1e9,
        "cpu_system_seconds": s.system_ns as f64 / 1e9,
        "syscalls": s.syscalls,
        "page_faults": s.page_faults,
        "memory": {
            "total_bytes": s.mem_total, "used_bytes": s.mem_used, "kernel_heap_bytes": s.heap,
            "page_table_bytes": s.page_tables, "network_buffer_bytes": s.net_buffers,
        },
        "network": {
            "rx_frames": s.rx.0, "rx_bytes": s.rx.1,
            "tx_frames": s.tx.0, "tx_bytes": s.tx.1,
        },
        "cpus": {
            "online": s.cpus.online, "kernel_lock_taken": s.cpus.lock_taken,
            "kernel_lock_waited": s.cpus.lock_waited, "held_back": s.cpus.held_back,
        },
        "threads": s.threads.iter().map(|t| serde_json::json!({
            "tid": t.tid, "state": t.state,
            "user_seconds": t.user_ns as f64 / 1e9, "system_seconds": t.system_ns as f64 / 1e9,
        })).collect::<Vec<_>>(),
        "files": s.files.iter().map(|f| serde_json::json!({"fd": f.fd, "what": f.what})).collect::<Vec<_>>(),
    });
    v.to_string()
}

/// The figures in Prometheus's text exposition format, labelled with the instance name.
pub fn render_prometheus(name: &str, s: &Stats) -> String {
    let label = name.replace('\\', "\\\\").replace('"', "\\\"");
    let secs = |ns: u64| format!("{}", ns as f64 / 1e9);
    let metrics: [(&str, &str, &str, String); 19] = [
        (
            "uptime_seconds",
            "gauge",
            "Time since the kernel booted.",
            secs(s.uptime_ns),
        ),
        (
            "cpu_seconds_total",
            "counter",
            "CPU time not spent idle.",
            secs(s.busy_ns),
        ),
        (
            "cpu_user_seconds_total",
            "counter",
            "CPU time the program spent in user mode.",
            secs(s.user_ns),
        ),
        (
            "cpu_system_seconds_total",
            "counter",
            "CPU time the kernel spent in the program's system calls and faults.",
            secs(s.system_ns),
        ),
        (
            "syscalls_total",
            "counter",
            "System calls served.",
            s.syscalls.to_string(),
        ),
        (
            "page_faults_total",
            "counter",
            "Page faults handled for the program.",
            s.page_faults.to_string(),
        ),
        (
            "memory_total_bytes",
            "gauge",
            "RAM the kernel manages.",
            s.mem_total.to_string(),
        ),
        (
            "memory_used_bytes",
            "gauge",
            "RAM in use (kernel heap, page tables, program pages).",
            s.mem_used.to_string(),
        ),
        (
            "kernel_heap_bytes",
            "gauge",
            "Live kernel heap allocations.",
            s.heap.to_string(),
        ),
        (
            "page_table_bytes",
            "gauge",
            "RAM holding page tables.",
            s.page_tables.to_string(),
        ),
        (
            "network_buffer_bytes",
            "gauge",
            "Socket buffers and queued frames (part of the kernel heap).",
            s.net_buffers.to_string(),
        ),
        (
            "network_receive_bytes_total",
            "counter",
            "Bytes received by the network card.",
            s.rx.1.to_string(),
        ),
        (
            "network_transmit_bytes_total",
            "counter",
            "Bytes sent by the network card.",
            s.tx.1.to_string(),
        ),
        (
            "threads",
            "gauge",
            "Threads of the program.",
            s.threads.len().to_string(),
        ),
        (
            "open_files",
            "gauge",
            "Open file descriptors of the program.",
            s.files.len().to_string(),
        ),
        (
            "cpus",
            "gauge",
            "CPUs running the kernel (0 from a kernel that does not say).",
            s.cpus.online.to_string(),
        ),
        (
            "kernel_lock_taken_total",
            "counter",
            "Times the kernel lock was taken (counted with more than one CPU).",
            s.cpus.lock_taken.to_string(),
        ),
        (
            "kernel_lock_waited_total",
            "counter",
            "Times a CPU waited for another to let the kernel lock go.",
            s.cpus.lock_waited.to_string(),
        ),
        (
            "cpus_held_back_total",
            "counter",
            "Times the CPUs beyond the first stopped taking threads because the kernel lock was contended.",
            s.cpus.held_back.to_string(),
        ),
    ];
    metrics
        .iter()
        .map(|(m, kind, help, v)| {
            format!("# HELP kiln_{m} {help}\n# TYPE kiln_{m} {kind}\nkiln_{m}{{instance=\"{label}\"}} {v}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_abi::control::{FileStat, ThreadStat};

    fn sample() -> Stats {
        Stats {
            uptime_ns: 10_000_000_000,
            busy_ns: 2_500_000_000,
            syscalls: 5000,
            page_faults: 300,
            mem_total: 128 << 20,
            mem_used: 8 << 20,
            heap: 2 << 20,
            page_tables: 160 << 10,
            net_buffers: 1 << 20,
            rx: (20, 3000),
            tx: (30, 4000),
            threads: vec![ThreadStat {
                tid: 1,
                state: "waiting (I/O)".into(),
                user_ns: 1_250_000_000,
                system_ns: 500_000_000,
            }],
            files: vec![FileStat {
                fd: 3,
                what: "TCP 0.0.0.0:8080 LISTEN (0 of 128 waiting to be accepted)".into(),
            }],
            cpus: Default::default(),
            user_ns: 1_500_000_000,
            system_ns: 600_000_000,
        }
    }

    #[test]
    fn text_shows_rates_threads_and_sockets() {
        let s = sample();
        let mut before = s.clone();
        before.uptime_ns -= 1_000_000_000;
        before.syscalls -= 100;
        before.busy_ns -= 500_000_000;
        before.user_ns -= 300_000_000;
        let t = render_text("web", &s, Some(&before));
        assert!(
            t.starts_with(
                "web: up 10.0 s, CPU 50.0% (program 30.0%, kernel 20.0%), 1 threads, 1 open files\n"
            ),
            "{t}"
        );
        assert!(t.contains("system calls: 5000 (100/s)"), "{t}");
        assert!(
            t.contains("\n    1   1.25s   0.50s  waiting (I/O)\n"),
            "{t}"
        );
        // Since boot, without an earlier snapshot.
        let t = render_text("web", &s, None);
        assert!(t.contains("CPU 25.0% (program 15.0%, kernel 10.0%)"), "{t}");
        assert!(t.contains("    3  TCP 0.0.0.0:8080 LISTEN"), "{t}");
        assert!(!t.contains("cpus:"), "one CPU, nothing to say: {t}");
        let mut two = s.clone();
        two.cpus = kiln_abi::control::CpuStat {
            online: 2,
            lock_taken: 1000,
            lock_waited: 770,
            held_back: 4,
        };
        let t = render_text("web", &two, None);
        assert!(
            t.contains("cpus: 2, kernel lock taken 1000 times (77% waited for another CPU), other CPUs held back 4 times\n"),
            "{t}"
        );
    }

    #[test]
    fn json_and_prometheus_carry_the_figures() {
        let s = sample();
        let j: serde_json::Value = serde_json::from_str(&render_json("web", &s)).unwrap();
        assert_eq!(j["syscalls"], 5000);
        assert_eq!(j["files"][0]["fd"], 3);
        assert_eq!(j["cpus"]["online"], 0);
        assert_eq!(j["cpu_user_seconds"], 1.5);
        assert_eq!(j["threads"][0]["system_seconds"], 0.5);
        let p = render_prometheus("we\"b", &s);
        assert!(
            p.contains("kiln_syscalls_total{instance=\"we\\\"b\"} 5000\n"),
            "{p}"
        );
        assert!(p.contains("# TYPE kiln_memory_used_bytes gauge"), "{p}");
        assert!(
            p.contains("kiln_cpu_system_seconds_total{instance=\"we\\\"b\"} 0.6\n"),
            "{p}"
        );
    }
}
