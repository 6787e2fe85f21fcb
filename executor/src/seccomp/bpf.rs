//! A small classic-BPF assembler: instructions with symbolic jump targets, resolved into the
//! `sock_filter` array the kernel's seccomp takes.
//!
//! Conditional jumps carry 8-bit offsets; every far target is reached with `ja` (32-bit
//! offset), so the compiler only ever emits conditional jumps over a few instructions or
//! inside one small rule block, and [`Assembler::finish`] checks that each fits.

use std::collections::HashMap;

/// One instruction, laid out like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

// Opcode parts (linux/bpf_common.h).
pub(crate) const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
pub(crate) const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(crate) const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JGT_K: u16 = 0x05 | 0x20;
pub(crate) const JGE_K: u16 = 0x05 | 0x30;
pub(crate) const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Largest program the kernel accepts (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// A jump destination: the next instruction, or a label placed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Fall through to the next instruction.
    Next,
    /// Skip this many instructions.
    Skip(u8),
    /// A label.
    Label(Label),
}

/// A position in the program, placed with [`Assembler::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Pending {
    Plain(Insn),
    Cond {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Jump(Label),
}

/// Why a program could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// More instructions than the kernel takes.
    #[error("the seccomp program has {0} instructions (the kernel's limit is {MAX_INSNS})")]
    TooLong(usize),
    /// A conditional jump whose target is more than 255 instructions away.
    #[error("a seccomp rule is too large to compile")]
    FarJump,
    /// A label used but never placed (a compiler bug).
    #[error("internal error: unplaced label")]
    Unplaced,
}

/// Builds a program.
#[derive(Debug, Default)]
pub struct Assembler {
    code: Vec<Pending>,
    labels: Vec<Option<usize>>,
}

impl Assembler {
    /// A new, empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh label, to be placed later.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    pub fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.code.len());
    }

    /// `A = data[offset]` (32-bit load from `struct seccomp_data`).
    pub fn load(&mut self, offset: u32) {
        self.plain(LD_W_ABS, offset);
    }

    /// `A &= k`.
    pub fn and(&mut self, k: u32) {
        self.plain(ALU_AND_K, k);
    }

    /// `return k`.
    pub fn ret(&mut self, k: u32) {
        self.plain(RET_K, k);
    }

    /// Unconditional jump to `label` (any distance).
    pub fn jump(&mut self, label: Label) {
        self.code.push(Pending::Jump(label));
    }

    /// `if A == k goto jt else goto jf`.
    pub fn jeq(&mut self, k: u32, jt: Target, jf: Target) {
        self.cond(JEQ_K, k, jt, jf);
    }

    /// `if A > k goto jt else goto jf` (unsigned).
    pub fn jgt(&mut self, k: u32, jt: Target, jf: Target) {
        self.cond(JGT_K, k, jt, jf);
    }

    /// `if A >= k goto jt else goto jf` (unsigned).
    pub fn jge(&mut self, k: u32, jt: Target, jf: Target) {
        self.cond(JGE_K, k, jt, jf);
    }

    fn plain(&mut self, code: u16, k: u32) {
        self.code.push(Pending::Plain(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    fn cond(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.code.push(Pending::Cond { code, k, jt, jf });
    }

    /// Resolves the labels.
    pub fn finish(self) -> Result<Vec<Insn>, AsmError> {
        if self.code.len() > MAX_INSNS {
            return Err(AsmError::TooLong(self.code.len()));
        }
        let at: HashMap<usize, usize> = self
            .labels
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (i, p)))
            .collect();
        let offset = |pc: usize, t: Target| -> Result<u8, AsmError> {
            match t {
                Target::Next => Ok(0),
                Target::Skip(n) => Ok(n),
                Target::Label(l) => {
                    let dest = *at.get(&l.0).ok_or(AsmError::Unplaced)?;
                    let delta = dest.checked_sub(pc + 1).ok_or(AsmError::FarJump)?;
                    u8::try_from(delta).map_err(|_| AsmError::FarJump)
                }
            }
        };
        self.code
            .iter()
            .enumerate()
            .map(|(pc, p)| match *p {
                Pending::Plain(i) => Ok(i),
                Pending::Cond { code, k, jt, jf } => Ok(Insn {
                    code,
                    jt: offset(pc, jt)?,
                    jf: offset(pc, jf)?,
                    k,
                }),
                Pending::Jump(l) => {
                    let dest = *at.get(&l.0).ok_or(AsmError::Unplaced)?;
                    let delta = dest.checked_sub(pc + 1).ok_or(AsmError::FarJump)?;
                    Ok(Insn {
                        code: JA,
                        jt: 0,
                        jf: 0,
                        k: delta as u32,
                    })
                }
            })
            .collect()
    }
}

/// Runs a program on one `struct seccomp_data` (nr, arch, ip, args) and returns its verdict:
/// what the kernel would do. For tests, and for `hull inspect`-style explanations.
pub fn run(program: &[Insn], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut a: u32 = 0;
    let mut pc = 0usize;
    // Forward jumps only: the program ends within its length.
    while let Some(insn) = program.get(pc) {
        pc += 1;
        match insn.code {
            LD_W_ABS => {
                let o = insn.k as usize;
                a = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
            }
            ALU_AND_K => a &= insn.k,
            JA => pc += insn.k as usize,
            JEQ_K | JGT_K | JGE_K => {
                let hit = match insn.code {
                    JEQ_K => a == insn.k,
                    JGT_K => a > insn.k,
                    _ => a >= insn.k,
                };
                pc += if hit { insn.jt } else { insn.jf } as usize;
            }
            RET_K => return insn.k,
            other => panic!("opcode {other:#x} not produced by the compiler"),
        }
    }
    panic!("program fell off its end")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_forward_offsets() {
        let mut asm = Assembler::new();
        let yes = asm.label();
        asm.load(0);
        asm.jeq(7, Target::Label(yes), Target::Next);
        asm.ret(1);
        asm.place(yes);
        asm.ret(2);
        let prog = asm.finish().unwrap();
        assert_eq!(prog[1].jt, 1);
        assert_eq!(run(&prog, 7, 0, [0; 6]), 2);
        assert_eq!(run(&prog, 8, 0, [0; 6]), 1);
    }

    #[test]
    fn far_conditional_jumps_are_refused_and_ja_reaches_anywhere() {
        let mut asm = Assembler::new();
        let far = asm.label();
        asm.jeq(0, Target::Label(far), Target::Next);
        for _ in 0..300 {
            asm.ret(0);
        }
        asm.place(far);
        asm.ret(1);
        assert_eq!(asm.finish(), Err(AsmError::FarJump));

        let mut asm = Assembler::new();
        let far = asm.label();
        asm.jump(far);
        for _ in 0..300 {
            asm.ret(0);
        }
        asm.place(far);
        asm.ret(1);
        assert_eq!(run(&asm.finish().unwrap(), 0, 0, [0; 6]), 1);
    }

    #[test]
    fn oversized_programs_are_refused() {
        let mut asm = Assembler::new();
        for _ in 0..=MAX_INSNS {
            asm.ret(0);
        }
        assert_eq!(asm.finish(), Err(AsmError::TooLong(MAX_INSNS + 1)));
    }
}
