//! Network sockets ([`crate::net::Socket`]) as open files.

use super::file::{Access, FileLike};
use super::{anon_stat, Waitable};
use crate::errno::KResult;
use crate::fs::Stat;
use crate::machine::Machine;
use crate::net::{Socket, S_IFSOCK};

impl FileLike for Socket {
    fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        Socket::read(self, m, buf)
    }

    fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        Socket::write(self, m, data)
    }

    fn stat(&self) -> Stat {
        anon_stat(self.id, S_IFSOCK | 0o777)
    }

    fn poll_events(&self, _: Access) -> u16 {
        Socket::poll_events(self)
    }

    fn waitable(&self) -> Option<&Waitable> {
        Some(&self.waitable)
    }

    fn event_seq(&self) -> u64 {
        Socket::event_seq(self)
    }

    fn describe(&self) -> Option<alloc::string::String> {
        Some(Socket::describe(self))
    }

    fn nread(&self, _: u64) -> KResult<u64> {
        Ok(self.queues()?.0 as u64)
    }

    fn outq(&self) -> KResult<u64> {
        Ok(self.queues()?.1 as u64)
    }

    fn io_timeout(&self, write: bool) -> u64 {
        let o = self.options();
        [o.rcv_timeout, o.snd_timeout][usize::from(write)]
    }

    /// The network can make a socket ready.
    fn locally_driven(&self) -> bool {
        false
    }
}
