//! The device cgroup: `linux.resources.devices` rules as cgroup v1 `devices.allow/deny` lines
//! or, on cgroup v2, as the eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) the kernel runs on
//! every device access of the container.
//!
//! Rules apply in order and the last one that matches a request decides, which is how the v1
//! files behave for the usual "deny everything, then allow these" lists. A request matches a
//! rule when its type and numbers match and its access (r, w, m) is within the rule's.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::Error;

/// A checked rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// 'a', 'c' or 'b'.
    pub kind: char,
    /// Major number, `None` for any.
    pub major: Option<u32>,
    /// Minor number, `None` for any.
    pub minor: Option<u32>,
    /// Bits: 1 mknod, 2 read, 4 write.
    pub access: u32,
}

/// Largest number of rules accepted.
pub const MAX_RULES: usize = 1024;

fn access_bits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 3 {
        return None;
    }
    s.chars().try_fold(0, |acc, c| match c {
        'm' => Some(acc | 1),
        'r' => Some(acc | 2),
        'w' => Some(acc | 4),
        _ => None,
    })
}

/// Checks the spec's rules.
pub fn rules(list: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, Error> {
    if list.len() > MAX_RULES {
        return Err(Error::invalid(format!(
            "{} device cgroup rules (at most {MAX_RULES})",
            list.len()
        )));
    }
    list.iter()
        .map(|r| {
            let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => 'a',
                LinuxDeviceType::C | LinuxDeviceType::U => 'c',
                LinuxDeviceType::B => 'b',
                LinuxDeviceType::P => {
                    return Err(Error::invalid(
                        "device cgroup rules apply to c, b or a devices, not p",
                    ))
                }
            };
            // The kernel's dev_t has a 12-bit major and a 20-bit minor; bounding them also
            // keeps each number exact as the program's 32-bit signed immediate.
            let num = |n: Option<i64>, what: &str, bits: u32| match n {
                None | Some(-1) => Ok(None),
                Some(v) if (0..1i64 << bits).contains(&v) => Ok(Some(v as u32)),
                Some(v) => Err(Error::invalid(format!(
                    "device cgroup rule {what} {v} (0 to {}, or -1 for any)",
                    (1i64 << bits) - 1
                ))),
            };
            let access_text = r.access().as_deref().unwrap_or("rwm");
            let access = access_bits(access_text).ok_or_else(|| {
                Error::invalid(format!(
                    "device cgroup access {access_text:?} (letters r, w, m)"
                ))
            })?;
            Ok(Rule {
                allow: r.allow(),
                kind,
                major: num(r.major(), "major", 12)?,
                minor: num(r.minor(), "minor", 20)?,
                access,
            })
        })
        .collect()
}

/// A rule as a v1 `devices.allow`/`devices.deny` line: (file, line).
pub fn v1_line(r: &Rule) -> (&'static str, String) {
    let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
    let mut access = String::new();
    for (bit, c) in [(2, 'r'), (4, 'w'), (1, 'm')] {
        if r.access & bit != 0 {
            access.push(c);
        }
    }
    let file = if r.allow {
        "devices.allow"
    } else {
        "devices.deny"
    };
    (
        file,
        format!("{} {}:{} {access}", r.kind, n(r.major), n(r.minor)),
    )
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// dst register (low nibble) and src register (high nibble).
    pub regs: u8,
    /// Jump offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_K: u8 = 0xb7;
const MOV64_X: u8 = 0xbf;
const AND64_K: u8 = 0x57;
const RSH64_K: u8 = 0x77;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The v2 program for `rules` (last matching rule decides; no match denies).
pub fn program(rules: &[Rule]) -> Vec<BpfInsn> {
    // r1 = ctx {access_type, major, minor}; r2 = access, r3 = type, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV64_X, 3, 2, 0, 0),
        insn(AND64_K, 3, 0, 0, 0xffff),
        insn(RSH64_K, 2, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let mut checks: Vec<BpfInsn> = Vec::new();
        match r.kind {
            'c' => checks.push(insn(JNE_K, 3, 0, 0, 2)),
            'b' => checks.push(insn(JNE_K, 3, 0, 0, 1)),
            _ => {}
        }
        if r.access != 7 {
            // (request & !rule) must be 0.
            checks.push(insn(MOV64_X, 1, 2, 0, 0));
            checks.push(insn(AND64_K, 1, 0, 0, (!r.access & 7) as i32));
            checks.push(insn(JNE_K, 1, 0, 0, 0));
        }
        if let Some(m) = r.major {
            checks.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        // Each failed check jumps past the rest of this rule (its checks and 2 returns).
        let n = checks.len();
        for (i, c) in checks.iter_mut().enumerate() {
            if c.code == JNE_K {
                c.off = (n - i - 1 + 2) as i16;
            }
        }
        let unconditional = checks.is_empty();
        p.extend(checks);
        p.push(insn(MOV64_K, 0, 0, 0, r.allow as i32));
        p.push(insn(EXIT, 0, 0, 0, 0));
        // Rules before one that matches everything never decide: the verifier refuses
        // unreachable instructions, so nothing follows it.
        if unconditional {
            return p;
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Whether every instruction of `p` can be reached (the kernel's verifier refuses a program
/// with dead code); for tests.
pub fn all_reachable(p: &[BpfInsn]) -> bool {
    let mut seen = vec![false; p.len()];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        if pc >= p.len() || seen[pc] {
            continue;
        }
        seen[pc] = true;
        match p[pc].code {
            EXIT => {}
            JNE_K => {
                todo.push(pc + 1);
                todo.push(pc + 1 + p[pc].off as usize);
            }
            _ => todo.push(pc + 1),
        }
    }
    seen.iter().all(|s| *s)
}

/// Runs a program of [`program`] on one request (for tests): 1 allowed, 0 denied.
pub fn run(p: &[BpfInsn], kind: char, major: u32, minor: u32, access: u32) -> i64 {
    let t = if kind == 'b' { 1u64 } else { 2 };
    let ctx = [((access as u64) << 16 | t) as u32, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = p[pc];
        pc += 1;
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        match i.code {
            LDX_W => r[dst] = ctx[(i.off / 4) as usize] as u64,
            MOV64_X => r[dst] = r[src],
            MOV64_K => r[dst] = i.imm as i64 as u64,
            AND64_K => r[dst] &= i.imm as i64 as u64,
            RSH64_K => r[dst] >>= i.imm,
            JNE_K => {
                if r[dst] != i.imm as i64 as u64 {
                    pc += i.off as usize;
                }
            }
            EXIT => return r[0] as i64,
            other => panic!("opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker() -> Vec<Rule> {
        rules(&crate::defaults::device_rules()).unwrap()
    }

    #[test]
    fn v1_lines_follow_the_kernel_syntax() {
        let lines: Vec<_> = docker().iter().map(v1_line).collect();
        assert_eq!(lines[0], ("devices.deny", "a *:* rwm".to_string()));
        assert_eq!(lines[1], ("devices.allow", "c *:* m".to_string()));
        assert_eq!(lines[3], ("devices.allow", "c 1:3 rwm".to_string()));
        assert!(lines.contains(&("devices.allow", "c 136:* rwm".to_string())));
    }

    #[test]
    fn the_v2_program_allows_exactly_what_the_rules_allow() {
        let p = program(&docker());
        assert!(all_reachable(&p), "the verifier refuses dead code");
        let (r, w, m) = (2, 4, 1);
        assert_eq!(run(&p, 'c', 1, 3, r | w), 1, "/dev/null");
        assert_eq!(run(&p, 'c', 136, 7, r | w), 1, "a pty");
        assert_eq!(run(&p, 'b', 8, 0, r), 0, "a host disk");
        assert_eq!(run(&p, 'b', 8, 0, m), 1, "mknod is allowed, opening is not");
        assert_eq!(run(&p, 'c', 10, 229, r), 0, "/dev/fuse is not listed");
        // A later deny overrides an earlier allow; partial access stays within the rule.
        let mut list = docker();
        list.extend(
            rules(&[{
                let mut d = LinuxDeviceCgroup::default();
                d.set_allow(true)
                    .set_typ(Some(LinuxDeviceType::C))
                    .set_major(Some(10))
                    .set_minor(Some(229))
                    .set_access(Some("r".into()));
                d
            }])
            .unwrap(),
        );
        let p = program(&list);
        assert!(all_reachable(&p));
        assert_eq!(run(&p, 'c', 10, 229, r), 1);
        assert_eq!(run(&p, 'c', 10, 229, r | w), 0);
    }

    /// What the rules mean, written plainly: the last rule matching the request decides,
    /// no match denies.
    fn reference(rules: &[Rule], kind: char, major: u32, minor: u32, access: u32) -> i64 {
        rules
            .iter()
            .rev()
            .find(|r| {
                (r.kind == 'a' || r.kind == kind)
                    && r.major.is_none_or(|m| m == major)
                    && r.minor.is_none_or(|m| m == minor)
                    && access & !r.access == 0
            })
            .map_or(0, |r| r.allow as i64)
    }

    /// Many rule tables (a fixed pseudo-random sequence: every run checks the same ones),
    /// each compiled and run on every request of a grid that hits and misses each rule's
    /// type, numbers and access: the program decides as the rules say, and has no dead code.
    #[test]
    fn the_program_agrees_with_the_rules_on_every_table() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let numbers = [0u32, 1, 7, 254, 4095];
        for _ in 0..500 {
            let count = next(6) as usize;
            let table: Vec<Rule> = (0..count)
                .map(|_| Rule {
                    allow: next(2) == 1,
                    kind: ['a', 'b', 'c'][next(3) as usize],
                    major: (next(3) > 0).then(|| numbers[next(5) as usize]),
                    minor: (next(3) > 0).then(|| numbers[next(5) as usize]),
                    access: 1 + next(7) as u32,
                })
                .collect();
            let p = program(&table);
            assert!(all_reachable(&p), "{table:?}");
            for kind in ['b', 'c'] {
                for major in numbers {
                    for minor in numbers {
                        for access in 1..8 {
                            assert_eq!(
                                run(&p, kind, major, minor, access),
                                reference(&table, kind, major, minor, access),
                                "{kind} {major}:{minor} access {access} under {table:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_rules_are_refused() {
        let mut d = LinuxDeviceCgroup::default();
        d.set_access(Some("rwx".into()));
        assert!(rules(&[d.clone()]).is_err());
        d.set_access(None).set_major(Some(-5));
        assert!(rules(&[d.clone()]).is_err());
        d.set_major(Some(4096));
        assert!(
            rules(&[d.clone()]).is_err(),
            "beyond the kernel's 12-bit major"
        );
        d.set_major(Some(4095)).set_minor(Some(1 << 20));
        assert!(
            rules(&[d.clone()]).is_err(),
            "beyond the kernel's 20-bit minor"
        );
        d.set_minor(Some((1 << 20) - 1));
        assert!(rules(&[d]).is_ok());
    }
}
