//! Interface requests on a socket, as `if_nametoindex` and `ifconfig` make them.

use crate::syscall::testutil::*;
use crate::sysno as nr;

/// An `ifreq` naming `name`.
fn ifreq(name: &str) -> [u8; 40] {
    let mut r = [0u8; 40];
    r[..name.len()].copy_from_slice(name.as_bytes());
    r
}

#[test]
fn loopback_answers_the_interface_requests() {
    let (mut p, mut m, buf) = setup();
    // socket(AF_INET, SOCK_DGRAM, 0): what glibc opens for these.
    let fd = call(&mut p, &mut m, nr::SOCKET, &[2, 2, 0]) as u64;
    let ask = |p: &mut crate::process::Process,
               m: &mut crate::testing::FakeMachine,
               req: u64,
               r: [u8; 40]| {
        poke(p, m, buf, &r);
        let v = call(p, m, nr::IOCTL, &[fd, req, buf]);
        (v, peek(p, m, buf, 40))
    };
    // SIOCGIFINDEX, SIOCGIFFLAGS, SIOCGIFMTU, SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFHWADDR.
    let (v, r) = ask(&mut p, &mut m, 0x8933, ifreq("lo"));
    assert_eq!((v, &r[16..20]), (0, &1u32.to_le_bytes()[..]));
    let (_, r) = ask(&mut p, &mut m, 0x8913, ifreq("lo"));
    let flags = u16::from_le_bytes([r[16], r[17]]);
    assert_eq!(flags & 0x9, 0x9, "up and loopback: {flags:#x}");
    let (_, r) = ask(&mut p, &mut m, 0x8921, ifreq("lo"));
    assert_eq!(r[16..20], 65536u32.to_le_bytes());
    let (_, r) = ask(&mut p, &mut m, 0x8915, ifreq("lo"));
    assert_eq!(r[16..24], [2, 0, 0, 0, 127, 0, 0, 1]);
    let (_, r) = ask(&mut p, &mut m, 0x891b, ifreq("lo"));
    assert_eq!(r[20..24], [255, 0, 0, 0]);
    let (_, r) = ask(&mut p, &mut m, 0x8927, ifreq("lo"));
    assert_eq!(r[16..18], 772u16.to_le_bytes());
    // Loopback has no broadcast address; an unknown name is ENODEV; sets are EPERM.
    assert_eq!(ask(&mut p, &mut m, 0x8919, ifreq("lo")).0, -99);
    assert_eq!(ask(&mut p, &mut m, 0x8933, ifreq("eth9")).0, -19);
    assert_eq!(ask(&mut p, &mut m, 0x8914, ifreq("lo")).0, -1);
    // SIOCGIFNAME: index 1 is lo.
    let mut r = [0u8; 40];
    r[16..20].copy_from_slice(&1u32.to_le_bytes());
    let (v, r) = ask(&mut p, &mut m, 0x8910, r);
    assert_eq!((v, &r[..3]), (0, &b"lo\0"[..]));
    // Not a socket: ENOTTY, as before.
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[1, 0x8933, buf]), -25);
}

#[test]
fn ifconf_sizes_then_lists() {
    let (mut p, mut m, buf) = setup();
    let fd = call(&mut p, &mut m, nr::SOCKET, &[2, 2, 0]) as u64;
    // A null buffer: the length needed (one interface with an address here: lo).
    poke(&mut p, &mut m, buf, &[0u8; 16]);
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[fd, 0x8912, buf]), 0);
    assert_eq!(peek(&mut p, &mut m, buf, 4), 40i32.to_le_bytes());
    let mut c = [0u8; 16];
    c[..4].copy_from_slice(&400i32.to_le_bytes());
    c[8..].copy_from_slice(&(buf + 0x100).to_le_bytes());
    poke(&mut p, &mut m, buf, &c);
    assert_eq!(call(&mut p, &mut m, nr::IOCTL, &[fd, 0x8912, buf]), 0);
    assert_eq!(peek(&mut p, &mut m, buf, 4), 40i32.to_le_bytes());
    let r = peek(&mut p, &mut m, buf + 0x100, 40);
    assert_eq!(&r[..3], b"lo\0");
    assert_eq!(r[16..24], [2, 0, 0, 0, 127, 0, 0, 1]);
}
