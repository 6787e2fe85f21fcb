//! `linux.resources` to the values written into cgroup files, for v1 (one hierarchy per
//! controller) and v2 (the unified hierarchy). Pure: the numbers both isolation models write
//! come from here, so a limit means the same in a process container and in a VM.

use oci_spec::runtime::LinuxResources;

use super::Version;
use crate::error::Error;

/// One value for one cgroup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Controller (v1 hierarchy name; on v2 the controller to enable).
    pub controller: &'static str,
    /// File name in the container's cgroup directory.
    pub file: String,
    /// What to write.
    pub value: String,
}

fn set(controller: &'static str, file: &str, value: impl ToString) -> Setting {
    Setting {
        controller,
        file: file.to_string(),
        value: value.to_string(),
    }
}

/// The smallest CFS quota the kernel takes, in microseconds.
pub const MIN_CFS_QUOTA_US: i64 = 1000;
/// docker's CFS period.
pub const DEFAULT_CFS_PERIOD_US: u64 = 100_000;

/// cpu.shares (v1, 2..262144) to cpu.weight (v2, 1..10000), as runc and crun convert it.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio.weight (v1, 10..1000) to io.weight (v2, 1..10000), as runc converts it.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + ((w.clamp(10, 1000) as u64 - 10) * 9999) / 990
}

fn unsupported(what: &str) -> Error {
    Error::unsupported(format!("linux.resources.{what} is not supported by hull"))
}

fn check_cpuset(list: &str, what: &str) -> Result<(), Error> {
    let ok = !list.is_empty()
        && list.len() <= 1024
        && list.split(',').all(|part| {
            let mut ends = part.splitn(2, '-');
            let lo = ends.next().and_then(|n| n.parse::<u32>().ok());
            let hi = match ends.next() {
                Some(h) => h.parse::<u32>().ok(),
                None => lo,
            };
            matches!((lo, hi), (Some(l), Some(h)) if l <= h && h < 8192)
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "linux.resources.cpu.{what} {list:?} is not a CPU/node list like 0-3,5"
        )))
    }
}

/// The settings for `res` on a host with cgroup `version`, in the order they must be
/// written. Device rules are separate (see `devices`).
pub fn settings(res: &LinuxResources, version: Version) -> Result<Vec<Setting>, Error> {
    let v2 = version == Version::V2;
    let mut out = Vec::new();
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        return Err(unsupported("hugepageLimits"));
    }
    if res.network().is_some() {
        return Err(unsupported("network"));
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(unsupported("rdma"));
    }

    if let Some(m) = res.memory() {
        #[allow(deprecated)]
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            return Err(unsupported("memory.kernel/kernelTCP"));
        }
        if m.use_hierarchy().is_some() || m.check_before_update().is_some() {
            return Err(unsupported("memory.useHierarchy/checkBeforeUpdate"));
        }
        let limit = m.limit();
        if let Some(l) = limit {
            if l == 0 || l < -1 {
                return Err(Error::invalid(format!(
                    "linux.resources.memory.limit {l} (bytes, or -1 for none)"
                )));
            }
        }
        if let Some(s) = m.swap() {
            if s < -1 || (s >= 0 && limit.is_some_and(|l| l > 0 && s < l)) {
                return Err(Error::invalid(format!(
                    "linux.resources.memory.swap {s} must be -1 or at least the memory limit (it is memory plus swap)"
                )));
            }
            if s > 0 && !limit.is_some_and(|l| l >= 0) {
                return Err(Error::invalid(
                    "linux.resources.memory.swap needs a memory limit",
                ));
            }
        }
        let bytes = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if v2 {
            if let Some(l) = limit {
                out.push(set("memory", "memory.max", bytes(l)));
            }
            if let Some(r) = m.reservation() {
                out.push(set("memory", "memory.low", bytes(r)));
            }
            if let Some(s) = m.swap() {
                // v2 counts swap alone.
                let swap = match (s, limit) {
                    (-1, _) => "max".to_string(),
                    (s, Some(l)) if l > 0 => (s - l).to_string(),
                    (s, _) => s.to_string(),
                };
                out.push(set("memory", "memory.swap.max", swap));
            }
            if m.swappiness().is_some() {
                return Err(unsupported("memory.swappiness (cgroup v1 only)"));
            }
            if m.disable_oom_killer() == Some(true) {
                return Err(unsupported("memory.disableOOMKiller (cgroup v1 only)"));
            }
        } else {
            if let Some(l) = limit {
                out.push(set("memory", "memory.limit_in_bytes", l));
            }
            if let Some(r) = m.reservation() {
                out.push(set("memory", "memory.soft_limit_in_bytes", r));
            }
            if let Some(s) = m.swap() {
                out.push(set("memory", "memory.memsw.limit_in_bytes", s));
            }
            if let Some(sw) = m.swappiness() {
                if sw > 100 {
                    return Err(Error::invalid(format!(
                        "linux.resources.memory.swappiness {sw} (0 to 100)"
                    )));
                }
                out.push(set("memory", "memory.swappiness", sw));
            }
            if m.disable_oom_killer() == Some(true) {
                out.push(set("memory", "memory.oom_control", 1));
            }
        }
    }

    if let Some(c) = res.cpu() {
        if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
            return Err(unsupported("cpu.realtimeRuntime/realtimePeriod"));
        }
        if c.idle().is_some() || c.burst().is_some() {
            return Err(unsupported("cpu.idle/burst"));
        }
        if let Some(s) = c.shares() {
            if !(2..=262_144).contains(&s) {
                return Err(Error::invalid(format!(
                    "linux.resources.cpu.shares {s} (2 to 262144)"
                )));
            }
            if v2 {
                out.push(set("cpu", "cpu.weight", shares_to_weight(s)));
            } else {
                out.push(set("cpu", "cpu.shares", s));
            }
        }
        let period = c.period();
        if let Some(p) = period {
            if !(1000..=1_000_000).contains(&p) {
                return Err(Error::invalid(format!(
                    "linux.resources.cpu.period {p} µs (1000 to 1000000)"
                )));
            }
        }
        if let Some(q) = c.quota() {
            if q != -1 && q < MIN_CFS_QUOTA_US {
                return Err(Error::invalid(format!(
                    "linux.resources.cpu.quota {q} µs (at least {MIN_CFS_QUOTA_US}, or -1)"
                )));
            }
        }
        if c.quota().is_some() || period.is_some() {
            let p = period.unwrap_or(DEFAULT_CFS_PERIOD_US);
            if v2 {
                let q = match c.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".into(),
                };
                out.push(set("cpu", "cpu.max", format!("{q} {p}")));
            } else {
                out.push(set("cpu", "cpu.cfs_period_us", p));
                if let Some(q) = c.quota() {
                    out.push(set("cpu", "cpu.cfs_quota_us", q));
                }
            }
        }
        if let Some(cpus) = c.cpus() {
            check_cpuset(cpus, "cpus")?;
            out.push(set("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems() {
            check_cpuset(mems, "mems")?;
            out.push(set("cpuset", "cpuset.mems", mems));
        }
    }

    if let Some(p) = res.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        out.push(set("pids", "pids.max", v));
    }

    if let Some(b) = res.block_io() {
        if b.leaf_weight().is_some()
            || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_read_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_write_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_read_iops_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_write_iops_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
        {
            return Err(unsupported(
                "blockIO leafWeight/weightDevice/throttle* (only blockIO.weight is)",
            ));
        }
        if let Some(w) = b.weight() {
            if !(10..=1000).contains(&w) {
                return Err(Error::invalid(format!(
                    "linux.resources.blockIO.weight {w} (10 to 1000)"
                )));
            }
            if v2 {
                out.push(set(
                    "io",
                    "io.weight",
                    format!("default {}", blkio_to_io_weight(w)),
                ));
            } else {
                out.push(set("blkio", "blkio.weight", w));
            }
        }
    }

    if let Some(u) = res.unified() {
        if !u.is_empty() && !v2 {
            return Err(Error::unsupported(
                "linux.resources.unified needs cgroup v2 (this host has v1)",
            ));
        }
        let mut keys: Vec<_> = u.keys().collect();
        keys.sort();
        for k in keys {
            let controller = k.split('.').next().unwrap_or("");
            let known = ["memory", "cpu", "cpuset", "pids", "io"]
                .into_iter()
                .find(|c| *c == controller);
            let Some(controller) = known else {
                return Err(Error::unsupported(format!(
                    "linux.resources.unified key {k:?} (hull writes memory.*, cpu.*, cpuset.*, pids.* and io.* files)"
                )));
            };
            if k.contains('/') || k.contains("..") || k.ends_with(".procs") {
                return Err(Error::invalid(format!(
                    "linux.resources.unified key {k:?} is not a cgroup file"
                )));
            }
            out.push(set(controller, k, &u[k]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids};

    fn files(s: &[Setting]) -> Vec<(String, String)> {
        s.iter()
            .map(|s| (s.file.clone(), s.value.clone()))
            .collect()
    }

    fn res() -> LinuxResources {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(64 << 20)).set_swap(Some(96 << 20));
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some(150_000))
            .set_period(Some(100_000))
            .set_shares(Some(512))
            .set_cpus(Some("0-1".into()));
        let mut pids = LinuxPids::default();
        pids.set_limit(100);
        let mut io = LinuxBlockIo::default();
        io.set_weight(Some(500));
        let mut r = LinuxResources::default();
        r.set_memory(Some(mem))
            .set_cpu(Some(cpu))
            .set_pids(Some(pids))
            .set_block_io(Some(io));
        r
    }

    #[test]
    fn v1_values() {
        let s = settings(&res(), Version::V1).unwrap();
        assert_eq!(
            files(&s),
            [
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "100663296"),
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "150000"),
                ("cpuset.cpus", "0-1"),
                ("pids.max", "100"),
                ("blkio.weight", "500"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn v2_values_convert_like_runc() {
        let s = settings(&res(), Version::V2).unwrap();
        assert_eq!(
            files(&s),
            [
                ("memory.max", "67108864"),
                ("memory.swap.max", "33554432"),
                ("cpu.weight", "20"),
                ("cpu.max", "150000 100000"),
                ("cpuset.cpus", "0-1"),
                ("pids.max", "100"),
                ("io.weight", "default 4950"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
    }

    #[test]
    fn unlimited_values_and_swap_only_with_memory() {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(-1)).set_swap(Some(-1));
        let mut r = LinuxResources::default();
        r.set_memory(Some(mem));
        assert_eq!(
            files(&settings(&r, Version::V2).unwrap()),
            [("memory.max", "max"), ("memory.swap.max", "max")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let mut mem = LinuxMemory::default();
        mem.set_swap(Some(1 << 30));
        r.set_memory(Some(mem));
        assert!(settings(&r, Version::V2).is_err());
    }

    #[test]
    fn absurd_or_unsupported_values_are_refused() {
        type Case = Box<dyn Fn(&mut LinuxResources)>;
        let cases: Vec<Case> = vec![
            Box::new(|r| {
                let mut c = LinuxCpu::default();
                c.set_quota(Some(10));
                r.set_cpu(Some(c));
            }),
            Box::new(|r| {
                let mut c = LinuxCpu::default();
                c.set_period(Some(5));
                r.set_cpu(Some(c));
            }),
            Box::new(|r| {
                let mut c = LinuxCpu::default();
                c.set_cpus(Some("0-x".into()));
                r.set_cpu(Some(c));
            }),
            Box::new(|r| {
                let mut c = LinuxCpu::default();
                c.set_realtime_runtime(Some(1));
                r.set_cpu(Some(c));
            }),
            Box::new(|r| {
                let mut m = LinuxMemory::default();
                m.set_limit(Some(1 << 30)).set_swap(Some(1 << 20));
                r.set_memory(Some(m));
            }),
            Box::new(|r| {
                let mut b = LinuxBlockIo::default();
                b.set_weight(Some(5000));
                r.set_block_io(Some(b));
            }),
            Box::new(|r| {
                r.set_unified(Some([("memory.max".to_string(), "1".to_string())].into()));
            }),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut r = LinuxResources::default();
            f(&mut r);
            assert!(settings(&r, Version::V1).is_err(), "case {i}");
        }
        let mut r = LinuxResources::default();
        r.set_unified(Some([("../../etc".to_string(), "1".to_string())].into()));
        assert!(settings(&r, Version::V2).is_err());
    }
}
