//! FIFOs that carry the guest's byte streams out of QEMU, and the threads that copy them.
//!
//! Each FIFO is opened for reading without blocking before QEMU starts, so QEMU's open for
//! writing never waits and a QEMU that dies early never leaves a thread stuck in `open`.
//! A reader waits in `poll`: Linux reports nothing on a FIFO no writer has opened yet, data
//! while QEMU writes, and `POLLHUP` once QEMU closes it. After QEMU has exited the reader
//! drains what is left and stops.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Makes a FIFO at `path` (mode 0600).
pub fn mkfifo(path: &Path) -> std::io::Result<()> {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    mknodat(CWD, path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0)?;
    Ok(())
}

/// Opens a FIFO for reading without waiting for a writer.
pub fn open_reader(path: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

fn poll_in(f: &File, timeout_ms: i32) -> (bool, bool) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec {
        tv_sec: i64::from(timeout_ms / 1000),
        tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
    };
    let mut p = [PollFd::new(f, PollFlags::IN)];
    match poll(&mut p, Some(&timeout)) {
        Ok(n) if n > 0 => {}
        _ => return (false, false),
    }
    let r = p[0].revents();
    (
        r.contains(PollFlags::IN),
        r.intersects(PollFlags::HUP | PollFlags::ERR),
    )
}

/// Copies everything from the FIFO `reader` to `out` (flushing each chunk) until QEMU has
/// closed it, or `done` is set and nothing is left. Write errors on `out` (a closed pipe)
/// are ignored so that QEMU is never blocked.
pub fn spawn_copier(
    mut reader: File,
    mut out: Box<dyn Write + Send>,
    done: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut out_ok = true;
        loop {
            let finished = done.load(Ordering::Acquire);
            let (readable, hup) = poll_in(&reader, if finished { 0 } else { 50 });
            if readable || hup || finished {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        if hup || finished {
                            return;
                        }
                    }
                    Ok(n) => {
                        if out_ok {
                            out_ok = out.write_all(&buf[..n]).and_then(|_| out.flush()).is_ok();
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if finished {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        }
    })
}

/// A `Write` that appends into a shared buffer (kept to `cap` bytes) and optionally echoes.
pub struct Tee {
    /// The collected bytes.
    pub buf: Arc<std::sync::Mutex<Vec<u8>>>,
    /// Where to echo, if anywhere.
    pub echo: Option<Box<dyn Write + Send>>,
    /// Most bytes kept in `buf`.
    pub cap: usize,
}

impl Write for Tee {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.buf.lock() {
            if b.len() < self.cap {
                let n = data.len().min(self.cap - b.len());
                b.extend_from_slice(&data[..n]);
            }
        }
        if let Some(e) = &mut self.echo {
            let _ = e.write_all(data);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(e) = &mut self.echo {
            let _ = e.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_until_writer_closes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        mkfifo(&fifo).unwrap();
        let r = open_reader(&fifo).unwrap();
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tee = Tee {
            buf: buf.clone(),
            echo: None,
            cap: 1 << 20,
        };
        let done = Arc::new(AtomicBool::new(false));
        let t = spawn_copier(r, Box::new(tee), done.clone());
        // Nothing happens before a writer appears.
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert!(!t.is_finished());
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        w.write_all(&data).unwrap();
        drop(w);
        t.join().unwrap();
        assert_eq!(*buf.lock().unwrap(), data);
    }

    #[test]
    fn stops_when_no_writer_ever_came() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        mkfifo(&fifo).unwrap();
        let r = open_reader(&fifo).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let t = spawn_copier(r, Box::new(std::io::sink()), done.clone());
        std::thread::sleep(std::time::Duration::from_millis(60));
        done.store(true, Ordering::Release);
        t.join().unwrap();
        assert!(mkfifo(&fifo).is_err(), "exists already");
    }

    #[test]
    fn tee_caps_its_buffer() {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut t = Tee {
            buf: buf.clone(),
            echo: None,
            cap: 4,
        };
        t.write_all(b"abcdef").unwrap();
        assert_eq!(*buf.lock().unwrap(), b"abcd");
    }
}
