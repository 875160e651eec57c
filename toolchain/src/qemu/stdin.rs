//! The standard-input channel's host side ([`kiln_abi::stdin`]): the runner listens on a
//! Unix socket that QEMU connects a port of the virtio console (or a UART) to, and answers
//! each of the kernel's requests by reading its own standard input once. Nothing is read
//! that the program did not ask for, so input a program leaves is there for the next
//! reader, as with a local program.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiln_abi::stdin::{decode_request, encode_chunk, MAX_CHUNK, REQUEST, REQUEST_LEN};

/// The runner's standard input, if there is any to give: not when it is closed or
/// `/dev/null` (as for detached instances and most tools that start the runner), which
/// the program would see as empty anyway, so the image gets no channel at all.
pub fn host_input() -> Option<File> {
    // A second descriptor for the same open file: reads through it take from the same
    // offset, and nothing is buffered on the way (std's `Stdin` reads ahead).
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let file = File::from(fd);
    let meta = file.metadata().ok()?;
    (!is_dev_null(&meta)).then_some(file)
}

/// Whether `meta` is the null device's.
fn is_dev_null(meta: &std::fs::Metadata) -> bool {
    let null = std::fs::metadata("/dev/null").ok();
    meta.file_type().is_char_device()
        && null.is_some_and(|n| n.file_type().is_char_device() && n.rdev() == meta.rdev())
}

/// Listens at `socket` and, once QEMU connected, answers the kernel's requests from
/// `input` until QEMU goes away (or `done` is set before it connected).
pub fn start(
    socket: &Path,
    input: File,
    done: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = UnixListener::bind(socket)?;
    listener.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        let conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if done.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        };
        if conn.set_nonblocking(false).is_ok() {
            let _ = serve(conn, input);
        }
    }))
}

/// Answers every request read from `conn` ([`decode_request`]) with one read of `input`
/// for at most the bytes it asks for, until `conn` ends. A failed read of `input` is end of
/// input; bytes that are no request are skipped.
pub fn serve(mut conn: impl Read + Write, mut input: impl Read) -> std::io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut got_bytes = [0u8; 64];
    let mut chunk = vec![0u8; MAX_CHUNK];
    loop {
        let n = match conn.read(&mut got_bytes) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&got_bytes[..n]);
        while let Some(start) = pending.iter().position(|&b| b == REQUEST) {
            pending.drain(..start);
            let Some(request) = pending.first_chunk::<REQUEST_LEN>() else {
                break;
            };
            let want = decode_request(request).unwrap_or(MAX_CHUNK);
            pending.drain(..REQUEST_LEN);
            let got = loop {
                match input.read(&mut chunk[..want]) {
                    Ok(got) => break got,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break 0,
                }
            };
            conn.write_all(&encode_chunk(&chunk[..got]))?;
        }
        if !pending.contains(&REQUEST) {
            pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_abi::stdin::{encode_request, Decoder, Input};

    fn ask(kernel: &mut UnixStream) -> Option<Vec<u8>> {
        ask_for(kernel, MAX_CHUNK)
    }
    use std::os::unix::net::UnixStream;

    /// Asks through `kernel` once for `want` bytes and returns the chunk (None: end of
    /// input).
    fn ask_for(kernel: &mut UnixStream, want: usize) -> Option<Vec<u8>> {
        kernel.write_all(&encode_request(want)).unwrap();
        let mut d = Decoder::new();
        let mut data = Vec::new();
        let mut done = None;
        let mut b = [0u8; 1];
        while done.is_none() {
            kernel.read_exact(&mut b).unwrap();
            d.feed(&b, |i| match i {
                Input::Data(x) => data.extend_from_slice(x),
                Input::ChunkEnd => done = Some(true),
                Input::End => done = Some(false),
            });
        }
        done.unwrap().then_some(data)
    }

    #[test]
    fn answers_each_request_with_one_read_and_leaves_the_rest() {
        let (mut kernel, host) = UnixStream::pair().unwrap();
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve(host, reader));
        writer.write_all(b"first\n").unwrap();
        assert_eq!(ask(&mut kernel).unwrap(), b"first\n");
        writer.write_all(b"second\n").unwrap();
        assert_eq!(ask(&mut kernel).unwrap(), b"second\n");
        drop(writer);
        assert_eq!(ask(&mut kernel), None);
        assert_eq!(ask(&mut kernel), None, "end of input stays for a pipe");
        drop(kernel);
        t.join().unwrap().unwrap();
    }

    #[test]
    fn takes_no_more_than_each_request_asks_for() {
        let (mut kernel, host) = UnixStream::pair().unwrap();
        let data: Vec<u8> = (0..3 * MAX_CHUNK as u32).map(|i| i as u8).collect();
        let mut input = std::io::Cursor::new(data.clone());
        let t = std::thread::spawn(move || {
            serve(host, &mut input).unwrap();
            input.position()
        });
        let first = ask(&mut kernel).unwrap();
        assert_eq!(first, data[..MAX_CHUNK]);
        drop(kernel);
        assert_eq!(
            t.join().unwrap(),
            MAX_CHUNK as u64,
            "one chunk taken, no more"
        );
    }

    #[test]
    fn only_the_null_device_is_no_input() {
        let meta = |p: &Path| File::open(p).unwrap().metadata().unwrap();
        assert!(is_dev_null(&meta(Path::new("/dev/null"))));
        assert!(!is_dev_null(&meta(Path::new("/dev/zero"))));
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(!is_dev_null(&meta(f.path())));
    }
}
