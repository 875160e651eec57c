//! The console streams (descriptors 0, 1 and 2 at start): standard input comes from the
//! host on demand ([`HostInput`], `kiln_abi::stdin`) or is always at end of file, standard
//! output and error go to the machine's consoles.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use spin::Mutex;

use super::file::{Access, FileLike};
use super::poll::{POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::Waitable;
use crate::errno::{Errno, KResult};
use crate::fs::{FsId, Stat, Vfs};
use crate::machine::Machine;

/// The program's standard input as the host supplies it: what arrived and not yet read,
/// and whether to ask for more. The kernel's channel driver sends the requests
/// ([`HostInput::take_request`]) and hands over what arrives.
#[derive(Debug)]
pub struct HostInput {
    /// Whether the host supplies input; without it, input is always at end of file.
    connected: bool,
    buf: VecDeque<u8>,
    /// The host said end of input: the next read returns 0 and clears it (a terminal can
    /// give more after Ctrl-D, so the read after asks again).
    end: bool,
    /// A request is out and its answer has not fully come.
    asked: bool,
    /// A reader found nothing: the host is to be asked for this many bytes (0: nobody
    /// waits).
    want: usize,
}

impl HostInput {
    /// No input from the host (always at end of file) until [`HostInput::connect`].
    pub const fn new() -> HostInput {
        HostInput {
            connected: false,
            buf: VecDeque::new(),
            end: false,
            asked: false,
            want: 0,
        }
    }

    /// The host supplies input from now on.
    pub fn connect(&mut self) {
        self.connected = true;
    }

    /// Reads what arrived; 0 at end of input; `EAGAIN` (and a request for the host) when
    /// nothing did.
    pub fn read(&mut self, buf: &mut [u8]) -> KResult<usize> {
        if !self.connected || buf.is_empty() {
            return Ok(0);
        }
        if !self.buf.is_empty() {
            let n = buf.len().min(self.buf.len());
            for (dst, src) in buf.iter_mut().zip(self.buf.drain(..n)) {
                *dst = src;
            }
            return Ok(n);
        }
        if self.end {
            self.end = false;
            return Ok(0);
        }
        // What this read asked for, so the host takes no more than a local read would.
        self.want = self.want.max(buf.len().min(kiln_abi::stdin::MAX_CHUNK));
        Err(Errno::EAGAIN)
    }

    /// Whether a read would not block; when it would, the host is to be asked for a
    /// whole chunk (a poll on standard input waits for what the host sends, and cannot
    /// know how much the program will read).
    pub fn readable(&mut self) -> bool {
        if !self.connected || !self.buf.is_empty() || self.end {
            return true;
        }
        self.want = kiln_abi::stdin::MAX_CHUNK;
        false
    }

    /// Whether the host said end of input and nothing is left to read (a pipe's hang-up).
    pub fn hung_up(&self) -> bool {
        self.connected && self.end && self.buf.is_empty()
    }

    /// Bytes waiting to be read.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// The bytes to ask the host for now, if a reader wants input and no request is out.
    pub fn take_request(&mut self) -> Option<usize> {
        if !self.connected || self.want == 0 || self.asked {
            return None;
        }
        self.asked = true;
        Some(core::mem::take(&mut self.want))
    }

    /// Bytes of the answer arrived.
    pub fn arrived(&mut self, data: &[u8]) {
        self.buf.extend(data);
    }

    /// The answer is complete: end of input if `end`.
    pub fn answered(&mut self, end: bool) {
        self.asked = false;
        self.want = 0;
        self.end |= end;
    }
}

impl Default for HostInput {
    fn default() -> Self {
        HostInput::new()
    }
}

/// The program's standard input (one program, one host).
pub static HOST_INPUT: Mutex<HostInput> = Mutex::new(HostInput::new());
/// Wakes readers of standard input: its id is no inode number (those count up from 1).
pub static STDIN_WAITABLE: Waitable = Waitable::with_id(u64::MAX - 3);

/// After [`HOST_INPUT`] took an answer: wakes the readers and pollers of standard input.
pub fn input_arrived(m: &mut dyn Machine) {
    STDIN_WAITABLE.notify(m);
}

/// Which console stream a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Standard input: from the host ([`HOST_INPUT`]) or always at end of file.
    Stdin,
    /// Standard output (`Machine::write_stdout`).
    Stdout,
    /// Standard error (`Machine::write_stderr`).
    Stderr,
}

impl FileLike for Console {
    fn read(&self, _: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        match self {
            Console::Stdin => HOST_INPUT.lock().read(buf),
            _ => Ok(0),
        }
    }

    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        match self {
            Console::Stdout => m.write_stdout(data),
            Console::Stderr => m.write_stderr(data),
            Console::Stdin => return Err(Errno::EBADF),
        }
        Ok(data.len())
    }

    fn stat(&self) -> Stat {
        Stat {
            dev: (0, FsId::Dev as u32),
            ino: *self as u64 + 1,
            mode: crate::fs::node::S_IFCHR | 0o620,
            nlink: 1,
            rdev: (5, 1),
            blksize: 1024,
            ..Stat::default()
        }
    }

    fn fs(&self) -> FsId {
        FsId::Dev
    }

    fn poll_events(&self, access: Access) -> u16 {
        if access.path_only {
            return POLLNVAL;
        }
        let mut r = 0;
        if access.readable && *self == Console::Stdin {
            let mut input = HOST_INPUT.lock();
            if input.hung_up() {
                // As a pipe whose writer is gone: a hang-up, and reads return 0.
                r |= POLLHUP;
            } else if input.readable() {
                r |= POLLIN | POLLRDNORM;
            }
        } else if access.readable {
            r |= POLLIN | POLLRDNORM;
        }
        if access.writable {
            r |= POLLOUT | POLLWRNORM;
        }
        r
    }

    fn waitable(&self) -> Option<&Waitable> {
        (*self == Console::Stdin).then_some(&STDIN_WAITABLE)
    }

    fn locally_driven(&self) -> bool {
        // The host makes standard input ready.
        *self != Console::Stdin
    }

    fn nread(&self, _: u64) -> KResult<u64> {
        match self {
            Console::Stdin => Ok(HOST_INPUT.lock().queued() as u64),
            _ => Err(Errno::ENOTTY),
        }
    }

    fn reopen(&self, _: &Vfs, _: u32, _: u64) -> KResult<Arc<dyn FileLike>> {
        Ok(Arc::new(*self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_host_input_is_at_end() {
        let mut h = HostInput::new();
        assert_eq!(h.read(&mut [0; 8]), Ok(0));
        assert!(h.readable());
        assert_eq!(h.take_request(), None);
    }

    #[test]
    fn a_reader_asks_for_what_it_reads_once_and_gets_what_came() {
        let mut h = HostInput::new();
        h.connect();
        assert_eq!(h.take_request(), None, "nobody asked yet");
        let mut buf = [0u8; 4];
        assert_eq!(h.read(&mut buf), Err(Errno::EAGAIN));
        assert_eq!(h.take_request(), Some(4), "what the read asked for");
        assert_eq!(h.take_request(), None, "one request out at a time");
        assert_eq!(h.read(&mut buf), Err(Errno::EAGAIN));
        assert_eq!(h.take_request(), None);
        h.arrived(b"hell");
        h.answered(false);
        assert_eq!(
            h.take_request(),
            None,
            "the answer satisfied the waiting reader"
        );
        assert_eq!(h.queued(), 4);
        assert!(h.readable());
        assert_eq!(h.read(&mut buf), Ok(4));
        assert_eq!(&buf, b"hell");
        // The largest waiting read, at most a chunk.
        assert_eq!(h.read(&mut [0; 1]), Err(Errno::EAGAIN));
        assert_eq!(h.read(&mut [0; 100_000]), Err(Errno::EAGAIN));
        assert_eq!(h.take_request(), Some(kiln_abi::stdin::MAX_CHUNK));
    }

    #[test]
    fn a_poll_asks_for_a_whole_chunk() {
        let mut h = HostInput::new();
        h.connect();
        assert!(!h.readable());
        assert_eq!(h.take_request(), Some(kiln_abi::stdin::MAX_CHUNK));
        h.arrived(b"x");
        h.answered(false);
        assert!(h.readable());
        assert!(!h.hung_up());
    }

    #[test]
    fn end_of_input_is_a_hang_up_read_once_then_asked_again() {
        let mut h = HostInput::new();
        h.connect();
        assert_eq!(h.read(&mut [0; 4]), Err(Errno::EAGAIN));
        assert_eq!(h.take_request(), Some(4));
        h.answered(true);
        assert!(h.hung_up());
        assert!(h.readable());
        assert_eq!(h.read(&mut [0; 4]), Ok(0));
        assert!(!h.hung_up());
        // A terminal may give more after Ctrl-D: the next read asks again.
        assert_eq!(h.read(&mut [0; 4]), Err(Errno::EAGAIN));
        assert_eq!(h.take_request(), Some(4));
        h.arrived(b"x");
        h.answered(false);
        assert_eq!(h.read(&mut [0; 4]), Ok(1));
    }
}
