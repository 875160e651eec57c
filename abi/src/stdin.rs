//! The standard-input channel: a serial port (`kiln.stdin=0x3e8`) or a port of the virtio
//! console (`kiln.stdin=virtio:3`) that carries the host's standard input to the program,
//! read on demand; the same protocol on both.
//!
//! The kernel asks for input only when the program reads (or polls) an empty standard
//! input: it sends a request ([`encode_request`]: [`REQUEST`], then the most bytes it wants
//! as a little-endian `u16`, at most [`MAX_CHUNK`]), and sends no other until the answer
//! came. The host then reads its own standard input once, for at most that many bytes, and
//! answers with one chunk: its length as a little-endian `u16`, then the bytes. A chunk of
//! length 0 is end of input; the next request asks again (a terminal can give more after
//! Ctrl-D). A read asks for what the program's read asked for, so the host takes from its
//! standard input what a local program would have taken, and input the program never
//! reads is left for whoever reads next. A poll asks for a whole chunk (it cannot know how
//! much the program will read).

use alloc::vec::Vec;

/// The first byte of a request for the next chunk.
pub const REQUEST: u8 = b'?';
/// The most bytes one chunk carries (a read asking for more gets at most this).
pub const MAX_CHUNK: usize = 32 * 1024;
/// The length of a request on the wire.
pub const REQUEST_LEN: usize = 3;

/// How long a kernel that cannot be interrupted by the channel (the virtio port) waits
/// before it looks again for the answer to a request sent `waited_ns` ago: a quarter of
/// the wait so far, at least 50 µs and at most 20 ms. So a stream of chunks flows at about
/// a tenth of a millisecond each, and a program waiting at a terminal costs a wake-up
/// every 20 ms.
pub fn poll_step_ns(waited_ns: u64) -> u64 {
    (waited_ns / 4).clamp(50_000, 20_000_000)
}

/// A request for at most `want` bytes (1 to [`MAX_CHUNK`]; other values are clamped).
pub fn encode_request(want: usize) -> [u8; REQUEST_LEN] {
    let [lo, hi] = (want.clamp(1, MAX_CHUNK) as u16).to_le_bytes();
    [REQUEST, lo, hi]
}

/// The size a request asks for; `None` when `bytes` is not a request.
pub fn decode_request(bytes: &[u8; REQUEST_LEN]) -> Option<usize> {
    let want = usize::from(u16::from_le_bytes([bytes[1], bytes[2]]));
    (bytes[0] == REQUEST).then(|| want.clamp(1, MAX_CHUNK))
}

/// One chunk, framed for the wire: `data` (at most [`MAX_CHUNK`] bytes; empty for end of
/// input) after its length.
pub fn encode_chunk(data: &[u8]) -> Vec<u8> {
    let n = data.len().min(MAX_CHUNK);
    let mut out = Vec::with_capacity(2 + n);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&data[..n]);
    out
}

/// What arrived from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// Bytes of input (part of a chunk: a chunk may arrive in pieces).
    Data(&'a [u8]),
    /// A whole chunk arrived (after its data, if any).
    ChunkEnd,
    /// End of input (a chunk of length 0).
    End,
}

/// Splits the byte stream from the host back into chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoder {
    /// Length bytes of the next chunk seen so far (0, or 1 with the low byte in `low`).
    header: u8,
    low: u8,
    /// Data bytes still to come in the current chunk.
    left: usize,
}

impl Decoder {
    /// A decoder at the start of a chunk.
    pub const fn new() -> Decoder {
        Decoder {
            header: 0,
            low: 0,
            left: 0,
        }
    }

    /// Feeds `bytes`, calling `out` for what they complete, in order.
    pub fn feed(&mut self, mut bytes: &[u8], mut out: impl FnMut(Input<'_>)) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                out(Input::Data(&bytes[..n]));
                self.left -= n;
                bytes = &bytes[n..];
                if self.left == 0 {
                    out(Input::ChunkEnd);
                }
                continue;
            }
            let b = bytes[0];
            bytes = &bytes[1..];
            if self.header == 0 {
                self.low = b;
                self.header = 1;
                continue;
            }
            self.header = 0;
            self.left = usize::from(u16::from_le_bytes([self.low, b]));
            if self.left == 0 {
                out(Input::End);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn looks_again_soon_after_a_request_and_rarely_after_a_long_wait() {
        assert_eq!(poll_step_ns(0), 50_000);
        assert_eq!(poll_step_ns(400_000), 100_000);
        assert_eq!(poll_step_ns(10_000_000), 2_500_000);
        assert_eq!(poll_step_ns(3_600_000_000_000), 20_000_000);
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> (Vec<u8>, usize, usize) {
        let (mut data, mut chunks, mut ends) = (Vec::new(), 0, 0);
        d.feed(bytes, |i| match i {
            Input::Data(b) => data.extend_from_slice(b),
            Input::ChunkEnd => chunks += 1,
            Input::End => ends += 1,
        });
        (data, chunks, ends)
    }

    #[test]
    fn chunks_round_trip_in_any_pieces() {
        let mut wire = encode_chunk(b"hello\n");
        wire.extend(encode_chunk(&[0xff; 300]));
        wire.extend(encode_chunk(b""));
        let whole = decode_all(&mut Decoder::new(), &wire);
        let mut want = b"hello\n".to_vec();
        want.extend([0xff; 300]);
        assert_eq!(whole, (want.clone(), 2, 1));
        // One byte at a time: the same.
        let mut d = Decoder::new();
        let (mut data, mut chunks, mut ends) = (Vec::new(), 0, 0);
        for b in &wire {
            let (x, c, e) = decode_all(&mut d, &[*b]);
            data.extend(x);
            chunks += c;
            ends += e;
        }
        assert_eq!((data, chunks, ends), (want, 2, 1));
    }

    #[test]
    fn requests_carry_the_size_wanted() {
        assert_eq!(decode_request(&encode_request(1)), Some(1));
        assert_eq!(decode_request(&encode_request(4096)), Some(4096));
        assert_eq!(decode_request(&encode_request(100_000)), Some(MAX_CHUNK));
        assert_eq!(decode_request(&encode_request(0)), Some(1));
        assert_eq!(decode_request(b"x\x01\x00"), None);
    }

    #[test]
    fn a_chunk_is_at_most_max_chunk() {
        let big = vec![7u8; MAX_CHUNK + 10];
        let wire = encode_chunk(&big);
        assert_eq!(wire.len(), 2 + MAX_CHUNK);
        assert_eq!(
            decode_all(&mut Decoder::new(), &wire),
            (big[..MAX_CHUNK].to_vec(), 1, 0)
        );
    }
}
