//! 9P2000.L message encoding: a writer for requests and a reader for replies.

use alloc::string::String;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};

/// A qid: the server's identity of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qid {
    /// `QTDIR` 0x80, `QTSYMLINK` 0x02, 0 for a file.
    pub kind: u8,
    /// Version (changes with the file).
    pub version: u32,
    /// Unique path (the host's inode number).
    pub path: u64,
}

/// Qid type of a directory.
pub const QTDIR: u8 = 0x80;
/// Qid type of a symbolic link.
pub const QTSYMLINK: u8 = 0x02;

/// Builds one request: size, type and tag, then the fields.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A message of `kind` with `tag`.
    pub fn new(kind: u8, tag: u16) -> Writer {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        buf.push(kind);
        buf.extend_from_slice(&tag.to_le_bytes());
        Writer { buf }
    }

    /// Appends a byte.
    pub fn u8(mut self, v: u8) -> Writer {
        self.buf.push(v);
        self
    }

    /// Appends a 16-bit value.
    pub fn u16(mut self, v: u16) -> Writer {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a 32-bit value.
    pub fn u32(mut self, v: u32) -> Writer {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a 64-bit value.
    pub fn u64(mut self, v: u64) -> Writer {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a string (16-bit length, bytes).
    pub fn str(mut self, s: &str) -> Writer {
        self.buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// Appends raw bytes (a write's data).
    pub fn bytes(mut self, b: &[u8]) -> Writer {
        self.buf.extend_from_slice(b);
        self
    }

    /// The finished message with its size filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let n = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// Reads the fields of a reply; running off its end is `EIO`.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads the body of a reply (after size, type and tag).
    pub fn new(body: &'a [u8]) -> Reader<'a> {
        Reader { buf: body, at: 0 }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> KResult<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or(Errno::EIO)?;
        let s = self.buf.get(self.at..end).ok_or(Errno::EIO)?;
        self.at = end;
        Ok(s)
    }

    /// A byte.
    pub fn u8(&mut self) -> KResult<u8> {
        Ok(self.take(1)?[0])
    }

    /// A 16-bit value.
    pub fn u16(&mut self) -> KResult<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    /// A 32-bit value.
    pub fn u32(&mut self) -> KResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    /// A 64-bit value.
    pub fn u64(&mut self) -> KResult<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// A string (invalid UTF-8 is `EIO`).
    pub fn str(&mut self) -> KResult<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Errno::EIO)
    }

    /// A qid.
    pub fn qid(&mut self) -> KResult<Qid> {
        Ok(Qid {
            kind: self.u8()?,
            version: self.u32()?,
            path: self.u64()?,
        })
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }
}
