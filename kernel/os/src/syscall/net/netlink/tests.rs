//! Netlink sockets through the system calls, as getifaddrs and Go use them.

use crate::net::netlink::{NLMSG_DONE, NLM_F_DUMP, NLM_F_REQUEST, RTM_GETLINK, RTM_NEWLINK};
use crate::syscall::testutil::*;
use crate::sysno as nr;

const EAGAIN: i64 = -11;

fn getlink_dump(seq: u32) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&20u32.to_le_bytes());
    m.extend_from_slice(&RTM_GETLINK.to_le_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&[0; 4]);
    m
}

/// Message types in an answer.
fn types(mut b: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
        out.push(u16::from_le_bytes([b[4], b[5]]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

use alloc::vec::Vec;

#[test]
fn a_link_dump_over_a_netlink_socket() {
    let (mut p, mut m, buf) = setup();
    // socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)
    let fd = call(&mut p, &mut m, nr::SOCKET, &[16, 3 | 0o2000000, 0]);
    assert!(fd >= 3, "{fd}");
    let fd = fd as u64;
    // bind to port 0: the kernel picks the pid.
    let mut sa = [0u8; 12];
    sa[..2].copy_from_slice(&16u16.to_le_bytes());
    poke(&mut p, &mut m, buf, &sa);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[fd, buf, 12]), 0);
    poke(&mut p, &mut m, buf + 64, &12u32.to_le_bytes());
    assert_eq!(
        call(&mut p, &mut m, nr::GETSOCKNAME, &[fd, buf, buf + 64]),
        0
    );
    assert_eq!(peek(&mut p, &mut m, buf + 4, 4), 1u32.to_le_bytes());
    // Nothing asked, nothing to read.
    assert_eq!(
        call(&mut p, &mut m, nr::RECVFROM, &[fd, buf, 4096, 0x40, 0, 0]),
        EAGAIN
    );
    let req = getlink_dump(5);
    poke(&mut p, &mut m, buf, &req);
    assert_eq!(
        call(&mut p, &mut m, nr::SENDTO, &[fd, buf, 20, 0, 0, 0]),
        20
    );
    // MSG_PEEK | MSG_TRUNC sizes the answer without taking it (glibc does this).
    let full = call(
        &mut p,
        &mut m,
        nr::RECVFROM,
        &[fd, buf, 0, 0x2 | 0x20, 0, 0],
    );
    assert!(full > 40, "{full}");
    // The answer comes from port 0.
    poke(&mut p, &mut m, buf + 0x800, &12u32.to_le_bytes());
    let n = call(
        &mut p,
        &mut m,
        nr::RECVFROM,
        &[fd, buf, 4096, 0, buf + 0x900, buf + 0x800],
    );
    assert_eq!(n, full);
    assert_eq!(
        peek(&mut p, &mut m, buf + 0x900, 8),
        [16, 0, 0, 0, 0, 0, 0, 0]
    );
    let answer = peek(&mut p, &mut m, buf, n as usize);
    // The fake machine has no card: loopback alone.
    assert_eq!(types(&answer), [RTM_NEWLINK, NLMSG_DONE]);
    assert_eq!(
        call(&mut p, &mut m, nr::RECVFROM, &[fd, buf, 4096, 0x40, 0, 0]),
        EAGAIN
    );
    // write() and read() work too.
    poke(&mut p, &mut m, buf, &req);
    assert_eq!(call(&mut p, &mut m, nr::WRITE, &[fd, buf, 20]), 20);
    assert_eq!(call(&mut p, &mut m, nr::READ, &[fd, buf, 4096]), full);
}

#[test]
fn other_netlink_families_and_bad_addresses_are_refused() {
    let (mut p, mut m, buf) = setup();
    // NETLINK_AUDIT (9): EPROTONOSUPPORT, logged once.
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[16, 3, 9]), -93);
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[16, 3, 9]), -93);
    assert_eq!(m.log.iter().filter(|l| l.contains("AF_NETLINK")).count(), 1);
    // SOCK_STREAM: ESOCKTNOSUPPORT.
    assert_eq!(call(&mut p, &mut m, nr::SOCKET, &[16, 1, 0]), -94);
    let fd = call(&mut p, &mut m, nr::SOCKET, &[16, 2, 0]) as u64;
    // A sockaddr of another family, or too short: EINVAL.
    poke(&mut p, &mut m, buf, &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[fd, buf, 12]), -22);
    assert_eq!(call(&mut p, &mut m, nr::BIND, &[fd, buf, 4]), -22);
    assert_eq!(call(&mut p, &mut m, nr::LISTEN, &[fd, 1]), -95);
    // A request at an unmapped address: EFAULT.
    assert_eq!(
        call(&mut p, &mut m, nr::SENDTO, &[fd, UNMAPPED, 20, 0, 0, 0]),
        -14
    );
}
