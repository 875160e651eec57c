//! Processes named by pid and start time, so a recorded pid that the kernel has since
//! given to another process is never mistaken for ours (or signalled).

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::{Deserialize, Serialize};

/// A process: its pid and its start time (clock ticks after boot, `/proc/PID/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Start time, in clock ticks after boot.
    pub start: u64,
}

/// Field 3 (state) and field 22 (start time) of a `/proc/PID/stat` line.
fn stat_fields(stat: &str) -> Option<(char, u64)> {
    let rest = stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .collect::<Vec<_>>();
    let state = rest.first()?.chars().next()?;
    Some((state, rest.get(19)?.parse().ok()?))
}

/// Whether a `/proc/PID/stat` line is of a live (not zombie) process in group `pgid`.
fn in_group(stat: &str, pgid: i32) -> bool {
    let rest = stat
        .rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    let live = rest.first().is_some_and(|s| *s != "Z" && *s != "X");
    live && rest.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
}

fn read_stat(pid: i32) -> Option<(char, u64)> {
    stat_fields(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

impl Proc {
    /// The process `pid`, if it exists.
    pub fn of(pid: u32) -> Option<Proc> {
        let pid = i32::try_from(pid).ok()?;
        read_stat(pid).map(|(_, start)| Proc { pid, start })
    }

    /// This process.
    pub fn current() -> Option<Proc> {
        Proc::of(std::process::id())
    }

    /// Whether this very process still runs (a zombie does not).
    pub fn alive(&self) -> bool {
        matches!(read_stat(self.pid), Some((state, start)) if start == self.start && state != 'Z' && state != 'X')
    }

    /// Sends `sig` to the process, if it is still this one.
    pub fn signal(&self, sig: Signal) {
        if let (true, Some(pid)) = (self.alive(), Pid::from_raw(self.pid)) {
            let _ = kill_process(pid, sig);
        }
    }

    /// Whether any process of the group this process led is still running (after the
    /// leader itself has gone, its group may not have).
    pub fn group_alive(&self) -> bool {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return false;
        };
        dir.flatten().any(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| in_group(&s, self.pid))
        })
    }

    /// Sends `sig` to the process group this process leads, if it is still this one.
    pub fn signal_group(&self, sig: Signal) {
        if let (true, Some(pid)) = (self.alive(), Pid::from_raw(self.pid)) {
            let _ = kill_process_group(pid, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(stat_fields(line), Some(('S', 98765)));
        assert_eq!(stat_fields("garbage"), None);
        assert!(in_group(line, 42) && !in_group(line, 1));
        assert!(!in_group(&line.replace(") S", ") Z"), 42));
        let me = Proc::current().unwrap();
        assert!(me.alive());
        assert!(!Proc {
            start: me.start + 1,
            ..me
        }
        .alive());
    }
}
