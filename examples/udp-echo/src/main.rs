//! Echoes every UDP datagram back to its sender. Listens on `$PORT` (8080 when unset);
//! a datagram saying `quit` ends the program.

use std::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let sock = UdpSocket::bind(format!("0.0.0.0:{port}"))?;
    println!("udp-echo listening on {}", sock.local_addr()?);
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        sock.send_to(&buf[..n], from)?;
        if &buf[..n] == b"quit" {
            println!("bye");
            return Ok(());
        }
    }
}
