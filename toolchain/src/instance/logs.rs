//! The instance log: the program's stdout and stderr as docker's json-file driver keeps
//! them, one JSON object per line (`{"log":"...","stream":"stdout","time":"..."}`), each
//! holding one line of output or the part of one that had arrived. Bytes that are not
//! UTF-8 go in `hex` instead of `log`, so `logs` gives back exactly what the program wrote.

use super::state::rfc3339;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Which of the program's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
    stream: Stream,
    time: String,
}

/// One piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its stream.
    pub stream: Stream,
    /// The bytes, at most one line.
    pub bytes: Vec<u8>,
    /// When it arrived, RFC 3339 with nanoseconds.
    pub time: String,
}

/// Appends records to the log (shared by the threads reading the two streams).
pub struct Writer(Mutex<std::fs::File>);

impl Writer {
    /// Opens (creates) the log for appending.
    pub fn open(path: &Path) -> anyhow::Result<Writer> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("could not open the log {}: {e}", path.display()))?;
        Ok(Writer(Mutex::new(f)))
    }

    /// Appends `bytes` from `stream`, one record per line.
    pub fn write(&self, stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let time = rfc3339(SystemTime::now());
        let mut text = Vec::new();
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let (log, hex) = match std::str::from_utf8(line) {
                Ok(s) => (Some(s.to_string()), None),
                Err(_) => (
                    None,
                    Some(line.iter().map(|b| format!("{b:02x}")).collect()),
                ),
            };
            let e = Entry {
                log,
                hex,
                stream,
                time: time.clone(),
            };
            serde_json::to_writer(&mut text, &e)?;
            text.push(b'\n');
        }
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&text)
    }
}

/// Splits a byte stream into pieces that end on whole UTF-8 characters where possible, so
/// a character split across two reads is stored as text.
#[derive(Default)]
pub struct Utf8Joiner {
    carry: Vec<u8>,
}

impl Utf8Joiner {
    /// Adds `data`; returns what can be written now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(data);
        let ready = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.carry.len(),
        };
        self.carry.drain(..ready).collect()
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

fn parse(line: &str) -> Option<Record> {
    let e: Entry = serde_json::from_str(line).ok()?;
    let bytes = match (e.log, e.hex) {
        (Some(s), _) => s.into_bytes(),
        (None, Some(h)) => (0..h.len() / 2)
            .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?,
        (None, None) => return None,
    };
    Some(Record {
        stream: e.stream,
        bytes,
        time: e.time,
    })
}

/// Reads the log from where the last call stopped, complete lines only.
pub struct Reader {
    file: std::fs::File,
    partial: Vec<u8>,
}

impl Reader {
    /// Opens the log (it stays readable if the instance is removed meanwhile).
    pub fn open(path: &Path) -> anyhow::Result<Reader> {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("could not open the log {}: {e}", path.display()))?;
        Ok(Reader {
            file,
            partial: Vec::new(),
        })
    }

    /// The records written since the last call.
    pub fn read_new(&mut self) -> anyhow::Result<Vec<Record>> {
        let mut buf = std::mem::take(&mut self.partial);
        self.file.read_to_end(&mut buf)?;
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.partial = buf.split_off(end);
        Ok(String::from_utf8_lossy(&buf)
            .lines()
            .filter_map(parse)
            .collect())
    }
}

/// The records of the last `n` lines. A line is its stream's records from one that starts
/// it (the stream's first, or one after that stream's newline) to the next start: the two
/// streams' chunks interleave in the log, so a line's continuation can come after the other
/// stream's lines, and counting records instead printed half lines.
pub fn tail(records: &[Record], n: usize) -> Vec<Record> {
    let mut at_start = [true, true];
    let mut current = [usize::MAX, usize::MAX];
    let mut lines = 0;
    let line_of: Vec<usize> = records
        .iter()
        .map(|r| {
            let s = r.stream as usize;
            if at_start[s] {
                current[s] = lines;
                lines += 1;
            }
            at_start[s] = r.bytes.ends_with(b"\n");
            current[s]
        })
        .collect();
    let first = lines.saturating_sub(n);
    records
        .iter()
        .zip(line_of)
        .filter(|&(_, l)| l >= first)
        .map(|(r, _)| r.clone())
        .collect()
}

/// Writes records to two outputs (stdout and stderr), with docker's `--timestamps` prefix
/// at the start of each line when asked.
pub struct Printer<O, E> {
    out: O,
    err: E,
    timestamps: bool,
    line_start: [bool; 2],
}

impl<O: Write, E: Write> Printer<O, E> {
    /// A printer to `out` and `err`.
    pub fn new(out: O, err: E, timestamps: bool) -> Self {
        Printer {
            out,
            err,
            timestamps,
            line_start: [true; 2],
        }
    }

    /// Prints `records` and flushes.
    pub fn print(&mut self, records: &[Record]) -> std::io::Result<()> {
        for r in records {
            let i = r.stream as usize;
            let w: &mut dyn Write = match r.stream {
                Stream::Stdout => &mut self.out,
                Stream::Stderr => &mut self.err,
            };
            if self.timestamps && self.line_start[i] {
                write!(w, "{} ", r.time)?;
            }
            w.write_all(&r.bytes)?;
            self.line_start[i] = r.bytes.ends_with(b"\n");
        }
        self.out.flush()?;
        self.err.flush()
    }

    /// Prints what arrives until `finished()` says no more will, checking every 100 ms.
    /// `finished` is asked before each read, so the last output is never missed.
    pub fn follow(
        &mut self,
        reader: &mut Reader,
        finished: impl Fn() -> bool,
    ) -> anyhow::Result<()> {
        loop {
            let done = finished();
            self.print(&reader.read_new()?)?;
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let w = Writer::open(&path).unwrap();
        let mut reader = Reader::open(&path).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\npart").unwrap();
        w.write(Stream::Stderr, b"oops \xff\xfe\n").unwrap();
        w.write(Stream::Stdout, b"ial\n\"quoted\"\t\n").unwrap();
        let records = reader.read_new().unwrap();
        assert_eq!(records.len(), 6);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        Printer::new(&mut out, &mut err, false)
            .print(&records)
            .unwrap();
        assert_eq!(out, b"one\ntwo\npartial\n\"quoted\"\t\n");
        assert_eq!(err, b"oops \xff\xfe\n");
        assert!(reader.read_new().unwrap().is_empty());
        w.write(Stream::Stdout, b"more\n").unwrap();
        assert_eq!(reader.read_new().unwrap()[0].bytes, b"more\n");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"log\":\"one\\n\",\"stream\":\"stdout\",\"time\":\""));
    }

    #[test]
    fn tails_and_timestamps() {
        let rec = |s: &str| Record {
            stream: Stream::Stdout,
            bytes: s.as_bytes().to_vec(),
            time: "T".into(),
        };
        let records = [rec("a\n"), rec("b"), rec("c\n"), rec("d\n"), rec("e")];
        assert_eq!(tail(&records, 1), &records[4..]);
        assert_eq!(tail(&records, 2), &records[3..]);
        assert_eq!(tail(&records, 3), &records[1..]);
        assert_eq!(tail(&records, 9), &records[..]);
        assert!(tail(&records, 0).is_empty());
        // A stdout line split around a stderr line is still one line, whole.
        let err = |s: &str| Record {
            stream: Stream::Stderr,
            ..rec(s)
        };
        let mixed = [rec("one\n"), rec("fi"), err("oops\n"), rec("le\n")];
        assert_eq!(tail(&mixed, 1), vec![mixed[2].clone()]);
        assert_eq!(tail(&mixed, 2), mixed[1..].to_vec());
        assert_eq!(tail(&mixed, 3), mixed.to_vec());
        let mut out = Vec::new();
        Printer::new(&mut out, Vec::new(), true)
            .print(&records[..3])
            .unwrap();
        assert_eq!(out, b"T a\nT bc\n");
    }

    #[test]
    fn utf8_split_across_reads() {
        let mut j = Utf8Joiner::default();
        let e = "é".as_bytes();
        assert_eq!(j.push(&[b'a', e[0]]), b"a");
        assert_eq!(j.push(&e[1..]), e);
        assert_eq!(j.push(b"\xff"), b"\xff");
        assert_eq!(j.push(&[e[0]]), b"");
        assert_eq!(j.finish(), &e[..1]);
    }
}
