//! The stack's smoltcp sockets, in two sets: the active ones, which the interface walks on
//! every run, and quiet TCP connections parked outside it.
//!
//! smoltcp's `Interface::poll` asks every socket of the set it is given whether it has
//! something to send (and each received segment is offered to every socket in turn), so a
//! run costs time in proportion to the sockets. A server with hundreds of connections has
//! few that need the interface at any moment: most wait for their peer, or for the program
//! to read what came. Such a connection is parked when smoltcp says it needs nothing before
//! its next segment or a timer at least [`PARK_TIMER_MIN_NS`] away (`Interface::poll_at`
//! for it alone: no data or flag to send now; the timer may be a retransmission, a delayed
//! acknowledgement or a keep-alive). It goes back to the active set when a segment for it
//! arrives ([`Sockets::route`]), the program changes it ([`Sockets::get_mut`]) or its timer
//! comes ([`Sockets::wake_due`]). None of these can happen unseen, so a parked
//! connection's state and readiness do not change while it is parked.
//!
//! Under load almost every connection waits for something: an answer sent waits for its
//! acknowledgement, a request read waits for the delayed acknowledgement to ride on the
//! answer. Parking only connections with no timer at all left lighttpd's 256 keep-alive
//! connections all in the active set, and each run asked each of them, several times, for
//! something to send. Among few sockets ([`CROWDED`]) that costs less than the moves, and
//! only connections with nothing in flight are parked.
//!
//! smoltcp's handles change when a socket moves between sets; the rest of the stack names
//! sockets by [`Slot`], which does not.
//!
//! The sets' storage is sized here, not by smoltcp: smoltcp grows a set with `Vec::push`,
//! which aborts when memory for it cannot be had, and at 513 sockets asks for one 442 KB
//! block. So the active set is made with room to spare ([`Set`]) and rebuilt bigger,
//! fallibly, before a socket would not fit, and the parked slab ([`Parked`]) grows with
//! `try_reserve` (both shrink to half once a quarter full, after a burst): a connection
//! that finds no memory is refused (its SYN dropped, `socket` or `connect` failing with
//! `ENOMEM`) or stays active, and the kernel goes on.

use alloc::vec::Vec;

use smoltcp::iface::{Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{tcp, AnySocket, Socket};
use smoltcp::time::Instant;

use super::SockAddr;
use crate::errno::{Errno, KResult};
use crate::small::{SmallMap, SmallSet};

/// A smoltcp socket set and the room its storage has: adding below `cap` never allocates.
struct Set {
    set: SocketSet<'static>,
    /// Sockets the storage holds without growing.
    cap: usize,
    /// Sockets in the set.
    live: usize,
}

impl Set {
    fn new() -> Set {
        Set {
            set: SocketSet::new(Vec::new()),
            cap: 0,
            live: 0,
        }
    }

    /// Adds a socket; the caller made room ([`Sockets::reserve`]).
    fn add<T: AnySocket<'static>>(&mut self, socket: T) -> SocketHandle {
        debug_assert!(self.live < self.cap, "room was made");
        self.live += 1;
        self.set.add(socket)
    }

    fn remove(&mut self, h: SocketHandle) -> Socket<'static> {
        self.live -= 1;
        self.set.remove(h)
    }

    fn get<T: AnySocket<'static>>(&self, h: SocketHandle) -> &T {
        self.set.get::<T>(h)
    }

    fn get_mut<T: AnySocket<'static>>(&mut self, h: SocketHandle) -> &mut T {
        self.set.get_mut::<T>(h)
    }
}

/// The parked connections: a slab with a free list, so that parking or unparking one costs
/// the same among ten or a thousand (smoltcp's `SocketSet::add` looks for a free place from
/// the start, which made each park a walk over the parked sockets). Grown fallibly; the
/// free list has room for every index, so taking a socket out never allocates.
#[derive(Default)]
struct Parked {
    items: Vec<Option<Socket<'static>>>,
    free: Vec<usize>,
    live: usize,
}

impl Parked {
    /// Makes sure [`Parked::add`] has a place; false when the slab cannot grow.
    fn make_room(&mut self) -> bool {
        if !self.free.is_empty() {
            return true;
        }
        let room = self.items.len() + 1 - self.free.len();
        self.items.try_reserve(1).is_ok() && self.free.try_reserve(room).is_ok()
    }

    /// Puts `socket` away and gives its index. Allocates only without
    /// [`Parked::make_room`] first.
    fn add(&mut self, socket: Socket<'static>) -> usize {
        let i = self.free.pop().unwrap_or_else(|| {
            self.items.push(None);
            self.items.len() - 1
        });
        self.items[i] = Some(socket);
        self.live += 1;
        i
    }

    fn remove(&mut self, i: usize) -> Socket<'static> {
        let socket = self.items[i].take().expect("a parked socket");
        self.free.push(i);
        self.live -= 1;
        socket
    }

    fn get(&self, i: usize) -> &Socket<'static> {
        self.items[i].as_ref().expect("a parked socket")
    }
}

/// A socket's name in the stack, stable while it moves between the sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(u32);

/// Where a socket is.
#[derive(Debug, Clone, Copy)]
enum Place {
    Active(SocketHandle),
    /// Its index in [`Parked`].
    Parked(usize),
}

#[derive(Debug)]
struct Entry {
    place: Place,
    /// Its index in `active_slots` while active.
    active_at: usize,
    /// While parked: when its timer wants the interface (monotonic ns).
    wake_at: Option<u64>,
    /// The socket descriptor (`Sock`) whose readiness this socket decides.
    owner: u64,
    /// The last time an active connection was found to need the interface: its
    /// [`Fingerprint`] then, and when its earliest timer fires (monotonic ns). Until one
    /// of them changes, asking again would get the same answer.
    checked: Option<(Fingerprint, u64)>,
}

/// What a received segment or the program changes in a connection, as far as smoltcp
/// shows it: state, queued bytes each way.
type Fingerprint = (tcp::State, usize, usize);

fn fingerprint(t: &tcp::Socket<'static>) -> Fingerprint {
    (t.state(), t.recv_queue(), t.send_queue())
}

/// A TCP connection's addresses: (local, remote).
type Tuple = (SockAddr, SockAddr);

/// The sockets of a stack (see the module documentation).
pub struct Sockets {
    active: Set,
    parked: Parked,
    /// Entries by slot number (a slab: freed numbers are reused).
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// The slots in the active set.
    active_slots: Vec<Slot>,
    /// Parked connections with a timer, by when it fires.
    timers: SmallSet<(u64, Slot)>,
    /// A set of one, to ask the interface about a single socket.
    scratch: SocketSet<'static>,
    /// Connections to ask about in [`Sockets::park_quiet`] (kept to reuse its memory).
    candidates: Vec<(Slot, SocketHandle)>,
    /// TCP sockets whose connection is over, kept for the next connections (see
    /// [`Sockets::recycle`]).
    spare: Vec<tcp::Socket<'static>>,
    /// Connections by their addresses: every parked one (added when parked), and every one
    /// as of the last [`Sockets::owner_of`] that did not find one. Checked on each use,
    /// rebuilt when wrong or short.
    by_addresses: SmallMap<Tuple, Slot>,
}

/// Most sockets kept in [`Sockets::recycle`]'s spares.
const SPARES: usize = 8;
/// A connection whose next timer is at least this far away is parked all the same, and
/// made active again when the timer comes: retransmission (at least a second), delayed
/// acknowledgement (10 to 100 ms) and keep-alive timers (Go enables them on every
/// connection) would otherwise keep every busy connection in the active set. Nearer
/// timers are not worth the move.
const PARK_TIMER_MIN_NS: u64 = 5_000_000;
/// With more sockets than this, busy connections are parked ([`PARK_TIMER_MIN_NS`]);
/// with fewer, walking them on each run costs less than moving them out and back for
/// every request, and only connections with no data in flight and no timer for
/// [`PARK_TIMER_FEW_NS`] are parked (redis-benchmark's 50 connections did about 15%
/// fewer SETs per second with every busy connection parked).
const CROWDED: usize = 64;
/// How far away the timer of a connection parked among few must be (a keep-alive).
const PARK_TIMER_FEW_NS: u64 = 1_000_000_000;

impl Default for Sockets {
    fn default() -> Sockets {
        Sockets {
            active: Set::new(),
            parked: Parked::default(),
            entries: Vec::new(),
            free: Vec::new(),
            active_slots: Vec::new(),
            timers: SmallSet::new(),
            scratch: SocketSet::new(Vec::new()),
            candidates: Vec::new(),
            spare: Vec::new(),
            by_addresses: SmallMap::new(),
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
    fn entry(&self, slot: Slot) -> &Entry {
        self.entries[slot.0 as usize].as_ref().expect("a live slot")
    }

    fn entry_mut(&mut self, slot: Slot) -> &mut Entry {
        self.entries[slot.0 as usize].as_mut().expect("a live slot")
    }

    /// Records that `slot` is in the active set.
    fn activate(&mut self, slot: Slot) {
        let at = self.active_slots.len();
        self.active_slots.push(slot);
        self.entry_mut(slot).active_at = at;
    }

    /// Records that `slot` left the active set.
    fn deactivate(&mut self, slot: Slot) {
        let at = self.entry(slot).active_at;
        self.active_slots.swap_remove(at);
        if let Some(&moved) = self.active_slots.get(at) {
            self.entry_mut(moved).active_at = at;
        }
    }

    /// Makes room in the active set for `need` sockets: rebuilds it with bigger storage
    /// (the sockets' handles change) when it has less. False when that memory cannot be had.
    fn reserve(&mut self, need: usize) -> bool {
        let cap = self.active.cap;
        if need <= cap {
            return true;
        }
        self.rebuild(need.max(cap * 2).max(8))
    }

    /// After a burst: storage a quarter used gets half its size (an active set of 513
    /// sockets holds a 442 KB block, kept otherwise until the process ends). When memory
    /// for the smaller storage cannot be had, it stays as it is.
    fn shrink(&mut self) {
        // The active set keeps room for every socket (see `add`).
        let need = self.active.live + self.parked.live;
        let cap = self.active.cap;
        if cap > 64 && need * 4 <= cap {
            self.rebuild(cap / 2);
        }
        let len = self.parked.items.len();
        if len > 64 && self.parked.live * 4 <= len {
            self.compact_parked(len / 2);
        }
    }

    /// Moves the active sockets to new storage with room for `new_cap`.
    fn rebuild(&mut self, new_cap: usize) -> bool {
        let mut storage: Vec<SocketStorage<'static>> = Vec::new();
        if storage.try_reserve_exact(new_cap).is_err() {
            return false;
        }
        let mut fresh = SocketSet::new(storage);
        for e in self.entries.iter_mut().flatten() {
            if let Place::Active(h) = e.place {
                e.place = Place::Active(fresh.add(self.active.set.remove(h)));
            }
        }
        self.active.set = fresh;
        self.active.cap = new_cap;
        true
    }

    /// Moves the parked sockets to a new slab with room for `room` (at least twice
    /// as many as there are), unless that memory cannot be had.
    fn compact_parked(&mut self, room: usize) {
        let mut fresh = Parked::default();
        if fresh.items.try_reserve_exact(room).is_err()
            || fresh.free.try_reserve_exact(room).is_err()
        {
            return;
        }
        for e in self.entries.iter_mut().flatten() {
            if let Place::Parked(i) = e.place {
                e.place = Place::Parked(fresh.add(self.parked.remove(i)));
            }
        }
        self.parked = fresh;
    }

    /// Adds a socket to the active set, on behalf of socket descriptor `owner`. `ENOMEM`
    /// when the sets cannot grow to hold it. The active set keeps room for every socket,
    /// so a parked one can always come back.
    pub fn add<T: AnySocket<'static>>(&mut self, socket: T, owner: u64) -> KResult<Slot> {
        let all = self.active.live + self.parked.live + 1;
        if !self.reserve(all) || self.entries.try_reserve(1).is_err() {
            return Err(Errno::ENOMEM);
        }
        let h = self.active.add(socket);
        let entry = Entry {
            place: Place::Active(h),
            active_at: 0,
            wake_at: None,
            owner,
            checked: None,
        };
        let slot = match self.free.pop() {
            Some(n) => {
                self.entries[n as usize] = Some(entry);
                Slot(n)
            }
            None => {
                self.entries.push(Some(entry));
                Slot((self.entries.len() - 1) as u32)
            }
        };
        self.activate(slot);
        Ok(slot)
    }

    /// Removes a socket.
    pub fn remove(&mut self, slot: Slot) {
        self.take(slot);
        self.shrink();
    }

    /// Removes a socket and gives it back.
    fn take(&mut self, slot: Slot) -> Option<Socket<'static>> {
        let e = self.entries.get(slot.0 as usize)?.as_ref()?;
        let (place, wake_at) = (e.place, e.wake_at);
        if let Place::Active(_) = place {
            self.deactivate(slot);
        }
        self.entries[slot.0 as usize] = None;
        self.free.push(slot.0);
        Some(match place {
            Place::Active(h) => self.active.remove(h),
            Place::Parked(h) => {
                if let Some(at) = wake_at {
                    self.timers.remove(&(at, slot));
                }
                self.parked.remove(h)
            }
        })
    }

    /// Removes a TCP socket whose connection is over (or never began) and keeps it for a
    /// next connection: a new connection's buffers (128 KiB, zeroed) cost more to make
    /// than a closed socket costs to reset. `keep` false frees it (memory is low).
    pub fn recycle(&mut self, slot: Slot, keep: bool) {
        if let Some(Socket::Tcp(t)) = self.take(slot) {
            if keep && !t.is_open() {
                // The newest are kept: buffer sizes change with memory pressure and options.
                if self.spare.len() == SPARES {
                    self.spare.remove(0);
                }
                self.spare.push(t);
            }
        }
    }

    /// A spare TCP socket (closed, with its buffers) whose buffers have `sizes` (receive,
    /// send), if one is kept.
    pub fn take_spare(&mut self, sizes: (usize, usize)) -> Option<tcp::Socket<'static>> {
        let i =
            (self.spare.iter()).rposition(|t| (t.recv_capacity(), t.send_capacity()) == sizes)?;
        Some(self.spare.swap_remove(i))
    }

    /// Frees the spare sockets.
    pub fn drop_spares(&mut self) {
        self.spare = Vec::new();
    }

    /// The spare sockets (for the memory report).
    pub fn spares(&self) -> &[tcp::Socket<'static>] {
        &self.spare
    }

    /// Hands a socket to another descriptor (an accepted connection leaves its listener).
    pub fn set_owner(&mut self, slot: Slot, owner: u64) {
        self.entry_mut(slot).owner = owner;
    }

    /// A socket, wherever it is. Panics if `slot` is not a `T`, as smoltcp's sets do.
    pub fn get<T: AnySocket<'static>>(&self, slot: Slot) -> &T {
        match self.entry(slot).place {
            Place::Active(h) => self.active.get::<T>(h),
            Place::Parked(i) => {
                T::downcast(self.parked.get(i)).expect("a slot holds a socket of its type")
            }
        }
    }

    /// A socket to change: it becomes active, since a change may give it something to send.
    pub fn get_mut<T: AnySocket<'static>>(&mut self, slot: Slot) -> &mut T {
        let h = self.unpark(slot);
        self.entry_mut(slot).checked = None;
        self.active.get_mut::<T>(h)
    }

    /// Every socket, active or parked.
    pub fn iter(&self) -> impl Iterator<Item = &Socket<'static>> {
        self.active
            .set
            .iter()
            .map(|(_, s)| s)
            .chain(self.parked.items.iter().flatten())
    }

    /// The set the interface runs on.
    pub fn active_set(&mut self) -> &mut SocketSet<'static> {
        &mut self.active.set
    }

    /// Entries in the index of connections by addresses, stale ones included.
    #[cfg(test)]
    pub fn index_len(&self) -> usize {
        self.by_addresses.len()
    }

    /// How many sockets are parked.
    pub fn parked_count(&self) -> usize {
        self.parked.live
    }

    /// The descriptor (`Sock`) of the TCP connection with addresses `tuple` (local,
    /// remote), a connection still being made counting as its listener's. `None` when no
    /// socket has them (a connection request, a segment for a closed connection). Looks
    /// through every socket only when the index misses, and then at most once per
    /// `rebuilt` (a run of the stack).
    pub fn owner_of(&mut self, tuple: Tuple, rebuilt: &mut bool) -> Option<u64> {
        if let Some(owner) = self.indexed_owner(tuple) {
            return Some(owner);
        }
        if core::mem::replace(rebuilt, true) || !self.rebuild_index() {
            return None;
        }
        self.indexed_owner(tuple)
    }

    /// Builds the index of connections by addresses from every socket. False when the
    /// memory for it cannot be had (the old index stays).
    fn rebuild_index(&mut self) -> bool {
        let mut pairs = Vec::new();
        if pairs.try_reserve(self.entries.len()).is_err() {
            return false;
        }
        for (n, e) in self.entries.iter().enumerate() {
            let Some(e) = e else { continue };
            if let Some(t) = self.tcp_at(e.place).and_then(tuple_of) {
                pairs.push((t, Slot(n as u32)));
            }
        }
        self.by_addresses = SmallMap::from_pairs(pairs);
        // Two sockets with the same addresses get one entry: a parked one left out would
        // never see its segments, so it comes back to the active set.
        for n in 0..self.entries.len() {
            let slot = Slot(n as u32);
            let Some(Entry {
                place: Place::Parked(i),
                ..
            }) = self.entries[n]
            else {
                continue;
            };
            let t = tcp::Socket::downcast(self.parked.get(i)).and_then(tuple_of);
            if t.is_none_or(|t| self.indexed_slot(t) != Some(slot)) {
                self.unpark(slot);
            }
        }
        true
    }

    /// [`Sockets::owner_of`] from the index alone, if its entry is still right.
    fn indexed_owner(&self, tuple: Tuple) -> Option<u64> {
        self.indexed_slot(tuple).map(|slot| self.entry(slot).owner)
    }

    /// The connection with addresses `tuple` by the index alone, if its entry is still
    /// right. Every parked connection has its entry ([`Sockets::index`]).
    fn indexed_slot(&self, tuple: Tuple) -> Option<Slot> {
        let &slot = self.by_addresses.get(&tuple)?;
        let e = self.entries.get(slot.0 as usize)?.as_ref()?;
        let t = self.tcp_at(e.place)?;
        (tuple_of(t) == Some(tuple)).then_some(slot)
    }

    /// Makes sure the index finds connection `slot` by its addresses `tuple`, as a parked
    /// connection must be found ([`Sockets::route`]). The socket itself may be out of its
    /// set (being looked at by [`Sockets::park_quiet`]). False when another live connection
    /// has the same addresses (a new connection cannot: a SYN for a live tuple is dropped)
    /// or the index cannot grow.
    fn index(&mut self, tuple: Tuple, slot: Slot) -> bool {
        match self.by_addresses.get(&tuple) {
            Some(&s) if s == slot => return true,
            Some(_) if self.indexed_slot(tuple).is_some() => return false,
            _ => {}
        }
        if !self.by_addresses.try_reserve(1) {
            return false;
        }
        self.by_addresses.insert(tuple, slot);
        true
    }

    /// The TCP socket at `place`, if it is one.
    fn tcp_at(&self, place: Place) -> Option<&tcp::Socket<'static>> {
        let socket = match place {
            Place::Active(h) => self.active.get::<Socket>(h),
            Place::Parked(i) => self.parked.get(i),
        };
        tcp::Socket::downcast(socket)
    }

    /// The descriptors whose sockets are active (one may come more than once).
    pub fn active_owners(&self) -> impl Iterator<Item = u64> + '_ {
        self.active_slots.iter().map(|&s| self.entry(s).owner)
    }

    /// Makes the connection a segment from `remote` to `local` is for active, if it is
    /// parked, so the interface finds it (a segment no socket takes is answered with a
    /// reset).
    pub fn route(&mut self, local: SockAddr, remote: SockAddr) {
        if let Some(slot) = self.indexed_slot((local, remote)) {
            self.unpark(slot);
        }
    }

    /// Makes the parked connections whose timer came active again.
    pub fn wake_due(&mut self, now_ns: u64) {
        while let Some(&(at, slot)) = self.timers.first() {
            if at > now_ns {
                break;
            }
            self.unpark(slot);
        }
    }

    /// When the first parked connection's timer fires (monotonic ns).
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Moves `slot` to the active set if it is parked; its active handle.
    fn unpark(&mut self, slot: Slot) -> SocketHandle {
        let h = match self.entry(slot).place {
            Place::Active(h) => return h,
            Place::Parked(h) => h,
        };
        if let Some(at) = self.entry_mut(slot).wake_at.take() {
            self.timers.remove(&(at, slot));
        }
        let socket = self.parked.remove(h);
        let h = self.active.add(socket);
        let e = self.entry_mut(slot);
        e.place = Place::Active(h);
        e.checked = None;
        self.activate(slot);
        h
    }

    /// Parks every active TCP connection that needs nothing from the interface before its
    /// next segment (see the module documentation). Listening sockets stay active: a SYN
    /// must find them. `now_ns` is `now` on the monotonic clock.
    pub fn park_quiet(&mut self, iface: &mut Interface, now: Instant, now_ns: u64) {
        // Entries of closed connections stay in the index until it is rebuilt: keep them
        // bounded.
        if self.by_addresses.len() > 2 * self.entries.len() + 64 {
            self.rebuild_index();
        }
        let crowded = self.active.live + self.parked.live > CROWDED;
        let near = if crowded {
            PARK_TIMER_MIN_NS
        } else {
            PARK_TIMER_FEW_NS
        };
        let mut candidates = core::mem::take(&mut self.candidates);
        candidates.clear();
        for &slot in &self.active_slots {
            let e = self.entry(slot);
            let Place::Active(h) = e.place else { continue };
            let Some(t) = tcp::Socket::downcast(self.active.get::<Socket>(h)) else {
                continue;
            };
            // A connection that did not change since it was last asked has the same answer
            // until its timer fires. Among few, unacknowledged data (a retransmission
            // timer) keeps a connection active.
            let quiet = t.state() != tcp::State::Listen
                && (crowded || t.send_queue() == 0)
                && !matches!(e.checked, Some((fp, at)) if fp == fingerprint(t) && now_ns < at);
            if quiet {
                candidates.push((slot, h));
            }
        }
        for &(slot, h) in &candidates {
            let socket = self.active.remove(h);
            let sh = self.scratch.add(socket);
            let wants = iface.poll_at(now, &self.scratch);
            let socket = self.scratch.remove(sh);
            let Some(t) = tcp::Socket::downcast(&socket) else {
                unreachable!("candidates are TCP sockets")
            };
            let k = tuple_of(t);
            // A connection with no addresses, or with those of a parked one (which a new
            // connection cannot have: a SYN for a live tuple is dropped), stays active.
            let wake_at = wants.map(|at| (at.total_micros().max(0) as u64).saturating_mul(1000));
            let far = wake_at.is_none_or(|at| at >= now_ns.saturating_add(near));
            if !far || !k.is_some_and(|k| self.index(k, slot)) {
                let at_ns = wake_at.unwrap_or(u64::MAX);
                let fp = fingerprint(t);
                let h = self.active.add(socket);
                let e = self.entry_mut(slot);
                e.checked = Some((fp, at_ns));
                e.place = Place::Active(h);
                continue;
            }
            // No room to park it (the slab could not grow): it stays active.
            if !self.parked.make_room() {
                let h = self.active.add(socket);
                self.entry_mut(slot).place = Place::Active(h);
                continue;
            }
            let h = self.parked.add(socket);
            self.deactivate(slot);
            let e = self.entry_mut(slot);
            e.place = Place::Parked(h);
            e.wake_at = wake_at;
            if let Some(at) = wake_at {
                self.timers.insert((at, slot));
            }
        }
        self.candidates = candidates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::socket::udp;

    fn socket() -> udp::Socket<'static> {
        let buf = || {
            udp::PacketBuffer::new(
                alloc::vec![udp::PacketMetadata::EMPTY; 1],
                alloc::vec![0; 16],
            )
        };
        udp::Socket::new(buf(), buf())
    }

    #[test]
    fn a_set_shrinks_after_a_burst_and_keeps_its_sockets() {
        let mut s = Sockets::default();
        let slots: Vec<Slot> = (0..300).map(|i| s.add(socket(), i).unwrap()).collect();
        assert!(s.active.cap >= 300);
        for (i, &slot) in slots.iter().enumerate() {
            s.get_mut::<udp::Socket>(slot)
                .bind(1000 + i as u16)
                .unwrap();
        }
        for &slot in &slots[10..] {
            s.remove(slot);
        }
        assert!(
            s.active.cap <= 64,
            "storage for {} sockets kept",
            s.active.cap
        );
        assert!(s.active.cap >= s.active.live + s.parked.live);
        // The sockets left moved to the new storage and are still themselves.
        for (i, &slot) in slots[..10].iter().enumerate() {
            assert_eq!(s.get::<udp::Socket>(slot).endpoint().port, 1000 + i as u16);
        }
        // And the set grows again.
        let more: Vec<Slot> = (0..100)
            .map(|i| s.add(socket(), 1000 + i).unwrap())
            .collect();
        assert_eq!(more.len(), 100);
        assert!(s.active.cap >= 110);
    }

    #[test]
    fn the_parked_slab_reuses_places_and_shrinks_after_a_burst() {
        let mut s = Sockets::default();
        let slots: Vec<Slot> = (0..300).map(|i| s.add(socket(), i).unwrap()).collect();
        for (i, &slot) in slots.iter().enumerate() {
            s.get_mut::<udp::Socket>(slot)
                .bind(1000 + i as u16)
                .unwrap();
            // Parked as `park_quiet` parks a connection.
            let Place::Active(h) = s.entry(slot).place else {
                panic!("added active")
            };
            let socket = s.active.remove(h);
            s.deactivate(slot);
            assert!(s.parked.make_room());
            let at = s.parked.add(socket);
            s.entry_mut(slot).place = Place::Parked(at);
        }
        assert_eq!(s.parked_count(), 300);
        // A place given back is the next one taken.
        let Place::Parked(freed) = s.entry(slots[7]).place else {
            panic!("parked")
        };
        let socket = s.parked.remove(freed);
        assert_eq!(s.parked.add(socket), freed);
        for &slot in &slots[10..] {
            s.remove(slot);
        }
        assert!(
            s.parked.items.len() <= 64,
            "{} places kept",
            s.parked.items.len()
        );
        assert_eq!(s.parked_count(), 10);
        // The sockets left moved and are still themselves, and come back when asked.
        for (i, &slot) in slots[..10].iter().enumerate() {
            assert_eq!(s.get::<udp::Socket>(slot).endpoint().port, 1000 + i as u16);
        }
        assert_eq!(s.get_mut::<udp::Socket>(slots[3]).endpoint().port, 1003);
        assert_eq!(s.parked_count(), 9);
    }
}
