//! The console streams (descriptors 0, 1 and 2 at start): standard input is always at end
//! of file, standard output and error go to the machine's consoles.

use alloc::sync::Arc;

use super::file::{Access, FileLike};
use super::poll::{POLLIN, POLLNVAL, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::errno::{Errno, KResult};
use crate::fs::{FsId, Stat, Vfs};
use crate::machine::Machine;

/// Which console stream a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Standard input: always at end of file.
    Stdin,
    /// Standard output (`Machine::write_stdout`).
    Stdout,
    /// Standard error (`Machine::write_stderr`).
    Stderr,
}

impl FileLike for Console {
    fn read(&self, _: &mut dyn Machine, _: &mut [u8]) -> KResult<usize> {
        Ok(0)
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
        if access.readable {
            r |= POLLIN | POLLRDNORM;
        }
        if access.writable {
            r |= POLLOUT | POLLWRNORM;
        }
        r
    }

    fn reopen(&self, _: &Vfs, _: u32, _: u64) -> KResult<Arc<dyn FileLike>> {
        Ok(Arc::new(*self))
    }
}
