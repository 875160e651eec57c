//! Tells the runner's own lines (`kiln: ...`) from the program's stderr, which arrive on
//! the same pipe: a line that starts with `kiln: ` is Kiln's. Bytes at the start of a line
//! wait only while they could still be that prefix.

const PREFIX: &[u8] = b"kiln: ";

/// Where a piece of the runner's stderr belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The program's stderr.
    Program,
    /// Kiln's own message.
    Kiln,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    LineStart,
    In(Dest),
}

/// The splitter's state between reads.
#[derive(Default)]
pub struct Splitter {
    mode: Mode,
    pending: Vec<u8>,
}

impl Splitter {
    /// Splits `data`, handing each piece to `emit`.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Dest, &[u8])) {
        while !data.is_empty() {
            match self.mode {
                Mode::LineStart => {
                    let want = (PREFIX.len() - self.pending.len()).min(data.len());
                    let take = data[..want]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(want, |i| i + 1);
                    self.pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    let dest = if self.pending == PREFIX {
                        Dest::Kiln
                    } else if PREFIX.starts_with(&self.pending) {
                        continue; // Could still be Kiln's: wait for more.
                    } else {
                        Dest::Program
                    };
                    emit(dest, &self.pending);
                    self.mode = match self.pending.ends_with(b"\n") {
                        true => Mode::LineStart,
                        false => Mode::In(dest),
                    };
                    self.pending.clear();
                }
                Mode::In(dest) => {
                    let end = data
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(data.len(), |i| i + 1);
                    emit(dest, &data[..end]);
                    if data[end - 1] == b'\n' {
                        self.mode = Mode::LineStart;
                    }
                    data = &data[end..];
                }
            }
        }
    }

    /// The end of the stream: what waited is the program's.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Dest, &[u8])) {
        if !self.pending.is_empty() {
            emit(Dest::Program, &std::mem::take(&mut self.pending));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let (mut program, mut kiln) = (Vec::new(), Vec::new());
        let mut s = Splitter::default();
        let mut emit = |d: Dest, b: &[u8]| match d {
            Dest::Program => program.extend_from_slice(b),
            Dest::Kiln => kiln.extend_from_slice(b),
        };
        for c in chunks {
            s.feed(c, &mut emit);
        }
        s.finish(&mut emit);
        (program, kiln)
    }

    #[test]
    fn kiln_lines_and_program_lines() {
        let (p, k) = split(&[
            b"oops\nkiln: program killed\nki",
            b"ln",
            b"!\nkil",
            b"n: x\n",
        ]);
        assert_eq!(p, b"oops\nkiln!\n");
        assert_eq!(k, b"kiln: program killed\nkiln: x\n");
        // Byte by byte, and a line that is only a prefix.
        let text = b"a kiln: b\nkiln: c\n\nkiln\nk";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        let (p, k) = split(&chunks);
        assert_eq!(p, b"a kiln: b\n\nkiln\nk");
        assert_eq!(k, b"kiln: c\n");
    }
}
