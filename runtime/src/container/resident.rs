//! What a supervisor keeps in memory while it waits. It lives as long as its container, so
//! its resident memory is per-container memory (`hull bench --density`, issue 11 M7).
//! Starting a container runs most of hull (command line, image store, spec, executor,
//! network: about 7 MiB of the binary's code touched); waiting for it runs a poll loop.
//!
//! So once the container runs, the supervisor gives back what only the start needed: free
//! heap (`malloc_trim`) and its page-table entries for the binary's read-only pages (code,
//! constants, unwind tables, the relocation table the loader read). Those are clean file
//! pages: dropping them from this process (`MADV_DONTNEED` on a private mapping that cannot
//! be written and holds no private copy) leaves them in the page cache, and what the
//! supervisor runs later (the pump, the teardown) faults back in from there. The RELRO
//! pages, which the loader relocated into private copies, are kept. What stays mapped is
//! what it actually uses; the rest is page cache the kernel may reclaim.

use std::path::Path;

/// Returns the start-up's memory to the kernel; best effort (a failure only costs memory).
pub fn shed_start_up_memory() {
    // SAFETY: malloc_trim only returns the allocator's free memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    match std::fs::read_link("/proc/self/exe")
        .and_then(|exe| Ok((std::fs::read_to_string("/proc/self/smaps")?, exe)))
    {
        Ok((smaps, exe)) => {
            for (start, len) in clean_read_only_mappings(&smaps, &exe) {
                // SAFETY: [start, start+len) is one of this process's private mappings of its
                // own executable that cannot be written and held no anonymous (private
                // copy) page when smaps was read; without write permission none can have
                // appeared since. MADV_DONTNEED therefore only drops page-table entries,
                // and the next access maps the same file page from the page cache.
                let rc =
                    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
                if rc != 0 {
                    tracing::debug!("madvise: {}", std::io::Error::last_os_error());
                }
            }
        }
        Err(e) => tracing::debug!("reading this process's mappings: {e}"),
    }
}

/// The mappings of `exe` in a /proc/PID/smaps text that are private, not writable and hold
/// no anonymous page: (start, length). Never a writable mapping nor the relocated RELRO
/// one, whose pages are private copies.
fn clean_read_only_mappings(smaps: &str, exe: &Path) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(anon) = line.strip_prefix("Anonymous:") {
            let clean = anon.trim() == "0 kB";
            if let Some(mapping) = current.take().filter(|_| clean) {
                out.push(mapping);
            }
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue; // a "Key: value" line
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        current = None;
        let path = fields.nth(3);
        // A path with more fields (" (deleted)") is not ours to trust: skip it.
        let ours = path.is_some_and(|p| Path::new(p) == exe) && fields.next().is_none();
        let read_only_private = perms.len() == 4 && &perms[1..2] == "-" && perms.ends_with('p');
        if ours && read_only_private && end > start {
            current = Some((start, end - start));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(range: &str, perms: &str, path: &str, anon_kb: u32) -> String {
        format!(
            "{range} {perms} 00000000 08:01 42 {path}\nSize: 4 kB\nRss: 4 kB\n\
             Anonymous: {anon_kb} kB\nVmFlags: rd mr mw me\n"
        )
    }

    #[test]
    fn only_the_executables_clean_read_only_mappings_are_chosen() {
        let smaps = [
            mapping("55d0a0000000-55d0a0100000", "r--p", "/usr/bin/hull", 0),
            mapping("55d0a0100000-55d0a0900000", "r-xp", "/usr/bin/hull", 0),
            // RELRO: relocated by the loader, private copies.
            mapping("55d0a0900000-55d0a0a00000", "r--p", "/usr/bin/hull", 440),
            mapping("55d0a0a00000-55d0a0a10000", "rw-p", "/usr/bin/hull", 0),
            mapping("7f0000000000-7f0000100000", "r-xp", "/usr/lib/libc.so.6", 0),
            mapping("7f0000200000-7f0000300000", "r-xp", "", 0),
            mapping(
                "7f0000400000-7f0000500000",
                "r-xp",
                "/usr/bin/hull (deleted)",
                0,
            ),
            mapping("7f0000600000-7f0000700000", "r-xs", "/usr/bin/hull", 0),
        ]
        .concat();
        assert_eq!(
            clean_read_only_mappings(&smaps, Path::new("/usr/bin/hull")),
            vec![(0x55d0a0000000, 0x100000), (0x55d0a0100000, 0x800000)]
        );
    }

    /// Resident kB of this process's own executable (all its mappings).
    fn exe_rss_kb() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut ours = false;
        let mut total = 0;
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                if ours {
                    total += rss.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
                }
            } else if line.split(' ').next().is_some_and(|r| !r.ends_with(':')) {
                ours = line.split_whitespace().nth(5) == Some(exe.to_str().unwrap());
            }
        }
        total
    }

    /// The executable's pages leave this process's memory, and it goes on running its
    /// code (faulting back in what it uses).
    #[test]
    fn shedding_releases_the_executables_pages_and_the_process_runs_on() {
        let before = exe_rss_kb();
        shed_start_up_memory();
        let after = exe_rss_kb();
        assert!(
            after < before,
            "{after} kB of the executable resident after, {before} before"
        );
        let v: Vec<u64> = (0..1000).map(|i| i * 3).collect();
        assert_eq!(v.iter().sum::<u64>(), 1_498_500);
    }
}
