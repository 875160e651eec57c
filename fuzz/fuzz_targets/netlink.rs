//! The kernel's netlink answers (`os::net::netlink`): whatever a program writes to a
//! `NETLINK_ROUTE` socket, the answer is well-formed messages, and splitting it into
//! datagrams loses nothing.
#![no_main]

use kiln_os::net::netlink::{answer, datagrams, Link};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let links = [
        Link::loopback(),
        Link {
            index: 2,
            name: "eth0",
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            loopback: false,
            mtu: 1500,
            addr: data.first().map(|&p| ([10, 0, 2, 15], p % 33)),
            counts: (3, 4, 300, 400),
        },
    ];
    // A default route through a gateway on the subnet, when the input gives one.
    let gateway = data.get(1).map(|&g| [10, 0, 2, g]);
    let out = answer(data, &links, gateway, 1);
    // Every message: at least a header, its length within the answer, 4-byte aligned.
    let mut at = 0;
    while at < out.len() {
        let len = u32::from_le_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            len >= 16 && at + len <= out.len(),
            "message at {at}: length {len}"
        );
        at += (len + 3) & !3;
    }
    assert_eq!(at, out.len());
    for max in [16, 100, 4096] {
        let parts = datagrams(&out, max);
        assert_eq!(parts.concat(), out);
    }
});
