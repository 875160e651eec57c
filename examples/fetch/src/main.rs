//! A tiny HTTP/1.0 client: `fetch [HOST:PORT] [PATH]` connects (resolving HOST through
//! /etc/hosts and DNS), sends `GET PATH`, and prints the response on stdout. HOST:PORT
//! defaults to the user-network gateway, 10.0.2.2:8000.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "10.0.2.2:8000".into());
    let path = args.next().unwrap_or_else(|| "/".into());
    let addrs: Vec<_> = match target.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            eprintln!("fetch: cannot resolve {target}: {e}");
            std::process::exit(2);
        }
    };
    let mut stream = match TcpStream::connect(&addrs[..]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fetch: cannot connect to {target}: {e}");
            std::process::exit(1);
        }
    };
    let host = target.rsplit_once(':').map_or(&target[..], |(h, _)| h);
    // One write, so the request leaves as a whole.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: kiln-fetch\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut body = Vec::new();
    stream.read_to_end(&mut body).expect("read response");
    std::io::stdout().write_all(&body).expect("stdout");
}
