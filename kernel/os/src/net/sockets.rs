//! The stack's smoltcp sockets, in two sets: the active ones, which the interface walks on
//! every run, and quiet TCP connections parked outside it.
//!
//! smoltcp's `Interface::poll` asks every socket of the set it is given whether it has
//! something to send (and each received segment is offered to every socket in turn), so a
//! run costs time in proportion to the sockets. A server with hundreds of connections has
//! few that need the interface at any moment: most wait for their peer, or for the program
//! to read what came. Such a connection is parked when smoltcp says it needs nothing before
//! its next segment (`Interface::poll_at` answers `None` for it alone: no data or flag to
//! send, no acknowledgement owed, no timer). It goes back to the active set when a segment
//! for it arrives ([`Sockets::route`]) or the program changes it ([`Sockets::get_mut`]).
//! Neither can happen unseen, so a parked connection's state and readiness do not change
//! while it is parked.
//!
//! smoltcp's handles change when a socket moves between sets; the rest of the stack names
//! sockets by [`Slot`], which does not.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, AnySocket, Socket};
use smoltcp::time::Instant;

use super::SockAddr;

/// A socket's name in the stack, stable while it moves between the sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(u32);

/// Where a socket is.
#[derive(Debug, Clone, Copy)]
enum Place {
    Active(SocketHandle),
    Parked(SocketHandle),
}

#[derive(Debug)]
struct Entry {
    place: Place,
    /// The socket descriptor (`Sock`) whose readiness this socket decides.
    owner: u64,
}

/// A TCP connection's addresses: (local, remote).
type Tuple = (SockAddr, SockAddr);

/// The sockets of a stack (see the module documentation).
pub struct Sockets {
    active: SocketSet<'static>,
    parked: SocketSet<'static>,
    entries: BTreeMap<Slot, Entry>,
    /// The slots in the active set.
    active_slots: BTreeSet<Slot>,
    /// Parked connections by their addresses, for [`Sockets::route`].
    by_tuple: BTreeMap<Tuple, Slot>,
    /// A set of one, to ask the interface about a single socket.
    scratch: SocketSet<'static>,
    next: u32,
}

impl Default for Sockets {
    fn default() -> Sockets {
        Sockets {
            active: SocketSet::new(Vec::new()),
            parked: SocketSet::new(Vec::new()),
            entries: BTreeMap::new(),
            active_slots: BTreeSet::new(),
            by_tuple: BTreeMap::new(),
            scratch: SocketSet::new(Vec::new()),
            next: 0,
        }
    }
}

/// The addresses of a TCP connection, when it has both ends.
fn tuple_of(t: &tcp::Socket<'static>) -> Option<Tuple> {
    Some((
        SockAddr::from_endpoint(t.local_endpoint()?),
        SockAddr::from_endpoint(t.remote_endpoint()?),
    ))
}

impl Sockets {
    /// Adds a socket to the active set, on behalf of socket descriptor `owner`.
    pub fn add<T: AnySocket<'static>>(&mut self, socket: T, owner: u64) -> Slot {
        let slot = Slot(self.next);
        self.next = self.next.wrapping_add(1);
        let h = self.active.add(socket);
        self.entries.insert(
            slot,
            Entry {
                place: Place::Active(h),
                owner,
            },
        );
        self.active_slots.insert(slot);
        slot
    }

    /// Removes a socket.
    pub fn remove(&mut self, slot: Slot) {
        let Some(e) = self.entries.remove(&slot) else {
            return;
        };
        match e.place {
            Place::Active(h) => {
                self.active.remove(h);
                self.active_slots.remove(&slot);
            }
            Place::Parked(h) => {
                if let Some(t) = tcp::Socket::downcast(self.parked.get::<Socket>(h)) {
                    if let Some(k) = tuple_of(t) {
                        self.by_tuple.remove(&k);
                    }
                }
                self.parked.remove(h);
            }
        }
    }

    /// Hands a socket to another descriptor (an accepted connection leaves its listener).
    pub fn set_owner(&mut self, slot: Slot, owner: u64) {
        if let Some(e) = self.entries.get_mut(&slot) {
            e.owner = owner;
        }
    }

    /// A socket, wherever it is. Panics if `slot` is not a `T`, as smoltcp's sets do.
    pub fn get<T: AnySocket<'static>>(&self, slot: Slot) -> &T {
        match self.entries[&slot].place {
            Place::Active(h) => self.active.get::<T>(h),
            Place::Parked(h) => self.parked.get::<T>(h),
        }
    }

    /// A socket to change: it becomes active, since a change may give it something to send.
    pub fn get_mut<T: AnySocket<'static>>(&mut self, slot: Slot) -> &mut T {
        let h = self.unpark(slot);
        self.active.get_mut::<T>(h)
    }

    /// Every socket, active or parked.
    pub fn iter(&self) -> impl Iterator<Item = &Socket<'static>> {
        self.active
            .iter()
            .chain(self.parked.iter())
            .map(|(_, s)| s)
    }

    /// The set the interface runs on.
    pub fn active_set(&mut self) -> &mut SocketSet<'static> {
        &mut self.active
    }

    /// How many sockets are parked.
    pub fn parked_count(&self) -> usize {
        self.by_tuple.len()
    }

    /// The descriptors whose sockets are active (each once).
    pub fn active_owners(&self) -> BTreeSet<u64> {
        self.active_slots
            .iter()
            .map(|s| self.entries[s].owner)
            .collect()
    }

    /// Makes the connection a segment from `remote` to `local` is for active, if it is
    /// parked, so the interface finds it (a segment no socket takes is answered with a
    /// reset).
    pub fn route(&mut self, local: SockAddr, remote: SockAddr) {
        if let Some(&slot) = self.by_tuple.get(&(local, remote)) {
            self.unpark(slot);
        }
    }

    /// Moves `slot` to the active set if it is parked; its active handle.
    fn unpark(&mut self, slot: Slot) -> SocketHandle {
        let e = self.entries.get_mut(&slot).expect("a live slot");
        let h = match e.place {
            Place::Active(h) => return h,
            Place::Parked(h) => h,
        };
        let socket = self.parked.remove(h);
        if let Some(k) = tcp::Socket::downcast(&socket).and_then(tuple_of) {
            self.by_tuple.remove(&k);
        }
        let h = self.active.add(socket);
        e.place = Place::Active(h);
        self.active_slots.insert(slot);
        h
    }

    /// Parks every active TCP connection that needs nothing from the interface before its
    /// next segment (see the module documentation). Listening sockets stay active: a SYN
    /// must find them.
    pub fn park_quiet(&mut self, iface: &mut Interface, now: Instant) {
        let candidates: Vec<(Slot, SocketHandle)> = self
            .active_slots
            .iter()
            .filter_map(|&slot| {
                let Place::Active(h) = self.entries[&slot].place else {
                    return None;
                };
                let t = tcp::Socket::downcast(self.active.get::<Socket>(h))?;
                // Cheap tests first: unacknowledged data keeps a retransmission timer.
                let quiet = t.state() != tcp::State::Listen
                    && t.send_queue() == 0
                    && tuple_of(t).is_some_and(|k| !self.by_tuple.contains_key(&k));
                quiet.then_some((slot, h))
            })
            .collect();
        for (slot, h) in candidates {
            let socket = self.active.remove(h);
            let sh = self.scratch.add(socket);
            let wants = iface.poll_at(now, &self.scratch).is_some();
            let socket = self.scratch.remove(sh);
            let e = self.entries.get_mut(&slot).expect("a live slot");
            if wants {
                e.place = Place::Active(self.active.add(socket));
                continue;
            }
            let k = tcp::Socket::downcast(&socket).and_then(tuple_of);
            e.place = Place::Parked(self.parked.add(socket));
            self.active_slots.remove(&slot);
            if let Some(k) = k {
                self.by_tuple.insert(k, slot);
            }
        }
    }
}
