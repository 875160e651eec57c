use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::client::{Client, Transport, MSIZE};
use super::wire::{Writer, QTDIR};
use crate::errno::Errno;

/// Answers requests with scripted replies and keeps the requests.
struct Fake {
    replies: VecDeque<Vec<u8>>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Transport for Fake {
    fn request(&mut self, req: &[u8], resp: &mut [u8]) -> Option<usize> {
        self.seen.lock().push(req.to_vec());
        let r = self.replies.pop_front()?;
        resp[..r.len()].copy_from_slice(&r);
        Some(r.len())
    }
}

fn qid(w: Writer, kind: u8, path: u64) -> Writer {
    w.u8(kind).u32(0).u64(path)
}

fn connected(mut replies: Vec<Vec<u8>>) -> (Client, Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut all = alloc::vec![
        Writer::new(101, 0xffff)
            .u32(MSIZE * 2)
            .str("9P2000.L")
            .finish(),
        qid(Writer::new(105, 1), QTDIR, 1).finish(),
    ];
    all.append(&mut replies);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fake = Fake {
        replies: all.into(),
        seen: seen.clone(),
    };
    (Client::connect(Box::new(fake)).unwrap(), seen)
}

#[test]
fn version_attach_walk_and_errors() {
    let (mut c, seen) = connected(alloc::vec![
        qid(Writer::new(111, 1).u16(1), 0, 42).finish(),
        Writer::new(7, 1).u32(2).finish(),
        qid(Writer::new(111, 1).u16(1), 0, 43).finish(),
    ]);
    // Tversion proposes MSIZE and 9P2000.L.
    let v = seen.lock()[0].clone();
    assert_eq!(v[4], 100);
    assert_eq!(u32::from_le_bytes(v[7..11].try_into().unwrap()), MSIZE);
    let (fid, q) = c.walk(0, &["a"]).unwrap();
    assert_eq!((fid, q.path), (1, 42));
    assert_eq!(c.walk(0, &["nope"]), Err(Errno::ENOENT));
    // The failed walk's fid is used again.
    assert_eq!(c.walk(0, &["b"]).unwrap().0, 2);
    let w = seen.lock()[2].clone();
    assert_eq!(w[4], 110);
    assert_eq!(&w[w.len() - 1..], b"a");
}

#[test]
fn reads_and_writes_split_at_msize() {
    let chunk = (MSIZE - 11) as usize;
    let data: Vec<u8> = (0..chunk + 5).map(|i| i as u8).collect();
    let (mut c, seen) = connected(alloc::vec![
        Writer::new(117, 1)
            .u32(chunk as u32)
            .bytes(&data[..chunk])
            .finish(),
        Writer::new(117, 1).u32(5).bytes(&data[chunk..]).finish(),
        Writer::new(119, 1).u32(3).finish(),
    ]);
    let mut buf = alloc::vec![0u8; chunk + 100];
    assert_eq!(c.read(7, 0, &mut buf), Ok(chunk + 5));
    assert_eq!(&buf[..chunk + 5], &data[..]);
    let second = seen.lock()[3].clone();
    // The second read continues at the first one's end.
    assert_eq!(
        u64::from_le_bytes(second[11..19].try_into().unwrap()),
        chunk as u64
    );
    assert_eq!(c.write(7, 9, b"xyz"), Ok(3));
    let w = seen.lock()[4].clone();
    assert_eq!(&w[23..], b"xyz");
}

#[test]
fn getattr_and_readdir_decode() {
    let mut attr = qid(Writer::new(25, 1).u64(0x3fff), 0, 9)
        .u32(0o100644)
        .u32(1000)
        .u32(100)
        .u64(1)
        .u64(0)
        .u64(12345)
        .u64(4096)
        .u64(32);
    for t in [(1u64, 2u64), (3, 4), (5, 6), (0, 0)] {
        attr = attr.u64(t.0).u64(t.1);
    }
    let attr = attr.u64(0).u64(0).finish();
    let entry = qid(Writer::new(0, 0), 0, 77)
        .u64(5)
        .u8(8)
        .str("file")
        .finish();
    let entry = &entry[7..];
    let dir = Writer::new(41, 1)
        .u32(entry.len() as u32)
        .bytes(entry)
        .finish();
    let (mut c, _) = connected(alloc::vec![attr, dir]);
    let a = c.getattr(3).unwrap();
    assert_eq!(
        (a.mode, a.uid, a.size, a.blocks),
        (0o100644, 1000, 12345, 32)
    );
    assert_eq!((a.atime, a.mtime), (1_000_000_002, 3_000_000_004));
    let d = c.readdir(3, 0).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].name.as_str(), d[0].offset, d[0].kind), ("file", 5, 8));
}

#[test]
fn a_volumes_root_is_a_node_only_in_a_kernel_with_volumes() {
    let walked = qid(Writer::new(111, 1).u16(0), 0, 0).finish();
    let mut attr = qid(Writer::new(25, 1).u64(0x3fff), QTDIR, 1)
        .u32(0o040755)
        .u32(0)
        .u32(0)
        .u64(2)
        .u64(0)
        .u64(0)
        .u64(4096)
        .u64(0);
    for _ in 0..4 {
        attr = attr.u64(0).u64(0);
    }
    let attr = attr.u64(0).u64(0).finish();
    // The root's fid is clunked when its node goes (or, without volumes, at once).
    let clunked = Writer::new(121, 1).finish();
    let (c, seen) = connected(alloc::vec![walked, attr, clunked]);
    let vol = crate::fs::volume::Volume::new(c, false, 0);
    let root = vol.root();
    if cfg!(feature = "volumes") {
        let root = root.unwrap();
        assert!(root.is_dir() && root.remote().is_some());
    } else {
        assert_eq!(root.err(), Some(Errno::ENODEV));
    }
    assert!(seen.lock().len() >= 4, "version, attach, walk, getattr");
}
