//! An HTTP server on tokio's multi-thread runtime (hyper), listening on `$PORT` (default
//! 8080). It exercises what tokio asks of a kernel: non-blocking sockets, epoll
//! (edge-triggered), eventfd wake-ups, futexes and worker threads.
//!
//! Routes:
//! - `GET /` — a greeting;
//! - `GET /count` — how many requests this server has answered so far;
//! - `GET /fanout` — sums the results of 16 tasks spread over the workers, each sleeping
//!   a millisecond (timers and cross-thread wake-ups);
//! - `POST /echo` — the request body back;
//! - `GET /quit` — answers, then ends the program with status 0.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

static HITS: AtomicU64 = AtomicU64::new(0);

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(port)) {
        eprintln!("tokio-http: {e}");
        std::process::exit(1);
    }
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    println!("tokio-http listening on {port}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle));
            if let Err(e) = conn.await {
                eprintln!("tokio-http: connection: {e}");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(body.into()))
        .expect("valid response")
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = HITS.fetch_add(1, Ordering::Relaxed) + 1;
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => text(StatusCode::OK, "hello from kiln (tokio)\n"),
        (&Method::GET, "/count") => text(StatusCode::OK, format!("{n}\n")),
        (&Method::GET, "/fanout") => {
            let tasks: Vec<_> = (1..=16u64)
                .map(|i| {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        i
                    })
                })
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap_or(0);
            }
            text(StatusCode::OK, format!("fanout: {sum}\n"))
        }
        (&Method::POST, "/echo") => match req.into_body().collect().await {
            Ok(body) => text(StatusCode::OK, body.to_bytes()),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        (&Method::GET, "/quit") => {
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                std::process::exit(0);
            });
            text(StatusCode::OK, "bye\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}
