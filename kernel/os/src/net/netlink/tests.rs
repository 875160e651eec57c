//! Requests as glibc, Go and `ip` send them, and the answers read back field by field.

use super::*;
use alloc::string::String;
use alloc::vec;

fn links() -> Vec<Link> {
    vec![
        Link::loopback(),
        Link {
            index: 2,
            name: "eth0",
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            loopback: false,
            mtu: 1500,
            addr: Some(([10, 0, 2, 15], 24)),
            counts: (3, 4, 300, 400),
        },
    ]
}

/// A request: header, then `body`.
fn request(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// A parsed message: type, flags, seq, port, body.
struct Msg {
    ty: u16,
    flags: u16,
    seq: u32,
    port: u32,
    body: Vec<u8>,
}

fn parse(mut b: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32_at(b, 0) as usize;
        assert!(len >= 16 && len <= b.len(), "bad length {len}");
        out.push(Msg {
            ty: u16_at(b, 4),
            flags: u16_at(b, 6),
            seq: u32_at(b, 8),
            port: u32_at(b, 12),
            body: b[16..len].to_vec(),
        });
        b = &b[align(len).min(b.len())..];
    }
    assert!(b.is_empty(), "trailing bytes");
    out
}

/// The attributes after a family header of `skip` bytes: (type, data).
fn attrs(body: &[u8], skip: usize) -> Vec<(u16, Vec<u8>)> {
    let mut b = &body[skip..];
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16_at(b, 0) as usize;
        out.push((u16_at(b, 2), b[4..len].to_vec()));
        b = &b[align(len).min(b.len())..];
    }
    out
}

fn attr_of(a: &[(u16, Vec<u8>)], ty: u16) -> Vec<u8> {
    a.iter()
        .find(|(t, _)| *t == ty)
        .expect("attribute")
        .1
        .clone()
}

#[test]
fn a_link_dump_lists_every_interface_then_done() {
    // glibc's getifaddrs: RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, an rtgenmsg.
    let req = request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 7, &[0, 0, 0, 0]);
    let msgs = parse(&answer(&req, &links(), None, 1));
    assert_eq!(msgs.len(), 3);
    for m in &msgs {
        assert_eq!((m.seq, m.port), (7, 1));
        assert_eq!(m.flags & NLM_F_MULTI, NLM_F_MULTI);
    }
    assert_eq!(msgs[2].ty, NLMSG_DONE);
    let eth = &msgs[1];
    assert_eq!(eth.ty, RTM_NEWLINK);
    assert_eq!(u16_at(&eth.body, 2), ARPHRD_ETHER);
    assert_eq!(u32_at(&eth.body, 4), 2);
    let flags = u32_at(&eth.body, 8);
    assert_eq!(flags & (IFF_UP | IFF_RUNNING), IFF_UP | IFF_RUNNING);
    let a = attrs(&eth.body, 16);
    assert_eq!(attr_of(&a, IFLA_IFNAME), b"eth0\0");
    assert_eq!(attr_of(&a, IFLA_ADDRESS), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    assert_eq!(attr_of(&a, IFLA_MTU), 1500u32.to_le_bytes());
    // The counters `ip -s link` shows: rx and tx packets, then rx and tx bytes.
    let stats = attr_of(&a, IFLA_STATS64);
    assert_eq!(stats.len(), 192);
    let counter = |i: usize| u64::from_le_bytes(stats[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(
        (counter(0), counter(1), counter(2), counter(3)),
        (3, 4, 300, 400)
    );
    let lo = &msgs[0];
    assert_eq!(u32_at(&lo.body, 8) & IFF_LOOPBACK, IFF_LOOPBACK);
    assert_eq!(attr_of(&attrs(&lo.body, 16), IFLA_IFNAME), b"lo\0");
}

#[test]
fn an_address_dump_gives_each_ipv4_address_with_its_prefix() {
    let req = request(
        RTM_GETADDR,
        NLM_F_REQUEST | NLM_F_DUMP,
        9,
        &[AF_UNSPEC, 0, 0, 0],
    );
    let msgs = parse(&answer(&req, &links(), None, 77));
    assert_eq!(msgs.len(), 3);
    let eth = &msgs[1];
    assert_eq!(eth.ty, RTM_NEWADDR);
    assert_eq!(
        eth.body[..4],
        [AF_INET, 24, IFA_F_PERMANENT, RT_SCOPE_UNIVERSE]
    );
    assert_eq!(u32_at(&eth.body, 4), 2);
    let a = attrs(&eth.body, 8);
    assert_eq!(attr_of(&a, IFA_LOCAL), [10, 0, 2, 15]);
    assert_eq!(attr_of(&a, IFA_ADDRESS), [10, 0, 2, 15]);
    assert_eq!(attr_of(&a, IFA_BROADCAST), [10, 0, 2, 255]);
    assert_eq!(attr_of(&a, IFA_LABEL), b"eth0\0");
    assert_eq!(msgs[0].body[1..4], [8, IFA_F_PERMANENT, RT_SCOPE_HOST]);
    assert_eq!(msgs[2].ty, NLMSG_DONE);
    // Asking for IPv6 addresses: none.
    let req = request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 10, &[10, 0, 0, 0]);
    let msgs = parse(&answer(&req, &links(), None, 77));
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].ty, NLMSG_DONE);
}

#[test]
fn one_link_by_index_or_an_error() {
    let mut body = vec![0u8; 16];
    body[4..8].copy_from_slice(&2u32.to_le_bytes());
    let req = request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, 3, &body);
    let msgs = parse(&answer(&req, &links(), None, 5));
    assert_eq!(msgs.len(), 2);
    assert_eq!((msgs[0].ty, msgs[0].flags), (RTM_NEWLINK, 0));
    assert_eq!((msgs[1].ty, u32_at(&msgs[1].body, 0)), (NLMSG_ERROR, 0));
    body[4..8].copy_from_slice(&9u32.to_le_bytes());
    let req = request(RTM_GETLINK, NLM_F_REQUEST, 4, &body);
    let msgs = parse(&answer(&req, &links(), None, 5));
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].ty, NLMSG_ERROR);
    assert_eq!(u32_at(&msgs[0].body, 0) as i32, -ENODEV);
    // The error quotes the request's header.
    assert_eq!(msgs[0].body[4..20], req[..16]);
}

#[test]
fn changes_are_refused_and_other_dumps_are_empty() {
    let req = request(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK, 1, &[0; 8]);
    let msgs = parse(&answer(&req, &links(), None, 5));
    assert_eq!(msgs.len(), 1);
    assert_eq!(u32_at(&msgs[0].body, 0) as i32, -EOPNOTSUPP);
    // RTM_GETNEIGH.
    let req = request(30, NLM_F_REQUEST | NLM_F_DUMP, 2, &[0; 12]);
    let msgs = parse(&answer(&req, &links(), None, 5));
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].ty, NLMSG_DONE);
}

#[test]
fn routes_are_the_subnet_and_the_default_route() {
    // `ip route`: RTM_GETROUTE, dumped, an rtmsg for AF_INET.
    let mut rtmsg = [0u8; 12];
    rtmsg[0] = AF_INET;
    let req = request(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 3, &rtmsg);
    let msgs = parse(&answer(&req, &links(), Some([10, 0, 2, 2]), 5));
    assert_eq!(msgs.len(), 3);
    assert!(msgs[..2]
        .iter()
        .all(|m| m.ty == RTM_NEWROUTE && m.flags == NLM_F_MULTI));
    // default via 10.0.2.2 dev eth0 proto boot
    let (def, net) = (&msgs[0].body, &msgs[1].body);
    assert_eq!(
        def[..8],
        [AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST]
    );
    let a = attrs(def, 12);
    assert!(a.contains(&(RTA_GATEWAY, vec![10, 0, 2, 2])));
    assert!(a.contains(&(RTA_OIF, 2u32.to_le_bytes().to_vec())));
    // 10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15
    assert_eq!(
        net[..8],
        [
            AF_INET,
            24,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_KERNEL,
            RT_SCOPE_LINK,
            1
        ]
    );
    let a = attrs(net, 12);
    assert!(a.contains(&(RTA_DST, vec![10, 0, 2, 0])));
    assert!(a.contains(&(RTA_PREFSRC, vec![10, 0, 2, 15])));
    assert_eq!(msgs[2].ty, NLMSG_DONE);
    // No gateway yet: the subnet alone. IPv6: nothing.
    assert_eq!(parse(&answer(&req, &links(), None, 5)).len(), 2);
    rtmsg[0] = 10;
    let req = request(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 4, &rtmsg);
    assert_eq!(
        parse(&answer(&req, &links(), Some([10, 0, 2, 2]), 5)).len(),
        1
    );
}

#[test]
fn several_requests_in_one_send_and_garbage_after_them() {
    let mut req = request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, &[0; 4]);
    req.extend(request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 2, &[0; 4]));
    req.extend_from_slice(&[0xff; 7]);
    let msgs = parse(&answer(&req, &links(), None, 5));
    let seqs: Vec<u32> = msgs.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 1, 1, 2, 2, 2]);
    // A header whose length runs past the end is ignored, as is one too short.
    assert!(answer(&[0xff; 16], &links(), None, 5).is_empty());
    assert!(answer(
        &[4, 0, 0, 0, 18, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0],
        &links(),
        None,
        5
    )
    .is_empty());
}

#[test]
fn datagrams_split_at_message_boundaries() {
    let req = request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, &[0; 4]);
    let all = answer(&req, &links(), None, 5);
    let one = datagrams(&all, 8192);
    assert_eq!(one, core::slice::from_ref(&all));
    let each = datagrams(&all, 64);
    assert_eq!(each.len(), 3);
    assert_eq!(each.concat(), all);
    let names: Vec<String> = parse(&each[1])
        .iter()
        .map(|m| String::from_utf8_lossy(&attr_of(&attrs(&m.body, 16), IFLA_IFNAME)).into_owned())
        .collect();
    assert_eq!(names, ["eth0\0"]);
}
