//! The conditions a bench ran under, recorded with its results so they can be read later.

use serde::{Deserialize, Serialize};

use crate::doctor::{cgroup_layout, kvm_kind, CgroupVersion, HostFacts, KvmKind};
use crate::paths::StatePaths;

/// Host, kernel, KVM kind and versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    /// Host name.
    pub hostname: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU model.
    pub cpu_model: String,
    /// CPUs available to the bench.
    pub cpus: usize,
    /// Host memory in MiB.
    pub memory_mib: u64,
    /// Kind of KVM on the host the figures were taken on.
    pub kvm: KvmKind,
    /// cgroup layout.
    pub cgroup_version: CgroupVersion,
    /// Whether the host is itself a virtual machine.
    pub host_is_vm: bool,
    /// hull version.
    pub hull_version: String,
    /// 1-, 5- and 15-minute load averages when the bench started (other work on the host
    /// skews timings; this says how busy it was).
    pub load_average: [f64; 3],
    /// Whether this ran inside the nested harness (QEMU/TCG with emulated AMD-V), where all
    /// timings are slowed by emulation and only comparable with each other.
    pub nested_harness: bool,
    /// With `nested_harness`: the real host the harness ran on (name, kernel, KVM kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_host: Option<String>,
    /// When the bench started, UTC, RFC 3339.
    pub started_at: String,
    /// Wall time of the whole bench, seconds.
    pub duration_s: f64,
}

impl Environment {
    /// Reads the environment of this host.
    pub fn collect(paths: &StatePaths) -> Self {
        let facts = HostFacts::this_host(paths);
        let cpuinfo = facts.read("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let memory_mib = facts
            .read("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        Environment {
            hostname: facts
                .read_trimmed("/proc/sys/kernel/hostname")
                .unwrap_or_default(),
            kernel: facts.kernel_release().unwrap_or_default(),
            cpu_model: field("model name").unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib,
            kvm: kvm_kind(&facts),
            cgroup_version: cgroup_layout(&facts).version,
            host_is_vm: field("flags")
                .is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor")),
            hull_version: env!("CARGO_PKG_VERSION").to_string(),
            load_average: load_average(&facts),
            nested_harness: std::env::var_os("HULL_IN_HARNESS").is_some(),
            outer_host: None,
            started_at: rfc3339_utc(std::time::SystemTime::now()),
            duration_s: 0.0,
        }
    }
}

fn load_average(facts: &HostFacts) -> [f64; 3] {
    let text = facts.read("/proc/loadavg").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<f64>().unwrap_or(0.0));
    [(); 3].map(|_| fields.next().unwrap_or(0.0))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time (civil-from-days, proleptic Gregorian calendar).
pub fn rfc3339_utc(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_795_657_445)),
            "2026-11-26T01:44:05Z"
        );
    }
}
