//! A small HTTP/1.1 server on std::net: a thread per connection, keep-alive, listening on
//! `$PORT` (8080 when unset).
//!
//! - `GET /` answers `hello from kiln`.
//! - `GET /big?n=BYTES` answers BYTES bytes of a repeating pattern (`i % 251`).
//! - `GET /spin` starts a thread that busy-loops until the program ends (the server must
//!   keep answering beside it).
//! - `GET /quit` answers, then ends the program (exit status 0).
//! - Anything malformed gets `400 Bad Request` and the connection closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn respond(out: &mut TcpStream, status: &str, body: &[u8], keep: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep { "keep-alive" } else { "close" }
    );
    out.write_all(head.as_bytes())?;
    for chunk in body.chunks(64 * 1024) {
        out.write_all(chunk)?;
    }
    out.flush()
}

/// One line (up to `\n`), bytes that are not UTF-8 replaced; `None` at end of stream.
fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut raw = Vec::new();
    if r.take(8192).read_until(b'\n', &mut raw)? == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&raw).into_owned()))
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(line) = read_line(&mut reader)? else {
            return Ok(());
        };
        let mut parts = line.split_whitespace();
        let (method, target, version) = (parts.next(), parts.next(), parts.next());
        let mut keep = version == Some("HTTP/1.1");
        // Headers, up to the empty line.
        let mut headers = 0;
        loop {
            let Some(h) = read_line(&mut reader)? else {
                return Ok(());
            };
            if h == "\r\n" || h == "\n" {
                break;
            }
            headers += 1;
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                keep = lower.contains("keep-alive") || (keep && !lower.contains("close"));
            }
            if headers > 100 {
                respond(&mut out, "431 Request Header Fields Too Large", b"", false)?;
                return Ok(());
            }
        }
        let (Some(method), Some(target), Some(v)) = (method, target, version) else {
            respond(&mut out, "400 Bad Request", b"bad request\n", false)?;
            return Ok(());
        };
        if !v.starts_with("HTTP/1.") || method != "GET" {
            respond(&mut out, "400 Bad Request", b"bad request\n", false)?;
            return Ok(());
        }
        if target == "/" {
            respond(&mut out, "200 OK", b"hello from kiln\n", keep)?;
        } else if let Some(n) = target.strip_prefix("/big?n=") {
            let Ok(n) = n.parse::<usize>() else {
                respond(&mut out, "400 Bad Request", b"bad size\n", false)?;
                return Ok(());
            };
            let body: Vec<u8> = (0..n.min(64 << 20)).map(|i| (i % 251) as u8).collect();
            respond(&mut out, "200 OK", &body, keep)?;
        } else if target == "/spin" {
            std::thread::spawn(|| {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            });
            respond(&mut out, "200 OK", b"spinning\n", keep)?;
        } else if target == "/quit" {
            respond(&mut out, "200 OK", b"bye\n", false)?;
            println!("quit requested");
            std::process::exit(0);
        } else {
            respond(&mut out, "404 Not Found", b"not found\n", keep)?;
        }
        if !keep {
            return Ok(());
        }
    }
}

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = TcpListener::bind(format!("0.0.0.0:{port}"))?;
    println!("http-hello listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                std::thread::spawn(move || {
                    let _ = serve(s);
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}
