//! The network stack: one smoltcp interface (IPv4, ARP, TCP, UDP, ICMP echo, DHCP) over the
//! machine's network card ([`NetDevice`], through [`Machine::net_device`]), and the sockets
//! the program opened.
//!
//! The process owns a [`Net`]; each socket descriptor holds a [`Socket`], a handle that
//! shares the stack. Sockets never wait inside the kernel: an operation that cannot finish
//! fails with `EAGAIN`, and the system-call layer turns that into a wait on the socket's
//! channel (`Channel::Object(id)`) for blocking sockets. [`poll`] runs the interface (the
//! kernel calls it after device interrupts and at the time it returns) and wakes the
//! channels of sockets whose readiness changed, plus `Channel::Io`.
//!
//! Loopback (127.0.0.0/8, and the guest's own address) goes through the same interface:
//! see [`phy`].
//!
//! TCP listeners: smoltcp has no listen queue (a SYN that finds no listening socket is
//! answered with a reset), so each listener keeps a pool of smoltcp sockets on its port:
//! a few idle ones listening, the connections being made, and the established ones `accept`
//! has not taken yet. Before the interface sees received frames, [`Stack::admit`] gives each
//! new SYN for a listening port a listening socket of its own while the listener's queue
//! has room (connections being made and made but not accepted: max(backlog + 1, 256), the
//! backlog being `listen`'s argument up to [`SOMAXCONN`]), and drops it silently when the
//! queue is full or the connection is already being made, so the peer retries. A closed
//! connection stays in the set (an orphan) until its FIN handshake ends;
//! one that reaches TIME-WAIT is dropped then (its buffers are the bulk of its memory).

pub mod netlink;
pub mod phy;
mod shared_udp;
mod sockets;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::iface::{Config, Interface};
use smoltcp::socket::{dhcpv4, icmp, tcp, udp, AnySocket};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address,
    Ipv4Cidr,
};
use spin::Mutex;

use kiln_abi::cmdline::NetConfig;

use crate::errno::{Errno, KResult};
use crate::fd::poll::*;
use crate::fd::Waitable;
use crate::fs::node::alloc_ino;
use crate::machine::Machine;
use crate::process::{Channel, Process};
use crate::small::SmallMap;

use sockets::{Slot, Sockets};

/// A network card: Ethernet frames in and out. The kernel implements it on virtio-net;
/// host tests on memory.
pub trait NetDevice {
    /// The card's MAC address.
    fn mac(&self) -> [u8; 6];
    /// The next received frame, or `None` when no frame is waiting.
    fn receive(&mut self) -> Option<Vec<u8>>;
    /// Sends one frame; `false` when it was dropped (transmit queue full).
    fn transmit(&mut self, frame: &[u8]) -> bool;
    /// Whether a received frame is waiting (cheap: no copy). A card that cannot tell
    /// answers `true`, which only costs a run of the stack.
    fn has_received(&mut self) -> bool {
        true
    }
    /// Hands the frames [`NetDevice::transmit`] queued to the card (one notification for
    /// a run of the stack). Cards that send at once do nothing.
    fn flush(&mut self) {}
    /// Whether frames were queued since the last [`NetDevice::flush`] (cards that send at
    /// once never have any).
    fn unflushed(&self) -> bool {
        false
    }
}

/// File type bits of a socket in `st_mode`.
pub const S_IFSOCK: u32 = 0o140000;

/// `POLLRDHUP`: the peer closed its writing side.
pub const POLLRDHUP: u16 = 0x2000;

/// Receive buffer of a TCP connection (the window it advertises).
const TCP_RX: usize = 64 * 1024;
/// Send buffer of a TCP connection.
const TCP_TX: usize = 64 * 1024;
/// Each buffer of a TCP connection made under memory pressure (see [`tcp_buffer_sizes`]).
const TCP_PRESSED: usize = 16 * 1024;
/// Least and most `SO_RCVBUF`/`SO_SNDBUF` give a connection's buffer.
const TCP_BUF_MIN: usize = 4 * 1024;
const TCP_BUF_MAX: usize = 256 * 1024;
/// Largest listen backlog, Linux's default `net.core.somaxconn` (which
/// `/proc/sys/net/core/somaxconn` reports); larger or negative backlogs are cut to it.
pub const SOMAXCONN: usize = 4096;
/// Least room for connections being made (SYN received) per listener, whatever the
/// backlog: a burst of clients connecting at once should not wait for SYN retransmissions
/// (a second, then three).
const SYN_BACKLOG: usize = 256;
/// Idle listening smoltcp sockets a listener keeps ready (more are made when SYNs come).
pub(crate) const IDLE_LISTENERS: usize = 4;
/// Frames taken from the card per round of the interface; the replies they caused go out
/// before the next round.
const RX_BATCH: usize = 64;
/// Datagrams a UDP socket queues to send.
const UDP_PACKETS: usize = 64;
/// Datagrams a UDP socket queues received: a burst of small ones (DNS questions from
/// hundreds of clients at once) fills the count long before the bytes (64 KiB hold a
/// thousand 60-byte questions). Linux's default receive buffer (208 KiB, counting each
/// datagram's overhead) holds about 280 small ones, but a Linux guest drains it sooner;
/// 1,024 took a burst of 1,000 questions with none lost in the guest (BENCHMARKS.md, "UDP
/// bursts"). Each entry costs 24 bytes.
const UDP_RX_PACKETS: usize = 1024;
/// Payload bytes a UDP socket queues each way.
const UDP_BYTES: usize = 64 * 1024;
/// Largest UDP payload, as on Linux: the largest IPv4 datagram (65,535 bytes) less the IP
/// and UDP headers. Datagrams larger than a frame go out in fragments (smoltcp's
/// fragmentation buffer, the feature `fragmentation-buffer-size-65536`, 64 KiB inside the
/// interface) and arrive reassembled, four at a time (`reassembly-buffer-count-4`; with
/// `alloc` each reassembly buffer grows to its datagram). Tracing clients send spans in
/// datagrams of up to 65,000 bytes (Jaeger's agent protocol).
pub const UDP_MAX_PAYLOAD: usize = 65_535 - 28;
/// Stack for building the interface ([`Machine::with_stack`]): `Interface::new` returns
/// 66 KB by value, and the box it goes into is filled from a second copy.
const IFACE_STACK: usize = 256 * 1024;
/// Addresses of 127.0.0.0/8 besides 127.0.0.1 the interface takes on as programs use them
/// (see `Stack::claim_loopback`): smoltcp's `iface-max-addr-count-8` less 127.0.0.1 and
/// the card's address.
const LOOPBACK_EXTRA: usize = 6;
/// First ephemeral port (Linux's default range is 32768-60999).
const EPHEMERAL: (u16, u16) = (32768, 60999);
/// How long `connect` waits for DHCP to configure the interface.
const DHCP_WAIT_NS: u64 = 10_000_000_000;
/// How long a connection attempt may take (SYN retransmissions) before `ETIMEDOUT`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closed connection may take to finish its FIN handshake.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time data written to a TCP connection is held back for more writes of the same
/// thread. A call that only wrote to connections leaves its data for the stack's next run:
/// the thread's next other system call, its wait, another thread's turn, or an arriving
/// frame, whichever comes first (a server writing a header and then a body in two calls
/// sends them in one segment, with one notification of the card). This bound is the
/// scheduler's time slice, so a busy kernel needs no extra timer for it; only a thread
/// that writes and then computes for longer than this, with no system call, waits it out.
pub const HOLD_NS: u64 = 10_000_000;
/// Asking every socket when it next needs the interface costs time in proportion to the
/// sockets; a busy server runs the interface thousands of times a second. The sockets are
/// asked after a run at most this often; a run in between schedules a run this long after
/// the last asking, so no timer (an acknowledgement, a retransmission) is late by more.
const POLL_AT_EVERY_NS: u64 = 2_000_000;
/// While other threads are ready to run, frames that arrived and data written wait up to
/// this long after the interface last ran, so one run (whose cost grows with the number of
/// sockets) serves many connections; an idle or lightly loaded kernel runs it at once.
pub const BATCH_NS: u64 = 1_000_000;
/// Longest time frames a run of the stack queued in the middle of a thread's work wait for
/// the card's notification, while no other thread is ready to run (an event loop's). Each
/// notification traps to the hypervisor (under TCG it also waits for QEMU's lock, which its
/// device emulation holds while it writes frames out), so a server answering many
/// connections notifies once for the responses of several calls; the frames go at once
/// when the thread waits, the kernel goes idle, or a run of the stack comes from an
/// interrupt or timer.
const NOTIFY_DEFER_NS: u64 = 1_000_000;
/// A run of the stack looks at the readiness of the sockets the frames it took in were
/// for and of those system calls changed, not at every socket (a server with hundreds of
/// busy connections runs the stack thousands of times a second). Changes with other
/// causes (a connection attempt or a keep-alive timing out, a full UDP queue drained) are
/// found by a look at every socket, which a run makes when this long passed since the
/// last one, or when a frame was not a TCP segment.
const SWEEP_ALL_NS: u64 = 10_000_000;
/// The owner of sockets no descriptor has (DHCP's).
const NO_OWNER: u64 = u64::MAX;
/// MAC address when the machine has no network card (loopback only).
const LOOPBACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// An IPv4 socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SockAddr {
    /// The address.
    pub ip: [u8; 4],
    /// The port.
    pub port: u16,
}

impl SockAddr {
    fn from_endpoint(e: IpEndpoint) -> SockAddr {
        let IpAddress::Ipv4(a) = e.addr;
        SockAddr {
            ip: a.octets(),
            port: e.port,
        }
    }
    fn addr(&self) -> Ipv4Address {
        Ipv4Address::from(self.ip)
    }
    fn endpoint(&self) -> IpEndpoint {
        IpEndpoint::new(IpAddress::Ipv4(self.addr()), self.port)
    }
}

/// Socket options (`setsockopt`) as the program set them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `SO_REUSEADDR`.
    pub reuse_addr: bool,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// `TCP_NODELAY`.
    pub no_delay: bool,
    /// `SO_KEEPALIVE`.
    pub keep_alive: bool,
    /// `SO_RCVBUF` as set (0: default).
    pub rcvbuf: u32,
    /// `SO_SNDBUF` as set (0: default).
    pub sndbuf: u32,
    /// `SO_LINGER`: (on, seconds).
    pub linger: (bool, i32),
    /// `SO_RCVTIMEO` in nanoseconds (0: none).
    pub rcv_timeout: u64,
    /// `SO_SNDTIMEO` in nanoseconds (0: none).
    pub snd_timeout: u64,
    /// `SO_BROADCAST`.
    pub broadcast: bool,
    /// `IP_TTL` as set (0: the default, 64): the hop limit of what the socket sends.
    pub ttl: u8,
    /// `IP_TOS` as set (kept and reported; the stack sends every packet with 0).
    pub tos: u8,
    /// `IP_RECVERR`: ICMP errors queued for `MSG_ERRQUEUE`. The stack hands the sockets
    /// no ICMP errors, so the queue stays empty.
    pub recv_err: bool,
    /// `IP_MTU_DISCOVER` as set (`None`: Linux's default, `IP_PMTUDISC_WANT`).
    pub pmtu_disc: Option<u8>,
    /// `IP_PKTINFO`: `recvmsg` on a UDP socket says which address each datagram was sent to.
    pub pkt_info: bool,
    /// `SO_TIMESTAMP`: `recvmsg` on a datagram socket gives the time the kernel handed the
    /// datagram over.
    pub timestamp: bool,
    /// Kept and reported, not acted on (the stack has no such knob), as Linux keeps them
    /// for a program to read back: `SO_PRIORITY`, `TCP_USER_TIMEOUT` (ms), `TCP_QUICKACK`,
    /// `TCP_CORK`, `TCP_DEFER_ACCEPT` (s), `TCP_FASTOPEN` (queue length),
    /// `TCP_FASTOPEN_CONNECT`, `IP_BIND_ADDRESS_NO_PORT`, `IP_MULTICAST_TTL` and
    /// `IP_MULTICAST_LOOP`.
    pub kept: KeptOptions,
}

/// Socket options a program may set and read back that change nothing here (see
/// [`Options::kept`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeptOptions {
    /// `SO_PRIORITY`.
    pub priority: i32,
    /// `TCP_USER_TIMEOUT`.
    pub user_timeout: u32,
    /// `TCP_QUICKACK`.
    pub quickack: bool,
    /// `TCP_CORK`.
    pub cork: bool,
    /// `TCP_DEFER_ACCEPT`.
    pub defer_accept: i32,
    /// `TCP_FASTOPEN`.
    pub fastopen: i32,
    /// `TCP_FASTOPEN_CONNECT`.
    pub fastopen_connect: bool,
    /// `IP_BIND_ADDRESS_NO_PORT`.
    pub bind_no_port: bool,
    /// `IP_MULTICAST_TTL` (`None`: the default, 1).
    pub multicast_ttl: Option<u8>,
    /// `IP_MULTICAST_LOOP` turned off.
    pub multicast_no_loop: bool,
    /// `TCP_CONGESTION`: `true` for "reno", else "cubic" (the names Linux offers by default).
    pub reno: bool,
}

/// What `getsockopt(TCP_INFO)` reports of a TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// The state, in Linux's numbering (`TCP_ESTABLISHED` 1 ... `TCP_CLOSING` 11).
    pub state: u8,
    /// The receive buffer's size (the most the connection advertises).
    pub recv_space: usize,
}

#[derive(Debug)]
enum Kind {
    /// A TCP socket not yet listening or connected.
    TcpFresh,
    /// A listening TCP socket: its pool of smoltcp sockets (listening, being connected,
    /// established and not yet accepted) and the backlog `listen` asked for.
    TcpListen { pool: Vec<Slot>, backlog: usize },
    /// A TCP connection (being made, made, or over).
    TcpConn(Slot),
    /// A UDP socket, with its smoltcp socket once bound.
    Udp(Option<Slot>),
    /// An ICMP echo ("ping") socket (`SOCK_DGRAM`, `IPPROTO_ICMP`), with its smoltcp socket
    /// once bound to an identifier (the port of its address, as on Linux).
    Icmp(Option<Slot>),
}

#[derive(Debug)]
struct Sock {
    kind: Kind,
    /// The local address given to `bind` (port resolved), or chosen at connect.
    local: Option<SockAddr>,
    /// UDP: the default destination set by `connect`.
    peer: Option<SockAddr>,
    /// UDP: the address the last datagram received was sent to (`IP_PKTINFO`).
    last_dst: Option<[u8; 4]>,
    opts: Options,
    /// Pending `SO_ERROR`.
    error: Option<Errno>,
    shut_rd: bool,
    shut_wr: bool,
    /// A blocking `connect` is waiting and will run again when woken.
    connect_waiting: bool,
    /// The connection attempt has not ended yet.
    connecting: bool,
    /// When the connection attempt started (monotonic ns).
    connect_started: u64,
    /// The connection was reset by the peer.
    reset: bool,
    /// TCP state seen at the last sweep.
    last_state: tcp::State,
    /// Readiness seen at the last sweep.
    last_ready: u16,
    /// Readiness changes so far (edge-triggered epoll).
    seq: u64,
    /// TCP: when data became readable while none was (monotonic ns), until the program
    /// reads it ([`ack_delay_for`]).
    readable_at: Option<u64>,
    /// ICMP: the echo reply `MSG_PEEK` (or `FIONREAD`) looked at, and its sender.
    peeked: Option<(Vec<u8>, [u8; 4])>,
    /// UDP: datagrams taken from a shared port for this socket ([`shared_udp`]).
    shared_rx: shared_udp::Queue,
}

impl Sock {
    fn new(stream: bool) -> Sock {
        Sock {
            kind: if stream {
                Kind::TcpFresh
            } else {
                Kind::Udp(None)
            },
            local: None,
            peer: None,
            last_dst: None,
            opts: Options::default(),
            error: None,
            shut_rd: false,
            shut_wr: false,
            connect_waiting: false,
            connecting: false,
            connect_started: 0,
            reset: false,
            last_state: tcp::State::Closed,
            last_ready: 0,
            seq: 0,
            peeked: None,
            readable_at: None,
            shared_rx: shared_udp::Queue::default(),
        }
    }
}

/// The stack's state, shared by the process and its socket handles.
pub struct Stack {
    /// Boxed: it holds smoltcp's 64 KiB fragmentation buffer (see [`UDP_MAX_PAYLOAD`]).
    iface: Option<Box<Interface>>,
    sockets: Sockets,
    /// Descriptors a system call changed since the last sweep: their readiness is looked
    /// at even if their sockets are parked.
    touched: Vec<u64>,
    /// The descriptors [`Stack::sweep`] looks at (kept to reuse its memory).
    sweep_ids: Vec<u64>,
    config: NetConfig,
    dhcp: Option<Slot>,
    /// DNS servers in use (static, or from DHCP).
    dns: Vec<[u8; 4]>,
    /// The default route's gateway (static, or from DHCP).
    gateway: Option<[u8; 4]>,
    /// Channel woken when the interface gets (or loses) an address.
    config_channel: u64,
    /// Monotonic time the interface was created.
    started: u64,
    mac: [u8; 6],
    /// Boxed, so that the sorted `Vec` moves only key and pointer on insert and remove.
    socks: SmallMap<u64, alloc::boxed::Box<Sock>>,
    /// Closed connections finishing their FIN handshake.
    orphans: Vec<Slot>,
    looped: VecDeque<Vec<u8>>,
    /// Received frames the interface will see next (after [`Stack::admit`]).
    staged: VecDeque<Vec<u8>>,
    next_port: u16,
    /// Something changed outside a run of the stack (data written, a socket closed): run
    /// it at the end of the system call, or as soon as the kernel looks.
    dirty: bool,
    /// Everything `dirty` stands for is data written to TCP connections with other
    /// machines, which may wait for more (see [`HOLD_NS`]).
    only_writes: bool,
    /// Since when written data has been held back (monotonic ns).
    held: Option<u64>,
    /// Since when frames queued on the card wait for its notification (see
    /// [`NOTIFY_DEFER_NS`]).
    unflushed: Option<u64>,
    /// The addresses (local, remote) of the TCP segments this run took in, whose sockets
    /// it must look at (see [`SWEEP_ALL_NS`]).
    arrived: Vec<(SockAddr, SockAddr)>,
    /// This run took in a frame that is not a TCP segment: it looks at every socket.
    arrived_other: bool,
    /// When a run last looked at every socket (monotonic ns).
    swept_all: u64,
    /// A run looked at some sockets only since then: one must look at all within
    /// [`SWEEP_ALL_NS`].
    sweep_owed: bool,
    /// When the interface's own timers next want it to run, as of the end of the run that
    /// last asked every socket (monotonic ns). Every socket change between runs sets
    /// `dirty`, so this stays true without asking again on each system call.
    poll_at: Option<u64>,
    /// When the sockets were last asked for `poll_at` (see [`POLL_AT_EVERY_NS`]).
    poll_at_asked: u64,
    /// Runs happened since the sockets were last asked.
    poll_at_stale: bool,
    /// When the interface last ran (monotonic ns).
    last_run: u64,
    /// Other threads are ready to run (the kernel says so before each system call): runs
    /// of the interface for arrived frames may wait for a batch (see [`BATCH_NS`]).
    busy: bool,
    /// Some UDP port may have more than one socket bound ([`shared_udp`]).
    shared_udp: bool,
}

/// When a run of the stack notifies the card of the frames it queued.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Notify {
    /// At the end of each round (runs from interrupts, timers and waits).
    Now,
    /// Up to [`NOTIFY_DEFER_NS`] later (runs at the end of a call of a thread that goes on).
    Later,
}

/// The network stack of a process.
#[derive(Clone)]
pub struct Net {
    stack: Arc<Mutex<Stack>>,
}

impl Default for Net {
    fn default() -> Net {
        Net::new(NetConfig::default())
    }
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Net")
    }
}

/// One socket as `/proc/net/tcp` and `/proc/net/udp` list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRow {
    /// Local address and port.
    pub local: SockAddr,
    /// Remote address and port (zeros when none).
    pub remote: SockAddr,
    /// Linux's state number (`TCP_ESTABLISHED` 1 to `TCP_CLOSING` 11; an unconnected UDP
    /// socket is 7, `TCP_CLOSE`).
    pub state: u8,
    /// Bytes waiting to be sent; for a listener, its backlog.
    pub tx_queue: usize,
    /// Bytes waiting to be read; for a listener, connections waiting to be accepted.
    pub rx_queue: usize,
    /// The socket's inode (`socket:[N]`); 0 for a connection not yet accepted.
    pub inode: u64,
}

/// Linux's number for a TCP state (`include/net/tcp_states.h`).
fn tcp_state_number(state: tcp::State) -> u8 {
    match state {
        tcp::State::Established => 1,
        tcp::State::SynSent => 2,
        tcp::State::SynReceived => 3,
        tcp::State::FinWait1 => 4,
        tcp::State::FinWait2 => 5,
        tcp::State::TimeWait => 6,
        tcp::State::Closed => 7,
        tcp::State::CloseWait => 8,
        tcp::State::LastAck => 9,
        tcp::State::Listen => 10,
        tcp::State::Closing => 11,
    }
}

/// A TCP state as `netstat` spells it.
fn tcp_state_name(state: tcp::State) -> &'static str {
    match state {
        tcp::State::Closed => "CLOSED",
        tcp::State::Listen => "LISTEN",
        tcp::State::SynSent => "SYN_SENT",
        tcp::State::SynReceived => "SYN_RECV",
        tcp::State::Established => "ESTABLISHED",
        tcp::State::FinWait1 => "FIN_WAIT1",
        tcp::State::FinWait2 => "FIN_WAIT2",
        tcp::State::CloseWait => "CLOSE_WAIT",
        tcp::State::Closing => "CLOSING",
        tcp::State::LastAck => "LAST_ACK",
        tcp::State::TimeWait => "TIME_WAIT",
    }
}

/// A socket descriptor's handle on the stack. Dropping it (the last descriptor closed)
/// closes the socket.
pub struct Socket {
    /// Kernel object id: the wait channel and the inode number (`waitable.id()`).
    pub id: u64,
    /// The socket's wait channel, for the descriptor layer.
    pub waitable: Waitable,
    /// `SOCK_STREAM` (TCP) rather than `SOCK_DGRAM` (UDP).
    pub stream: bool,
    stack: Arc<Mutex<Stack>>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket:[{}]", self.id)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.stack.lock().release(self.id);
    }
}

/// What `connect` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// Connected (TCP), or the default peer is set (UDP).
    Done,
    /// The handshake is under way: wait on the socket's channel and run `connect` again.
    InProgress,
    /// The interface has no address yet (DHCP): wait on this channel until the deadline.
    NoAddress {
        /// Channel woken when the interface is configured.
        channel: u64,
        /// When to give up with `ENETUNREACH`.
        deadline: u64,
    },
}

/// An Ethernet frame with an ARP request from `mac` at `from` for `target`.
fn arp_request(mac: [u8; 6], from: Ipv4Address, target: Ipv4Address) -> Vec<u8> {
    use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol};
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: from,
        target_hardware_addr: EthernetAddress::BROADCAST,
        target_protocol_addr: target,
    };
    let mut buf = vec![0u8; EthernetFrame::<&[u8]>::header_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    frame.set_src_addr(EthernetAddress(mac));
    frame.set_dst_addr(EthernetAddress::BROADCAST);
    frame.set_ethertype(EthernetProtocol::Arp);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

fn now(m: &dyn Machine) -> Instant {
    Instant::from_micros((m.monotonic_ns() / 1000) as i64)
}

/// `len` zero bytes of kernel memory, or `ENOMEM` (socket buffers are allocated for the
/// program, which may ask for as many as it likes).
fn zeroed(len: usize) -> KResult<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
    v.resize(len, 0);
    Ok(v)
}

/// `ENOMEM` once memory is down to the kernel's reserve: a socket's buffers are kernel
/// memory the program asks for (up to 128 KiB a socket, and a listener keeps a backlog of
/// them), and the reserve is kept for the kernel's own needs. (Buffers are runs of frames
/// of their own, `kiln_hal::heap`, so memory the heap holds free cannot serve them.)
fn room_for_buffers(m: &mut dyn Machine) -> KResult<()> {
    if m.pages().memory_low() {
        Err(Errno::ENOMEM)
    } else {
        Ok(())
    }
}

/// The receive and send buffer sizes of a new TCP connection: what `SO_RCVBUF` and
/// `SO_SNDBUF` asked for (bounded to 4–256 KiB), else 64 KiB each; and at most 16 KiB each
/// while memory is under pressure (less than a quarter of RAM free), as Linux shrinks
/// socket buffers under `tcp_mem` pressure, so that a thousand connections fit where a
/// thousand 128 KiB pairs would not. `ram` is the kernel's (total, free) in bytes.
fn tcp_buffer_sizes(opts: &Options, ram: (u64, u64)) -> (usize, usize) {
    let size = |asked: u32, default: usize| match asked {
        0 => default,
        n => (n as usize).clamp(TCP_BUF_MIN, TCP_BUF_MAX),
    };
    let (rx, tx) = (size(opts.rcvbuf, TCP_RX), size(opts.sndbuf, TCP_TX));
    let (total, free) = ram;
    if free < total / 4 {
        (rx.min(TCP_PRESSED), tx.min(TCP_PRESSED))
    } else {
        (rx, tx)
    }
}

/// A new TCP socket with buffers of `sizes` (receive, send): a spare one from `sockets`
/// when one of those sizes is kept, else a fresh one.
fn tcp_socket(
    sockets: &mut Sockets,
    opts: &Options,
    sizes: (usize, usize),
) -> KResult<tcp::Socket<'static>> {
    if let Some(mut s) = sockets.take_spare(sizes) {
        s.set_timeout(None);
        apply_tcp_options(&mut s, opts);
        return Ok(s);
    }
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(zeroed(sizes.0)?),
        tcp::SocketBuffer::new(zeroed(sizes.1)?),
    );
    apply_tcp_options(&mut s, opts);
    Ok(s)
}

/// The shortest a connection's acknowledgements wait for data to travel with (smoltcp's
/// default), and the longest (half of Linux's `TCP_DELACK_MAX`, well inside a peer's
/// retransmission timeout: Linux's is at least 200 ms). See [`ack_delay_for`].
const ACK_DELAY_MIN: Duration = Duration::from_millis(10);
const ACK_DELAY_MAX: Duration = Duration::from_millis(100);

/// How long a connection's acknowledgements wait for an answer to carry them, given that
/// the program took `wait_ns` to read the last data that came: twice that, within
/// [`ACK_DELAY_MIN`]..=[`ACK_DELAY_MAX`]. A busy event-loop server answers each request
/// after the others queued before it (about 70 ms at 256 connections under TCG): with a
/// fixed 10 ms, every request got an acknowledgement frame of its own before its answer,
/// half the frames the card sent. Like Linux's delayed-ACK estimate (`ato`), the delay
/// follows what the connection shows: a lightly loaded server keeps the short delay, and a
/// peer that waits for the acknowledgement before sending more (Nagle's algorithm) waits
/// at most twice as long as the program already made it wait.
fn ack_delay_for(wait_ns: u64) -> Duration {
    let twice = Duration::from_micros(wait_ns.saturating_mul(2) / 1000);
    twice.clamp(ACK_DELAY_MIN, ACK_DELAY_MAX)
}

fn apply_tcp_options(s: &mut tcp::Socket<'static>, opts: &Options) {
    s.set_nagle_enabled(!opts.no_delay);
    s.set_ack_delay(Some(ACK_DELAY_MIN));
    s.set_keep_alive(opts.keep_alive.then(|| Duration::from_secs(75)));
    s.set_hop_limit((opts.ttl != 0).then_some(opts.ttl));
}

fn udp_socket() -> KResult<udp::Socket<'static>> {
    Ok(udp::Socket::new(
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_RX_PACKETS],
            zeroed(UDP_BYTES)?,
        ),
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            zeroed(UDP_BYTES)?,
        ),
    ))
}

/// Echo messages an ICMP socket queues each way, and their bytes.
const ICMP_PACKETS: usize = 16;
const ICMP_BYTES: usize = 16 * 1024;

fn icmp_socket() -> KResult<icmp::Socket<'static>> {
    Ok(icmp::Socket::new(
        icmp::PacketBuffer::new(
            vec![icmp::PacketMetadata::EMPTY; ICMP_PACKETS],
            zeroed(ICMP_BYTES)?,
        ),
        icmp::PacketBuffer::new(
            vec![icmp::PacketMetadata::EMPTY; ICMP_PACKETS],
            zeroed(ICMP_BYTES)?,
        ),
    ))
}

/// Checks an echo request a program gives a ping socket and puts the socket's identifier in
/// it (the kernel's job on Linux; the checksum is computed as it leaves). `EINVAL` for
/// anything but an echo request with its 8-byte header.
fn echo_request(data: &[u8], ident: u16) -> KResult<Vec<u8>> {
    if data.len() < 8 || data[0] != 8 || data[1] != 0 {
        return Err(Errno::EINVAL);
    }
    let mut v = Vec::new();
    v.try_reserve_exact(data.len()).map_err(|_| Errno::ENOMEM)?;
    v.extend_from_slice(data);
    v[4..6].copy_from_slice(&ident.to_be_bytes());
    Ok(v)
}

fn listen_endpoint(a: SockAddr) -> IpListenEndpoint {
    IpListenEndpoint {
        addr: (a.ip != [0; 4]).then(|| IpAddress::Ipv4(a.addr())),
        port: a.port,
    }
}

/// The addresses and flags of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    src: SockAddr,
    dst: SockAddr,
    flags: u8,
}

/// A connection request: a TCP segment with SYN and neither ACK nor RST.
type Syn = Segment;

/// TCP flags.
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// The connection request an Ethernet frame carries, if it is one.
fn syn_of(frame: &[u8]) -> Option<Syn> {
    segment_of(frame).filter(|s| s.flags & (SYN | RST | ACK) == SYN)
}

/// The TCP segment an Ethernet frame carries, if it does (IPv4, unfragmented).
fn segment_of(frame: &[u8]) -> Option<Segment> {
    let ip = frame.get(14..)?;
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    let tcp = ip.get(ihl..)?;
    if ihl < 20 || fragment != 0 || tcp.len() < 20 {
        return None;
    }
    let addr = |ip: &[u8], port: &[u8]| SockAddr {
        ip: [ip[0], ip[1], ip[2], ip[3]],
        port: u16::from_be_bytes([port[0], port[1]]),
    };
    Some(Segment {
        src: addr(&ip[12..16], &tcp[0..2]),
        dst: addr(&ip[16..20], &tcp[2..4]),
        flags: tcp[13],
    })
}

fn is_established(s: tcp::State) -> bool {
    !matches!(
        s,
        tcp::State::Listen | tcp::State::SynReceived | tcp::State::SynSent
    )
}

impl Net {
    /// A stack with `config` (static address, gateway, DNS; DHCP when no address is given).
    pub fn new(config: NetConfig) -> Net {
        Net {
            stack: Arc::new(Mutex::new(Stack {
                iface: None,
                sockets: Sockets::default(),
                touched: Vec::new(),
                sweep_ids: Vec::new(),
                dns: config.dns.clone(),
                gateway: None,
                config,
                dhcp: None,
                config_channel: alloc_ino(),
                started: 0,
                mac: LOOPBACK_MAC,
                socks: SmallMap::new(),
                orphans: Vec::new(),
                looped: VecDeque::new(),
                staged: VecDeque::new(),
                next_port: EPHEMERAL.0,
                dirty: false,
                only_writes: false,
                held: None,
                unflushed: None,
                arrived: Vec::new(),
                arrived_other: false,
                swept_all: 0,
                sweep_owed: false,
                poll_at: None,
                poll_at_asked: 0,
                poll_at_stale: false,
                last_run: 0,
                busy: false,
                shared_udp: false,
            })),
        }
    }

    /// Replaces the configuration (before the interface first runs).
    pub fn configure(&self, config: NetConfig) {
        let mut s = self.stack.lock();
        s.dns = config.dns.clone();
        s.config = config;
    }

    /// The interfaces, as netlink describes them: loopback, and the card (`eth0`) when the
    /// machine has one, with the address it has now. Sets the interface up if the program
    /// has not used the network yet.
    pub fn links(&self, m: &mut dyn Machine) -> Vec<netlink::Link> {
        let mut s = self.stack.lock();
        s.ensure_iface(m);
        let mut links = alloc::vec![netlink::Link::loopback()];
        if m.net_device().is_some() {
            links.push(netlink::Link {
                index: 2,
                name: "eth0",
                mac: s.mac,
                loopback: false,
                mtu: 1500,
                addr: s
                    .external_addr()
                    .map(|c| (c.address().octets(), c.prefix_len())),
                counts: {
                    let ((rx_frames, rx_bytes), (tx_frames, tx_bytes)) = m.net_counters();
                    (rx_frames, tx_frames, rx_bytes, tx_bytes)
                },
            });
        }
        links
    }

    /// The default route's gateway, once the interface has one.
    pub fn gateway(&self) -> Option<[u8; 4]> {
        self.stack.lock().gateway
    }

    /// The DNS servers in use: the configured ones, else those DHCP offered.
    pub fn dns_servers(&self) -> Vec<[u8; 4]> {
        self.stack.lock().dns.clone()
    }

    /// The TCP sockets, as `/proc/net/tcp` lists them: listeners (with the connections
    /// they hold that are not accepted yet) and connections, by socket id. Sockets neither
    /// listening nor connected are left out, as on Linux.
    pub fn tcp_rows(&self) -> Vec<SocketRow> {
        let s = self.stack.lock();
        let conn = |h: Slot, inode: u64| {
            let t = s.sockets.get::<tcp::Socket>(h);
            SocketRow {
                local: t
                    .local_endpoint()
                    .map(SockAddr::from_endpoint)
                    .unwrap_or_default(),
                remote: t
                    .remote_endpoint()
                    .map(SockAddr::from_endpoint)
                    .unwrap_or_default(),
                state: tcp_state_number(t.state()),
                tx_queue: t.send_queue(),
                rx_queue: t.recv_queue(),
                inode,
            }
        };
        let mut rows = Vec::new();
        for (&id, sock) in s.socks.iter() {
            match &sock.kind {
                Kind::TcpFresh | Kind::Udp(_) | Kind::Icmp(_) => {}
                Kind::TcpListen { pool, backlog } => {
                    let waiting: Vec<Slot> = pool
                        .iter()
                        .copied()
                        .filter(|&h| is_established(s.sockets.get::<tcp::Socket>(h).state()))
                        .collect();
                    rows.push(SocketRow {
                        local: sock.local.unwrap_or_default(),
                        remote: SockAddr::default(),
                        state: tcp_state_number(tcp::State::Listen),
                        tx_queue: *backlog,
                        rx_queue: waiting.len(),
                        inode: id,
                    });
                    rows.extend(waiting.into_iter().map(|h| conn(h, 0)));
                }
                Kind::TcpConn(h) => rows.push(conn(*h, id)),
            }
        }
        rows
    }

    /// The bound UDP sockets, as `/proc/net/udp` lists them, by socket id.
    pub fn udp_rows(&self) -> Vec<SocketRow> {
        let s = self.stack.lock();
        let mut rows = Vec::new();
        for (&id, sock) in s.socks.iter() {
            let Kind::Udp(Some(h)) = sock.kind else {
                continue;
            };
            let u = s.sockets.get::<udp::Socket>(h);
            rows.push(SocketRow {
                local: sock.local.unwrap_or_default(),
                remote: sock.peer.unwrap_or_default(),
                // TCP_ESTABLISHED when connected, else TCP_CLOSE, as Linux shows UDP.
                state: if sock.peer.is_some() { 1 } else { 7 },
                tx_queue: u.send_queue(),
                rx_queue: u.recv_queue(),
                inode: id,
            });
        }
        rows
    }

    /// The interface's address and prefix length, once it has one.
    pub fn address(&self) -> Option<([u8; 4], u8)> {
        let s = self.stack.lock();
        s.external_addr()
            .map(|c| (c.address().octets(), c.prefix_len()))
    }

    /// A new socket (`SOCK_STREAM` when `stream`, else `SOCK_DGRAM`).
    pub fn socket(&self, stream: bool) -> Arc<Socket> {
        self.new_socket(Sock::new(stream), stream)
    }

    /// A new ICMP echo socket (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`, what `ping`
    /// opens): the program sends echo requests and reads the replies to its identifier.
    pub fn ping_socket(&self) -> Arc<Socket> {
        let mut sock = Sock::new(false);
        sock.kind = Kind::Icmp(None);
        self.new_socket(sock, false)
    }

    fn new_socket(&self, sock: Sock, stream: bool) -> Arc<Socket> {
        let waitable = Waitable::new();
        let id = waitable.id();
        self.stack
            .lock()
            .socks
            .insert(id, alloc::boxed::Box::new(sock));
        Arc::new(Socket {
            id,
            waitable,
            stream,
            stack: self.stack.clone(),
        })
    }

    /// Runs the interface: receives and sends what is pending, wakes the channels of sockets
    /// whose readiness changed. Returns when it next wants to run (monotonic ns), if ever.
    pub fn poll(&self, m: &mut dyn Machine) -> Option<u64> {
        let mut s = self.stack.lock();
        s.run(m, Notify::Now);
        s.next_poll()
    }

    /// When the interface next wants to run (monotonic ns), without running it: its timers,
    /// or now when a socket changed outside a run.
    pub fn next_poll(&self) -> Option<u64> {
        self.stack.lock().next_poll()
    }

    /// The end of a system call: runs the interface if the call changed a socket (a
    /// socket closed, a window opened) or frames arrived meanwhile, so a busy server takes
    /// in frames without waiting for the card's interrupt (a check of the card's ring in
    /// memory when nothing happened). Data the call only wrote to connections is held back
    /// for more (see [`HOLD_NS`]).
    pub fn end_of_call(&self, m: &mut dyn Machine) {
        let mut s = self.stack.lock();
        // Before the program's first socket there is no interface, and asking for the card
        // would set it up: a program that never uses the network must not pay for that.
        if s.iface.is_none() {
            return;
        }
        let batching = s.busy && m.monotonic_ns() < s.last_run + BATCH_NS;
        if !batching && m.net_device().is_some_and(|d| d.has_received()) {
            s.pump(m);
        } else if s.dirty {
            if s.only_writes {
                if s.held.is_none() {
                    s.held = Some(m.monotonic_ns());
                }
            } else {
                s.pump(m);
            }
        }
    }

    /// Tells the stack whether other threads are ready to run (see [`BATCH_NS`]).
    pub fn set_busy(&self, busy: bool) {
        self.stack.lock().busy = busy;
    }

    /// When the interface last ran (monotonic ns).
    pub fn last_run(&self) -> u64 {
        self.stack.lock().last_run
    }

    /// Runs the interface if a socket changed outside a run (cheap otherwise). The kernel
    /// calls it after a thread started to wait, so what its call wrote leaves before it
    /// waits for the answer.
    pub fn poll_if_dirty(&self, m: &mut dyn Machine) {
        let mut s = self.stack.lock();
        if s.dirty {
            s.run(m, Notify::Now);
        } else if s.unflushed.is_some() {
            s.flush(m);
        }
    }
}

/// Runs the process's network stack (see [`Net::poll`]). The kernel calls it after a
/// network interrupt and when the returned time (monotonic ns) comes.
pub fn poll(p: &mut Process, m: &mut dyn Machine) -> Option<u64> {
    p.net.poll(m)
}

impl Stack {
    fn external_addr(&self) -> Option<Ipv4Cidr> {
        let iface = self.iface.as_ref()?;
        iface.ip_addrs().iter().find_map(|c| match c {
            IpCidr::Ipv4(c) if c.address().octets()[0] != 127 => Some(*c),
            _ => None,
        })
    }

    /// Makes loopback address `ip` (127.0.0.0/8 beyond 127.0.0.1) one of the interface's,
    /// so that smoltcp answers ARP for it and takes its packets: Linux treats the whole
    /// block as the machine's own (Debian maps the host name to 127.0.1.1, resolvers listen
    /// on 127.0.0.53). The interface holds [`LOOPBACK_EXTRA`] such addresses besides
    /// 127.0.0.1 and the card's; past them, `EADDRNOTAVAIL`. Called once the interface
    /// exists. True when the address is new: smoltcp must learn its hardware address before
    /// it sends to it (it would hold the first packet, a TCP SYN until its retransmission a
    /// second later), so an ARP request for it is looped in, for the caller's next run of
    /// the stack to settle.
    fn claim_loopback(&mut self, ip: [u8; 4]) -> KResult<bool> {
        if ip[0] != 127 || ip == [127, 0, 0, 1] {
            return Ok(false);
        }
        let Some(iface) = self.iface.as_mut() else {
            return Ok(false);
        };
        let addr = Ipv4Address::from(ip);
        let addrs = iface.ip_addrs();
        if addrs
            .iter()
            .any(|c| matches!(c, IpCidr::Ipv4(c) if c.address() == addr))
        {
            return Ok(false);
        }
        let extra = addrs
            .iter()
            .filter(|c| matches!(c, IpCidr::Ipv4(c) if c.address().octets()[0] == 127))
            .count()
            - 1;
        if extra >= LOOPBACK_EXTRA {
            return Err(Errno::EADDRNOTAVAIL);
        }
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), 8));
        });
        let from = Ipv4Address::new(127, 0, 0, 1);
        self.looped.push_back(arp_request(self.mac, from, addr));
        self.dirty = true;
        Ok(true)
    }

    fn own_addrs(&self) -> Vec<Ipv4Address> {
        match &self.iface {
            Some(i) => i
                .ip_addrs()
                .iter()
                .map(|c| match c {
                    IpCidr::Ipv4(c) => c.address(),
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// Creates the interface on first use.
    fn ensure_iface(&mut self, m: &mut dyn Machine) {
        if self.iface.is_some() {
            return;
        }
        let mut seed = [0u8; 8];
        m.fill_random(&mut seed);
        let t = now(m);
        self.started = m.monotonic_ns();
        let mac = m.net_device().map(|d| d.mac()).unwrap_or(LOOPBACK_MAC);
        self.mac = mac;
        let has_card = m.net_device().is_some();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = u64::from_le_bytes(seed);
        // Built on a stack of its own: `Interface::new` returns 66 KB by value, more than
        // the kernel's 64 KiB stack. The device is asked for its capabilities only, which
        // do not depend on the card.
        let (looped, staged) = (&mut self.looped, &mut self.staged);
        let mut config = Some(config);
        let mut made = None;
        m.with_stack(IFACE_STACK, &mut || {
            let mut phy = phy::Phy {
                hw: None,
                looped: &mut *looped,
                rx: &mut *staged,
                mac,
                own: &[],
            };
            if let Some(config) = config.take() {
                made = Some(Box::new(Interface::new(config, &mut phy, t)));
            }
        });
        let mut iface = made.expect("the interface was built");
        let static_ip = self.config.ip;
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8));
            if let Some((ip, len)) = static_ip {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(Ipv4Address::from(ip)), len));
            }
        });
        if static_ip.is_some() {
            if let Some(gw) = self.config.gateway {
                self.gateway = Some(gw);
                let _ = iface
                    .routes_mut()
                    .add_default_ipv4_route(Ipv4Address::from(gw));
            }
        } else if has_card {
            let mut d = dhcpv4::Socket::new();
            d.set_max_lease_duration(Some(Duration::from_secs(3600)));
            self.dhcp = self.sockets.add(d, NO_OWNER).ok();
        }
        self.iface = Some(iface);
    }

    /// A run of the stack (see [`Stack::run`]) inside a system call, for a thread that goes
    /// on afterwards: what it queues on the card may wait for more (see
    /// [`NOTIFY_DEFER_NS`]); the thread's wait, the kernel's idle loop or the timer at
    /// [`Stack::next_poll`] sends it.
    fn pump(&mut self, m: &mut dyn Machine) {
        self.run(m, Notify::Later);
    }

    /// Notifies the card of the frames queued on it.
    fn flush(&mut self, m: &mut dyn Machine) {
        if let Some(hw) = m.net_device() {
            hw.flush();
        }
        self.unflushed = None;
    }

    /// Runs the interface until nothing is left to do, then updates DHCP, orphans and
    /// readiness, waking what changed. Each round takes the looped frames and up to
    /// [`RX_BATCH`] frames from the card, passes them through [`Stack::admit`], and lets
    /// the interface process them and send what they caused; the card is notified of
    /// those `when` says.
    fn run(&mut self, m: &mut dyn Machine, when: Notify) {
        // While other threads are ready, runs come at most every `BATCH_NS` and serve them
        // all: each notifies at once (a thread per connection would otherwise leave its
        // answer for a run that other threads' calls defer too).
        let when = if self.busy { Notify::Now } else { when };
        self.ensure_iface(m);
        self.last_run = m.monotonic_ns();
        self.dirty = false;
        self.only_writes = false;
        self.held = None;
        let own = self.own_addrs();
        let mut card_busy = false;
        // When the interface last ran, in its own clock: every timer due by then was served.
        let mut served = Instant::from_micros(0);
        for _ in 0..64 {
            self.staged.extend(self.looped.drain(..));
            card_busy = false;
            if let Some(hw) = m.net_device() {
                card_busy = true;
                for _ in 0..RX_BATCH {
                    if !hw.has_received() {
                        card_busy = false;
                        break;
                    }
                    let Some(frame) = hw.receive() else {
                        card_busy = false;
                        break;
                    };
                    self.staged.push_back(frame);
                }
            }
            self.admit(m);
            self.route();
            self.sockets.wake_due(m.monotonic_ns());

            let t = now(m);
            let Stack {
                iface,
                sockets,
                looped,
                staged,
                mac,
                ..
            } = self;
            let iface = iface.as_mut().expect("interface created");
            let mut phy = phy::Phy {
                hw: m.net_device(),
                looped,
                rx: staged,
                mac: *mac,
                own: &own,
            };
            iface.poll(t, &mut phy, sockets.active_set());
            served = t;
            self.share_datagrams();
            if when == Notify::Now {
                self.flush(m);
            }
            if self.looped.is_empty() && !card_busy {
                break;
            }
        }
        if when == Notify::Later {
            let now_ns = m.monotonic_ns();
            match self.unflushed {
                Some(since) if now_ns >= since + NOTIFY_DEFER_NS => self.flush(m),
                Some(_) => {}
                None if m.net_device().is_some_and(|d| d.unflushed()) => {
                    self.unflushed = Some(now_ns)
                }
                None => {}
            }
        }
        // Frames left on the card (its interrupt was acknowledged already): run again soon.
        self.dirty |= card_busy || !self.looped.is_empty();
        self.dhcp_events(m);
        let low = m.pages().memory_low();
        if low {
            self.sockets.drop_spares();
        }
        self.reap_orphans(!low);
        self.sweep(m);
        let t = now(m);
        if let Some(iface) = self.iface.as_mut() {
            self.sockets.park_quiet(iface, t, m.monotonic_ns());
        }
        let now_ns = m.monotonic_ns();
        if now_ns >= self.poll_at_asked + POLL_AT_EVERY_NS || self.iface.is_none() {
            let t = now(m);
            self.poll_at = self.iface.as_mut().and_then(|iface| {
                iface
                    .poll_at(t, self.sockets.active_set())
                    .map(|at| (at.total_micros().max(0) as u64).saturating_mul(1000))
            });
            self.poll_at_asked = now_ns;
            self.poll_at_stale = false;
        } else {
            self.poll_at_stale = true;
            // A timer this run served is not due again: kept, it would have the kernel
            // run the interface over and over (from the timer interrupt) until the next
            // asking. What the sockets want next is known then (see `next_poll`).
            let served = (served.total_micros().max(0) as u64).saturating_mul(1000);
            if self.poll_at.is_some_and(|at| at <= served) {
                self.poll_at = None;
            }
        }
    }

    /// Notes that a system call changed descriptor `id` (see `touched`).
    fn touch(&mut self, id: u64) {
        if !self.touched.contains(&id) {
            self.touched.push(id);
        }
    }

    /// Notes a socket change the next run of the stack must act on.
    fn mark_dirty(&mut self) {
        self.dirty = true;
        self.only_writes = false;
    }

    /// Notes data written to a TCP connection with another machine (see [`HOLD_NS`]).
    fn mark_written(&mut self) {
        if !self.dirty {
            self.only_writes = true;
        }
        self.dirty = true;
    }

    /// Whether a run of the stack could bring a socket new data: frames wait on the card or
    /// in the loop, or written data has not been sent yet (its answer may be looped).
    fn may_receive(&mut self, m: &mut dyn Machine) -> bool {
        self.dirty || !self.looped.is_empty() || m.net_device().is_some_and(|d| d.has_received())
    }

    fn dhcp_events(&mut self, m: &mut dyn Machine) {
        let Some(h) = self.dhcp else { return };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(c)) => Some((c.address, c.router, c.dns_servers)),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        let iface = self.iface.as_mut().expect("interface created");
        iface.update_ip_addrs(|a| {
            a.retain(|c| matches!(c, IpCidr::Ipv4(c) if c.address().octets()[0] == 127));
            if let Some((addr, _, _)) = &event {
                let _ = a.push(IpCidr::Ipv4(*addr));
            }
        });
        match &event {
            Some((addr, router, dns)) => {
                match router {
                    Some(r) => {
                        self.gateway = Some(r.octets());
                        let _ = iface.routes_mut().add_default_ipv4_route(*r);
                    }
                    None => {
                        self.gateway = None;
                        iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                if self.config.dns.is_empty() {
                    self.dns = dns.iter().map(|d| d.octets()).collect();
                }
                m.log(format_args!(
                    "net: DHCP address {}/{}, gateway {:?}",
                    addr.address(),
                    addr.prefix_len(),
                    router
                ));
            }
            None => {
                if iface.routes_mut().remove_default_ipv4_route().is_some() {
                    m.log(format_args!("net: DHCP lease lost"));
                }
            }
        }
        m.wake(Channel::Object(self.config_channel), usize::MAX);
    }

    /// Frees orphans whose connection is over. TIME-WAIT counts as over: Linux keeps a
    /// small record there, smoltcp the whole socket with its buffers; without it a late
    /// retransmitted FIN is answered with a reset, which the peer (already closed) ignores.
    fn reap_orphans(&mut self, keep: bool) {
        let sockets = &mut self.sockets;
        self.orphans.retain(|&h| {
            let done = matches!(
                sockets.get::<tcp::Socket>(h).state(),
                tcp::State::Closed | tcp::State::TimeWait
            );
            if done {
                sockets.recycle(h, keep);
            }
            !done
        });
    }

    /// Puts in `ids` the descriptors of the connections the run's segments were for;
    /// `false` when the run must look at every socket instead (see [`SWEEP_ALL_NS`]).
    fn arrived_owners(&mut self, now_ns: u64, ids: &mut Vec<u64>) -> bool {
        let mut arrived = core::mem::take(&mut self.arrived);
        let other = core::mem::take(&mut self.arrived_other);
        // While other threads are ready, runs are batched (`BATCH_NS`) and few: each looks
        // at every socket, as a thread per connection gained nothing from looking at some.
        let mut found = !other && !self.busy && now_ns < self.swept_all + SWEEP_ALL_NS;
        let mut rebuilt = false;
        for &tuple in &arrived {
            if !found {
                break;
            }
            // A connection request, or a segment for no socket: the listener's pool and
            // what the segment may concern are found by looking at all.
            match self.sockets.owner_of(tuple, &mut rebuilt) {
                Some(owner) => ids.push(owner),
                None => found = false,
            }
        }
        arrived.clear();
        self.arrived = arrived;
        if found {
            *ids = crate::small::sorted(core::mem::take(ids));
            ids.dedup();
        } else {
            ids.clear();
        }
        found
    }

    /// Records TCP state transitions (reset, refused) and wakes the sockets whose readiness
    /// changed: those the run's segments and the system calls since the last run concerned,
    /// and every socket now and then (see [`SWEEP_ALL_NS`]).
    fn sweep(&mut self, m: &mut dyn Machine) {
        let now_ns = m.monotonic_ns();
        let mut changed = false;
        let mut ids = core::mem::take(&mut self.sweep_ids);
        ids.clear();
        if self.arrived_owners(now_ns, &mut ids) {
            self.sweep_owed = true;
        } else {
            ids.extend(self.sockets.active_owners());
            self.swept_all = now_ns;
            self.sweep_owed = false;
        }
        ids.append(&mut self.touched);
        for &id in &ids {
            let Some(sock) = self.socks.get_mut(&id) else {
                continue;
            };
            sock.observe(&mut self.sockets, now_ns);
            let ready = sock.readiness(&self.sockets);
            if ready != sock.last_ready {
                if ready & POLLIN != 0 && sock.last_ready & POLLIN == 0 {
                    sock.readable_at = Some(now_ns);
                }
                sock.last_ready = ready;
                sock.seq += 1;
                m.wake(Channel::Object(id), usize::MAX);
                changed = true;
            }
        }
        self.sweep_ids = ids;
        if changed {
            m.wake(Channel::Io, usize::MAX);
        }
    }

    /// Notices the end of a connection attempt and resets on socket `id`.
    fn observe(&mut self, id: u64, now_ns: u64) {
        if let Some(sock) = self.socks.get_mut(&id) {
            sock.observe(&mut self.sockets, now_ns);
        }
    }

    /// The `poll` events ready on socket `id`.
    fn readiness(&self, id: u64) -> u16 {
        match self.socks.get(&id) {
            Some(sock) => sock.readiness(&self.sockets),
            None => POLLNVAL,
        }
    }

    /// The next time the interface wants to run, in monotonic ns.
    fn next_poll(&self) -> Option<u64> {
        let run = match (self.dirty, self.held) {
            (false, _) => None,
            (true, Some(since)) if self.only_writes => Some(since + HOLD_NS),
            (true, _) => Some(0),
        };
        let ask = self
            .poll_at_stale
            .then(|| self.poll_at_asked + POLL_AT_EVERY_NS);
        let notify = self.unflushed.map(|since| since + NOTIFY_DEFER_NS);
        let sweep = self.sweep_owed.then(|| self.swept_all + SWEEP_ALL_NS);
        [
            run,
            self.poll_at,
            ask,
            notify,
            sweep,
            self.sockets.next_timer(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The last descriptor of socket `id` was closed.
    fn release(&mut self, id: u64) {
        let Some(sock) = self.socks.remove(&id) else {
            return;
        };
        self.mark_dirty();
        match sock.kind {
            Kind::TcpFresh | Kind::Udp(None) | Kind::Icmp(None) => {}
            Kind::Udp(Some(h)) | Kind::Icmp(Some(h)) => {
                self.sockets.remove(h);
            }
            Kind::TcpListen { pool, .. } => {
                for h in pool {
                    let t = self.sockets.get_mut::<tcp::Socket>(h);
                    if t.state() == tcp::State::Listen {
                        self.sockets.remove(h);
                    } else {
                        t.abort();
                        self.orphans.push(h);
                    }
                }
            }
            Kind::TcpConn(h) => {
                let t = self.sockets.get_mut::<tcp::Socket>(h);
                // Unread data or a zero linger time reset the connection, as on Linux.
                if t.recv_queue() > 0 || (sock.opts.linger.0 && sock.opts.linger.1 == 0) {
                    t.abort();
                } else {
                    t.close();
                    t.set_timeout(Some(ORPHAN_TIMEOUT));
                }
                self.orphans.push(h);
            }
        }
    }

    fn port_in_use(&self, port: u16, except: u64) -> bool {
        self.socks.iter().any(|(&id, s)| {
            id != except
                && s.local.is_some_and(|l| l.port == port)
                && !matches!(s.kind, Kind::TcpConn(_))
        })
    }

    fn ephemeral_port(&mut self) -> KResult<u16> {
        for _ in EPHEMERAL.0..=EPHEMERAL.1 {
            let p = self.next_port;
            self.next_port = if p >= EPHEMERAL.1 { EPHEMERAL.0 } else { p + 1 };
            let used_by_conn = self
                .socks
                .values()
                .any(|s| s.local.is_some_and(|l| l.port == p));
            if !used_by_conn && !self.port_in_use(p, u64::MAX) {
                return Ok(p);
            }
        }
        Err(Errno::EADDRINUSE)
    }

    /// Drops idle listening sockets of listener `id` beyond [`IDLE_LISTENERS`] (a burst
    /// of connections leaves many), so a quiet listener holds little memory.
    fn trim_pool(&mut self, id: u64) {
        let Some(Sock {
            kind: Kind::TcpListen { pool, backlog },
            ..
        }) = self.socks.get_mut(&id).map(|s| &mut **s)
        else {
            return;
        };
        let mut keep = (*backlog + 1).min(IDLE_LISTENERS);
        let sockets = &mut self.sockets;
        pool.retain(|&h| {
            if sockets.get::<tcp::Socket>(h).state() != tcp::State::Listen {
                return true;
            }
            if keep > 0 {
                keep -= 1;
                return true;
            }
            sockets.remove(h);
            false
        });
    }

    /// Looks at the staged frames' addresses before the interface takes them: makes the
    /// parked connections they are for active (see [`Sockets::route`]) and notes which
    /// sockets the run must look at (see [`SWEEP_ALL_NS`]).
    fn route(&mut self) {
        let parked = self.sockets.parked_count() > 0;
        for f in &self.staged {
            match segment_of(f) {
                Some(seg) => {
                    if parked {
                        self.sockets.route(seg.dst, seg.src);
                    }
                    self.arrived.push((seg.dst, seg.src));
                }
                None => self.arrived_other = true,
            }
        }
    }

    /// Looks at the staged frames before the interface does: gives each connection request
    /// (SYN) for a listening port a listening socket, or drops it (see the module
    /// documentation). Other frames pass untouched.
    fn admit(&mut self, m: &mut dyn Machine) {
        if !self.staged.iter().any(|f| syn_of(f).is_some()) {
            return;
        }
        let mut frames = core::mem::take(&mut self.staged);
        // Listening sockets promised to earlier SYNs of this batch, by listener.
        let mut claimed: SmallMap<u64, usize> = SmallMap::new();
        frames.retain(|f| match syn_of(f) {
            Some(syn) => self.admit_syn(syn, &mut claimed, m),
            None => true,
        });
        self.staged = frames;
    }

    /// Whether SYN `syn` may reach the interface.
    fn admit_syn(
        &mut self,
        syn: Syn,
        claimed: &mut SmallMap<u64, usize>,
        m: &mut dyn Machine,
    ) -> bool {
        let listener = self
            .socks
            .iter()
            .find_map(|(&id, s)| match (&s.kind, s.local) {
                (Kind::TcpListen { .. }, Some(l))
                    if l.port == syn.dst.port && (l.ip == [0; 4] || l.ip == syn.dst.ip) =>
                {
                    Some(id)
                }
                _ => None,
            });
        // Nobody listens: the interface answers with a reset, as Linux does.
        let Some(id) = listener else { return true };
        // A connection with this peer exists (a retransmitted SYN, or a port reused while
        // the old connection closes): drop the SYN. A SYN-RECEIVED socket resends its
        // SYN-ACK by itself; otherwise the peer retries once the old connection is gone.
        let src = syn.src.endpoint();
        let taken = self.sockets.iter().any(|sock| {
            tcp::Socket::downcast(sock).is_some_and(|t| {
                t.state() != tcp::State::Listen
                    && t.remote_endpoint() == Some(src)
                    && t.local_endpoint().is_some_and(|l| l.port == syn.dst.port)
            })
        });
        if taken {
            return false;
        }
        let sock = self.socks.get_mut(&id).expect("found above");
        let (local, opts) = (sock.local.expect("listening sockets are bound"), sock.opts);
        let Kind::TcpListen { pool, backlog } = &mut sock.kind else {
            unreachable!("found above")
        };
        let (mut idle, mut pending) = (0, 0);
        for &h in pool.iter() {
            match self.sockets.get::<tcp::Socket>(h).state() {
                tcp::State::Listen => idle += 1,
                tcp::State::Closed => {}
                _ => pending += 1,
            }
        }
        if !claimed.contains_key(&id) {
            claimed.insert(id, 0);
        }
        let Some(promised) = claimed.get_mut(&id) else {
            return false;
        };
        // Connections being made and made but not yet accepted share one queue of
        // max(backlog + 1, SYN_BACKLOG) sockets, each a whole socket with its buffers (and
        // bounded by memory below). Linux queues backlog + 1 made connections and drops
        // the segment that would finish one more handshake (its SYN cookies make the queue
        // of connections being made unbounded); here a handshake always finishes, because
        // the socket and its buffers exist already, and a peer whose handshake end is
        // dropped retransmits its request, which some peers (QEMU's user networking) then
        // lose for good. A SYN beyond the queue is dropped; its peer sends it again.
        if pending + *promised >= (*backlog + 1).max(SYN_BACKLOG) {
            return false;
        }
        if *promised >= idle {
            // No room for a new connection's buffers (`room_for_buffers`, asked for each
            // SYN: a batch of them takes memory as it goes), or out of memory making them:
            // drop the SYN (the peer retries).
            if room_for_buffers(m).is_err() {
                return false;
            }
            let sizes = tcp_buffer_sizes(&opts, m.ram());
            let Ok(mut t) = tcp_socket(&mut self.sockets, &opts, sizes) else {
                return false;
            };
            if t.listen(listen_endpoint(local)).is_err() {
                return false;
            }
            // No room in the socket sets: as out of memory.
            let Ok(slot) = self.sockets.add(t, id) else {
                return false;
            };
            pool.push(slot);
        }
        *promised += 1;
        true
    }

    /// Whether TCP connection `id` has received data waiting to be read.
    fn has_queued_data(&self, id: u64) -> bool {
        match self.socks.get(&id).map(|s| &s.kind) {
            Some(Kind::TcpConn(h)) => self.sockets.get::<tcp::Socket>(*h).recv_queue() > 0,
            _ => false,
        }
    }

    /// ICMP socket `id` (smoltcp socket `h`): the next echo reply, the one a peek left
    /// first. Its identifier also matches echo requests (its own, on loopback), which a
    /// ping socket does not read.
    fn next_echo_reply(&mut self, id: u64, h: Slot) -> Option<(Vec<u8>, [u8; 4])> {
        if let Some(held) = self.socks.get_mut(&id).and_then(|s| s.peeked.take()) {
            return Some(held);
        }
        let u = self.sockets.get_mut::<icmp::Socket>(h);
        loop {
            let (data, from) = u.recv().ok()?;
            if data.first() == Some(&0) {
                let IpAddress::Ipv4(ip) = from;
                return Some((data.to_vec(), ip.octets()));
            }
        }
    }

    fn sock(&mut self, id: u64) -> KResult<&mut Sock> {
        self.socks
            .get_mut(&id)
            .map(|s| &mut **s)
            .ok_or(Errno::EBADF)
    }

    fn is_local_addr(&self, ip: [u8; 4]) -> bool {
        ip == [0; 4] || ip[0] == 127 || self.own_addrs().contains(&Ipv4Address::from(ip))
    }
}

impl Socket {
    fn with<R>(&self, m: &mut dyn Machine, f: impl FnOnce(&mut Stack, u64) -> R) -> R {
        let mut s = self.stack.lock();
        s.touch(self.id);
        s.ensure_iface(m);
        f(&mut s, self.id)
    }

    /// The options as set.
    pub fn options(&self) -> Options {
        self.stack
            .lock()
            .socks
            .get(&self.id)
            .map(|s| s.opts)
            .unwrap_or_default()
    }

    /// Changes the options; applies them to the connection when there is one.
    ///
    /// `f` is a `dyn` closure: as a generic one, each option of `setsockopt` instantiated
    /// this function anew (ten copies, 2.4 KB).
    pub fn set_options(&self, f: &dyn Fn(&mut Options)) {
        let mut s = self.stack.lock();
        s.touch(self.id);
        let Stack { socks, sockets, .. } = &mut *s;
        let mut applied = false;
        if let Some(sock) = socks.get_mut(&self.id) {
            f(&mut sock.opts);
            match sock.kind {
                Kind::TcpConn(h) => {
                    apply_tcp_options(sockets.get_mut::<tcp::Socket>(h), &sock.opts);
                    applied = true;
                }
                Kind::Udp(Some(h)) => {
                    let ttl = sock.opts.ttl;
                    sockets
                        .get_mut::<udp::Socket>(h)
                        .set_hop_limit((ttl != 0).then_some(ttl));
                }
                Kind::Icmp(Some(h)) => {
                    let ttl = sock.opts.ttl;
                    sockets
                        .get_mut::<icmp::Socket>(h)
                        .set_hop_limit((ttl != 0).then_some(ttl));
                }
                _ => {}
            }
        }
        if applied {
            // Keep-alive and timeouts move the connection's timers.
            s.mark_dirty();
        }
    }

    /// `SO_ERROR`: the pending error, cleared.
    pub fn take_error(&self) -> Option<Errno> {
        let mut s = self.stack.lock();
        s.touch(self.id);
        s.socks.get_mut(&self.id).and_then(|s| s.error.take())
    }

    /// `SO_ACCEPTCONN`: listening.
    /// `TCP_INFO`'s figures: `None` for a UDP or ICMP socket.
    pub fn tcp_info(&self) -> Option<TcpInfo> {
        let s = self.stack.lock();
        let sock = s.socks.get(&self.id)?;
        match &sock.kind {
            Kind::TcpConn(h) => {
                let t = s.sockets.get::<tcp::Socket>(*h);
                Some(TcpInfo {
                    state: tcp_state_number(t.state()),
                    recv_space: t.recv_capacity(),
                })
            }
            Kind::TcpListen { .. } => Some(TcpInfo {
                state: tcp_state_number(tcp::State::Listen),
                recv_space: 0,
            }),
            Kind::TcpFresh => Some(TcpInfo {
                state: tcp_state_number(tcp::State::Closed),
                recv_space: 0,
            }),
            Kind::Udp(_) | Kind::Icmp(_) => None,
        }
    }

    pub fn is_listening(&self) -> bool {
        let s = self.stack.lock();
        matches!(
            s.socks.get(&self.id).map(|s| &s.kind),
            Some(Kind::TcpListen { .. })
        )
    }

    /// Everything that is ready now (`POLLIN`, `POLLOUT`, `POLLHUP`, `POLLERR`,
    /// `POLLRDHUP`).
    pub fn poll_events(&self) -> u16 {
        self.stack.lock().readiness(self.id)
    }

    /// A counter that changes whenever the readiness changed.
    pub fn event_seq(&self) -> u64 {
        let s = self.stack.lock();
        s.socks.get(&self.id).map_or(0, |s| s.seq)
    }

    /// `read` on the socket: [`Socket::recv`] without the sender.
    pub fn read(&self, m: &mut dyn Machine, buf: &mut [u8]) -> KResult<usize> {
        self.recv(m, buf, false).map(|(n, _)| n)
    }

    /// `write` on the socket: [`Socket::send`] to the connected peer.
    pub fn write(&self, m: &mut dyn Machine, data: &[u8]) -> KResult<usize> {
        self.send(m, data, None)
    }

    /// `bind`.
    pub fn bind(&self, m: &mut dyn Machine, addr: SockAddr) -> KResult<()> {
        if !self.stream {
            room_for_buffers(m)?;
        }
        self.with(m, |s, id| {
            if !s.is_local_addr(addr.ip) {
                return Err(Errno::EADDRNOTAVAIL);
            }
            s.claim_loopback(addr.ip)?;
            let sock = s.sock(id)?;
            if sock.local.is_some()
                || !matches!(
                    sock.kind,
                    Kind::TcpFresh | Kind::Udp(None) | Kind::Icmp(None)
                )
            {
                return Err(Errno::EINVAL);
            }
            let (reuse_addr, reuse_port) = (sock.opts.reuse_addr, sock.opts.reuse_port);
            let protocol = sock.protocol();
            let udp = matches!(sock.kind, Kind::Udp(_));
            let port = if addr.port == 0 {
                s.ephemeral_port()?
            } else {
                // Sockets bound to the port and an overlapping address. They may share it
                // when both asked for `SO_REUSEPORT`, or, for UDP, both for `SO_REUSEADDR`.
                let mut shares = false;
                let mut clash = false;
                for (&other, o) in s.socks.iter() {
                    let overlaps = other != id
                        && !matches!(o.kind, Kind::TcpConn(_))
                        && o.protocol() == protocol
                        && o.local.is_some_and(|l| {
                            l.port == addr.port
                                && (l.ip == addr.ip || l.ip == [0; 4] || addr.ip == [0; 4])
                        });
                    if overlaps {
                        if (reuse_port && o.opts.reuse_port)
                            || (udp && reuse_addr && o.opts.reuse_addr)
                        {
                            shares = true;
                        } else {
                            clash = true;
                        }
                    }
                }
                if clash {
                    return Err(Errno::EADDRINUSE);
                }
                s.shared_udp |= shares && udp;
                addr.port
            };
            let local = SockAddr { ip: addr.ip, port };
            let sock = s.sock(id)?;
            sock.local = Some(local);
            let ttl = s.sock(id)?.opts.ttl;
            let ttl = (ttl != 0).then_some(ttl);
            match s.sock(id)?.kind {
                Kind::Udp(None) => {
                    let mut u = udp_socket()?;
                    u.bind(listen_endpoint(local)).map_err(|_| Errno::EINVAL)?;
                    u.set_hop_limit(ttl);
                    let h = s.sockets.add(u, id)?;
                    s.sock(id)?.kind = Kind::Udp(Some(h));
                }
                Kind::Icmp(None) => {
                    let mut u = icmp_socket()?;
                    u.bind(icmp::Endpoint::Ident(port))
                        .map_err(|_| Errno::EINVAL)?;
                    u.set_hop_limit(ttl);
                    let h = s.sockets.add(u, id)?;
                    s.sock(id)?.kind = Kind::Icmp(Some(h));
                }
                _ => {}
            }
            Ok(())
        })
    }

    /// `listen`. As on Linux, a backlog above [`SOMAXCONN`] or negative means
    /// [`SOMAXCONN`], and up to backlog + 1 connections wait for `accept`; calling it
    /// again on a listening socket changes the backlog.
    pub fn listen(&self, m: &mut dyn Machine, backlog: i32) -> KResult<()> {
        if !self.stream {
            return Err(Errno::EOPNOTSUPP);
        }
        room_for_buffers(m)?;
        let ram = m.ram();
        let want = if backlog < 0 {
            SOMAXCONN
        } else {
            (backlog as usize).min(SOMAXCONN)
        };
        self.with(m, |s, id| {
            let sock = s.sock(id)?;
            match &mut sock.kind {
                Kind::TcpFresh => {}
                Kind::TcpListen { backlog, .. } => {
                    *backlog = want;
                    return Ok(());
                }
                Kind::TcpConn(_) => return Err(Errno::EINVAL),
                Kind::Udp(_) | Kind::Icmp(_) => return Err(Errno::EOPNOTSUPP),
            }
            let local = match sock.local {
                Some(l) => l,
                None => {
                    let port = s.ephemeral_port()?;
                    let l = SockAddr { ip: [0; 4], port };
                    s.sock(id)?.local = Some(l);
                    l
                }
            };
            let opts = s.sock(id)?.opts;
            let idle = (want + 1).min(IDLE_LISTENERS);
            let mut pool = Vec::with_capacity(idle);
            for _ in 0..idle {
                let made = tcp_socket(&mut s.sockets, &opts, tcp_buffer_sizes(&opts, ram))
                    .and_then(|mut t| {
                        t.listen(listen_endpoint(local))
                            .map_err(|_| Errno::EINVAL)?;
                        s.sockets.add(t, id)
                    });
                match made {
                    Ok(slot) => pool.push(slot),
                    Err(e) => {
                        for h in pool {
                            s.sockets.remove(h);
                        }
                        return Err(e);
                    }
                }
            }
            s.sock(id)?.kind = Kind::TcpListen {
                pool,
                backlog: want,
            };
            s.mark_dirty();
            Ok(())
        })
    }

    /// `accept`: an established connection and its peer's address (`EAGAIN` when none
    /// waits).
    pub fn accept(&self, m: &mut dyn Machine) -> KResult<(Arc<Socket>, SockAddr)> {
        // No memory check here: a waiting connection already has its buffers (they were
        // taken when its SYN was admitted, which low memory refuses), so refusing to hand it
        // over would only leave the program retrying `accept` for ever.
        let mut s = self.stack.lock();
        s.touch(self.id);
        let id = self.id;
        // A connection already waiting needs no run of the stack first: a run costs time in
        // proportion to all sockets, and a busy listener accepts many in a row.
        s.ensure_iface(m);
        if s.readiness(id) & POLLIN == 0 {
            s.pump(m);
        }
        let sock = s.sock(id)?;
        let Kind::TcpListen { pool, .. } = &sock.kind else {
            return Err(Errno::EINVAL);
        };
        let pool = pool.clone();
        let opts = sock.opts;
        for &h in &pool {
            let t = s.sockets.get::<tcp::Socket>(h);
            let state = t.state();
            if !is_established(state) {
                continue;
            }
            let peer = t.remote_endpoint();
            if let Kind::TcpListen { pool, .. } = &mut s.sock(id)?.kind {
                pool.retain(|&p| p != h);
            }
            let Some(peer) = peer else {
                // Reset before it was accepted: Linux skips it too.
                s.sockets.remove(h);
                continue;
            };
            let waitable = Waitable::new();
            let conn_id = waitable.id();
            let mut conn = Sock::new(true);
            conn.kind = Kind::TcpConn(h);
            s.sockets.set_owner(h, conn_id);
            conn.opts = opts;
            conn.last_state = state;
            conn.local = s
                .sockets
                .get::<tcp::Socket>(h)
                .local_endpoint()
                .map(SockAddr::from_endpoint);
            s.socks.insert(conn_id, alloc::boxed::Box::new(conn));
            s.observe(conn_id, m.monotonic_ns());
            let r = s.readiness(conn_id);
            s.sock(conn_id)?.last_ready = r;
            s.trim_pool(id);
            let r = s.readiness(id);
            s.sock(id)?.last_ready = r;
            drop(s);
            return Ok((
                Arc::new(Socket {
                    id: conn_id,
                    waitable,
                    stream: true,
                    stack: self.stack.clone(),
                }),
                SockAddr::from_endpoint(peer),
            ));
        }
        s.trim_pool(id);
        // Connections reset before they were accepted are gone: the readiness seen by the
        // next sweep must start from here, or the next connection would not wake anyone.
        let r = s.readiness(id);
        s.sock(id)?.last_ready = r;
        Err(Errno::EAGAIN)
    }

    /// `connect`. A blocking caller waits on the socket's channel after
    /// [`Connect::InProgress`] and calls again; `blocking` tells the two apart from a
    /// program calling again on a non-blocking socket.
    pub fn connect(&self, m: &mut dyn Machine, to: SockAddr, blocking: bool) -> KResult<Connect> {
        room_for_buffers(m)?;
        let mut s = self.stack.lock();
        s.touch(self.id);
        s.pump(m);
        let id = self.id;
        if !self.stream {
            let local = s.sock(id)?.local;
            if local.is_none() {
                drop(s);
                self.bind(m, SockAddr::default())?;
                s = self.stack.lock();
            }
            s.sock(id)?.peer = (to.ip != [0; 4] || to.port != 0).then_some(to);
            return Ok(Connect::Done);
        }
        let now_ns = m.monotonic_ns();
        let sock = s.sock(id)?;
        match sock.kind {
            Kind::TcpFresh => {}
            Kind::TcpListen { .. } => return Err(Errno::EISCONN),
            Kind::Udp(_) | Kind::Icmp(_) => unreachable!(),
            Kind::TcpConn(h) => {
                let waiting = core::mem::take(&mut sock.connect_waiting);
                if sock.connecting {
                    if waiting && blocking {
                        sock.connect_waiting = true;
                        return Ok(Connect::InProgress);
                    }
                    return Err(Errno::EALREADY);
                }
                if let Some(e) = sock.error.take() {
                    return Err(e);
                }
                let state = s.sockets.get::<tcp::Socket>(h).state();
                return if waiting && state != tcp::State::Closed {
                    Ok(Connect::Done)
                } else if state == tcp::State::Closed {
                    Err(Errno::ECONNABORTED)
                } else {
                    Err(Errno::EISCONN)
                };
            }
        }
        if to.ip == [0; 4] {
            // Linux connects to the loopback address for 0.0.0.0.
            return self.connect_to(
                s,
                m,
                SockAddr {
                    ip: [127, 0, 0, 1],
                    ..to
                },
                blocking,
            );
        }
        if to.port == 0 {
            return Err(Errno::ECONNREFUSED);
        }
        let to_loopback = to.ip[0] == 127;
        s.ensure_iface(m);
        if s.claim_loopback(to.ip)? {
            s.pump(m);
        }
        if !to_loopback && s.external_addr().is_none() {
            if s.dhcp.is_some() && now_ns < s.started + DHCP_WAIT_NS {
                return Ok(Connect::NoAddress {
                    channel: s.config_channel,
                    deadline: s.started + DHCP_WAIT_NS,
                });
            }
            return Err(Errno::ENETUNREACH);
        }
        self.connect_to(s, m, to, blocking)
    }

    fn connect_to(
        &self,
        mut s: spin::MutexGuard<'_, Stack>,
        m: &mut dyn Machine,
        to: SockAddr,
        blocking: bool,
    ) -> KResult<Connect> {
        let id = self.id;
        let local = match s.sock(id)?.local {
            Some(l) => l,
            None => SockAddr {
                ip: [0; 4],
                port: s.ephemeral_port()?,
            },
        };
        let opts = s.sock(id)?.opts;
        let mut t = tcp_socket(&mut s.sockets, &opts, tcp_buffer_sizes(&opts, m.ram()))?;
        t.set_timeout(Some(CONNECT_TIMEOUT));
        let Stack { iface, .. } = &mut *s;
        let iface = iface.as_mut().expect("interface created");
        t.connect(iface.context(), to.endpoint(), listen_endpoint(local))
            .map_err(|e| match e {
                tcp::ConnectError::Unaddressable => Errno::ENETUNREACH,
                tcp::ConnectError::InvalidState => Errno::EISCONN,
            })?;
        let h = s.sockets.add(t, id)?;
        let now_ns = m.monotonic_ns();
        let sock = s.sock(id)?;
        sock.kind = Kind::TcpConn(h);
        sock.local = Some(local);
        sock.connecting = true;
        sock.connect_started = now_ns;
        sock.last_state = tcp::State::SynSent;
        sock.connect_waiting = blocking;
        s.pump(m);
        // On loopback the handshake may already be over. A non-blocking caller hears
        // `EINPROGRESS` all the same, as from Linux: the outcome is for `poll` and
        // `SO_ERROR` (a program may not expect a refusal from `connect` itself).
        let sock = s.sock(id)?;
        if sock.connecting || !blocking {
            return Ok(Connect::InProgress);
        }
        sock.connect_waiting = false;
        match sock.error.take() {
            Some(e) => Err(e),
            None => Ok(Connect::Done),
        }
    }

    /// Receives into `buf` (`peek`: leaves the data queued). Returns the length and, for
    /// UDP, the sender. `EAGAIN` when nothing is there yet.
    pub fn recv(
        &self,
        m: &mut dyn Machine,
        buf: &mut [u8],
        peek: bool,
    ) -> KResult<(usize, Option<SockAddr>)> {
        let r = self.recv_inner(m, buf, peek);
        self.note_readiness();
        r
    }

    /// Records the socket's readiness as it is after a call that read or wrote without a
    /// run of the stack. Wake-ups go to readiness *changes*: a read that drained the data
    /// (or a write that filled the buffer) must count as one, or the data arriving next
    /// would look like no change, and a reader waiting for it would never be woken (nor
    /// an edge-triggered epoll told).
    fn note_readiness(&self) {
        let mut s = self.stack.lock();
        s.touch(self.id);
        let r = s.readiness(self.id);
        if let Some(sock) = s.socks.get_mut(&self.id) {
            sock.last_ready = r;
        }
    }

    fn recv_inner(
        &self,
        m: &mut dyn Machine,
        buf: &mut [u8],
        peek: bool,
    ) -> KResult<(usize, Option<SockAddr>)> {
        let mut s = self.stack.lock();
        s.touch(self.id);
        let id = self.id;
        // Data already queued needs no run of the stack first (see `accept`), nor does a
        // socket when nothing has arrived since the last run. While other threads are
        // ready, a run that just happened is left to batch what arrives next: the caller
        // waits for it (see [`BATCH_NS`]).
        s.ensure_iface(m);
        let batching = s.busy && m.monotonic_ns() < s.last_run + BATCH_NS;
        if !s.has_queued_data(id) && !batching && s.may_receive(m) {
            s.pump(m);
        }
        let sock = s.sock(id)?;
        let shut_rd = sock.shut_rd;
        match sock.kind {
            Kind::TcpFresh | Kind::TcpListen { .. } => Err(Errno::ENOTCONN),
            Kind::TcpConn(h) => {
                if sock.reset {
                    if let Some(e) = sock.error.take() {
                        return Err(e);
                    }
                    return Ok((0, None));
                }
                if sock.connecting {
                    return Err(Errno::EAGAIN);
                }
                if let Some(e) = sock.error.take() {
                    return Err(e);
                }
                let readable_at = sock.readable_at;
                // Nothing to read: no need to touch the connection (a change would take
                // it out of the parked set).
                let t = s.sockets.get::<tcp::Socket>(h);
                if t.may_recv() && t.recv_queue() == 0 && !buf.is_empty() {
                    return if shut_rd {
                        Ok((0, None))
                    } else {
                        Err(Errno::EAGAIN)
                    };
                }
                let t = s.sockets.get_mut::<tcp::Socket>(h);
                // Less than half the window was open: reading may let the peer send more,
                // so the stack must run to tell it (smoltcp's window update).
                let window_was_low = t.recv_capacity() - t.recv_queue() < t.recv_capacity() / 2;
                let r = if peek {
                    t.peek_slice(buf)
                } else {
                    t.recv_slice(buf)
                };
                let n = match r {
                    Ok(0) if !buf.is_empty() => {
                        if shut_rd {
                            return Ok((0, None));
                        }
                        return Err(Errno::EAGAIN);
                    }
                    Ok(n) => n,
                    Err(tcp::RecvError::Finished) => 0,
                    Err(tcp::RecvError::InvalidState) => {
                        return if t.state() == tcp::State::Closed {
                            Ok((0, None))
                        } else {
                            Err(Errno::ENOTCONN)
                        };
                    }
                };
                if n > 0 && !peek {
                    if let Some(at) = readable_at {
                        let wait = m.monotonic_ns().saturating_sub(at);
                        t.set_ack_delay(Some(ack_delay_for(wait)));
                        s.sock(id)?.readable_at = None;
                    }
                    if window_was_low {
                        s.mark_dirty();
                    }
                }
                Ok((n, None))
            }
            Kind::Udp(None) => Err(Errno::EAGAIN),
            Kind::Udp(Some(_)) if sock.shared_rx.front().is_some() => {
                let d = sock.shared_rx.front().expect("a datagram is queued");
                let n = d.data.len().min(buf.len());
                buf[..n].copy_from_slice(&d.data[..n]);
                let (from, to) = (d.from, d.to);
                if !peek {
                    sock.shared_rx.pop();
                }
                sock.last_dst = to;
                Ok((n, Some(from)))
            }
            Kind::Udp(Some(h)) => {
                let peer = sock.peer;
                let Stack { socks, sockets, .. } = &mut *s;
                let u = sockets.get_mut::<udp::Socket>(h);
                loop {
                    let (data, meta) = if peek {
                        match u.peek() {
                            Ok((d, meta)) => (d, *meta),
                            Err(_) => return Err(Errno::EAGAIN),
                        }
                    } else {
                        match u.recv() {
                            Ok(x) => x,
                            Err(_) => return Err(Errno::EAGAIN),
                        }
                    };
                    let from = SockAddr::from_endpoint(meta.endpoint);
                    if peer.is_some_and(|p| p != from) && !peek {
                        continue;
                    }
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    if let Some(sock) = socks.get_mut(&id) {
                        sock.last_dst = meta.local_address.map(|a| match a {
                            IpAddress::Ipv4(v4) => v4.octets(),
                        });
                    }
                    return Ok((n, Some(from)));
                }
            }
            Kind::Icmp(None) => Err(Errno::EAGAIN),
            Kind::Icmp(Some(h)) => {
                let (data, ip) = s.next_echo_reply(id, h).ok_or(Errno::EAGAIN)?;
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                if peek {
                    s.sock(id)?.peeked = Some((data, ip));
                }
                Ok((n, Some(SockAddr { ip, port: 0 })))
            }
        }
    }

    /// Sends `data` (to `to`, for UDP). Returns how much was queued; `EAGAIN` when the send
    /// buffer is full.
    pub fn send(&self, m: &mut dyn Machine, data: &[u8], to: Option<SockAddr>) -> KResult<usize> {
        let r = self.send_inner(m, data, to);
        self.note_readiness();
        r
    }

    fn send_inner(&self, m: &mut dyn Machine, data: &[u8], to: Option<SockAddr>) -> KResult<usize> {
        let mut s = self.stack.lock();
        s.touch(self.id);
        s.ensure_iface(m);
        let id = self.id;
        let sock = s.sock(id)?;
        if sock.shut_wr {
            return Err(Errno::EPIPE);
        }
        match sock.kind {
            Kind::TcpFresh | Kind::TcpListen { .. } => Err(Errno::EPIPE),
            Kind::TcpConn(h) => {
                if sock.connecting {
                    return Err(Errno::EAGAIN);
                }
                if sock.reset {
                    return Err(sock.error.take().unwrap_or(Errno::EPIPE));
                }
                let t = s.sockets.get_mut::<tcp::Socket>(h);
                if !t.may_send() {
                    return Err(Errno::EPIPE);
                }
                if data.is_empty() {
                    return Ok(0);
                }
                let n = t.send_slice(data).map_err(|_| Errno::EPIPE)?;
                if n == 0 {
                    return Err(Errno::EAGAIN);
                }
                // To this machine: sent as the call ends, so the reader sees it at once, as
                // on Linux. To another: possibly held for more (`HOLD_NS`).
                let to_self = t
                    .remote_endpoint()
                    .is_some_and(|e| s.is_local_addr(SockAddr::from_endpoint(e).ip));
                if to_self {
                    s.mark_dirty();
                } else {
                    s.mark_written();
                }
                Ok(n)
            }
            Kind::Udp(_) => {
                let to = match to.or(sock.peer) {
                    Some(t) => t,
                    None => return Err(Errno::EDESTADDRREQ),
                };
                if data.len() > UDP_MAX_PAYLOAD {
                    return Err(Errno::EMSGSIZE);
                }
                if to.ip == [255; 4] && !sock.opts.broadcast {
                    return Err(Errno::EACCES);
                }
                if to.ip[0] != 127 && s.external_addr().is_none() {
                    return Err(Errno::ENETUNREACH);
                }
                if matches!(s.sock(id)?.kind, Kind::Udp(None)) {
                    drop(s);
                    self.bind(m, SockAddr::default())?;
                    s = self.stack.lock();
                }
                let Kind::Udp(Some(h)) = s.sock(id)?.kind else {
                    unreachable!("bound above")
                };
                if s.claim_loopback(to.ip)? {
                    s.pump(m);
                }
                let to = if to.ip == [0; 4] {
                    SockAddr {
                        ip: [127, 0, 0, 1],
                        ..to
                    }
                } else {
                    to
                };
                match s
                    .sockets
                    .get_mut::<udp::Socket>(h)
                    .send_slice(data, to.endpoint())
                {
                    Ok(()) => {}
                    Err(udp::SendError::BufferFull) => return Err(Errno::EAGAIN),
                    Err(udp::SendError::Unaddressable) => return Err(Errno::ENETUNREACH),
                }
                s.pump(m);
                Ok(data.len())
            }
            Kind::Icmp(_) => {
                let to = to.or(sock.peer).ok_or(Errno::EDESTADDRREQ)?;
                if data.len() > UDP_MAX_PAYLOAD {
                    return Err(Errno::EMSGSIZE);
                }
                if to.ip[0] != 127 && s.external_addr().is_none() {
                    return Err(Errno::ENETUNREACH);
                }
                if matches!(s.sock(id)?.kind, Kind::Icmp(None)) {
                    drop(s);
                    self.bind(m, SockAddr::default())?;
                    s = self.stack.lock();
                }
                let sock = s.sock(id)?;
                let (Kind::Icmp(Some(h)), Some(local)) = (&sock.kind, sock.local) else {
                    unreachable!("bound above")
                };
                let h = *h;
                let packet = echo_request(data, local.port)?;
                let ip = if to.ip == [0; 4] {
                    [127, 0, 0, 1]
                } else {
                    to.ip
                };
                let dst = IpAddress::Ipv4(Ipv4Address::from(ip));
                match s
                    .sockets
                    .get_mut::<icmp::Socket>(h)
                    .send_slice(&packet, dst)
                {
                    Ok(()) => {}
                    Err(icmp::SendError::BufferFull) => return Err(Errno::EAGAIN),
                    Err(icmp::SendError::Unaddressable) => return Err(Errno::ENETUNREACH),
                }
                s.pump(m);
                Ok(data.len())
            }
        }
    }

    /// `shutdown`: `how` is `SHUT_RD` 0, `SHUT_WR` 1 or `SHUT_RDWR` 2.
    pub fn shutdown(&self, m: &mut dyn Machine, how: u32) -> KResult<()> {
        if how > 2 {
            return Err(Errno::EINVAL);
        }
        let mut s = self.stack.lock();
        s.touch(self.id);
        let id = self.id;
        let sock = s.sock(id)?;
        let h = match sock.kind {
            Kind::TcpConn(h) => h,
            Kind::TcpListen { .. } => {
                return Ok(());
            }
            _ => return Err(Errno::ENOTCONN),
        };
        if how != 1 {
            sock.shut_rd = true;
        }
        if how != 0 && !sock.shut_wr {
            sock.shut_wr = true;
            s.sockets.get_mut::<tcp::Socket>(h).close();
        }
        s.pump(m);
        Ok(())
    }

    /// `getsockname`.
    pub fn local_addr(&self) -> SockAddr {
        let s = self.stack.lock();
        let Some(sock) = s.socks.get(&self.id) else {
            return SockAddr::default();
        };
        if let Kind::TcpConn(h) = sock.kind {
            if let Some(e) = s.sockets.get::<tcp::Socket>(h).local_endpoint() {
                return SockAddr::from_endpoint(e);
            }
        }
        let local = sock.local.unwrap_or_default();
        // A connected UDP socket bound to any address names the source its datagrams
        // leave from, as Linux does (the "which address reaches that host" idiom).
        if let (Kind::Udp(_), Some(peer), [0, 0, 0, 0]) = (&sock.kind, sock.peer, local.ip) {
            let ip = if peer.ip[0] == 127 {
                [127, 0, 0, 1]
            } else {
                s.external_addr().map_or([0; 4], |c| c.address().octets())
            };
            return SockAddr { ip, ..local };
        }
        local
    }

    /// The socket's protocol number (`SO_PROTOCOL`): 6 TCP, 17 UDP, 1 ICMP.
    pub fn protocol(&self) -> u8 {
        let s = self.stack.lock();
        s.socks.get(&self.id).map_or(0, |sock| sock.protocol())
    }

    /// UDP: the address the datagram `recv` returned last was sent to (`IP_PKTINFO`).
    pub fn last_destination(&self) -> Option<[u8; 4]> {
        let s = self.stack.lock();
        s.socks.get(&self.id).and_then(|s| s.last_dst)
    }

    /// The bytes waiting to be read (`FIONREAD`; for UDP the next datagram's length) and
    /// those sent but not yet acknowledged or still queued (`SIOCOUTQ`). `EINVAL` on a
    /// listener, as on Linux.
    pub fn queues(&self) -> KResult<(usize, usize)> {
        let mut s = self.stack.lock();
        let sock = s.sock(self.id)?;
        match sock.kind {
            Kind::TcpFresh | Kind::Udp(None) | Kind::Icmp(None) => Ok((0, 0)),
            Kind::TcpListen { .. } => Err(Errno::EINVAL),
            Kind::TcpConn(h) => {
                let t = s.sockets.get::<tcp::Socket>(h);
                Ok((t.recv_queue(), t.send_queue()))
            }
            Kind::Udp(Some(h)) => {
                let shared = sock.shared_rx.front().map(|d| d.data.len());
                let u = s.sockets.get_mut::<udp::Socket>(h);
                let next = shared.unwrap_or_else(|| u.peek().map_or(0, |(data, _)| data.len()));
                Ok((next, u.send_queue()))
            }
            Kind::Icmp(Some(h)) => {
                let next = s.next_echo_reply(self.id, h);
                let len = next.as_ref().map_or(0, |(d, _)| d.len());
                s.sock(self.id)?.peeked = next;
                Ok((len, s.sockets.get::<icmp::Socket>(h).send_queue()))
            }
        }
    }

    /// What `netstat` would show: protocol, addresses and TCP state
    /// (`TCP 10.0.2.15:8080 <- 10.0.2.2:41234 ESTABLISHED`, `TCP 0.0.0.0:8080 LISTEN`).
    pub fn describe(&self) -> String {
        let text = |a: SockAddr| {
            alloc::format!("{}.{}.{}.{}:{}", a.ip[0], a.ip[1], a.ip[2], a.ip[3], a.port)
        };
        let local = text(self.local_addr());
        let s = self.stack.lock();
        let Some(sock) = s.socks.get(&self.id) else {
            return String::from("socket (closed)");
        };
        match &sock.kind {
            Kind::TcpFresh => alloc::format!("TCP {local} CLOSED"),
            Kind::TcpListen { pool, backlog } => {
                let waiting = pool
                    .iter()
                    .filter(|&&h| is_established(s.sockets.get::<tcp::Socket>(h).state()))
                    .count();
                alloc::format!("TCP {local} LISTEN ({waiting} of {backlog} waiting to be accepted)")
            }
            Kind::TcpConn(h) => {
                let t = s.sockets.get::<tcp::Socket>(*h);
                let peer = t
                    .remote_endpoint()
                    .map(|e| text(SockAddr::from_endpoint(e)))
                    .unwrap_or_else(|| String::from("-"));
                alloc::format!("TCP {local} <-> {peer} {}", tcp_state_name(t.state()))
            }
            Kind::Udp(_) => alloc::format!("UDP {local}"),
            Kind::Icmp(_) => alloc::format!("ICMP {local}"),
        }
    }

    /// `getpeername` (`ENOTCONN` when not connected).
    pub fn peer_addr(&self) -> KResult<SockAddr> {
        let s = self.stack.lock();
        let sock = s.socks.get(&self.id).ok_or(Errno::EBADF)?;
        match sock.kind {
            Kind::TcpConn(h) if !sock.connecting => s
                .sockets
                .get::<tcp::Socket>(h)
                .remote_endpoint()
                .map(SockAddr::from_endpoint)
                .ok_or(Errno::ENOTCONN),
            Kind::Udp(_) | Kind::Icmp(_) => sock.peer.ok_or(Errno::ENOTCONN),
            _ => Err(Errno::ENOTCONN),
        }
    }
}

impl Sock {
    /// Notices the end of a connection attempt and resets.
    fn observe(&mut self, sockets: &mut Sockets, now_ns: u64) {
        let sock = self;
        let Kind::TcpConn(h) = sock.kind else { return };
        let state = sockets.get::<tcp::Socket>(h).state();
        let prev = sock.last_state;
        if sock.connecting && state != tcp::State::SynSent {
            sock.connecting = false;
            if state != tcp::State::Closed {
                // The timeout bounded the attempt; left on, smoltcp would also abort a
                // connection idle that long.
                sockets.get_mut::<tcp::Socket>(h).set_timeout(None);
            } else {
                let elapsed = now_ns.saturating_sub(sock.connect_started);
                sock.error = Some(if elapsed >= CONNECT_TIMEOUT.total_micros() * 1000 {
                    Errno::ETIMEDOUT
                } else {
                    Errno::ECONNREFUSED
                });
            }
        }
        if state == tcp::State::Closed
            && matches!(
                prev,
                tcp::State::Established
                    | tcp::State::SynReceived
                    | tcp::State::CloseWait
                    | tcp::State::FinWait1
                    | tcp::State::FinWait2
            )
            && !sock.shut_wr
        {
            sock.reset = true;
            if sock.error.is_none() {
                sock.error = Some(Errno::ECONNRESET);
            }
        }
        sock.last_state = state;
    }

    /// The `poll` events ready on socket `id`.
    fn readiness(&self, sockets: &Sockets) -> u16 {
        let sock = self;
        let err = if sock.error.is_some() { POLLERR } else { 0 };
        match &sock.kind {
            Kind::TcpFresh => POLLOUT | POLLWRNORM | POLLHUP,
            Kind::TcpListen { pool, .. } => {
                if pool
                    .iter()
                    .any(|&h| is_established(sockets.get::<tcp::Socket>(h).state()))
                {
                    POLLIN | POLLRDNORM
                } else {
                    0
                }
            }
            Kind::TcpConn(h) => {
                let t = sockets.get::<tcp::Socket>(*h);
                let state = t.state();
                if matches!(state, tcp::State::SynSent | tcp::State::SynReceived) {
                    return err;
                }
                let mut r = err;
                // The peer's FIN counts from its arrival, data still queued before it or
                // not (smoltcp's `may_recv` stays true until that data is read): a server
                // that reads a request and its FIN in one go must see `POLLRDHUP` with the
                // `POLLIN`, or an edge-triggered epoll never tells it of the end (nginx,
                // tokio: a short read clears their readiness).
                let eof = fin_received(state) || sock.shut_rd;
                if t.can_recv() || eof {
                    r |= POLLIN | POLLRDNORM;
                }
                if eof {
                    r |= POLLRDHUP;
                }
                if (t.can_send() && !sock.shut_wr) || !t.may_send() {
                    r |= POLLOUT | POLLWRNORM;
                }
                if state == tcp::State::Closed || (eof && (sock.shut_wr || !t.may_send())) {
                    r |= POLLHUP;
                }
                r
            }
            Kind::Udp(h) => {
                let mut r = err | POLLOUT | POLLWRNORM;
                if let Some(h) = h {
                    if sock.shared_rx.front().is_some() || sockets.get::<udp::Socket>(*h).can_recv()
                    {
                        r |= POLLIN | POLLRDNORM;
                    }
                }
                r
            }
            Kind::Icmp(h) => {
                let mut r = err | POLLOUT | POLLWRNORM;
                if let Some(h) = h {
                    if sock.peeked.is_some() || sockets.get::<icmp::Socket>(*h).can_recv() {
                        r |= POLLIN | POLLRDNORM;
                    }
                }
                r
            }
        }
    }
}

/// Whether the peer's FIN arrived (or the connection is over): nothing more will come
/// after the data already queued.
fn fin_received(state: tcp::State) -> bool {
    matches!(
        state,
        tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait
            | tcp::State::Closed
    )
}

impl Sock {
    /// Which port space the socket's address is in: TCP, UDP or ICMP identifiers.
    fn protocol(&self) -> u8 {
        match self.kind {
            Kind::Udp(_) => 17,
            Kind::Icmp(_) => 1,
            _ => 6,
        }
    }
}

impl Net {
    /// Bytes held for network data: the sockets' receive and send buffers (spare sockets'
    /// too) and the frames
    /// queued inside the stack (for the kernel's memory report, `kiln.memlog`).
    pub fn buffer_bytes(&self) -> usize {
        let s = self.stack.lock();
        let sockets: usize = s
            .sockets
            .iter()
            .map(|sock| match sock {
                smoltcp::socket::Socket::Tcp(t) => t.recv_capacity() + t.send_capacity(),
                smoltcp::socket::Socket::Udp(u) => {
                    u.payload_recv_capacity() + u.payload_send_capacity()
                }
                _ => 0,
            })
            .sum();
        let spare: usize = (s.sockets.spares().iter())
            .map(|t| t.recv_capacity() + t.send_capacity())
            .sum();
        let frames: usize = s.looped.iter().chain(&s.staged).map(Vec::capacity).sum();
        sockets + spare + frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::testing::FakeMachine;

    const LOCAL: SockAddr = SockAddr {
        ip: [127, 0, 0, 1],
        port: 7000,
    };

    /// A client connected over loopback, the accepted server side, and the listener.
    fn connected(net: &Net, m: &mut FakeMachine) -> (Arc<Socket>, Arc<Socket>, Arc<Socket>) {
        let l = listening(net, m, 4);
        let (c, srv) = connect_to(net, m, &l);
        (c, srv, l)
    }

    /// A TCP socket listening on [`LOCAL`] with `backlog`.
    fn listening(net: &Net, m: &mut FakeMachine, backlog: i32) -> Arc<Socket> {
        let l = net.socket(true);
        l.bind(m, LOCAL).unwrap();
        l.listen(m, backlog).unwrap();
        l
    }

    /// A client connected over loopback to listener `l` (on [`LOCAL`]), and the accepted
    /// server side.
    fn connect_to(net: &Net, m: &mut FakeMachine, l: &Socket) -> (Arc<Socket>, Arc<Socket>) {
        let c = net.socket(true);
        let mut done = false;
        for _ in 0..20 {
            if matches!(
                c.connect(m, LOCAL, false),
                Ok(Connect::Done) | Err(Errno::EISCONN)
            ) {
                done = true;
                break;
            }
            net.poll(m);
        }
        assert!(done, "loopback connect did not finish");
        let (srv, _) = l.accept(m).unwrap();
        (c, srv)
    }

    #[test]
    fn every_address_of_127_0_0_0_slash_8_is_this_machines() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let connect = |m: &mut FakeMachine, c: &Socket, to: SockAddr| {
            for _ in 0..20 {
                match c.connect(m, to, false) {
                    Ok(Connect::Done) | Err(Errno::EISCONN) => return Ok(()),
                    Err(e) if e != Errno::EINPROGRESS && e != Errno::EALREADY => return Err(e),
                    _ => {}
                }
                m.now += 1_000_000;
                net.poll(m);
            }
            Err(Errno::ETIMEDOUT)
        };
        // A listener on 127.0.1.1 (Debian's address for the host name) takes connections.
        let at = SockAddr {
            ip: [127, 0, 1, 1],
            port: 7100,
        };
        let l = net.socket(true);
        l.bind(&mut m, at).unwrap();
        l.listen(&mut m, 4).unwrap();
        let c = net.socket(true);
        assert_eq!(connect(&mut m, &c, at), Ok(()));
        let (srv, peer) = l.accept(&mut m).unwrap();
        assert_eq!(peer.ip, [127, 0, 0, 1]);
        c.write(&mut m, b"over 127.0.1.1").unwrap();
        net.end_of_call(&mut m);
        let mut buf = [0u8; 32];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(14));
        // A datagram to a resolver's 127.0.0.53 is there when the send returns.
        let dns = SockAddr {
            ip: [127, 0, 0, 53],
            port: 53,
        };
        let (server, client) = (net.socket(false), net.socket(false));
        server.bind(&mut m, dns).unwrap();
        assert_eq!(client.send(&mut m, b"query", Some(dns)), Ok(5));
        net.end_of_call(&mut m);
        assert_eq!(server.recv(&mut m, &mut buf, false).map(|r| r.0), Ok(5));
        // Nobody listens on 127.9.9.9: refused at once, as on Linux (not a minute of SYNs).
        let lone = net.socket(true);
        let nobody = SockAddr {
            ip: [127, 9, 9, 9],
            port: 7100,
        };
        assert_eq!(lone.connect(&mut m, nobody, true), Err(Errno::ECONNREFUSED));
        // The interface takes six such addresses besides 127.0.0.1 (three are in use
        // above); the seventh is refused.
        for i in 2..5 {
            let u = net.socket(false);
            let ip = [127, 0, 0, i];
            assert_eq!(
                u.bind(&mut m, SockAddr { ip, port: 5000 }),
                Ok(()),
                "{ip:?}"
            );
        }
        let u = net.socket(false);
        let ip = [127, 0, 0, 5];
        assert_eq!(
            u.bind(&mut m, SockAddr { ip, port: 5000 }),
            Err(Errno::EADDRNOTAVAIL)
        );
    }

    #[test]
    fn a_reader_that_drained_its_data_is_woken_by_the_next_data() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _listener) = connected(&net, &mut m);
        // No Nagle: the second write must not wait for the first one's (delayed) ACK.
        c.set_options(&|o| o.no_delay = true);
        c.write(&mut m, b"one").unwrap();
        net.end_of_call(&mut m);
        let mut buf = [0u8; 16];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(3));
        // Drained: the next read would wait on the socket's channel.
        assert_eq!(srv.read(&mut m, &mut buf), Err(Errno::EAGAIN));
        m.waiting.push(Channel::Object(srv.id));
        c.write(&mut m, b"two").unwrap();
        net.end_of_call(&mut m);
        assert!(m.waiting.is_empty(), "the waiting reader was not woken");
        assert_eq!(srv.read(&mut m, &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"two");
    }

    #[test]
    fn data_and_fin_arriving_together_report_rdhup_with_the_data() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _listener) = connected(&net, &mut m);
        let seq = srv.event_seq();
        c.write(&mut m, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        c.shutdown(&mut m, 1).unwrap();
        net.end_of_call(&mut m);
        idle(&net, &mut m, 5);
        let r = srv.poll_events();
        assert_eq!(
            r & (POLLIN | POLLRDHUP),
            POLLIN | POLLRDHUP,
            "the FIN behind the data is reported with it: {r:#x}"
        );
        assert_ne!(srv.event_seq(), seq);
        let mut buf = [0u8; 64];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(18));
        // Drained: still readable (the end), still RDHUP, and the answer can go out.
        let r = srv.poll_events();
        assert_eq!(
            r & (POLLIN | POLLRDHUP | POLLOUT),
            POLLIN | POLLRDHUP | POLLOUT
        );
        assert_eq!(srv.read(&mut m, &mut buf), Ok(0));
        assert_eq!(srv.write(&mut m, b"HTTP/1.1 200 OK\r\n\r\n"), Ok(19));
    }

    /// A stack with a static address on a card, a UDP socket on it, and the machine.
    fn on_a_card() -> (Net, Arc<Socket>, FakeMachine) {
        let mut m = FakeMachine {
            card: Some(crate::testing::FakeCard::default()),
            ..FakeMachine::default()
        };
        let net = Net::new(NetConfig {
            ip: Some(([10, 0, 2, 15], 24)),
            gateway: Some([10, 0, 2, 2]),
            dns: Vec::new(),
        });
        let u = net.socket(false);
        u.bind(
            &mut m,
            SockAddr {
                ip: [0; 4],
                port: 5000,
            },
        )
        .unwrap();
        (net, u, m)
    }

    /// Sends a datagram to the gateway (the card sends the ARP request for it) as a call
    /// that goes on, and returns how many frames the card has then and was notified of.
    fn send_in_a_call(net: &Net, u: &Socket, m: &mut FakeMachine) -> (usize, usize) {
        let to = SockAddr {
            ip: [10, 0, 2, 2],
            port: 53,
        };
        assert_eq!(u.send(m, b"question", Some(to)), Ok(8));
        net.end_of_call(m);
        let card = m.card.as_ref().unwrap();
        (card.sent.len(), card.notified)
    }

    #[test]
    fn frames_a_call_queued_are_notified_when_the_thread_waits() {
        let (net, u, mut m) = on_a_card();
        let (sent, notified) = send_in_a_call(&net, &u, &mut m);
        assert!(sent > 0, "the call queued no frame");
        assert_eq!(notified, 0, "the card was notified inside the call");
        let by = net
            .next_poll()
            .expect("no run planned for the queued frames");
        assert!(by <= m.now + NOTIFY_DEFER_NS, "planned at {by}, too late");
        // The thread waits: the kernel runs the stack for it, and the card hears of all.
        net.poll_if_dirty(&mut m);
        let card = m.card.as_ref().unwrap();
        assert_eq!(card.notified, card.sent.len());
        assert_eq!(net.stack.lock().unflushed, None);
    }

    #[test]
    fn while_other_threads_are_ready_runs_notify_and_look_at_every_socket() {
        let (net, u, mut m) = on_a_card();
        net.set_busy(true);
        let (sent, notified) = send_in_a_call(&net, &u, &mut m);
        assert!(sent > 0);
        assert_eq!(notified, sent, "a batched run left frames unannounced");
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, _srv, _l) = connected(&net, &mut m);
        net.set_busy(true);
        c.write(&mut m, b"ping").unwrap();
        net.end_of_call(&mut m);
        net.poll(&mut m);
        assert!(
            !net.stack.lock().sweep_owed,
            "a batched run looked at some sockets only"
        );
    }

    #[test]
    fn frames_wait_for_the_card_no_longer_than_the_notify_bound() {
        let (net, u, mut m) = on_a_card();
        let (sent, _) = send_in_a_call(&net, &u, &mut m);
        // Calls within the bound leave the frames queued; the first after it notifies.
        m.now += NOTIFY_DEFER_NS / 2;
        send_in_a_call(&net, &u, &mut m);
        assert_eq!(m.card.as_ref().unwrap().notified, 0);
        m.now += NOTIFY_DEFER_NS / 2;
        let (sent_now, notified) = send_in_a_call(&net, &u, &mut m);
        assert!(sent_now >= sent);
        assert_eq!(notified, sent_now, "frames waited beyond the bound");
        // A run from the timer or an interrupt notifies at once.
        send_in_a_call(&net, &u, &mut m);
        net.poll(&mut m);
        let card = m.card.as_ref().unwrap();
        assert_eq!(card.notified, card.sent.len());
    }

    #[test]
    fn a_segment_finds_its_connection_by_addresses() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, l) = connected(&net, &mut m);
        let (client, server) = (c.local_addr(), srv.local_addr());
        let mut s = net.stack.lock();
        let mut rebuilt = false;
        assert_eq!(
            s.sockets.owner_of((server, client), &mut rebuilt),
            Some(srv.id)
        );
        assert_eq!(
            s.sockets.owner_of((client, server), &mut rebuilt),
            Some(c.id)
        );
        // A segment for no connection (a connection request) has no owner, and the
        // sockets are looked through at most once a run for it.
        let nobody = SockAddr {
            ip: [127, 0, 0, 1],
            port: 9,
        };
        assert_eq!(s.sockets.owner_of((server, nobody), &mut rebuilt), None);
        assert!(rebuilt);
        drop(s);
        // A connection the listener made and nobody accepted yet is the listener's.
        let c2 = net.socket(true);
        for _ in 0..20 {
            if matches!(c2.connect(&mut m, LOCAL, false), Ok(Connect::Done)) {
                break;
            }
            net.poll(&mut m);
        }
        let pending = c2.local_addr();
        let mut s = net.stack.lock();
        let mut rebuilt = false;
        assert_eq!(
            s.sockets.owner_of((server, pending), &mut rebuilt),
            Some(l.id)
        );
    }

    #[test]
    fn runs_that_look_at_some_sockets_owe_a_look_at_all() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _l) = connected(&net, &mut m);
        idle(&net, &mut m, 20);
        assert!(!net.stack.lock().sweep_owed);
        // Data between two connected sockets: the run looks at those it concerns only, and
        // plans a look at every socket.
        m.now += SWEEP_ALL_NS;
        net.poll(&mut m);
        assert!(!net.stack.lock().sweep_owed, "a late run looks at all");
        c.write(&mut m, b"ping").unwrap();
        net.end_of_call(&mut m);
        net.poll(&mut m);
        let s = net.stack.lock();
        assert!(s.sweep_owed);
        let at = s.swept_all + SWEEP_ALL_NS;
        drop(s);
        assert!(net.next_poll().is_some_and(|t| t <= at));
        let mut buf = [0u8; 8];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(4));
    }

    /// Lets `ms` milliseconds pass, running the stack each millisecond.
    fn idle(net: &Net, m: &mut FakeMachine, ms: u64) {
        for _ in 0..ms {
            m.now += 1_000_000;
            net.poll(m);
        }
    }

    fn parked(net: &Net) -> usize {
        net.stack.lock().sockets.parked_count()
    }

    #[test]
    fn quiet_connections_are_parked_and_a_segment_brings_them_back() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _listener) = connected(&net, &mut m);
        c.write(&mut m, b"one").unwrap();
        net.end_of_call(&mut m);
        let mut buf = [0u8; 16];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(3));
        // Once the delayed acknowledgements are out, both ends wait for segments only.
        idle(&net, &mut m, 50);
        assert_eq!(
            parked(&net),
            2,
            "both ends of a quiet connection are parked"
        );
        m.waiting.push(Channel::Object(srv.id));
        c.write(&mut m, b"two").unwrap();
        net.end_of_call(&mut m);
        assert!(
            m.waiting.is_empty(),
            "the reader of a parked connection was not woken"
        );
        assert_eq!(srv.read(&mut m, &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"two");
        // And the answer goes the other way.
        srv.write(&mut m, b"three").unwrap();
        net.end_of_call(&mut m);
        idle(&net, &mut m, 50);
        assert_eq!(c.read(&mut m, &mut buf), Ok(5));
        assert_eq!(&buf[..5], b"three");
    }

    #[test]
    fn many_parked_connections_each_come_back_for_their_own_data() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let l = listening(&net, &mut m, 64);
        let pairs: Vec<_> = (0..40).map(|_| connect_to(&net, &mut m, &l)).collect();
        idle(&net, &mut m, 50);
        assert_eq!(parked(&net), 80, "every quiet connection is parked");
        // Every connection still carries data both ways after the moves.
        let mut buf = [0u8; 16];
        for (i, (c, srv)) in pairs.iter().enumerate() {
            let msg = [i as u8; 3];
            c.write(&mut m, &msg).unwrap();
            net.end_of_call(&mut m);
            assert_eq!(srv.read(&mut m, &mut buf), Ok(3), "connection {i}");
            assert_eq!(buf[..3], msg);
            srv.write(&mut m, &msg[..2]).unwrap();
            net.end_of_call(&mut m);
            idle(&net, &mut m, 2);
            assert_eq!(c.read(&mut m, &mut buf), Ok(2), "connection {i}");
        }
        idle(&net, &mut m, 50);
        assert_eq!(parked(&net), 80);
    }

    #[test]
    fn shutting_down_a_parked_connection_wakes_its_waiter() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (_c, srv, _listener) = connected(&net, &mut m);
        idle(&net, &mut m, 50);
        assert_eq!(parked(&net), 2);
        m.waiting.push(Channel::Object(srv.id));
        srv.shutdown(&mut m, 0).unwrap();
        assert!(
            m.waiting.is_empty(),
            "shutdown(SHUT_RD) did not wake the waiter"
        );
        assert_ne!(srv.poll_events() & POLLIN, 0);
    }

    #[test]
    fn an_idle_client_connection_outlives_the_connect_timeout() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _listener) = connected(&net, &mut m);
        // Twice the time a connection attempt may take, without a segment either way.
        for _ in 0..120 {
            m.now += 1_000_000_000;
            net.poll(&mut m);
        }
        assert_eq!(c.take_error(), None);
        c.write(&mut m, b"still here").unwrap();
        net.end_of_call(&mut m);
        let mut buf = [0u8; 16];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(10));
    }

    /// What TCP connection `sock`'s smoltcp socket says, through `f`.
    fn with_tcp<R>(net: &Net, sock: &Socket, f: impl FnOnce(&tcp::Socket<'static>) -> R) -> R {
        let mut s = net.stack.lock();
        let Kind::TcpConn(h) = s.sock(sock.id).unwrap().kind else {
            panic!("not a connection")
        };
        f(s.sockets.get::<tcp::Socket>(h))
    }

    #[test]
    fn the_acknowledgement_delay_follows_how_long_the_program_took_to_read() {
        assert_eq!(ack_delay_for(0), ACK_DELAY_MIN);
        assert_eq!(ack_delay_for(30_000_000), Duration::from_millis(60));
        assert_eq!(ack_delay_for(10_000_000_000), ACK_DELAY_MAX);
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _listener) = connected(&net, &mut m);
        let mut buf = [0u8; 16];
        // Read 30 ms after it came: the next acknowledgement may wait 60 ms for an answer.
        c.write(&mut m, b"slow").unwrap();
        net.end_of_call(&mut m);
        idle(&net, &mut m, 30);
        assert_eq!(srv.read(&mut m, &mut buf), Ok(4));
        let delay = with_tcp(&net, &srv, |t| t.ack_delay());
        assert_eq!(delay, Some(Duration::from_millis(60)));
        // Read at once: back to the shortest delay.
        c.write(&mut m, b"quick").unwrap();
        net.end_of_call(&mut m);
        assert_eq!(srv.read(&mut m, &mut buf), Ok(5));
        assert_eq!(with_tcp(&net, &srv, |t| t.ack_delay()), Some(ACK_DELAY_MIN));
    }

    #[test]
    fn among_many_connections_those_waiting_for_an_acknowledgement_or_owing_one_are_parked() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let l = listening(&net, &mut m, 64);
        // 33 connections, 66 sockets: more than `sockets::CROWDED`.
        let mut pairs: Vec<_> = (0..33).map(|_| connect_to(&net, &mut m, &l)).collect();
        idle(&net, &mut m, 50);
        assert_eq!(parked(&net), 66);
        let (c, srv) = pairs.pop().unwrap();
        c.write(&mut m, b"request").unwrap();
        net.end_of_call(&mut m);
        // The client waits for the acknowledgement (its retransmission timer is a second
        // away) and the server owes it (its delayed-ACK timer is 10 ms away): neither
        // needs the interface before a timer or a segment, so both are parked.
        assert_eq!(with_tcp(&net, &c, |t| t.send_queue()), 7);
        assert_eq!(parked(&net), 66, "both ends are parked");
        // The server's timer brings it back to acknowledge, which brings the client back.
        idle(&net, &mut m, 20);
        assert_eq!(
            with_tcp(&net, &c, |t| t.send_queue()),
            0,
            "the data was acknowledged"
        );
        assert_eq!(parked(&net), 66);
        let mut buf = [0u8; 16];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(7));
        // An answer goes out with the acknowledgement it owes, and arrives.
        c.write(&mut m, b"again").unwrap();
        net.end_of_call(&mut m);
        assert_eq!(srv.read(&mut m, &mut buf), Ok(5));
        srv.write(&mut m, b"answer").unwrap();
        net.end_of_call(&mut m);
        assert_eq!(c.read(&mut m, &mut buf), Ok(6));
        assert_eq!(&buf[..6], b"answer");
        assert_eq!(with_tcp(&net, &c, |t| t.send_queue()), 0);
    }

    #[test]
    fn the_address_index_stays_bounded_as_parked_connections_come_and_go() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        // Runs batched for other threads never rebuild the index on a miss (they look at
        // every socket), so only its own bound keeps closed connections' entries in check.
        net.set_busy(true);
        let l = listening(&net, &mut m, 64);
        for _ in 0..120 {
            let (c, srv) = connect_to(&net, &mut m, &l);
            idle(&net, &mut m, 30);
            assert_eq!(parked(&net), 2, "a quiet connection's ends are parked");
            drop((c, srv));
            idle(&net, &mut m, 30);
        }
        let len = net.stack.lock().sockets.index_len();
        assert!(len < 100, "{len} entries kept for 120 closed connections");
    }

    #[test]
    fn among_few_connections_data_in_flight_keeps_a_connection_active() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _listener) = connected(&net, &mut m);
        idle(&net, &mut m, 50);
        assert_eq!(parked(&net), 2);
        c.write(&mut m, b"request").unwrap();
        net.end_of_call(&mut m);
        assert_eq!(with_tcp(&net, &c, |t| t.send_queue()), 7);
        assert_eq!(
            parked(&net),
            0,
            "both ends are active until the acknowledgement"
        );
        idle(&net, &mut m, 50);
        assert_eq!(with_tcp(&net, &c, |t| t.send_queue()), 0);
        assert_eq!(parked(&net), 2);
        let mut buf = [0u8; 16];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(7));
    }

    /// The receive and send buffer sizes of TCP connection `sock`.
    fn buffers(net: &Net, sock: &Socket) -> (usize, usize) {
        with_tcp(net, sock, |t| (t.recv_capacity(), t.send_capacity()))
    }

    #[test]
    fn buffer_sizes_follow_the_options_and_shrink_under_memory_pressure() {
        let mib = 1u64 << 20;
        let plenty = (128 * mib, 100 * mib);
        let pressed = (128 * mib, 20 * mib);
        let o = Options::default();
        assert_eq!(tcp_buffer_sizes(&o, plenty), (TCP_RX, TCP_TX));
        assert_eq!(tcp_buffer_sizes(&o, pressed), (16 * 1024, 16 * 1024));
        let asked = Options {
            rcvbuf: 200_000,
            sndbuf: 1,
            ..o
        };
        assert_eq!(tcp_buffer_sizes(&asked, plenty), (200_000, 4096));
        let huge = Options {
            rcvbuf: 8 << 20,
            ..o
        };
        assert_eq!(tcp_buffer_sizes(&huge, plenty).0, 256 * 1024);
        assert_eq!(tcp_buffer_sizes(&asked, pressed), (16 * 1024, 4096));
    }

    #[test]
    fn connections_made_under_memory_pressure_get_small_buffers_and_carry_data() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let l = net.socket(true);
        l.bind(&mut m, LOCAL).unwrap();
        l.listen(&mut m, 4).unwrap();
        m.ram = (128 << 20, 8 << 20);
        let (c, srv) = connect_to(&net, &mut m, &l);
        assert_eq!(buffers(&net, &c), (16 * 1024, 16 * 1024));
        // The listener's idle sockets were made before the pressure, its new ones after.
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        let mut buf = [0u8; 4096];
        for _ in 0..2000 {
            if sent < data.len() {
                sent += c.write(&mut m, &data[sent..]).unwrap_or(0);
            }
            net.end_of_call(&mut m);
            net.poll(&mut m);
            while let Ok(n @ 1..) = srv.read(&mut m, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            if got.len() == data.len() {
                break;
            }
            m.now += 1_000_000;
        }
        assert!(got == data, "{} of {} bytes arrived", got.len(), data.len());
        // Pressure over: a new connection gets full buffers, not a small spare.
        drop((c, srv));
        idle(&net, &mut m, 100);
        m.ram = (128 << 20, 100 << 20);
        let (c, _srv) = connect_to(&net, &mut m, &l);
        assert_eq!(buffers(&net, &c), (TCP_RX, TCP_TX));
    }

    #[test]
    fn a_non_blocking_connect_hears_einprogress_and_the_refusal_comes_by_poll() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let c = net.socket(true);
        // Nobody listens on LOCAL: on loopback the reset is back before connect returns.
        assert_eq!(c.connect(&mut m, LOCAL, false), Ok(Connect::InProgress));
        let ev = c.poll_events();
        assert_ne!(ev & POLLERR, 0, "{ev:#x}");
        assert_ne!(ev & POLLOUT, 0, "{ev:#x}");
        assert_eq!(c.take_error(), Some(Errno::ECONNREFUSED));
        // A blocking caller hears the refusal from connect itself.
        let c = net.socket(true);
        assert_eq!(c.connect(&mut m, LOCAL, true), Err(Errno::ECONNREFUSED));
    }

    #[test]
    fn a_ping_socket_gets_the_reply_to_its_echo_request_on_loopback() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let p = net.ping_socket();
        assert_eq!(p.protocol(), 1);
        let to = SockAddr {
            ip: [127, 0, 0, 1],
            port: 0,
        };
        // Only echo requests with their header.
        assert_eq!(p.send(&mut m, &[0; 8], Some(to)), Err(Errno::EINVAL));
        assert_eq!(p.send(&mut m, &[8, 0, 0], Some(to)), Err(Errno::EINVAL));
        // Type 8, code 0, checksum and identifier left to the kernel, sequence 7, payload.
        let request = [8, 0, 0, 0, 0xaa, 0xbb, 0, 7, b'k', b'i', b'l', b'n'];
        assert_eq!(p.send(&mut m, &request, Some(to)), Ok(request.len()));
        let ident = p.local_addr().port;
        assert_ne!(ident, 0, "the first send binds an identifier");
        idle(&net, &mut m, 3);
        assert_ne!(p.poll_events() & POLLIN, 0);
        let mut buf = [0u8; 64];
        // A peek leaves the reply for the read.
        let (n, from) = p.recv(&mut m, &mut buf, true).unwrap();
        assert_eq!((n, from.map(|f| f.ip)), (12, Some([127, 0, 0, 1])));
        assert_eq!(p.queues().unwrap().0, 12);
        let (n, _) = p.recv(&mut m, &mut buf, false).unwrap();
        assert_eq!(n, 12);
        // An echo reply (type 0) to our identifier, same sequence and payload, with a
        // valid checksum.
        assert_eq!(buf[0], 0);
        assert_eq!(u16::from_be_bytes([buf[4], buf[5]]), ident);
        assert_eq!(&buf[6..12], &request[6..]);
        let sum = buf[..12]
            .chunks(2)
            .fold(0u32, |a, w| a + u32::from(u16::from_be_bytes([w[0], w[1]])));
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
        // Nothing else: our own request was not read as a reply.
        assert_eq!(p.recv(&mut m, &mut buf, false), Err(Errno::EAGAIN));
        assert_eq!(p.poll_events() & POLLIN, 0);
    }

    #[test]
    fn a_connection_closed_or_reset_before_accept_reads_its_data_then_the_end() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let l = net.socket(true);
        l.bind(&mut m, LOCAL).unwrap();
        l.listen(&mut m, 8).unwrap();
        // One client sends a request and closes; another connects and aborts (RST).
        let c1 = net.socket(true);
        let c2 = net.socket(true);
        for c in [&c1, &c2] {
            let _ = c.connect(&mut m, LOCAL, false);
        }
        idle(&net, &mut m, 5);
        c1.write(&mut m, b"GET / HTTP/1.0\r\n\r\n").unwrap();
        drop(c1);
        c2.set_options(&|o| o.linger = (true, 0));
        drop(c2);
        idle(&net, &mut m, 50);
        // Both are accepted (Linux queues them too) and neither read blocks.
        let mut buf = [0u8; 64];
        let mut ends = Vec::new();
        while let Ok((srv, _)) = l.accept(&mut m) {
            let mut got = Vec::new();
            let end = loop {
                match srv.read(&mut m, &mut buf) {
                    Ok(0) => break Ok(0),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break Err(e),
                }
            };
            assert_ne!(
                end,
                Err(Errno::EAGAIN),
                "a read would wait for good: {got:?}"
            );
            assert_ne!(srv.poll_events() & (POLLIN | POLLHUP), 0);
            ends.push((got.len(), end));
        }
        assert!(ends.contains(&(18, Ok(0))), "{ends:?}");
    }

    #[test]
    fn closed_connections_leave_their_sockets_for_the_next_ones() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, l) = connected(&net, &mut m);
        drop((c, srv));
        idle(&net, &mut m, 100);
        let spare = net.stack.lock().sockets.spares().len();
        assert!(spare >= 1, "no socket was kept after the connection ended");
        // The next connection takes one, and works.
        let c = net.socket(true);
        for _ in 0..20 {
            if matches!(
                c.connect(&mut m, LOCAL, false),
                Ok(Connect::Done) | Err(Errno::EISCONN)
            ) {
                break;
            }
            net.poll(&mut m);
        }
        let (srv, _) = l.accept(&mut m).unwrap();
        assert!(net.stack.lock().sockets.spares().len() < spare);
        c.write(&mut m, b"again").unwrap();
        net.end_of_call(&mut m);
        let mut buf = [0u8; 8];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(5));
        assert_eq!(&buf[..5], b"again");
    }

    #[test]
    fn a_burst_of_connects_beyond_the_backlog_is_made_at_once_and_waits_for_accept() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let l = net.socket(true);
        l.bind(&mut m, LOCAL).unwrap();
        l.listen(&mut m, 2).unwrap();
        let clients: Vec<_> = (0..10).map(|_| net.socket(true)).collect();
        for c in &clients {
            let _ = c.connect(&mut m, LOCAL, false);
        }
        idle(&net, &mut m, 5);
        // Every handshake finished (none waits for a retransmission)...
        for (i, c) in clients.iter().enumerate() {
            assert!(
                matches!(
                    c.connect(&mut m, LOCAL, false),
                    Ok(Connect::Done) | Err(Errno::EISCONN)
                ),
                "client {i} is still connecting"
            );
        }
        // ...and all ten wait for accept, though the backlog is 2.
        let mut accepted = 0;
        while l.accept(&mut m).is_ok() {
            accepted += 1;
        }
        assert_eq!(accepted, 10);
    }

    #[test]
    fn a_timer_a_run_served_is_not_due_again_before_the_sockets_are_asked() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, _srv, _listener) = connected(&net, &mut m);
        c.write(&mut m, b"one").unwrap();
        net.end_of_call(&mut m);
        idle(&net, &mut m, 2);
        // The server owes a delayed acknowledgement: its timer is the stack's next run.
        let due = net.next_poll().expect("the acknowledgement's timer");
        assert!(due > m.now, "{due} is not after {}", m.now);
        // A run asks the sockets 1 ms before it; the run when it comes sends the
        // acknowledgement without asking again (the sockets were asked 1 ms ago).
        m.now = due - 1_000_000;
        net.poll(&mut m);
        m.now = due;
        let next = net.poll(&mut m);
        assert!(
            next.is_none_or(|n| n > m.now),
            "a served timer is due again at once ({next:?} at {})",
            m.now
        );
    }

    #[test]
    fn a_keep_alive_connection_is_parked_and_its_timer_still_fires() {
        let mut m = FakeMachine::default();
        let net = Net::default();
        let (c, srv, _listener) = connected(&net, &mut m);
        srv.set_options(&|o| o.keep_alive = true);
        idle(&net, &mut m, 50);
        assert_eq!(
            parked(&net),
            2,
            "a keep-alive timer 75 s away keeps nobody active"
        );
        let first = net
            .next_poll()
            .expect("the parked timer is the stack's next run");
        assert!(first > m.now && first <= m.now + 76_000_000_000, "{first}");
        // The probe goes out when the timer comes, is answered, and the timer moves on.
        while m.now < first + 2_000_000_000 {
            m.now += 500_000_000;
            net.poll(&mut m);
        }
        let next = net.next_poll().expect("a keep-alive timer again");
        assert!(next > first + 60_000_000_000, "{next} after {first}");
        assert_eq!(parked(&net), 2);
        c.write(&mut m, b"ok").unwrap();
        net.end_of_call(&mut m);
        let mut buf = [0u8; 4];
        assert_eq!(srv.read(&mut m, &mut buf), Ok(2));
    }
}
