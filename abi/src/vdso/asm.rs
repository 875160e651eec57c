//! Just enough of an x86-64 assembler for the vDSO's functions: raw instruction bytes,
//! conditional jumps to labels (always the 32-bit displacement form, so no jump is ever out
//! of reach), and RIP-relative operands whose displacement is
//! computed from the address the code will sit at. The instructions themselves are written
//! out as bytes in [`super::code`], each with its assembly beside it, and a test
//! disassembles the result.

use alloc::vec::Vec;

/// A place in the code that jumps can name before it is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// The condition of a conditional jump (the low nibble of opcode `0x0f 0x80 + cc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `ja`: unsigned above.
    Above = 0x7,
    /// `jz`/`je`: zero.
    Zero = 0x4,
    /// `jnz`/`jne`: not zero.
    NotZero = 0x5,
}

/// Code being assembled for the address `base`.
#[derive(Debug)]
pub struct Asm {
    base: u64,
    code: Vec<u8>,
    labels: Vec<Option<usize>>,
    /// Each jump: where its 32-bit displacement is, and its target.
    jumps: Vec<(usize, Label)>,
}

impl Asm {
    /// An empty buffer whose first byte will be at address `base`.
    pub fn new(base: u64) -> Asm {
        Asm {
            base,
            code: Vec::new(),
            labels: Vec::new(),
            jumps: Vec::new(),
        }
    }

    /// The offset of the next byte from `base`.
    pub fn offset(&self) -> u64 {
        self.code.len() as u64
    }

    /// A new label, not bound yet.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `l` to the next byte.
    pub fn bind(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none(), "label bound twice");
        self.labels[l.0] = Some(self.code.len());
    }

    /// Appends one instruction's bytes as they are.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.code.extend_from_slice(bytes);
    }

    /// Appends an instruction ending in a 32-bit immediate.
    pub fn imm32(&mut self, opcode: &[u8], imm: u32) {
        self.code.extend_from_slice(opcode);
        self.code.extend_from_slice(&imm.to_le_bytes());
    }

    /// Appends an instruction whose memory operand is `[rip + disp32]` addressing `target`:
    /// `opcode` ends with the ModRM byte (mod 00, r/m 101) and the displacement is the last
    /// part of the instruction.
    pub fn rip_relative(&mut self, opcode: &[u8], target: u64) {
        self.code.extend_from_slice(opcode);
        let next = self.base + self.code.len() as u64 + 4;
        let disp = target.wrapping_sub(next) as i64;
        let disp = i32::try_from(disp).expect("RIP-relative target within 2 GiB");
        self.code.extend_from_slice(&disp.to_le_bytes());
    }

    /// A conditional jump to `to`.
    pub fn jump_if(&mut self, cond: Cond, to: Label) {
        self.code
            .extend_from_slice(&[0x0f, 0x80 | cond as u8, 0, 0, 0, 0]);
        self.jumps.push((self.code.len() - 4, to));
    }

    /// The code, with every jump resolved. Panics on an unbound label (a mistake in the
    /// code's definition, caught by the tests).
    pub fn finish(mut self) -> Vec<u8> {
        for &(at, to) in &self.jumps {
            let target = self.labels[to.0].expect("jump to an unbound label");
            let disp = target as i64 - (at as i64 + 4);
            self.code[at..at + 4].copy_from_slice(&(disp as i32).to_le_bytes());
        }
        self.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_are_relative_to_the_next_instruction() {
        let mut a = Asm::new(0x1000);
        let back = a.label();
        let fwd = a.label();
        a.bind(back);
        a.raw(&[0x90]);
        a.jump_if(Cond::Zero, fwd);
        a.jump_if(Cond::NotZero, back);
        a.bind(fwd);
        a.raw(&[0xc3]);
        assert_eq!(
            a.finish(),
            [
                0x90, 0x0f, 0x84, 0x06, 0, 0, 0, // jz +6
                0x0f, 0x85, 0xf3, 0xff, 0xff, 0xff, // jnz -13
                0xc3
            ]
        );
    }

    #[test]
    fn rip_relative_operands_reach_below_the_code() {
        let mut a = Asm::new(0x1000);
        a.raw(&[0x90]);
        // mov r8, [rip + disp32] addressing 0x0, from an instruction ending at 0x1008.
        a.rip_relative(&[0x4c, 0x8b, 0x05], 0);
        assert_eq!(a.finish(), [0x90, 0x4c, 0x8b, 0x05, 0xf8, 0xef, 0xff, 0xff]);
    }

    #[test]
    #[should_panic(expected = "unbound label")]
    fn an_unbound_label_is_a_mistake() {
        let mut a = Asm::new(0);
        let l = a.label();
        a.jump_if(Cond::Above, l);
        a.finish();
    }
}
