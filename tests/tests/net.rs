//! Networking end to end: the examples boot with QEMU user networking and talk to the host
//! through port forwards (`-p`) and the user-network gateway (10.0.2.2).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use kiln_tests::{build_image, free_port, gcc, gcc_static, kiln, Guest};

fn curl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl runs (apt-get install curl)");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn http_hello(machine: &str) {
    let image = build_image("http-hello", &["--example", "http-hello"]);
    let port = free_port();
    let fwd = format!("{port}:8080");
    let g = Guest::boot(&image, &["--machine", machine, "-p", &fwd], "listening");
    let base = format!("http://127.0.0.1:{port}");

    // Sequential requests.
    for i in 0..20 {
        let (ok, body, err) = curl(&[&format!("{base}/")]);
        assert!(ok, "request {i}: {err}");
        assert_eq!(body, b"hello from kiln\n");
    }
    // Keep-alive: curl reuses the connection for the second URL.
    let (ok, body, err) = curl(&["-v", &format!("{base}/"), &format!("{base}/")]);
    assert!(ok, "{err}");
    assert_eq!(body, b"hello from kiln\nhello from kiln\n");
    assert!(err.contains("Re-using existing connection"), "{err}");
    // Concurrent requests, each on its own connection and server thread.
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let url = format!("{base}/");
            std::thread::spawn(move || curl(&[&url]))
        })
        .collect();
    for h in handles {
        let (ok, body, err) = h.join().unwrap();
        assert!(ok, "{err}");
        assert_eq!(body, b"hello from kiln\n");
    }
    // A large response arrives intact.
    let n = 6 * 1024 * 1024 + 17;
    let (ok, body, err) = curl(&[&format!("{base}/big?n={n}")]);
    assert!(ok, "{err}");
    assert!(
        body == pattern(n),
        "large body differs ({} bytes)",
        body.len()
    );

    // Bad input: garbage, a half request, a client that vanishes mid-response.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"\x00\x01garbage\xff\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.starts_with(b"HTTP/1.1 400"), "{reply:?}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET / HT").unwrap();
    drop(s);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /big?n=4000000 HTTP/1.1\r\n\r\n").unwrap();
    let mut first = [0u8; 1000];
    s.read_exact(&mut first).unwrap();
    drop(s);
    // The server still answers.
    let (ok, body, err) = curl(&[&format!("{base}/")]);
    assert!(ok, "{err}");
    assert_eq!(body, b"hello from kiln\n");

    // A thread that busy-loops forever cannot starve the server's threads.
    let (ok, body, err) = curl(&[&format!("{base}/spin")]);
    assert!(ok, "{err}");
    assert_eq!(body, b"spinning\n");
    for i in 0..10 {
        let (ok, body, err) = curl(&[&format!("{base}/")]);
        assert!(ok, "request {i} beside a busy thread: {err}");
        assert_eq!(body, b"hello from kiln\n");
    }

    let (ok, body, _) = curl(&[&format!("{base}/quit")]);
    assert!(ok);
    assert_eq!(body, b"bye\n");
    let (status, rest) = g.wait();
    assert_eq!(status, 0);
    assert!(rest.contains("quit requested"), "{rest}");
}

#[test]
fn http_hello_serves_many_clients() {
    http_hello("microvm");
}

#[test]
fn http_hello_on_q35_pci() {
    http_hello("q35");
}

#[test]
fn the_card_is_set_up_at_the_first_socket_not_at_boot() {
    // busybox has socket functions, so its image gets the network stack; `echo` opens no
    // socket and must not pay for the card, `wget` opens one and sets it up then.
    let quiet = kiln(&[
        "run",
        "--elf",
        "/bin/busybox",
        "--verbose",
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(quiet.status, 0, "{quiet:?}");
    assert!(quiet.out().contains("hi"), "{quiet:?}");
    assert!(!quiet.stderr.contains("net: virtio"), "{quiet:?}");
    let url = "http://10.0.2.2:1/";
    let net = kiln(&[
        "run",
        "--elf",
        "/bin/busybox",
        "--verbose",
        "--",
        "wget",
        "-q",
        url,
    ]);
    assert!(net.stderr.contains("net: virtio-mmio card"), "{net:?}");
}

const IFADDRS_C: &str = r#"
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <sys/socket.h>

int main(void) {
    struct ifaddrs *all, *i;
    if (getifaddrs(&all) != 0) { perror("getifaddrs"); return 1; }
    for (i = all; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            char a[16], n[16];
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, a, sizeof a);
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_netmask)->sin_addr, n, sizeof n);
            printf("%s inet %s/%s%s\n", i->ifa_name, a, n, i->ifa_flags & IFF_UP ? " up" : "");
        } else if (i->ifa_addr->sa_family == AF_PACKET) {
            unsigned char *m = ((struct sockaddr_ll *)i->ifa_addr)->sll_addr;
            printf("%s link %02x:%02x:%02x:%02x:%02x:%02x\n", i->ifa_name, m[0], m[1], m[2], m[3], m[4], m[5]);
        }
    }
    freeifaddrs(all);
    /* if_nametoindex asks with the SIOCGIFINDEX ioctl on a socket. */
    printf("eth0 index %u\n", if_nametoindex("eth0"));
    return 0;
}
"#;

#[test]
fn getifaddrs_lists_the_interfaces_over_netlink() {
    // glibc's getifaddrs asks the kernel over a NETLINK_ROUTE socket (links, then
    // addresses), as Go's net.Interfaces and `ip addr` do.
    let exe = gcc_static("ifaddrs", IFADDRS_C);
    let r = kiln(&["run", "--elf", exe.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    for line in [
        "eth0 index 2\n",
        "lo inet 127.0.0.1/255.0.0.0 up\n",
        "eth0 inet 10.0.2.15/255.255.255.0 up\n",
        "eth0 link 52:54:00:12:34:56\n",
    ] {
        assert!(out.contains(line), "{line:?} missing: {r:?}");
    }
}

#[test]
fn iproute2_lists_addresses_and_routes_over_netlink() {
    // Debian's ip: RTM_GETADDR and RTM_GETROUTE dumps.
    let image = build_image("ip", &["--elf", "/usr/bin/ip"]);
    let img = image.to_str().unwrap();
    let r = kiln(&["run", "--image", img, "--", "-4", "-o", "addr"]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("eth0    inet 10.0.2.15/24"), "{r:?}");
    let r = kiln(&["run", "--image", img, "--", "route"]);
    assert_eq!(
        (r.status, r.out().as_str()),
        (
            0,
            "default via 10.0.2.2 dev eth0 \n\
             10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15 \n"
        ),
        "{r:?}"
    );
}

#[test]
fn debian_ping_reaches_loopback_itself_and_the_gateway_once_a_second() {
    // iputils' ping over an ICMP echo ("ping") socket. It paces its probes from the
    // monotonic clock, so this also checks that clock reads as a Linux system's would.
    let image = build_image("ping", &["--elf", "/usr/bin/ping"]);
    let img = image.to_str().unwrap();
    for host in ["127.0.0.1", "10.0.2.15", "10.0.2.2"] {
        let r = kiln(&["run", "--image", img, "--", "-c", "2", "-W", "5", host]);
        assert_eq!(r.status, 0, "{host}: {r:?}");
        let out = r.out();
        assert!(
            out.contains(&format!("64 bytes from {host}: icmp_seq=2")),
            "{r:?}"
        );
        assert!(
            out.contains("2 packets transmitted, 2 received, 0% packet loss"),
            "{r:?}"
        );
        // "time 1002ms": the second probe a second after the first.
        let ms: u64 = out
            .split(", time ")
            .nth(1)
            .and_then(|t| t.split("ms").next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no time in {r:?}"));
        assert!((900..5000).contains(&ms), "{ms} ms: {r:?}");
    }
    // Nobody answers at an unused address: every probe lost, status 1, as on Linux.
    let r = kiln(&[
        "run",
        "--image",
        img,
        "--",
        "-c",
        "1",
        "-W",
        "1",
        "10.0.2.99",
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.out()
            .contains("1 packets transmitted, 0 received, 100% packet loss"),
        "{r:?}"
    );
}

#[test]
fn busybox_ifconfig_and_route_read_the_interfaces() {
    // ifconfig: the SIOCGIF* ioctls and /proc/net/dev; route: /proc/net/route.
    let image = build_image("busybox", &["--elf", "/bin/busybox"]);
    let img = image.to_str().unwrap();
    let r = kiln(&["run", "--image", img, "--", "ifconfig", "eth0"]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    assert!(out.contains("HWaddr 52:54:00:12:34:56"), "{r:?}");
    assert!(
        out.contains("inet addr:10.0.2.15  Bcast:10.0.2.255  Mask:255.255.255.0"),
        "{r:?}"
    );
    assert!(out.contains("RX packets:"), "{r:?}");
    let r = kiln(&["run", "--image", img, "--", "route", "-n"]);
    assert_eq!(r.status, 0, "{r:?}");
    let routes: Vec<String> = r
        .out()
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        routes,
        [
            "0.0.0.0 10.0.2.2 0.0.0.0 UG 0 0 0 eth0",
            "10.0.2.0 0.0.0.0 255.255.255.0 U 0 0 0 eth0"
        ],
        "{r:?}"
    );
}

#[test]
fn udp_echo_round_trips() {
    let image = build_image("udp-echo", &["--example", "udp-echo"]);
    let port = free_port();
    let fwd = format!("{port}:8080/udp");
    let g = Guest::boot(&image, &["-p", &fwd], "listening");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 65536];
    // Up to 1 KB, then datagrams larger than a frame, which go in IP fragments both ways,
    // up to the largest IPv4 carries (65,507 bytes with its header and the UDP header).
    let sizes = (0..50)
        .map(|i| i * 20)
        .chain([1473, 3000, 6000, 8000, 20000, 65_507 - 12]);
    for (i, size) in sizes.enumerate() {
        let msg = format!("datagram {i} {}", "x".repeat(size));
        // UDP may drop: a few tries each.
        let mut got = None;
        for _ in 0..5 {
            s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                got = Some(buf[..n].to_vec());
                break;
            }
        }
        assert_eq!(got.as_deref(), Some(msg.as_bytes()), "datagram {i}");
    }
    s.send_to(b"quit", ("127.0.0.1", port)).unwrap();
    let (status, rest) = g.wait();
    assert_eq!(status, 0);
    assert_eq!(rest, "bye\n");
}

/// A host HTTP server for the client example: answers every connection with `body`.
fn host_server(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            // Read the whole request (closing with unread data would reset the connection).
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn fetch_reaches_the_host_through_the_gateway() {
    let port = host_server("hello from the host\n");
    let target = format!("10.0.2.2:{port}");
    for machine in ["microvm", "q35"] {
        let r = kiln(&[
            "run",
            "--example",
            "fetch",
            "--machine",
            machine,
            "--timeout",
            "120",
            "--",
            &target,
            "/x",
        ]);
        assert_eq!(r.status, 0, "{machine}: {r:?}");
        assert!(r.out().starts_with("HTTP/1.0 200 OK\r\n"), "{r:?}");
        assert!(r.out().ends_with("\r\n\r\nhello from the host\n"), "{r:?}");
    }
    // A static address instead of DHCP.
    let r = kiln(&[
        "run",
        "--example",
        "fetch",
        "--ip",
        "10.0.2.42/24",
        "--gateway",
        "10.0.2.2",
        "--timeout",
        "120",
        "--",
        &target,
    ]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().ends_with("hello from the host\n"), "{r:?}");
    // Nothing listens: connection refused, reported by the program.
    let closed = free_port();
    let r = kiln(&[
        "run",
        "--example",
        "fetch",
        "--timeout",
        "120",
        "--",
        &format!("10.0.2.2:{closed}"),
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("Connection refused"), "{r:?}");
    // localhost resolves through /etc/hosts to the guest's own loopback.
    let r = kiln(&[
        "run",
        "--example",
        "fetch",
        "--timeout",
        "120",
        "--",
        "localhost:9",
    ]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("Connection refused"), "{r:?}");
}

#[test]
fn run_time_dns_replaces_resolv_conf() {
    let image = build_image("busybox-dns", &["--elf", "/bin/busybox"]);
    let r = kiln_tests::run_image(
        &image,
        &["--dns", "10.9.8.7", "--", "cat", "/etc/resolv.conf"],
    );
    assert_eq!(
        (r.status, r.out().as_str()),
        (0, "nameserver 10.9.8.7\n"),
        "{r:?}"
    );
    // Without --dns the image's own file stays.
    let r = kiln_tests::run_image(&image, &["--", "cat", "/etc/resolv.conf"]);
    assert!(r.out().contains("nameserver 10.0.2.3"), "{r:?}");
}

/// A Go net/http server (`examples/go-http`, built static by `go build`) answers hundreds
/// of concurrent clients, each on a connection of its own, and then still answers.
///
/// The 200 connections are opened at once and all send their request at once (the runner
/// gives QEMU's forward a real listen backlog: `qemu::backlog`), so the guest holds 200
/// connections at once.
#[test]
fn go_http_serves_hundreds_of_concurrent_clients() {
    let image = build_image("go-http", &["--example", "go-http"]);
    let port = free_port();
    let fwd = format!("{port}:8080");
    let _g = Guest::boot(&image, &["-p", &fwd], "listening on");
    const CLIENTS: usize = 200;
    let all_connected = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let all_connected = all_connected.clone();
            std::thread::spawn(move || -> Result<Vec<u8>, String> {
                let connected = TcpStream::connect(("127.0.0.1", port));
                all_connected.wait();
                let mut s = connected.map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(120)))
                    .map_err(|e| e.to_string())?;
                let req = format!("GET /c{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).map_err(|e| e.to_string())?;
                Ok(reply)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let reply = c
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "client {i}: {text}");
        assert!(
            text.ends_with("\r\n\r\nhello from go\n"),
            "client {i}: {text}"
        );
    }
    let (ok, body, err) = curl(&[&format!("http://127.0.0.1:{port}/after")]);
    assert!(ok, "{err}");
    assert_eq!(body, b"hello from go\n");
}

const LISTEN_THEN_NETSTAT: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(8080)};
    bind(l, (struct sockaddr *)&a, sizeof a);
    listen(l, 16);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    a.sin_port = htons(5353);
    bind(u, (struct sockaddr *)&a, sizeof a);
    /* The sockets stay open across execve: busybox's netstat lists them. */
    char *argv[] = {"netstat", "-lntu", 0};
    execv("/bin/busybox", argv);
    perror("execv");
    return 1;
}
"#;

#[test]
fn busybox_netstat_reads_the_listening_sockets_from_proc_net() {
    let prog = gcc_static("listen-netstat", LISTEN_THEN_NETSTAT);
    let img = build_image(
        "listen-netstat",
        &[
            "--elf",
            prog.to_str().unwrap(),
            "--file",
            "/bin/busybox:/bin/busybox",
        ],
    );
    let r = kiln_tests::run_image(&img, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    let out = r.out();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.iter()
            .any(|f| f[..] == ["tcp", "0", "16", "0.0.0.0:8080", "0.0.0.0:*", "LISTEN"]),
        "{r:?}"
    );
    assert!(
        rows.iter()
            .any(|f| f[..] == ["udp", "0", "0", "0.0.0.0:5353", "0.0.0.0:*"]),
        "{r:?}"
    );
}

const UNIX_ECHO: &str = r#"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un addr(const char *path, int abstract_name) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path + abstract_name, path);
    return a;
}

static void *serve(void *arg) {
    int l = *(int *)arg;
    for (int i = 0; i < 2; i++) {
        int c = accept(l, 0, 0);
        char buf[64];
        ssize_t n = read(c, buf, sizeof buf);
        for (ssize_t j = 0; j < n; j++) if (buf[j] >= 'a' && buf[j] <= 'z') buf[j] -= 32;
        write(c, buf, n);
        close(c);
    }
    return 0;
}

static void ask(const char *path, int abstract_name, const char *what) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = addr(path, abstract_name);
    socklen_t len = abstract_name ? sizeof(sa_family_t) + 1 + strlen(path) : sizeof a;
    if (connect(s, (struct sockaddr *)&a, len) != 0) { printf("connect: %s\n", strerror(errno)); return; }
    write(s, what, strlen(what));
    char buf[64] = {0};
    read(s, buf, sizeof buf - 1);
    printf("%s\n", buf);
    close(s);
}

#define MANY 256

/* Accepts MANY connections, then answers each with its own first byte. */
static void *serve_many(void *arg) {
    int l = *(int *)arg, c[MANY];
    for (int i = 0; i < MANY; i++) c[i] = accept(l, 0, 0);
    for (int i = 0; i < MANY; i++) {
        char b;
        if (read(c[i], &b, 1) == 1) write(c[i], &b, 1);
        close(c[i]);
    }
    return 0;
}

/* MANY connections open at once: every one answered, none lost. */
static void many(void) {
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = addr("many", 1);
    socklen_t len = sizeof(sa_family_t) + 1 + strlen("many");
    if (bind(l, (struct sockaddr *)&a, len) || listen(l, 64)) { perror("many"); return; }
    pthread_t t;
    pthread_create(&t, 0, serve_many, &l);
    int s[MANY], ok = 0;
    for (int i = 0; i < MANY; i++) {
        s[i] = socket(AF_UNIX, SOCK_STREAM, 0);
        /* Past the backlog, connect waits for the server to accept. */
        if (connect(s[i], (struct sockaddr *)&a, len) == 0) {
            char b = (char)i;
            write(s[i], &b, 1);
        }
    }
    for (int i = 0; i < MANY; i++) {
        char b;
        if (read(s[i], &b, 1) == 1 && b == (char)i) ok++;
        close(s[i]);
    }
    pthread_join(t, 0);
    printf("%d of %d answered\n", ok, MANY);
}

int main(void) {
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = addr("/tmp/echo.sock", 0);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4)) { perror("bind/listen"); return 1; }
    pthread_t t;
    pthread_create(&t, 0, serve, &l);
    ask("/tmp/echo.sock", 0, "hello over a unix socket");
    ask("/tmp/echo.sock", 0, "and again");
    pthread_join(t, 0);
    /* Nothing listens here, as on a machine where the service is not running. */
    ask("/var/run/nscd/socket", 0, "x");
    ask("nobody", 1, "x");
    many();
    return 0;
}
"#;

#[test]
fn threads_talk_over_a_named_unix_socket() {
    let prog = gcc(
        &kiln_tests::scratch("unix-echo"),
        "unix-echo",
        UNIX_ECHO,
        &["-static", "-O1", "-pthread"],
    );
    let img = build_image("unix-echo", &["--elf", prog.to_str().unwrap(), "--no-net"]);
    let r = kiln_tests::run_image(&img, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.out(),
        "HELLO OVER A UNIX SOCKET\nAND AGAIN\nconnect: No such file or directory\nconnect: Connection refused\n256 of 256 answered\n",
        "{r:?}"
    );
}
