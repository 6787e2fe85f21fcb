//! OCI `linux.seccomp` to a classic-BPF program, the way libseccomp lays one out:
//! architecture check, a binary search over the system call numbers that have rules, then per
//! system call its rules in the profile's order (the first whose argument conditions all hold
//! decides), else the default action.
//!
//! Arguments are compared as 64-bit values (high and low halves), like libseccomp. As in
//! runc, an entry with several conditions on the *same* argument becomes one rule per
//! condition (any may match); otherwise an entry's conditions must all hold.
//!
//! Only x86_64 system calls are filtered. A 32-bit (i386) or x32 system call gets ENOSYS when
//! the profile lists that architecture and kills the process otherwise, so no call escapes the
//! rules by switching ABI. Names that exist only on other architectures (the 32-bit variants
//! docker's profile lists) are skipped; a name no architecture has is an error.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use super::bpf::{AsmError, Assembler, Insn, Label, Target};
use super::names;

/// AUDIT_ARCH_X86_64.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// AUDIT_ARCH_I386.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// System call numbers of the x32 ABI have this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Kernel return values (SECCOMP_RET_*).
pub mod ret {
    /// Kill the whole process.
    pub const KILL_PROCESS: u32 = 0x8000_0000;
    /// Kill the calling thread.
    pub const KILL_THREAD: u32 = 0;
    /// Send SIGSYS.
    pub const TRAP: u32 = 0x0003_0000;
    /// Fail with the errno in the low 16 bits.
    pub const ERRNO: u32 = 0x0005_0000;
    /// Notify a tracer.
    pub const TRACE: u32 = 0x7ff0_0000;
    /// Allow and log.
    pub const LOG: u32 = 0x7ffc_0000;
    /// Allow.
    pub const ALLOW: u32 = 0x7fff_0000;
}

/// Largest errno the kernel passes through (MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;
/// Rules per system call and conditions per rule we accept (hostile-spec bound).
const MAX_RULES_PER_SYSCALL: usize = 64;

/// A compiled filter, ready for seccomp(SECCOMP_SET_MODE_FILTER, flags, program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The program.
    pub program: Vec<Insn>,
    /// SECCOMP_FILTER_FLAG_* bits.
    pub flags: u32,
}

/// Why a profile cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A system call name no architecture has.
    #[error("unknown system call {0:?} in the seccomp profile")]
    UnknownSyscall(String),
    /// Something hull does not implement (notify listeners...).
    #[error("seccomp: {0} is not supported")]
    Unsupported(String),
    /// A malformed rule.
    #[error("seccomp: {0}")]
    Invalid(String),
    /// The program could not be assembled.
    #[error(transparent)]
    Asm(#[from] AsmError),
}

#[derive(Debug, Clone)]
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

#[derive(Debug, Clone)]
struct Rule {
    conds: Vec<Cond>,
    action: u32,
}

fn action_value(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    what: &str,
) -> Result<u32, CompileError> {
    let errno = errno_ret.unwrap_or(libc::EPERM as u32);
    if errno > MAX_ERRNO {
        return Err(CompileError::Invalid(format!(
            "{what}: errnoRet {errno} is above {MAX_ERRNO}"
        )));
    }
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => ret::ALLOW,
        LinuxSeccompAction::ScmpActErrno => ret::ERRNO | errno,
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ret::KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => ret::KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => ret::TRAP,
        LinuxSeccompAction::ScmpActTrace => ret::TRACE | errno,
        LinuxSeccompAction::ScmpActLog => ret::LOG,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(CompileError::Unsupported(format!(
                "{what}: SCMP_ACT_NOTIFY (a seccomp notify listener)"
            )))
        }
    })
}

fn conds_of(args: &[LinuxSeccompArg], name: &str) -> Result<Vec<Vec<Cond>>, CompileError> {
    let conds: Vec<Cond> = args
        .iter()
        .map(|a| {
            if a.index() > 5 {
                return Err(CompileError::Invalid(format!(
                    "{name}: argument index {} (0 to 5)",
                    a.index()
                )));
            }
            Ok(Cond {
                index: a.index() as u32,
                op: a.op(),
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut seen = [false; 6];
    let repeated = conds.iter().any(|c| {
        let r = seen[c.index as usize];
        seen[c.index as usize] = true;
        r
    });
    Ok(if repeated {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    })
}

fn flag_bits(flags: &[LinuxSeccompFilterFlag]) -> u32 {
    flags
        .iter()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
        })
        .fold(0, |a, b| a | b)
}

/// Compiles `profile` for x86_64.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, CompileError> {
    if profile.listener_path().is_some() {
        return Err(CompileError::Unsupported("listenerPath".into()));
    }
    let default = action_value(
        profile.default_action(),
        profile.default_errno_ret(),
        "defaultAction",
    )?;
    let arches = profile.architectures().clone().unwrap_or_default();
    let lists = |a: Arch| arches.contains(&a);
    if !arches.is_empty() && !lists(Arch::ScmpArchX86_64) && !lists(Arch::ScmpArchNative) {
        return Err(CompileError::Unsupported(
            "a profile whose architectures do not include SCMP_ARCH_X86_64".into(),
        ));
    }
    let enosys = ret::ERRNO | libc::ENOSYS as u32;
    let i386_action = if lists(Arch::ScmpArchX86) {
        enosys
    } else {
        ret::KILL_PROCESS
    };
    let x32_action = if lists(Arch::ScmpArchX32) {
        enosys
    } else {
        ret::KILL_PROCESS
    };

    let mut rules: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for entry in profile.syscalls().iter().flatten() {
        let what = entry.names().first().map_or("", String::as_str);
        let action = action_value(entry.action(), entry.errno_ret(), what)?;
        let alternatives = conds_of(entry.args().as_deref().unwrap_or(&[]), what)?;
        for name in entry.names() {
            let Some(nr) = names::number(name) else {
                if names::is_foreign(name) {
                    continue;
                }
                return Err(CompileError::UnknownSyscall(name.clone()));
            };
            let list = rules.entry(nr).or_default();
            for conds in &alternatives {
                list.push(Rule {
                    conds: conds.clone(),
                    action,
                });
            }
            if list.len() > MAX_RULES_PER_SYSCALL {
                return Err(CompileError::Invalid(format!(
                    "more than {MAX_RULES_PER_SYSCALL} rules for {name}"
                )));
            }
        }
    }

    let mut asm = Assembler::new();
    let native = asm.label();
    let default_label = asm.label();
    asm.load(4); // arch
    asm.jeq(AUDIT_ARCH_X86_64, Target::Label(native), Target::Next);
    asm.jeq(AUDIT_ARCH_I386, Target::Next, Target::Skip(1));
    asm.ret(i386_action);
    asm.ret(ret::KILL_PROCESS);
    asm.place(native);
    asm.load(0); // nr
    asm.jge(X32_SYSCALL_BIT, Target::Next, Target::Skip(1));
    asm.ret(x32_action);

    // Leaves of the search: a direct return for a rule without conditions, else a block.
    let mut leaves: Vec<(u32, Leaf)> = Vec::with_capacity(rules.len());
    let mut blocks: Vec<(Label, &Vec<Rule>)> = Vec::new();
    for (nr, list) in &rules {
        if list[0].conds.is_empty() {
            leaves.push((*nr, Leaf::Return(list[0].action)));
        } else {
            let l = asm.label();
            blocks.push((l, list));
            leaves.push((*nr, Leaf::Block(l)));
        }
    }
    search(&mut asm, &leaves, default_label);
    asm.place(default_label);
    asm.ret(default);
    for (label, list) in blocks {
        asm.place(label);
        emit_rules(&mut asm, list, default);
    }
    Ok(Filter {
        program: asm.finish()?,
        flags: flag_bits(profile.flags().as_deref().unwrap_or(&[])),
    })
}

#[derive(Debug, Clone, Copy)]
enum Leaf {
    Return(u32),
    Block(Label),
}

/// A binary search over sorted system call numbers (A holds the number).
fn search(asm: &mut Assembler, leaves: &[(u32, Leaf)], default: Label) {
    if leaves.len() <= 4 {
        for (nr, leaf) in leaves {
            asm.jeq(*nr, Target::Next, Target::Skip(1));
            match leaf {
                Leaf::Return(v) => asm.ret(*v),
                Leaf::Block(l) => asm.jump(*l),
            }
        }
        asm.jump(default);
        return;
    }
    let mid = leaves.len() / 2;
    let upper = asm.label();
    asm.jge(leaves[mid].0, Target::Next, Target::Skip(1));
    asm.jump(upper);
    search(asm, &leaves[..mid], default);
    asm.place(upper);
    search(asm, &leaves[mid..], default);
}

/// One system call's rules in order; the first whose conditions hold returns its action.
fn emit_rules(asm: &mut Assembler, rules: &[Rule], default: u32) {
    for rule in rules {
        let next = asm.label();
        for c in &rule.conds {
            emit_cond(asm, c, next);
        }
        asm.ret(rule.action);
        asm.place(next);
    }
    asm.ret(default);
}

/// Falls through when the condition holds, jumps to `fail` when it does not.
fn emit_cond(asm: &mut Assembler, c: &Cond, fail: Label) {
    let lo_off = 16 + 8 * c.index;
    let hi_off = lo_off + 4;
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let (hv, lv) = split(c.value);
    let f = Target::Label(fail);
    use LinuxSeccompOperator as Op;
    match c.op {
        Op::ScmpCmpEq => {
            asm.load(hi_off);
            asm.jeq(hv, Target::Next, f);
            asm.load(lo_off);
            asm.jeq(lv, Target::Next, f);
        }
        Op::ScmpCmpNe => {
            asm.load(hi_off);
            asm.jeq(hv, Target::Next, Target::Skip(2));
            asm.load(lo_off);
            asm.jeq(lv, f, Target::Next);
        }
        Op::ScmpCmpMaskedEq => {
            let (hm, lm) = (hv, lv);
            let (hd, ld) = split(c.value_two);
            asm.load(hi_off);
            asm.and(hm);
            asm.jeq(hd, Target::Next, f);
            asm.load(lo_off);
            asm.and(lm);
            asm.jeq(ld, Target::Next, f);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            asm.load(hi_off);
            asm.jgt(hv, Target::Skip(3), Target::Next);
            asm.jeq(hv, Target::Next, f);
            asm.load(lo_off);
            if c.op == Op::ScmpCmpGt {
                asm.jgt(lv, Target::Next, f);
            } else {
                asm.jge(lv, Target::Next, f);
            }
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            asm.load(hi_off);
            asm.jgt(hv, f, Target::Next);
            asm.jeq(hv, Target::Next, Target::Skip(2));
            asm.load(lo_off);
            if c.op == Op::ScmpCmpLt {
                asm.jge(lv, f, Target::Next);
            } else {
                asm.jgt(lv, f, Target::Next);
            }
        }
    }
}
