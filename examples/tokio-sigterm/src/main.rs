//! Accepts TCP connections (answering each with a line) until SIGTERM, then says so and
//! exits 0: tokio's signal handling on a multi-thread runtime.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).await?;
    let mut term = signal(SignalKind::terminate())?;
    println!("ready");
    loop {
        tokio::select! {
            _ = term.recv() => {
                println!("got SIGTERM");
                return Ok(());
            }
            conn = listener.accept() => {
                let (mut s, _) = conn?;
                tokio::spawn(async move { s.write_all(b"hello\n").await });
            }
        }
    }
}
