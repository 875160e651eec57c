//! The standard-input channel: a serial port (`kiln.stdin=PORT`) that carries the host's
//! standard input to the program, read on demand.
//!
//! The kernel asks for input only when the program reads (or polls) an empty standard
//! input: it sends one [`REQUEST`] byte, and sends no other until the answer came. The
//! host then reads its own standard input once and answers with one chunk: its length as
//! a little-endian `u16` (at most [`MAX_CHUNK`]), then the bytes. A chunk of length 0 is
//! end of input; the next request asks again (a terminal can give more after Ctrl-D).
//! So the host takes from its standard input only what the program asked for, as a local
//! program would, and input the program never reads is left for whoever reads next.

use alloc::vec::Vec;

/// What the kernel sends to ask for the next chunk.
pub const REQUEST: u8 = b'?';
/// The most bytes one chunk carries.
pub const MAX_CHUNK: usize = 4096;

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
