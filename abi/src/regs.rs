//! The general registers of a user thread: the one definition the kernel's hardware
//! layer (system-call and interrupt frames), its Linux personality (signal frames) and the
//! kernel binary (thread contexts, crash records) share.

use crate::record;

/// The registers of a user thread on x86-64, as the kernel saves them (in the order of
/// Linux's `struct sigcontext`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRegs {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl UserRegs {
    /// The six system-call arguments (rdi, rsi, rdx, r10, r8, r9).
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }
}

impl From<UserRegs> for record::Regs {
    fn from(r: UserRegs) -> record::Regs {
        record::Regs {
            rip: r.rip,
            rsp: r.rsp,
            rflags: r.rflags,
            gpr: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
                r.r13, r.r14, r.r15,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_record_order() {
        let r = UserRegs {
            rax: 1,
            rbp: 7,
            r15: 15,
            rip: 0x1000,
            ..UserRegs::default()
        };
        let rec = record::Regs::from(r);
        assert_eq!(rec.gpr[0], 1);
        assert_eq!(rec.gpr[record::RBP], 7);
        assert_eq!(rec.gpr[14], 15);
        assert_eq!(record::GPR_NAMES[14], "r15");
        assert_eq!(rec.rip, 0x1000);
    }
}
